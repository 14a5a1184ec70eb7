"""Side-by-side benchmark: our provider and node-oidc-provider, on this machine, in one run.

    make bench                      # or: .venv/bin/python bench/run.py
    make bench BENCH_ARGS=--quick   # a smoke run, under ~2 minutes
    .venv/bin/python bench/run.py --skip-peer --runs 5 --json result.json

Our provider runs for real over HTTP under ``idp serve`` (granian, several workers; or
gunicorn with ``--server gunicorn``) on PostgreSQL and Redis, in a database
``idp_bench_<hex>`` and under a Redis key prefix of its own, both removed at the end.
The peer, node-oidc-provider, is installed from the npm registry into
``.cache/bench/oidc-provider`` on first use and configured equivalently (see
``bench/peer/server.mjs`` and docs/PERFORMANCE.md for what differs).

Throughput is reported per server CPU-second (= per core at full use), counted from the
server processes' own CPU time in /proc, so the load generator sharing the machine does
not distort it; PostgreSQL and Redis CPU are reported separately. Every throughput
figure is the median of ``--runs`` runs, with the spread.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from harness import Browser, CpuMeter, LoadResult, Spread, fmt, percentile, run_load  # noqa: E402
from targets import Ours, Peer, Target, redis_bytes  # noqa: E402


@dataclass
class Plan:
    seconds: float
    runs: int
    big_users: int
    sessions: int
    latency_samples: int


QUICK = Plan(seconds=4, runs=1, big_users=100_000, sessions=60, latency_samples=15)
FULL = Plan(seconds=15, runs=3, big_users=1_000_000, sessions=500, latency_samples=60)


# -- client states -------------------------------------------------------------------
class UserPool:
    """Hands out (user, TOTP step) pairs so that no user signs in twice within one step
    (codes are single use per step on both servers, and a rejected code counts as a
    failure). Shared by every client process (created before they fork) and every run."""

    def __init__(self, size: int):
        import multiprocessing as mp

        self.size = size
        self.lock = mp.Lock()
        self.cursor = mp.Value("q", 0, lock=False)
        self.last = mp.Array("q", [-1] * size, lock=False)

    def next(self) -> tuple[int, int]:
        while True:
            step = int(time.time() // 30)
            with self.lock:
                for _ in range(self.size):
                    user = self.cursor.value % self.size
                    self.cursor.value += 1
                    if self.last[user] < step:
                        self.last[user] = step
                        return user, step
            time.sleep(30 - time.time() % 30 + 0.05)  # every user used this step


class Client:
    def __init__(self, target: Target, users: UserPool | None = None):
        self.target = target
        self.browser = Browser(target.base)
        self.users = users
        self.refresh_token = ""

    def reset(self) -> None:
        self.browser.close()
        self.browser.cookies.clear()

    def close(self) -> None:
        self.browser.close()

    def sign_in(self) -> dict:
        assert self.users is not None
        user, step = self.users.next()
        self.browser.cookies.clear()  # a new browser for every sign-in
        return self.target.sign_in(self.browser, user, step)


class Phase:
    def __init__(
        self, target: Target, pool: UserPool, meter: CpuMeter, processes: int, threads: int
    ):
        self.target, self.pool, self.meter = target, pool, meter
        self.processes, self.threads = processes, threads

    @property
    def clients(self) -> int:
        return self.processes * self.threads

    def run(self, kind: str, seconds: float, rate: float | None = None) -> LoadResult:
        t = self.target

        def setup(seed: int) -> Client:
            if kind in ("cc", "floor"):
                return Client(t)
            client = Client(t, self.pool)
            if kind == "refresh":
                client.refresh_token = client.sign_in()["refresh_token"]
            return client

        def op(client: Client) -> None:
            if kind == "floor":
                t.discovery(client.browser)
            elif kind == "cc":
                t.client_credentials(client.browser)
            elif kind == "refresh":
                client.refresh_token = t.refresh(client.browser, client.refresh_token)[
                    "refresh_token"
                ]
            else:
                client.sign_in()

        return run_load(
            setup,
            op,
            meter=self.meter,
            seconds=seconds,
            processes=self.processes,
            threads=self.threads,
            rate=rate,
        )


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def measure(target: Target, plan: Plan, args) -> dict:
    """All figures for one target (already started)."""
    meter = CpuMeter(target.proc.pid, target.meter_extra)
    pool = UserPool(target.users)
    log(f"{target.name}: server processes {meter.pids}")
    out: dict = {"name": target.name}
    # Warm up (connection pools, caches, node's JIT) before anything is measured.
    warm = Client(target, pool)
    for _ in range(5):
        warm.sign_in()
    for _ in range(200):
        target.client_credentials(warm.browser)
        target.discovery(warm.browser)
    warm.close()

    for kind, procs, threads in (
        ("floor", 2, 8),
        ("cc", 2, 8),
        ("refresh", 2, 8),
        ("signin", 2, 6),
    ):
        phase = Phase(target, pool, meter, procs, threads)
        per_core, per_core_all, rates = Spread(), Spread(), Spread()
        cpu_ms, other_ms = Spread(), Spread()
        for r in range(plan.runs):
            res = phase.run(kind, plan.seconds)
            side = sum(v for k, v in res.cpu.items() if k != "server")
            per_core.values.append(res.per_cpu())
            per_core_all.values.append(res.ops / (res.cpu["server"] + side) if res.ops else 0)
            rates.values.append(res.rate)
            cpu_ms.values.append(res.cpu_ms_per_op())
            other_ms.values.append(1000 * side / res.ops if res.ops else float("nan"))
            log(
                f"{target.name} {kind} run {r + 1}/{plan.runs}: {res.ops} ops, "
                f"{res.errors} errors, "
                f"{res.rate:.1f}/s wall, {res.per_cpu():.1f}/server-CPU-s, "
                f"cpu {', '.join(f'{k}={v:.2f}s' for k, v in res.cpu.items())}"
                + (f" first error: {res.first_error}" if res.errors else "")
            )
        peak = rates.median
        if kind == "floor":
            out[kind] = {"per_core": per_core.values, "cpu_ms": cpu_ms.values}
            continue
        paced = phase.run(kind, plan.seconds, rate=max(1.0, peak / 2))
        log(
            f"{target.name} {kind} at 50% of peak ({peak / 2:.1f}/s): {paced.ops} ops, "
            f"{paced.errors} errors, p50 {1000 * percentile(paced.latencies, 50):.1f} ms, "
            f"p99 {1000 * percentile(paced.latencies, 99):.1f} ms"
        )
        out[kind] = {
            "per_core": per_core.values,
            "per_core_with_store": per_core_all.values,
            "wall_rate": rates.values,
            "cpu_ms": cpu_ms.values,
            "store_cpu_ms": other_ms.values,
            "p50_ms": 1000 * percentile(paced.latencies, 50),
            "p99_ms": 1000 * percentile(paced.latencies, 99),
            "paced_rate": paced.rate,
            "paced_target": peak / 2,
            "paced_errors": paced.errors,
        }

    out["hash_ms"] = target.hash_cost_ms()
    out["signin"]["beyond_hash_ms"] = [v - out["hash_ms"] for v in out["signin"]["cpu_ms"]]

    # Redis memory per active session: the keys under the target's prefix, before and
    # after N more sign-ins whose sessions stay alive.
    before_s = redis_bytes(target.redis_prefix, target.session_patterns)
    before_all = redis_bytes(target.redis_prefix, ("*",))
    clients = [Client(target, pool) for _ in range(4)]

    def many(client: Client, n: int) -> None:
        for _ in range(n):
            client.sign_in()

    n_each = plan.sessions // len(clients)
    threads = [threading.Thread(target=many, args=(c, n_each)) for c in clients]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    after_s = redis_bytes(target.redis_prefix, target.session_patterns)
    after_all = redis_bytes(target.redis_prefix, ("*",))
    n = n_each * len(clients)
    out["redis_session_bytes"] = (after_s[1] - before_s[1]) / n
    out["redis_signin_bytes"] = (after_all[1] - before_all[1]) / n
    out["redis_session_keys"] = (after_s[0] - before_s[0]) / n
    log(
        f"{target.name}: {n} sessions: {out['redis_session_bytes']:.0f} B of session keys "
        f"({out['redis_session_keys']:.1f} keys) and {out['redis_signin_bytes']:.0f} B in all "
        "per sign-in"
    )

    if isinstance(target, Ours):
        out["users_latency"] = user_scaling(target, pool, plan)
    return out


def signin_latencies(target: Target, pool: UserPool, count: int) -> list[float]:
    client = Client(target, pool)
    lat = []
    for _ in range(count):
        t0 = time.perf_counter()
        client.sign_in()
        lat.append(time.perf_counter() - t0)
    client.close()
    return lat


def user_scaling(target: Ours, pool: UserPool, plan: Plan) -> dict:
    small = signin_latencies(target, pool, plan.latency_samples)
    log(f"ours: grow users from {target.users:,} to {plan.big_users:,} ...")
    took = target.add_users(plan.big_users)
    log(f"ours: bulk insert took {took:.0f} s")
    signin_latencies(target, pool, 10)  # warm the caches the bulk insert evicted
    big = signin_latencies(target, pool, plan.latency_samples)
    res = {
        "small_users": target.users,
        "big_users": plan.big_users,
        "small_p50_ms": 1000 * percentile(small, 50),
        "small_p99_ms": 1000 * percentile(small, 99),
        "big_p50_ms": 1000 * percentile(big, 50),
        "big_p99_ms": 1000 * percentile(big, 99),
    }
    log(
        "ours: sign-in latency, one client: "
        f"{target.users:,} users p50 {res['small_p50_ms']:.1f} ms "
        f"p99 {res['small_p99_ms']:.1f}; {plan.big_users:,} users p50 {res['big_p50_ms']:.1f} ms "
        f"p99 {res['big_p99_ms']:.1f}"
    )
    return res


# -- the table ------------------------------------------------------------------------
#: The targets (docs/PERFORMANCE.md): (figure path) -> (">=" or "<=", ratio to the peer).
TARGETS: dict[tuple[str, ...], tuple[str, float]] = {
    ("floor", "per_core"): (">=", 0.6),
    ("cc", "per_core"): (">=", 0.7),
    ("refresh", "per_core"): (">=", 0.7),
    ("signin", "per_core"): (">=", 0.9),
    ("signin", "beyond_hash_ms"): ("<=", 1.5),
    ("signin", "p50_ms"): ("<=", 1.2),
    ("signin", "p99_ms"): ("<=", 1.2),
}


def verdict(path: tuple[str, ...], ratio: float | None) -> str:
    """The target of a figure and whether *ratio* (ours / peer) meets it ('' if none)."""
    if path not in TARGETS:
        return ""
    op, bound = TARGETS[path]
    if ratio is None or ratio != ratio:
        return f"{op} {bound:g}x: not measured"
    met = ratio >= bound if op == ">=" else ratio <= bound
    return f"{op} {bound:g}x: {'met' if met else 'NOT met'}"


def table(ours: dict, peer: dict | None, plan: Plan) -> str:
    rows: list[tuple[str, str, str, str, str]] = []

    def spread(d: dict | None, *path: str) -> Spread | None:
        if d is None:
            return None
        for p in path:
            d = d[p]
        return Spread(list(d)) if isinstance(d, list) else Spread([d])

    def add(label: str, *path: str, lower_better: bool = False) -> None:
        a, b = spread(ours, *path), spread(peer, *path) if peer else None
        ratio, value = "n/a", None
        if b is not None and b.median and b.median == b.median and a.median == a.median:
            value = a.median / b.median
            ratio = f"{value:.2f}"
            if lower_better:
                ratio += " (lower is better)"
        rows.append((label, str(a), str(b) if b else "skipped", ratio, verdict(path, value)))

    add("GET discovery / s per core (request floor)", "floor", "per_core")
    add("client_credentials grants / s per core", "cc", "per_core")
    add("  incl. PostgreSQL + Redis CPU", "cc", "per_core_with_store")
    add("refresh_token grants / s per core", "refresh", "per_core")
    add("  incl. PostgreSQL + Redis CPU", "refresh", "per_core_with_store")
    add("full sign-ins / s (this machine, wall)", "signin", "wall_rate")
    add("full sign-ins / s per core", "signin", "per_core")
    add("server CPU ms per sign-in", "signin", "cpu_ms", lower_better=True)
    add("  argon2id verify, CPU ms", "hash_ms", lower_better=True)
    add("  CPU ms per sign-in beyond the hash", "signin", "beyond_hash_ms", lower_better=True)
    add("  PostgreSQL + Redis CPU ms per sign-in", "signin", "store_cpu_ms", lower_better=True)
    for kind, label in (
        ("cc", "client_credentials"),
        ("refresh", "refresh"),
        ("signin", "sign-in"),
    ):
        add(f"{label} p50 ms at 50% of peak", kind, "p50_ms", lower_better=True)
        add(f"{label} p99 ms at 50% of peak", kind, "p99_ms", lower_better=True)
    add("Redis bytes per active session", "redis_session_bytes", lower_better=True)
    add("Redis bytes per sign-in, all keys", "redis_signin_bytes", lower_better=True)
    u = ours.get("users_latency")
    if u:
        for size in ("small", "big"):
            n = u[f"{size}_users"]
            rows.append(
                (
                    f"sign-in p50 / p99 ms, {n:,} users",
                    f"{fmt(u[f'{size}_p50_ms'])} / {fmt(u[f'{size}_p99_ms'])}",
                    "n/a (in memory)",
                    "",
                    "",
                )
            )
    head = ("figure", "ours", "oidc-provider", "ours / peer", "target")
    widths = [max(len(r[i]) for r in [*rows, head]) for i in range(5)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a smoke run (under ~2 minutes)")
    ap.add_argument("--skip-peer", action="store_true", help="measure our provider only")
    ap.add_argument("--skip-ours", action="store_true", help="measure the peer only")
    ap.add_argument("--runs", type=int, help="runs per throughput figure (default 3, quick 1)")
    ap.add_argument("--seconds", type=float, help="seconds per run (default 15, quick 4)")
    ap.add_argument("--big-users", type=int, help="users for the scaling figure (default 1M)")
    ap.add_argument(
        "--workers", type=int, default=2 * (os.cpu_count() or 1), help="our worker processes"
    )
    ap.add_argument("--threads", type=int, default=4, help="our threads per worker")
    ap.add_argument("--server", default="granian", choices=["granian", "gunicorn"],
                    help="our server: idp serve (granian) or gunicorn.conf.py")  # fmt: skip
    ap.add_argument("--peer-workers", type=int, default=os.cpu_count() or 1, help="node workers")
    ap.add_argument("--keys", default="RS256", choices=["RS256", "ES256"],
                    help="the signing algorithm of both servers")  # fmt: skip
    ap.add_argument("--json", type=Path, help="also write the raw figures here")
    args = ap.parse_args(argv)
    plan = QUICK if args.quick else FULL
    plan = Plan(
        seconds=args.seconds or plan.seconds,
        runs=args.runs or plan.runs,
        big_users=args.big_users or plan.big_users,
        sessions=plan.sessions,
        latency_samples=plan.latency_samples,
    )
    log(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
        f"{plan.runs} run(s) of {plan.seconds:g} s per figure"
    )
    results: dict = {"plan": plan.__dict__, "conditions": {"cores": os.cpu_count()}}
    peer_result = None
    if not args.skip_peer:
        peer = Peer(workers=args.peer_workers, users=2000, algorithm=args.keys)
        log("oidc-provider: installing from the npm registry into .cache/bench (first run only)")
        peer.install()
        results["conditions"]["oidc_provider"] = peer.version()
        try:
            peer.start()
            peer_result = measure(peer, plan, args)
        finally:
            peer.stop()
            peer.drop()
    ours_result = None
    if not args.skip_ours:
        ours = Ours(workers=args.workers, threads=args.threads, users=2000, algorithm=args.keys,
                    server=args.server)  # fmt: skip
        try:
            log(
                f"ours: database {ours.db}, "
                f"{ours.workers} {ours.server} workers x {ours.threads} threads"
            )
            ours.create()
            ours.start()
            ours_result = measure(ours, plan, args)
        finally:
            ours.stop()
            ours.drop()
    results["ours"], results["peer"] = ours_result, peer_result
    results["conditions"]["load_average_end"] = os.getloadavg()[0]
    print()
    if ours_result is not None:
        print(table(ours_result, peer_result, plan))
    else:
        print(json.dumps(peer_result, indent=1))
    print(
        f"\nper core = operations per CPU-second of the server processes; medians of {plan.runs} "
        "run(s) with (min-max, n); latency from one paced run at half the measured peak."
    )
    for result in (ours_result, peer_result):
        for kind in ("cc", "refresh", "signin"):
            figures = (result or {}).get(kind)
            if figures and figures["paced_rate"] < 0.9 * figures["paced_target"]:
                print(
                    f"note: {result['name']} {kind}: the paced run reached only "
                    f"{figures['paced_rate']:.1f}/s of {figures['paced_target']:.1f}/s "
                    "(the machine was busier than during the peak runs); its latency "
                    "includes queueing."
                )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
