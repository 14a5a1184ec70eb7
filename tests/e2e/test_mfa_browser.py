"""Second-factor journeys through a real browser, against the provider's real pages.

Three providers, each ``idp run`` in its own process with its own database:

- ``live_server`` (this module's default): MFA required from a date ten days ahead, so
  set-up may still be postponed ("Remind me later");
- ``enforced``: MFA required since yesterday, served as ``http://localhost:PORT`` because
  WebAuthn refuses an IP address as RP ID (and ``localhost`` is a secure context);
- ``optional_mfa``: MFA not required, for step-up requested by the RP (``acr_values``).

TOTP codes come from ``oathtool`` (an implementation independent of the provider's
pyotp), or from :func:`tests.integration.mfa_helpers.totp_code` when it is missing.
Passkeys use Chromium's virtual authenticator (DevTools ``WebAuthn`` domain).

Every second-factor page on the way is checked with :func:`page_basics` (one ``<h1>``,
labelled controls) and :class:`BrowserLog` (no console errors, page errors or CSP
violations).
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect

from tests.integration.mfa_helpers import totp_code

from .conftest import (
    BrowserLog,
    LiveServer,
    User,
    VirtualAuthenticator,
    new_user,
    page_basics,
    run_provider,
    run_rp,
    snap,
)
from .rp_app import RelyingParty

pytestmark = pytest.mark.browser

AAL1 = "http://idmanagement.gov/ns/assurance/aal/1"
ACR_MFA = "urn:idp:acr:mfa"
AAL2 = "http://idmanagement.gov/ns/assurance/aal/2"
AAL2_PR = "http://idmanagement.gov/ns/assurance/aal/2?phishing_resistant=true"
TOTP_PERIOD = 30
OATHTOOL = shutil.which("oathtool")


def _utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


ENFORCE_FROM = _utc_today() + dt.timedelta(days=10)


# -- providers -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_server_env() -> dict[str, str]:
    """This module's default provider: MFA required from ten days ahead."""
    return {"IDP_MFA_REQUIRED": "true", "IDP_MFA_ENFORCE_FROM": ENFORCE_FROM.isoformat()}


@dataclass(frozen=True)
class Provider:
    live: LiveServer
    rp: RelyingParty


@pytest.fixture(scope="module")
def enforced(tmp_path_factory, keys_dir) -> Iterator[Provider]:
    """MFA required since yesterday; on ``localhost`` so that WebAuthn works."""
    env = {
        "IDP_MFA_REQUIRED": "true",
        "IDP_MFA_ENFORCE_FROM": (_utc_today() - dt.timedelta(days=1)).isoformat(),
    }
    with run_provider(tmp_path_factory, keys_dir, env, "localhost") as live, run_rp(live) as rp:
        yield Provider(live, rp)


@pytest.fixture(scope="module")
def optional_mfa(tmp_path_factory, keys_dir) -> Iterator[Provider]:
    """MFA not required: a second factor is asked for only when the RP requests it."""
    env = {"IDP_MFA_REQUIRED": "false"}
    with run_provider(tmp_path_factory, keys_dir, env) as live, run_rp(live) as rp:
        yield Provider(live, rp)


# -- helpers -------------------------------------------------------------------------


def _at(base: str, path: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(base)}{re.escape(path)}")


def mfa_page(page: Page, log: BrowserLog, name: str) -> None:
    """Screenshot a second-factor page and run the accessibility smoke on it."""
    snap(page, name)
    assert page_basics(page) == [], f"{name} ({page.url})"
    assert log.problems() == [], f"{name} ({page.url})"


def open_signin(page: Page, live: LiveServer, rp: RelyingParty) -> None:
    page.goto(f"{rp.url}/")
    expect(page.get_by_text("Not signed in")).to_be_visible()
    page.get_by_role("link", name="Sign in").click()
    expect(page).to_have_url(_at(live.issuer, "/signin?"))
    expect(page.get_by_role("heading", name="Sign in", level=1)).to_be_visible()
    snap(page, "signin")
    assert page_basics(page) == [], page.url


