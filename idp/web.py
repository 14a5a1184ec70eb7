"""Request plumbing shared by every page: browser id and session cookies, CSRF,
security headers, and the one place domain errors become responses."""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, abort, g, jsonify, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from sqlalchemy.exc import DataError, OperationalError
from werkzeug.exceptions import HTTPException

from .auth.session import BrowserSession
from .extensions import db
from .models import User
from .security.csrf import CSRFError
from .security.jsontext import (  # noqa: F401  (the JSON rule, re-exported for views)
    MAX_JSON_DEPTH,
    JSONRefused,
    JSONTooDeep,
    json_depth,
    looks_like_json,
    parse_json,
)
from .security.ratelimit import RateLimited
from .security.text import web_origin
from .services import services
from .store import StoreUnavailable
from .wording import tel_uri

log = logging.getLogger("idp.web")

BROWSER_COOKIE = "idp_browser"
# Endpoints that speak JSON (errors in JSON too, RFC 6749 5.2 / RFC 6750 3).
JSON_PATHS = (
    "/token", "/introspect", "/revoke", "/userinfo", "/jwks", "/.well-known/",
    "/connect/register", "/push/v1/", "/healthz", "/readyz", "/admin/api/",
)  # fmt: skip
#: JSON endpoints matched by their whole path (a prefix would catch pages too).
JSON_EXACT_PATHS = ("/par",)


def _secure_cookies() -> bool:
    return services().settings.issuer.startswith("https://")


def secure_cookies() -> bool:
    """Whether the provider's cookies are ``Secure`` (and ``__Host-``): behind https."""
    return _secure_cookies()


def cookie_name(base: str) -> str:
    """The name a cookie of the provider has on this deployment: behind https it carries
    the ``__Host-`` prefix (RFC 6265bis 4.1.3.2), so the browser keeps it only when it
    was set by this very host, Secure, with ``Path=/`` and no ``Domain``: a sibling
    subdomain or a plain-http page cannot plant or overwrite it."""
    return f"__Host-{base}" if _secure_cookies() else base


def browser_cookie() -> str | None:
    """The value of this browser's ``idp_browser`` cookie, as sent."""
    return request.cookies.get(cookie_name(BROWSER_COOKIE))


def device_cookie() -> str | None:
    """The value of this browser's device cookie (:mod:`idp.auth.devices`), as sent."""
    from .auth.devices import COOKIE

    return request.cookies.get(cookie_name(COOKIE))


def set_device_cookie(value: str) -> None:
    """Schedule the device cookie to be replaced (after a successful sign-in)."""
    g.device_cookie = value


def browser_id() -> str:
    """A random id for this browser, used to bind CSRF tokens and transactions."""
    if "browser_id" not in g:
        value = browser_cookie() or ""
        if not (20 <= len(value) <= 64) or not value.replace("-", "").replace("_", "").isalnum():
            value = secrets.token_urlsafe(24)
            g.set_browser_cookie = value
        g.browser_id = value
    return g.browser_id


def current_session() -> BrowserSession | None:
    """The signed-in browser session, if any (loaded once per request)."""
    if "idp_session" not in g:
        svc = services()
        g.idp_session = svc.sessions.load(
            request.cookies.get(cookie_name(svc.settings.session.cookie_name))
        )
    return g.idp_session


def current_user() -> User | None:
    if "idp_user" not in g:
        s = current_session()
        user = db.session.get(User, s.user_id) if s else None
        g.idp_user = user if user is not None and user.is_active else None
    return g.idp_user


def set_session_cookie(value: str | None) -> None:
    """Schedule the session cookie to be replaced (rotation) or cleared (None)."""
    g.session_cookie = value
    g.pop("idp_session", None)
    g.pop("idp_user", None)


def adopt_session(cookie: str, session: BrowserSession) -> None:
    """Schedule the new session cookie (rotation) and use *session* for the rest of this
    request, so a step that just passed can take the sign-in on at once."""
    set_session_cookie(cookie)
    g.idp_session = session


def csrf_token() -> str:
    return services().csrf.generate(browser_id())


def validate_csrf() -> None:
    services().csrf.validate(request.form.get("csrf_token"), browser_cookie())


def safe_admin_path(value: str | None) -> str | None:
    """A same-site admin path to continue to after a step-up, never another origin."""
    if not value or "\\" in value or value.startswith("//"):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith("/admin"):
        return None
    return value


