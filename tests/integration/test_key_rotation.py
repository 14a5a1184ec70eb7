"""`idp keys rotate` reaches every running instance without a restart.

Two real provider processes (`idp run`) share PostgreSQL, Redis and the key directory,
as two instances behind a load balancer do. After `idp keys rotate` (a third process),
both sign with the new key and publish the new next key within the bounded time of
idp/keys/shared.py, and a token signed before the rotation by one instance still
verifies at the other.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from idp.keys import generate_key, list_keys
from idp.keys.shared import CHECK_INTERVAL
from tests.conftest import REDIS_URL, need, redis_available

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

IDP = Path(sys.executable).with_name("idp")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kid(token: str) -> str:
    header = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]


@pytest.fixture
def cluster(tmp_path, pg_database) -> Iterator[tuple[dict[str, str], list[str]]]:
    need("redis", redis_available(), "nothing listens on 127.0.0.1:6379")
    keys = tmp_path / "keys"
    generate_key(keys, "RS256")
    generate_key(keys, "RS256")  # the next key, published before it signs
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.pop("WEB_CONCURRENCY", None)
    env.update(
        IDP_DATABASE_URL=pg_database,
        IDP_STORE_BACKEND="redis",
        IDP_STORE_REDIS_URL=REDIS_URL,
        IDP_STORE_PREFIX=f"test:{uuid.uuid4().hex[:8]}:",
        IDP_KEYS_DIRECTORY=str(keys),
        IDP_PASSWORD_MEMORY_COST="1024",
        IDP_PASSWORD_TIME_COST="1",
    )
    subprocess.run([str(IDP), "db", "upgrade"], env=env, check=True, capture_output=True)
    procs, urls = [], []
    try:
        for _ in range(2):
            port = _free_port()
            url = f"http://127.0.0.1:{port}"
            # One issuer for both, as behind a load balancer.
            proc_env = {**env, "IDP_SERVER_PORT": str(port), "IDP_ISSUER": "http://idp.test"}
            procs.append(subprocess.Popen(  # noqa: S603
                [str(IDP), "run"], env=proc_env, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True,
            ))  # fmt: skip
            urls.append(url)
        for proc, url in zip(procs, urls, strict=True):
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, proc.communicate()
                try:
                    requests.get(f"{url}/healthz", timeout=2)
                    break
                except requests.ConnectionError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
        yield env, urls
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _client(env: dict[str, str]) -> tuple[str, str]:
    out = subprocess.run(
        [str(IDP), "clients", "create", "--name", "svc", "--grant-type", "client_credentials",
         "--scope", "", "--json"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    data = json.loads(out)
    return data["client_id"], data["client_secret"]


def _token(url: str, client: tuple[str, str]) -> str:
    resp = requests.post(f"{url}/token", data={"grant_type": "client_credentials"},
                         auth=client, timeout=10)  # fmt: skip
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


def _jwks_kids(url: str) -> set[str]:
    return {k["kid"] for k in requests.get(f"{url}/jwks", timeout=10).json()["keys"]}


def test_rotation_reaches_every_instance_without_a_restart(cluster):
    env, urls = cluster
    client = _client(env)
    active, nxt = (k.kid for k in list_keys(env["IDP_KEYS_DIRECTORY"]))
    before = {}
    for url in urls:
        token = _token(url, client)
        assert _kid(token) == active
        assert _jwks_kids(url) == {active, nxt}
        before[url] = token

    rotated = subprocess.run([str(IDP), "keys", "rotate", "--json"], env=env, check=True,
                             capture_output=True, text=True)  # fmt: skip
    report = json.loads(rotated.stdout)
    assert report["active"]["kid"] == nxt and report["retired"]["kid"] == active
    fresh = report["next"]["kid"]
    assert "announced in the store" in report["propagation"]
    start = time.monotonic()

    switched: dict[str, float] = {}
    while len(switched) < len(urls):
        for url in urls:
            if url not in switched and _kid(_token(url, client)) == nxt:
                # Signing and publishing change together: the JWKS has the new ring.
                assert _jwks_kids(url) == {active, nxt, fresh}
                switched[url] = time.monotonic() - start
        assert time.monotonic() - start < CHECK_INTERVAL + 4, f"not switched: {switched}"
        time.sleep(0.05)

    # Tokens signed before the rotation, by either instance, verify at the other one.
    for signer, checker in ((urls[0], urls[1]), (urls[1], urls[0])):
        resp = requests.post(f"{checker}/introspect", data={"token": before[signer]},
                             auth=client, timeout=10)  # fmt: skip
        assert resp.status_code == 200 and resp.json()["active"] is True, resp.text
    print(f"switched after {switched}")  # noqa: T201 - recorded in docs/OPERATIONS.md
