"""Groups: the ``groups`` claim (ID token and userinfo, with the ``groups`` scope only),
and the help desk's Groups section on a user's page (CSRF, post/redirect/get, audit,
the role hierarchy), on both backends."""

from __future__ import annotations

import re

import pytest

from clients.mockrp import MockRP
from clients.mockrp.transport import FlaskTransport
from idp.extensions import db
from idp.models import GroupMember, User
from tests.conftest import PASSWORD, make_settings
from tests.integration import test_admin_access as access
from tests.integration.test_admin_access import audit_events, signed_in

people = access.people
RP_CB = "https://rp.example.com/cb"


@pytest.fixture
def settings(tmp_path, keys_dir):
    # The admin pages' settings (test_admin_access), without the passkey offer after a
    # password sign-in: it is not part of these journeys.
    return make_settings(tmp_path, keys_dir, admin={"mfa_max_age": 900},
                         webauthn={"passkey_offer_days": 0})  # fmt: skip


def _groups(app, *names: str) -> None:
    from idp.groups import create_group

    with app.app_context():
        for name in names:
            create_group(name, description=f"The {name}", actor="test")


def _join(app, email: str, *names: str) -> None:
    from idp.groups import add_member, find_group

    with app.app_context():
        user = db.session.execute(db.select(User).filter_by(email=email)).scalar_one()
        for name in names:
            add_member(find_group(name), user, actor="test")


def _member_of(app, uid: int) -> list[str]:
    from idp.groups import group_names

    with app.app_context():
        return group_names(uid)


@pytest.fixture
def rp(app, client, make_client, make_user):
    make_user()
    client_id, secret = make_client(scope="openid profile email groups")
    _groups(app, "suppliers", "auditors", "nobody-here")
    _join(app, "ada@example.com", "suppliers", "auditors")
    return MockRP("http://localhost", client_id, RP_CB, client_secret=secret,
                  transport=FlaskTransport(client))  # fmt: skip


def test_the_groups_scope_releases_the_claim_in_the_id_token_and_at_userinfo(rp):
    result = rp.sign_in("ada@example.com", PASSWORD, scope="openid email groups")
    tokens = rp.exchange_code(result)
    claims = rp.verify_id_token(tokens.id_token, nonce=result.nonce,
                                access_token=tokens.access_token)  # fmt: skip
    assert claims["groups"] == ["auditors", "suppliers"]
    assert "email" not in claims  # profile and email come from userinfo
    info = rp.userinfo(tokens.access_token)
    assert info["groups"] == ["auditors", "suppliers"] and info["email"] == "ada@example.com"
    # A refreshed ID token says the same.
    refreshed = rp.refresh(tokens.refresh_token)
    assert rp.verify_id_token(refreshed.id_token, nonce=None)["groups"] == ["auditors", "suppliers"]


def test_without_the_groups_scope_there_is_no_groups_claim(rp):
    result = rp.sign_in("ada@example.com", PASSWORD, scope="openid email")
    tokens = rp.exchange_code(result)
    assert "groups" not in rp.verify_id_token(tokens.id_token, nonce=result.nonce)
    assert "groups" not in rp.userinfo(tokens.access_token)


def test_a_user_in_no_group_gets_an_empty_array(app, rp, make_user):
    make_user("lonely@example.com")
    result = rp.sign_in("lonely@example.com", PASSWORD, scope="openid groups")
    tokens = rp.exchange_code(result)
    assert rp.verify_id_token(tokens.id_token, nonce=result.nonce)["groups"] == []
    assert rp.userinfo(tokens.access_token)["groups"] == []


def test_deleting_a_user_or_a_group_removes_the_memberships(app, rp, make_user):
    from idp.groups import delete_group, find_group
    from idp.services import services
    from idp.users_io import delete_user

    uid, _ = make_user("gone@example.com")
    _join(app, "gone@example.com", "suppliers")
    with app.app_context():
        delete_user(services(), db.session.get(User, uid), actor="test")
        assert db.session.execute(db.select(GroupMember).filter_by(user_id=uid)).first() is None
        assert delete_group(find_group("suppliers"), actor="test") == 1  # Ada
    ada = _uid(app, "ada@example.com")
    assert _member_of(app, ada) == ["auditors"]
    assert audit_events(app, "group.deleted")[-1].details == {"actor": "test", "group": "suppliers",
                                                               "members": 1}  # fmt: skip


