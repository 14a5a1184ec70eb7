"""User journeys through Connexion, the sample relying party, in real headless Chromium.

Connexion (``python -m clients.connexion``) and the provider (``idp run``) each run in a
process of their own, served as ``http://localhost:PORT`` (WebAuthn refuses an IP address
as RP ID; the two session cookies have different names, since cookies ignore ports).
Connexion is registered at its provider with ``idp clients create --first-party``, as
``idp demo`` does: no consent page.

Three providers, each with its own Connexion:

- ``reminder``: MFA required from ten days ahead, so set-up may still be postponed;
- ``enforced``: MFA required since yesterday;
- ``optional``: MFA not required: Form C asks for the second step (step-up).

Every Connexion page on the way is screenshotted (:func:`snap`, kept on failure) and
checked with :func:`page_basics` and :class:`BrowserLog` (no console errors, page errors
or CSP violations: Connexion's CSP is ``script-src 'none'``). The accessibility journey
runs axe-core on each Connexion page, in the ``a11y_page`` context that bypasses CSP (so
that axe-core can be injected); the other journeys visit the same pages with CSP
enforced. On failure ``test-artifacts/<test>.connexion.log`` holds Connexion's log,
beside the provider's.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.integration.mfa_helpers import totp_code

from .axe import AxeAudit, require_axe
from .conftest import (
    ARTIFACTS,
    BrowserLog,
    ConnexionServer,
    LiveServer,
    User,
    VirtualAuthenticator,
    _artifact_stem,
    _failed,
    new_user,
    page_basics,
    run_connexion,
    run_provider,
    snap,
)

pytestmark = pytest.mark.browser

AAL1 = "http://idmanagement.gov/ns/assurance/aal/1"
ACR_MFA = "urn:idp:acr:mfa"
AAL2 = "http://idmanagement.gov/ns/assurance/aal/2"
AAL2_PR = "http://idmanagement.gov/ns/assurance/aal/2?phishing_resistant=true"
# What Connexion's dashboard says for each level: written out here rather than imported
# from clients.connexion.assurance, so that the test checks the words a user reads.
LEVEL_WORDS = {
    AAL1: "Password only",
    ACR_MFA: "Password and a second step (MFA)",
    AAL2: "Password and a strong second step (NIST AAL2)",
    AAL2_PR: "Phishing-resistant security key or passkey",
}
TOTP_PERIOD = 30
OATHTOOL = shutil.which("oathtool")
SUPPLIER_NUMBER = "1234567890"
# Chromium logs the HTTP status of a page served as 400 (Form C shown again with errors)
# or 404 (an unknown report) as a console error; nothing else may appear.
STATUS_LINE = re.compile(r"the server responded with a status of 40[04]")


def _utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


ENFORCE_FROM = _utc_today() + dt.timedelta(days=10)


# -- the providers, each with a Connexion beside it ------------------------------------


@dataclass(frozen=True)
class Site:
    """A provider and the Connexion registered at it. ``.live`` makes a failed test's
    artifacts include the provider's log."""

    live: LiveServer
    cx: ConnexionServer


@contextmanager
def _site(tmp_path_factory, keys_dir, env: dict[str, str]) -> Iterator[Site]:
    # No "sign in faster next time" page in these journeys (tests/e2e/test_mfa_browser.py
    # walks it).
    env = {"IDP_WEBAUTHN_PASSKEY_OFFER_DAYS": "0", **env}
    with (
        run_provider(tmp_path_factory, keys_dir, env, "localhost") as live,
        run_connexion(live) as cx,
    ):
        yield Site(live, cx)


@pytest.fixture(scope="module")
def reminder(tmp_path_factory, keys_dir) -> Iterator[Site]:
    """MFA required from ten days ahead: set-up may be postponed ("Remind me later")."""
    env = {"IDP_MFA_REQUIRED": "true", "IDP_MFA_ENFORCE_FROM": ENFORCE_FROM.isoformat()}
    with _site(tmp_path_factory, keys_dir, env) as site:
        yield site


