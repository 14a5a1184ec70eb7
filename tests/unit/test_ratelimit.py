"""Rate limits: fixed windows in the store, hashed keys, and no failing open."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Iterator

import pytest
import redis as redis_py
from redis.backoff import NoBackoff
from redis.retry import Retry

from idp.security.ratelimit import Limit, RateLimited, RateLimiter
from idp.store import MemoryStore, RedisStore, StoreUnavailable

REDIS_URL = os.environ.get("IDP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DEAD_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1

LOGIN_IP = Limit(name="login.ip", limit=3, window=60)


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> MemoryStore:
    return MemoryStore(prefix="idp:", clock=clock)


def _expected_key(name: str, key: str) -> str:
    return f"rl:{name}:{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def test_hits_up_to_the_limit_then_refused(store: MemoryStore, clock: FakeClock) -> None:
    limiter = RateLimiter(store, LOGIN_IP)
    assert [limiter.hit("198.51.100.7") for _ in range(3)] == [1, 2, 3]
    clock.advance(10)
    with pytest.raises(RateLimited) as info:
        limiter.hit("198.51.100.7")  # the 4th attempt crosses the limit: refused
    assert info.value.retry_after == 50
    assert info.value.name == "login.ip"
    clock.advance(45)
    with pytest.raises(RateLimited) as info:
        limiter.hit("198.51.100.7")  # and so is every later one in the window
    assert info.value.retry_after == 5


def test_window_resets(store: MemoryStore, clock: FakeClock) -> None:
    limiter = RateLimiter(store, LOGIN_IP)
    for _ in range(3):
        limiter.hit("ip")
    with pytest.raises(RateLimited):
        limiter.hit("ip")
    clock.advance(59.9)
    with pytest.raises(RateLimited):
        limiter.check("ip")
    clock.advance(0.1)
    limiter.check("ip")
    assert limiter.hit("ip") == 1


def test_window_is_fixed_not_sliding(store: MemoryStore, clock: FakeClock) -> None:
    limiter = RateLimiter(store, LOGIN_IP)
    assert limiter.hit("ip") == 1
    clock.advance(40)
    assert limiter.hit("ip") == 2  # must not push the window's end out
    clock.advance(20)
    assert limiter.hit("ip") == 1


def test_check_does_not_count(store: MemoryStore) -> None:
    limiter = RateLimiter(store, LOGIN_IP)
    for _ in range(10):
        limiter.check("ip")
    assert limiter.hit("ip") == 1
    limiter.hit("ip")
    limiter.check("ip")  # 2 of 3: still allowed
    limiter.hit("ip")
    with pytest.raises(RateLimited) as info:
        limiter.check("ip")  # at the limit: the next attempt would be refused
    assert info.value.retry_after == 60
    assert store.get(_expected_key("login.ip", "ip")) == b"3"


def test_keys_are_hashed_and_namespaced_by_limit_name(store: MemoryStore) -> None:
    email = "Alice@Example.com"
    RateLimiter(store, Limit("login.account_ip", 5, 300)).hit(f"{email}|203.0.113.9")
    RateLimiter(store, Limit("login.ip", 5, 300)).hit("203.0.113.9")
    expected = {
        "idp:" + _expected_key("login.account_ip", f"{email}|203.0.113.9"),
        "idp:" + _expected_key("login.ip", "203.0.113.9"),
    }
    assert set(store._data) == expected
    for stored in store._data:
        assert "alice" not in stored.lower()
        assert "203.0.113" not in stored
        assert len(stored.rsplit(":", 1)[1]) == 32


def test_limits_and_keys_are_independent(store: MemoryStore) -> None:
    by_ip = RateLimiter(store, Limit("login.ip", 1, 60))
    by_account = RateLimiter(store, Limit("login.account_ip", 1, 60))
    by_ip.hit("k")
    with pytest.raises(RateLimited):
        by_ip.hit("k")
    assert by_account.hit("k") == 1  # same key, other limit
    with pytest.raises(RateLimited):
        by_ip.check("k")
    by_ip.check("other-key")


def test_clear(store: MemoryStore) -> None:
    limiter = RateLimiter(store, LOGIN_IP)
    for _ in range(3):
        limiter.hit("victim")
        limiter.hit("bystander")
    limiter.clear("victim")
    limiter.check("victim")
    assert limiter.hit("victim") == 1
    with pytest.raises(RateLimited):
        limiter.check("bystander")  # clearing one key leaves the others
    limiter.clear("never-seen")


def test_retry_after_is_at_least_one() -> None:
    assert RateLimited(0).retry_after == 1
    assert RateLimited(-5).retry_after == 1
    assert RateLimited(7, "x").retry_after == 7


class _NoTtlStore(MemoryStore):
    """A store whose counter lost its TTL between incr and ttl (e.g. expired in between)."""

    def ttl(self, key: str) -> int | None:
        return None


def test_retry_after_falls_back_to_the_window() -> None:
    limiter = RateLimiter(_NoTtlStore(), Limit("x", 1, 42))
    limiter.hit("k")
    with pytest.raises(RateLimited) as info:
        limiter.hit("k")
    assert info.value.retry_after == 42


@pytest.mark.parametrize(
    "args",
    [("", 1, 1), ("x", 0, 1), ("x", 1, 0), ("x", -1, 60), ("x", 1.5, 60), ("x", True, 60)],
)
def test_limit_validation(args: tuple[object, object, object]) -> None:
    with pytest.raises(ValueError):
        Limit(*args)  # type: ignore[arg-type]


def test_store_down_propagates_store_unavailable() -> None:
    limiter = RateLimiter(RedisStore(DEAD_REDIS_URL, prefix="idp:"), LOGIN_IP)
    for call in (limiter.hit, limiter.check, limiter.clear):
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            call("198.51.100.7")
        assert time.monotonic() - started < 1.0


class _FailingStore(MemoryStore):
    """Reachable for writes, down for reads: check must not treat "unknown" as "zero"."""

    def get(self, key: str) -> bytes | None:
        raise StoreUnavailable("down")

    def ttl(self, key: str) -> int | None:
        raise StoreUnavailable("down")


def test_store_failure_mid_check_is_not_swallowed() -> None:
    limiter = RateLimiter(_FailingStore(), Limit("x", 1, 60))
    with pytest.raises(StoreUnavailable):
        limiter.check("k")
    limiter.hit("k")
    with pytest.raises(StoreUnavailable):
        limiter.hit("k")  # over the limit, then the TTL read fails: still not allowed


# -- against a real Redis -------------------------------------------------------------


@pytest.fixture
def redis_store() -> Iterator[tuple[RedisStore, redis_py.Redis, str]]:
    admin = redis_py.Redis.from_url(
        REDIS_URL, socket_connect_timeout=1, socket_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    try:
        admin.ping()
    except redis_py.RedisError as exc:
        admin.close()
        wanted = {p.strip().lower() for p in os.environ.get("IDP_TEST_REQUIRE", "").split(",")}
        message = f"Redis not reachable at {REDIS_URL}: {exc}"
        if "redis" in wanted:
            pytest.fail(f"{message} (required by IDP_TEST_REQUIRE)")
        pytest.skip(message)
    prefix = f"test:{uuid.uuid4().hex}:"
    store = RedisStore(REDIS_URL, prefix=prefix)
    try:
        yield store, admin, prefix
    finally:
        keys = list(admin.scan_iter(match=prefix + "*"))
        if keys:
            admin.delete(*keys)
        store.close()
        admin.close()


@pytest.mark.redis
def test_redis_limit(redis_store: tuple[RedisStore, redis_py.Redis, str]) -> None:
    store, admin, prefix = redis_store
    limiter = RateLimiter(store, Limit("login.account_ip", 2, 60))
    assert limiter.hit("bob@example.com|192.0.2.1") == 1
    assert limiter.hit("bob@example.com|192.0.2.1") == 2
    with pytest.raises(RateLimited) as info:
        limiter.hit("bob@example.com|192.0.2.1")
    assert 58 <= info.value.retry_after <= 60
    keys = {k.decode() for k in admin.scan_iter(match=prefix + "*")}
    assert keys == {prefix + _expected_key("login.account_ip", "bob@example.com|192.0.2.1")}
    limiter.clear("bob@example.com|192.0.2.1")
    assert limiter.hit("bob@example.com|192.0.2.1") == 1
