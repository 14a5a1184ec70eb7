"""Faults of the real dependencies: Redis and PostgreSQL going away mid-run (through a
TCP proxy the test cuts), and coming back.

- Redis unreachable: sign-in answers a clear 503 page (the guess limits live in Redis
  and never fail open) and recovers by itself when Redis returns, with no restart.
- PostgreSQL unreachable: pages and JSON endpoints answer 503, nothing is half-written,
  and the provider recovers by itself.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import replace

import pytest

from clients.mockrp.forms import page_info
from tests.conftest import PASSWORD, REDIS_URL, need, postgres_available, redis_available
from tests.support.tcpproxy import TCPProxy

pytestmark = [pytest.mark.redis]


def _csrf(resp) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', resp.get_data(as_text=True))[1]


def _signin(client, email: str = "ada@example.com", password: str = PASSWORD):
    page = client.get("/signin")
    return client.post(
        "/signin", data={"email": email, "password": password, "csrf_token": _csrf(page)}
    )


def _add_user(app) -> None:
    from idp.extensions import db
    from idp.models import User
    from idp.services import services

    with app.app_context():
        db.session.add(
            User(
                email="ada@example.com",
                name="Ada",
                email_verified=True,
                password_hash=services().passwords.hash(PASSWORD),
            )
        )
        db.session.commit()


@pytest.fixture
def redis_proxy():
    need("redis", redis_available(), "nothing listens on 127.0.0.1:6379")
    host, port = REDIS_URL.split("//", 1)[1].split("/", 1)[0].split(":")
    proxy = TCPProxy(host, int(port))
    yield proxy
    proxy.close()


def test_redis_outage_fails_closed_and_recovers_by_itself(settings, redis_proxy):
    from flask_migrate import upgrade

    from idp.app import create_app
    from idp.extensions import db
    from idp.models import AuditEvent
    from idp.store import RedisStore

    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    store = RedisStore(f"redis://127.0.0.1:{redis_proxy.port}/0", prefix=prefix,
                       socket_timeout=0.5)  # fmt: skip
    app = create_app(settings, store=store, warn=False)
    app.config["TESTING"] = True
    with app.app_context():
        upgrade()
    _add_user(app)
    try:
        assert _signin(app.test_client()).status_code == 302

        redis_proxy.cut()
        client = app.test_client()
        down = _signin(client)
        assert down.status_code == 503
        assert down.headers["Retry-After"] == "30"
        assert "temporarily unavailable" in page_info(down.get_data(as_text=True)).title
        assert client.get_cookie(settings.session.cookie_name) is None
        assert app.test_client().get("/readyz").status_code == 503
        # A wrong password while Redis is down is not counted as "free": no guess
        # is evaluated at all.
        assert _signin(client, password="guess").status_code == 503

        redis_proxy.restore()
        back = _signin(app.test_client())
        assert back.status_code == 302, back.get_data(as_text=True)[:300]
        assert app.test_client().get("/readyz").status_code == 200
        with app.app_context():
            outcomes = [
                e.outcome
                for e in db.session.execute(
                    db.select(AuditEvent).where(AuditEvent.event.like("login.%"))
                ).scalars()
            ]
        # Two successes (before and after); the attempts during the outage never ran.
        assert outcomes == ["success", "success"]
    finally:
        redis_proxy.cut()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        store.close()
        import redis

        r = redis.Redis.from_url(REDIS_URL)
        for key in r.scan_iter(match=f"{prefix}*"):
            r.delete(key)
        r.close()


@pytest.fixture
def pg_proxy(pg_database):
    need("postgres", postgres_available(), "nothing listens on 127.0.0.1:5432")
    proxy = TCPProxy("127.0.0.1", 5432)
    yield proxy, pg_database.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    proxy.close()


@pytest.mark.postgres
def test_database_outage_answers_503_writes_nothing_and_recovers(settings, pg_proxy):
    from flask_migrate import upgrade

    from idp.app import create_app
    from idp.extensions import db
    from idp.models import AuditEvent, OAuthClient, User
    from idp.oidc.clients import create_client
    from idp.store import MemoryStore

    proxy, url = pg_proxy
    settings = replace(settings, database=replace(settings.database, url=url))
    app = create_app(settings, store=MemoryStore(), warn=False)
    app.config["TESTING"] = True
    with app.app_context():
        upgrade()
        for table in reversed(db.metadata.sorted_tables):
            db.session.execute(table.delete())
        db.session.commit()
        _c, secret = create_client(name="Svc", redirect_uris=["https://rp.example.com/cb"],
                                   grant_types=["client_credentials"], scope="")  # fmt: skip
        client_id = _c.client_id
    _add_user(app)
    try:
        web = app.test_client()
        ok = web.post("/token", data={"grant_type": "client_credentials"},
                      auth=(client_id, secret))  # fmt: skip
        assert ok.status_code == 200

        proxy.cut()
        with app.app_context():
            db.engine.dispose()  # drop pooled connections: the next use must reconnect
        page = web.get("/signin")
        signin = web.post(
            "/signin",
            data={"email": "ada@example.com", "password": PASSWORD, "csrf_token": _csrf(page)},
        )
        assert signin.status_code == 503
        assert "Temporarily unavailable" in page_info(signin.get_data(as_text=True)).title
        token = web.post("/token", data={"grant_type": "client_credentials"},
                         auth=(client_id, secret))  # fmt: skip
        assert token.status_code == 503
        assert web.get("/readyz").status_code == 503

        proxy.restore()
        assert _signin(app.test_client()).status_code == 302
        again = web.post("/token", data={"grant_type": "client_credentials"},
                         auth=(client_id, secret))  # fmt: skip
        assert again.status_code == 200
        with app.app_context():
            # Nothing from the outage landed: one sign-in and two token grants audited,
            # the user row untouched by the refused attempt.
            events = [e.event for e in db.session.execute(db.select(AuditEvent)).scalars()]
            assert events.count("login.success") == 1
            assert events.count("token.issued") == 2
            assert db.session.query(User).count() == 1
            assert db.session.query(OAuthClient).count() == 1
    finally:
        proxy.cut()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_a_value_the_database_refuses_is_the_clients_error(app):
    """The net under every validator: a DataError (a NUL byte, text longer than its
    column) answers 400 with the friendly page or JSON error, and the transaction is
    rolled back."""
    import psycopg
    from sqlalchemy.exc import DataError

    def refuse():
        raise DataError("INSERT ...", {}, psycopg.DataError("text fields cannot contain NUL"))

    app.add_url_rule("/test-data-error", "test_data_error", refuse, methods=["POST"])
    app.add_url_rule("/token/test-data-error", "test_data_error_json", refuse, methods=["POST"])
    page = app.test_client().post("/test-data-error")
    assert page.status_code == 400 and "Invalid request" in page.get_data(as_text=True)
    api = app.test_client().post("/token/test-data-error")
    assert api.status_code == 400 and api.get_json()["error"] == "invalid_request"
