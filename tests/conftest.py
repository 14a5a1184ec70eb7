"""Shared fixtures: settings, a key ring, the app on SQLite or PostgreSQL, factories.

Services that are not running make their tests skip, unless ``IDP_TEST_REQUIRE`` (a
comma list such as ``postgres,redis,browser``) names them: then they fail.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from idp.config import Settings, load_settings

PG_URL = os.environ.get(
    "IDP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("IDP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRED = {s.strip() for s in os.environ.get("IDP_TEST_REQUIRE", "").split(",") if s.strip()}


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def need(service: str, available: bool, why: str) -> None:
    """Skip when *service* is missing, or fail when IDP_TEST_REQUIRE lists it."""
    if available:
        return
    if service in REQUIRED:
        pytest.fail(f"{service} is required (IDP_TEST_REQUIRE) but {why}")
    pytest.skip(f"{service} not available: {why}")


def postgres_available() -> bool:
    return _reachable("127.0.0.1", 5432)


def redis_available() -> bool:
    return _reachable("127.0.0.1", 6379)


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory) -> Path:
    from idp.keys import generate_key

    d = tmp_path_factory.mktemp("keys")
    generate_key(d, "RS256")
    return d


def make_settings(tmp_path: Path, keys_dir: Path, **sections) -> Settings:
    """Test settings: fast password hashing, temp SQLite, the session key ring."""
    base = load_settings(environ={})
    s = replace(
        base,
        env="test",
        issuer="http://localhost",
        database=replace(base.database, url=f"sqlite:///{tmp_path / 'idp.sqlite3'}"),
        keys=replace(base.keys, directory=str(keys_dir)),
        password=replace(base.password, memory_cost=1024, time_cost=1),
        delivery=replace(base.delivery, outbox=str(tmp_path / "outbox.jsonl")),
        # The protocol tests run with MFA off; MFA tests turn it on explicitly.
        mfa=replace(base.mfa, required=False),
        # No "sign in faster next time" page in the flows; its tests turn it on.
        webauthn=replace(base.webauthn, passkey_offer_days=0),
    )
    for name, values in sections.items():
        s = replace(s, **{name: replace(getattr(s, name), **values)})
    return s


def _migrate(app) -> None:
    from flask_migrate import upgrade

    with app.app_context():
        upgrade()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database migrated once per test session."""
    need("postgres", postgres_available(), "nothing listens on 127.0.0.1:5432")
    import psycopg

    name = f"idp_test_{uuid.uuid4().hex[:8]}"
    admin = PG_URL.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=[pytest.mark.postgres, pytest.mark.redis]),
]


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def settings(tmp_path, keys_dir) -> Settings:
    return make_settings(tmp_path, keys_dir)


@pytest.fixture
def app(request, backend, settings, keys_dir):
    """The provider on SQLite + memory store, or PostgreSQL + Redis."""
    from idp.app import create_app
    from idp.extensions import db
    from idp.store import MemoryStore, RedisStore

    if backend == "postgres":
        need("redis", redis_available(), "nothing listens on 127.0.0.1:6379")
        url = request.getfixturevalue("pg_database")
        settings = replace(
            settings,
            database=replace(settings.database, url=url),
            store=replace(settings.store, backend="redis", redis_url=REDIS_URL),
        )
        prefix = f"test:{uuid.uuid4().hex[:8]}:"
        store = RedisStore(REDIS_URL, prefix=prefix)
    else:
        store = MemoryStore()
    application = create_app(settings, store=store, warn=False)
    application.config["TESTING"] = True
    if backend == "postgres":
        with application.app_context():
            _migrate(application)
            for table in reversed(db.metadata.sorted_tables):
                db.session.execute(table.delete())
            db.session.commit()
    else:
        _migrate(application)
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()
    if isinstance(store, RedisStore):
        import redis

        r = redis.Redis.from_url(REDIS_URL)
        for key in r.scan_iter(match=f"{prefix}*"):
            r.delete(key)
        r.close()
        store.close()


@pytest.fixture
def client(app):
    return app.test_client()


# -- factories --------------------------------------------------------------------

PASSWORD = "a perfectly fine passphrase"


@pytest.fixture
def make_user(app):
    from idp.extensions import db
    from idp.models import User
    from idp.services import services

    def factory(email: str = "ada@example.com", password: str = PASSWORD, **kw):
        with app.app_context():
            user = User(
                email=email,
                name=kw.pop("name", "Ada Lovelace"),
                email_verified=True,
                password_hash=services().passwords.hash(password),
                **kw,
            )
            db.session.add(user)
            db.session.commit()
            return user.id, user.sub

    return factory


@pytest.fixture
def make_client(app):
    from idp.oidc.clients import create_client

    def factory(**kw):
        kw.setdefault("name", "Test RP")
        kw.setdefault("redirect_uris", ["https://rp.example.com/cb"])
        kw.setdefault("post_logout_redirect_uris", ["https://rp.example.com/bye"])
        kw.setdefault("scope", "openid profile email phone offline_access")
        with app.app_context():
            c, secret = create_client(**kw)
            return c.client_id, secret

    return factory
