"""Browser sessions with a fake clock: idle and absolute timeouts (NIST SP 800-63B 7.1),
id rotation and ending every session of a user."""

from __future__ import annotations

import pytest

from idp.auth.session import SessionManager
from idp.security.crypto import hash_token
from idp.store import MemoryStore

IDLE = 900
ABSOLUTE = 43200
T0 = 1_700_000_000


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["shared clock", "store on real time"])
def store(request, clock) -> MemoryStore:
    """The store either expires keys on the same fake clock, or never (real time barely
    moves): then only the manager's own checks can end a session."""
    if request.param == "shared clock":
        return MemoryStore(clock=clock)
    return MemoryStore()


@pytest.fixture
def mgr(store, clock) -> SessionManager:
    return SessionManager(store, idle_timeout=IDLE, absolute_timeout=ABSOLUTE, clock=clock)


def test_establish_and_load(mgr, store):
    cookie, s = mgr.establish(7, "pwd")
    assert len(cookie) >= 43  # 256 bits, url-safe
    loaded = mgr.load(cookie)
    assert loaded is not None
    assert (loaded.user_id, loaded.sid, loaded.auth_time) == (7, s.sid, T0)
    assert loaded.methods == {"pwd": T0} and loaded.amr == ["pwd"]
    # Only the hash of the cookie is a key; the cookie itself is stored nowhere.
    assert store.get(f"session:{hash_token(cookie)}") is not None
    assert store.get(f"session:{cookie}") is None


@pytest.mark.parametrize("cookie", [None, "", "unknown", "x" * 129])
def test_unknown_cookies(mgr, cookie):
    mgr.establish(7, "pwd")
    assert mgr.load(cookie) is None


def test_idle_timeout(mgr, clock):
    cookie, _ = mgr.establish(7, "pwd")
    clock.advance(IDLE - 1)
    assert mgr.load(cookie) is not None  # and this use touches it
    clock.advance(IDLE + 1)
    assert mgr.load(cookie) is None
    clock.advance(-IDLE)
    assert mgr.load(cookie) is None  # deleted, not just hidden


def test_activity_keeps_the_session(mgr, clock):
    cookie, _ = mgr.establish(7, "pwd")
    for _ in range(5):
        clock.advance(IDLE - 100)
        assert mgr.load(cookie) is not None
    clock.advance(IDLE + 1)
    assert mgr.load(cookie) is None


def test_touch_is_throttled(mgr, clock):
    """Loads within 30 s of the last touch do not move last_seen."""
    cookie, _ = mgr.establish(7, "pwd")
    clock.advance(10)
    assert mgr.load(cookie).last_seen == T0
    clock.advance(IDLE - 9)  # IDLE + 1 after the last real touch
    assert mgr.load(cookie) is None


def test_absolute_timeout(mgr, clock):
    cookie, _ = mgr.establish(7, "pwd")
    while clock.t - T0 < ABSOLUTE - 600:
        clock.advance(600)
        assert mgr.load(cookie) is not None
    clock.advance(T0 + ABSOLUTE - 1 - clock.t)
    assert mgr.load(cookie) is not None  # a second before the limit
    clock.advance(2)
    assert mgr.load(cookie) is None


def test_reauthentication_does_not_extend_the_absolute_timeout(mgr, clock):
    cookie, s = mgr.establish(7, "pwd")
    while clock.t < T0 + ABSOLUTE - 100:
        clock.advance(min(600, T0 + ABSOLUTE - 100 - clock.t))
        assert mgr.load(cookie) is not None
    cookie, s2 = mgr.establish(7, "pwd", previous=mgr.load(cookie))
    assert s2.created_at == T0 and s2.auth_time == clock.t
    clock.advance(101)
    assert mgr.load(cookie) is None


