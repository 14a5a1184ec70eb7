"""Connexion's pages in English and Spanish (Flask-Babel, with the catalogs in
``clients/connexion/translations/<lang>/LC_MESSAGES/messages.po``, compiled by
``make translations``).

A page's language, in order: the visitor's explicit choice (the "English" / "Español"
link on every page, ``GET /language``, remembered in a cookie), the browser's
``Accept-Language`` (RFC 9110, section 12.5.4), English. The sign-in request carries
the page's language to the provider as ``ui_locales`` (OpenID Connect Core 1.0,
section 3.1.2.1), so its pages follow. The Form C API (``/api``) answers in English:
an ``error_description`` is ASCII (RFC 6750 3).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, has_request_context, redirect, request, url_for
from flask_babel import Babel, get_locale
from flask_babel import gettext as _
from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

SUPPORTED: tuple[str, ...] = ("en", "es")
DEFAULT = "en"
LANGUAGE_NAMES = {"en": "English", "es": "Español"}
COOKIE = "connexion_lang"
COOKIE_MAX_AGE = 365 * 86400
TRANSLATIONS = Path(__file__).resolve().parent / "translations"
#: The CLDR locale whose date conventions a language follows (U.S. Spanish).
FORMAT_LOCALES = {"en": "en_US", "es": "es_US"}

bp = Blueprint("i18n", __name__)


def supported(tag: Any) -> str | None:
    """The supported language a BCP 47 tag names, by its primary subtag, or None."""
    if not isinstance(tag, str) or not tag.strip() or len(tag) > 35:
        return None
    primary = tag.strip().replace("_", "-").split("-", 1)[0].lower()
    return primary if primary in SUPPORTED else None


def choose(*, cookie: str | None = None, accept_language: str | None = None) -> str:
    """The cookie of an explicit choice, then ``Accept-Language``, then English."""
    if supported(cookie):
        return supported(cookie) or DEFAULT
    # RFC 9110 12.5.4: the ranges in order of quality, each by its primary subtag.
    for tag, quality in parse_accept_header((accept_language or "")[:1024], LanguageAccept):
        lang = supported(tag) if quality > 0 else None
        if lang:
            return lang
    return DEFAULT


def select_locale() -> str:
    """Flask-Babel's locale selector (English for the API and outside a request)."""
    if not has_request_context() or request.path.startswith(("/api", "/backchannel")):
        return DEFAULT
    return choose(
        cookie=request.cookies.get(COOKIE),
        accept_language=request.headers.get("Accept-Language"),
    )


def page_locale() -> str:
    """The language of the page being rendered; English outside a request."""
    locale = get_locale()
    return (supported(str(locale)) or DEFAULT) if locale is not None else DEFAULT


def long_date(day: date | None, locale: str | None = None) -> str:
    """``"January 3, 2027"`` / ``"3 de enero de 2027"``: dates in words."""
    if day is None:
        return ""
    lang = locale or page_locale()
    if lang == DEFAULT:
        return f"{day:%B} {day.day}, {day.year}"
    from babel.dates import format_date

    return format_date(day, "long", locale=FORMAT_LOCALES.get(lang, lang))


def _local_path(value: str | None) -> str:
    """A path on this site (never another origin), or ``/``."""
    if (
        not value
        or not value.isascii()
        or not value.startswith("/")
        or value.startswith(("//", "/\\"))
        or len(value) > 500
        or any(ch.isspace() or ch == "\\" or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value)
    ):
        return "/"
    return value


def language_links() -> list[dict[str, str]]:
    """The other languages of this page, each with the link that switches to it."""
    query = request.query_string.decode("latin-1")
    here = request.path + (f"?{query}" if query and request.method == "GET" else "")
    current = page_locale()
    return [
        {
            "code": code,
            "name": LANGUAGE_NAMES[code],
            "href": f"{url_for('i18n.choose_language')}?{urlencode({'lang': code, 'next': here})}",
        }
        for code in SUPPORTED
        if code != current
    ]


@bp.get("/language")
def choose_language() -> Response:
    """The visitor picks a language: a cookie (``SameSite=Lax``), then back to the page."""
    from .app import error_page

    lang = request.args.get("lang")
    if lang not in SUPPORTED:
        return error_page(
            400,
            _("Unknown language"),
            _("Connexion is available in English and in Spanish (Español)."),
        )
    resp = redirect(_local_path(request.args.get("next")), 303)
    resp.set_cookie(
        COOKIE,
        lang,
        max_age=COOKIE_MAX_AGE,
        secure=request.is_secure,
        httponly=True,
        samesite="Lax",
        path="/",
    )
    return resp


def init_i18n(app: Flask) -> None:
    """Flask-Babel with :func:`select_locale`, trimmed ``{% trans %}`` blocks, the
    ``longdate`` filter in the page's language, the language links and ``/language``."""
    Babel(
        app,
        default_locale=DEFAULT,
        default_translation_directories=str(TRANSLATIONS),
        locale_selector=select_locale,
    )
    app.jinja_env.policies["ext.i18n.trimmed"] = True
    app.jinja_env.filters["longdate"] = lambda d: long_date(d)

    @app.context_processor
    def _language() -> dict[str, Any]:
        return {"page_lang": page_locale(), "language_links": language_links}

    app.register_blueprint(bp)