def allow_form_action(uri: str) -> None:
    """Let this page's forms end in a redirect to *uri*'s origin (CSP form-action
    applies to the redirects that follow a form submission)."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https") and parts.netloc:
        g.setdefault("form_action", []).append(f"{parts.scheme}://{parts.netloc}")


def allow_img_src(uri: str | None) -> str | None:
    """Let this page show an image from *uri*'s origin (CSP img-src); returns *uri*
    when it may be shown (http(s) with a plain host name), else None."""
    origin = web_origin(uri)
    if origin is None:
        return None
    g.setdefault("img_src", []).append(origin)
    return uri


def _service_logo() -> str:
    """[ui] logo_url for the page header: a /static/ path, or an https URL whose origin
    this page's CSP then allows."""
    logo = services().settings.ui.logo_url
    if logo.startswith("https://"):
        allow_img_src(logo)
    return logo


def too_many(exc: RateLimited) -> str:
    """What a page says when a limit refused the request (with :func:`limited`)."""
    return ngettext(
        "Too many attempts. Wait %(num)d second and try again.",
        "Too many attempts. Wait %(num)d seconds and try again.",
        exc.retry_after,
    )


def limited(resp: Response, exc: RateLimited) -> Response:
    """*resp* (a page that says :func:`too_many`) as a 429 with ``Retry-After``."""
    resp.status_code = 429
    resp.headers["Retry-After"] = str(exc.retry_after)
    return resp


def _wants_json() -> bool:
    return request.path.startswith(JSON_PATHS) or request.path in JSON_EXACT_PATHS


def error_page(status: int, title: str, message: str, **headers: str) -> Response:
    if _wants_json():
        # RFC 6749 5.2 / RFC 6750 3.1: a malformed request is invalid_request, never
        # server_error (which would blame the server for the client's request).
        codes = {
            429: "slow_down",
            503: "temporarily_unavailable",
            400: "invalid_request",
            404: "not_found",
            405: "invalid_request",
            413: "invalid_request",
            415: "invalid_request",
        }
        resp = jsonify(error=codes.get(status, "server_error"), error_description=message)
    else:
        # A server-side failure shows the request id, so a report to the help desk
        # leads to the log lines of that request.
        reference = g.get("request_id") if status >= 500 else None
        resp = Response(
            render_template("error.html", title=title, message=message, reference=reference)
        )
    resp.status_code = status
    for k, v in headers.items():
        resp.headers[k.replace("_", "-")] = v
    return resp


def _holds_nul(value: Any, depth: int = 0) -> bool:
    """True when a string anywhere in parsed request JSON holds NUL. The JSON came
    through :func:`parse_json`, so it is at most MAX_JSON_DEPTH deep; anything deeper
    is refused rather than left unchecked."""
    if isinstance(value, str):
        return "\x00" in value
    if depth > MAX_JSON_DEPTH:
        return True
    if isinstance(value, dict):
        return any(_holds_nul(k, depth + 1) or _holds_nul(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v, depth + 1) for v in value)
    return False


# -- the request edge: one place where request text is checked, for every route -----------

# Characters no request parameter may hold: NUL (PostgreSQL text cannot store it, C
# strings end at it) and the other C0 controls but tab, line feed and carriage return,
# which no form field or protocol value needs and which break logs and mail headers.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _body_type() -> Response | None:
    """A body is form-encoded, multipart or JSON (RFC 6749 3.2 for the OAuth endpoints)."""
    if request.method not in ("POST", "PUT") or request.mimetype in (
        "",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "application/json",
    ):
        return None
    if _wants_json():
        # RFC 6749 3.2, 5.2: a 400 invalid_request for the OAuth endpoints.
        return error_page(
            400,
            "Unsupported request body",
            "Send the parameters as application/x-www-form-urlencoded.",
        )
    abort(415)


def _path_ids() -> Response | None:
    """An id in the path that no database integer holds is no row (SQLite would raise
    OverflowError)."""
    for arg in (request.view_args or {}).values():
        if isinstance(arg, int) and not -MAX_DB_INTEGER - 1 <= arg <= MAX_DB_INTEGER:
            abort(404)
    return None


#: Protocol pages: their parameters come from applications, not from people typing.
_PROTOCOL_PAGES = ("/authorize", "/logout", "/consent")


