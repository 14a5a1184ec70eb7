"""WSGI entry point: ``gunicorn -c python:idp.gunicorn_conf idp.wsgi:app``.

Importing this module builds the provider from the configuration (``IDP_CONFIG`` and
the ``IDP_*`` variables), with logging set up as ``[ops]`` says. It claims the
deployment when the in-memory store is configured (:mod:`idp.process_guard`), so a
second serving process is refused whatever started it.

A configuration or key problem is logged as one line and ends the process with status
3, which gunicorn reads as "worker failed to boot": the master stops instead of
starting workers that fail one after another.
"""

from __future__ import annotations

import logging
import sys

from .app import create_app
from .config import ConfigError, load_settings
from .keys import KeyRingError
from .ops import configure_logging

#: gunicorn's Arbiter.WORKER_BOOT_ERROR.
BOOT_ERROR = 3

try:
    settings = load_settings()
except ConfigError as exc:
    sys.stderr.write(f"error: {exc}\n")
    raise SystemExit(BOOT_ERROR) from None
configure_logging(settings.ops.log_format, settings.ops.log_level, root=True)
try:
    app = create_app(settings, serve=True)
except (ConfigError, KeyRingError) as exc:
    logging.getLogger("idp").critical("cannot start: %s", exc)
    raise SystemExit(BOOT_ERROR) from None
