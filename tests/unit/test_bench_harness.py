"""The benchmark's own helpers (bench/harness.py, bench/run.py): codes, statistics,
cookies, CPU accounting and the user pool that keeps TOTP codes single use."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pyotp
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import harness  # noqa: E402
import run  # noqa: E402


def test_totp_matches_pyotp_and_rfc6238_vector():
    secret = pyotp.random_base32()
    step = int(time.time() // 30)
    assert harness.totp(secret, step) == pyotp.TOTP(secret).at(step * 30)
    # RFC 6238 Appendix B, SHA-1, T = 59 s, last 6 digits of 94287082.
    rfc_secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # base32 of "12345678901234567890"
    assert harness.totp(rfc_secret, 59 // 30) == "287082"


def test_pkce_pair_is_s256():
    import base64
    import hashlib

    verifier, challenge = harness.pkce_pair()
    digest = hashlib.sha256(verifier.encode()).digest()
    assert challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert 43 <= len(verifier) <= 128


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert harness.percentile(values, 50) == 50
    assert harness.percentile(values, 99) == 99
    assert harness.percentile([7.0], 99) == 7
    assert harness.percentile([], 50) != harness.percentile([], 50)  # NaN


def test_spread_reports_median_range_and_runs():
    assert str(harness.Spread([10.0, 30.0, 20.0])) == "20.0 (10.0-30.0, n=3)"
    assert str(harness.Spread([1234.0])) == "1,234"
    assert str(harness.Spread()) == "n/a"


def test_cookie_jar_keeps_and_forgets():
    b = harness.Browser("http://127.0.0.1:1")
    b._take_cookie("idp_session=abc; Path=/; HttpOnly; SameSite=Lax")
    b._take_cookie("_interaction=x; path=/interaction/1; expires=Fri, 01 Jan 2100 00:00:00 GMT")
    assert b.cookies == {"idp_session": "abc", "_interaction": "x"}
    b._take_cookie("idp_session=; Max-Age=0; Path=/")
    b._take_cookie("_interaction=x; expires=Thu, 01 Jan 1970 00:00:00 GMT")
    assert b.cookies == {}


def test_cpu_meter_counts_only_the_time_between_samples():
    meter = harness.CpuMeter(os.getpid())
    before = meter.sample()
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    used = harness.CpuMeter.used(before, meter.sample())
    assert 0.1 <= used["server"] <= 2.0


def test_user_pool_never_hands_out_a_user_twice_in_one_step(monkeypatch):
    now = [1_000_000 * 30 + 1.0]
    monkeypatch.setattr(run.time, "time", lambda: now[0])
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(run.time, "sleep", sleep)
    pool = run.UserPool(3)
    first = [pool.next() for _ in range(3)]
    assert sorted(u for u, _ in first) == [0, 1, 2]
    assert {s for _, s in first} == {1_000_000}
    user, step = pool.next()  # all used in this step: waits for the next one
    assert step == 1_000_001 and slept and user in (0, 1, 2)


@pytest.mark.parametrize("value, text", [(0.5, "0.50"), (12.34, "12.3"), (float("nan"), "n/a")])
def test_fmt(value, text):
    assert harness.fmt(value) == text


def test_the_in_process_benchmark_completes_every_journey(tmp_path):
    """bench/quick.py walks the real pages (sign-in, challenge, consent, token): a page
    added to the journey must be handled by the benchmark, not break it unnoticed."""
    import subprocess

    root = BENCH.parent
    env = {**os.environ, "PYTHONPATH": str(root), "TMPDIR": str(tmp_path)}
    env = {k: v for k, v in env.items() if not k.startswith("IDP_") or k.startswith("IDP_TEST")}
    done = subprocess.run(
        [sys.executable, str(BENCH / "quick.py"), "--seconds", "0.2", "--steps"],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for row in ("client_credentials grant", "full sign-in", "refresh_token grant",
                "POST /mfa/challenge", "POST /token"):  # fmt: skip
        assert row in done.stdout, done.stdout


def test_each_targeted_row_says_its_target_and_whether_it_is_met():
    assert run.verdict(("floor", "per_core"), 0.61) == ">= 0.6x: met"
    assert run.verdict(("floor", "per_core"), 0.24) == ">= 0.6x: NOT met"
    assert run.verdict(("signin", "beyond_hash_ms"), 1.4) == "<= 1.5x: met"
    assert run.verdict(("signin", "beyond_hash_ms"), 5.45) == "<= 1.5x: NOT met"
    assert run.verdict(("signin", "p99_ms"), None) == "<= 1.2x: not measured"
    assert run.verdict(("hash_ms",), 1.0) == ""  # no target for the hash

    def result(floor: float) -> dict:
        figures = dict.fromkeys(("per_core", "per_core_with_store", "wall_rate", "cpu_ms",
                                 "store_cpu_ms", "p50_ms", "p99_ms", "beyond_hash_ms"), [1.0])  # fmt: skip
        return {"floor": {"per_core": [floor]}, "cc": figures, "refresh": figures,
                "signin": figures, "hash_ms": 20.0, "redis_session_bytes": 800.0,
                "redis_signin_bytes": 1000.0}  # fmt: skip

    text = run.table(result(100.0), result(400.0), run.QUICK)
    floor = next(line for line in text.splitlines() if line.startswith("GET discovery"))
    assert "0.25" in floor and ">= 0.6x: NOT met" in floor
    assert text.splitlines()[0].rstrip().endswith("target")
