"""Run the provider the way production does: ``idp serve`` (granian) instances sharing
one PostgreSQL database and one Redis, optionally behind nginx (round robin, no sticky
sessions).

:func:`cluster` creates a fresh database (``idp_test_<hex>``, dropped afterwards), a
Redis key prefix (deleted afterwards), a signing key, a client and a user through the
``idp`` command, then starts the instances with ``idp serve``, exactly as
docs/OPERATIONS.md says.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import PG_URL, REDIS_URL, need, postgres_available, redis_available

ROOT = Path(__file__).resolve().parents[2]
NGINX = "/usr/sbin/nginx"
EMAIL = "cluster.user@example.com"
PASSWORD = "cluster tests need a long passphrase"
CALLBACK = "https://rp.example.com/cb"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bin(name: str) -> str:
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"`{name}` is not installed")
    return found


@dataclass
class Instance:
    port: int
    log_path: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass
class Cluster:
    issuer: str
    env: dict[str, str]
    workdir: Path
    client_id: str
    client_secret: str
    instances: list[Instance] = field(default_factory=list)
    nginx: subprocess.Popen | None = None
    nginx_log: Path | None = None

    def cli(self, *args: str, stdin: str | None = None) -> str:
        proc = subprocess.run(
            [_bin("idp"), *args], env=self.env, cwd=self.workdir, input=stdin,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if proc.returncode != 0:
            pytest.fail(f"idp {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def logs(self) -> str:
        parts = [f"--- instance {i.port} ---\n{i.log()}" for i in self.instances]
        if self.nginx_log is not None and self.nginx_log.exists():
            parts.append(f"--- nginx ---\n{self.nginx_log.read_text(errors='replace')}")
        return "\n".join(parts)


def _wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{url} exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.1)
    pytest.fail(f"{url} not ready within {timeout} s ({last}):\n{log.read_text(errors='replace')}")


def start_instance(c: Cluster, workers: int = 2) -> Instance:
    port = free_port()
    inst = Instance(port, c.workdir / f"instance-{port}.log")
    env = dict(c.env, IDP_BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY=str(workers),
               IDP_GRACEFUL_TIMEOUT="5")  # fmt: skip
    env["PROMETHEUS_MULTIPROC_DIR"] = str(c.workdir / f"metrics-{port}")
    os.makedirs(env["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
    with inst.log_path.open("wb") as log:
        inst.process = subprocess.Popen(
            [_bin("idp"), "serve"],
            env=env, cwd=c.workdir, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    _wait_ready(inst.url, inst.process, inst.log_path)
    c.instances.append(inst)
    return inst


NGINX_CONF = """
worker_processes 1;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream idp {{
        # Plain round robin: no ip_hash, no sticky cookie.
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://idp;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_next_upstream error timeout;
            proxy_connect_timeout 2s;
            proxy_read_timeout 60s;
        }}
    }}
}}
"""


def start_nginx(c: Cluster, port: int) -> None:
    prefix = c.workdir / "nginx"
    prefix.mkdir(exist_ok=True)
    servers = "\n".join(
        f"        server 127.0.0.1:{i.port} max_fails=1 fail_timeout=30s;" for i in c.instances
    )
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, servers=servers, port=port))
    c.nginx_log = prefix / "error.log"
    c.nginx = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    pytest.fail(f"nginx did not start:\n{c.logs()}")


@contextlib.contextmanager
def cluster(
    tmp_path: Path, *, instances: int = 2, workers: int = 2, behind_nginx: bool = True,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Cluster]:  # fmt: skip
    need("postgres", postgres_available(), "nothing listens on 127.0.0.1:5432")
    need("redis", redis_available(), "nothing listens on 127.0.0.1:6379")
    if behind_nginx:
        need("nginx", Path(NGINX).exists(), f"{NGINX} is not installed (apt-get install nginx)")
    import psycopg
    import redis

    tmp_path.mkdir(parents=True, exist_ok=True)
    name = f"idp_test_{uuid.uuid4().hex[:8]}"
    admin = PG_URL.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    front_port = free_port()
    keys = tmp_path / "keys"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(
        IDP_ENV="test",
        IDP_ISSUER=f"http://127.0.0.1:{front_port}",
        IDP_DATABASE_URL=PG_URL.rsplit("/", 1)[0] + f"/{name}",
        IDP_STORE_BACKEND="redis",
        IDP_STORE_REDIS_URL=REDIS_URL,
        IDP_STORE_PREFIX=prefix,
        IDP_KEYS_DIRECTORY=str(keys),
        IDP_PASSWORD_MEMORY_COST="1024",
        IDP_PASSWORD_TIME_COST="1",
        IDP_DELIVERY_OUTBOX=str(tmp_path / "outbox.jsonl"),
        IDP_SERVER_TRUSTED_PROXIES="1" if behind_nginx else "0",
        IDP_MFA_REQUIRED="true",
        IDP_MFA_ENFORCE_FROM="",
        IDP_MFA_RECOMMEND_SECOND="false",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra_env or {})
    c = Cluster(env["IDP_ISSUER"], env, tmp_path, "", "")
    try:
        c.cli("keys", "generate")
        c.cli("db", "upgrade")
        created = json.loads(
            c.cli("clients", "create", "--name", "Cluster RP", "--redirect-uri", CALLBACK,
                  "--first-party", "--json")
        )  # fmt: skip
        c.client_id, c.client_secret = created["client_id"], created["client_secret"]
        c.cli("users", "create", "--email", EMAIL, "--name", "Cluster User",
              stdin=PASSWORD + "\n")  # fmt: skip
        for _ in range(instances):
            start_instance(c, workers)
        if behind_nginx:
            start_nginx(c, front_port)
        else:
            c.issuer = c.instances[0].url
        yield c
    finally:
        if c.nginx is not None:
            c.nginx.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.nginx.wait(timeout=10)
        for inst in c.instances:
            inst.stop()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        r = redis.Redis.from_url(REDIS_URL)
        for key in r.scan_iter(match=f"{prefix}*"):
            r.delete(key)
        r.close()
