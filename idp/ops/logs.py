"""Request ids, log formatting, and keeping secrets in URLs out of every log.

Every request gets an id: the caller's ``X-Request-ID`` when it looks like one (a load
balancer or an upstream service usually sets it, so one id follows a request across
systems), otherwise a fresh random one. The id is returned in the ``X-Request-ID``
response header and added to every log record written while the request runs, so a
user's report ("it said error, reference 3f9c...") leads to the log lines.

With ``[ops] log_format = "json"`` each record is one JSON object per line (time,
level, logger, message, request_id, and the exception when there is one), which log
shippers read without parsing rules. Structured facts travel as fields of that object,
never printed into the message: an audit event's ``audit`` object (event, outcome,
user_id, client_id, details), an access line's ``method``, ``path``, ``status``,
``duration_ms``... (:data:`FIELDS_ATTRIBUTE`). Under gunicorn, :class:`JSONGunicornLogger`
writes its access and error logs the same way, and :func:`configure_logging` with
``root=True`` sends every other library's records (and Python warnings) through the
same formatter: every line the process writes is one JSON object.

Links sent by email carry their single-use secret in the path (``/verify/<token>``,
``/reset/<token>``, ...), and the push status URL carries its credential (the handle).
Access logs keep request lines for months and are read by far more people than the
mailbox the link went to, so a logged link is a usable link (OWASP ASVS 4.0 V7.1.1,
"the application does not log credentials"; RFC 6750 section 5.3 gives the same
advice about tokens in URLs). :func:`redact` replaces those values with
:data:`REDACTED`; it is the one function every log path goes through: the provider's
own formatters (:class:`TextFormatter`, :class:`JSONFormatter`), gunicorn's access and
error logs (:class:`GunicornLogger`, set in ``gunicorn.conf.py``) and the development
server's request log (:class:`RedactFilter` on the ``werkzeug`` logger, set by
``idp run``).

Which path segments are secret is read from the application's URL map, not from a
list of paths: every URL rule argument is treated as a secret unless its name is in
:data:`PUBLIC_ARGUMENTS`. A new link route (``/invite/<code>``) is therefore redacted
without any change here; an argument that is safe to log must be declared public.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import threading
import time
import traceback
from typing import Any

from flask import Flask, Response, g, has_request_context
from gunicorn import glogging
from werkzeug.routing import Map

from ..security.text import is_ascii_digits

HEADER = "X-Request-ID"
#: A record attribute (set with ``extra={FIELDS_ATTRIBUTE: {...}}``) whose members
#: :class:`JSONFormatter` writes as fields of the line.
FIELDS_ATTRIBUTE = "json_fields"
# Accept ids a proxy would send (UUIDs, hex, base64url); anything else is replaced,
# so a caller cannot inject line breaks or huge values into our logs.
_VALID_ID = re.compile(r"[A-Za-z0-9._-]{8,128}")
_HANDLER_MARK = "_idp_handler"

#: What a secret in a logged URL is replaced with.
REDACTED = "[redacted]"

#: URL rule arguments that are safe to log: names, kinds and database ids, none of
#: which lets anyone do anything. Every other rule argument is a secret (a link token,
#: the push status handle) and is redacted; a route with a new argument name is
#: redacted until someone decides here that its values are harmless.
PUBLIC_ARGUMENTS = frozenset(
    {"filename", "kind", "purpose", "challenge_id", "factor_id", "client_id", "user_id"}
)

#: Query parameters that carry credentials when a client puts them in a URL. The
#: provider reads ``id_token_hint`` from a query string (an ID token, which says who the
#: user is: OpenID Connect Core 1.0 section 3.1.2.1, RP-Initiated Logout 1.0 section 2)
#: and ``reset``, the password-reset link's token on the challenge page it leads to
#: (``/mfa/challenge?reset=<token>``); clients send the others there anyway, although
#: RFC 6749 section 2.3.1 forbids it for client credentials and RFC 6750 section 2.3
#: advises against it for access tokens.
SECRET_PARAMETERS = frozenset(
    {
        "access_token",
        "client_assertion",
        "client_secret",
        "code",
        "handle",
        "id_token",
        "id_token_hint",
        "password",
        "refresh_token",
        "registration_access_token",
        "reset",
        "token",
    }
)

# A path segment as it appears in a request line, a URL in a message or a JSON string:
# it ends at a slash, the query, a fragment, whitespace, a quote or a control character.
_SEGMENT = r"[^/?#\s\"'<>\x00-\x1f\x7f]+"
_SEGMENTS = r"[^?#\s\"'<>\x00-\x1f\x7f]+"  # a ``path`` converter spans slashes
# The same shape Werkzeug parses rules with (werkzeug.routing.rules._part_re).
_VARIABLE = re.compile(
    r"<(?:(?P<converter>[a-zA-Z_][a-zA-Z0-9_]*)(?:\((?P<args>.*?)\))?:)?"
    r"(?P<variable>[a-zA-Z_][a-zA-Z0-9_]*)>"
)
_QUERY = (
    r"(?:(?<=[?&;])|^)(?i:"
    + "|".join(re.escape(p) for p in sorted(SECRET_PARAMETERS))
    + r")=([^&;#\s\"'<>\x00-\x1f\x7f]+)"
)
# Before any application has registered its URL map in this process (nothing that
# serves requests logs then), any long run of token characters in a path is taken for
# a secret: every secret the provider puts in a URL is 24 or more such characters.
_FALLBACK = re.compile(r"(?<=/)([A-Za-z0-9_~.-]{24,})(?=[/?#\s\"'<>]|$)|" + _QUERY)


def is_secret_argument(name: str) -> bool:
    """Whether values of the URL rule argument *name* must never be logged."""
    return name not in PUBLIC_ARGUMENTS


def secret_rules(url_map: Map) -> list[Any]:
    """The URL rules of *url_map* whose path carries a secret (an argument that is not
    in :data:`PUBLIC_ARGUMENTS`)."""
    return [
        rule
        for rule in url_map.iter_rules()
        if any(is_secret_argument(name) for name in rule.arguments)
    ]


def _rule_pattern(rule_text: str) -> str | None:
    """A regex for the part of a rule's path up to its last secret segment, with each
    secret segment as a capturing group (other variables match but are kept)."""
    parts: list[str] = []
    last_secret = -1
    pos = 0
    for m in _VARIABLE.finditer(rule_text):
        parts.append(re.escape(rule_text[pos : m.start()]))
        segment = _SEGMENTS if m["converter"] == "path" else _SEGMENT
        if is_secret_argument(m["variable"]):
            parts.append(f"({segment})")
            last_secret = len(parts)
        else:
            parts.append(f"(?:{segment})")
        pos = m.end()
    if last_secret < 0:
        return None
    # Only the part up to the secret matters: a mistyped or truncated tail
    # (/reset/<token>/nonsense, a 404) still carries the secret.
    return "".join(parts[:last_secret])


class _Redactor:
    """The compiled patterns for one URL map, rebuilt when rules are added."""

    def __init__(self, url_map: Map) -> None:
        self.url_map = url_map
        self.size = -1
        self.pattern = _FALLBACK
        self.lock = threading.Lock()

    def compiled(self) -> re.Pattern[str]:
        rules = [rule.rule for rule in self.url_map.iter_rules()]
        if len(rules) != self.size:
            with self.lock:
                found = {p for p in map(_rule_pattern, rules) if p is not None}
                # Longest first, so /reset/<token>/x is tried before a shorter rule.
                alternatives = sorted(found, key=len, reverse=True) + [_QUERY]
                self.pattern = re.compile("|".join(alternatives))
                self.size = len(rules)
        return self.pattern


_current: Map | None = None


def register_url_map(url_map: Map) -> None:
    """Make *url_map* the one :func:`redact` uses by default in this process (called
    for every application built, so a gunicorn worker uses the app it serves)."""
    global _current
    _current = url_map


def _redactor(url_map: Map | None) -> _Redactor | None:
    url_map = url_map if url_map is not None else _current
    if url_map is None:
        return None
    found = getattr(url_map, "_idp_redactor", None)
    if found is None:
        found = _Redactor(url_map)
        url_map._idp_redactor = found  # type: ignore[attr-defined]
    return found


def _blank_groups(m: re.Match[str]) -> str:
    text, base = m.group(0), m.start(0)
    out, pos = [], 0
    for i in range(1, (m.re.groups or 0) + 1):
        start = m.start(i)
        if start < 0:
            continue
        out.append(text[pos : start - base])
        out.append(REDACTED)
        pos = m.end(i) - base
    out.append(text[pos:])
    return "".join(out)


def redact(text: str, url_map: Map | None = None) -> str:
    """*text* (a request line, a path, a URL or any log message) with every secret
    path segment of a route in *url_map* (default: the application of this process)
    and every credential query parameter replaced by :data:`REDACTED`."""
    if not text or ("/" not in text and "=" not in text):
        return text
    redactor = _redactor(url_map)
    pattern = redactor.compiled() if redactor is not None else _FALLBACK
    return pattern.sub(_blank_groups, text)


class RedactFilter(logging.Filter):
    """Redacts a record's formatted message and traceback in place.

    For loggers whose handlers and formatters are not ours (the development server's
    ``werkzeug`` logger, gunicorn's error log): the record leaves the filter with its
    final message and no arguments, so any formatter prints the redacted text.
    """

    def __init__(self, url_map: Map | None = None) -> None:
        super().__init__()
        self.url_map = url_map

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken log call is the handler's to report
            return True
        record.msg = redact(message, self.url_map)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.url_map)
        return True


def install_werkzeug_redaction(url_map: Map | None = None) -> None:
    """Redact the development server's request log (``werkzeug`` logger); idempotent."""
    logger = logging.getLogger("werkzeug")
    if not any(isinstance(f, RedactFilter) for f in logger.filters):
        logger.addFilter(RedactFilter(url_map))


class GunicornLogger(glogging.Logger):
    """gunicorn's logger with secrets redacted (``logger_class`` in gunicorn.conf.py).

    Access lines: every atom (``%(r)s`` the request line, ``%(U)s`` the path,
    ``%(q)s`` the query, ``%(f)s`` the Referer, any ``%({header}i)s`` or
    ``%({VAR}e)s``) goes through :func:`redact`, whatever ``access_log_format`` says.
    Error lines ("Error handling request /reset/...", invalid request lines) go
    through :class:`RedactFilter`.
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        if not any(isinstance(f, RedactFilter) for f in self.error_log.filters):
            self.error_log.addFilter(RedactFilter())

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict:
        atoms = super().atoms(resp, req, environ, request_time)
        return {k: redact(v) if isinstance(v, str) else v for k, v in atoms.items()}


class JSONGunicornLogger(GunicornLogger):
    """gunicorn's logs as one JSON object per line (``[ops] log_format = "json"``).

    Access lines carry ``method``, ``path`` (without the query), ``query``, ``status``,
    ``duration_ms``, ``bytes``, ``remote``, ``user_agent`` and ``request_id`` (the
    ``X-Request-ID`` the provider answered with), every value redacted by
    :func:`redact`; error lines (start-up, worker boots and exits, tracebacks) use
    :class:`JSONFormatter`. ``gunicorn.conf.py`` picks this class when ``[ops]``
    asks for JSON.
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JSONFormatter())

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.access_log_enabled:
            return
        try:
            atoms = self.atoms(resp, req, environ, request_time)
            method, path, status = atoms.get("m", "-"), atoms.get("U", "-"), atoms.get("s", "-")
            request_id = atoms.get("{x-request-id}o") or None
            fields = {
                "method": method,
                "path": path,
                "query": atoms.get("q") or None,
                "status": int(status) if is_ascii_digits(str(status)) else status,
                "duration_ms": round(request_time.total_seconds() * 1000, 3),
                "bytes": atoms.get("B") if isinstance(atoms.get("B"), int) else None,
                "remote": atoms.get("h"),
                "user_agent": atoms.get("a") if atoms.get("a") != "-" else None,
            }
            self.access_log.info(
                "%s %s %s", method, path, status,
                extra={FIELDS_ATTRIBUTE: fields, "request_id": request_id},
            )  # fmt: skip
        except Exception:  # noqa: BLE001 - gunicorn's own access() reports the same way
            self.error(traceback.format_exc())


