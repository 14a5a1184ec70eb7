"""Request ids and log formatting.

Every request gets an id: the caller's ``X-Request-ID`` when it looks like one (a load
balancer or an upstream service usually sets it, so one id follows a request across
systems), otherwise a fresh random one. The id is returned in the ``X-Request-ID``
response header and added to every log record written while the request runs, so a
user's report ("it said error, reference 3f9c...") leads to the log lines.

With ``[ops] log_format = "json"`` each record is one JSON object per line (time,
level, logger, message, request_id, and the exception when there is one), which log
shippers read without parsing rules.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time

from flask import Flask, Response, g, has_request_context

HEADER = "X-Request-ID"
# Accept ids a proxy would send (UUIDs, hex, base64url); anything else is replaced,
# so a caller cannot inject line breaks or huge values into our logs.
_VALID_ID = re.compile(r"[A-Za-z0-9._-]{8,128}")
_HANDLER_MARK = "_idp_handler"


def current_request_id() -> str | None:
    if has_request_context():
        return g.get("request_id")
    return None


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` ("-" outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id() or "-"
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or current_request_id(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def configure_logging(log_format: str = "text", level: str = "INFO", stream=None) -> None:
    """Install one handler on the ``idp`` logger (idempotent: replaces our own handler).

    Only the ``idp`` logger tree is configured, so an embedding server (gunicorn) keeps
    its own access and error logs.
    """
    logger = logging.getLogger("idp")
    for handler in list(logger.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.addFilter(RequestIdFilter())
    if log_format == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def init_request_ids(app: Flask) -> None:
    @app.before_request
    def _assign_request_id() -> None:
        from flask import request

        incoming = request.headers.get(HEADER, "")
        g.request_id = incoming if _VALID_ID.fullmatch(incoming) else secrets.token_hex(16)

    @app.after_request
    def _return_request_id(resp: Response) -> Response:
        request_id = g.get("request_id")
        if request_id:
            resp.headers[HEADER] = request_id
        return resp
