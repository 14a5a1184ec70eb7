"""Refresh tokens and sign-out (OpenID Connect Core 11).

Without ``offline_access`` (granted on the consent page, or to a first-party client),
a refresh token is bound to the browser session that earned it and dies with it:
sign-out, session expiry, an administrator's revocation, a password reset, the
removal of a factor the session used. With ``offline_access`` it survives sign-out
until it is revoked. Removing a factor ends the sessions and the tokens (offline ones
included) earned with it.
"""

from __future__ import annotations

import json

import pytest

from clients.mockrp import MockRP
from clients.mockrp.rp import OAuthError
from clients.mockrp.transport import FlaskTransport
from tests.conftest import PASSWORD, make_settings

ISS = "http://localhost"
CB = "https://rp.example.com/cb"
EMAIL = "ada@example.com"


@pytest.fixture
def settings(tmp_path, keys_dir):
    return make_settings(tmp_path, keys_dir)


def new_rp(app, client_id: str, secret: str | None) -> MockRP:
    return MockRP(
        ISS, client_id, CB, client_secret=secret, transport=FlaskTransport(app.test_client())
    )


@pytest.fixture
def third_party(app, make_client, make_user):
    make_user()
    return make_client()  # consent page shown


@pytest.fixture
def first_party(app, make_client, make_user):
    make_user()
    return make_client(first_party=True)


def refresh_fails(rp: MockRP, token: str) -> bool:
    try:
        rp.refresh(token)
    except OAuthError as exc:
        assert "invalid_grant" in str(exc), exc
        return True
    return False


def sign_in(rp: MockRP, scope: str = "openid profile email"):
    return rp.exchange_code(rp.sign_in(EMAIL, PASSWORD, scope=scope))


def refresh_row(app, token: str):
    from idp.extensions import db
    from idp.models import RefreshToken
    from idp.security.crypto import hash_token

    with app.app_context():
        row = db.session.execute(
            db.select(RefreshToken).filter_by(token_hash=hash_token(token))
        ).scalar_one()
        db.session.expunge(row)
        return row


def events(app, name: str) -> list[dict]:
    from idp.extensions import db
    from idp.models import AuditEvent

    with app.app_context():
        rows = db.session.execute(db.select(AuditEvent).filter_by(event=name)).scalars()
        return [dict(r.details or {}) for r in rows]


# -- sign-out ---------------------------------------------------------------------------


def test_without_offline_access_sign_out_ends_the_refresh_token(app, third_party):
    rp = new_rp(app, *third_party)
    tokens = sign_in(rp)
    assert not refresh_row(app, tokens.refresh_token).offline
    fresh = rp.refresh(tokens.refresh_token)  # works while the session lives
    assert rp.introspect(fresh.refresh_token)["active"] is True

    rp.logout(id_token_hint=tokens.id_token)
    assert rp.introspect(fresh.refresh_token) == {"active": False}
    assert refresh_fails(rp, fresh.refresh_token)
    # The access token of the grant is revoked with it.
    assert rp.introspect(fresh.access_token) == {"active": False}


def test_offline_access_granted_with_consent_survives_sign_out_until_revoked(app, third_party):
    rp = new_rp(app, *third_party)
    tokens = sign_in(rp, "openid email offline_access")
    assert "offline_access" in tokens.scope.split()
    assert refresh_row(app, tokens.refresh_token).offline
    rp.logout(id_token_hint=tokens.id_token)
    again = rp.refresh(tokens.refresh_token)
    assert again.refresh_token
    assert rp.revoke(again.refresh_token) == 200
    assert refresh_fails(rp, again.refresh_token)


def test_offline_access_refused_on_the_consent_page_is_not_granted(app, third_party):
    rp = new_rp(app, *third_party)
    # Consent remembered without offline_access: a later request for it asks again.
    sign_in(rp, "openid email")
    resp = rp.start("openid email offline_access")
    assert resp.status == 302 and "/consent" in resp.location, resp.location
    page = rp.transport.request("GET", resp.location)
    assert "Stay connected when you are not signed in" in page.text


def test_first_party_client_gets_offline_access_without_a_consent_page(app, first_party):
    rp = new_rp(app, *first_party)
    tokens = sign_in(rp, "openid offline_access")
    assert refresh_row(app, tokens.refresh_token).offline
    plain = new_rp(app, *first_party)
    bound = sign_in(plain)
    assert not refresh_row(app, bound.refresh_token).offline


def test_session_expiry_ends_session_bound_refresh_tokens(app, third_party):
    rp = new_rp(app, *third_party)
    tokens = sign_in(rp)
    svc = app.extensions["idp"]
    cookie = rp.transport.client.get_cookie(svc.settings.session.cookie_name).value
    with app.app_context():
        session = svc.sessions.load(cookie)
        # The idle timeout passes: the store forgets the session by itself.
        svc.store.delete(f"session:{session.key}")
    assert refresh_fails(rp, tokens.refresh_token)
    assert events(app, "token.session_ended")
    assert refresh_row(app, tokens.refresh_token).revoked_at is not None


