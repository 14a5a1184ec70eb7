"""The journeys that used to trap people, walked through Connexion in Chromium at a
desktop width (1280 px) and on a phone (390 px).

- A required set-up always has a way out: back to Connexion (which is told the sign-in
  was cancelled) or sign out.
- A new user whose first method is an email code, set up during Form C's step-up, is
  offered a backup at once; the recovery codes saved then unlock a later password reset
  (the reset challenge says why the email code cannot, and shows the help line as a
  tappable link).
- The account page, reached from Connexion's "Manage sign-in methods", leads back to
  Connexion and signs out; a step-up says which application asks and why.
- A wrong code warns how many attempts are left before the pause.

Every page of every journey is kept as a screenshot, ``test-artifacts/screens/
journey-<name>.png`` (``@390`` on the phone), whatever the outcome.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.integration.mfa_helpers import totp_code

from .conftest import (
    PHONE_WIDTH,
    BrowserLog,
    LiveServer,
    keep_screenshot,
    new_user,
    page_basics,
    run_connexion,
    run_provider,
    set_width,
    width_name,
)
from .test_connexion_journeys import (
    Site,
    _at,
    _site,
    at_form_c,
    at_provider_signin,
    open_form_c,
    set_up_authenticator_app,
    submit_password,
)

pytestmark = pytest.mark.browser

WIDTHS = [1280, PHONE_WIDTH]
HELP_PHONE = "1-877-577-5331"
UI = {
    "IDP_UI_SERVICE_NAME": "CMS IDM",
    "IDP_UI_HELP_PHONE": HELP_PHONE,
    "IDP_UI_HELP_HOURS": "Monday to Friday, 8 a.m. to 8 p.m. Eastern",
}
# Chromium logs a page served with an error status (Connexion's "Sign-in cancelled" is a
# 403, a refused code a 400) as a console error; nothing else may appear.
STEP_UP_MAX_AGE = 10
STATUS_LINE = re.compile(r"the server responded with a status of 4\d\d")


@pytest.fixture(scope="module")
def enforced(tmp_path_factory, keys_dir) -> Iterator[Site]:
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    env = {**UI, "IDP_MFA_REQUIRED": "true", "IDP_MFA_ENFORCE_FROM": yesterday.isoformat()}
    with _site(tmp_path_factory, keys_dir, env) as site:
        yield site


@pytest.fixture(scope="module")
def optional(tmp_path_factory, keys_dir) -> Iterator[Site]:
    env = {**UI, "IDP_MFA_REQUIRED": "false", "IDP_MFA_MAX_FAILURES": "4"}
    with _site(tmp_path_factory, keys_dir, env) as site:
        yield site


@pytest.fixture(scope="module")
def quick_step_up(tmp_path_factory, keys_dir) -> Iterator[Site]:
    """MFA optional, and Form C asks for a second step at most 10 seconds old, so that a
    method set up on the account page is stale by the time the test opens Form C."""
    env = {
        **UI,
        "IDP_WEBAUTHN_PASSKEY_OFFER_DAYS": "0",
        "IDP_MFA_REQUIRED": "false",
        "IDP_MFA_MAX_FAILURES": "4",
    }
    with (
        run_provider(tmp_path_factory, keys_dir, env, "localhost") as live,
        run_connexion(live, {"CONNEXION_STEP_UP_MAX_AGE": str(STEP_UP_MAX_AGE)}) as cx,
    ):
        yield Site(live, cx)


@pytest.fixture(params=WIDTHS, ids=["desktop", "phone"])
def width(request, browser_page: Page) -> int:
    set_width(browser_page, request.param)
    return request.param


def seen(page: Page, log: BrowserLog, width: int, name: str) -> None:
    """Keep the page's screenshot, and require a sound page and a clean browser log (a
    4xx status line is forgiven: those pages are served with their status on purpose)."""
    keep_screenshot(page, width_name(f"journey-{name}", width))
    assert page_basics(page) == [], f"{name} ({page.url})"
    log.console = [m for m in log.console if not STATUS_LINE.search(m["text"])]
    assert log.problems() == [], f"{name} ({page.url})"
    if width == PHONE_WIDTH:
        scroll = page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= PHONE_WIDTH, f"{name} scrolls sideways at {PHONE_WIDTH} px ({scroll})"


def outbox(live: LiveServer, channel: str, to: str) -> list[dict]:
    path = live.workdir / "outbox.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r["channel"] == channel and r["to"] == to]


def next_message(live: LiveServer, channel: str, to: str, seen_before: int) -> dict:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = outbox(live, channel, to)
        if len(found) > seen_before:
            return found[-1]
        time.sleep(0.1)
    raise AssertionError(f"no new {channel} message to {to}")


def names_connexion(page: Page) -> None:
    """The provider's page says which application the sign-in is for, with its logo."""
    card = page.locator(".idp-asking")
    expect(card).to_contain_text("Connexion uses CMS IDM to sign you in.")
    expect(card.locator("img.idp-asking__logo")).to_have_attribute(
        "src", re.compile(r"/static/favicon\.svg$")
    )
    expect(card.get_by_role("link", name="About Connexion")).to_be_visible()


