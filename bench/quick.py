"""Quick in-process measurements: the provider's own cost per operation, one core.

Runs the real app (SQLite + in-memory store, or PostgreSQL + Redis with ``--backend
postgres``) through Flask's test client, so HTTP parsing by a real server is left out
and the client's own work (HTML form parsing, JWT checks) is included. Prints
operations per second and milliseconds per operation. The side-by-side benchmark with
a peer provider over real HTTP is ``bench/run.py`` (``make bench``, docs/PERFORMANCE.md).

    .venv/bin/python bench/quick.py [--backend sqlite|postgres] [--seconds 5] [--steps]
        [--profile cc|signin|refresh]

``--steps`` adds the server's own CPU per request of a sign-in (the app is wrapped, so
the client's work is left out) with the SQL statements and Redis commands each sent;
``--profile`` prints a cProfile (CPU clock) of one operation, heaviest first.
"""

from __future__ import annotations

import argparse
import base64
import collections
import cProfile
import hashlib
import hmac
import os
import pstats
import re
import struct
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

from clients.mockrp import MockRP
from clients.mockrp.transport import FlaskTransport
from idp.app import create_app
from idp.config import load_settings
from idp.keys import generate_key
from idp.store import MemoryStore, RedisStore

PASSWORD = "a perfectly fine passphrase"
CB = "https://rp.example.com/cb"
USERS = 400
CLEANUP: list[str] = []  # PostgreSQL databases to drop at the end


def totp(secret: str, step: int) -> str:
    mac = hmac.new(base64.b32decode(secret), struct.pack(">Q", step), hashlib.sha1).digest()
    o = mac[-1] & 0x0F
    return f"{(struct.unpack('>I', mac[o : o + 4])[0] & 0x7FFFFFFF) % 10**6:06d}"


