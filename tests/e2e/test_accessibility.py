"""Accessibility of every page a user can reach: axe-core in real Chromium, live provider.

Each journey walks the provider's pages the way a user reaches them and runs axe-core
(WCAG 2.0/2.1 A and AA, best practice; see :mod:`tests.e2e.axe`) plus the
:func:`page_basics` smoke on each. A journey goes on after a page fails, so that one run
lists every page's serious and critical violations; each failing page leaves
``test-artifacts/axe-<page>.json``.

Two providers, both served as ``http://localhost:PORT`` (WebAuthn needs a host name):

- ``live_server``: MFA required from ten days ahead (set-up may be postponed), at most
  three failed second-factor attempts, the help desk settings set (``[ui]``);
- ``enforced``: the same, but MFA required since yesterday.

Every page is checked at two widths, 1280 px (a laptop) and 390 px (a phone): axe-core
at each, no sideways scrolling at 390 px (``scrollWidth <= innerWidth``) nor at 320 CSS px
(WCAG 1.4.10 reflow), and a full-page screenshot of each kept in
``test-artifacts/screens/<page>.png`` and ``<page>@390.png`` whatever the outcome (the
README's screenshots come from there). Besides the provider's sign-in, set-up, account and
challenge pages, the journeys open the confirmation dialogs (USWDS modals) and the
confirmation pages shown without JavaScript, every admin page, and every Connexion page.
The sign-in can be completed with the keyboard alone, with a visible focus outline on
every element Tab reaches.

The pages run in the ``a11y_page`` context, which bypasses the provider's CSP so that
axe-core can be injected; CSP itself is checked by the other browser tests.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.integration.mfa_helpers import totp_code

from .axe import AxeAudit, require_axe
from .conftest import (
    DESKTOP_WIDTH,
    PHONE_WIDTH,
    LiveServer,
    User,
    VirtualAuthenticator,
    keep_screenshot,
    new_user,
    page_basics,
    run_connexion,
    run_provider,
    run_rp,
    set_width,
    snap,
    width_name,
)
from .rp_app import RelyingParty

pytestmark = pytest.mark.browser

HELP = {
    "IDP_UI_HELP_PHONE": "877-577-5331",
    "IDP_UI_HELP_HOURS": "9 a.m. to 5:30 p.m. Eastern, Monday to Friday",
    "IDP_UI_HELP_TEXT": "Call the help desk at 877-577-5331.",
}
MAX_FAILURES = 3


def _utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _env(enforce_from: dt.date) -> dict[str, str]:
    return {
        "IDP_MFA_REQUIRED": "true",
        "IDP_MFA_ENFORCE_FROM": enforce_from.isoformat(),
        "IDP_MFA_MAX_FAILURES": str(MAX_FAILURES),
        **HELP,
    }


@pytest.fixture(scope="module")
def live_server_env() -> dict[str, str]:
    return _env(_utc_today() + dt.timedelta(days=10))


@pytest.fixture(scope="module")
def live_server_host() -> str:
    return "localhost"


@dataclass(frozen=True)
class Provider:
    live: LiveServer
    rp: RelyingParty


@pytest.fixture(scope="module")
def enforced(tmp_path_factory, keys_dir) -> Iterator[Provider]:
    """MFA required since yesterday."""
    env = _env(_utc_today() - dt.timedelta(days=1))
    with run_provider(tmp_path_factory, keys_dir, env, "localhost") as live, run_rp(live) as rp:
        yield Provider(live, rp)


WIDTHS = (DESKTOP_WIDTH, PHONE_WIDTH)


class _Audit(AxeAudit):
    """axe-core at 1280 and 390 px, the :func:`page_basics` smoke, no sideways scrolling
    at 390 px nor at 320 px, and a kept screenshot of each page at both widths."""

    def check(self, page: Page, name: str, *, context: Any = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        try:
            for width in WIDTHS:
                set_width(page, width)
                label = width_name(name, width)
                keep_screenshot(page, label)
                found += super().check(page, label, context=context)
                wide = overflow(page)
                if wide:
                    self.failures.append(
                        f"{label} ({page.url}): scrolls sideways at {width} px, overflowing: {wide}"
                    )
            reflow = overflow_at_320(page)
            if reflow:
                self.failures.append(
                    f"{name} ({page.url}): scrolls sideways at 320 CSS px (WCAG 1.4.10), "
                    f"overflowing: {reflow}"
                )
        finally:
            set_width(page, DESKTOP_WIDTH)
        return found

    def page(self, page: Page, name: str) -> None:
        basics = page_basics(page)
        if basics:
            self.failures.append(f"{name} ({page.url}): page basics\n  " + "\n  ".join(basics))
        self.check(page, name)


@pytest.fixture(scope="module")
def axe_ready() -> None:
    """Skip (or fail) before any provider starts when axe-core is missing: module fixtures
    are set up first, and ``audit`` comes first in the tests' arguments."""
    require_axe()


