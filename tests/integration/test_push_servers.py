"""Push approval the way production runs it: two workers sharing PostgreSQL and Redis
under either supported server (granian through ``idp serve``, the default, and gunicorn
with gthread workers), and the real ``idp-verify`` app as a separate process.

The browser side is driven over real HTTP by the mock relying party. The app's
long-poll waits on Redis pub/sub in one worker while the browser's requests land on
either worker, so every step crosses processes through the store.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from clients.mockrp import MockRP
from clients.mockrp.transport import HTTPTransport
from tests.conftest import PG_URL, REDIS_URL, need, postgres_available, redis_available
from tests.integration.mfa_helpers import link, path_of, submit, walk
from tests.integration.push_helpers import continue_form, enroll_uri, number_on

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2]
EMAIL = "push.user@example.com"
PASSWORD = "push approval needs a long passphrase"
CALLBACK = "https://rp.example.com/cb"
AAL2 = "http://idmanagement.gov/ns/assurance/aal/2"
CHALLENGE_TTL = 8


def _bin(name: str) -> str:
    path = Path(sys.executable).with_name(name)
    if not path.exists():
        pytest.fail(f"`{name}` is not installed next to {sys.executable} (pip install -e .)")
    return str(path)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Provider:
    issuer: str
    env: dict[str, str]
    client_id: str
    client_secret: str
    log_path: Path
    workdir: Path
    server: str = ""
    prefix: str = ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _cli(env, cwd, *args, stdin=None) -> str:
    proc = subprocess.run(
        [_bin("idp"), *args],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"idp {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


#: Threads per worker: at most half of them hold a push long-poll.
THREADS = 4


@pytest.fixture(scope="module", params=["granian", "gunicorn"])
def provider(request, tmp_path_factory) -> Iterator[Provider]:
    need("postgres", postgres_available(), "nothing listens on 127.0.0.1:5432")
    need("redis", redis_available(), "nothing listens on 127.0.0.1:6379")
    import psycopg
    import redis

    workdir = tmp_path_factory.mktemp("push-gunicorn")
    name = f"idp_test_{uuid.uuid4().hex[:8]}"
    prefix = f"pushtest:{uuid.uuid4().hex[:8]}:"
    admin = PG_URL.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    port = _free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IDP_", "WEB_CONCURRENCY"))}
    env.update(
        IDP_ENV="test",
        IDP_ISSUER=issuer,
        IDP_DATABASE_URL=PG_URL.rsplit("/", 1)[0] + f"/{name}",
        IDP_STORE_BACKEND="redis",
        IDP_STORE_REDIS_URL=REDIS_URL,
        IDP_STORE_PREFIX=prefix,
        IDP_KEYS_DIRECTORY=str(workdir / "keys"),
        IDP_PASSWORD_MEMORY_COST="1024",
        IDP_PASSWORD_TIME_COST="1",
        IDP_DELIVERY_OUTBOX=str(workdir / "outbox.jsonl"),
        IDP_MFA_REQUIRED="true",
        IDP_PUSH_CHALLENGE_TTL=str(CHALLENGE_TTL),
        IDP_PUSH_SENDS_PER_USER="50",
        # The crowd test opens more long-polls than the workers have threads.
        IDP_PUSH_MAX_POLLS_PER_DEVICE="10",
        IDP_THREADS=str(THREADS),
        # Every test signs in again from 127.0.0.1.
        IDP_LOGIN_FAILURES_PER_ACCOUNT_IP_PER_MINUTE="100",
        IDP_LOGIN_PER_IP_PER_MINUTE="100",
        PYTHONUNBUFFERED="1",
    )
    proc = None
    try:
        _cli(env, workdir, "db", "upgrade")
        _cli(env, workdir, "keys", "generate")
        client = json.loads(
            _cli(
                env,
                workdir,
                "clients",
                "create",
                "--name",
                "Connexion",
                "--redirect-uri",
                CALLBACK,
                "--first-party",
                "--json",
            )
        )
        _cli(
            env,
            workdir,
            "users",
            "create",
            "--email",
            EMAIL,
            "--name",
            "Push User",
            stdin=PASSWORD + "\n",
        )
        log_path = workdir / f"{request.param}.log"
        if request.param == "granian":
            command = [_bin("idp"), "serve"]
            env.update(IDP_BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY="2")
        else:
            command = [_bin("gunicorn"), "--chdir", str(ROOT), "-w", "2", "-k", "gthread",
                       "--threads", str(THREADS), "-b", f"127.0.0.1:{port}", "--timeout", "60",
                       "wsgi:app"]  # fmt: skip
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                command, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT
            )
        p = Provider(issuer, env, client["client_id"], client["client_secret"], log_path, workdir)
        p.server, p.prefix = request.param, prefix
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(
                    f"{issuer}/.well-known/openid-configuration", timeout=2
                ):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"{request.param} did not start:\n{p.log()}")
                time.sleep(0.2)
        yield p
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        r = redis.Redis.from_url(REDIS_URL)
        for key in r.scan_iter(match=f"{prefix}*"):
            r.delete(key)
        r.close()


@pytest.fixture(scope="module")
def app_state(provider, tmp_path_factory) -> Path:
    """The app's state, one per provider (server) under test."""
    return tmp_path_factory.mktemp(f"idp-verify-{provider.server}") / "accounts.json"