@pytest.fixture(scope="module")
def enforced(tmp_path_factory, keys_dir) -> Iterator[Site]:
    """MFA required since yesterday."""
    yesterday = _utc_today() - dt.timedelta(days=1)
    env = {"IDP_MFA_REQUIRED": "true", "IDP_MFA_ENFORCE_FROM": yesterday.isoformat()}
    with _site(tmp_path_factory, keys_dir, env) as site:
        yield site


@pytest.fixture(scope="module")
def optional(tmp_path_factory, keys_dir) -> Iterator[Site]:
    """MFA not required: a password alone signs in; Form C asks for the second step."""
    with _site(tmp_path_factory, keys_dir, {"IDP_MFA_REQUIRED": "false"}) as site:
        yield site


@pytest.fixture(autouse=True)
def _connexion_log_artifact(request) -> Iterator[None]:
    """On failure, ``test-artifacts/<test>.connexion.log``: the log of each Connexion used."""
    path = ARTIFACTS / f"{_artifact_stem(request.node)}.connexion.log"
    path.unlink(missing_ok=True)
    yield
    if not _failed(request.node):
        return
    sites = [v for v in getattr(request.node, "funcargs", {}).values() if isinstance(v, Site)]
    if sites:
        ARTIFACTS.mkdir(exist_ok=True)
        path.write_text(
            "".join(f"===== {s.cx.base_url} =====\n{s.cx.log()}\n" for s in sites),
            encoding="utf-8",
        )


# -- the user's authenticator app ------------------------------------------------------