@pytest.fixture
def audit(axe_ready, a11y_page) -> _Audit:
    set_width(a11y_page, DESKTOP_WIDTH)
    return _Audit()


_OVERFLOW = """
() => {
  const width = Math.min(document.documentElement.clientWidth, window.innerWidth);
  if (document.documentElement.scrollWidth <= window.innerWidth) return [];
  const out = [];
  for (const el of document.body.querySelectorAll("*")) {
    if (el.getBoundingClientRect().right <= width + 0.5) continue;
    if ([...el.children].some((c) => c.getBoundingClientRect().right > width + 0.5)) continue;
    const cls = typeof el.className === "string" && el.className ? "." + el.className : "";
    out.push(el.tagName.toLowerCase() + cls);
  }
  return out.length ? [...new Set(out)].slice(0, 10) : ["(the document)"];
}
"""


def overflow(page: Page) -> list[str]:
    """The elements that stick out sideways at the current width (``scrollWidth`` of
    the document wider than ``innerWidth``); empty when nothing does."""
    return list(page.evaluate(_OVERFLOW))


def overflow_at_320(page: Page) -> list[str]:
    """The elements that stick out sideways at 320 CSS px (a 1280 px screen at 400 %
    zoom); empty when nothing does."""
    size = page.viewport_size
    page.set_viewport_size({"width": 320, "height": 640})
    try:
        return list(page.evaluate(_OVERFLOW))
    finally:
        if size:
            page.set_viewport_size(size)