def submit_password(page: Page, user: User) -> None:
    page.get_by_label("Email address").fill(user.email)
    page.get_by_label("Password").fill(user.password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def allow_consent(page: Page, live: LiveServer) -> None:
    expect(page).to_have_url(_at(live.issuer, "/consent?txn="))
    expect(page.get_by_role("heading", name="Allow E2E RP to use your account?")).to_be_visible()
    snap(page, "consent")
    assert page_basics(page) == [], page.url
    page.get_by_role("button", name="Allow", exact=True).click()


def at_rp(page: Page, rp: RelyingParty, user: User, acr: str) -> list[str]:
    """The RP's callback page shows *user* signed in at *acr*; returns the amr values."""
    expect(page).to_have_url(_at(rp.url, "/callback?"))
    expect(page.locator("#who")).to_have_text(f"Signed in as {user.email}")
    expect(page.locator("#acr")).to_have_text(acr)
    snap(page, "rp-callback")
    claims = rp.last_claims
    assert claims is not None and claims["email"] == user.email, rp.outcomes
    assert claims["acr"] == acr
    amr = claims["amr"]
    assert page.locator("#amr").inner_text().split() == amr
    return amr


def skip_recommendation(page: Page, log: BrowserLog) -> None:
    """The "add a backup method" page after the first second factor: "Not now"."""
    expect(page).to_have_url(re.compile(r"/mfa/recommend\?txn="))
    expect(page.get_by_role("heading", name="Add a backup sign-in method", level=1)).to_be_visible()
    mfa_page(page, log, "recommend")
    page.get_by_role("button", name="Not now").click()


@dataclass
class AuthenticatorApp:
    """The user's phone: TOTP codes for the key read off the set-up page."""

    secret: str
    last_step: int | None = None

    def code(self) -> str:
        step = int(time.time() // TOTP_PERIOD)
        if self.last_step is not None and step <= self.last_step:
            # This window's code was used already and is refused as a replay. The
            # provider accepts one step of clock drift, so show the next window's code,
            # as a phone whose clock runs a few seconds ahead would (instead of a wait
            # of up to 30 s for the window to change).
            step = self.last_step + 1
        self.last_step = step
        if OATHTOOL:
            out = subprocess.run(
                [OATHTOOL, "--totp", "-b", "-N", f"@{step * TOTP_PERIOD}", self.secret],
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            )
            return out.stdout.strip()
        return totp_code(self.secret, step)


def set_up_authenticator_app(page: Page, log: BrowserLog) -> AuthenticatorApp:
    """On the TOTP set-up page: read the key, enter a code, "Verify and turn on"."""
    expect(page).to_have_url(re.compile(r"/mfa/setup/totp\?"))
    expect(page.get_by_role("heading", name="Set up an authenticator app", level=1)).to_be_visible()
    expect(page.locator(".qr svg")).to_be_visible()
    expect(page.get_by_text("Or enter this setup key by hand")).to_be_visible()
    key = page.locator("code.secret")
    secret = key.inner_text().replace(" ", "")
    assert re.fullmatch(r"[A-Z2-7]{32}", secret), secret
    mfa_page(page, log, "totp-setup")
    app = AuthenticatorApp(secret)
    page.get_by_label("6-digit code").fill(app.code())
    page.get_by_label("Name for this app (optional)").fill("Test phone")
    snap(page, "totp-setup-filled")
    page.get_by_role("button", name="Verify and turn on").click()
    return app


def choose_on_setup_page(page: Page, log: BrowserLog, heading: str, method: str) -> None:
    expect(page).to_have_url(re.compile(r"/mfa/setup\?txn="))
    expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()
    expect(page.get_by_role("button", name="Remind me later")).to_have_count(0)
    mfa_page(page, log, "setup")
    page.get_by_role("link", name=method, exact=True).click()


# -- 1. before the enforcement date: "Remind me later" -------------------------------


def test_mfa_reminder_before_the_enforcement_date_can_be_postponed(
    browser_page: Page,
    live_server: LiveServer,
    rp_server: RelyingParty,
    user: User,
    browser_log: BrowserLog,
):
    page = browser_page
    open_signin(page, live_server, rp_server)
    submit_password(page, user)

    expect(page).to_have_url(_at(live_server.issuer, "/mfa/setup?txn="))
    date = f"{ENFORCE_FROM:%B} {ENFORCE_FROM.day}, {ENFORCE_FROM.year}"
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_have_text(f"Extra security is required from {date}")
    days_left = (ENFORCE_FROM - _utc_today()).days
    assert days_left == 10
    expect(page.locator(".notice")).to_contain_text(f"{days_left} days left.")
    # Set-up is offered right here. This provider runs on 127.0.0.1, where browsers
    # refuse WebAuthn (an IP address cannot be an RP ID): passkeys are not offered at
    # all rather than offered and failing.
    expect(page.get_by_role("link", name="Authenticator app", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Security key or passkey", exact=True)).to_have_count(0)
    mfa_page(page, browser_log, "setup-optional")

    page.get_by_role("button", name="Remind me later").click()
    allow_consent(page, live_server)
    amr = at_rp(page, rp_server, user, AAL1)
    assert amr == ["pwd"]
    assert browser_log.problems() == []


# -- 2. after the date: set up an authenticator app -----------------------------------


def test_mfa_required_after_the_date_sets_up_an_authenticator_app(
    browser_page: Page, enforced: Provider, browser_log: BrowserLog
):
    page, live, rp = browser_page, enforced.live, enforced.rp
    user = new_user(live)
    open_signin(page, live, rp)
    submit_password(page, user)

    choose_on_setup_page(page, browser_log, "Set up a second sign-in step", "Authenticator app")
    set_up_authenticator_app(page, browser_log)
    skip_recommendation(page, browser_log)
    allow_consent(page, live)

    amr = at_rp(page, rp, user, AAL2)
    assert {"pwd", "otp", "mfa"} <= set(amr), amr
    assert browser_log.problems() == []


def test_wrong_totp_code_at_set_up_is_explained_and_can_be_corrected(
    browser_page: Page, enforced: Provider, browser_log: BrowserLog
):
    page, live, rp = browser_page, enforced.live, enforced.rp
    user = new_user(live)
    open_signin(page, live, rp)
    submit_password(page, user)
    choose_on_setup_page(page, browser_log, "Set up a second sign-in step", "Authenticator app")

    secret = page.locator("code.secret").inner_text().replace(" ", "")
    app = AuthenticatorApp(secret)
    right = app.code()
    wrong = f"{(int(right) + 500_000) % 1_000_000:06d}"
    page.get_by_label("6-digit code").fill(wrong)
    page.get_by_role("button", name="Verify and turn on").click()

    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("That code did not match")
    code_field = page.get_by_label("6-digit code")
    expect(code_field).to_have_attribute("aria-invalid", "true")
    expect(code_field).to_have_attribute("aria-describedby", "form-error")
    # The same key: the app the user already added keeps working.
    expect(page.locator("code.secret")).to_have_text(re.compile(r"[A-Z2-7 ]+"))
    assert page.locator("code.secret").inner_text().replace(" ", "") == secret
    # Chromium logs the 400 status of the re-shown form; nothing else may appear.
    browser_log.console = [m for m in browser_log.console if "status of 400" not in m["text"]]
    mfa_page(page, browser_log, "totp-setup-error")

    code_field.fill(right)
    page.get_by_role("button", name="Verify and turn on").click()
    skip_recommendation(page, browser_log)
    allow_consent(page, live)
    assert "otp" in at_rp(page, rp, user, AAL2)


# -- 3. passkey: set up, sign out, sign in again ---------------------------------------


def test_passkey_set_up_and_sign_in_with_a_virtual_authenticator(
    browser_page: Page,
    enforced: Provider,
    virtual_authenticator: VirtualAuthenticator,
    browser_log: BrowserLog,
):
    page, live, rp = browser_page, enforced.live, enforced.rp
    user = new_user(live)
    open_signin(page, live, rp)
    submit_password(page, user)

    choose_on_setup_page(
        page, browser_log, "Set up a second sign-in step", "Security key or passkey"
    )
    expect(page).to_have_url(re.compile(r"/mfa/setup/webauthn\?"))
    expect(
        page.get_by_role("heading", name="Set up a security key or passkey", level=1)
    ).to_be_visible()
    assert page.evaluate("window.isSecureContext") is True
    mfa_page(page, browser_log, "webauthn-setup")
    page.get_by_label("Name for this key (optional)").fill("Virtual passkey")
    # webauthn.js: options from the provider, navigator.credentials.create(), form post.
    page.get_by_role("button", name="Set up security key or passkey").click()

    skip_recommendation(page, browser_log)
    allow_consent(page, live)
    amr = at_rp(page, rp, user, AAL2_PR)
    assert {"pwd", "mfa", "user"} <= set(amr) and {"hwk", "swk"} & set(amr), amr
    creds = virtual_authenticator.credentials()
    assert len(creds) == 1, creds
    assert creds[0]["rpId"] == "localhost"
    assert creds[0]["isResidentCredential"] is True
    assert creds[0]["signCount"] >= 0
    sign_count = creds[0]["signCount"]

    # "Sign out": the cookies go (the RP's too, on the same host), the passkey stays in
    # the authenticator, which belongs to this tab.
    page.context.clear_cookies(domain="localhost")
    assert page.context.cookies() == []
    # The password way (the sign-in page's passkey autofill would pick the passkey at once:
    # see the passkey tests below), in a browser without autofill.
    page.add_init_script(NO_AUTOFILL)
    open_signin(page, live, rp)
    submit_password(page, user)

    expect(page).to_have_url(_at(live.issuer, "/mfa/challenge?txn="))
    expect(page.get_by_role("heading", name="Verify it's you", level=1)).to_be_visible()
    mfa_page(page, browser_log, "challenge-webauthn")
    page.get_by_role("button", name="Use security key or passkey").click()

    # One factor only: the backup recommendation comes after every second factor.
    skip_recommendation(page, browser_log)
    amr = at_rp(page, rp, user, AAL2_PR)  # consent was remembered
    assert {"pwd", "mfa", "user"} <= set(amr), amr
    assert virtual_authenticator.credentials()[0]["signCount"] > sign_count
    assert browser_log.problems() == []


# -- 4. step-up from a password-only session ------------------------------------------


def test_step_up_from_a_password_session_asks_only_for_the_second_factor(
    browser_page: Page, optional_mfa: Provider, browser_log: BrowserLog
):
    page, live, rp = browser_page, optional_mfa.live, optional_mfa.rp
    user = new_user(live)

    # Set up an authenticator app and recovery codes on the account page.
    page.goto(f"{live.issuer}/account/security")
    expect(page).to_have_url(_at(live.issuer, "/signin?"))
    submit_password(page, user)
    expect(page).to_have_url(_at(live.issuer, "/account/security"))
    expect(page.get_by_text("You have no second sign-in method yet.")).to_be_visible()
    mfa_page(page, browser_log, "account")
    page.get_by_role("link", name="Authenticator app", exact=True).click()
    app = set_up_authenticator_app(page, browser_log)
    # The first method: a backup (recovery codes, a second method) is suggested at once.
    expect(page).to_have_url(_at(live.issuer, "/mfa/recommend?next=account&added=totp"))
    expect(page.get_by_role("status")).to_have_text("Authenticator app added.")
    mfa_page(page, browser_log, "recommend-account")
    page.get_by_role("link", name="Recovery codes").click()
    expect(page.get_by_role("heading", name="Create recovery codes", level=1)).to_be_visible()
    mfa_page(page, browser_log, "recovery-setup")
    page.get_by_role("button", name="Create codes").click()
    expect(page.get_by_role("heading", name="Save your recovery codes", level=1)).to_be_visible()
    expect(page.get_by_role("list", name="Recovery codes").locator("li")).not_to_have_count(0)
    mfa_page(page, browser_log, "recovery-codes")
    page.get_by_role("button", name=re.compile("I saved my codes")).click()
    expect(page).to_have_url(_at(live.issuer, "/account/security"))
    mfa_page(page, browser_log, "account-with-factors")

    # A new browser session: the password alone is enough for this RP by default.
    page.context.clear_cookies()
    open_signin(page, live, rp)
    submit_password(page, user)
    allow_consent(page, live)
    assert at_rp(page, rp, user, AAL1) == ["pwd"]

    # The RP asks for more: only the second factor is asked for, not the password again.
    visited: list[str] = []
    page.on("framenavigated", lambda f: visited.append(f.url) if f == page.main_frame else None)
    page.goto(f"{rp.url}/login?acr_values={ACR_MFA}")
    expect(page).to_have_url(_at(live.issuer, "/mfa/challenge?txn="))
    expect(page.get_by_role("heading", name="Verify it's you", level=1)).to_be_visible()
    expect(page.get_by_label("6-digit code")).to_be_visible()
    expect(page.get_by_role("link", name="Recovery codes")).to_be_visible()
    mfa_page(page, browser_log, "challenge-totp")
    page.get_by_label("6-digit code").fill(app.code())
    page.get_by_role("button", name="Verify").click()

    amr = at_rp(page, rp, user, ACR_MFA)
    assert {"pwd", "otp", "mfa"} <= set(amr), amr
    pages = [u for u in visited if u.startswith(live.issuer)]
    assert not [u for u in pages if "/signin" in u], pages
    assert [u for u in pages if "/mfa/" in u and "/challenge" in u], pages
    assert not [u for u in pages if "/consent" in u or "/recommend" in u], pages
    assert browser_log.problems() == []


def test_a_cancelled_passkey_prompt_is_explained_and_can_be_retried(
    browser_page: Page,
    enforced: Provider,
    virtual_authenticator: VirtualAuthenticator,
    browser_log: BrowserLog,
):
    page, live, rp = browser_page, enforced.live, enforced.rp
    user = new_user(live)
    open_signin(page, live, rp)
    submit_password(page, user)
    choose_on_setup_page(
        page, browser_log, "Set up a second sign-in step", "Security key or passkey"
    )
    button = page.get_by_role("button", name="Set up security key or passkey")

    # The user fails (or dismisses) the fingerprint / screen-lock check.
    virtual_authenticator.set_user_verified(False)
    button.click()
    status = page.locator("[data-webauthn-status]")
    expect(status).to_have_text(re.compile("cancelled or timed out"))
    expect(status).to_have_attribute("role", "alert")
    expect(button).to_be_enabled()
    expect(page).to_have_url(re.compile(r"/mfa/setup/webauthn\?"))
    assert virtual_authenticator.credentials() == []
    mfa_page(page, browser_log, "webauthn-setup-cancelled")

    virtual_authenticator.set_user_verified(True)
    button.click()
    skip_recommendation(page, browser_log)
    allow_consent(page, live)
    at_rp(page, rp, user, AAL2_PR)
    assert len(virtual_authenticator.credentials()) == 1
    assert browser_log.problems() == []


def test_a_browser_without_webauthn_is_told_at_once_and_shown_another_way(
    browser_page: Page, enforced: Provider, browser_log: BrowserLog
):
    """No PublicKeyCredential (an old or locked-down browser): the set-up page says so
    before any click, the button is off, and "Choose another method" leads on."""
    page, live, rp = browser_page, enforced.live, enforced.rp
    page.add_init_script("delete window.PublicKeyCredential;")
    user = new_user(live)
    open_signin(page, live, rp)
    submit_password(page, user)
    choose_on_setup_page(
        page, browser_log, "Set up a second sign-in step", "Security key or passkey"
    )
    expect(page.locator("[data-webauthn-status]")).to_have_text(
        re.compile("This browser cannot use security keys or passkeys")
    )
    expect(page.get_by_role("button", name="Set up security key or passkey")).to_be_disabled()
    mfa_page(page, browser_log, "webauthn-unsupported")
    page.get_by_role("link", name="Choose another method").click()
    expect(page).to_have_url(_at(live.issuer, "/mfa/setup?txn="))
    choose_on_setup_page(page, browser_log, "Set up a second sign-in step", "Authenticator app")
    set_up_authenticator_app(page, browser_log)
    skip_recommendation(page, browser_log)
    allow_consent(page, live)
    assert {"otp", "mfa"} <= set(at_rp(page, rp, user, AAL2))
    assert browser_log.problems() == []


# -- a sign-in with a passkey alone ---------------------------------------------------------

#: A browser without passkey autofill (conditional mediation): the button is the way.
NO_AUTOFILL = """
if (window.PublicKeyCredential) {
  PublicKeyCredential.isConditionalMediationAvailable = () => Promise.resolve(false);
}
"""

#: A client that asks the authenticator not to verify the user, whatever the provider
#: asked: its assertions come without the UV flag.
NO_USER_VERIFICATION = """
(() => {
  const get = navigator.credentials.get.bind(navigator.credentials);
  navigator.credentials.get = (options) => {
    if (options && options.publicKey) options.publicKey.userVerification = "discouraged";
    return get(options);
  };
})();
"""


#: Tells the test how the page called navigator.credentials.get (its mediation).
RECORD_MEDIATION = """
(() => {
  const get = navigator.credentials.get.bind(navigator.credentials);
  navigator.credentials.get = (options) => {
    window.idpTestSawGet(String((options && options.mediation) || "none"));
    return get(options);
  };
})();
"""


def set_up_passkey(page: Page, live: LiveServer, rp: RelyingParty, log: BrowserLog) -> User:
    """A new user signs in with the password and sets up a passkey on the virtual
    authenticator (resident key, user verification); then the browser "signs out"."""
    user = new_user(live)
    open_signin(page, live, rp)
    submit_password(page, user)
    choose_on_setup_page(page, log, "Set up a second sign-in step", "Security key or passkey")
    page.get_by_role("button", name="Set up security key or passkey").click()
    skip_recommendation(page, log)
    allow_consent(page, live)
    assert at_rp(page, rp, user, AAL2_PR) == ["hwk", "mfa", "pwd", "user"]
    page.context.clear_cookies()
    return user


def passkey_signin_page(page: Page, live: LiveServer, rp: RelyingParty, log: BrowserLog):
    open_signin(page, live, rp)
    email = page.get_by_label("Email address")
    expect(email).to_have_attribute("autocomplete", "username webauthn")
    button = page.get_by_role("button", name="Sign in with a passkey")
    expect(button).to_be_visible()
    mfa_page(page, log, "signin-passkey")
    return button


def test_passkey_signs_in_through_autofill(
    browser_page: Page,
    enforced: Provider,
    virtual_authenticator: VirtualAuthenticator,
    browser_log: BrowserLog,
):
    """The email field offers the passkey (conditional mediation, started as the page
    opens): picking it signs in, no email, no password, no button. The virtual
    authenticator picks its one passkey at once, as a user would in the suggestions."""
    page, live, rp = browser_page, enforced.live, enforced.rp
    user = set_up_passkey(page, live, rp, browser_log)
    (credential,) = virtual_authenticator.credentials()
    assert credential["isResidentCredential"] is True
    before = credential["signCount"]

    mediations: list[str] = []
    page.expose_function("idpTestSawGet", lambda mediation: mediations.append(mediation))
    page.add_init_script(RECORD_MEDIATION)
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
    page.goto(f"{rp.url}/")
    page.get_by_role("link", name="Sign in").click()
    skip_recommendation(page, browser_log)  # one method only: a backup is suggested
    assert at_rp(page, rp, user, AAL2_PR) == ["hwk", "mfa", "user"]
    assert mediations == ["conditional"]
    assert virtual_authenticator.credentials()[0]["signCount"] > before
    ours = [u.split("?")[0] for u in posted if u.startswith(live.issuer)]
    # No email and password form was sent: the passkey's options, its answer, "Not now".
    assert ours == [
        f"{live.issuer}/signin/passkey/options",
        f"{live.issuer}/signin/passkey",
        f"{live.issuer}/mfa/recommend",
    ]
    assert browser_log.problems() == []


def test_passkey_signs_in_through_the_button(
    browser_page: Page,
    enforced: Provider,
    virtual_authenticator: VirtualAuthenticator,
    browser_log: BrowserLog,
):
    """A browser without passkey autofill: "Sign in with a passkey" opens the browser's
    passkey dialog; the credential names the user."""
    page, live, rp = browser_page, enforced.live, enforced.rp
    user = set_up_passkey(page, live, rp, browser_log)
    page.add_init_script(NO_AUTOFILL)
    button = passkey_signin_page(page, live, rp, browser_log)
    assert page.evaluate("PublicKeyCredential.isConditionalMediationAvailable()") is False
    page.wait_for_timeout(500)
    expect(page).to_have_url(_at(live.issuer, "/signin?"))  # nothing happens on its own
    status = page.locator("[data-webauthn-status]")
    expect(status).not_to_have_attribute("role", "alert")  # no empty alert

    # The fingerprint or screen-lock check fails: said, and the button works again.
    virtual_authenticator.set_user_verified(False)
    button.click()
    expect(status).to_have_text(re.compile("cancelled or timed out"))
    expect(status).to_have_attribute("role", "alert")
    expect(button).to_be_enabled()
    expect(page).to_have_url(_at(live.issuer, "/signin?"))
    mfa_page(page, browser_log, "signin-passkey-cancelled")
    virtual_authenticator.set_user_verified(True)
    button.click()
    skip_recommendation(page, browser_log)  # one method only: a backup is suggested
    assert at_rp(page, rp, user, AAL2_PR) == ["hwk", "mfa", "user"]
    assert browser_log.problems() == []


def test_passkey_without_user_verification_is_refused_as_first_factor(
    browser_page: Page,
    enforced: Provider,
    virtual_authenticator: VirtualAuthenticator,
    browser_log: BrowserLog,
):
    """The same passkey, moved to an authenticator that cannot verify its user: refused
    as a sign-in on its own, still good as the second step after the password."""
    page, live, rp = browser_page, enforced.live, enforced.rp
    user = set_up_passkey(page, live, rp, browser_log)
    # The user's fingerprint or PIN check does not happen (or fails).
    virtual_authenticator.set_user_verified(False)
    page.add_init_script(NO_AUTOFILL + NO_USER_VERIFICATION)
    button = passkey_signin_page(page, live, rp, browser_log)
    button.click()
    expect(page).to_have_url(_at(live.issuer, "/signin/passkey"))
    expect(page.locator("#form-error, .usa-alert--error").first).to_contain_text(
        "did not check that it is you"
    )
    # The refusal is a 400 page, which Chromium logs as a failed load: the one expected.
    refused = [m for m in browser_log.console if "/signin/passkey" in (m["url"] or "")]
    assert [m["text"] for m in refused] == [
        "Failed to load resource: the server responded with a status of 400 (BAD REQUEST)"
    ]
    browser_log.console = [m for m in browser_log.console if m not in refused]
    mfa_page(page, browser_log, "signin-passkey-refused")

    # With the password first, the same key is a fine second step.
    submit_password(page, user)
    expect(page).to_have_url(_at(live.issuer, "/mfa/challenge?txn="))
    page.get_by_role("button", name="Use security key or passkey").click()
    skip_recommendation(page, browser_log)
    amr = at_rp(page, rp, user, AAL2_PR)
    assert amr == ["hwk", "mfa", "pwd", "user"]
    assert browser_log.problems() == []


def test_passkey_offered_after_a_password_sign_in_and_then_used(
    browser_page: Page,
    enforced: Provider,
    virtual_authenticator: VirtualAuthenticator,
    browser_log: BrowserLog,
):
    """A user with an authenticator app and recovery codes signs in with the password:
    "Sign in faster next time" offers a passkey; set up from there, it signs in alone
    the next time."""
    page, live, rp = browser_page, enforced.live, enforced.rp
    user = new_user(live)
    open_signin(page, live, rp)
    submit_password(page, user)
    choose_on_setup_page(page, browser_log, "Set up a second sign-in step", "Authenticator app")
    app = set_up_authenticator_app(page, browser_log)
    expect(page).to_have_url(re.compile(r"/mfa/recommend\?txn="))
    page.get_by_role("link", name="Recovery codes").click()
    page.get_by_role("button", name="Create codes").click()
    page.get_by_role("button", name=re.compile("I saved my codes")).click()
    allow_consent(page, live)
    at_rp(page, rp, user, AAL2)
    page.context.clear_cookies()

    # Password and app code: no passkey yet, so one is offered.
    open_signin(page, live, rp)
    submit_password(page, user)
    expect(page).to_have_url(_at(live.issuer, "/mfa/challenge?txn="))
    page.get_by_label("6-digit code").fill(app.code())
    page.get_by_role("button", name="Verify").click()
    expect(page).to_have_url(_at(live.issuer, "/mfa/passkey/offer?txn="))
    expect(page.get_by_role("heading", name="Sign in faster next time", level=1)).to_be_visible()
    expect(page.get_by_text("we will not ask again for 30 days")).to_be_visible()
    mfa_page(page, browser_log, "passkey-offer")
    page.get_by_role("button", name="Set up a passkey").click()
    expect(page).to_have_url(re.compile(r"/mfa/setup/webauthn\?"))
    expect(page.get_by_role("link", name="Continue without a passkey")).to_be_visible()
    mfa_page(page, browser_log, "passkey-offer-setup")
    page.get_by_role("button", name="Set up security key or passkey").click()
    assert {"otp", "pwd", "mfa"} <= set(at_rp(page, rp, user, AAL2_PR))
    (credential,) = virtual_authenticator.credentials()
    assert credential["isResidentCredential"] is True
    page.context.clear_cookies()

    # The next sign-in: the passkey alone, through autofill.
    page.goto(f"{rp.url}/")
    page.get_by_role("link", name="Sign in").click()
    assert at_rp(page, rp, user, AAL2_PR) == ["hwk", "mfa", "user"]
    assert browser_log.problems() == []
