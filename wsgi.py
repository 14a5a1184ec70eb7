"""WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app``."""

from idp.app import create_app
from idp.config import load_settings
from idp.ops import configure_logging

settings = load_settings()
configure_logging(settings.ops.log_format, settings.ops.log_level)
app = create_app(settings)
