"""The provider refuses to start on a broken set-up, with one line that says why."""

from __future__ import annotations

import base64
import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from idp.app import create_app
from idp.config import DEV_SECRET_KEY, ConfigError
from idp.keys import KeyRingError, generate_key
from idp.store import MemoryStore
from tests.conftest import make_settings

IDP = Path(sys.executable).with_name("idp")


def _production(settings, **top):
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    values = {
        "env": "production",
        "issuer": "https://idp.example",
        "secret_key": secrets.token_urlsafe(48),
        "security": replace(
            settings.security, encryption_keys={"k1": key}, active_encryption_key="k1"
        ),
        "ops": replace(settings.ops, metrics_token=secrets.token_urlsafe(24)),
    }
    values.update(top)
    return replace(settings, **values)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert message and "\n" not in message, repr(message)
    return message


# -- create_app -------------------------------------------------------------------


def test_missing_key_directory_is_named(tmp_path, keys_dir):
    missing = tmp_path / "no-such-keys"
    settings = make_settings(tmp_path, missing)
    with pytest.raises(KeyRingError) as exc:
        create_app(settings, store=MemoryStore(), warn=False)
    message = _one_line(exc)
    assert str(missing) in message and "does not exist" in message


def test_empty_key_directory_is_named(tmp_path):
    empty = tmp_path / "keys"
    empty.mkdir()
    settings = make_settings(tmp_path, empty)
    with pytest.raises(KeyRingError) as exc:
        create_app(settings, store=MemoryStore(), warn=False)
    message = _one_line(exc)
    assert str(empty) in message
    assert "no active signing key" in message and "idp keys generate" in message


def test_keys_are_optional_only_when_asked(tmp_path):
    # The CLI's maintenance commands (db upgrade, clients ...) run before keys exist.
    settings = make_settings(tmp_path, tmp_path / "no-such-keys")
    app = create_app(settings, store=MemoryStore(), require_keys=False, warn=False)
    assert app.extensions["idp"].settings is settings


def test_production_refuses_the_development_secret(tmp_path, keys_dir):
    good = _production(make_settings(tmp_path, keys_dir))
    create_app(good, store=MemoryStore(), warn=False)  # control: a proper secret starts

    with pytest.raises(ConfigError) as exc:
        create_app(replace(good, secret_key=DEV_SECRET_KEY), store=MemoryStore(), warn=False)
    message = _one_line(exc)
    assert "secret_key" in message and "production" in message
    assert DEV_SECRET_KEY not in message  # never echo a secret


def test_production_refuses_the_development_secret_from_the_environment(
    tmp_path, keys_dir, monkeypatch
):
    for name in list(os.environ):
        if name.startswith("IDP_") or name == "WEB_CONCURRENCY":
            monkeypatch.delenv(name)
    env = {
        "IDP_ENV": "production",
        "IDP_ISSUER": "https://idp.example",
        "IDP_DATABASE_URL": f"sqlite:///{tmp_path / 'idp.sqlite3'}",
        "IDP_KEYS_DIRECTORY": str(keys_dir),
        "IDP_SECURITY_ENCRYPTION_KEYS": "k1:" + base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "IDP_SECURITY_ACTIVE_ENCRYPTION_KEY": "k1",
        "IDP_OPS_METRICS_TOKEN": secrets.token_urlsafe(24),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as exc:
        create_app(store=MemoryStore(), warn=False)
    assert "secret_key" in _one_line(exc)

    monkeypatch.setenv("IDP_SECRET_KEY", secrets.token_urlsafe(48))
    app = create_app(store=MemoryStore(), warn=False)
    assert app.extensions["idp"].settings.is_production


def test_memory_store_refuses_several_workers(tmp_path, keys_dir, monkeypatch):
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    settings = make_settings(tmp_path, keys_dir)
    two = replace(settings, server=replace(settings.server, workers=2))
    with pytest.raises(ConfigError) as exc:
        create_app(two, store=MemoryStore(), warn=False)
    message = _one_line(exc)
    assert "memory" in message and "workers" in message and "redis" in message

    # gunicorn's WEB_CONCURRENCY counts too.
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    with pytest.raises(ConfigError) as exc:
        create_app(settings, store=MemoryStore(), warn=False)
    assert "WEB_CONCURRENCY" in _one_line(exc)
    monkeypatch.delenv("WEB_CONCURRENCY")

    # Control: with the shared store the same worker count is accepted.
    redis = replace(two, store=replace(two.store, backend="redis"))
    create_app(redis, store=MemoryStore(), warn=False)


# -- the `idp run` command --------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp_path: Path, keys: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.pop("WEB_CONCURRENCY", None)
    port = _free_port()
    env.update(
        IDP_DATABASE_URL=f"sqlite:///{tmp_path / 'x.sqlite3'}",
        IDP_KEYS_DIRECTORY=str(keys),
        IDP_PASSWORD_MEMORY_COST="1024",
        IDP_PASSWORD_TIME_COST="1",
        IDP_SERVER_PORT=str(port),
        IDP_ISSUER=f"http://127.0.0.1:{port}",
    )
    env.update(extra)
    return env


def _run(env: dict[str, str]) -> subprocess.CompletedProcess:
    # A server that wrongly starts is killed by the timeout (and the test fails).
    return subprocess.run(
        [str(IDP), "run"], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def test_run_without_keys_exits_with_a_hint(tmp_path):
    missing = tmp_path / "keys"
    result = _run(_env(tmp_path, missing))
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and str(missing) in lines[0]
    assert result.stderr.count("idp keys generate") == 1
    assert result.stdout == ""


def test_run_with_an_empty_key_directory_exits_with_one_hint(tmp_path):
    empty = tmp_path / "keys"
    empty.mkdir()
    result = _run(_env(tmp_path, empty))
    assert result.returncode == 2, result
    assert str(empty) in result.stderr and "no active signing key" in result.stderr
    assert result.stderr.count("idp keys generate") == 1


def test_run_with_a_bad_config_names_it_without_the_keys_hint(tmp_path):
    bad = tmp_path / "idp.toml"
    bad.write_text("[server]\nworkerz = 2\n")
    result = _run(_env(tmp_path, tmp_path / "keys", IDP_CONFIG=str(bad)))
    assert result.returncode == 2, result
    assert "workerz" in result.stderr and "workers" in result.stderr
    assert "keys generate" not in result.stderr  # the keys are not the problem


def test_run_serves_discovery_once_keys_exist(tmp_path):
    keys = tmp_path / "keys"
    generate_key(keys, "RS256")
    env = _env(tmp_path, keys)
    issuer = env["IDP_ISSUER"]
    proc = subprocess.Popen(  # noqa: S603
        [str(IDP), "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                resp = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "idp run never started listening"
                time.sleep(0.1)
        assert resp.status_code == 200
        assert resp.json()["issuer"] == issuer
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
