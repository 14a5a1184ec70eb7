"""The load generator's parts: a lean HTTP browser, a multi-process load runner, CPU
accounting of server processes from ``/proc``, and the statistics the report prints.

The generator is kept cheap on purpose (``http.client`` keep-alive connections, a
name->value cookie jar, regular expressions instead of an HTML parser), because on a
2-core machine every millisecond it spends is a millisecond the servers do not get. The
figures that matter do not depend on that anyway: throughput is reported per server
CPU-second, counted from the server processes themselves.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import math
import multiprocessing as mp
import os
import statistics
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- TOTP (RFC 6238 over RFC 4226 HOTP, SHA-1, 6 digits, 30 s) --------------------------
def totp(secret_b32: str, step: int) -> str:
    """The 6-digit code of *step* for a base32 secret (RFC 6238 4.2, RFC 4226 5.3)."""
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 10**6:06d}"


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge) per RFC 7636 4.1-4.2."""
    verifier = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# -- HTTP ------------------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def location(self) -> str:
        return self.headers.get("location", "")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class Browser:
    """One keep-alive connection and one cookie jar: a browser profile, or an API client.

    Cookies are kept by name only (paths and domains are ignored: every cookie of the
    servers under test is host-only and harmless to send on other paths).
    """

    def __init__(self, base_url: str, timeout: float = 30.0):
        parts = urlsplit(base_url)
        self.base = base_url.rstrip("/")
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        self.cookies: dict[str, str] = {}
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self,
        method: str,
        url: str,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        target = urljoin(self.base + "/", url)
        parts = urlsplit(target)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        hdrs = {"Accept": "text/html,application/json"}
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form).encode()
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        if headers:
            hdrs.update(headers)
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request(method, path, body=body, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A keep-alive connection the server closed: retry once on a new one.
                self.close()
                if attempt:
                    raise
        for line in resp.headers.get_all("Set-Cookie") or ():
            self._take_cookie(line)
        reply = Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        if resp.getheader("Connection", "").lower() == "close":
            self.close()
        return reply

    def _take_cookie(self, line: str) -> None:
        first, _, attrs = line.partition(";")
        name, _, value = first.strip().partition("=")
        low = attrs.lower()
        if "max-age=0" in low or "expires=thu, 01 jan 1970" in low or value == "":
            self.cookies.pop(name, None)
        else:
            self.cookies[name] = value

    def follow(self, reply: Reply, stop: Callable[[str], bool], limit: int = 10) -> Reply:
        """Follow redirects with GET until *stop(location)* is true (returns that reply)."""
        for _ in range(limit):
            if reply.status not in (301, 302, 303, 307) or stop(reply.location):
                return reply
            reply = self.request("GET", reply.location)
        raise RuntimeError(f"too many redirects, last: {reply.location}")


def basic_auth(client_id: str, secret: str) -> dict[str, str]:
    """RFC 6749 2.3.1 client_secret_basic (form-urlencoded id and secret)."""
    from urllib.parse import quote

    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


# -- CPU accounting --------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(int(entry))
    return out


def process_tree(pid: int) -> list[int]:
    """*pid* and all its descendants, now."""
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(_children(p))
    return tree


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds consumed so far by each process (all its threads)."""
    out: dict[int, float] = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited: its time since the last sample is lost
        out[pid] = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
    return out


def cpu_seconds(pids: list[int]) -> float:
    return sum(cpu_by_pid(pids).values())


class CpuMeter:
    """CPU seconds of a server (its whole process tree, listed again at every sample so
    a replaced worker is counted) plus, optionally, other processes (PostgreSQL
    backends, Redis) counted separately."""

    def __init__(self, root_pid: int, extra: Callable[[], dict[str, float]] | None = None):
        self.root = root_pid
        self.pids = process_tree(root_pid)
        self.extra = extra or (lambda: {})

    def sample(self) -> dict[str, object]:
        return {"server": cpu_by_pid(process_tree(self.root)), **self.extra()}

    @staticmethod
    def used(before: dict[str, object], after: dict[str, object]) -> dict[str, float]:
        """CPU seconds between two samples, by component."""
        out: dict[str, float] = {}
        for key, value in after.items():
            if isinstance(value, dict):
                prev = before.get(key) or {}
                out[key] = sum(v - prev.get(pid, 0.0) for pid, v in value.items())
            else:
                out[key] = float(value) - float(before.get(key, 0.0))
        return out


# -- statistics ------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


@dataclass
class Spread:
    """Median of repeated runs, with min and max and the number of runs."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def __str__(self) -> str:
        if not self.values:
            return "n/a"
        if len(self.values) == 1:
            return fmt(self.values[0])
        low, high = fmt(min(self.values)), fmt(max(self.values))
        return f"{fmt(self.median)} ({low}-{high}, n={len(self.values)})"


def fmt(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


# -- the load runner -------------------------------------------------------------------
@dataclass
class LoadResult:
    ops: int
    errors: int
    wall: float
    latencies: list[float]  # seconds, from the scheduled start (no coordinated omission)
    cpu: dict[str, float]  # CPU seconds used during the run, by meter component
    first_error: str = ""

    @property
    def rate(self) -> float:
        return self.ops / self.wall if self.wall else 0.0

    def per_cpu(self, component: str = "server") -> float:
        """Operations per CPU-second of *component* (= per core at full use)."""
        used = self.cpu.get(component, 0.0)
        return self.ops / used if used > 0 else float("nan")

    def cpu_ms_per_op(self, component: str = "server") -> float:
        return 1000 * self.cpu.get(component, 0.0) / self.ops if self.ops else float("nan")


def _thread_loop(state, op, deadline, interval, start_at, out, lock):
    lat: list[float] = []
    ops = errors = 0
    first_error = ""
    next_at = start_at
    while True:
        now = time.perf_counter()
        if interval:
            if next_at > now:
                time.sleep(next_at - now)
            scheduled = next_at
            next_at += interval
        else:
            scheduled = now
        if scheduled >= deadline:
            break
        try:
            op(state)
            ops += 1
            lat.append(time.perf_counter() - scheduled)
        except Exception as exc:  # a failed operation is counted and reported, not fatal
            errors += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"
            if hasattr(state, "reset"):
                state.reset()
    with lock:
        out.append((ops, errors, lat, first_error))


def _process_main(setup, op, seeds, seconds, interval, queue, go):
    try:
        states = [setup(seed) for seed in seeds]
    except Exception as exc:
        queue.put(("failed", f"{type(exc).__name__}: {exc}"))
        return
    queue.put(("ready", None))
    go.wait()
    start = time.perf_counter()
    deadline = start + seconds
    out: list = []
    lock = threading.Lock()
    threads = []
    for i, state in enumerate(states):
        # Stagger paced threads so their requests do not arrive in bursts.
        offset = (interval / len(states)) * i if interval else 0.0
        t = threading.Thread(
            target=_thread_loop,
            args=(state, op, deadline, interval, start + offset, out, lock),
        )
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    for state in states:
        if hasattr(state, "close"):
            state.close()
    ops = sum(o[0] for o in out)
    errors = sum(o[1] for o in out)
    lat = [x for o in out for x in o[2]]
    first = next((o[3] for o in out if o[3]), "")
    queue.put(("done", (ops, errors, lat, first, time.perf_counter() - start)))


def run_load(
    setup: Callable[[int], object],
    op: Callable[[object], None],
    *,
    meter: CpuMeter,
    seconds: float,
    processes: int,
    threads: int,
    rate: float | None = None,
) -> LoadResult:
    """Run *op* repeatedly from ``processes x threads`` clients for *seconds*.

    ``setup(seed)`` builds each client's state (connection, tokens, users) BEFORE the
    measurement starts; seeds are 0..N-1 across all clients. Without *rate* the clients
    are closed-loop (as fast as the server answers); with it, requests are paced to
    *rate* per second in total and latency is measured from each request's scheduled
    time. CPU is sampled by *meter* right before the clients start and after they stop.
    """
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    go = ctx.Event()
    total = processes * threads
    interval = total / rate if rate else 0.0
    procs = []
    for p in range(processes):
        seeds = list(range(p * threads, (p + 1) * threads))
        proc = ctx.Process(
            target=_process_main, args=(setup, op, seeds, seconds, interval, queue, go)
        )
        proc.start()
        procs.append(proc)
    for _ in procs:
        kind, info = queue.get()
        if kind == "failed":
            go.set()
            for proc in procs:
                proc.terminate()
            raise RuntimeError(f"client setup failed: {info}")
    before = meter.sample()
    go.set()
    results = [queue.get()[1] for _ in procs]
    after = meter.sample()
    for proc in procs:
        proc.join()
    return LoadResult(
        ops=sum(r[0] for r in results),
        errors=sum(r[1] for r in results),
        wall=max(r[4] for r in results),
        latencies=[x for r in results for x in r[2]],
        cpu=CpuMeter.used(before, after),
        first_error=next((r[3] for r in results if r[3]), ""),
    )