def start_at_connexion(page: Page, site: Site, log: BrowserLog, width: int) -> None:
    page.goto(f"{site.cx.base_url}/")
    seen(page, log, width, "connexion-landing")
    page.get_by_role("main").get_by_role("link", name="Sign in").click()
    at_provider_signin(page, site, log)
    names_connexion(page)
    seen(page, log, width, "provider-signin")


# -- 1. after the deadline: a way out of the required set-up ------------------------------


def test_the_required_set_up_can_be_left_for_connexion_or_by_signing_out(
    browser_page: Page, enforced: Site, browser_log: BrowserLog, width: int
):
    page, site, log = browser_page, enforced, browser_log
    user = new_user(site.live)
    start_at_connexion(page, site, log, width)
    submit_password(page, user)

    expect(page).to_have_url(_at(site.live.issuer, "/mfa/setup?txn="))
    names_connexion(page)
    seen(page, log, width, "required-setup")
    page.get_by_role("button", name="Cancel and go back to Connexion").click()
    expect(page).to_have_url(_at(site.cx.base_url, "/callback?"))
    expect(page.get_by_role("heading", name="Sign-in cancelled", level=1)).to_be_visible()
    seen(page, log, width, "connexion-cancelled")

    # Again, and this time sign out from the same page.
    page.goto(f"{site.cx.base_url}/login")
    expect(page).to_have_url(_at(site.live.issuer, "/mfa/setup?txn="))  # still signed in
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(_at(site.live.issuer, "/logout"))
    expect(page.get_by_role("status")).to_contain_text("You can close this window")
    seen(page, log, width, "provider-signed-out")
    page.goto(f"{site.cx.base_url}/login")
    at_provider_signin(page, site, log)  # the password is asked again


# -- 2. a new user's first method, set up in a step-up, also unlocks a reset -------------


def test_an_email_code_set_up_in_a_step_up_is_backed_up_and_the_backup_unlocks_a_reset(
    browser_page: Page, optional: Site, browser_log: BrowserLog, width: int
):
    page, site, log = browser_page, optional, browser_log
    user = new_user(site.live)
    start_at_connexion(page, site, log, width)
    submit_password(page, user)
    expect(page).to_have_url(f"{site.cx.base_url}/dashboard")
    banner = page.locator("#mfa-banner")
    expect(banner.get_by_role("link", name="Set up a second step now")).to_be_visible()
    expect(page.get_by_role("link", name="Manage sign-in methods")).to_be_visible()
    seen(page, log, width, "connexion-dashboard-banner")

    # Form C needs a second step this account does not have: set one up, in the step-up.
    open_form_c(page)
    expect(page).to_have_url(_at(site.live.issuer, "/mfa/setup?txn="))
    names_connexion(page)
    seen(page, log, width, "stepup-setup")
    page.get_by_role("link", name="Email code", exact=True).click()
    expect(page.get_by_label("Email address")).to_have_value(user.email)
    seen(page, log, width, "email-code-setup")
    before = len(outbox(site.live, "email", user.email))
    page.get_by_role("button", name="Send code").click()
    message = next_message(site.live, "email", user.email, before)
    code = re.search(r"\b(\d{6})\b", message["text"])[1]
    seen(page, log, width, "email-code-sent")
    page.get_by_label("6-digit code").fill(code)
    page.get_by_role("button", name="Verify and turn on").click()

    # A backup is offered at once: the step indicator ends on "Done".
    expect(page).to_have_url(_at(site.live.issuer, "/mfa/recommend?txn="))
    expect(page.get_by_role("status")).to_have_text("Email code added.")
    expect(page.locator('[aria-current="step"]')).to_contain_text("Done")
    seen(page, log, width, "stepup-recommend")
    page.get_by_role("link", name="Recovery codes").click()
    page.get_by_role("button", name="Create codes").click()
    expect(page.get_by_role("heading", name="Save your recovery codes", level=1)).to_be_visible()
    codes = page.get_by_role("list", name="Recovery codes").locator("li").all_inner_texts()
    assert len(codes) >= 8, codes
    seen(page, log, width, "stepup-recovery-codes")
    page.get_by_role("button", name=re.compile("I saved my codes")).click()
    at_form_c(page, site)
    seen(page, log, width, "form-c")

    # Later, the password is forgotten: the reset link, then the email code, which the
    # reset challenge accepts, with the help line a tap away.
    page.context.clear_cookies()
    page.goto(f"{site.live.issuer}/forgot")
    page.get_by_label("Email address").fill(user.email)
    before = len(outbox(site.live, "email", user.email))
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", name="Check your email", level=1)).to_be_visible()
    seen(page, log, width, "forgot-sent")
    link = re.search(
        r"https?://\S+/reset/\S+", next_message(site.live, "email", user.email, before)["text"]
    )[0]
    page.goto(link)
    expect(page).to_have_url(_at(site.live.issuer, "/mfa/challenge?reset="))
    main = page.get_by_role("main")
    # The email code cannot unlock a reset whose link went to the same inbox: the page
    # says so, takes the recovery code instead, and keeps the help line a tap away.
    expect(main).to_contain_text("the reset link went to the same inbox")
    help_link = page.locator("footer").get_by_role("link", name=HELP_PHONE)
    expect(help_link).to_have_attribute("href", "tel:+18775775331")
    seen(page, log, width, "reset-challenge")
    page.get_by_label(re.compile("Recovery code")).fill(codes[0])
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", name="Choose a new password", level=1)).to_be_visible()
    seen(page, log, width, "reset-password")
    new_password = user.password + "-renewed"
    page.get_by_label("New password", exact=True).fill(new_password)
    page.get_by_label("Type the new password again").fill(new_password)
    page.get_by_role("button", name="Save the new password").click()
    expect(page.get_by_role("heading", name="Your password was changed", level=1)).to_be_visible()
    seen(page, log, width, "reset-done")


