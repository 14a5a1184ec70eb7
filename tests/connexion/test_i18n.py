"""Connexion in English and Spanish: the page's language (the explicit choice in a
cookie, then ``Accept-Language``, then English), ``<html lang>``, the language link,
the sign-in request's ``ui_locales`` (OIDC Core 3.1.2.1), dates and words in Spanish,
and the Form C API staying in English."""

from __future__ import annotations

import re
from datetime import date
from urllib.parse import parse_qs, urlsplit

import pytest

from clients.connexion import i18n
from tests.connexion.conftest import AAL1, ISSUER, MFA
from tests.connexion.test_app import answers, sign_in

ES = {"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"}


def html_lang(resp) -> str:
    return re.search(r'<html lang="([^"]+)"', resp.get_data(as_text=True)).group(1)


@pytest.mark.parametrize(
    ("cookie", "accept", "expected"),
    [
        (None, None, "en"),
        (None, "es", "es"),
        (None, "es-419,en;q=0.5", "es"),
        (None, "fr, es;q=0.8", "es"),
        (None, "en-US,es;q=0.9", "en"),
        (None, "es;q=0", "en"),
        ("en", "es", "en"),
        ("es", "en", "es"),
        ("xx", "es", "es"),
    ],
)
def test_language_order(cookie, accept, expected):
    assert i18n.choose(cookie=cookie, accept_language=accept) == expected


@pytest.mark.parametrize("path", ["/", "/logout", "/dashboard", "/form-c", "/nowhere"])
def test_every_page_has_the_right_html_lang(cx, path):
    sign_in(cx)
    assert html_lang(cx.get(path)) == "en"
    assert html_lang(cx.get(path, headers=ES)) == "es"


def test_home_page_in_spanish_with_a_link_back_to_english(cx):
    page = cx.get("/", headers=ES).get_data(as_text=True)
    assert "Un sitio oficial del Gobierno de Estados Unidos" in page
    assert "Iniciar sesión" in page
    assert "Sign in" not in page
    link = re.search(r'<a href="([^"]+)" lang="en" hreflang="en"[^>]*>English</a>', page)
    assert link is not None
    assert parse_qs(urlsplit(link.group(1).replace("&amp;", "&")).query) == {
        "lang": ["en"],
        "next": ["/"],
    }


def test_the_language_link_sets_a_cookie_that_wins_over_the_browser(cx):
    resp = cx.get("/language?lang=es&next=/form-c")
    assert resp.status_code == 303 and resp.headers["Location"] == "/form-c"
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith(f"{i18n.COOKIE}=es;") and "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    page = cx.get("/", headers={"Accept-Language": "en"})
    assert html_lang(page) == "es"
    cx.get("/language?lang=en&next=/")
    assert html_lang(cx.get("/", headers=ES)) == "en"


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil", "/a b"])
def test_the_language_link_never_leaves_the_site(cx, target):
    resp = cx.get("/language", query_string={"lang": "es", "next": target})
    assert resp.status_code == 303 and resp.headers["Location"] == "/"


def test_an_unknown_language_is_a_friendly_400(cx):
    resp = cx.get("/language?lang=fr", headers=ES)
    assert resp.status_code == 400
    assert "Idioma desconocido" in resp.get_data(as_text=True)
    assert "Set-Cookie" not in resp.headers


def test_the_sign_in_request_carries_the_page_language(cx):
    english = parse_qs(urlsplit(cx.get("/login").headers["Location"]).query)
    assert english["ui_locales"] == ["en"]
    spanish = cx.get("/login", headers=ES).headers["Location"]
    assert spanish.startswith(f"{ISSUER}/authorize?")
    assert parse_qs(urlsplit(spanish).query)["ui_locales"] == ["es"]


def test_dashboard_words_and_dates_in_spanish(cx):
    sign_in(cx, acr=AAL1, amr=["pwd"], age=300)
    page = cx.get("/dashboard", headers=ES).get_data(as_text=True)
    assert "Le damos la bienvenida, Ada Lovelace" in page
    assert "Solo contraseña" in page  # the acr in words
    assert "contraseña" in page and "hace 5 minutos" in page
    assert " de 20" in page  # "4 de diciembre de 2026": dates in words, Spanish order
    assert "Password only" not in page


def test_form_errors_in_spanish(cx):
    sign_in(cx, acr=MFA)
    resp = cx.post("/form-c", data=answers(cx, supplier_number="12"), headers=ES)
    page = resp.get_data(as_text=True)
    assert resp.status_code == 400
    assert "Escriba su número de proveedor de 10 dígitos" in page
    assert "Hay un problema" in page


def test_the_api_answers_in_english_whatever_the_browser_says(cx):
    resp = cx.post("/api/form-c", json={}, headers={**ES, "Authorization": "Bearer nope"})
    assert resp.status_code == 401
    assert resp.is_json or "WWW-Authenticate" in resp.headers
    assert not re.search(r"[áéíóúñ]", resp.get_data(as_text=True) + str(resp.headers))


def test_long_dates_per_language(app_context_cx):
    assert i18n.long_date(date(2027, 1, 3), "en") == "January 3, 2027"
    assert i18n.long_date(date(2027, 1, 3), "es") == "3 de enero de 2027"
    assert i18n.long_date(None, "es") == ""


@pytest.fixture
def app_context_cx(cx_app):
    with cx_app.test_request_context("/"):
        yield