@pytest.fixture
def authenticator(a11y_page: Page) -> Iterator[VirtualAuthenticator]:
    """A passkey-capable platform authenticator attached to ``a11y_page``."""
    cdp = a11y_page.context.new_cdp_session(a11y_page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "ctap2Version": "ctap2_1",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    yield VirtualAuthenticator(cdp, added["authenticatorId"])


# -- steps ------------------------------------------------------------------------------


@dataclass
class AuthenticatorApp:
    """TOTP codes for the key shown on the set-up page; never the same window twice
    (a used code is refused as a replay, and the provider accepts one step of drift)."""

    secret: str
    last_step: int | None = None

    def code(self) -> str:
        step = int(time.time() // 30)
        if self.last_step is not None and step <= self.last_step:
            step = self.last_step + 1
        self.last_step = step
        return totp_code(self.secret, step)


def _at(base: str, path: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(base)}{re.escape(path)}")


def h1(page: Page, name: str | re.Pattern[str]) -> None:
    expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()


def open_signin(page: Page, live: LiveServer, rp: RelyingParty) -> None:
    page.goto(f"{rp.url}/login")
    expect(page).to_have_url(_at(live.issuer, "/signin?"))
    h1(page, "Sign in")


def submit_password(page: Page, email: str, password: str) -> None:
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def allow_consent(page: Page, live: LiveServer, rp: RelyingParty, audit: _Audit | None) -> None:
    expect(page).to_have_url(_at(live.issuer, "/consent?txn="))
    h1(page, "Allow E2E RP to use your account?")
    if audit:
        audit.page(page, "consent")
    page.get_by_role("button", name="Allow", exact=True).click()
    expect(page).to_have_url(_at(rp.url, "/callback?"))


def wrong(code: str) -> str:
    return f"{(int(code) + 500_000) % 1_000_000:06d}"


def set_up_totp(page: Page, audit: _Audit | None, *, with_error: bool = False) -> AuthenticatorApp:
    expect(page).to_have_url(re.compile(r"/mfa/setup/totp\?"))
    h1(page, "Set up an authenticator app")
    if audit:
        audit.page(page, "totp-setup")
    app = AuthenticatorApp(page.locator("code.secret").inner_text().replace(" ", ""))
    code = app.code()
    if with_error:
        page.get_by_label("6-digit code").fill(wrong(code))
        page.get_by_role("button", name="Verify and turn on").click()
        expect(page.get_by_role("alert")).to_contain_text("That code did not match")
        if audit:
            audit.page(page, "totp-setup-error")
    page.get_by_label("6-digit code").fill(code)
    page.get_by_label("Name for this app (optional)").fill("Test phone")
    page.get_by_role("button", name="Verify and turn on").click()
    return app


def create_recovery_codes(page: Page, audit: _Audit | None) -> list[str]:
    h1(page, "Create recovery codes")
    if audit:
        audit.page(page, "recovery-create")
    page.get_by_role("button", name="Create codes").click()
    h1(page, "Save your recovery codes")
    codes = page.get_by_role("list", name="Recovery codes").locator("li").all_inner_texts()
    assert codes
    if audit:
        audit.page(page, "recovery-codes")
    page.get_by_role("button", name=re.compile("I saved my codes")).click()
    return codes


def enroll_in_sign_in(
    page: Page, prov: Provider, user: User, audit: _Audit | None
) -> AuthenticatorApp:
    """Required set-up during a sign-in: authenticator app, then (recommended) recovery
    codes, then consent."""
    live, rp = prov.live, prov.rp
    open_signin(page, live, rp)
    submit_password(page, user.email, user.password)
    expect(page).to_have_url(_at(live.issuer, "/mfa/setup?txn="))
    h1(page, "Set up a second sign-in step")
    if audit:
        audit.page(page, "mfa-setup-required")
    page.get_by_role("link", name="Authenticator app", exact=True).click()
    app = set_up_totp(page, audit, with_error=True)
    expect(page).to_have_url(re.compile(r"/mfa/recommend\?txn="))
    h1(page, "Add a backup sign-in method")
    if audit:
        audit.page(page, "recommend")
    page.get_by_role("link", name="Recovery codes", exact=True).click()
    create_recovery_codes(page, audit)
    allow_consent(page, live, rp, audit)
    return app


# -- 1. sign-in, consent, home, sign-out, error -------------------------------------------


def test_signin_consent_home_signout_and_error_pages(
    audit: _Audit, a11y_page: Page, live_server: LiveServer, rp_server: RelyingParty, user: User
):
    page, live = a11y_page, live_server
    open_signin(page, live, rp_server)
    audit.page(page, "signin")

    submit_password(page, user.email, "not the right passphrase at all")
    expect(page.get_by_role("alert")).to_contain_text("The email or password is not right")
    audit.page(page, "signin-error")

    submit_password(page, user.email, user.password)
    expect(page).to_have_url(_at(live.issuer, "/mfa/setup?txn="))
    h1(page, re.compile("^Extra security is required from"))
    expect(page.get_by_role("button", name="Remind me later")).to_be_visible()
    audit.page(page, "mfa-setup-optional")
    page.get_by_role("button", name="Remind me later").click()
    allow_consent(page, live, rp_server, audit)

    page.goto(f"{live.issuer}/")
    h1(page, "Signed in")
    audit.page(page, "home")

    page.goto(f"{live.issuer}/signin?next=account&reauth=1")
    expect(page.get_by_role("status")).to_contain_text("enter your password again")
    audit.page(page, "signin-reauth")

    page.goto(f"{live.issuer}/logout?client_id={live.client_id}")
    h1(page, "Sign out of E2E RP?")
    audit.page(page, "logout-confirm")
    page.get_by_role("button", name="Sign out").click()
    h1(page, "You have signed out")
    audit.page(page, "logged-out")

    page.goto(f"{live.issuer}/")
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()
    audit.page(page, "home-signed-out")

    page.goto(
        f"{live.issuer}/authorize?client_id=no-such-client&response_type=code&scope=openid"
        "&redirect_uri=https%3A%2F%2Fevil.example%2Fcb&state=s"
    )
    h1(page, "This sign-in link is not valid")
    audit.page(page, "error-unknown-client")
    audit.assert_clean()


def test_registration_and_recovery_pages(audit: _Audit, a11y_page: Page, live_server: LiveServer):
    """Create an account (with an error shown), forgot password, and the lost-methods
    page: the pages people reach when they cannot sign in."""
    page, live = a11y_page, live_server
    page.goto(f"{live.issuer}/register")
    h1(page, "Create an account")
    audit.page(page, "register")
    page.get_by_label("Full name").fill("Ada Byron")
    page.get_by_label("Email address").fill("not-an-address")
    page.get_by_label("Password", exact=True).fill("short")
    page.get_by_label("Type the password again").fill("different")
    page.get_by_role("button", name="Create account").click()
    h1(page, "Create an account")
    expect(page.get_by_role("alert").first).to_be_visible()
    audit.page(page, "register-errors")
    page.get_by_label("Email address").fill("ada.byron@example.com")
    page.get_by_label("Password", exact=True).fill("analytical engines weave algebra")
    page.get_by_label("Type the password again").fill("analytical engines weave algebra")
    page.get_by_role("button", name="Create account").click()
    h1(page, "Check your email")
    audit.page(page, "register-check-email")

    page.goto(f"{live.issuer}/forgot")
    h1(page, "Reset your password")
    audit.page(page, "forgot")
    page.get_by_label("Email address").fill("ada.byron@example.com")
    page.get_by_role("button", name="Send the link").click()
    h1(page, "Check your email")
    audit.page(page, "forgot-sent")

    page.goto(f"{live.issuer}/recover")
    h1(page, "I lost access to all my sign-in methods")
    audit.page(page, "recover")
    audit.assert_clean()


# -- 2. required set-up: choice, authenticator app, recommendation, recovery codes -------


def test_required_mfa_set_up_pages(audit: _Audit, a11y_page: Page, enforced: Provider):
    user = new_user(enforced.live)
    enroll_in_sign_in(a11y_page, enforced, user, audit)
    audit.assert_clean()


# -- 3. challenges and the lockout --------------------------------------------------------


def test_challenge_and_lockout_pages(audit: _Audit, a11y_page: Page, enforced: Provider):
    page, live, rp = a11y_page, enforced.live, enforced.rp
    user = new_user(live)
    app = enroll_in_sign_in(page, enforced, user, None)

    page.context.clear_cookies()
    open_signin(page, live, rp)
    submit_password(page, user.email, user.password)
    expect(page).to_have_url(_at(live.issuer, "/mfa/challenge?txn="))
    h1(page, "Verify it's you")
    expect(page.get_by_label("6-digit code")).to_be_visible()
    audit.page(page, "challenge-totp")

    page.get_by_label("6-digit code").fill(wrong(app.code()))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("alert")).to_be_visible()
    audit.page(page, "challenge-totp-error")

    page.get_by_role("link", name="Recovery codes").click()
    expect(page.get_by_label("Recovery code")).to_be_visible()
    audit.page(page, "challenge-recovery")
    for attempt in range(2, MAX_FAILURES + 1):
        page.get_by_label("Recovery code").fill("aaaa-bbbb-cccc")
        page.get_by_role("button", name="Verify").click()
        if attempt < MAX_FAILURES:
            expect(page.get_by_role("alert")).to_be_visible()
            audit.page(page, "challenge-recovery-error")
    h1(page, "Verification is paused")
    audit.page(page, "mfa-locked")
    audit.assert_clean()


# -- 4. the account page, passkeys ---------------------------------------------------------


def test_account_security_and_passkey_pages(
    audit: _Audit,
    a11y_page: Page,
    live_server: LiveServer,
    user: User,
    authenticator: VirtualAuthenticator,
):
    page, live = a11y_page, live_server
    page.goto(f"{live.issuer}/account/security")
    expect(page).to_have_url(_at(live.issuer, "/signin?"))
    submit_password(page, user.email, user.password)
    expect(page).to_have_url(_at(live.issuer, "/account/security"))
    expect(page.get_by_text("You have no second sign-in method yet.")).to_be_visible()
    audit.page(page, "account")

    page.get_by_role("link", name="Security key or passkey", exact=True).click()
    h1(page, "Set up a security key or passkey")
    audit.page(page, "webauthn-setup")
    button = page.get_by_role("button", name="Set up security key or passkey")
    authenticator.set_user_verified(False)
    button.click()
    expect(page.locator("[data-webauthn-status]")).to_have_text(re.compile("cancelled"))
    audit.page(page, "webauthn-setup-cancelled")
    authenticator.set_user_verified(True)
    page.get_by_label("Name for this key (optional)").fill("Virtual passkey")
    button.click()
    # The first method: the recommendation of a second one, then the account page.
    expect(page).to_have_url(
        re.compile(r"/(mfa/recommend\?next=account&|account/security\?)added=webauthn")
    )
    expect(page.get_by_role("status").first).to_have_text("Security key or passkey added.")
    if "/mfa/recommend" in page.url:
        audit.page(page, "recommend-account")
        page.get_by_role("button", name="Not now").click()
        expect(page).to_have_url(_at(live.issuer, "/account/security"))
    audit.page(page, "account-added")

    page.get_by_role("link", name="Authenticator app", exact=True).click()
    set_up_totp(page, None)
    expect(page).to_have_url(_at(live.issuer, "/account/security?added=totp"))
    page.get_by_role("link", name=re.compile("^Recovery codes")).click()
    create_recovery_codes(page, None)
    expect(page).to_have_url(_at(live.issuer, "/account/security"))
    expect(page.get_by_role("table", name="Sign-in methods")).to_be_visible()
    audit.page(page, "account-with-factors")

    passkey_row = page.get_by_role("row", name=re.compile("Virtual passkey"))
    page.get_by_label("New name for Virtual passkey").fill("")
    passkey_row.get_by_role("button", name="Rename").click()
    expect(page.get_by_role("alert")).to_have_text("Enter a name.")
    audit.page(page, "account-error")
    app_row = page.get_by_role("row", name=re.compile("Authenticator app"))
    app_row.get_by_role("button", name="Make default").click()
    expect(page.get_by_role("status").first).to_have_text("Default method changed.")
    expect(app_row.locator(".usa-tag")).to_have_text("default")
    audit.page(page, "account-default-changed")

    # Removing asks first: a USWDS modal, and without JavaScript a confirmation page.
    codes_row = page.get_by_role("row", name=re.compile("Recovery codes"))
    remove = codes_row.get_by_role("button", name="Remove")
    remove.click()
    dialog = page.get_by_role("dialog", name="Remove recovery codes?")
    expect(dialog.get_by_role("heading")).to_be_visible()
    audit.page(page, "account-remove-dialog")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog.get_by_role("heading")).to_be_hidden()
    # The form as a browser without JavaScript posts it: no confirm=yes.
    remove.evaluate("b => b.form.requestSubmit(b)")
    h1(page, "Remove recovery codes?")
    audit.page(page, "account-remove-confirm")
    page.get_by_role("button", name="Yes, remove").click()
    expect(page).to_have_url(_at(live.issuer, "/account/security"))
    expect(page.get_by_role("status").first).to_have_text("Recovery codes removed.")
    audit.page(page, "account-removed")

    page.context.clear_cookies()
    # The password way: without passkey autofill (which would pick the passkey at once).
    page.add_init_script(
        "PublicKeyCredential.isConditionalMediationAvailable = () => Promise.resolve(false);"
    )
    page.goto(f"{live.issuer}/account/security")
    submit_password(page, user.email, user.password)
    expect(page).to_have_url(_at(live.issuer, "/mfa/challenge?"))
    page.get_by_role("link", name="Security key or passkey").click()
    expect(page.get_by_role("button", name="Use security key or passkey")).to_be_visible()
    audit.page(page, "challenge-webauthn")
    page.get_by_role("button", name="Use security key or passkey").click()
    expect(page).to_have_url(_at(live.issuer, "/account/security"))
    audit.assert_clean()


