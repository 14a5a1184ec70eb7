"""The language of the provider's pages, emails and messages: English (the language the
text is written in) and Spanish, through Flask-Babel and the gettext catalogs in
``idp/translations/<lang>/LC_MESSAGES/messages.po`` (compiled to ``.mo`` by
``make translations`` and by the wheel build, ``setup.py``).

A page's language, in order (:func:`choose`):

1. the visitor's explicit choice: the "English" / "Español" link on every page
   (``GET /language``), remembered in a cookie;
2. the ``ui_locales`` parameter of the application's authorization request (OpenID
   Connect Core 1.0, section 3.1.2.1), kept with the request on the sign-in transaction,
   so every page of that sign-in uses it;
3. the browser's ``Accept-Language`` (RFC 9110, section 12.5.4);
4. English.

The admin pages stay in English. A message that no browser asked for (a lockout
notice, an admin's reminder, the companion app's answers) uses the language stored on
the account (``users.locale``: set at registration and whenever the signed-in user
picks a language); codes sent during a sign-in use the language of its pages.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from flask import Blueprint, Flask, Response, has_request_context, redirect, request, url_for
from flask_babel import Babel, get_locale
from flask_babel import gettext as _
from werkzeug.datastructures import LanguageAccept
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_accept_header

from .wording import duration_words, long_date, number

#: Languages of the pages, the first one the language the text is written in.
SUPPORTED: tuple[str, ...] = ("en", "es")
DEFAULT = "en"
#: Each language's name in itself, as the language links show it.
LANGUAGE_NAMES = {"en": "English", "es": "Español"}
#: The cookie of the explicit choice (``__Host-idp_lang`` behind https).
COOKIE = "idp_lang"
COOKIE_MAX_AGE = 365 * 86400
#: Paths whose pages stay in English whatever the visitor's language.
ENGLISH_ONLY = ("/admin",)
TRANSLATIONS = Path(__file__).resolve().parent / "translations"
#: Longest ``next`` path the language link goes back to.
MAX_NEXT = 2048
#: A page's own ``next`` keyword ("account"), kept on the language link.
_NEXT_KEYWORD = re.compile(r"[a-z][a-z_]{0,31}")

bp = Blueprint("i18n", __name__)


# -- choosing a language (pure functions) --------------------------------------------------


def supported(tag: Any) -> str | None:
    """The supported language a BCP 47 tag (RFC 5646) names, by its primary subtag
    (``"es-MX"`` and ``"es_419"`` are ``"es"``), or None."""
    if not isinstance(tag, str) or not tag.strip() or len(tag) > 35:
        return None
    primary = tag.strip().replace("_", "-").split("-", 1)[0].lower()
    return primary if primary in SUPPORTED else None


def from_ui_locales(value: str | None) -> str | None:
    """The first supported language of an OpenID Connect ``ui_locales`` value: BCP 47
    tags separated by spaces, in order of preference (OIDC Core 3.1.2.1). Tags we do
    not have are skipped, as the specification allows."""
    for tag in (value or "").split()[:20]:
        lang = supported(tag)
        if lang:
            return lang
    return None


def from_accept_language(header: str | None) -> str | None:
    """The supported language the browser prefers (``Accept-Language``, RFC 9110
    12.5.4): the ranges in order of quality, each by its primary subtag (``es-419`` is
    Spanish; ``en-US, es;q=0.9`` is English); ``q=0`` refuses a language. None when the
    browser names none we have."""
    if not header:
        return None
    for tag, quality in parse_accept_header(header[:1024], LanguageAccept):
        lang = supported(tag) if quality > 0 else None
        if lang:
            return lang
    return None


def choose(
    *, cookie: str | None = None, ui_locales: str | None = None, accept_language: str | None = None
) -> str:
    """A page's language: the visitor's explicit choice (the cookie), then the
    application's ``ui_locales``, then ``Accept-Language``, then English."""
    return (
        supported(cookie)
        or from_ui_locales(ui_locales)
        or from_accept_language(accept_language)
        or DEFAULT
    )


