"""One behavioural suite for every Store backend (MemoryStore and RedisStore).

Redis cases need a server at IDP_TEST_REDIS_URL (default redis://127.0.0.1:6379/0).
They are skipped when it is unreachable, unless IDP_TEST_REQUIRE (a comma list)
contains "redis", in which case they fail.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import redis as redis_py
from redis.backoff import NoBackoff
from redis.retry import Retry

from idp.store import MemoryStore, RedisStore, Store, StoreUnavailable, create_store

REDIS_URL = os.environ.get("IDP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DEAD_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1


# -- helpers (kept in this file on purpose) --------------------------------------------


def _required(service: str) -> bool:
    wanted = os.environ.get("IDP_TEST_REQUIRE", "")
    return service in {part.strip().lower() for part in wanted.split(",")}


def _redis_admin_or_skip() -> redis_py.Redis:
    client = redis_py.Redis.from_url(
        REDIS_URL, socket_connect_timeout=1, socket_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    try:
        client.ping()
    except redis_py.RedisError as exc:
        client.close()
        message = f"Redis not reachable at {REDIS_URL}: {exc}"
        if _required("redis"):
            pytest.fail(f"{message} (required by IDP_TEST_REQUIRE)")
        pytest.skip(message)
    return client


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _memory_sibling(store: MemoryStore, prefix: str) -> MemoryStore:
    """A MemoryStore with another prefix over the same data (as two Redis clients would be)."""
    other = MemoryStore(prefix=prefix, clock=store._clock)
    other._lock = store._lock
    other._cond = store._cond
    other._data = store._data
    other._waiters = store._waiters
    return other


@dataclass
class Backend:
    kind: str
    prefix: str
    store: Store
    elapse: Callable[[float], None]  # let time pass: fake clock or real sleep
    raw_keys: Callable[[], set[str]]  # full key names as stored, prefix included
    sibling: Callable[[str], Store]  # same data, another prefix


@pytest.fixture(
    params=["memory", pytest.param("redis", marks=pytest.mark.redis)],
)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    prefix = f"test:{uuid.uuid4().hex}:"
    if request.param == "memory":
        clock = FakeClock()
        store = MemoryStore(prefix=prefix, clock=clock)
        yield Backend(
            kind="memory",
            prefix=prefix,
            store=store,
            elapse=clock.advance,
            raw_keys=lambda: {k for k in store._data if k.startswith(prefix)},
            sibling=lambda p: _memory_sibling(store, p),
        )
        return

    admin = _redis_admin_or_skip()
    stores: list[RedisStore] = []

    def make(p: str) -> RedisStore:
        s = RedisStore(REDIS_URL, prefix=p)
        stores.append(s)
        return s

    def raw_keys() -> set[str]:
        return {k.decode() for k in admin.scan_iter(match=prefix + "*", count=1000)}

    try:
        yield Backend(
            kind="redis",
            prefix=prefix,
            store=make(prefix),
            elapse=time.sleep,
            raw_keys=raw_keys,
            sibling=make,
        )
    finally:
        for p in {s._prefix for s in stores}:
            keys = list(admin.scan_iter(match=p + "*", count=1000))
            if keys:
                admin.delete(*keys)
        for s in stores:
            s.close()
        admin.close()


def _run_threads(n: int, target: Callable[[int], object]) -> list[object]:
    """Run target(i) in n threads released together; return results, re-raise errors."""
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = target(i)
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "worker thread hung"
    if errors:
        raise errors[0]
    return results


def _wait_while_publishing(
    store: Store, channel: str, timeout: float, publish: Callable[[], None]
) -> tuple[bytes | None, float]:
    """Block in wait_for on another thread while `publish` is called repeatedly.

    Pub/sub drops messages sent before the waiter subscribed, so publishing repeatedly
    until the waiter returns avoids a race without sleeping a guessed amount.
    """
    box: dict[str, object] = {}

    def wait() -> None:
        started = time.monotonic()
        try:
            box["result"] = store.wait_for(channel, timeout)
        except BaseException as exc:  # re-raised below
            box["error"] = exc
        box["elapsed"] = time.monotonic() - started

    waiter = threading.Thread(target=wait)
    waiter.start()
    give_up = time.monotonic() + timeout + 5
    while waiter.is_alive() and time.monotonic() < give_up:
        publish()
        waiter.join(0.02)
    waiter.join(1)
    assert not waiter.is_alive(), "wait_for did not return"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"], box["elapsed"]  # type: ignore[return-value]


# -- the shared suite -----------------------------------------------------------------


def test_backends_satisfy_the_protocol(backend: Backend) -> None:
    assert isinstance(backend.store, Store)


def test_set_get_ttl(backend: Backend) -> None:
    s = backend.store
    assert s.get("k") is None
    assert s.ttl("k") is None
    s.set("k", b"v\x00\xff", 100)
    assert s.get("k") == b"v\x00\xff"
    assert s.ttl("k") == 100
    s.set("k", b"w", 30)  # replaces value and TTL
    assert s.get("k") == b"w"
    assert s.ttl("k") == 30


def test_values_expire(backend: Backend) -> None:
    s = backend.store
    s.set("short", b"1", 1)
    s.set("long", b"2", 60)
    assert s.set_if_absent("nx", b"first", 1) is True
    backend.elapse(1.2)
    assert s.get("short") is None
    assert s.ttl("short") is None
    assert s.get("long") == b"2"
    assert s.set_if_absent("nx", b"second", 60) is True  # the old one expired
    assert s.get("nx") == b"second"


def test_set_if_absent(backend: Backend) -> None:
    s = backend.store
    assert s.set_if_absent("lock", b"a", 50) is True
    assert s.set_if_absent("lock", b"b", 500) is False
    assert s.get("lock") == b"a"
    assert s.ttl("lock") == 50
    s.delete("lock")
    assert s.set_if_absent("lock", b"c", 50) is True
    assert s.get("lock") == b"c"


def test_delete_counts_existing_keys(backend: Backend) -> None:
    s = backend.store
    s.set("a", b"1", 60)
    s.set("b", b"2", 60)
    assert s.delete() == 0
    assert s.delete("a", "b", "missing") == 2
    assert s.get("a") is None and s.get("b") is None
    assert s.delete("a") == 0


def test_take_returns_the_value_once(backend: Backend) -> None:
    s = backend.store
    assert s.take("code") is None
    s.set("code", b"xyz", 60)
    assert s.take("code") == b"xyz"
    assert s.take("code") is None
    assert s.get("code") is None


def test_take_is_atomic_under_20_threads(backend: Backend) -> None:
    s = backend.store
    for round_ in range(5):
        key = f"otp:{round_}"
        s.set(key, b"secret", 60)
        results = _run_threads(20, lambda _i, key=key: s.take(key))
        winners = [r for r in results if r is not None]
        assert winners == [b"secret"], f"round {round_}: {len(winners)} winners"


def test_incr_counts_and_sets_the_window_once(backend: Backend) -> None:
    s = backend.store
    assert s.incr("n", 100) == 1
    assert s.ttl("n") == 100
    assert s.incr("n", 1000) == 2  # a later, longer ttl must not extend the window
    assert s.incr("n", 5000) == 3
    assert s.ttl("n") == 100
    assert s.get("n") == b"3"


def test_incr_window_resets_after_expiry(backend: Backend) -> None:
    s = backend.store
    assert s.incr("w", 1) == 1
    assert s.incr("w", 1) == 2
    backend.elapse(1.2)
    assert s.incr("w", 60) == 1
    assert s.ttl("w") == 60


def test_incr_keeps_ttl_of_an_existing_integer_value(backend: Backend) -> None:
    s = backend.store
    s.set("n", b"41", 30)
    assert s.incr("n", 999) == 42
    assert s.ttl("n") == 30


def test_incr_is_atomic_under_threads(backend: Backend) -> None:
    s = backend.store
    _run_threads(20, lambda _i: [s.incr("hits", 60) for _ in range(25)])
    assert s.get("hits") == b"500"
    assert s.ttl("hits") == 60


def test_incr_rejects_a_non_integer_value(backend: Backend) -> None:
    s = backend.store
    s.set("n", b"abc", 60)
    with pytest.raises(ValueError):
        s.incr("n", 60)
    assert s.get("n") == b"abc"


def test_expire(backend: Backend) -> None:
    s = backend.store
    assert s.expire("missing", 10) is False
    assert s.get("missing") is None
    s.set("k", b"v", 10)
    assert s.expire("k", 500) is True
    assert s.ttl("k") == 500
    assert s.expire("k", 5) is True
    assert s.ttl("k") == 5


def test_sets(backend: Backend) -> None:
    s = backend.store
    assert s.members("sessions:u1") == set()
    s.add_to_set("sessions:u1", "s-1", 100)
    s.add_to_set("sessions:u1", "s-2", 100)
    s.add_to_set("sessions:u1", "s-2", 100)
    s.add_to_set("sessions:u1", "sé-3", 300)  # each add (re)sets the TTL
    assert s.members("sessions:u1") == {"s-1", "s-2", "sé-3"}
    assert s.ttl("sessions:u1") == 300
    s.remove_from_set("sessions:u1", "s-1")
    s.remove_from_set("sessions:u1", "not-there")
    s.remove_from_set("missing", "x")
    assert s.members("sessions:u1") == {"s-2", "sé-3"}
    s.remove_from_set("sessions:u1", "s-2")
    s.remove_from_set("sessions:u1", "sé-3")
    assert s.members("sessions:u1") == set()
    assert s.ttl("sessions:u1") is None  # an emptied set is gone
    assert backend.raw_keys() == set()


def test_sets_expire(backend: Backend) -> None:
    s = backend.store
    s.add_to_set("idx", "a", 1)
    backend.elapse(1.2)
    assert s.members("idx") == set()
    s.add_to_set("idx", "b", 60)
    assert s.members("idx") == {"b"}


def test_wrong_type_raises_type_error(backend: Backend) -> None:
    s = backend.store
    s.add_to_set("set", "m", 60)
    s.set("str", b"v", 60)
    for call in (
        lambda: s.get("set"),
        lambda: s.take("set"),
        lambda: s.incr("set", 60),
        lambda: s.add_to_set("str", "m", 60),
        lambda: s.members("str"),
        lambda: s.remove_from_set("str", "m"),
    ):
        with pytest.raises(TypeError):
            call()
    assert s.members("set") == {"m"}
    assert s.get("str") == b"v"
    s.set("set", b"overwritten", 60)  # SET replaces any type, like Redis
    assert s.get("set") == b"overwritten"


def test_values_must_be_bytes(backend: Backend) -> None:
    s = backend.store
    with pytest.raises(TypeError):
        s.set("k", "text", 60)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        s.set_if_absent("k", 1, 60)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        s.publish("ch", "text")  # type: ignore[arg-type]
    assert s.get("k") is None


@pytest.mark.parametrize("bad_ttl", [0, -1, 1.5, None, True])
def test_ttl_must_be_a_positive_int(backend: Backend, bad_ttl: object) -> None:
    s = backend.store
    s.set("existing", b"v", 60)
    calls = {
        "set": lambda: s.set("k", b"v", bad_ttl),  # type: ignore[arg-type]
        "set_if_absent": lambda: s.set_if_absent("k", b"v", bad_ttl),  # type: ignore[arg-type]
        "incr": lambda: s.incr("k", bad_ttl),  # type: ignore[arg-type]
        "expire": lambda: s.expire("existing", bad_ttl),  # type: ignore[arg-type]
        "add_to_set": lambda: s.add_to_set("k", "m", bad_ttl),  # type: ignore[arg-type]
    }
    for name, call in calls.items():
        with pytest.raises(ValueError):
            call()
            pytest.fail(f"{name} accepted ttl={bad_ttl!r}")
    assert backend.raw_keys() == {backend.prefix + "existing"}
    assert s.ttl("existing") == 60


def test_publish_reaches_a_waiter_on_another_thread(backend: Backend) -> None:
    s = backend.store
    wrong_until = time.monotonic() + 0.3

    def publish() -> None:
        if time.monotonic() < wrong_until:
            s.publish("push:other", b"not for you")  # another channel: must be ignored
        else:
            s.publish("push:abc", b"approved")

    result, elapsed = _wait_while_publishing(s, "push:abc", 10, publish)
    assert result == b"approved"
    assert 0.25 < elapsed < 9


def test_publish_without_waiters_is_harmless(backend: Backend) -> None:
    backend.store.publish("nobody", b"x")
    assert backend.store.wait_for("nobody", 0.1) is None


def test_wait_for_times_out_with_none(backend: Backend) -> None:
    started = time.monotonic()
    assert backend.store.wait_for("quiet", 0.3) is None
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 2


@pytest.mark.parametrize("bad_timeout", [0, -1, float("nan"), float("inf")])
def test_wait_for_rejects_bad_timeouts(backend: Backend, bad_timeout: float) -> None:
    with pytest.raises(ValueError):
        backend.store.wait_for("ch", bad_timeout)


def test_prefix_is_applied_and_isolates(backend: Backend) -> None:
    s = backend.store
    other = backend.sibling(backend.prefix + "other:")
    s.set("session:abc", b"mine", 60)
    s.incr("count", 60)
    s.add_to_set("idx", "m", 60)
    assert backend.raw_keys() == {
        backend.prefix + "session:abc",
        backend.prefix + "count",
        backend.prefix + "idx",
    }
    assert other.get("session:abc") is None
    assert other.take("session:abc") is None
    assert other.members("idx") == set()
    assert other.delete("session:abc", "count", "idx") == 0
    assert other.set_if_absent("session:abc", b"theirs", 60) is True
    assert s.get("session:abc") == b"mine"
    assert other.get("session:abc") == b"theirs"
    assert s.ttl("count") == 60 and other.ttl("count") is None


def test_prefix_isolates_channels(backend: Backend) -> None:
    s = backend.store
    other = backend.sibling(backend.prefix + "other:")
    switch_at = time.monotonic() + 0.3

    def publish() -> None:
        if time.monotonic() < switch_at:
            other.publish("ch", b"other")  # same channel name, other prefix: not ours
        else:
            s.publish("ch", b"mine")

    result, elapsed = _wait_while_publishing(s, "ch", 10, publish)
    assert result == b"mine"
    assert elapsed > 0.25


def test_ping(backend: Backend) -> None:
    backend.store.ping()


# -- MemoryStore specifics ----------------------------------------------------------


def test_memory_ttl_rounds_up_and_follows_the_clock() -> None:
    clock = FakeClock()
    s = MemoryStore(clock=clock)
    s.set("k", b"v", 10)
    clock.advance(9.5)
    assert s.ttl("k") == 1
    assert s.get("k") == b"v"
    clock.advance(0.5)
    assert s.get("k") is None
    assert s.ttl("k") is None


def test_memory_sweep_drops_expired_keys_nobody_touches() -> None:
    clock = FakeClock()
    s = MemoryStore(prefix="p:", clock=clock)
    for i in range(200):
        s.set(f"k{i}", b"v", 1)
    s.add_to_set("set", "m", 1)
    s.set("keep", b"v", 10_000)
    assert len(s._data) == 202
    clock.advance(MemoryStore.SWEEP_INTERVAL + 1)
    s.set("new", b"v", 10)  # any write may sweep
    assert set(s._data) == {"p:keep", "p:new"}


def test_memory_waiters_on_one_channel_all_get_the_message() -> None:
    s = MemoryStore()
    results: list[bytes | None] = []
    lock = threading.Lock()

    def wait() -> None:
        r = s.wait_for("ch", 5)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=wait) for _ in range(5)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while len(s._waiters.get("ch", ())) < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    s.publish("ch", b"go")
    for t in threads:
        t.join(5)
    assert results == [b"go"] * 5
    assert s._waiters == {}  # waiters unregister themselves


def test_create_store() -> None:
    assert isinstance(create_store("memory", redis_url="", prefix="x:"), MemoryStore)
    redis_store = create_store("redis", redis_url=DEAD_REDIS_URL, prefix="x:")
    assert isinstance(redis_store, RedisStore)
    with pytest.raises(ValueError):
        create_store("memcached", redis_url=REDIS_URL, prefix="x:")


# -- RedisStore: outages fail closed, fast, and recover ------------------------------

_EVERY_METHOD: dict[str, Callable[[Store], object]] = {
    "get": lambda s: s.get("k"),
    "set": lambda s: s.set("k", b"v", 60),
    "set_if_absent": lambda s: s.set_if_absent("k", b"v", 60),
    "delete": lambda s: s.delete("k"),
    "take": lambda s: s.take("k"),
    "incr": lambda s: s.incr("k", 60),
    "ttl": lambda s: s.ttl("k"),
    "expire": lambda s: s.expire("k", 60),
    "add_to_set": lambda s: s.add_to_set("k", "m", 60),
    "remove_from_set": lambda s: s.remove_from_set("k", "m"),
    "members": lambda s: s.members("k"),
    "publish": lambda s: s.publish("ch", b"m"),
    "wait_for": lambda s: s.wait_for("ch", 5),
    "ping": lambda s: s.ping(),
}


def test_every_protocol_method_is_covered_by_the_outage_test() -> None:
    protocol_methods = {
        name for name in vars(Store) if not name.startswith("_") and callable(vars(Store)[name])
    }
    assert protocol_methods == set(_EVERY_METHOD)


@pytest.mark.parametrize("method", sorted(_EVERY_METHOD))
def test_redis_down_raises_store_unavailable_quickly(method: str) -> None:
    store = RedisStore(DEAD_REDIS_URL, prefix="x:")
    for _attempt in range(2):  # and keeps raising, never a cached default
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            _EVERY_METHOD[method](store)
        assert time.monotonic() - started < 1.0


def test_redis_unresponsive_server_times_out_as_store_unavailable() -> None:
    # A socket that accepts connections (kernel backlog) but never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        store = RedisStore(f"redis://127.0.0.1:{port}/0", socket_timeout=0.2)
        for method in ("get", "incr", "take"):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                _EVERY_METHOD[method](store)
            assert time.monotonic() - started < 1.5, method


class _TcpProxy:
    """Forwards 127.0.0.1:<port> to Redis; stop() simulates an outage, start() recovery."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._stop.clear()
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()

    def _accept(self, listener: socket.socket) -> None:
        with listener:
            while not self._stop.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                client.settimeout(None)
                upstream = socket.create_connection(self.upstream)
                with self._lock:
                    self._conns += [client, upstream]
                for src, dst in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


@pytest.mark.redis
def test_redis_store_recovers_by_itself_after_an_outage() -> None:
    admin = _redis_admin_or_skip()
    kwargs = admin.connection_pool.connection_kwargs
    proxy = _TcpProxy((kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379)))
    proxy.start()
    prefix = f"test:{uuid.uuid4().hex}:"
    store = RedisStore(f"redis://127.0.0.1:{proxy.port}/{kwargs.get('db', 0)}", prefix=prefix)
    try:
        store.set("k", b"before", 60)
        assert store.get("k") == b"before"

        proxy.stop()  # Redis "goes away": pooled connections die, new ones are refused
        for method in ("get", "incr", "take", "ping"):
            with pytest.raises(StoreUnavailable):
                _EVERY_METHOD[method](store)

        proxy.start()  # Redis is back on the same address
        assert store.get("k") == b"before"  # first call after recovery already works
        assert store.incr("n", 60) == 1
        result, _ = _wait_while_publishing(store, "ch", 5, lambda: store.publish("ch", b"up"))
        assert result == b"up"
    finally:
        proxy.stop()
        store.close()
        keys = list(admin.scan_iter(match=prefix + "*"))
        if keys:
            admin.delete(*keys)
        admin.close()
