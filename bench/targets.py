"""The two servers under test: our provider (``idp serve``, or gunicorn) on PostgreSQL and
Redis, and node-oidc-provider (installed from the npm registry into ``.cache/bench``) on Redis.

Each target knows how to start and stop itself, how to walk one browserless sign-in
(authorize -> password -> TOTP -> code -> token) and which Redis keys are its sessions.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from harness import Browser, Reply, basic_auth, pkce_pair, query_of, totp

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
# The tree our server runs (another checkout, to compare before and after a change).
SERVER_ROOT = Path(os.environ.get("BENCH_SERVER_ROOT", str(ROOT)))
PASSWORD = "a perfectly fine passphrase"
REDIRECT_URI = "http://127.0.0.1:9/cb"
ADMIN_DSN = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0")
PEER_PACKAGES = ["oidc-provider@9", "argon2@0.44", "ioredis@5"]

_CSRF = re.compile(r'name="csrf_token"\s+value="([^"]+)"')
_TXN = re.compile(r'name="txn"\s+value="([^"]+)"')


def _server(dsn: str) -> str:
    """``user@host:port`` of a ``postgresql://user@host:port/db`` DSN."""
    return dsn.split("://", 1)[1].rsplit("/", 1)[0]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} during start-up")
        try:
            b = Browser(url.rsplit("/", 1)[0] if url.count("/") > 2 else url)
            if b.request("GET", url).status == 200:
                b.close()
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def redis_client():
    import redis

    return redis.Redis.from_url(REDIS_URL)


def redis_cpu() -> float:
    info = redis_client().info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def redis_bytes(prefix: str, patterns: tuple[str, ...]) -> tuple[int, int]:
    """(number of keys, bytes by MEMORY USAGE) of the keys under *prefix* + each pattern."""
    r = redis_client()
    count = total = 0
    for pattern in patterns:
        for key in r.scan_iter(match=prefix + pattern, count=1000):
            usage = r.memory_usage(key, samples=0)
            if usage:
                count += 1
                total += int(usage)
    return count, total


def stop_process(proc: subprocess.Popen | None, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Target:
    """What the load generator needs to know about a server under test."""

    name: str
    base: str = ""
    client_id: str = ""
    client_secret: str = ""
    totp_secret: str = ""
    users: int = 1000
    redis_prefix: str = ""
    session_patterns: tuple[str, ...] = ()
    proc: subprocess.Popen | None = None
    log: Path | None = None
    scratch: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="idp-bench-")))

    # -- the grants ------------------------------------------------------------------
    def token(self, browser: Browser, form: dict[str, str]) -> dict:
        reply = browser.request(
            "POST", "/token", form=form, headers=basic_auth(self.client_id, self.client_secret)
        )
        if reply.status != 200:
            raise RuntimeError(f"token endpoint: {reply.status} {reply.text[:200]}")
        return json.loads(reply.body)

    def discovery(self, browser: Browser) -> None:
        """The cheapest request there is: the per-request floor of the server stack."""
        reply = browser.request("GET", "/.well-known/openid-configuration")
        if reply.status != 200:
            raise RuntimeError(f"discovery: {reply.status}")

    def client_credentials(self, browser: Browser) -> dict:
        return self.token(browser, {"grant_type": "client_credentials"})

    def refresh(self, browser: Browser, refresh_token: str) -> dict:
        return self.token(browser, {"grant_type": "refresh_token", "refresh_token": refresh_token})

    def authorize_url(self, state: str, challenge: str) -> str:
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid email offline_access",
            "state": state,
            "nonce": secrets.token_urlsafe(12),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        return f"{self.authorize_path}?{urlencode(params)}"

    authorize_path = "/authorize"

    def sign_in(self, browser: Browser, user: int, step: int) -> dict:
        """One full browserless sign-in; returns the token response."""
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(12)
        reply = self.walk(browser, self.authorize_url(state, challenge), user, step)
        if not reply.location.startswith(REDIRECT_URI):
            raise RuntimeError(
                f"sign-in ended at {reply.status} {reply.location or reply.text[:300]}"
            )
        params = query_of(reply.location)
        if params.get("state") != state or "code" not in params:
            raise RuntimeError(f"bad authorization response: {reply.location}")
        return self.token(
            browser,
            {
                "grant_type": "authorization_code",
                "code": params["code"],
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
            },
        )

    def walk(self, browser: Browser, url: str, user: int, step: int) -> Reply:
        raise NotImplementedError

    def hash_cost_ms(self) -> float:
        raise NotImplementedError

    def meter_extra(self) -> dict[str, float]:
        return {"redis": redis_cpu()}

    def stop(self) -> None:
        stop_process(self.proc)