def safe_local_path(value: str | None, default: str = "/") -> str:
    """A path on this site to go back to, or *default*: it starts with one ``/`` and names
    no other origin. Refused: ``//host`` and ``/\\host`` (browsers read both as another
    host), anything with a scheme or host, whitespace and control characters (browsers
    drop tabs and line feeds from a URL, so ``/<TAB>/host`` would become ``//host``),
    non-ASCII text, and anything longer than :data:`MAX_NEXT`."""
    if not isinstance(value, str) or not value or len(value) > MAX_NEXT:
        return default
    if not value.isascii() or not value.startswith("/") or value.startswith("//"):
        return default
    if "\\" in value or any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return default
    try:
        parts = urlsplit(value)
    except ValueError:
        return default
    if parts.scheme or parts.netloc:
        return default
    return value


# -- the language of this request ---------------------------------------------------------


def page_locale() -> str:
    """The language of the page being rendered (or of the message being written under
    :func:`flask_babel.force_locale`); English outside a request."""
    locale = get_locale()
    return (supported(str(locale)) or DEFAULT) if locale is not None else DEFAULT


def account_locale(user: Any, fallback: str | None = None) -> str:
    """The language of a message to *user* (an email to the account, a lockout notice,
    an admin's reminder, the companion app's answers): the account's language, else
    *fallback* (the language of the page that caused it, when that page is gone), else
    the page's, else English."""
    return supported(getattr(user, "locale", None)) or supported(fallback) or page_locale()


def _request_ui_locales() -> str | None:
    """``ui_locales`` of the authorization request this page belongs to: on
    ``/authorize`` itself, or on the sign-in transaction the page names (``txn``),
    if it is this browser's."""
    from .services import services
    from .web import browser_cookie

    if request.path == "/authorize":
        return request.args.get("ui_locales") or _form_value("ui_locales")
    txn_id = request.args.get("txn") or _form_value("txn")
    if not txn_id:
        return None
    txn = services().transactions.get(txn_id, browser_cookie())
    return txn.params.get("ui_locales") if txn is not None else None


def _form_value(name: str) -> str | None:
    """A form field, without reading a body that is not a form."""
    if request.method != "POST" or request.mimetype not in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        return None
    try:
        return request.form.get(name)
    except HTTPException:
        # A body too large to parse (413): the page that says so is still rendered,
        # in a language chosen without it.
        return None


def _english_only() -> bool:
    """The admin pages, and the JSON endpoints: an OAuth ``error_description`` is ASCII
    (RFC 6749 5.2), and the companion app's answers use the account's language
    (:mod:`idp.mfa.push.api`)."""
    from .web import JSON_EXACT_PATHS, JSON_PATHS

    path = request.path
    return path.startswith((*ENGLISH_ONLY, *JSON_PATHS)) or path in JSON_EXACT_PATHS


def select_locale() -> str:
    """Flask-Babel's locale selector: :func:`choose` with this request's cookie,
    ``ui_locales`` and ``Accept-Language``; English on the admin pages, the JSON
    endpoints and outside a request. Never fails: a page about a failure (the store is
    down, the body is too large) is still rendered, in the language that could be found."""
    if not has_request_context() or _english_only():
        return DEFAULT
    from .web import cookie_name

    try:
        cookie = request.cookies.get(cookie_name(COOKIE))
    except Exception:  # noqa: BLE001 - no settings (a failure before the app was built)
        cookie = request.cookies.get(COOKIE)
    ui_locales = None
    if not supported(cookie):
        try:
            ui_locales = _request_ui_locales()
        except Exception:  # noqa: BLE001 - the store is down, the body too large...
            ui_locales = None
    return choose(
        cookie=cookie, ui_locales=ui_locales, accept_language=request.headers.get("Accept-Language")
    )


# -- the language link on every page ------------------------------------------------------


