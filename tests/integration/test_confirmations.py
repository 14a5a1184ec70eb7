"""Destructive actions ask for confirmation, and their results are never shown on a POST.

- The account page (``/account/factors/<id>``): "Remove" without ``confirm=yes`` removes
  nothing and answers with a confirmation page; with it, the factor goes. Rename, make
  default and remove all end with a redirect (303) to ``/account/security``, whose
  one-time message says what was done: a reload of that page repeats nothing.
- The help desk (``/admin/users/<id>/action``): reset MFA, disable, revoke sessions and
  lock need ``confirm=yes`` in the same way; the result is a redirect (302) to the user's
  page with a one-time message.

The pages send ``confirm=yes`` from a USWDS modal (idp/static/idp.js); these tests post
the forms as a browser without JavaScript does.
"""

from __future__ import annotations

import re
from html import unescape

import pytest

from clients.mockrp.forms import parse_forms
from tests.conftest import make_settings
from tests.integration import test_account_security as sec
from tests.integration import test_admin_access as access
from tests.integration.mfa_helpers import get
from tests.integration.test_admin_access import audit_events, signed_in
from tests.integration.test_admin_users import uma  # noqa: F401  (a fixture)

people = access.people
rp_factory = sec.rp_factory
clock = sec.clock


@pytest.fixture
def settings(tmp_path, keys_dir):
    mfa = {"required": True, "enforce_from": "", "reauth_window": sec.WINDOW}
    return make_settings(tmp_path, keys_dir, mfa=mfa, admin={"mfa_max_age": 900})


def messages(html: str) -> list[str]:
    """The text of every usa-alert with a status or alert role on the page."""
    found = re.findall(
        r'class="usa-alert[^"]*" role="(?:status|alert)".*?</div>\s*</div>', html, re.S
    )
    return [" ".join(unescape(re.sub(r"<[^>]+>", " ", m.split(">", 1)[1])).split()) for m in found]


# -- the account page ------------------------------------------------------------------------


@pytest.fixture
def account(app, rp_factory, clock):  # noqa: F811
    """A signed-in browser on the account page with two authenticator apps."""
    rp = rp_factory()
    sec.signin_to_account(rp)
    sec.add_totp(rp, clock, "Phone")
    sec.let_time_pass(app, rp, 5)
    sec.add_totp(rp, clock, "Tablet")
    return rp


def _shown_once(rp, resp, text: str):
    """*resp* redirects (303) to the account page, which says *text* once."""
    assert resp.status == 303, (resp.status, resp.text[:300])
    assert sec.path_of_location(resp) == "/account/security"
    page = get(rp, resp.location)
    assert page.status == 200 and text in messages(page.text)
    again = get(rp, resp.location)  # a reload
    assert again.status == 200 and text not in again.text
    return again


def test_removing_without_confirmation_changes_nothing_and_asks(app, account):
    phone = sec.factor_id(app, "Phone")
    page = get(account, "/account/security")
    resp = sec.act(account, page, phone, "remove")
    assert resp.status == 200 and resp.location is None
    assert "<h1>Remove authenticator app?</h1>" in resp.text
    assert "Yes, remove" in resp.text and "“Phone” will no longer work" in resp.text
    [form] = [f for f in parse_forms(resp.text, resp.url) if "confirm" in f.fields]
    assert form.action.endswith(f"/account/factors/{phone}") and form.fields["confirm"] == "yes"
    assert [f["label"] for f in sec.factors(app)] == ["Phone", "Tablet"]
    assert sec.events(app, "mfa.factor_removed") == []
    # A confirm value other than "yes" is no confirmation either.
    fields = {**sec.factor_form(page, phone).fields, "action": "remove", "confirm": "no"}
    again = account.transport.request("POST", form.action, data=fields)
    assert again.status == 200 and "Yes, remove" in again.text
    assert [f["label"] for f in sec.factors(app)] == ["Phone", "Tablet"]


def test_removing_with_confirmation_redirects_to_a_message_shown_once(app, account):
    phone = sec.factor_id(app, "Phone")
    confirm = sec.act(account, get(account, "/account/security"), phone, "remove")
    resp = sec.act(account, confirm, phone, "remove")
    page = _shown_once(account, resp, "Authenticator app removed.")
    assert [f["label"] for f in sec.factors(app)] == ["Tablet"]
    assert 'value="Phone"' not in page.text
    assert len(sec.events(app, "mfa.factor_removed")) == 1


