"""Push approval in real Chromium, answered by the real ``idp-verify`` app process.

The provider (``idp run``) requires MFA; the user picks push approval, the app enrolls
with the link from the set-up page, and later sign-ins are approved (or denied) by the
app with the number read from the page. The pages poll with ``static/push.js`` and
continue by themselves; every push page gets the accessibility smoke and must raise no
console error or CSP violation.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from .conftest import BrowserLog, LiveServer, new_user, page_basics, run_provider, run_rp, snap
from .rp_app import RelyingParty

pytestmark = pytest.mark.browser

AAL2 = "http://idmanagement.gov/ns/assurance/aal/2"


@dataclass(frozen=True)
class Provider:
    live: LiveServer  # ``.live``: a failed test's artifacts include the provider log
    rp: RelyingParty


@pytest.fixture(scope="module")
def provider(tmp_path_factory, keys_dir) -> Iterator[Provider]:
    yesterday = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    env = {"IDP_MFA_REQUIRED": "true", "IDP_MFA_ENFORCE_FROM": yesterday}
    with run_provider(tmp_path_factory, keys_dir, env) as live, run_rp(live) as rp:
        yield Provider(live, rp)


def verify(state: Path, *args: str) -> subprocess.CompletedProcess:
    tool = Path(sys.executable).with_name("idp-verify")
    return subprocess.run(
        [str(tool), "--state", str(state), *args], capture_output=True, text=True, timeout=60
    )


def checked(page: Page, log: BrowserLog, name: str) -> None:
    snap(page, name)
    assert page_basics(page) == [], f"{name} ({page.url})"
    assert log.problems() == [], f"{name} ({page.url})"


def sign_in(page: Page, live: LiveServer, rp: RelyingParty, user) -> None:
    page.goto(f"{rp.url}/")
    page.get_by_role("link", name="Sign in").click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(live.issuer)}/signin\?"))
    page.get_by_label("Email address").fill(user.email)
    page.get_by_label("Password").fill(user.password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def finish_at_rp(page: Page, live: LiveServer, rp: RelyingParty, user) -> list[str]:
    page.wait_for_url(
        re.compile(rf"^({re.escape(live.issuer)}/consent|{re.escape(rp.url)}/callback)")
    )
    if "/consent" in page.url:
        page.get_by_role("button", name="Allow", exact=True).click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(rp.url)}/callback\?"))
    expect(page.locator("#who")).to_have_text(f"Signed in as {user.email}")
    claims = rp.last_claims
    assert claims is not None and claims["acr"] == AAL2
    return claims["amr"]


def number_shown(page: Page) -> int:
    number = page.locator("#push-number")
    expect(number).to_have_text(re.compile(r"^\d\d$"))
    return int(number.inner_text())


def test_push_enrollment_approval_and_denial_driven_by_the_app(
    browser_page: Page, provider, browser_log: BrowserLog, tmp_path
):
    live, rp = provider.live, provider.rp
    user = new_user(live)
    state = tmp_path / "accounts.json"
    page = browser_page

    # 1. Set up push approval: the page shows the link, the app enrolls, the page
    #    notices by itself and finishes the set-up.
    sign_in(page, live, rp, user)
    expect(page).to_have_url(re.compile(r"/mfa/setup\?txn="))
    page.get_by_role("link", name="Push approval (idp-verify app)").click()
    expect(page.get_by_role("heading", name="Set up push approval", level=1)).to_be_visible()
    expect(page.locator(".qr svg")).to_be_visible()
    checked(page, browser_log, "push-setup")
    uri = page.locator("#enroll-uri").inner_text()
    assert uri.startswith("idp-verify://enroll?")
    done = verify(state, "enroll", uri, "--name", "E2E phone")
    assert done.returncode == 0, done.stderr
    assert finish_at_rp(page, live, rp, user) == ["mfa", "pwd", "swk"]

    # 2. Sign in again: send a request, the app approves with the number on the page,
    #    the page continues by itself.
    page.context.clear_cookies()
    sign_in(page, live, rp, user)
    expect(page).to_have_url(re.compile(r"/mfa/challenge\?"))
    checked(page, browser_log, "push-challenge")
    page.get_by_role("button", name="Send request").click()
    number = number_shown(page)
    checked(page, browser_log, "push-waiting")
    done = verify(state, "approve", str(number), "--wait", "10")
    assert done.returncode == 0, done.stderr
    assert finish_at_rp(page, live, rp, user) == ["mfa", "pwd", "swk"]

    # 3. A denied request says so and offers a new request and other ways; the new
    #    request is approved.
    page.context.clear_cookies()
    sign_in(page, live, rp, user)
    page.get_by_role("button", name="Send request").click()
    number_shown(page)
    done = verify(state, "deny", "--wait", "10")
    assert done.returncode == 0, done.stderr
    expect(page.get_by_role("alert")).to_contain_text("denied in the app")
    expect(page.get_by_role("link", name="Authenticator app")).to_be_visible()
    checked(page, browser_log, "push-denied")
    page.get_by_role("button", name="Send a new request").click()
    done = verify(state, "approve", str(number_shown(page)), "--wait", "10")
    assert done.returncode == 0, done.stderr
    assert finish_at_rp(page, live, rp, user) == ["mfa", "pwd", "swk"]