def test_rotation_keeps_the_sid_for_the_same_user(mgr, clock):
    old_cookie, first = mgr.establish(7, "pwd")
    clock.advance(60)
    new_cookie, second = mgr.establish(7, "totp", previous=mgr.load(old_cookie), amr=("otp",))
    assert new_cookie != old_cookie
    assert mgr.load(old_cookie) is None
    loaded = mgr.load(new_cookie)
    assert loaded.sid == first.sid
    assert loaded.created_at == T0 and loaded.auth_time == T0 + 60
    assert loaded.methods == {"pwd": T0, "totp": T0 + 60}
    # RFC 8176: the factor's own value, the password's, and "mfa" for the combination.
    assert loaded.amr == ["mfa", "otp", "pwd"]
    assert mgr.count_for(7) == 1


def test_other_user_gets_a_new_sid(mgr, clock):
    old_cookie, first = mgr.establish(7, "pwd")
    clock.advance(60)
    new_cookie, second = mgr.establish(8, "pwd", previous=mgr.load(old_cookie))
    assert second.sid != first.sid
    assert mgr.load(old_cookie) is None
    loaded = mgr.load(new_cookie)
    assert loaded.user_id == 8 and loaded.methods == {"pwd": T0 + 60}
    assert loaded.created_at == T0 + 60
    assert mgr.count_for(7) == 0 and mgr.count_for(8) == 1


def test_destroy(mgr):
    cookie, s = mgr.establish(7, "pwd")
    other, _ = mgr.establish(7, "pwd")
    mgr.destroy(mgr.load(cookie))
    assert mgr.load(cookie) is None
    assert mgr.load(other) is not None
    assert mgr.count_for(7) == 1


def test_destroy_all(mgr):
    a, _ = mgr.establish(7, "pwd")
    b, _ = mgr.establish(7, "pwd")  # another browser
    c, _ = mgr.establish(8, "pwd")
    assert mgr.count_for(7) == 2
    assert mgr.destroy_all(7) == 2
    assert mgr.load(a) is None and mgr.load(b) is None
    assert mgr.load(c) is not None
    assert mgr.count_for(7) == 0 and mgr.count_for(8) == 1
    assert mgr.destroy_all(7) == 0


def test_noting_the_client_rewrites_the_record_only_and_never_outlives_the_sid(clock):
    """The application signed in to is noted with one write, which keeps the expiry of
    the last full save: the record and its sid entry end at the same moment, so a
    session is never alive while ``is_alive(sid)`` says it ended."""
    store = MemoryStore(clock=clock)
    mgr = SessionManager(store, idle_timeout=IDLE, absolute_timeout=ABSOLUTE, clock=clock)
    cookie, s = mgr.establish(7, "pwd")
    clock.advance(20)  # within the touch interval: loading writes nothing
    loaded = mgr.load(cookie)
    writes = []
    original = store.set
    store.set = lambda key, value, ttl: (writes.append((key, ttl)), original(key, value, ttl))
    mgr.note_client(loaded, "portal")
    assert writes == [(f"session:{s.key}", IDLE - 20)]  # one write, the same end
    mgr.note_client(loaded, "portal")
    assert len(writes) == 1  # unchanged: no write
    store.set = original
    clock.advance(IDLE - 20 - 1)
    assert mgr.is_alive(s.sid) and mgr.load(cookie) is not None
    assert mgr.load(cookie).last_client == "portal"


def test_record_and_sid_entry_expire_together_after_noting_a_client(clock):
    store = MemoryStore(clock=clock)
    mgr = SessionManager(store, idle_timeout=IDLE, absolute_timeout=ABSOLUTE, clock=clock)
    cookie, s = mgr.establish(7, "pwd")
    clock.advance(20)  # within the touch interval: the last full save stays at T0
    mgr.note_client(mgr.load(cookie), "portal")
    clock.advance(IDLE - 20)  # the idle limit of the last full save
    assert store.get(f"session:{s.key}") is None
    assert store.get(f"session_sid:{s.sid}") is None and not mgr.is_alive(s.sid)