def test_rename_and_default_redirect_to_a_message_shown_once(app, account):
    tablet = sec.factor_id(app, "Tablet")
    page = get(account, "/account/security")
    resp = sec.act(account, page, tablet, "rename", label="Work tablet")
    page = _shown_once(account, resp, "Name saved.")
    assert sec.factor_id(app, "Work tablet") == tablet
    resp = sec.act(account, page, tablet, "default")
    _shown_once(account, resp, "Default method changed.")
    assert [f["default"] for f in sec.factors(app) if f["id"] == tablet] == [True]
    assert len(sec.events(app, "mfa.default_changed")) == 1


def test_the_account_page_offers_the_confirmation_dialog(app, account):
    """The "Remove" button opens a USWDS modal whose "Yes, remove" submits the same form
    with confirm=yes (idp.js); the form itself carries no confirm field."""
    page = get(account, "/account/security")
    for label in ("Phone", "Tablet"):
        fid = sec.factor_id(app, label)
        assert "confirm" not in sec.factor_form(page, fid).fields
        assert re.search(rf'id="remove-{fid}"\s+data-open-modal aria-controls="confirm-remove-{fid}"',
                         page.text)  # fmt: skip
        assert f'<div class="usa-modal" id="confirm-remove-{fid}"' in page.text
        assert f'data-confirm-for="remove-{fid}"' in page.text


# -- the help desk ----------------------------------------------------------------------------

EFFECTS = {
    "reset_mfa": ("mfa.reset", {"reason": "lost phone, identity checked by call"}, "Removed 1"),
    "disable": ("user.disabled", {}, "Account disabled."),
    "revoke": ("user.sessions_revoked", {}, "Ended 2 session(s)"),
    "lock": ("user.locked", {"hours": "24"}, "Sign-in locked; sessions ended."),
}


@pytest.mark.parametrize("action", sorted(EFFECTS))
def test_a_help_desk_action_without_confirmation_changes_nothing_and_asks(
    app,
    people,
    uma,  # noqa: F811
    action,
):
    event, fields, _ = EFFECTS[action]
    b = signed_in(app, people["helpdesk"])
    resp = b.post(f"/admin/users/{uma['id']}/action", {"action": action, **fields})
    assert resp.status_code == 200, resp.text[:300]
    assert audit_events(app, event) == []
    # The confirmation page repeats the form's fields with confirm=yes.
    form = re.search(r'<form method="post" action="([^"]+)">(.*?)</form>', resp.text, re.S)
    assert form and form.group(1) == f"/admin/users/{uma['id']}/action"
    hidden = dict(
        re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.group(2))
    )
    assert hidden["confirm"] == "yes"
    for name, value in fields.items():
        assert unescape(hidden[name]) == value
    assert re.search(rf'<button[^>]*name="action" value="{action}">Yes, ', form.group(2))
    assert f'href="/admin/users/{uma["id"]}">Cancel</a>' in resp.text


@pytest.mark.parametrize("action", sorted(EFFECTS))
def test_a_confirmed_help_desk_action_redirects_to_a_message_shown_once(
    app,
    people,
    uma,  # noqa: F811
    action,
):
    event, fields, text = EFFECTS[action]
    b = signed_in(app, people["helpdesk"])
    resp = b.post(f"/admin/users/{uma['id']}/action",
                  {"action": action, **fields, "confirm": "yes"})  # fmt: skip
    assert resp.status_code == 302
    assert resp.headers["Location"] == f"/admin/users/{uma['id']}"
    assert len(audit_events(app, event)) == 1
    page = b.get(resp.headers["Location"])
    assert page.status_code == 200
    assert any(m.startswith(text) for m in messages(page.text)), messages(page.text)
    again = b.get(resp.headers["Location"])  # a reload
    assert not any(m.startswith(text) for m in messages(again.text))
    assert len(audit_events(app, event)) == 1


def test_actions_that_take_nothing_away_need_no_confirmation(app, people, uma):  # noqa: F811
    b = signed_in(app, people["helpdesk"])
    b.post(f"/admin/users/{uma['id']}/action", {"action": "disable", "confirm": "yes"})
    resp = b.post(f"/admin/users/{uma['id']}/action", {"action": "enable"})
    assert resp.status_code == 302
    assert len(audit_events(app, "user.enabled")) == 1


def test_the_user_page_offers_the_confirmation_dialogs(app, people, uma):  # noqa: F811
    page = signed_in(app, people["helpdesk"]).get(f"/admin/users/{uma['id']}").text
    for action in ("disable", "revoke", "lock", "reset_mfa"):
        assert re.search(rf'id="action-{action}"\s+data-open-modal aria-controls="confirm-{action}"',
                         page)  # fmt: skip
        assert f'<div class="usa-modal" id="confirm-{action}"' in page
        assert f'data-confirm-for="action-{action}"' in page
