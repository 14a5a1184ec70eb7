"""One-time codes: random, hashed, bound to user+factor+purpose, single use, limited."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from idp.config import OTPSettings
from idp.mfa.codes.otp import OTPCodes, ResendTooSoon, WrongCode, new_code, normalize
from idp.security.ratelimit import RateLimited
from idp.store import MemoryStore


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(clock):
    return MemoryStore(clock=clock)


def codes(store, **kw) -> OTPCodes:
    return OTPCodes(store, "test-secret", replace(OTPSettings(), **kw))


def issue(otp: OTPCodes, factor="1", purpose="mfa", dest="+12025550143", ip="10.0.0.1", user=7):
    return otp.issue(user_id=user, factor_ref=factor, purpose=purpose, destination=dest, ip=ip)


def check(otp: OTPCodes, code: str, factor="1", purpose="mfa", user=7):
    otp.check(user_id=user, factor_ref=factor, purpose=purpose, code=code)


def test_codes_are_six_random_digits():
    seen = {new_code() for _ in range(300)}
    assert all(len(c) == 6 and c.isdigit() for c in seen)
    assert len(seen) > 280


def test_normalize_accepts_spaces_and_dashes_only():
    assert normalize(" 123 456 ") == "123456"
    assert normalize("123-456") == "123456"
    assert normalize("12345") is None
    assert normalize("12345a") is None
    assert normalize("１２３４５６") is None  # fullwidth digits are not ASCII


def test_the_store_holds_only_a_keyed_hash(store):
    otp = codes(store)
    sent = issue(otp)
    dump = json.dumps({k: v.decode() for k, v in ((k, store.get(k)) for k in store._data)
                       if v is not None})  # fmt: skip
    assert sent.code not in dump
    assert sent.ttl == 600


def test_right_code_works_once(store):
    otp = codes(store)
    sent = issue(otp)
    check(otp, sent.code)
    with pytest.raises(WrongCode, match="expired or was already used"):
        check(otp, sent.code)


def test_code_expires(store, clock):
    otp = codes(store, code_ttl=60)
    sent = issue(otp)
    clock.now += 61
    with pytest.raises(WrongCode, match="expired"):
        check(otp, sent.code)


@pytest.mark.parametrize(("factor", "purpose", "user"),
                         [("2", "mfa", 7), ("1", "enroll", 7), ("1", "mfa", 8)])  # fmt: skip
def test_a_code_is_bound_to_user_factor_and_purpose(store, factor, purpose, user):
    otp = codes(store)
    sent = issue(otp)
    issue(otp, factor=factor, purpose=purpose, user=user, dest="+12025550199")
    with pytest.raises(WrongCode):
        check(otp, sent.code, factor=factor, purpose=purpose, user=user)
    check(otp, sent.code)  # still good where it was sent


def test_a_code_dies_after_the_allowed_wrong_entries(store):
    otp = codes(store, max_attempts_per_code=3)
    sent = issue(otp)
    wrong = "000000" if sent.code != "000000" else "111111"
    with pytest.raises(WrongCode, match="not right"):
        check(otp, wrong)
    with pytest.raises(WrongCode, match="not right"):
        check(otp, wrong)
    with pytest.raises(WrongCode, match="no longer works"):
        check(otp, wrong)
    with pytest.raises(WrongCode):
        check(otp, sent.code)


def test_resend_cooldown(store, clock):
    otp = codes(store, resend_cooldown=30)
    issue(otp)
    with pytest.raises(ResendTooSoon) as err:
        issue(otp)
    assert 1 <= err.value.retry_after <= 30
    clock.now += 31
    issue(otp)


def test_a_new_code_replaces_the_old_one(store, clock):
    otp = codes(store, resend_cooldown=1)
    first = issue(otp)
    clock.now += 2
    second = issue(otp)
    if first.code != second.code:
        with pytest.raises(WrongCode):
            check(otp, first.code)
    check(otp, second.code)


def test_send_limit_per_destination_counts_every_user(store, clock):
    otp = codes(store, sends_per_destination=3, resend_cooldown=0)
    for user in (1, 2, 3):
        issue(otp, user=user)
    with pytest.raises(RateLimited) as err:
        issue(otp, user=4)
    assert err.value.name == "otp.send.dest"


def test_send_limit_per_user_burst_and_hour(store, clock):
    otp = codes(store, resend_cooldown=0, sends_per_user_per_hour=3)
    issue(otp, factor="a")
    issue(otp, factor="b")
    with pytest.raises(RateLimited) as err:
        issue(otp, factor="c")
    assert err.value.name == "otp.send.user_burst"
    clock.now += 11
    issue(otp, factor="c")
    clock.now += 11
    with pytest.raises(RateLimited) as err:
        issue(otp, factor="d")
    assert err.value.name == "otp.send.user"


def test_send_limit_per_ip(store):
    otp = codes(store, resend_cooldown=0, sends_per_ip_per_hour=1)
    issue(otp, user=1)
    with pytest.raises(RateLimited) as err:
        issue(otp, user=2, dest="+12025550199")
    assert err.value.name == "otp.send.ip"


def test_a_refused_send_does_not_start_the_cooldown(store):
    otp = codes(store, resend_cooldown=30, sends_per_ip_per_hour=1)
    issue(otp, user=1)
    with pytest.raises(RateLimited):
        issue(otp, user=2, dest="+12025550199")
    with pytest.raises(RateLimited):  # still the limit, not the cooldown
        issue(otp, user=2, dest="+12025550199")


def test_limits_fail_closed_when_the_store_is_down(store):
    from idp.store import StoreUnavailable

    class Down(MemoryStore):
        def incr(self, key, ttl):
            raise StoreUnavailable("down")

    otp = codes(Down())
    with pytest.raises(StoreUnavailable):
        issue(otp)