# -- 5. keyboard only ------------------------------------------------------------------------

_FOCUS = """
() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const s = getComputedStyle(el);
  const r = el.getBoundingClientRect();
  return {
    tag: el.tagName.toLowerCase(), id: el.id, name: el.getAttribute("name"),
    text: (el.innerText || el.value || "").trim().slice(0, 60),
    outlineStyle: s.outlineStyle, outlineWidth: parseFloat(s.outlineWidth) || 0,
    inViewport: r.width > 0 && r.height > 0 && r.right > 0 && r.bottom > 0
      && r.left < innerWidth && r.top < innerHeight,
  };
}
"""


def focused(page: Page) -> dict[str, Any] | None:
    return page.evaluate(_FOCUS)


def assert_focus_visible(page: Page, where: str) -> dict[str, Any]:
    f = focused(page)
    assert f is not None, f"{where}: nothing has focus"
    shown = f["outlineStyle"] != "none" and f["outlineWidth"] >= 2
    assert shown, f"{where}: no focus outline (2 px or more) on {f}"
    assert f["inViewport"], f"{where}: the focused element is off screen: {f}"
    return f


def tab_to(
    page: Page, where: str, want: Callable[[dict[str, Any]], bool], limit: int = 12
) -> dict[str, Any]:
    """Press Tab until *want(focused)*; every element on the way shows its focus."""
    seen = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        f = assert_focus_visible(page, where)
        seen.append(f"<{f['tag']}> {f['id'] or f['name'] or f['text']!r}")
        if want(f):
            return f
    pytest.fail(f"{where}: not reached with Tab; focus went to {seen}")