# -- 3. the account page leads back; a step-up names the application and why -------------


def test_the_account_page_leads_back_and_a_step_up_says_why(
    browser_page: Page, quick_step_up: Site, browser_log: BrowserLog, width: int
):
    page, site, log = browser_page, quick_step_up, browser_log
    user = new_user(site.live)
    start_at_connexion(page, site, log, width)
    submit_password(page, user)
    expect(page).to_have_url(f"{site.cx.base_url}/dashboard")

    page.get_by_role("link", name="Manage sign-in methods").click()
    expect(page).to_have_url(_at(site.live.issuer, "/account/security"))
    account = page.get_by_role("navigation", name="Account")
    expect(account.get_by_role("link", name="Back to Connexion")).to_be_visible()
    seen(page, log, width, "account")
    page.get_by_role("link", name="Authenticator app", exact=True).click()
    app = set_up_authenticator_app(page, log)
    # Setting the app up verified a code from it: that counts for a step-up until it is
    # older than Form C's max_age.
    set_up_at = time.monotonic()
    expect(page).to_have_url(_at(site.live.issuer, "/mfa/recommend?next=account&added=totp"))
    seen(page, log, width, "account-recommend")
    page.get_by_role("button", name="Not now").click()
    expect(page).to_have_url(_at(site.live.issuer, "/account/security"))
    page.get_by_role("navigation", name="Account").get_by_role(
        "link", name="Back to Connexion"
    ).click()
    expect(page).to_have_url(_at(site.cx.base_url, "/"))

    # Form C, once the app's code is stale: the provider names Connexion and says why it
    # asks again.
    time.sleep(max(0.0, STEP_UP_MAX_AGE + 1 - (time.monotonic() - set_up_at)))
    page.goto(f"{site.cx.base_url}/dashboard")
    open_form_c(page)
    # max_age covers the password as well: both steps are asked again.
    expect(page).to_have_url(_at(site.live.issuer, "/signin?txn="))
    names_connexion(page)
    submit_password(page, user)
    expect(page).to_have_url(_at(site.live.issuer, "/mfa/challenge?txn="))
    main = page.get_by_role("main")
    expect(main).to_contain_text("Connexion asks you to confirm it's you")
    expect(main).to_contain_text(
        re.compile(r"confirmed your identity in the last \d+ minutes? before a sensitive action")
    )
    names_connexion(page)
    seen(page, log, width, "stepup-challenge")

    # A wrong code says how many attempts are left before the pause.
    step = int(time.time() // 30)
    valid = {totp_code(app.secret, s) for s in (step - 1, step, step + 1, step + 2)}
    page.get_by_label("6-digit code").fill(
        next(c for c in ("000000", "111111", "222222", "333333", "444444") if c not in valid)
    )
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("alert")).to_contain_text(re.compile(r"\d+ attempts? left"))
    seen(page, log, width, "stepup-wrong-code")
    page.get_by_label("6-digit code").fill(app.code())
    page.get_by_role("button", name="Verify").click()
    # A sign-in with only one method suggests a second one; "Not now" goes on to Form C.
    expect(page).to_have_url(_at(site.live.issuer, "/mfa/recommend?txn="))
    page.get_by_role("button", name="Not now").click()
    at_form_c(page, site)