def test_help_desk_revocation_and_password_reset_end_every_grant(app, third_party):
    from idp.admin import service
    from idp.extensions import db
    from idp.models import User

    rp = new_rp(app, *third_party)
    bound = sign_in(rp)
    offline = sign_in(new_rp(app, *third_party), "openid offline_access")
    with app.test_request_context():
        user = db.session.execute(db.select(User).filter_by(email=EMAIL)).scalar_one()
        service.revoke_sessions(user, actor="user:0")
    assert refresh_fails(rp, bound.refresh_token)
    assert refresh_fails(rp, offline.refresh_token)


# -- removing a factor --------------------------------------------------------------------


@pytest.fixture
def mfa_settings(tmp_path, keys_dir):
    return make_settings(tmp_path, keys_dir, mfa={"required": True, "enforce_from": ""})


class TestFactorRemoval:
    @pytest.fixture
    def settings(self, mfa_settings):
        return mfa_settings

    def test_removing_a_factor_ends_what_it_earned(self, app, first_party, monkeypatch):
        """Two browsers sign in with the authenticator app "Phone"; one of them also has
        a second app. Removing "Phone" from the second browser ends the first browser's
        session and every refresh token earned with "Phone" (offline ones too); the
        browser that removed it stays signed in without it."""
        import time

        from idp.security import totp
        from tests.integration.account_helpers import add_totp
        from tests.integration.mfa_helpers import get, path_of, submit, totp_code, walk

        start = int(time.time() // 30)
        clock = {"step": start}
        monkeypatch.setattr(totp, "current_step", lambda now=None: clock["step"])
        phone = add_totp(app, EMAIL)  # set up with the code of step `start`
        client_id, secret = first_party

        def sign_in_with_phone(scope: str):
            rp = new_rp(app, client_id, secret)
            resp = walk(rp, rp.start(scope), email=EMAIL, password=PASSWORD)
            assert path_of(resp) == "/mfa/challenge"
            clock["step"] += 1  # each sign-in in a later time step (codes are single use)
            resp = submit(rp, resp, {"code": totp_code(phone, clock["step"])})
            resp = walk(rp, resp, email=EMAIL, password=PASSWORD)
            if resp.status == 200 and path_of(resp) == "/mfa/recommend":
                resp = submit(rp, resp, button=("choice", "skip"))
            result = rp.resume(resp, email=EMAIL, password=PASSWORD)
            return rp, rp.exchange_code(result)

        rp_a, bound = sign_in_with_phone("openid")
        rp_b, offline = sign_in_with_phone("openid offline_access")
        assert refresh_row(app, bound.refresh_token).factor_ids

        # A second app, then remove "Phone" from browser B's account page.
        clock["step"] += 1
        tablet = add_totp(app, EMAIL, clock["step"])
        from idp.extensions import db
        from idp.models import Factor

        with app.app_context():
            rows = db.session.execute(db.select(Factor).order_by(Factor.id)).scalars().all()
            phone_id = rows[0].id
        page = get(rp_b, "/account/security")
        assert page.status == 200, page.location
        form = next(
            f
            for f in __import__("clients.mockrp.forms", fromlist=["parse_forms"]).parse_forms(
                page.text, page.url
            )
            if f.action.endswith(f"/account/factors/{phone_id}")
        )
        resp = rp_b.submit_form(form, button=("action", "remove"))
        assert resp.status == 200 and "Yes, remove" in resp.text, resp.text[:300]
        confirm = next(
            f
            for f in __import__("clients.mockrp.forms", fromlist=["parse_forms"]).parse_forms(
                resp.text, resp.url
            )
            if f.action.endswith(f"/account/factors/{phone_id}")
        )
        resp = rp_b.submit_form(confirm, button=("action", "remove"))
        assert resp.status == 303 and resp.location.endswith("/account/security"), resp.text[:300]

        assert refresh_fails(rp_a, bound.refresh_token)
        assert refresh_fails(rp_b, offline.refresh_token)  # offline, but earned with Phone
        [removed] = events(app, "mfa.factor_removed")
        assert removed["sessions_ended"] == 1 and removed["token_families"] == 2
        # Browser A was signed out; browser B is still in, but must pass a factor again
        # (its only passed factor is gone) before the account page opens.
        svc = app.extensions["idp"]
        cookie_a = rp_a.transport.client.get_cookie(svc.settings.session.cookie_name)
        with app.app_context():
            assert svc.sessions.load(cookie_a.value) is None
        page = get(rp_b, "/account/security")
        assert page.status == 302 and "/mfa/challenge" in page.location
        assert tablet and json  # the second app remains usable