def test_signin_with_the_keyboard_only(
    a11y_page: Page, live_server: LiveServer, rp_server: RelyingParty, user: User
):
    page, live = a11y_page, live_server
    open_signin(page, live, rp_server)
    # The email field has focus on arrival; before it, only the language link and the
    # skip link.
    assert assert_focus_visible(page, "sign-in")["id"] == "email"
    page.keyboard.press("Shift+Tab")
    language = assert_focus_visible(page, "sign-in")
    assert language["text"] == "Español", language
    page.keyboard.press("Shift+Tab")
    skip = assert_focus_visible(page, "sign-in")
    assert skip["text"] == "Skip to main content", skip
    tab_to(page, "sign-in", lambda f: f["id"] == "email", limit=2)
    page.keyboard.type(user.email)
    page.keyboard.press("Tab")
    assert assert_focus_visible(page, "sign-in")["id"] == "password"
    page.keyboard.type(user.password)
    snap(page, "signin-keyboard")
    page.keyboard.press("Enter")

    # MFA is not required yet: postpone it with the keyboard too.
    expect(page).to_have_url(_at(live.issuer, "/mfa/setup?txn="))
    tab_to(page, "mfa set-up", lambda f: f["text"] == "Remind me later")
    page.keyboard.press("Enter")

    # Consent: the skip link goes to the main content, then on to "Allow".
    expect(page).to_have_url(_at(live.issuer, "/consent?txn="))
    skip = tab_to(page, "consent", lambda f: True)
    assert skip["text"] == "Skip to main content", skip
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    tab_to(page, "consent", lambda f: f["text"] == "Allow")
    page.keyboard.press("Enter")
    expect(page).to_have_url(_at(rp_server.url, "/callback?"))
    assert rp_server.last_claims and rp_server.last_claims["email"] == user.email


