"""The back-channel logout worker (idp.oidc.backchannel.Dispatcher): a bounded queue that
never blocks the caller, retries with exponential backoff, one outcome per delivery, and
a logout token with exactly the claims of section 2.4."""

from __future__ import annotations

import threading
import time

import pytest

from idp.oidc.backchannel import BACKCHANNEL_EVENT, Delivery, Dispatcher, logout_token


def item(n: int = 0) -> Delivery:
    return Delivery(f"client-{n}", f"https://rp{n}.example.gov/bcl", f"sid{n}", "sub", 1, "ended")


class Recorder:
    def __init__(self, fail_first: int = 0, block: threading.Event | None = None):
        self.fail_first, self.block = fail_first, block
        self.attempts: list[tuple[str, int, float]] = []
        self.outcomes: list[tuple[str, bool, str, int]] = []

    def send(self, d: Delivery) -> None:
        self.attempts.append((d.client_id, d.attempt, time.monotonic()))
        if self.block is not None:
            self.block.wait(10)
        if len([a for a in self.attempts if a[0] == d.client_id]) <= self.fail_first:
            raise RuntimeError("answered HTTP 503")

    def report(self, d: Delivery, ok: bool, detail: str) -> None:
        self.outcomes.append((d.client_id, ok, detail, d.attempt))


@pytest.fixture
def stop():
    started: list[Dispatcher] = []
    yield started.append
    for d in started:
        d.stop()


def test_a_delivery_is_sent_and_reported_once(stop):
    rec = Recorder()
    d = Dispatcher(rec.send, rec.report, capacity=10, retries=3, backoff=0.01)
    stop(d)
    assert d.submit(item())
    assert d.drain(5)
    assert rec.outcomes == [("client-0", True, "", 1)]
    assert d.pending == 0


def test_failures_are_retried_with_doubling_delays(stop):
    rec = Recorder(fail_first=3)
    d = Dispatcher(rec.send, rec.report, capacity=10, retries=3, backoff=0.1)
    stop(d)
    d.submit(item())
    assert d.drain(5)
    times = [t for _, _, t in rec.attempts]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert [a for _, a, _ in rec.attempts] == [1, 2, 3, 4]
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19 and gaps[2] >= 0.39
    assert rec.outcomes == [("client-0", True, "", 4)]


def test_giving_up_is_reported_with_the_last_error(stop):
    rec = Recorder(fail_first=99)
    d = Dispatcher(rec.send, rec.report, capacity=10, retries=2, backoff=0.01)
    stop(d)
    d.submit(item())
    assert d.drain(5)
    assert rec.outcomes == [("client-0", False, "answered HTTP 503", 3)]


def test_a_full_queue_refuses_at_once_and_never_blocks(stop):
    gate = threading.Event()
    rec = Recorder(block=gate)
    d = Dispatcher(rec.send, rec.report, capacity=2, retries=0, backoff=0.01)
    stop(d)
    started = time.monotonic()
    assert d.submit(item(1)) and d.submit(item(2))
    assert not d.submit(item(3))  # in flight and queued count: no room
    assert time.monotonic() - started < 0.5
    gate.set()
    assert d.drain(5)
    assert sorted(c for c, *_ in rec.outcomes) == ["client-1", "client-2"]
    assert d.submit(item(4)) and d.drain(5)


def test_an_idle_worker_ends_and_comes_back(stop, monkeypatch):
    monkeypatch.setattr(Dispatcher, "IDLE_EXIT", 0.2)
    rec = Recorder()
    d = Dispatcher(rec.send, rec.report, capacity=10, retries=0, backoff=0.01)
    stop(d)
    d.submit(item(1))
    assert d.drain(5)
    time.sleep(0.5)
    assert d._thread is None  # no thread left behind by a command or a test
    d.submit(item(2))
    assert d.drain(5) and len(rec.outcomes) == 2


def test_a_serving_worker_ticks(stop):
    ticks = []
    rec = Recorder()
    d = Dispatcher(rec.send, rec.report, capacity=10, retries=0, backoff=0.01,
                   tick=lambda: ticks.append(time.monotonic()), tick_interval=0.1)  # fmt: skip
    stop(d)
    d.start()
    time.sleep(0.55)
    assert 3 <= len(ticks) <= 6


def test_a_failing_tick_does_not_stop_the_worker(stop):
    calls = []

    def tick():
        calls.append(1)
        raise RuntimeError("store down")

    rec = Recorder()
    d = Dispatcher(rec.send, rec.report, capacity=10, retries=0, backoff=0.01, tick=tick,
                   tick_interval=0.05)  # fmt: skip
    stop(d)
    d.start()
    time.sleep(0.3)
    assert len(calls) >= 2
    d.submit(item())
    assert d.drain(5)


def test_the_logout_token(keys_dir):
    from idp.keys import KeyRing

    ring = KeyRing.load(str(keys_dir), retire_for=600)
    token = logout_token(ring, issuer="https://id.example.gov", client_id="rp", sub="u-1",
                         sid="s-1", ttl=120, now=1_800_000_000)  # fmt: skip
    header, claims = ring.verify_jwt(token, typ="logout+jwt")
    assert header["typ"] == "logout+jwt" and header["kid"]
    assert claims == {
        "iss": "https://id.example.gov", "aud": "rp", "iat": 1_800_000_000,
        "exp": 1_800_000_120, "jti": claims["jti"], "events": {BACKCHANNEL_EVENT: {}},
        "sub": "u-1", "sid": "s-1",
    }  # fmt: skip
    assert len(claims["jti"]) == 32
    with pytest.raises(ValueError):
        logout_token(ring, issuer="i", client_id="rp", sub=None, sid=None, ttl=120)