def current_path() -> str:
    """Where the language link brings the visitor back: this page's path and query. A
    page answering a form post comes back through a GET of the same path, with the
    fields that name its context (``txn``, ``next``, ``reset``)."""
    if request.method in ("GET", "HEAD"):
        # A ``next`` the page would not follow is not carried: the link never repeats
        # another site's address (every page's ``next`` is a keyword or a local path).
        pairs = [
            (k, v)
            for k, v in parse_qsl(request.query_string.decode("latin-1"), keep_blank_values=True)
            if k != "next" or _NEXT_KEYWORD.fullmatch(v) or safe_local_path(v, "") == v
        ]
        path = request.path + (f"?{urlencode(pairs)}" if pairs else "")
    else:
        keep = {k: v for k in ("txn", "next", "reset") if (v := _form_value(k))}
        path = request.path + (f"?{urlencode(keep)}" if keep else "")
    return safe_local_path(path)


def language_links() -> list[dict[str, str]]:
    """The other languages of this page, each with its name in itself and the link
    that switches to it and comes back here."""
    if _english_only():
        return []
    here, current = current_path(), page_locale()
    return [
        {
            "code": code,
            "name": LANGUAGE_NAMES[code],
            "href": url_for("i18n.choose_language", lang=code, next=here),
        }
        for code in SUPPORTED
        if code != current
    ]


@bp.get("/language")
def choose_language() -> Response:
    """The visitor picks a language: remember it in a cookie (Secure and ``__Host-``
    behind https, ``SameSite=Lax``, ``Path=/``), store it on the account when someone is
    signed in, and go back to the page (``next``: a path on this site only, never
    another origin; the home page otherwise)."""
    from .extensions import db
    from .web import cookie_name, current_user, error_page, secure_cookies

    lang = request.args.get("lang")
    if lang not in SUPPORTED:
        return error_page(
            400,
            _("Unknown language"),
            _("This service is available in English and in Spanish (Español)."),
        )
    resp = redirect(safe_local_path(request.args.get("next")), 303)
    resp.set_cookie(
        cookie_name(COOKIE),
        lang,
        max_age=COOKIE_MAX_AGE,
        secure=secure_cookies(),
        httponly=True,
        samesite="Lax",
        path="/",
    )
    user = current_user()
    if user is not None and user.locale != lang:
        user.locale = lang
        db.session.commit()
    return resp


# -- texts from the settings, per language -------------------------------------------------


def help_hours(ui: Any, locale: str | None = None) -> str:
    """The help line's hours in the language of *locale* (the page's by default):
    ``[ui] help_hours_es`` in Spanish when it is set, else ``[ui] help_hours``."""
    lang = locale or page_locale()
    return (getattr(ui, f"help_hours_{lang}", "") if lang != DEFAULT else "") or ui.help_hours


def help_text(ui: Any, locale: str | None = None) -> str:
    """``[ui] help_text`` in the language of *locale*, like :func:`help_hours`."""
    lang = locale or page_locale()
    return (getattr(ui, f"help_text_{lang}", "") if lang != DEFAULT else "") or ui.help_text


# -- wiring ----------------------------------------------------------------------------------


def init_i18n(app: Flask) -> None:
    """Flask-Babel with :func:`select_locale`, the Jinja i18n extension (every
    ``{% trans %}`` block trimmed), the date and length filters in the page's language,
    the language links and ``/language``."""
    Babel(
        app,
        default_locale=DEFAULT,
        default_translation_directories=str(TRANSLATIONS),
        locale_selector=select_locale,
    )
    app.jinja_env.policies["ext.i18n.trimmed"] = True
    app.jinja_env.filters["long_date"] = lambda value: long_date(value, locale=page_locale())
    app.jinja_env.filters["long_datetime"] = lambda value: long_date(
        value, with_time=True, locale=page_locale()
    )
    app.jinja_env.filters["duration"] = lambda seconds: duration_words(
        seconds, locale=page_locale()
    )
    app.jinja_env.filters["number"] = lambda value: number(value, locale=page_locale())

    @app.context_processor
    def _language() -> dict[str, Any]:
        from .services import services

        ui = services().settings.ui
        return {
            "page_lang": page_locale(),
            "language_links": language_links,
            "help_hours": help_hours(ui),
            "help_text": help_text(ui),
        }

    app.register_blueprint(bp)