def current_request_id() -> str | None:
    if has_request_context():
        return g.get("request_id")
    return None


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` ("-" outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", "-") in (None, "-"):  # kept when a line names it
            record.request_id = current_request_id() or "-"
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object per record, secrets in URLs redacted."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": _request_id(record),
        }
        fields = getattr(record, FIELDS_ATTRIBUTE, None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                if key not in entry:
                    entry[key] = _redact_value(value)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = redact(record.exc_text)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


def _request_id(record: logging.LogRecord) -> str | None:
    found = getattr(record, "request_id", None)
    if found and found != "-":
        return found
    return current_request_id()


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class TextFormatter(logging.Formatter):
    """:data:`TEXT_FORMAT` lines (with the traceback), secrets in URLs redacted."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(
    log_format: str = "text", level: str = "INFO", stream=None, *, root: bool = False
) -> None:
    """Install one handler on the ``idp`` logger (idempotent: replaces our own handler).

    Only the ``idp`` logger tree is configured, so an embedding server (gunicorn) keeps
    its own access and error logs (redacted by :class:`GunicornLogger`). With
    ``root=True`` (the serving entry points) the root logger gets the same handler at
    WARNING and Python warnings are logged, so with ``"json"`` no library writes a line
    that is not JSON.
    """
    loggers = [(logging.getLogger("idp"), level)]
    if root:
        loggers.append((logging.getLogger(), "WARNING"))
        logging.captureWarnings(True)
    for logger, logger_level in loggers:
        for handler in list(logger.handlers):
            if getattr(handler, _HANDLER_MARK, False):
                logger.removeHandler(handler)
        handler = logging.StreamHandler(stream or sys.stderr)
        setattr(handler, _HANDLER_MARK, True)
        handler.addFilter(RequestIdFilter())
        handler.setFormatter(JSONFormatter() if log_format == "json" else TextFormatter())
        logger.addHandler(handler)
        logger.setLevel(logger_level)
    logging.getLogger("idp").propagate = False


def init_request_ids(app: Flask) -> None:
    # The URL map is read when something is logged, so rules registered after this
    # call (every blueprint) are included.
    register_url_map(app.url_map)

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


class AccessLog:
    """One access line per request, written by the application (``idp serve``: granian's
    own access log cannot redact). The same content as gunicorn's: the request line
    (every secret in it redacted by :func:`redact`), status, bytes, duration and the
    request id, as text or, with ``[ops] log_format = "json"``, the fields of
    :class:`JSONGunicornLogger`. Lines go to the ``idp.access`` logger when the
    response is closed (PEP 3333), so the duration covers the whole body."""

    def __init__(self, app: Any, log_format: str = "text") -> None:
        self.app, self.json = app, log_format == "json"
        self.log = logging.getLogger("idp.access")

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        started = time.perf_counter()
        seen: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen["status"], seen["headers"] = status, headers
            return start_response(status, headers, exc_info)

        body = self.app(environ, capture)
        return _Closing(body, lambda: self._write(environ, seen, started))

    def _write(self, environ: dict[str, Any], seen: dict[str, Any], started: float) -> None:
        if not self.log.isEnabledFor(logging.INFO):
            return
        headers = {k.lower(): v for k, v in seen.get("headers", ())}
        status = str(seen.get("status", "500")).split(" ", 1)[0]
        method = environ.get("REQUEST_METHOD", "-")
        path = redact(environ.get("PATH_INFO", "") or "/")
        query = redact(environ.get("QUERY_STRING", ""))
        length = headers.get("content-length", "")
        size = int(length) if is_ascii_digits(length) else None
        ms = round((time.perf_counter() - started) * 1000, 3)
        remote = environ.get("REMOTE_ADDR", "-")
        request_id = headers.get(HEADER.lower())
        if self.json:
            agent = environ.get("HTTP_USER_AGENT")
            fields = {"method": method, "path": path, "query": query or None,
                      "status": int(status) if is_ascii_digits(status) else status,
                      "duration_ms": ms, "bytes": size, "remote": remote,
                      "user_agent": redact(agent) if agent else None}  # fmt: skip
            self.log.info("%s %s %s", method, path, status,
                          extra={FIELDS_ATTRIBUTE: fields, "request_id": request_id})  # fmt: skip
            return
        target = f"{path}?{query}" if query else path
        protocol = environ.get("SERVER_PROTOCOL", "HTTP/1.1")
        self.log.info('%s "%s %s %s" %s %s %sms', remote, method, target, protocol,
                      status, size if size is not None else "-", ms,
                      extra={"request_id": request_id or "-"})  # fmt: skip


class _Closing:
    """A response body that calls *done* once when the server closes it."""

    def __init__(self, body: Any, done: Any) -> None:
        self.body, self.done = body, done

    def __iter__(self) -> Any:
        return iter(self.body)

    def close(self) -> None:
        try:
            if hasattr(self.body, "close"):
                self.body.close()
        finally:
            done, self.done = self.done, None
            if done is not None:
                done()