def _leaves(url: str) -> bool:
    return url.startswith(REDIRECT_URI)


class Ours(Target):
    """Our provider as production runs it (``idp serve``: granian; or gunicorn with
    gthread workers), PostgreSQL and Redis, RS256 or ES256 keys."""

    def __init__(self, *, workers: int, threads: int, users: int, algorithm: str = "RS256",
                 server: str = "granian"):  # fmt: skip
        super().__init__(name="ours", users=users)
        self.workers, self.threads, self.algorithm = workers, threads, algorithm
        self.server = server
        self.db = f"idp_bench_{uuid.uuid4().hex[:10]}"
        self.redis_prefix = f"idp_bench:{self.db}:"
        self.session_patterns = ("session:*", "user_sessions:*")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.totp_secret = base64.b32encode(os.urandom(20)).decode()
        self.env = {
            "IDP_ENV": "test",
            "IDP_ISSUER": self.base,
            "IDP_SECRET_KEY": secrets.token_urlsafe(48),
            "IDP_SECURITY_ENCRYPTION_KEYS": "bench:"
            + base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "IDP_SECURITY_ACTIVE_ENCRYPTION_KEY": "bench",
            "IDP_DATABASE_URL": f"postgresql+psycopg://{_server(ADMIN_DSN)}/{self.db}",
            "IDP_STORE_BACKEND": "redis",
            "IDP_STORE_REDIS_URL": REDIS_URL,
            "IDP_STORE_PREFIX": self.redis_prefix,
            "IDP_KEYS_DIRECTORY": str(self.scratch / "keys"),
            "IDP_KEYS_ALGORITHM": algorithm,
            "IDP_DELIVERY_OUTBOX": str(self.scratch / "outbox.jsonl"),
            # Every benchmark client comes from 127.0.0.1: per-IP limits would throttle the
            # benchmark itself, so they are raised (still counted in Redis on every try).
            "IDP_LOGIN_PER_IP_PER_MINUTE": "1000000",
            "IDP_LOGIN_FAILURES_PER_ACCOUNT_IP_PER_MINUTE": "1000000",
            "IDP_LOGIN_FAILURES_PER_IP_PER_MINUTE": "1000000",
            "IDP_MFA_RECOMMEND_SECOND": "false",
            # The passkey offer shows once per 30 days per user; the peer has none.
            "IDP_WEBAUTHN_PASSKEY_OFFER_DAYS": "0",
            "IDP_OPS_LOG_LEVEL": "WARNING",
        }

    # -- set-up -----------------------------------------------------------------------
    def _admin(self):
        import psycopg

        return psycopg.connect(ADMIN_DSN, autocommit=True)

    def create(self) -> None:
        """Create the database, migrate it, seed the users (each with a TOTP factor) and
        the client, and generate the signing key."""
        with self._admin() as c:
            c.execute(f'CREATE DATABASE "{self.db}"')
        os.environ.update(self.env)  # the seeding app reads the same settings
        from flask_migrate import upgrade

        from idp.app import create_app
        from idp.config import load_settings
        from idp.keys import generate_key

        settings = load_settings(environ=self.env)
        generate_key(Path(self.env["IDP_KEYS_DIRECTORY"]), self.algorithm)
        app = create_app(settings, warn=False)
        with app.app_context():
            upgrade()  # the package's migrations (idp/migrations)
            self._seed(app)

    def _seed(self, app) -> None:
        from idp.extensions import db
        from idp.models import Factor, User
        from idp.oidc.clients import create_client
        from idp.services import services

        svc = services()
        pw_hash = svc.passwords.hash(PASSWORD)
        users = [
            User(email=f"bench{i}@example.com", email_verified=True, password_hash=pw_hash)
            for i in range(self.users)
        ]
        db.session.add_all(users)
        db.session.flush()
        db.session.add_all(
            Factor(
                user_id=u.id,
                type="totp",
                label="bench",
                status="active",
                is_default=True,
                secret_enc=svc.secrets.encrypt(self.totp_secret, context=f"totp:{u.id}"),
            )
            for u in users
        )
        db.session.commit()
        client, secret = create_client(
            name="bench",
            redirect_uris=[REDIRECT_URI],
            first_party=True,
            grant_types=["authorization_code", "refresh_token", "client_credentials"],
            scope="openid profile email offline_access",
        )
        self.client_id, self.client_secret = client.client_id, secret
        self.pw_hash = pw_hash

    def add_users(self, total: int) -> float:
        """Bulk-grow the users (and factors) tables to *total* rows by copying the first
        seeded row (other columns keep their values, unique ones get new ones). Returns
        the seconds it took."""
        import psycopg

        t0 = time.time()
        dsn = f"{ADMIN_DSN.rsplit('/', 1)[0]}/{self.db}"
        with psycopg.connect(dsn, autocommit=True) as c:
            have = c.execute("SELECT count(*) FROM users").fetchone()[0]
            if total <= have:
                return 0.0
            start = c.execute("SELECT max(id) FROM users").fetchone()[0] + 1
            end = start + (total - have) - 1

            def columns(table: str) -> list[str]:
                rows = c.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = %s AND table_schema = 'public' ORDER BY ordinal_position",
                    (table,),
                ).fetchall()
                return [r[0] for r in rows]

            new_user = {
                "id": "g",
                "sub": "md5(g::text || random()::text)",
                "email": "'bulk' || g || '@example.com'",
                "webauthn_handle": "NULL",
            }
            cols = columns("users")
            exprs = [new_user.get(col, f't."{col}"') for col in cols]
            c.execute(
                f"INSERT INTO users ({', '.join(chr(34) + x + chr(34) for x in cols)}) "
                f"SELECT {', '.join(exprs)} FROM generate_series({start}, {end}) AS g, "
                "(SELECT * FROM users ORDER BY id LIMIT 1) AS t"
            )
            fcols = [col for col in columns("factors") if col != "id"]
            new_factor = {"user_id": "g", "credential_id": "NULL"}
            fexprs = [new_factor.get(col, f'f."{col}"') for col in fcols]
            c.execute(
                f"INSERT INTO factors ({', '.join(chr(34) + x + chr(34) for x in fcols)}) "
                f"SELECT {', '.join(fexprs)} FROM generate_series({start}, {end}) AS g, "
                "(SELECT * FROM factors ORDER BY id LIMIT 1) AS f"
            )
            c.execute("SELECT setval(pg_get_serial_sequence('users', 'id'), %s)", (end,))
            c.execute("ANALYZE users")
            c.execute("ANALYZE factors")
        return time.time() - t0

    def start(self) -> None:
        self.log = self.scratch / f"{self.server}.log"
        env = {
            **os.environ,
            **self.env,
            "WEB_CONCURRENCY": str(self.workers),
            "IDP_THREADS": str(self.threads),
            "IDP_BIND": f"127.0.0.1:{self.port}",
            "IDP_ACCESS_LOG": str(self.scratch / "access.log"),
            "PROMETHEUS_MULTIPROC_DIR": str(self.scratch / "metrics"),
            # No worker recycling mid-measurement (production recycles every ~10,000
            # requests to bound memory; a restart would lose the old worker's CPU count).
            "GUNICORN_CMD_ARGS": "--max-requests 0",
        }
        (self.scratch / "metrics").mkdir(exist_ok=True)
        if self.server == "granian":  # idp serve, from the tree under test
            command = [sys.executable, "-m", "idp.serving"]
        else:
            command = [str(Path(sys.executable).parent / "gunicorn"), "-c", "gunicorn.conf.py",
                       "wsgi:app"]  # fmt: skip
        self.proc = subprocess.Popen(
            command,
            cwd=SERVER_ROOT,
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_http(f"{self.base}/.well-known/openid-configuration", self.proc)
        time.sleep(1)  # let every worker finish booting before the CPU meter lists them

    def backend_pids(self) -> list[int]:
        with self._admin() as c:
            rows = c.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.db,)
            ).fetchall()
        return [r[0] for r in rows]

    def meter_extra(self) -> dict[str, object]:
        from harness import cpu_by_pid

        return {"postgres": cpu_by_pid(self.backend_pids()), "redis": redis_cpu()}

    def hash_cost_ms(self) -> float:
        """CPU ms of one argon2id verify with the provider's own parameters and library."""
        from argon2 import PasswordHasher

        from idp.config import load_settings

        p = load_settings(environ=self.env).password
        ph = PasswordHasher(
            memory_cost=p.memory_cost, time_cost=p.time_cost, parallelism=p.parallelism
        )
        h = ph.hash(PASSWORD)
        ph.verify(h, PASSWORD)
        t0 = time.process_time()
        for _ in range(20):
            ph.verify(h, PASSWORD)
        return (time.process_time() - t0) / 20 * 1000

    # -- the sign-in ------------------------------------------------------------------
    def walk(self, browser: Browser, url: str, user: int, step: int) -> Reply:
        reply = browser.follow(browser.request("GET", url), lambda loc: False)
        if reply.status != 200:
            raise RuntimeError(f"sign-in page: {reply.status} {reply.location}")
        csrf, txn = _CSRF.search(reply.text), _TXN.search(reply.text)
        if not (csrf and txn):
            raise RuntimeError("no sign-in form")
        reply = browser.request(
            "POST",
            "/signin",
            form={
                "csrf_token": csrf.group(1),
                "txn": txn.group(1),
                "email": f"bench{user}@example.com",
                "password": PASSWORD,
            },
        )
        reply = browser.follow(reply, lambda loc: False)
        csrf = _CSRF.search(reply.text)
        if reply.status != 200 or not csrf or 'name="code"' not in reply.text:
            raise RuntimeError(f"no TOTP form: {reply.status} {reply.text[:200]}")
        reply = browser.request(
            "POST",
            "/mfa/challenge",
            form={
                "csrf_token": csrf.group(1),
                "txn": txn.group(1),
                "kind": "totp",
                "code": totp(self.totp_secret, step),
            },
        )
        return browser.follow(reply, _leaves)

    def stop(self) -> None:
        super().stop()

    def drop(self) -> None:
        with contextlib.suppress(Exception), self._admin() as c:
            c.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        with contextlib.suppress(Exception):
            r = redis_client()
            keys = list(r.scan_iter(match=self.redis_prefix + "*", count=1000))
            for i in range(0, len(keys), 500):
                r.delete(*keys[i : i + 500])