def build(backend: str, tmp: Path, memory_cost: int):
    base = load_settings(environ={})
    keys = tmp / "keys"
    generate_key(keys, "RS256")
    s = replace(
        base,
        env="test",
        issuer="http://localhost",
        keys=replace(base.keys, directory=str(keys)),
        password=replace(base.password, memory_cost=memory_cost),
        delivery=replace(base.delivery, outbox=str(tmp / "outbox.jsonl")),
        login=replace(
            base.login,
            per_ip_per_minute=10**6,
            failures_per_ip_per_minute=10**6,
            failures_per_account_ip_per_minute=10**6,
        ),
        mfa=replace(base.mfa, recommend_second=False),
        # The passkey offer shows once per 30 days per user; the peer has none.
        webauthn=replace(base.webauthn, passkey_offer_days=0),
    )
    if backend == "postgres":
        import psycopg

        name = f"idp_bench_{uuid.uuid4().hex[:8]}"
        CLEANUP.append(name)
        with psycopg.connect("postgresql://postgres@127.0.0.1/test", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        s = replace(
            s, database=replace(s.database, url=f"postgresql+psycopg://postgres@127.0.0.1/{name}")
        )
        store = RedisStore("redis://127.0.0.1:6379/0", prefix=f"bench:{name}:")
    else:
        s = replace(s, database=replace(s.database, url=f"sqlite:///{tmp / 'bench.sqlite3'}"))
        store = MemoryStore()
    app = create_app(s, store=store, warn=False)
    from flask_migrate import upgrade

    with app.app_context():
        upgrade()
    return app


def rate(label: str, fn, seconds: float) -> float:
    fn()  # warm up
    n, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < seconds:
        fn()
        n += 1
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    print(f"{label:52} {n / wall:9.1f}/s  {1000 * wall / n:8.2f} ms  cpu {1000 * cpu / n:8.2f} ms")
    return 1000 * cpu / n


class StepMeter:
    """Server CPU, SQL statements and Redis commands per request path."""

    def __init__(self, app) -> None:
        from sqlalchemy import event

        from idp.extensions import db

        self.cpu: dict[str, float] = collections.defaultdict(float)
        self.calls: dict[str, int] = collections.defaultdict(int)
        self.sql: dict[str, int] = collections.defaultdict(int)
        self.redis: dict[str, int] = collections.defaultdict(int)
        self.on = False
        self.path = "-"
        inner = app.wsgi_app

        def wsgi(environ, start_response):
            key = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}"
            self.path = key
            t0 = time.process_time()
            body = inner(environ, start_response)
            data = b"".join(body)
            if hasattr(body, "close"):
                body.close()  # the audit sealer runs here, as under gunicorn
            if self.on:
                self.cpu[key] += time.process_time() - t0
                self.calls[key] += 1
            self.path = "-"
            return [data]

        app.wsgi_app = wsgi
        with app.app_context():
            event.listen(db.engine, "before_cursor_execute", self._statement)
        store = app.extensions["idp"].store
        client = getattr(store, "_client", None)  # RedisStore's redis.Redis
        if client is not None:
            original = client.execute_command

            def counted(*a, **kw):
                if self.on and self.path != "-":
                    self.redis[self.path] += 1
                return original(*a, **kw)

            client.execute_command = counted

    def _statement(self, *_args) -> None:
        if self.on and self.path != "-":
            self.sql[self.path] += 1

    def report(self, runs: int) -> None:
        print(f"\n{'server CPU per request of a sign-in':44} {'per sign-in':>11} "
              f"{'ms each':>8} {'SQL':>5} {'Redis':>6}")  # fmt: skip
        total = 0.0
        for key in self.cpu:
            n = self.calls[key]
            total += 1000 * self.cpu[key] / runs
            print(f"{key:44} {n / runs:11.1f} {1000 * self.cpu[key] / n:8.2f} "
                  f"{self.sql[key] / n:5.1f} {self.redis[key] / n:6.1f}")  # fmt: skip
        print(f"{'total (incl. one argon2id verify)':44} {'':11} {total:8.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--steps", action="store_true", help="server CPU per sign-in request")
    ap.add_argument("--profile", choices=["cc", "signin", "refresh"], help="cProfile one")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="idp-bench-"))
    app = build(args.backend, tmp, memory_cost=19456)
    from idp.extensions import db
    from idp.models import Factor, User
    from idp.oidc.clients import create_client
    from idp.security import totp as totp_mod
    from idp.services import services

    with app.app_context():
        svc = services()
        # Many users: the provider limits second-factor guesses to 10 a minute per user.
        pw_hash = svc.passwords.hash(PASSWORD)
        secret = totp_mod.new_secret()
        for i in range(USERS):
            user = User(email=f"bench{i}@example.com", email_verified=True, password_hash=pw_hash)
            db.session.add(user)
            db.session.flush()
            db.session.add(
                Factor(
                    user_id=user.id,
                    type="totp",
                    label="bench",
                    status="active",
                    secret_enc=svc.secrets.encrypt(secret, context=f"totp:{user.id}"),
                )
            )
        db.session.commit()
        bench_client, csecret = create_client(
            name="bench",
            redirect_uris=[CB],
            first_party=True,
            grant_types=["authorization_code", "refresh_token", "client_credentials"],
            scope="openid profile email offline_access",
        )
        cid = bench_client.client_id
        t0 = time.process_time()
        for _ in range(10):
            svc.passwords.verify(pw_hash, PASSWORD)
        argon_ms = (time.process_time() - t0) * 100

    print(f"backend: {args.backend}; argon2id m=19 MiB t=2 p=1 verify: {argon_ms:.1f} ms")
    meter = StepMeter(app) if args.steps else None
    rp = MockRP(
        "http://localhost",
        cid,
        CB,
        client_secret=csecret,
        transport=FlaskTransport(app.test_client()),
    )
    rate("client_credentials grant", lambda: rp.client_credentials(), args.seconds)

    counter = iter(range(10**9))

    def full_sign_in():
        index = next(counter) % USERS
        email = f"bench{index}@example.com"
        client = MockRP(
            "http://localhost",
            cid,
            CB,
            client_secret=csecret,
            transport=FlaskTransport(app.test_client()),
        )
        resp = client.start(scope="openid email offline_access")
        resp = client.transport.request("GET", resp.location)  # sign-in page
        form = resp.text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
        txn = re.search(r'name="txn" value="([^"]+)"', form).group(1)
        resp = client.transport.request(
            "POST",
            "http://localhost/signin",
            data={"csrf_token": csrf, "txn": txn, "email": email, "password": PASSWORD},
        )
        while resp.status == 302 and "/mfa/challenge" not in resp.location:
            resp = client.transport.request("GET", resp.location)
        resp = client.transport.request("GET", resp.location)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', resp.text).group(1)
        real = int(time.time() // 30)
        code = totp(secret, real)
        with app.app_context():  # a benchmark shortcut: let every iteration reuse the step
            db.session.execute(
                db.update(Factor).where(Factor.user_id == index + 1).values(last_step=real - 1)
            )
            db.session.commit()
        resp = client.transport.request(
            "POST",
            "http://localhost/mfa/challenge",
            data={"csrf_token": csrf, "txn": txn, "kind": "totp", "code": code},
        )
        result = client.resume(resp, client.last_request)
        return client.exchange_code(result)

    first = full_sign_in()
    cpu = rate("full sign-in (authorize, password, TOTP, code, token)", full_sign_in, args.seconds)
    print(f"{'  of which argon2id (one verify)':52} {'':>11}  {argon_ms:8.2f} ms")
    print(f"{'  CPU per sign-in beyond the password hash':52} {'':>11}  {cpu - argon_ms:8.2f} ms")
    current = [first.refresh_token]

    def refresh():
        current[0] = rp.refresh(current[0]).refresh_token

    rate("refresh_token grant (rotation)", refresh, args.seconds)
    if meter is not None:
        meter.on = True
        runs = 20
        for _ in range(runs):
            full_sign_in()
        meter.on = False
        meter.report(runs)
    if args.profile:
        op = {"cc": rp.client_credentials, "signin": full_sign_in, "refresh": refresh}
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        for _ in range(20 if args.profile == "signin" else 300):
            op[args.profile]()
        profiler.disable()
        print()
        stats = pstats.Stats(profiler).sort_stats(os.environ.get("BENCH_SORT", "cumulative"))
        stats.print_stats(60)
        if os.environ.get("BENCH_CALLERS"):
            stats.print_callers(os.environ["BENCH_CALLERS"])


if __name__ == "__main__":
    try:
        main()
    finally:
        if CLEANUP:
            import psycopg

            with psycopg.connect("postgresql://postgres@127.0.0.1/test", autocommit=True) as c:
                for name in CLEANUP:
                    c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
