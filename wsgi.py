"""WSGI entry point kept for existing deployments: ``gunicorn -c gunicorn.conf.py wsgi:app``.

The application lives in :mod:`idp.wsgi` (``idp.wsgi:app``), which an installed wheel
provides without this repository.
"""

from idp.wsgi import app

__all__ = ["app"]