class Peer(Target):
    """node-oidc-provider 9 behind node:http, a cluster of *workers*, Redis adapter."""

    authorize_path = "/auth"

    def __init__(self, *, workers: int, users: int, algorithm: str = "RS256"):
        super().__init__(name="oidc-provider", users=users)
        self.workers, self.algorithm = workers, algorithm
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.redis_prefix = f"idp_bench:peer{uuid.uuid4().hex[:8]}:"
        self.session_patterns = ("Session:*", "sessionUid:*")
        self.client_id = "bench"
        self.client_secret = secrets.token_urlsafe(32)
        self.totp_secret = base64.b32encode(os.urandom(20)).decode()
        self.dir = CACHE / "oidc-provider"

    def install(self) -> None:
        """npm-install the peer into the scratch folder (once; later runs reuse it)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        package = self.dir / "package.json"
        if not package.exists():
            package.write_text('{"name": "idp-bench-peer", "private": true, "type": "module"}\n')
        have = all((self.dir / "node_modules" / p.split("@")[0]).is_dir() for p in PEER_PACKAGES)
        if not have:
            if shutil.which("npm") is None:
                raise RuntimeError("npm is not installed (Node.js 20+ is needed for the peer)")
            subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", *PEER_PACKAGES],
                cwd=self.dir,
                check=True,
            )
        shutil.copy(ROOT / "bench" / "peer" / "server.mjs", self.dir / "server.mjs")

    def version(self) -> str:
        data = json.loads((self.dir / "node_modules/oidc-provider/package.json").read_text())
        return data["version"]

    def start(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from joserfc.jwk import ECKey, RSAKey

        if self.algorithm == "ES256":  # the same algorithm as ours in every row
            jwk = ECKey.import_key(ec.generate_private_key(ec.SECP256R1())).as_dict(private=True)
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            jwk = RSAKey.import_key(key).as_dict(private=True)
        jwk.update({"alg": self.algorithm, "use": "sig", "kid": uuid.uuid4().hex[:16]})
        env = {
            **os.environ,
            "NODE_ENV": "production",
            "PEER_PORT": str(self.port),
            "PEER_WORKERS": str(self.workers),
            "PEER_REDIS_URL": REDIS_URL,
            "PEER_PREFIX": self.redis_prefix,
            "PEER_CLIENT_ID": self.client_id,
            "PEER_CLIENT_SECRET": self.client_secret,
            "PEER_REDIRECT_URI": REDIRECT_URI,
            "PEER_USERS": str(self.users),
            "PEER_PASSWORD": PASSWORD,
            "PEER_TOTP_SECRET": self.totp_secret,
            "PEER_JWK": json.dumps(jwk),
            "PEER_ALG": self.algorithm,
            "PEER_COOKIE_KEY": secrets.token_urlsafe(32),
        }
        self.log = self.scratch / "peer.log"
        self.proc = subprocess.Popen(
            ["node", "server.mjs"],
            cwd=self.dir,
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_http(f"{self.base}/.well-known/openid-configuration", self.proc)
        time.sleep(1)

    def hash_cost_ms(self) -> float:
        out = subprocess.run(
            ["node", "server.mjs", "--hash-cost", "20"],
            cwd=self.dir,
            capture_output=True,
            text=True,
            check=True,
        )
        return float(out.stdout.strip())

    def walk(self, browser: Browser, url: str, user: int, step: int) -> Reply:
        reply = browser.follow(browser.request("GET", url), lambda loc: False)
        form = re.search(r'action="(/interaction/[^"]+/login)"', reply.text)
        if reply.status != 200 or not form:
            raise RuntimeError(f"no login form: {reply.status} {reply.text[:200]}")
        reply = browser.request(
            "POST", form.group(1), form={"email": f"bench{user}@example.com", "password": PASSWORD}
        )
        reply = browser.follow(reply, lambda loc: False)
        form = re.search(r'action="(/interaction/[^"]+/totp)"', reply.text)
        if reply.status != 200 or not form:
            raise RuntimeError(f"no TOTP form: {reply.status} {reply.text[:200]}")
        reply = browser.request("POST", form.group(1), form={"code": totp(self.totp_secret, step)})
        return browser.follow(reply, _leaves)

    def drop(self) -> None:
        with contextlib.suppress(Exception):
            r = redis_client()
            keys = list(r.scan_iter(match=self.redis_prefix + "*", count=1000))
            for i in range(0, len(keys), 500):
                r.delete(*keys[i : i + 500])