def verify(state: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the real ``idp-verify`` command."""
    return subprocess.run(
        [_bin("idp-verify"), "--state", str(state), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def browser(p: Provider) -> MockRP:
    return MockRP(
        p.issuer, p.client_id, CALLBACK, client_secret=p.client_secret, transport=HTTPTransport()
    )


def get(rp: MockRP, href: str):
    return rp.transport.request("GET", href if href.startswith("http") else rp.issuer + href)


def finish(rp: MockRP, resp) -> dict:
    result = rp.resume(resp, email=EMAIL, password=PASSWORD)
    assert result.code, result
    tokens = rp.exchange_code(result)
    return rp.verify_id_token(tokens.id_token, nonce=result.nonce, access_token=tokens.access_token)


def push_page(p: Provider):
    """A new browser past the password, on the push challenge with a request sent."""
    rp = browser(p)
    resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/challenge", resp.url
    sent = submit(rp, resp, button=("action", "send"))
    assert sent.status == 302, sent.text
    return rp, get(rp, sent.location)


def push_status(rp: MockRP) -> str:
    return rp.transport.request("GET", f"{rp.issuer}/mfa/push/status").json()["status"]


@pytest.fixture(scope="module")
def enrolled(provider, app_state) -> Path:
    """Enroll with the real app: the browser shows the link, the app registers."""
    rp = browser(provider)
    resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/setup"
    page = get(rp, link(resp, "/mfa/setup/push"))
    done = verify(app_state, "enroll", enroll_uri(page), "--name", "CI phone")
    assert done.returncode == 0, done.stderr
    assert "Registered this device" in done.stdout
    assert oct(app_state.stat().st_mode & 0o777) == "0o600"
    status = rp.transport.request("GET", f"{provider.issuer}/mfa/push/enroll/status").json()
    assert status == {"status": "enrolled"}
    claims = finish(rp, submit(rp, page))
    assert claims["acr"] == AAL2 and claims["amr"] == ["mfa", "pwd", "swk"]
    return app_state


def test_two_workers_serve_the_provider(provider):
    booted = r"Spawning worker-\d" if provider.server == "granian" else r"Booting worker with pid"
    assert len(re.findall(booted, provider.log())) >= 2


def test_a_crowd_of_long_polls_does_not_starve_sign_ins(provider, enrolled):
    """More long-polls than the workers have threads: each worker holds at most half
    its threads' worth and answers the others at once (503, try again), so a sign-in
    goes through while the held ones still wait."""
    import redis

    crowd = 2 * THREADS + 2
    polls = [
        subprocess.Popen([_bin("idp-verify"), "--state", str(enrolled), "pending", "--wait", "20"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(crowd)
    ]  # fmt: skip
    r = redis.Redis.from_url(REDIS_URL)
    try:
        # Every poll is either held (a slot in the store) or already answered busy.
        deadline = time.monotonic() + 30
        while True:
            held = sum(r.scard(k) for k in r.scan_iter(match=f"{provider.prefix}push:polls:*")
                       if b"refused" not in k)  # fmt: skip
            answered = sum(p.poll() is not None for p in polls)
            if held + answered >= crowd and held > 0:
                break
            assert time.monotonic() < deadline, (held, answered)
            time.sleep(0.2)
        rp = browser(provider)
        resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
        assert path_of(resp) == "/mfa/challenge", resp.url
        waiting = [p for p in polls if p.poll() is None]
        assert 0 < len(waiting) <= THREADS  # half the threads of each of the two workers
        for p in polls:
            if p.poll() is not None:
                _out, err = p.communicate()
                assert p.returncode != 0 and "busy" in err, err
    finally:
        for p in polls:
            if p.poll() is None:
                p.kill()
            p.communicate()
        r.close()


def test_sign_in_approved_in_the_listening_app_gets_tokens(provider, enrolled):
    """The app long-polls (Redis pub/sub) before the request exists; the user picks the
    number the browser shows, and the browser gets its tokens."""
    listener = subprocess.Popen(
        [_bin("idp-verify"), "--state", str(enrolled), "listen", "--once", "--timeout", "30"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # the app is waiting before the browser sends
        rp, page = push_page(provider)
        number = number_on(page)
        out, err = listener.communicate(f"{number}\n", timeout=30)
    finally:
        if listener.poll() is None:
            listener.kill()
    assert listener.returncode == 0, err
    assert "Application: Connexion" in out and "From: 127.0.0.1" in out and "Approved." in out
    assert push_status(rp) == "approved"
    claims = finish(rp, rp.submit_form(continue_form(page)))
    assert claims["acr"] == AAL2 and claims["amr"] == ["mfa", "pwd", "swk"]


def test_approve_command_with_the_right_number(provider, enrolled):
    rp, page = push_page(provider)
    done = verify(enrolled, "approve", str(number_on(page)), "--wait", "10")
    assert done.returncode == 0 and "Approved." in done.stdout, done.stderr
    assert finish(rp, rp.submit_form(continue_form(page)))["acr"] == AAL2


def test_wrong_number_is_refused_and_the_sign_in_cannot_continue(provider, enrolled):
    rp, page = push_page(provider)
    pending = json.loads(verify(enrolled, "pending", "--json", "--wait", "10").stdout)
    wrong = next(n for n in pending[0]["choices"] if n != number_on(page))
    done = verify(enrolled, "approve", str(wrong), "--wait", "10")
    assert done.returncode == 1 and "not the number shown" in done.stderr
    assert push_status(rp) == "wrong_number"
    resp = rp.submit_form(continue_form(page))
    assert resp.status == 400 and "wrong number was chosen" in resp.text


def test_deny_shows_a_clear_message(provider, enrolled):
    rp, page = push_page(provider)
    done = verify(enrolled, "deny", "--wait", "10")
    assert done.returncode == 0 and done.stdout.strip() == "Denied."
    assert push_status(rp) == "denied"
    again = get(rp, page.url)
    assert "denied in the app" in again.text and "Send a new request" in again.text


def test_timeout_then_retry(provider, enrolled):
    rp, page = push_page(provider)
    pending = json.loads(verify(enrolled, "pending", "--json", "--wait", "10").stdout)
    time.sleep(CHALLENGE_TTL + 1)
    assert push_status(rp) == "expired"
    late = verify(enrolled, "approve", str(number_on(page)), "--challenge", pending[0]["id"])
    assert late.returncode == 1 and "expired" in late.stderr
    again = get(rp, page.url)
    assert "This request expired. Send a new one." in again.text
    sent = submit(rp, again, button=("action", "send"))
    page = get(rp, sent.location)
    done = verify(enrolled, "approve", str(number_on(page)), "--wait", "10")
    assert done.returncode == 0, done.stderr
    assert finish(rp, rp.submit_form(continue_form(page)))["acr"] == AAL2
