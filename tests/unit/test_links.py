"""Signed single-use links: tampering, expiry, reuse, purpose binding, state binding, and
one winner among concurrent uses."""

from __future__ import annotations

import threading
import time

import pytest

from idp.account import links
from idp.extensions import db
from idp.models import User


@pytest.fixture
def user(app, make_user):
    uid, _ = make_user()
    return uid


@pytest.fixture
def ctx(app):
    with app.test_request_context():
        yield


def load(uid: int) -> User:
    return db.session.get(User, uid)


def test_issue_then_consume_once(ctx, user):
    token = links.issue("reset", load(user), 3600, note="x")
    data = links.consume("reset", token)
    assert data.user.id == user and data.data == {"note": "x"} and data.purpose == "reset"
    with pytest.raises(links.UsedLink):
        links.consume("reset", token)


def test_peek_does_not_use_the_link_up(ctx, user):
    token = links.issue("verify_email", load(user), 3600)
    assert links.peek("verify_email", token).user.id == user
    assert links.peek("verify_email", token).user.id == user
    links.consume("verify_email", token)
    with pytest.raises(links.UsedLink):
        links.peek("verify_email", token)


def test_expired_link_is_refused_as_expired(ctx, user):
    token = links.issue("reset", load(user), 60, now=int(time.time()) - 120)
    with pytest.raises(links.ExpiredLink):
        links.consume("reset", token)
    with pytest.raises(links.ExpiredLink):
        links.peek("reset", token)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature
        lambda t: t.replace(t.split(".")[1], t.split(".")[1][::-1]),  # id
        lambda t: str(int(t.split(".")[0]) + 86400) + "." + t.split(".", 1)[1],  # expiry
        lambda t: t.rsplit(".", 1)[0],  # no signature
        lambda t: "",
        lambda t: "1.2.3",
        lambda t: "x" * 500,
        lambda t: "abc.def.ghi",
    ],
)
def test_tampered_links_are_invalid(ctx, user, mangle):
    token = links.issue("reset", load(user), 3600)
    with pytest.raises(links.InvalidLink):
        links.consume("reset", mangle(token))
    assert links.consume("reset", token).user.id == user  # the real one still works


def test_a_link_is_bound_to_its_purpose(ctx, user):
    token = links.issue("verify_email", load(user), 3600)
    with pytest.raises(links.InvalidLink):
        links.consume("reset", token)
    with pytest.raises(links.InvalidLink):
        links.consume("email_change", token)
    with pytest.raises(links.InvalidLink):
        links.consume("nonsense", token)
    with pytest.raises(ValueError):
        links.issue("nonsense", load(user), 60)


def test_reset_link_dies_when_the_password_changes(ctx, user):
    token = links.issue("reset", load(user), 3600)
    u = load(user)
    u.password_hash = "$argon2id$changed"
    db.session.commit()
    with pytest.raises(links.InvalidLink):
        links.consume("reset", token)


def test_verification_link_dies_when_the_email_changes(ctx, user):
    token = links.issue("verify_email", load(user), 3600)
    other = links.issue("email_change", load(user), 3600, new_email="new@example.com")
    u = load(user)
    u.email = "changed@example.com"
    db.session.commit()
    with pytest.raises(links.InvalidLink):
        links.consume("verify_email", token)
    with pytest.raises(links.InvalidLink):
        links.consume("email_change", other)


def test_a_verification_link_survives_a_password_change(ctx, user):
    token = links.issue("verify_email", load(user), 3600)
    u = load(user)
    u.password_hash = "$argon2id$changed"
    db.session.commit()
    assert links.consume("verify_email", token).user.id == user


def test_disabled_or_deleted_users_links_are_invalid(ctx, user):
    token = links.issue("reset", load(user), 3600)
    u = load(user)
    u.status = "disabled"
    db.session.commit()
    with pytest.raises(links.InvalidLink):
        links.consume("reset", token)


def test_another_secret_key_invalidates_links(app, user):
    from dataclasses import replace

    with app.test_request_context():
        token = links.issue("reset", load(user), 3600)
        svc = app.extensions["idp"]
        original = svc.settings
        svc.settings = replace(original, secret_key="another-secret-key-for-this-test-only")
        try:
            with pytest.raises(links.InvalidLink):
                links.consume("reset", token)
        finally:
            svc.settings = original
        assert links.consume("reset", token).user.id == user


def test_only_a_hash_of_the_id_is_stored(app, ctx, user):
    token = links.issue("reset", load(user), 3600)
    rid = token.split(".")[1]
    store = app.extensions["idp"].store
    assert store.get(f"link:reset:{rid}") is None
    from idp.security.crypto import hash_token

    assert store.get(f"link:reset:{hash_token(rid)}") is not None


def test_concurrent_uses_have_exactly_one_winner(app, user):
    with app.test_request_context():
        token = links.issue("reset", load(user), 3600)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def use() -> None:
        with app.test_request_context():
            barrier.wait()
            try:
                links.consume("reset", token)
                outcomes.append("ok")
            except links.UsedLink:
                outcomes.append("used")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok"] + ["used"] * 7


def test_send_email_verification_sends_a_working_link(app, ctx, user):
    import json
    from pathlib import Path

    assert links.send_email_verification(load(user), txn="t1") is True
    outbox = Path(app.extensions["idp"].settings.delivery.outbox)
    [mail] = [json.loads(line) for line in outbox.read_text().splitlines()]
    assert mail["to"] == "ada@example.com" and mail["purpose"] == "account.verify_email"
    url = next(w for w in mail["text"].split() if "/verify/" in w)
    assert url.startswith("http://localhost/verify/")
    data = links.consume("verify_email", url.rsplit("/", 1)[1])
    assert data.data == {"txn": "t1"}