def _uid(app, email: str) -> int:
    with app.app_context():
        return db.session.execute(db.select(User.id).filter_by(email=email)).scalar_one()


# -- the help desk's Groups section ------------------------------------------------------------


def test_the_help_desk_adds_and_removes_a_group(app, people):
    _groups(app, "suppliers", "auditors")
    desk = signed_in(app, people["helpdesk"])
    uid = people["user"]
    page = desk.get(f"/admin/users/{uid}").text
    assert "Not in any group." in page
    assert re.search(r'<select class="usa-select" id="group" name="group">', page)

    resp = desk.post(f"/admin/users/{uid}/action",
                     {"action": "groups", "op": "add", "group": "suppliers"})  # fmt: skip
    assert resp.status_code == 302 and resp.location == f"/admin/users/{uid}"
    assert _member_of(app, uid) == ["suppliers"]
    page = desk.get(f"/admin/users/{uid}").text
    assert "Added to the group suppliers." in page and "Remove from suppliers" in page
    assert "Added to the group suppliers." not in desk.get(f"/admin/users/{uid}").text  # once
    (event,) = audit_events(app, "group.member_added")[-1:]
    assert event.user_id == uid and event.details["group"] == "suppliers"
    assert event.details["actor"] == f"user:{people['helpdesk']}"

    again = desk.post(f"/admin/users/{uid}/action",
                      {"action": "groups", "op": "add", "group": "suppliers"})  # fmt: skip
    assert again.status_code == 400 and "already in suppliers" in again.text

    resp = desk.post(f"/admin/users/{uid}/action",
                     {"action": "groups", "op": "remove", "group": "suppliers"})  # fmt: skip
    assert resp.status_code == 302 and _member_of(app, uid) == []
    assert audit_events(app, "group.member_removed")[-1].details["group"] == "suppliers"


@pytest.mark.parametrize("form", [
    {"op": "add", "group": "no-such-group"},
    {"op": "add", "group": ""},
    {"op": "promote", "group": "suppliers"},
])  # fmt: skip
def test_a_bad_group_form_changes_nothing(app, people, form):
    _groups(app, "suppliers")
    desk = signed_in(app, people["helpdesk"])
    resp = desk.post(f"/admin/users/{people['user']}/action", {"action": "groups", **form})
    assert resp.status_code == 400 and "Choose a group." in resp.text
    assert _member_of(app, people["user"]) == []


def test_the_group_form_needs_the_csrf_token(app, people):
    _groups(app, "suppliers")
    desk = signed_in(app, people["helpdesk"])
    resp = desk.post(f"/admin/users/{people['user']}/action",
                     {"action": "groups", "op": "add", "group": "suppliers"}, csrf=False)  # fmt: skip
    assert resp.status_code in (400, 403)
    assert _member_of(app, people["user"]) == []


def test_the_help_desk_cannot_change_an_administrators_groups(app, people):
    _groups(app, "suppliers")
    desk = signed_in(app, people["helpdesk"])
    admin = people["admin"]
    page = desk.get(f"/admin/users/{admin}").text
    assert 'value="groups"' not in page  # the section lists, but offers nothing
    resp = desk.post(f"/admin/users/{admin}/action",
                     {"action": "groups", "op": "add", "group": "suppliers"})  # fmt: skip
    assert resp.status_code == 403 and _member_of(app, admin) == []
    assert audit_events(app, "admin.action_refused")[-1].details["action"] == "groups"


def test_an_administrator_changes_another_administrators_groups_with_a_reason(
    app, people, make_user
):
    _groups(app, "suppliers")
    other = make_user("root2@example.com", role="admin")[0]
    root = signed_in(app, people["admin"])
    page = root.get(f"/admin/users/{other}").text
    assert 'id="reason-group-add"' in page
    refused = root.post(f"/admin/users/{other}/action",
                        {"action": "groups", "op": "add", "group": "suppliers"})  # fmt: skip
    assert refused.status_code == 403 and _member_of(app, other) == []
    done = root.post(f"/admin/users/{other}/action", {"action": "groups", "op": "add",
                     "group": "suppliers", "reason": "joins the supplier audit"})  # fmt: skip
    assert done.status_code == 302 and _member_of(app, other) == ["suppliers"]
    assert audit_events(app, "group.member_added")[-1].details["reason"] == (
        "joins the supplier audit")  # fmt: skip