def _parameters() -> Response | None:
    """Every query and form parameter: no control characters, no JSON-looking value
    nested deeper than any reader of it accepts, and (protocol endpoints) a bounded
    size. A person's form field that is too long gets the field's own message from its
    page instead of a dead end here (the body as a whole stays bounded by
    MAX_CONTENT_LENGTH)."""
    limit = services().settings.security.max_parameter_length
    protocol = _wants_json() or request.path.startswith(_PROTOCOL_PAGES)
    for name, value in request.values.items(multi=True):
        key = name if isinstance(name, str) else ""  # a multipart part without name=
        shown = repr(_CONTROL.sub("?", key[:40]))
        if len(key) > 128 or (protocol and len(value) > limit):
            return error_page(
                400,
                _("Request too large"),
                _(
                    "The parameter %(name)s is longer than %(limit)s characters.",
                    name=shown,
                    limit=limit,
                ),
            )
        if _CONTROL.search(key) or _CONTROL.search(value):
            return error_page(
                400,
                _("Invalid request"),
                _(
                    "The parameter %(name)s contains a control character (such as NUL) that "
                    "no field accepts. Go back, retype it and try again.",
                    name=shown,
                ),
            )
        if looks_like_json(value) and json_depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
            # Whatever reads this parameter as JSON (claims, a WebAuthn response, a
            # JWKS) would recurse once per level: refused here, for every endpoint.
            return error_page(
                400,
                _("Invalid request"),
                _(
                    "The parameter %(name)s is nested more than %(depth)s levels deep. Go "
                    "back to the page or application that sent you and try again.",
                    name=shown,
                    depth=MAX_JSON_DEPTH,
                ),
            )
    return None


def _json_body() -> Response | None:
    """A JSON body within the depth limit, without NUL in any string."""
    try:
        body = request_json()
    except JSONTooDeep:
        return error_page(
            400,
            _("Invalid request"),
            _("The JSON body is nested more than %(depth)s levels deep.", depth=MAX_JSON_DEPTH),
        )
    except JSONRefused:
        return None  # not JSON: the endpoint says what it expects
    if _holds_nul(body):
        return error_page(
            400, _("Invalid request"), _("The request body contains a NUL character.")
        )
    return None


#: The request edge, in order. A check returns the response that refuses the request,
#: or None; ``_bad_data`` (DataError -> 400) stays as the net under all of them.
EDGE_CHECKS = (_body_type, _path_ids, _parameters, _json_body)


