"""New User Registration in real Chromium, from a relying party's sign-in to its callback:

register -> open the verification link from the outbox -> confirm it with the password
(the "sign in again" of the journey) -> the forced MFA set-up with a text-message code
(read from the outbox, as the phone would receive it) -> the relying party is reached
with an AAL2 sign-in whose amr says ``sms``.

The provider runs with MFA required since yesterday and console delivery, so both the
email and the text message land in the provider's outbox file.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect

from .conftest import BrowserLog, LiveServer, page_basics, run_provider, run_rp, snap
from .rp_app import RelyingParty

pytestmark = pytest.mark.browser

AAL2 = "http://idmanagement.gov/ns/assurance/aal/2"
NAME = "Grace Hopper"
EMAIL = "grace.hopper@example.com"
PASSWORD = "compilers are friendlier than people think"
PHONE = "202-555-0143"


@dataclass(frozen=True)
class Provider:
    live: LiveServer
    rp: RelyingParty


@pytest.fixture(scope="module")
def enforced(tmp_path_factory, keys_dir) -> Iterator[Provider]:
    yesterday = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    env = {"IDP_MFA_REQUIRED": "true", "IDP_MFA_ENFORCE_FROM": yesterday}
    with run_provider(tmp_path_factory, keys_dir, env) as live, run_rp(live) as rp:
        yield Provider(live, rp)


def outbox(live: LiveServer, channel: str, to: str) -> list[dict]:
    path = live.workdir / "outbox.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r["channel"] == channel and r["to"] == to]


def wait_for_message(live: LiveServer, channel: str, to: str, seen: int = 0) -> dict:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = outbox(live, channel, to)
        if len(found) > seen:
            return found[-1]
        time.sleep(0.1)
    raise AssertionError(f"no {channel} message to {to} in the outbox")


# Chromium logs a page served as 400 (a form shown again with its errors) as a console
# error; nothing else may appear.
STATUS_400 = "the server responded with a status of 400"


def problems(log: BrowserLog) -> list[str]:
    return [p for p in log.problems() if STATUS_400 not in p]


def checked(page: Page, log: BrowserLog, name: str) -> None:
    snap(page, name)
    assert page_basics(page) == [], f"{name} ({page.url})"
    assert problems(log) == [], f"{name} ({page.url})"


def test_register_verify_sign_in_and_set_up_sms(
    browser_page: Page, enforced: Provider, browser_log: BrowserLog
):
    page, live, rp = browser_page, enforced.live, enforced.rp
    page.goto(f"{rp.url}/")
    page.get_by_role("link", name="Sign in").click()
    expect(page.get_by_role("heading", name="Sign in", level=1)).to_be_visible()
    page.get_by_role("link", name="Create an account").click()

    # The registration form: a mismatch is explained next to the field first.
    expect(page.get_by_role("heading", name="Create an account", level=1)).to_be_visible()
    checked(page, browser_log, "register")
    page.get_by_label("Full name").fill(NAME)
    page.get_by_label("Email address").fill(EMAIL)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Type the password again").fill(PASSWORD + "!")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("alert").first).to_be_visible()
    assert problems(browser_log) == []
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Type the password again").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Check your email", level=1)).to_be_visible()
    snap(page, "check-email")

    # The verification link, from the message the provider sent.
    message = wait_for_message(live, "email", EMAIL)
    link = re.search(r"https?://\S+/\S+", message["text"])[0]
    assert link.startswith(live.issuer)
    page.goto(link)
    # Opening the link shows a page; the password confirms it (and signs in again).
    expect(page.get_by_role("heading", name="Confirm your email address", level=1)).to_be_visible()
    checked(page, browser_log, "confirm-email")
    page.get_by_label("Password").fill(PASSWORD + " typo")
    page.get_by_role("button", name="Confirm and sign in").click()
    expect(page.get_by_role("alert").first).to_be_visible()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Confirm and sign in").click()

    # The application's request continues, and MFA set-up is required.
    expect(page).to_have_url(re.compile(r"/mfa/setup\?txn="))
    expect(page.get_by_role("button", name="Remind me later")).to_have_count(0)
    checked(page, browser_log, "setup")
    page.get_by_role("link", name="Text message", exact=True).click()

    # The phone number, then the code the text message carries.
    page.get_by_label("Phone number").fill(PHONE)
    page.get_by_role("button", name="Send code").click()
    sms = wait_for_message(live, "sms", "+12025550143")
    code = re.search(r"\b(\d{6})\b", sms["text"])[1]
    assert f"#{code}" in sms["text"]  # the WebOTP line
    expect(page.get_by_label("6-digit code")).to_be_visible()
    checked(page, browser_log, "sms-code")
    page.get_by_label("6-digit code").fill(code)
    page.get_by_role("button", name="Verify and turn on").click()

    # "Add a backup method" is recommended; not now. Then consent, then the RP.
    expect(page).to_have_url(re.compile(r"/mfa/recommend\?txn="))
    page.get_by_role("button", name="Not now").click()
    expect(page).to_have_url(re.compile(r"/consent\?txn="))
    page.get_by_role("button", name="Allow", exact=True).click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(rp.url)}/callback\?"))
    expect(page.locator("#who")).to_have_text(f"Signed in as {EMAIL}")
    claims = rp.last_claims
    assert claims is not None and claims["acr"] == AAL2
    assert {"pwd", "sms", "mfa"} <= set(claims["amr"]), claims["amr"]
    assert claims["email"] == EMAIL and claims.get("email_verified") is True
    assert problems(browser_log) == []
