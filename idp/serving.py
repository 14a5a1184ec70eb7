"""The production server: granian (a Rust HTTP server) running the WSGI application.

    idp serve                  # or: python -m idp.serving

Measured on this project's own pages, granian spends about 40 % less CPU per request
than gunicorn's sync or gthread workers (docs/PERFORMANCE.md), so it is the default;
``gunicorn -c python:idp.gunicorn_conf idp.wsgi:app`` stays supported.

The settings are read here, in the parent process, so a broken configuration or a
missing signing key stops the server with one line before any worker starts; the
start-up warnings are printed once. Then granian starts the workers, each of which
imports :mod:`idp.granian_app` (the app of :mod:`idp.wsgi` with the access log
granian's own log cannot redact). A worker that dies is replaced; one that dies again
within seconds (it cannot boot) stops the server.

The knobs are the environment variables of a container deployment, shared with
``gunicorn.conf.py``:

* ``IDP_BIND`` (``host:port``; default ``[server] host`` and ``port``);
* ``WEB_CONCURRENCY`` (worker processes; default ``[server] workers``);
* ``IDP_THREADS`` (threads per worker, default 4): each request holds one while the
  provider works on it, and at most half of them hold a push long-poll
  (:mod:`idp.mfa.push.api`), so long-polls never starve sign-ins;
* ``IDP_GRACEFUL_TIMEOUT`` (seconds requests in flight get on SIGTERM, default 30);
* ``IDP_ACCESS_LOG`` (a file for the access lines; default the log stream).

With ``[store] backend = "memory"`` a second worker is refused (:mod:`idp.process_guard`).
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

from .config import ConfigError, Settings, load_settings
from .security.text import is_ascii_digits

#: What each worker imports and serves.
TARGET = "idp.granian_app:app"
DEFAULT_THREADS = 4


class ServeError(Exception):
    """The server cannot start; the message is one line."""


def _number(name: str, default: int, environ: dict[str, str] | os._Environ[str]) -> int:
    raw = (environ.get(name) or "").strip()
    if not raw:
        return default
    if not is_ascii_digits(raw) or int(raw) < 1:
        raise ServeError(f"{name} must be a whole number of at least 1 (got {raw!r})")
    return int(raw)


def plan(settings: Settings, environ: dict[str, str] | os._Environ[str]) -> dict[str, Any]:
    """The granian server's arguments for these settings and environment."""
    bind = (environ.get("IDP_BIND") or "").strip()
    host, port = settings.server.host, settings.server.port
    if bind:
        host, sep, port_text = bind.rpartition(":")
        if not sep or not host or not is_ascii_digits(port_text) or not 0 < int(port_text) < 65536:
            raise ServeError(f"IDP_BIND must be host:port such as 127.0.0.1:8000 (got {bind!r})")
        host, port = host.strip("[]"), int(port_text)
    workers = _number("WEB_CONCURRENCY", settings.server.workers, environ)
    return {
        "target": TARGET,
        "address": host,
        "port": port,
        "workers": workers,
        "blocking_threads": _number("IDP_THREADS", DEFAULT_THREADS, environ),
        "workers_kill_timeout": _number("IDP_GRACEFUL_TIMEOUT", 30, environ),
    }


def _log_config(settings: Settings) -> dict[str, Any]:
    """granian's own lines (start, workers, errors) in the provider's format."""
    formatter = "JSONFormatter" if settings.ops.log_format == "json" else "TextFormatter"
    return {
        "formatters": {"idp": {"()": f"idp.ops.logs.{formatter}"}},
        "filters": {"rid": {"()": "idp.ops.logs.RequestIdFilter"}},
        "handlers": {
            "console": {
                "formatter": "idp",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "filters": ["rid"],
            },
            "access": {
                "formatter": "idp",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "filters": ["rid"],
            },
        },  # fmt: skip
    }


def serve(environ: dict[str, str] | os._Environ[str] | None = None) -> None:
    """Check the settings and the signing keys, then run granian until it is stopped.
    Raises :class:`ConfigError` or :class:`ServeError` (one line) when it cannot start."""
    from granian.constants import Interfaces
    from granian.log import LogLevels
    from granian.server import Server

    from .app import warn_once
    from .keys import KeyRingError
    from .ops import configure_logging
    from .services import load_keyring

    environ = os.environ if environ is None else environ
    settings = load_settings(environ=environ)
    args = plan(settings, environ)
    try:
        load_keyring(settings)  # each worker loads it again; fail here, once, first
    except KeyRingError as exc:
        where = settings.keys.directory
        message = str(exc) if where in str(exc) else f"key directory {where}: {exc}"
        hint = "" if "idp keys generate" in message else " (run `idp keys generate`)"
        raise ServeError(message + hint) from None
    configure_logging(settings.ops.log_format, settings.ops.log_level, root=True)
    warn_once(settings)
    # Prometheus: every worker writes its samples to one folder; /metrics sums them.
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="idp-metrics-")
    Server(
        interface=Interfaces.WSGI,
        websockets=False,
        log_level=LogLevels(settings.ops.log_level.lower()),
        log_dictconfig=_log_config(settings),
        log_access=False,  # idp.granian_app writes the access lines, redacted
        respawn_failed_workers=True,
        **args,
    ).serve()


def main() -> None:
    try:
        serve()
    except (ConfigError, ServeError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(1) from None


if __name__ == "__main__":  # pragma: no cover
    main()