# -- 6. the admin pages ----------------------------------------------------------------------


def test_admin_pages(audit: _Audit, a11y_page: Page, live_server: LiveServer, browser_log):
    """Every admin page at full width, the help desk's confirmation dialog and page."""
    from .test_admin_browser import cli, sign_in_as_new_admin

    page, live = a11y_page, live_server
    sign_in_as_new_admin(page, live, browser_log)
    audit.page(page, "admin-home")

    page.get_by_role("link", name="Applications (clients)").click()
    h1(page, "Applications")
    audit.page(page, "admin-clients")
    page.get_by_role("link", name="Register an application").click()
    h1(page, "Register an application")
    audit.page(page, "admin-client-new")
    page.get_by_label("Name shown to users").fill("Supplier portal")
    page.get_by_label(re.compile("^Redirect URIs")).fill("http://portal.example.gov/callback")
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_role("alert")).to_contain_text("must use https")
    audit.page(page, "admin-client-new-error")
    page.get_by_label(re.compile("^Redirect URIs")).fill("https://portal.example.gov/callback")
    page.get_by_role("button", name="Register").click()
    h1(page, "Application registered")
    audit.page(page, "admin-client-secret")
    page.get_by_role("link", name="Back to applications").click()
    page.get_by_role("link", name="Supplier portal").click()
    h1(page, "Edit Supplier portal")
    audit.page(page, "admin-client-edit")
    page.get_by_role("button", name="Delete…").click()
    h1(page, "Delete Supplier portal?")
    audit.page(page, "admin-client-delete")

    cli(live, "users", "create", "--email", "stuck@example.com", "--name", "Sam Stuck",
        "--unverified", stdin="a passphrase for a stuck user\n")  # fmt: skip
    page.get_by_role("link", name="Help desk: users").click()
    h1(page, "Help desk")
    page.get_by_label("Find a user by email or name").fill("Sam Stuck")
    page.get_by_role("button", name="Search").click()
    audit.page(page, "admin-users")
    page.get_by_role("link", name="stuck@example.com").click()
    h1(page, "stuck@example.com")
    audit.page(page, "admin-user")
    lock = page.get_by_role("button", name="Lock", exact=True)
    lock.click()
    dialog = page.get_by_role("dialog", name=re.compile("^Lock sign-in for"))
    expect(dialog.get_by_role("heading")).to_be_visible()
    audit.page(page, "admin-user-dialog")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog.get_by_role("heading")).to_be_hidden()
    lock.evaluate("b => b.form.requestSubmit(b)")  # as without JavaScript
    h1(page, re.compile("^Lock sign-in for"))
    audit.page(page, "admin-user-confirm")
    page.get_by_role("button", name="Yes, lock").click()
    expect(page.get_by_role("status")).to_have_text("Sign-in locked; sessions ended.")
    audit.page(page, "admin-user-done")

    page.get_by_role("link", name="Audit trail").click()
    h1(page, "Audit trail")
    audit.page(page, "admin-audit")
    page.get_by_role("link", name="MFA adoption").click()
    h1(page, "MFA adoption")
    audit.page(page, "admin-mfa")
    audit.assert_clean()


