"""An administrator does every admin action in real Chromium, against ``idp run``.

The administrator signs in at ``/admin``, is sent to set up an authenticator app (the
admin pages need a recent second factor), then: registers an application (a refused
redirect URI first), edits it, rotates its secret, disables, enables and deletes it;
finds a user and locks, unlocks, disables, enables, revokes sessions, resends the
verification email and resets MFA (a reason is required), each message shown once after
the redirect; opens the page of another administrator (every action asks for a reason)
and of a help-desk agent, and is refused on its own page; filters and exports the audit
trail; reads the MFA adoption dashboard, downloads the users without MFA and sends the
reminders batch by batch. Every admin page is checked with :func:`page_basics` and
:class:`BrowserLog` (no console errors, no CSP violations).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_mfa_browser import AuthenticatorApp, set_up_authenticator_app

from .conftest import BrowserLog, LiveServer, _run_cli, page_basics, snap

pytestmark = pytest.mark.browser

PASSWORD = "an administrator's long passphrase"
_admins = itertools.count(1)


@pytest.fixture(scope="module")
def live_server_env() -> dict[str, str]:
    return {"IDP_MFA_REQUIRED": "true", "IDP_MFA_ENFORCE_FROM": "2099-01-01",
            "IDP_ADMIN_REMINDER_BATCH_SIZE": "2"}  # fmt: skip


def cli(live: LiveServer, *args: str, stdin: str | None = None) -> str:
    return _run_cli(live.env, live.workdir, *args, stdin=stdin)


def admin_page(page: Page, log: BrowserLog, heading: str) -> None:
    expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()
    snap(page, heading)
    assert page_basics(page) == [], f"{heading} ({page.url})"
    assert log.problems() == [], f"{heading} ({page.url})"


def refused_as_expected(log: BrowserLog) -> None:
    """A form the server refused with 400 (the page explains why): Chromium logs the
    status as a console error, which is expected here."""
    log.console = [m for m in log.console if "status of 400" not in m["text"]]


def confirm(page: Page, yes: str) -> None:
    """Answer the USWDS confirmation dialog that a destructive action opens."""
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading")).to_be_visible()
    dialog.get_by_role("button", name=yes).click()


def sign_in_as_new_admin(page: Page, live: LiveServer, log: BrowserLog) -> AuthenticatorApp:
    """Create an administrator, sign in at /admin and set up the authenticator app the
    admin pages insist on; ends on the admin home page."""
    email = f"admin{next(_admins)}@example.com"
    cli(live, "users", "create", "--email", email, "--name", "Ada Admin", stdin=PASSWORD + "\n")
    cli(live, "users", "grant-admin", email)
    page.goto(f"{live.issuer}/admin")
    expect(page).to_have_url(re.compile(r"/signin\?next=admin$"))
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(re.compile(r"/mfa/challenge\?next=/admin"))
    admin_page(page, log, "Verify it's you")
    expect(page.get_by_role("alert")).to_contain_text("need a second sign-in step")
    page.get_by_role("link", name="Set one up").click()
    page.get_by_role("link", name="Authenticator app", exact=True).click()
    app = set_up_authenticator_app(page, log)
    expect(page.get_by_role("status")).to_have_text("Authenticator app added.")
    page.goto(f"{live.issuer}/admin")
    admin_page(page, log, "Administration")
    return app


def test_admin_manages_an_application(browser_page: Page, live_server, browser_log):
    page, live, log = browser_page, live_server, browser_log
    sign_in_as_new_admin(page, live, log)
    page.get_by_role("link", name="Applications (clients)").click()
    admin_page(page, log, "Applications")
    page.get_by_role("link", name="Register an application").click()
    admin_page(page, log, "Register an application")

    page.get_by_label("Name shown to users").fill("Supplier portal")
    page.get_by_label(re.compile("^Redirect URIs")).fill("http://portal.example.gov/callback")
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_role("alert")).to_contain_text("must use https")
    expect(page.get_by_label("Name shown to users")).to_have_value("Supplier portal")
    refused_as_expected(log)
    admin_page(page, log, "Register an application")

    page.get_by_label(re.compile("^Redirect URIs")).fill("https://portal.example.gov/callback")
    page.get_by_label("Post-logout redirect URIs (one per line)").fill(
        "https://portal.example.gov/"
    )
    page.get_by_label("Require MFA for this application").check()
    page.get_by_role("button", name="Register").click()
    admin_page(page, log, "Application registered")
    client_id = page.locator("#client-id").inner_text()
    first_secret = page.locator("#client-secret").inner_text()
    assert len(first_secret) >= 40
    shown = json.loads(cli(live, "clients", "show", client_id, "--json"))
    assert shown["require_mfa"] is True and shown["name"] == "Supplier portal"

    page.get_by_role("link", name="Back to applications").click()
    page.get_by_role("link", name="Supplier portal").click()
    admin_page(page, log, "Edit Supplier portal")
    assert first_secret not in page.content()
    page.get_by_label("Name shown to users").fill("Supplier portal (DMEPOS)")
    page.get_by_label("First party (no consent page)").check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Saved Supplier portal (DMEPOS).")
    assert json.loads(cli(live, "clients", "show", client_id, "--json"))["first_party"] is True

    page.get_by_role("link", name="Supplier portal (DMEPOS)").click()
    page.get_by_role("button", name="Rotate secret").click()
    admin_page(page, log, "New secret")
    assert page.locator("#client-secret").inner_text() != first_secret

    page.get_by_role("link", name="Back to applications").click()
    page.get_by_role("link", name="Supplier portal (DMEPOS)").click()
    page.get_by_role("button", name="Disable").click()
    expect(page.get_by_role("status")).to_have_text("Supplier portal (DMEPOS) disabled.")
    assert json.loads(cli(live, "clients", "show", client_id, "--json"))["disabled"] is True
    page.get_by_role("link", name="Supplier portal (DMEPOS)").click()
    page.get_by_role("button", name="Enable").click()
    expect(page.get_by_role("status")).to_have_text("Supplier portal (DMEPOS) enabled.")

    page.get_by_role("link", name="Supplier portal (DMEPOS)").click()
    page.get_by_role("button", name="Delete…").click()
    admin_page(page, log, "Delete Supplier portal (DMEPOS)?")
    page.get_by_label(re.compile("^Type the client id")).fill(client_id)
    page.get_by_role("button", name="Delete", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("Supplier portal (DMEPOS) deleted.")
    assert client_id not in cli(live, "clients", "list")


def test_admin_helps_a_user_reads_the_audit_trail_and_the_mfa_dashboard(
    browser_page: Page, live_server, browser_log
):
    page, live, log = browser_page, live_server, browser_log
    for n in range(3):
        cli(live, "users", "create", "--email", f"stuck{n}@example.com", "--name",
            f"Sam Stuck {n}", "--unverified", stdin="a passphrase for a stuck user\n")  # fmt: skip
    sign_in_as_new_admin(page, live, log)
    me = page.locator("main p strong").first.inner_text()

    # -- help desk ----------------------------------------------------------------------
    page.get_by_role("link", name="Help desk: users").click()
    admin_page(page, log, "Help desk")
    page.get_by_label("Find a user by email or name").fill("Sam Stuck 1")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="stuck1@example.com").click()
    admin_page(page, log, "stuck1@example.com")
    expect(page.locator("#factors")).to_have_text("No sign-in methods.")

    page.get_by_role("button", name="Lock", exact=True).click()
    confirm(page, "Yes, lock")
    expect(page.get_by_role("status")).to_have_text("Sign-in locked; sessions ended.")
    expect(page).to_have_url(re.compile(r"/admin/users/\d+$"))  # nothing in the URL
    expect(page.locator("#lock-admin")).to_contain_text("Locked by the help desk: locked until")
    expect(page.locator("#lock-failures")).to_have_text("Failed sign-in attempts: not locked")
    page.reload()  # the message was shown once (post/redirect/get)
    expect(page.get_by_role("status")).to_have_count(0)
    page.get_by_role("button", name="Unlock").click()
    expect(page.get_by_role("status")).to_have_text("Sign-in and second-step locks cleared.")
    page.get_by_role("button", name="Disable account").click()
    confirm(page, "Yes, disable")
    expect(page.get_by_role("status")).to_have_text("Account disabled.")
    page.get_by_role("button", name="Enable account").click()
    expect(page.get_by_role("status")).to_have_text("Account enabled.")
    page.get_by_role("button", name="Revoke sessions and tokens").click()
    confirm(page, "Yes, revoke")
    expect(page.get_by_role("status")).to_contain_text("Ended 0 session(s)")
    page.get_by_role("button", name="Resend verification email").click()
    expect(page.get_by_role("status")).to_have_text("Verification email sent.")
    # A reason is required: the browser asks first, the server refuses a blank one too.
    page.get_by_role("button", name="Reset MFA").click()
    assert page.get_by_label(re.compile("^Reason for resetting")).evaluate(
        "el => el.validity.valueMissing"
    )
    page.get_by_label(re.compile("^Reason for resetting")).fill("   ")
    page.get_by_role("button", name="Reset MFA").click()
    confirm(page, "Yes, reset MFA")
    expect(page.get_by_role("alert")).to_contain_text("Say why")
    refused_as_expected(log)
    page.get_by_label(re.compile("^Reason for resetting")).fill("lost phone; caller verified")
    page.get_by_role("button", name="Reset MFA").click()
    confirm(page, "Yes, reset MFA")
    expect(page.get_by_role("status")).to_contain_text("must set one up")
    events = page.locator("#events").inner_text()
    for name in ("user.locked", "user.unlocked", "user.disabled", "user.enabled",
                 "user.sessions_revoked", "user.verification_resent", "mfa.reset"):  # fmt: skip
        assert name in events, name
    assert "by user:" in events
    admin_page(page, log, "stuck1@example.com")

    # -- the hierarchy: another administrator needs a reason; one's own page offers nothing
    cli(live, "users", "create", "--email", "other.admin@example.com", "--name", "Otto Admin",
        stdin="another administrator's passphrase\n")  # fmt: skip
    cli(live, "users", "grant-admin", "other.admin@example.com")
    page.get_by_role("link", name="Help desk: users").click()
    page.get_by_label("Find a user by email or name").fill("other.admin@")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="other.admin@example.com").click()
    admin_page(page, log, "other.admin@example.com")
    expect(page.locator("#reason-help")).to_contain_text("administrator's account")
    page.get_by_role("button", name="Revoke sessions and tokens").click()
    assert page.locator("#reason-status").evaluate("el => el.validity.valueMissing")
    page.locator("#reason-status").fill("ticket 81, called back on file number")
    page.get_by_role("button", name="Revoke sessions and tokens").click()
    confirm(page, "Yes, revoke")
    expect(page.get_by_role("status")).to_contain_text("Ended 0 session(s)")
    assert "user.sessions_revoked" in page.locator("#events").inner_text()
    page.get_by_role("link", name="Help desk: users").click()
    page.get_by_label("Find a user by email or name").fill(me)
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name=me).click()
    expect(page.locator("#no-actions")).to_contain_text("your own account")
    expect(page.get_by_role("button", name="Lock", exact=True)).to_have_count(0)
    admin_page(page, log, me)

    # -- audit trail ----------------------------------------------------------------------
    page.get_by_role("link", name="Audit trail").click()
    admin_page(page, log, "Audit trail")
    page.get_by_label("User (email or id)").fill("stuck1@example.com")
    page.get_by_label(re.compile("^Event type")).fill("user.*")
    page.get_by_role("button", name="Filter").click()
    table = page.locator("#events").inner_text()
    assert "user.locked" in table and "mfa.reset" not in table
    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text("utf-8"))))
    assert rows and {r["event"] for r in rows} >= {"user.locked", "user.disabled"}
    with page.expect_download() as download:
        page.get_by_role("button", name="Export JSON lines").click()
    lines = download.value.path().read_text("utf-8").splitlines()
    assert all(json.loads(line)["event"].startswith("user.") for line in lines)
    assert cli(live, "audit", "verify").startswith("ok:")

    # -- MFA adoption ---------------------------------------------------------------------
    page.get_by_role("link", name="MFA adoption").click()
    admin_page(page, log, "MFA adoption")
    active = int(page.locator("#fig-active").inner_text())
    without = int(page.locator("#fig-without").inner_text())
    assert without >= 3 and active >= without + 1  # the admin has an authenticator app
    expect(page.locator("figure.chart svg")).to_be_visible()
    expect(page.locator("#fig-deadline")).to_contain_text("January 1, 2099")
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("Download the list of users without MFA")).click()
    text = download.value.path().read_text("utf-8")
    emails = [r["email"] for r in csv.DictReader(io.StringIO(text))]
    assert {"stuck0@example.com", "stuck1@example.com", "stuck2@example.com"} <= set(emails)

    page.get_by_role("button", name="Send reminder").click()
    expect(page.locator("#progress")).to_contain_text(f"Reminders: 2 of {without} sent")
    admin_page(page, log, "MFA adoption")
    sent = 2
    while page.get_by_role("button", name="Send next batch").count():
        page.get_by_role("button", name="Send next batch").click()
        sent = min(without, sent + 2)
        expect(page.locator("#progress")).to_contain_text(f"Reminders: {sent} of {without} sent")
    expect(page.locator("#progress")).to_contain_text("Every user due has been reminded")
    # Within the interval nobody is reminded twice.
    page.get_by_role("link", name="MFA adoption").click()
    expect(page.get_by_text(re.compile(r"^0 users can be reminded now"))).to_be_visible()
    expect(page.get_by_role("button", name="Send reminder")).to_have_count(0)
