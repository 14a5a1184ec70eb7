"""Sign-in through a real browser: RP -> provider sign-in -> consent -> back to the RP.

Everything runs against the provider's real pages and headers (CSP included), served by
``idp run`` in its own process; the relying party verifies the tokens with jwcrypto.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from .conftest import BrowserLog, LiveServer, User, snap
from .rp_app import RelyingParty

pytestmark = pytest.mark.browser

AAL1 = "http://idmanagement.gov/ns/assurance/aal/1"


def _at(base: str, path: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(base)}{re.escape(path)}")


def _open_signin(page: Page, live: LiveServer, rp: RelyingParty) -> None:
    page.goto(f"{rp.url}/")
    expect(page.get_by_text("Not signed in")).to_be_visible()
    snap(page, "rp-home")
    page.get_by_role("link", name="Sign in").click()
    expect(page).to_have_url(_at(live.issuer, "/signin?txn="))
    expect(page.get_by_role("heading", name="Sign in", level=1)).to_be_visible()
    snap(page, "signin")


def _submit_password(page: Page, email: str, password: str) -> None:
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(password)
    snap(page, "signin-filled")
    page.get_by_role("button", name="Sign in", exact=True).click()


def _sign_in_and_allow(page: Page, live: LiveServer, rp: RelyingParty, user: User) -> None:
    _open_signin(page, live, rp)
    _submit_password(page, user.email, user.password)
    expect(page).to_have_url(_at(live.issuer, "/consent?txn="))
    expect(page.get_by_role("heading", name="Allow E2E RP to use your account?")).to_be_visible()
    expect(page.get_by_text(user.email)).to_be_visible()
    snap(page, "consent")
    page.get_by_role("button", name="Allow", exact=True).click()
    expect(page).to_have_url(_at(rp.url, "/callback?"))
    snap(page, "rp-callback")


def test_sign_in_and_consent_land_back_on_the_rp(
    browser_page: Page, live_server: LiveServer, rp_server: RelyingParty, user: User
):
    page = browser_page
    _sign_in_and_allow(page, live_server, rp_server, user)

    expect(page.locator("#who")).to_have_text(f"Signed in as {user.email}")
    expect(page.locator("#acr")).to_have_text(AAL1)
    expect(page.locator("#amr")).to_have_text("pwd")
    claims = rp_server.last_claims
    assert claims is not None, rp_server.outcomes
    assert claims["email"] == user.email and claims["name"] == user.name
    assert claims["acr"] == AAL1 and claims["amr"] == ["pwd"]
    assert claims["iss"] == live_server.issuer
    aud = claims["aud"]
    assert live_server.client_id in ([aud] if isinstance(aud, str) else aud)

    # The RP keeps its own session: a fresh load still shows the user.
    page.goto(f"{rp_server.url}/")
    expect(page.locator("#who")).to_have_text(f"Signed in as {user.email}")


def test_wrong_password_shows_an_error_and_stays_on_the_signin_page(
    browser_page: Page, live_server: LiveServer, rp_server: RelyingParty
):
    page = browser_page
    callbacks_before = len(rp_server.outcomes)
    _open_signin(page, live_server, rp_server)
    txn = page.locator('input[name="txn"]').get_attribute("value")
    _submit_password(page, live_server.email, "not the right passphrase at all")

    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("The email or password is not right")
    snap(page, "signin-error")
    # Still the sign-in page of the same transaction, ready for another try.
    expect(page).to_have_url(_at(live_server.issuer, "/signin"))
    expect(page.get_by_role("heading", name="Sign in", level=1)).to_be_visible()
    expect(page.locator('input[name="txn"]')).to_have_value(txn or "")
    expect(page.get_by_label("Email address")).to_have_value(live_server.email)
    expect(page.get_by_label("Email address")).to_have_attribute("aria-describedby", "form-error")
    expect(page.get_by_label("Password")).to_have_value("")
    assert txn
    assert len(rp_server.outcomes) == callbacks_before, "nothing may reach the RP"


def test_pages_load_without_csp_violations_or_console_errors(
    browser_page: Page,
    live_server: LiveServer,
    rp_server: RelyingParty,
    user: User,
    browser_log: BrowserLog,
):
    page = browser_page
    # RP -> sign-in -> (POST, 302 resume, 302 consent) -> consent -> (POST, 302 to the RP):
    # form-action must allow the redirect chain, script/style-src the provider's assets.
    _sign_in_and_allow(page, live_server, rp_server, user)
    expect(page.locator("#who")).to_have_text(f"Signed in as {user.email}")

    # The provider's own landing page, signed in.
    page.goto(f"{live_server.issuer}/")
    expect(page.get_by_text(f"You are signed in as {user.email}")).to_be_visible()
    snap(page, "provider-home")
    # The stylesheet really applied (a CSP style-src block would leave the banner unstyled).
    banner = page.evaluate("getComputedStyle(document.querySelector('.banner')).color")
    assert banner == "rgb(255, 255, 255)", "idp.css was not applied"

    # The error page (an expired sign-in). Chromium logs its 400 status as a console error;
    # that one line is expected, anything else is not.
    error_url = f"{live_server.issuer}/authorize/resume?txn=expired"
    page.goto(error_url)
    expect(page.get_by_role("alert")).to_contain_text("start again")
    snap(page, "provider-error")
    status_line = "Failed to load resource: the server responded with a status of 400"
    browser_log.console = [
        m
        for m in browser_log.console
        if not (m["url"] == error_url and m["text"].startswith(status_line))
    ]

    assert browser_log.problems() == []
