"""The provider in English and Spanish: the language of a page (the explicit choice in
a cookie, then the OIDC ``ui_locales`` of the sign-in, then ``Accept-Language``, then
English), discovery's ``ui_locales_supported`` (OpenID Connect Discovery 1.0, 3),
``<html lang>`` on every page, the language link, the account's language for messages
sent without a browser, and dates, numbers and help hours per language."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest

from idp import i18n
from idp.wording import duration_words, long_date, number
from tests.conftest import PASSWORD, make_settings
from tests.integration.account_helpers import STRONG, form_fields, outbox, post, sent

CB = "https://rp.example.com/cb"
ES = {"Accept-Language": "es-US,es;q=0.9"}
EN = {"Accept-Language": "en-US,en;q=0.9"}
HOURS_EN = "9 a.m. to 5:30 p.m. Eastern, Monday to Friday"
HOURS_ES = "de 9 a.m. a 5:30 p.m., hora del Este, de lunes a viernes"


@pytest.fixture
def settings(tmp_path, keys_dir):
    base = make_settings(tmp_path, keys_dir)
    ui = replace(base.ui, help_phone="877-577-5331", help_hours=HOURS_EN, help_hours_es=HOURS_ES)
    return replace(base, ui=ui)


def html_lang(resp) -> str | None:
    m = re.search(r'<html lang="([^"]+)"', resp.get_data(as_text=True))
    return m.group(1) if m else None


def page(resp) -> str:
    return resp.get_data(as_text=True)


def sign_in(client, email="ada@example.com", password=PASSWORD, headers=None):
    fields = form_fields(client.get("/signin", headers=headers or {}), "email", "csrf_token")
    fields.update(email=email, password=password)
    return client.post("/signin", data=fields, headers=headers or {})


def authorize(client, client_id, headers=None, **params):
    query = {"client_id": client_id, "response_type": "code", "redirect_uri": CB,
             "scope": "openid", "state": "s", "nonce": "n",
             "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
             "code_challenge_method": "S256", **params}  # fmt: skip
    return client.get("/authorize", query_string=query, headers=headers or {})


# -- choosing the language (pure) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("cookie", "ui_locales", "accept", "expected"),
    [
        (None, None, None, "en"),
        (None, None, "es", "es"),
        (None, None, "es-419, en;q=0.5", "es"),
        (None, None, "en-US, es;q=0.9", "en"),
        (None, None, "fr, es;q=0.5", "es"),
        (None, None, "es;q=0, en;q=0.1", "en"),
        (None, None, "fr, de", "en"),
        (None, "es", "en", "es"),  # ui_locales before Accept-Language
        (None, "fr-CA es-MX", "en", "es"),  # the first supported tag
        (None, "fr de", "es", "es"),  # none supported: Accept-Language
        ("en", "es", "es", "en"),  # the explicit choice first
        ("es", None, "en", "es"),
        ("klingon", "es", "en", "es"),  # an unusable cookie is ignored
    ],
)
def test_language_order(cookie, ui_locales, accept, expected):
    assert i18n.choose(cookie=cookie, ui_locales=ui_locales, accept_language=accept) == expected


@pytest.mark.parametrize(
    ("tag", "lang"),
    [("es", "es"), ("ES-mx", "es"), ("es_419", "es"), ("en-GB", "en"), ("fr", None),
     ("", None), (None, None), ("e" * 40, None), (" es ", "es")],
)  # fmt: skip
def test_supported_tags(tag, lang):
    assert i18n.supported(tag) == lang


# -- discovery and every page's <html lang> -----------------------------------------------


def test_discovery_lists_the_languages(client):
    meta = client.get("/.well-known/openid-configuration").get_json()
    assert meta["ui_locales_supported"] == ["en", "es"]


def _html_pages(app) -> list[str]:
    """Every GET page without path parameters, except the admin area and JSON/protocol
    endpoints (their answers are not pages)."""
    skip = ("/admin", "/.well-known", "/static", "/api", "/jwks", "/userinfo", "/metrics",
            "/health", "/ready", "/push", "/token", "/introspect", "/revoke", "/par",
            "/connect", "/language", "/oauth")  # fmt: skip
    paths = set()
    for rule in app.url_map.iter_rules():
        if "GET" in rule.methods and not rule.arguments and not rule.rule.startswith(skip):
            paths.add(rule.rule)
    return sorted(paths)


@pytest.mark.parametrize("signed_in", [False, True], ids=["anonymous", "signed-in"])
def test_every_page_says_its_language(app, client, make_user, signed_in):
    make_user()
    if signed_in:
        assert sign_in(client).status_code in (302, 303)
    checked = 0
    for path in [*_html_pages(app), "/no-such-page"]:
        for headers, lang in ((EN, "en"), (ES, "es")):
            resp = client.get(path, headers=headers)
            if 300 <= resp.status_code < 400 or resp.mimetype != "text/html":
                continue
            assert html_lang(resp) == lang, (path, resp.status_code)
            checked += 1
    assert checked >= 10


def test_sign_in_page_in_spanish_with_a_link_to_english(client):
    text = page(client.get("/signin", headers=ES))
    assert '<html lang="es"' in text
    assert "Iniciar sesión" in text and "Dirección de correo electrónico" in text
    assert "Forgot your password?" not in text and "¿Olvidó su contraseña?" in text
    link = re.search(r'href="(/language\?[^"]+)"[^>]*>\s*English', text)
    assert link, "no language link"
    q = parse_qs(urlsplit(link.group(1).replace("&amp;", "&")).query)
    assert q == {"lang": ["en"], "next": ["/signin"]}


@pytest.mark.parametrize(
    ("query", "kept"),
    [("next=account&reauth=1", {"next": ["account"], "reauth": ["1"]}),
     ("next=/admin/users", {"next": ["/admin/users"]}),
     ("next=https://evil.example/&reauth=1", {"reauth": ["1"]}),
     ("next=//evil.example/", {})],
)  # fmt: skip
def test_the_language_link_keeps_the_page_but_not_a_foreign_next(client, query, kept):
    text = page(client.get(f"/signin?{query}", headers=ES))
    assert "evil.example" not in text
    href = re.search(r'href="(/language\?[^"]+)"', text).group(1).replace("&amp;", "&")
    back = parse_qs(urlsplit(href).query)["next"][0]
    assert urlsplit(back).path == "/signin"
    assert parse_qs(urlsplit(back).query) == kept


def test_error_pages_and_form_errors_in_spanish(client, make_user):
    make_user()
    assert "No se encontró la página" in page(client.get("/no-such-page", headers=ES))
    resp = sign_in(client, password="wrong password here", headers=ES)
    assert "El correo electrónico o la contraseña no son correctos" in page(resp)


@pytest.mark.parametrize(("path", "lang"), [("/admin/users", "en"), ("/token", "en"),
                                            ("/account/security", "es")])  # fmt: skip
def test_admin_pages_and_json_endpoints_stay_in_english(app, path, lang):
    headers = {**ES, "Cookie": "idp_lang=es"}
    with app.test_request_context(path, headers=headers):
        assert i18n.select_locale() == lang
        assert bool(i18n.language_links()) == (lang != "en")


# -- ui_locales on the sign-in, the cookie, /language ---------------------------------------


def test_ui_locales_of_the_request_holds_for_the_whole_sign_in(client, make_client):
    client_id = make_client()[0]
    resp = authorize(client, client_id, headers=EN, ui_locales="fr-CA es")
    assert resp.status_code in (302, 303), page(resp)[:300]
    signin = client.get(resp.location, headers=EN)
    assert html_lang(signin) == "es" and "Iniciar sesión" in page(signin)
    # The explicit choice wins over ui_locales.
    client.get("/language?lang=en&next=/", headers=EN)
    assert html_lang(client.get(resp.location, headers=ES)) == "en"


def test_without_ui_locales_the_browser_decides(client, make_client):
    client_id = make_client()[0]
    resp = authorize(client, client_id, headers=ES)
    assert html_lang(client.get(resp.location, headers=ES)) == "es"
    assert html_lang(client.get(resp.location, headers=EN)) == "en"


def test_the_language_link_sets_a_lax_cookie_and_goes_back(client):
    resp = client.get("/language?lang=es&next=/signin?x=1")
    assert resp.status_code == 303 and resp.location == "/signin?x=1"
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith("idp_lang=es;")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert html_lang(client.get("/signin", headers=EN)) == "es"


@pytest.mark.parametrize(
    "target",
    ["//evil.example/", "https://evil.example/", "/\\evil.example", "/\t/evil.example",
     "javascript:alert(1)", "/é", "/" + "a" * 3000],
)  # fmt: skip
def test_the_language_link_never_leaves_the_site(client, target):
    resp = client.get("/language", query_string={"lang": "es", "next": target})
    assert resp.status_code == 303 and resp.location == "/"


def test_an_unknown_language_is_a_friendly_400(client):
    resp = client.get("/language?lang=fr", headers=ES)
    assert resp.status_code == 400 and "Idioma desconocido" in page(resp)
    assert "Set-Cookie" not in resp.headers or "idp_lang" not in resp.headers["Set-Cookie"]


# -- the account's language ----------------------------------------------------------------


def _locale(app, email="ada@example.com"):
    from idp.extensions import db
    from idp.models import User

    with app.app_context():
        return db.session.execute(db.select(User.locale).filter_by(email=email)).scalar_one()


def test_choosing_a_language_while_signed_in_stores_it_on_the_account(app, client, make_user):
    make_user()
    assert _locale(app) is None
    sign_in(client)
    client.get("/language?lang=es&next=/account/security")
    assert _locale(app) == "es"
    client.get("/language?lang=en&next=/")
    assert _locale(app) == "en"


def test_registration_stores_the_language_of_its_pages(app, client):
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "es"
    resp = post(client, "/register", {"name": "Grace Hopper", "email": "grace@example.com",
                                      "password": STRONG, "password_confirm": STRONG})  # fmt: skip
    sent(resp)
    mail = [m for m in outbox(app, "account.verify_email") if m["to"] == "grace@example.com"]
    assert mail and "Confirme su dirección de correo electrónico" in mail[-1]["subject"]
    link = re.search(r"https?://\S+/verify/\S+", mail[-1]["text"]).group(0)
    # Confirmed from a browser that says English: the account keeps the registration's.
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    sent(post(client, urlsplit(link).path, {"password": STRONG}, names=("password",)))
    assert _locale(app, "grace@example.com") == "es"


@pytest.mark.parametrize(("locale", "greeting"), [("es", "Hola, Ada Lovelace:"),
                                                  (None, "Hello Ada Lovelace,")])  # fmt: skip
def test_messages_sent_without_a_browser_use_the_account_language(app, make_user, locale,
                                                                  greeting):  # fmt: skip
    from idp.extensions import db
    from idp.models import User
    from idp.notify import notify

    make_user(locale=locale)
    with app.app_context():  # no request: a background job, a lockout notice
        user = db.session.execute(db.select(User).filter_by(email="ada@example.com")).scalar_one()
        assert notify(user, "password_changed")
    mail = outbox(app, "notify.password_changed")[-1]
    assert greeting in mail["text"]
    if locale == "es":
        assert "Se cambió su contraseña" in mail["subject"]
        assert HOURS_ES in mail["text"] or "877-577-5331" in mail["text"]
    else:
        assert "Your password was changed" in mail["subject"]


def test_an_admins_reminders_use_each_account_language(app, make_user):
    from idp.admin import service

    make_user("ada@example.com", locale="es")
    make_user("grace@example.com", name="Grace Hopper")
    # Sent from an English admin page: each user still gets their own language.
    with app.test_request_context("/admin/mfa", headers=EN):
        assert service.send_reminder_batch(actor="user:1").sent == 2
    mails = {m["to"]: m for m in outbox(app, "admin.mfa_reminder")}
    assert "configure un segundo paso de inicio de sesión" in mails["ada@example.com"]["subject"]
    assert "Hola, Ada Lovelace:" in mails["ada@example.com"]["text"]
    assert "set up a second sign-in step" in mails["grace@example.com"]["subject"]
    assert "Hello Grace Hopper," in mails["grace@example.com"]["text"]


def test_a_request_in_another_language_does_not_change_the_account_language_of_a_mail(
    app, make_user
):
    from idp.extensions import db
    from idp.models import User
    from idp.notify import notify

    make_user(locale="es")
    with app.test_request_context("/signin", headers=EN):
        user = db.session.execute(db.select(User).filter_by(email="ada@example.com")).scalar_one()
        notify(user, "password_changed")
    assert "Se cambió su contraseña" in outbox(app, "notify.password_changed")[-1]["subject"]


# -- dates, numbers, help hours ---------------------------------------------------------


def test_dates_lengths_and_numbers_per_language():
    day = dt.datetime(2026, 12, 4, 15, 5, tzinfo=dt.UTC)
    assert long_date(day, locale="en") == "December 4, 2026"
    assert long_date(day, locale="es") == "4 de diciembre de 2026"
    assert long_date(day, with_time=True, locale="en") == "December 4, 2026, 3:05 p.m. UTC"
    assert long_date(day, with_time=True, locale="es").startswith("4 de diciembre de 2026, 3:05")
    assert duration_words(45 * 60, locale="en") == "45 minutes"
    assert duration_words(45 * 60, locale="es") == "45 minutos"
    assert duration_words(3 * 86400, locale="es") == "3 días"
    assert duration_words(60, locale="es") == "1 minuto"
    assert number(12345, locale="en") == number(12345, locale="es") == "12,345"


def test_help_hours_follow_the_page(client):
    english = page(client.get("/signin", headers=EN))
    spanish = page(client.get("/signin", headers=ES))
    assert HOURS_EN in english and HOURS_ES not in english
    assert HOURS_ES in spanish and HOURS_EN not in spanish
    assert "Llame al servicio de ayuda" in spanish


def test_help_hours_in_english_when_no_spanish_is_set(app):
    ui = app.extensions["idp"].settings.ui
    assert i18n.help_hours(ui, "es") == HOURS_ES
    assert i18n.help_hours(replace(ui, help_hours_es=""), "es") == HOURS_EN
    assert i18n.help_hours(ui, "en") == HOURS_EN