@dataclass
class AuthenticatorApp:
    """The user's phone: codes for the setup key read off the provider's page, from
    ``oathtool --totp -b KEY`` (independent of the provider's pyotp)."""

    secret: str
    last_step: int | None = None

    def code(self) -> str:
        step = int(time.time() // TOTP_PERIOD)
        if self.last_step is not None and step <= self.last_step:
            # This window's code was used already and would be refused as a replay: show
            # the next window's, as a phone whose clock runs a few seconds ahead would
            # (the provider accepts one step of drift) instead of waiting up to 30 s.
            step = self.last_step + 1
        self.last_step = step
        if not OATHTOOL:
            return totp_code(self.secret, step)
        out = subprocess.run(
            [OATHTOOL, "--totp", "-b", "-N", f"@{step * TOTP_PERIOD}", self.secret],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return out.stdout.strip()


# -- pages -----------------------------------------------------------------------------


def _at(base: str, path: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(base)}{re.escape(path)}")


def _path(url: str) -> str:
    return urlsplit(url).path


def checked(
    page: Page, log: BrowserLog, name: str, audit: AxeAudit | None = None, *, status=False
) -> None:
    """Screenshot the page, run the accessibility smoke on it (and axe-core when
    *audit*), and require a clean browser log. *status*: the page is served with an
    error status, which Chromium logs as a console error (and only that is forgiven)."""
    snap(page, name)
    if status:
        log.console = [m for m in log.console if not STATUS_LINE.search(m["text"])]
    assert page_basics(page) == [], f"{name} ({page.url})"
    assert log.problems() == [], f"{name} ({page.url})"
    if audit is not None:
        audit.check(page, f"connexion-{name}")


def landing(page: Page, site: Site, log: BrowserLog, audit: AxeAudit | None = None) -> None:
    page.goto(f"{site.cx.base_url}/")
    expect(page.get_by_role("heading", name="Connexion", level=1)).to_be_visible()
    expect(page.get_by_role("navigation", name="Main").get_by_role("link")).to_have_text(
        ["Sign in"]
    )
    checked(page, log, "landing", audit)


def sign_in_at_connexion(page: Page, site: Site, log: BrowserLog) -> None:
    """From Connexion's landing page to the provider's sign-in page."""
    landing(page, site, log)
    page.get_by_role("main").get_by_role("link", name="Sign in").click()
    at_provider_signin(page, site, log)


def at_provider_signin(page: Page, site: Site, log: BrowserLog) -> None:
    expect(page).to_have_url(_at(site.live.issuer, "/signin?"))
    expect(page.get_by_role("heading", name="Sign in", level=1)).to_be_visible()
    checked(page, log, "provider-signin")


def submit_password(page: Page, user: User) -> None:
    page.get_by_label("Email address").fill(user.email)
    page.get_by_label("Password").fill(user.password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def at_dashboard(
    page: Page, site: Site, user: User, acr: str, log: BrowserLog, audit: AxeAudit | None = None
) -> list[str]:
    """Connexion's dashboard shows *user* signed in at *acr*, in words and as the value;
    returns the sign-in methods as listed."""
    expect(page).to_have_url(f"{site.cx.base_url}/dashboard")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Welcome, {user.name}")
    who = page.get_by_role("region", name="Who is signed in")
    expect(who).to_contain_text(user.email)
    how = page.get_by_role("region", name="How you signed in")
    expect(how.locator("#acr-words")).to_have_text(LEVEL_WORDS[acr])
    expect(how.locator("code")).to_have_text(acr)
    expect(how.locator("#auth-time")).to_contain_text("(less than a minute ago)")
    checked(page, log, "dashboard", audit)
    return page.locator("#amr-words li").all_inner_texts()


def skip_recommendation(page: Page, site: Site, log: BrowserLog) -> None:
    """The provider's "add a backup method" page after a first second factor: "Not now"."""
    expect(page).to_have_url(_at(site.live.issuer, "/mfa/recommend?txn="))
    expect(page.get_by_role("heading", name="Add a backup sign-in method", level=1)).to_be_visible()
    checked(page, log, "provider-recommend")
    page.get_by_role("button", name="Not now").click()


def set_up_authenticator_app(page: Page, log: BrowserLog) -> AuthenticatorApp:
    """On the provider's TOTP set-up page: read the key, enter a code, turn it on."""
    expect(page).to_have_url(re.compile(r"/mfa/setup/totp\?"))
    expect(page.get_by_role("heading", name="Set up an authenticator app", level=1)).to_be_visible()
    secret = page.locator("code.secret").inner_text().replace(" ", "")
    assert re.fullmatch(r"[A-Z2-7]{32}", secret), secret
    checked(page, log, "provider-totp-setup")
    app = AuthenticatorApp(secret)
    page.get_by_label("6-digit code").fill(app.code())
    page.get_by_role("button", name="Verify and turn on").click()
    return app


def choose_second_step(page: Page, site: Site, log: BrowserLog, method: str) -> None:
    """The provider's mandatory set-up page (after the enforcement date): pick *method*."""
    expect(page).to_have_url(_at(site.live.issuer, "/mfa/setup?txn="))
    expect(
        page.get_by_role("heading", name="Set up a second sign-in step", level=1)
    ).to_be_visible()
    expect(page.get_by_role("button", name="Remind me later")).to_have_count(0)
    checked(page, log, "provider-setup")
    page.get_by_role("link", name=method, exact=True).click()


def open_form_c(page: Page) -> None:
    page.get_by_role("link", name="Open the Form C report").click()


def at_form_c(page: Page, site: Site) -> None:
    expect(page).to_have_url(f"{site.cx.base_url}/form-c")
    expect(page.get_by_role("heading", name="Form C semi-annual report", level=1)).to_be_visible()
    expect(page.locator("#due-date")).to_have_text(re.compile(r"^[A-Z][a-z]+ \d{1,2}, \d{4}$"))


def submit_empty_form_c(
    page: Page, site: Site, log: BrowserLog, audit: AxeAudit | None = None
) -> None:
    """Submit Form C unanswered: the errors are summarised, each field points at its own."""
    page.get_by_role("button", name="Submit report").click()
    expect(page).to_have_url(f"{site.cx.base_url}/form-c")
    expect(page).to_have_title(re.compile(r"^Error: Form C"))
    summary = page.get_by_role("alert")
    expect(summary.get_by_role("heading", name="There is a problem")).to_be_visible()
    expect(summary.get_by_role("link")).to_have_count(4)
    for field in ("supplier_number", "subcontractors", "total_purchases", "certified"):
        control = page.locator(f"#{field}")
        expect(control).to_have_attribute("aria-invalid", "true")
        expect(control).to_have_attribute("aria-describedby", re.compile(rf"\b{field}-error\b"))
        expect(page.locator(f"#{field}-error")).to_be_visible()
    # The summary's link takes the user to the field.
    summary.get_by_role("link", name=re.compile("supplier number")).click()
    expect(page.get_by_label("Supplier number")).to_be_focused()
    checked(page, log, "form-c-errors", audit, status=True)


def file_form_c(page: Page, site: Site, log: BrowserLog, audit: AxeAudit | None = None) -> str:
    """Fill in Form C, certify, submit; returns the confirmation number shown."""
    page.get_by_label("Supplier number").fill(SUPPLIER_NUMBER)
    period = page.get_by_label("Reporting period")
    period.select_option(index=0)
    period_label = period.locator("option:checked").inner_text().split(" (due")[0]
    page.get_by_label("Number of subcontractors").fill("3")
    page.get_by_label("Total purchases, in dollars").fill("12,500.00")
    page.get_by_label(re.compile("I certify that the information")).check()
    snap(page, "form-c-filled")
    page.get_by_role("button", name="Submit report").click()

    expect(page).to_have_url(_at(site.cx.base_url, "/form-c/confirmation/FC-"))
    expect(page.get_by_role("heading", name="Report filed", level=1)).to_be_visible()
    number = page.locator("#confirmation").inner_text().strip()
    assert re.fullmatch(r"FC-\d{4}H[12]-[0-9A-Z]{10}", number), number
    assert page.url.endswith(f"/form-c/confirmation/{number}")
    details = page.locator("dl")
    expect(details).to_contain_text(SUPPLIER_NUMBER)
    expect(details).to_contain_text(period_label)
    expect(details).to_contain_text("$12,500.00")
    checked(page, log, "confirmation", audit)
    return number


def filed_reports(site: Site) -> list[tuple]:
    with sqlite3.connect(site.cx.database) as conn:
        return conn.execute(
            "SELECT confirmation, supplier_number, subcontractors, total_purchases_cents, acr"
            " FROM form_c_reports ORDER BY submitted_at"
        ).fetchall()


def sign_out_of_connexion(
    page: Page, site: Site, log: BrowserLog, audit: AxeAudit | None = None
) -> None:
    """The header's "Sign out": Connexion, then the provider, then Connexion's home page."""
    page.get_by_role("navigation", name="Main").get_by_role("button", name="Sign out").click()
    at_signed_out(page, site, log, audit)


def at_signed_out(page: Page, site: Site, log: BrowserLog, audit: AxeAudit | None = None):
    expect(page).to_have_url(_at(site.cx.base_url, "/?state="))
    expect(page.get_by_role("status")).to_have_text(
        "You are signed out of Connexion and of the sign-in service."
    )
    expect(page.get_by_role("navigation", name="Main").get_by_role("link")).to_have_text(
        ["Sign in"]
    )
    checked(page, log, "signed-out", audit)


# -- 1. before the enforcement date: "Remind me later" ---------------------------------


def test_before_the_enforcement_date_the_user_can_postpone_and_signs_in_with_password_only(
    browser_page: Page, reminder: Site, browser_log: BrowserLog
):
    page, site = browser_page, reminder
    user = new_user(site.live)
    sign_in_at_connexion(page, site, browser_log)
    submit_password(page, user)

    expect(page).to_have_url(_at(site.live.issuer, "/mfa/setup?txn="))
    date = f"{ENFORCE_FROM:%B} {ENFORCE_FROM.day}, {ENFORCE_FROM.year}"
    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Extra security is required from {date}"
    )
    expect(page.locator(".notice")).to_contain_text("10 days left.")
    expect(page.get_by_role("link", name="Authenticator app", exact=True)).to_be_visible()
    checked(page, browser_log, "provider-setup-optional")
    page.get_by_role("button", name="Remind me later").click()

    # First-party client: no consent page; straight back to Connexion.
    amr = at_dashboard(page, site, user, AAL1, browser_log)
    assert amr == ["password"]
    expect(page.get_by_role("region", name="Form C semi-annual report")).to_contain_text(
        "Filing needs a sign-in from the last 15 minutes"
    )


# -- 2. after the date: an authenticator app is required --------------------------------


def test_after_the_enforcement_date_the_user_sets_up_an_authenticator_app(
    browser_page: Page, enforced: Site, browser_log: BrowserLog
):
    page, site = browser_page, enforced
    user = new_user(site.live)
    sign_in_at_connexion(page, site, browser_log)
    submit_password(page, user)

    choose_second_step(page, site, browser_log, "Authenticator app")
    set_up_authenticator_app(page, browser_log)
    skip_recommendation(page, site, browser_log)

    amr = at_dashboard(page, site, user, AAL2, browser_log)
    assert {"password", "authenticator app code", "more than one sign-in step"} <= set(amr), amr
    expect(page.get_by_role("region", name="Form C semi-annual report")).to_contain_text(
        "You can file it now without another check"
    )


# -- 3. Form C from a password-only session: step-up ------------------------------------


def enroll_authenticator_app_at_the_provider(
    page: Page, site: Site, user: User, log: BrowserLog
) -> AuthenticatorApp:
    """The user adds an authenticator app at the provider's /account/security."""
    page.goto(f"{site.live.issuer}/account/security")
    at_provider_signin(page, site, log)
    submit_password(page, user)
    expect(page).to_have_url(_at(site.live.issuer, "/account/security"))
    expect(page.get_by_text("You have no second sign-in method yet.")).to_be_visible()
    checked(page, log, "provider-account")
    page.get_by_role("link", name="Authenticator app", exact=True).click()
    app = set_up_authenticator_app(page, log)
    # The first method: a backup is suggested at once; this user declines for now.
    expect(page).to_have_url(_at(site.live.issuer, "/mfa/recommend?next=account&added=totp"))
    expect(page.get_by_role("status")).to_have_text("Authenticator app added.")
    checked(page, log, "provider-recommend-account")
    page.get_by_role("button", name="Not now").click()
    expect(page).to_have_url(_at(site.live.issuer, "/account/security"))
    return app


def test_form_c_steps_up_a_password_session_with_only_the_authenticator_app_challenge(
    browser_page: Page, optional: Site, browser_log: BrowserLog
):
    page, site = browser_page, optional
    user = new_user(site.live)
    app = enroll_authenticator_app_at_the_provider(page, site, user, browser_log)
    # A new browser session: the password alone is enough for Connexion's sign-in.
    page.context.clear_cookies()

    sign_in_at_connexion(page, site, browser_log)
    submit_password(page, user)
    assert at_dashboard(page, site, user, AAL1, browser_log) == ["password"]

    # Open Form C: Connexion asks for urn:idp:acr:mfa within 15 minutes; the provider,
    # which still has the password session, asks for the code and nothing else.
    requested: list[str] = []  # every navigation request to the provider, redirects too
    shown: list[str] = []  # the provider's pages that were displayed

    def on_request(req) -> None:
        if req.is_navigation_request() and req.url.startswith(site.live.issuer):
            requested.append(_path(req.url))

    def on_navigated(frame) -> None:
        if frame == page.main_frame and frame.url.startswith(site.live.issuer):
            shown.append(_path(frame.url))

    page.on("request", on_request)
    page.on("framenavigated", on_navigated)
    open_form_c(page)
    expect(page).to_have_url(_at(site.live.issuer, "/mfa/challenge?txn="))
    expect(page.get_by_role("heading", name="Verify it's you", level=1)).to_be_visible()
    expect(page.locator("input[type=password]")).to_have_count(0)
    checked(page, browser_log, "provider-challenge-totp")
    page.get_by_label("6-digit code").fill(app.code())
    page.get_by_role("button", name="Verify").click()

    at_form_c(page, site)
    page.remove_listener("request", on_request)
    page.remove_listener("framenavigated", on_navigated)
    # Only the challenge page was shown: no sign-in page (not even a redirect through
    # one), no consent, no recommendation.
    assert shown == ["/mfa/challenge"], (shown, requested)
    assert "/signin" not in requested, requested
    assert requested[0] == "/authorize", requested
    expect(page.get_by_text("Thank you for confirming it is you")).to_have_count(0)
    checked(page, browser_log, "form-c")

    submit_empty_form_c(page, site, browser_log)
    number = file_form_c(page, site, browser_log)
    assert filed_reports(site)[-1] == (number, SUPPLIER_NUMBER, 3, 1_250_000, ACR_MFA)

    page.get_by_role("link", name="Back to your dashboard").click()
    amr = at_dashboard(page, site, user, ACR_MFA, browser_log)
    assert {"password", "authenticator app code"} <= set(amr), amr


# -- 4. passkey: set up, sign out, sign in again -----------------------------------------


def test_passkey_set_up_and_sign_in_again_through_connexion(
    browser_page: Page,
    enforced: Site,
    virtual_authenticator: VirtualAuthenticator,
    browser_log: BrowserLog,
):
    page, site = browser_page, enforced
    user = new_user(site.live)
    sign_in_at_connexion(page, site, browser_log)
    submit_password(page, user)

    choose_second_step(page, site, browser_log, "Security key or passkey")
    expect(page).to_have_url(re.compile(r"/mfa/setup/webauthn\?"))
    assert page.evaluate("window.isSecureContext") is True
    checked(page, browser_log, "provider-webauthn-setup")
    page.get_by_label("Name for this key (optional)").fill("Virtual passkey")
    page.get_by_role("button", name="Set up security key or passkey").click()
    skip_recommendation(page, site, browser_log)

    amr = at_dashboard(page, site, user, AAL2_PR, browser_log)
    assert "password" in amr and {"passkey", "security key"} & set(amr), amr
    creds = virtual_authenticator.credentials()
    assert len(creds) == 1 and creds[0]["rpId"] == "localhost", creds
    sign_count = creds[0]["signCount"]

    sign_out_of_connexion(page, site, browser_log)
    # The password way: without passkey autofill (which would pick the passkey at once).
    page.add_init_script(
        "PublicKeyCredential.isConditionalMediationAvailable = () => Promise.resolve(false);"
    )
    page.get_by_role("main").get_by_role("link", name="Sign in").click()
    at_provider_signin(page, site, browser_log)
    submit_password(page, user)

    expect(page).to_have_url(_at(site.live.issuer, "/mfa/challenge?txn="))
    expect(page.get_by_role("heading", name="Verify it's you", level=1)).to_be_visible()
    checked(page, browser_log, "provider-challenge-webauthn")
    page.get_by_role("button", name="Use security key or passkey").click()
    # One factor only: the provider recommends a backup after every second step.
    skip_recommendation(page, site, browser_log)

    amr = at_dashboard(page, site, user, AAL2_PR, browser_log)
    assert "password" in amr and {"passkey", "security key"} & set(amr), amr
    assert virtual_authenticator.credentials()[0]["signCount"] > sign_count
    # The phishing-resistant level is above Form C's: it opens without another step.
    open_form_c(page)
    at_form_c(page, site)
    checked(page, browser_log, "form-c")


# -- 5. signing out of Connexion ends the provider's session ---------------------------


def test_sign_out_of_connexion_ends_the_provider_session(
    browser_page: Page, optional: Site, browser_log: BrowserLog
):
    page, site = browser_page, optional
    user = new_user(site.live)
    sign_in_at_connexion(page, site, browser_log)
    submit_password(page, user)
    at_dashboard(page, site, user, AAL1, browser_log)
    # While signed in at the provider, Connexion's sign-in returns at once.
    page.goto(f"{site.cx.base_url}/login")
    expect(page).to_have_url(f"{site.cx.base_url}/dashboard")

    sign_out_of_connexion(page, site, browser_log)
    # Connexion's pages need a sign-in again ...
    page.goto(f"{site.cx.base_url}/dashboard")
    at_provider_signin(page, site, browser_log)
    # ... and "Sign in" shows the provider's sign-in page, not an immediate return.
    landing(page, site, browser_log)
    page.get_by_role("main").get_by_role("link", name="Sign in").click()
    at_provider_signin(page, site, browser_log)
    submit_password(page, user)
    at_dashboard(page, site, user, AAL1, browser_log)


# -- 5b. signing out at the provider ends the Connexion session (back-channel logout) ----


def test_sign_out_on_the_providers_account_page_signs_out_of_connexion(
    browser_page: Page, optional: Site, browser_log: BrowserLog
):
    """Connexion is registered with its back-channel logout URI: signing out on the
    provider's account page makes the provider POST a logout token to Connexion, and
    Connexion's next page asks for a sign-in again."""
    page, site = browser_page, optional
    user = new_user(site.live)
    sign_in_at_connexion(page, site, browser_log)
    submit_password(page, user)
    at_dashboard(page, site, user, AAL1, browser_log)

    page.goto(f"{site.live.issuer}/account/security")
    expect(page).to_have_url(f"{site.live.issuer}/account/security")
    checked(page, browser_log, "provider-account")
    page.get_by_role("button", name="Sign out").first.click()
    expect(page).not_to_have_url(f"{site.live.issuer}/account/security")

    # The logout token travels server to server; reload Connexion until it has arrived
    # (a few milliseconds; at most ten seconds here).
    deadline = time.monotonic() + 10
    while True:
        page.goto(f"{site.cx.base_url}/dashboard")
        if "/signin?" in page.url or time.monotonic() > deadline:
            break
        page.wait_for_timeout(200)
    at_provider_signin(page, site, browser_log)
    landing(page, site, browser_log)  # signed out: the header offers "Sign in" only


# -- 6. accessibility of every Connexion page -------------------------------------------


def test_every_connexion_page_passes_axe(a11y_page: Page, enforced: Site, browser_log: BrowserLog):
    require_axe()
    page, site, audit = a11y_page, enforced, AxeAudit()
    user = new_user(site.live)

    landing(page, site, browser_log, audit)
    page.get_by_role("main").get_by_role("link", name="Sign in").click()
    at_provider_signin(page, site, browser_log)
    submit_password(page, user)
    choose_second_step(page, site, browser_log, "Authenticator app")
    set_up_authenticator_app(page, browser_log)
    skip_recommendation(page, site, browser_log)
    at_dashboard(page, site, user, AAL2, browser_log, audit)

    open_form_c(page)
    at_form_c(page, site)
    checked(page, browser_log, "form-c", audit)
    submit_empty_form_c(page, site, browser_log, audit)
    file_form_c(page, site, browser_log, audit)

    page.goto(f"{site.cx.base_url}/form-c/confirmation/FC-2000H1-0000000000")
    expect(page.get_by_role("heading", name="Report not found", level=1)).to_be_visible()
    checked(page, browser_log, "error-not-found", audit, status=True)

    # The sign-out page (GET /logout) and its button.
    page.goto(f"{site.cx.base_url}/logout")
    expect(page.get_by_role("heading", name="Sign out", level=1)).to_be_visible()
    checked(page, browser_log, "sign-out", audit)
    page.get_by_role("main").get_by_role("button", name="Sign out").click()
    at_signed_out(page, site, browser_log, audit)

    assert set(audit.results) == {
        f"connexion-{name}"
        for name in (
            "landing", "dashboard", "form-c", "form-c-errors", "confirmation",
            "error-not-found", "sign-out", "signed-out",
        )
    }  # fmt: skip
    audit.assert_clean()
