"""Client registrations cached across requests (idp/oidc/client_cache.py): read once,
then served from the process's copy while no client changes; any committed change, in
this process or another instance, takes effect at the next request; a store outage
bypasses the cache instead of serving stale copies forever."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from idp.oidc.client_cache import ClientCache
from idp.store import MemoryStore, StoreUnavailable


def _grant(app, client_id, secret):
    return app.test_client().post(
        "/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )


@pytest.fixture
def service(make_client):
    return make_client(name="Service", grant_types=["client_credentials"], scope="")


def _client_selects(app):
    from idp.extensions import db

    seen: list[str] = []

    def listen(_conn, _cursor, statement, *_args):
        if statement.lstrip().upper().startswith("SELECT") and "oauth_clients" in statement:
            seen.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", listen)
    return seen


def _update_client(app, client_id, **values):
    from idp.extensions import db
    from idp.models import OAuthClient

    with app.app_context():
        row = db.session.execute(db.select(OAuthClient).filter_by(client_id=client_id)).scalar_one()
        for key, value in values.items():
            if key == "secret":
                row.set_secret(value)
            else:
                setattr(row, key, value)
        db.session.commit()


def test_a_shared_store_caches_and_a_private_one_does_not(app, backend, service):
    cid, secret = service
    seen = _client_selects(app)
    for _ in range(3):
        assert _grant(app, cid, secret).status_code == 200
    # Redis (shared by every instance) enables the cache; the in-memory store cannot
    # hear about changes made by a command in another process, so it never caches.
    assert len(seen) == (1 if backend == "postgres" else 3)


def test_disabling_a_client_takes_effect_at_the_next_request(app, service):
    cid, secret = service
    assert _grant(app, cid, secret).status_code == 200
    _update_client(app, cid, disabled=True)
    refused = _grant(app, cid, secret)
    assert refused.status_code == 401 and refused.get_json()["error"] == "invalid_client"


def test_a_rotated_secret_refuses_the_old_one_at_once(app, service):
    cid, secret = service
    assert _grant(app, cid, secret).status_code == 200
    _update_client(app, cid, secret="a-new-secret-of-enough-length-for-the-test")
    assert _grant(app, cid, secret).status_code == 401
    assert _grant(app, cid, "a-new-secret-of-enough-length-for-the-test").status_code == 200


def test_a_change_made_by_another_instance_is_seen(app, backend, service):
    if backend != "postgres":
        pytest.skip("instances share state through Redis")
    from idp.app import create_app

    svc = app.extensions["idp"]
    other = create_app(svc.settings, store=svc.store, warn=False)  # same database, same Redis
    cid, secret = service
    assert _grant(app, cid, secret).status_code == 200
    assert _grant(other, cid, secret).status_code == 200
    _update_client(other, cid, disabled=True)
    assert _grant(app, cid, secret).status_code == 401


def test_a_rolled_back_change_announces_nothing(app, backend, service):
    if backend != "postgres":
        pytest.skip("the cache is on with Redis only")
    from idp.extensions import db
    from idp.models import OAuthClient
    from idp.oidc.client_cache import GENERATION_KEY

    store = app.extensions["idp"].store
    before = store.get(GENERATION_KEY)
    with app.app_context():
        row = db.session.execute(db.select(OAuthClient)).scalars().first()
        row.name = "Renamed"
        db.session.flush()
        db.session.rollback()
    assert store.get(GENERATION_KEY) == before


class _DownStore(MemoryStore):
    shared = True
    down = False

    def get(self, key):
        if self.down:
            raise StoreUnavailable("down")
        return super().get(key)

    def incr(self, key, ttl):
        if self.down:
            raise StoreUnavailable("down")
        return super().incr(key, ttl)


def _counting_loader(app):
    """One client row in the database, and a loader that counts its calls (to be used
    inside an app context)."""
    from idp.extensions import db
    from idp.models import OAuthClient

    with app.app_context():
        db.session.add(OAuthClient(client_id="c1", name="One", grant_types=[],
                                   redirect_uris=[]))  # fmt: skip
        db.session.commit()
    loads: list[int] = []

    def load():
        loads.append(1)
        return db.session.execute(db.select(OAuthClient)).scalars().first()

    return load, loads


def test_the_cache_is_bypassed_while_the_store_is_down(app):
    store = _DownStore()
    cache = ClientCache(store, enabled=True, ttl=30)
    load, loads = _counting_loader(app)
    with app.app_context():
        assert cache.get("c1", load).client_id == "c1"
        assert cache.get("c1", load).client_id == "c1"
        assert len(loads) == 1
        store.down = True
        assert cache.get("c1", load).client_id == "c1"  # from the database, not the copy
        assert cache.get("c1", load).client_id == "c1"
        assert len(loads) == 3
        cache.changed()  # the announcement fails; the local copies are dropped anyway
        store.down = False
        cache.get("c1", load)
        assert len(loads) == 4


def test_copies_expire_after_the_ttl(app):
    cache = ClientCache(_DownStore(), enabled=True, ttl=0)
    load, loads = _counting_loader(app)
    with app.app_context():
        cache.get("c1", load)
        cache.get("c1", load)
    assert len(loads) == 2


def test_a_copy_is_never_attached_to_a_session(app, backend, service):
    if backend != "postgres":
        pytest.skip("the cache is on with Redis only")
    from sqlalchemy import inspect

    from idp.oidc.server import query_client

    cid, _ = service
    with app.test_request_context("/"):
        first = query_client(cid)
    with app.test_request_context("/"):
        second = query_client(cid)
    assert second is first and inspect(first).session is None