def init_web(app: Flask) -> None:
    @app.context_processor
    def _template_globals():
        return {
            "csrf_token": csrf_token,
            "service_name": services().settings.ui.service_name,
            "help_phone": services().settings.ui.help_phone,
            # (help_hours and help_text, in the page's language: idp.i18n)
            "help_tel": tel_uri(services().settings.ui.help_phone),
            "logo_url": _service_logo(),
            "theme_css": bool(services().settings.ui.primary_color),
        }

    @app.get("/theme.css")
    def theme_css() -> Response:
        """The deployment's colour ([ui] primary_color) as a stylesheet: the pages' CSP
        allows no inline style, so the colour comes from a file of its own."""
        color = services().settings.ui.primary_color or "#005ea2"
        css = (
            f":root {{ --idp-primary: {color}; }}\n"
            ".usa-header, .idp-header { background-color: var(--idp-primary); }\n"
            ".usa-button:not(.usa-button--outline):not(.usa-button--unstyled) "
            "{ background-color: var(--idp-primary); }\n"
        )
        resp = Response(css, mimetype="text/css")
        resp.headers["Cache-Control"] = "public, max-age=300"
        return resp

    @app.before_request
    def _edge() -> Response | None:
        # Request text is checked once, here, for every route (see EDGE_CHECKS).
        for check in EDGE_CHECKS:
            refused = check()
            if refused is not None:
                return refused
        return None

    @app.after_request
    def _headers(resp: Response) -> Response:
        svc = services()
        secure = _secure_cookies()
        value = g.get("set_browser_cookie")
        if value:
            resp.set_cookie(
                cookie_name(BROWSER_COOKIE),
                value,
                httponly=True,
                secure=secure,
                samesite="Lax",
                path="/",
            )
        if g.get("device_cookie"):
            from .auth.devices import COOKIE

            resp.set_cookie(
                cookie_name(COOKIE),
                g.device_cookie,
                max_age=svc.settings.login.device_trust_days * 86400,
                httponly=True,
                secure=secure,
                samesite="Lax",
                path="/",
            )
        if "session_cookie" in g:
            name = cookie_name(svc.settings.session.cookie_name)
            if g.session_cookie:
                resp.set_cookie(
                    name, g.session_cookie, httponly=True, secure=secure, samesite="Lax", path="/"
                )
            else:
                resp.delete_cookie(name, path="/", secure=secure, httponly=True, samesite="Lax")
        form_action = " ".join(["'self'", *dict.fromkeys(g.get("form_action", []))])
        # A page may show images from exact origins it names (the application's logo).
        img_src = " ".join(["'self'", "data:", *dict.fromkeys(g.get("img_src", []))])
        resp.headers.setdefault(
            "Content-Security-Policy",
            f"default-src 'none'; script-src 'self'; style-src 'self'; img-src {img_src}; "
            "font-src 'self'; "
            f"connect-src 'self'; form-action {form_action}; frame-ancestors 'none'; "
            "base-uri 'none'",
        )
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        if request.is_secure:
            resp.headers.setdefault(
                "Strict-Transport-Security",
                f"max-age={svc.settings.security.hsts_max_age}; includeSubDomains",
            )
        if resp.mimetype == "text/html" or request.path.startswith(("/token", "/userinfo")):
            resp.headers["Cache-Control"] = "no-store"
            resp.headers["Pragma"] = "no-cache"
        return resp

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError):
        return error_page(
            400,
            _("This form has expired"),
            _(
                "The page was open too long or came from somewhere else. Go back, reload the "
                "page and try again."
            ),
        )

    @app.errorhandler(RateLimited)
    def _ratelimited(exc: RateLimited):
        return error_page(
            429,
            _("Too many attempts"),
            ngettext(
                "Too many attempts from here. Wait %(num)d second and try again.",
                "Too many attempts from here. Wait %(num)d seconds and try again.",
                exc.retry_after,
            ),
            Retry_After=str(exc.retry_after),
        )

    @app.errorhandler(StoreUnavailable)
    def _store_down(exc: StoreUnavailable):
        log.error("store unavailable: %s", exc)
        db.session.rollback()
        return error_page(
            503,
            _("Sign-in is temporarily unavailable"),
            _(
                "We cannot check sign-in attempts safely right now, so sign-in is paused. "
                "Try again in a minute."
            ),
            Retry_After="30",
        )

    @app.errorhandler(DataError)
    def _bad_data(exc: DataError):
        # A value the database cannot store (a NUL byte, text longer than its column)
        # that no validator caught: the client's input, not a server failure.
        log.warning("database refused a value: %s", exc.orig)
        db.session.rollback()
        return error_page(
            400,
            _("Invalid request"),
            _("Part of the request contains characters or a length we cannot accept."),
        )

    @app.errorhandler(OperationalError)
    def _db_down(exc: OperationalError):
        log.error("database unavailable: %s", exc)
        db.session.rollback()
        return error_page(
            503,
            _("Temporarily unavailable"),
            _("The service is temporarily unavailable."),
            Retry_After="30",
        )

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        title, message = HTTP_ERRORS.get(exc.code or 500, (None, None))
        if title is None or _wants_json():
            title, message = exc.name, exc.description or exc.name
        resp = error_page(exc.code or 500, str(title), str(message))
        # RFC 9110 15.5.6: a 405 names the methods the resource supports.
        allow = dict(exc.get_headers()).get("Allow")
        if allow:
            resp.headers["Allow"] = allow
        return resp

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        db.session.rollback()
        return error_page(500, _("Something went wrong"), _("Something went wrong on our side."))


#: The pages of the HTTP errors people meet, in their language (the JSON endpoints keep
#: Werkzeug's English ones).
HTTP_ERRORS = {
    400: (_l("Bad request"), _l("The request could not be understood. Go back and try again.")),
    403: (_l("Not allowed"), _l("You do not have permission to open this page.")),
    404: (
        _l("Page not found"),
        _l("There is no page at this address. Check the address, or go back and try again."),
    ),
    405: (
        _l("Not allowed"),
        _l("This page cannot be used this way. Go back and use the page's own buttons."),
    ),
    413: (_l("Request too large"), _l("What you sent is too large. Send less and try again.")),
    415: (
        _l("Unsupported request"),
        _l("The request was sent in a form this page does not accept."),
    ),
    500: (_l("Something went wrong"), _l("Something went wrong on our side.")),
}


# -- JSON in requests: one parsing rule with a depth limit ------------------------------

#: The largest integer a database column can hold (SQL BIGINT, SQLite INTEGER).
MAX_DB_INTEGER = 2**63 - 1


def request_json() -> Any:
    """The JSON body of this request (``None`` when it is not ``application/json``),
    parsed once with :func:`parse_json`; raises :class:`JSONRefused` like it."""
    if not request.is_json:
        return None
    if "request_json" not in g:
        try:
            g.request_json = (parse_json(request.get_data(cache=True)), None)
        except JSONRefused as exc:
            g.request_json = (None, exc)
    value, error = g.request_json
    if error is not None:
        raise error
    return value