# -- 7. Connexion, the sample relying party -------------------------------------------------


def test_connexion_pages(audit: _Audit, a11y_page: Page, enforced: Provider, browser_log):
    """Every Connexion page (with its official-site banner) at both widths."""
    from . import test_connexion_journeys as cx

    page, log = a11y_page, browser_log
    with run_connexion(enforced.live) as server:
        site = cx.Site(enforced.live, server)
        user = new_user(site.live)
        cx.landing(page, site, log, audit)
        page.locator("summary").first.click()  # "Here's how you know"
        expect(page.get_by_text("Official websites use .gov")).to_be_visible()
        audit.check(page, "connexion-banner-open")
        page.get_by_role("main").get_by_role("link", name="Sign in").click()
        cx.at_provider_signin(page, site, log)
        cx.submit_password(page, user)
        cx.choose_second_step(page, site, log, "Authenticator app")
        cx.set_up_authenticator_app(page, log)
        cx.skip_recommendation(page, site, log)
        cx.at_dashboard(page, site, user, cx.AAL2, log, audit)
        cx.open_form_c(page)
        cx.at_form_c(page, site)
        cx.checked(page, log, "form-c", audit)
        cx.submit_empty_form_c(page, site, log, audit)
        cx.file_form_c(page, site, log, audit)
        page.goto(f"{site.cx.base_url}/form-c/confirmation/FC-2000H1-0000000000")
        h1(page, "Report not found")
        cx.checked(page, log, "error-not-found", audit, status=True)
        page.goto(f"{site.cx.base_url}/logout")
        h1(page, "Sign out")
        cx.checked(page, log, "sign-out", audit)
        page.get_by_role("main").get_by_role("button", name="Sign out").click()
        cx.at_signed_out(page, site, log, audit)
    audit.assert_clean()
