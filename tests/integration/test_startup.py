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


def _run(env: dict[str, str], command: str = "run") -> subprocess.CompletedProcess:
    # A server that wrongly starts is killed by the timeout (and the test fails).
    return subprocess.run(
        [str(IDP), command], env=env, capture_output=True, text=True, timeout=30, check=False
    )


#: The development server and the production server refuse the same way.
SERVERS = pytest.mark.parametrize("command", ["run", "serve"])


@SERVERS
def test_run_without_keys_exits_with_a_hint(tmp_path, command):
    missing = tmp_path / "keys"
    result = _run(_env(tmp_path, missing), command)
    assert result.returncode == 1, result  # refused (not a usage error)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and str(missing) in lines[0]
    assert result.stderr.count("idp keys generate") == 1
    assert result.stdout == ""


@SERVERS
def test_run_with_an_empty_key_directory_exits_with_one_hint(tmp_path, command):
    empty = tmp_path / "keys"
    empty.mkdir()
    result = _run(_env(tmp_path, empty), command)
    assert result.returncode == 1, result
    assert str(empty) in result.stderr and "no active signing key" in result.stderr
    assert result.stderr.count("idp keys generate") == 1


@SERVERS
def test_run_with_a_bad_config_names_it_without_the_keys_hint(tmp_path, command):
    bad = tmp_path / "idp.toml"
    bad.write_text("[server]\nworkerz = 2\n")
    result = _run(_env(tmp_path, tmp_path / "keys", IDP_CONFIG=str(bad)), command)
    assert result.returncode == 1, result
    assert "workerz" in result.stderr and "workers" in result.stderr
    assert "keys generate" not in result.stderr  # the keys are not the problem


def test_run_serves_discovery_once_keys_exist(tmp_path):
    keys = tmp_path / "keys"
    generate_key(keys, "RS256")
    env = _env(tmp_path, keys)
    issuer = env["IDP_ISSUER"]
    # Discovery lists the API resources' scopes: the database is migrated first, as
    # `make run` and the runbook do.
    subprocess.run([str(IDP), "db", "upgrade"], env=env, check=True, capture_output=True)  # noqa: S603
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


# -- one serving process on the in-memory store, whatever starts it ---------------------

GUNICORN = Path(sys.executable).with_name("gunicorn")
ROOT = Path(__file__).resolve().parents[2]


def _serving_env(tmp_path: Path) -> dict[str, str]:
    keys = tmp_path / "keys"
    if not keys.exists():
        generate_key(keys, "RS256")
    env = _env(tmp_path, keys)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
    (tmp_path / "metrics").mkdir(exist_ok=True)
    subprocess.run([str(IDP), "db", "upgrade"], env=env, check=True, capture_output=True)
    return env


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 20) -> requests.Response:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.communicate()
        try:
            return requests.get(url, timeout=2)
        except requests.ConnectionError:
            assert time.monotonic() < deadline, f"{url} never answered"
            time.sleep(0.1)


def _stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return (out or "") + (err or "")


def test_gunicorn_with_two_workers_on_the_memory_store_refuses_to_start(tmp_path):
    # `-w 2` on the command line: no setting or WEB_CONCURRENCY tells the settings check.
    env = _serving_env(tmp_path)
    port = _free_port()
    done = subprocess.run(
        [str(GUNICORN), "-w", "2", "-b", f"127.0.0.1:{port}", "idp.wsgi:app"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 3, done  # gunicorn: "Worker failed to boot", master stops
    output = done.stdout + done.stderr
    assert "Worker failed to boot" in output
    assert "[store] backend 'memory'" in output and "already serves this provider" in output
    assert "Traceback" not in output

    # Control: one worker serves.
    proc = subprocess.Popen(  # noqa: S603
        [str(GUNICORN), "-w", "1", "-b", f"127.0.0.1:{port}", "idp.wsgi:app"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert _wait_http(f"http://127.0.0.1:{port}/healthz", proc).status_code == 200
    finally:
        _stop(proc)


def test_preloaded_gunicorn_workers_refuse_requests(tmp_path):
    # --preload: the app is built once in the master and the workers are forked from it,
    # so only the first request of each worker can tell there are two of them.
    env = _serving_env(tmp_path)
    port = _free_port()
    proc = subprocess.Popen(  # noqa: S603
        [str(GUNICORN), "--preload", "-w", "2", "-b", f"127.0.0.1:{port}", "idp.wsgi:app"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/healthz"
        _wait_http(url, proc)
        deadline = time.monotonic() + 20
        refused = 0
        while refused < 10:  # both workers have refused: ten refusals in a row
            assert time.monotonic() < deadline, "the second worker was never refused"
            resp = requests.get(url, timeout=5)
            refused = refused + 1 if resp.status_code == 503 else 0
        assert "[store] backend 'memory'" in resp.text and "redis" in resp.text
    finally:
        output = _stop(proc)
    assert "refusing requests" in output


def test_a_second_idp_run_is_refused(tmp_path):
    env = _serving_env(tmp_path)
    first = subprocess.Popen(  # noqa: S603
        [str(IDP), "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_http(f"{env['IDP_ISSUER']}/healthz", first)
        second_env = {**env, "IDP_SERVER_PORT": str(_free_port())}
        second = _run(second_env)
        assert second.returncode == 1, second
        assert "already serves this provider" in second.stderr
        assert "Traceback" not in second.stderr
        # The first one still serves.
        assert requests.get(f"{env['IDP_ISSUER']}/healthz", timeout=5).status_code == 200
    finally:
        _stop(first)
    # Once it is gone, a new one may serve (the kernel released the lock).
    again = subprocess.Popen(  # noqa: S603
        [str(IDP), "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert _wait_http(f"{env['IDP_ISSUER']}/healthz", again).status_code == 200
    finally:
        _stop(again)


# -- start-up warnings: once per process start ------------------------------------------


def test_warnings_are_printed_once_by_the_gunicorn_master_not_per_worker(tmp_path):
    from idp.config import load_settings

    env = _serving_env(tmp_path)
    env.update(IDP_STORE_BACKEND="redis", IDP_STORE_REDIS_URL="redis://127.0.0.1:1/0",
               WEB_CONCURRENCY="3")  # fmt: skip
    port = _free_port()
    proc = subprocess.Popen(  # noqa: S603
        [str(GUNICORN), "-c", str(ROOT / "gunicorn.conf.py"), "-b", f"127.0.0.1:{port}",
         "idp.wsgi:app"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        time.sleep(1)  # every worker has booted
    finally:
        output = _stop(proc)
    assert output.count("Booting worker") == 3
    settings = load_settings(environ={k: v for k, v in env.items() if k.startswith("IDP_")})
    from idp.app import startup_warnings

    expected = startup_warnings(settings)
    assert expected and any("secret_key" in w for w in expected)
    for warning in expected:
        assert output.count(warning) == 1, (warning, output)


def test_commands_do_not_print_the_start_up_warnings(tmp_path):
    env = _serving_env(tmp_path)
    env.update(IDP_ENV="production", IDP_ISSUER="https://idp.example",
               IDP_SECRET_KEY=secrets.token_urlsafe(48),
               IDP_SECURITY_ENCRYPTION_KEYS="k1:" + base64.urlsafe_b64encode(os.urandom(32)).decode(),
               IDP_SECURITY_ACTIVE_ENCRYPTION_KEY="k1",
               IDP_OPS_METRICS_TOKEN=secrets.token_urlsafe(24))  # fmt: skip
    done = subprocess.run([str(IDP), "users", "list"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done
    assert "console" not in done.stderr and "warning" not in done.stderr.lower(), done.stderr


def test_create_app_warns_once_per_process(tmp_path, keys_dir, caplog):
    import idp.app

    settings = make_settings(tmp_path, keys_dir)
    idp.app._WARNED.clear()
    with caplog.at_level("WARNING", logger="idp"):
        for _ in range(3):
            create_app(settings, store=MemoryStore())
    lines = [r.getMessage() for r in caplog.records if r.name == "idp"]
    assert lines and len(lines) == len(set(lines)) == len(idp.app.startup_warnings(settings))


# -- database URLs ---------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_postgres_urls_are_read_as_psycopg(tmp_path, keys_dir, scheme):
    settings = make_settings(tmp_path, keys_dir)
    url = f"{scheme}://idp:pw@127.0.0.1:5432/idp"
    app = create_app(replace(settings, database=replace(settings.database, url=url)),
                     store=MemoryStore(), warn=False)  # fmt: skip
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://idp:pw@127.0.0.1:5432/idp"


def test_an_unsupported_database_url_is_one_line(tmp_path, keys_dir):
    settings = make_settings(tmp_path, keys_dir)
    bad = replace(settings, database=replace(settings.database, url="mysql://idp@db/idp"))
    with pytest.raises(ConfigError) as exc:
        create_app(bad, store=MemoryStore(), warn=False)
    assert "'mysql' is not supported" in _one_line(exc)


# -- idp serve: granian -----------------------------------------------------------------


def test_serve_refuses_two_workers_on_the_memory_store(tmp_path):
    env = _serving_env(tmp_path)
    result = _run({**env, "WEB_CONCURRENCY": "2"}, "serve")
    assert result.returncode == 1, result
    assert "[store] backend 'memory'" in result.stderr and "WEB_CONCURRENCY" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name, value", [("IDP_BIND", "nowhere"), ("IDP_THREADS", "many"),
                                         ("WEB_CONCURRENCY", "0")])  # fmt: skip
def test_serve_names_a_bad_server_variable_in_one_line(tmp_path, name, value):
    env = _serving_env(tmp_path)
    result = _run({**env, name: value}, "serve")
    assert result.returncode == 1, result
    assert result.stderr.startswith(f"error: {name} ") and "Traceback" not in result.stderr


@pytest.mark.redis
def test_serve_warns_once_serves_from_every_worker_and_stops_cleanly(tmp_path):
    from idp.app import startup_warnings
    from idp.config import load_settings
    from tests.conftest import REDIS_URL

    env = _serving_env(tmp_path)
    port = _free_port()
    env.update(IDP_STORE_BACKEND="redis", IDP_STORE_REDIS_URL=REDIS_URL,
               IDP_STORE_PREFIX=f"serve:{secrets.token_hex(4)}:", WEB_CONCURRENCY="3",
               IDP_BIND=f"127.0.0.1:{port}")  # fmt: skip
    proc = subprocess.Popen(  # noqa: S603
        [str(IDP), "serve"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert _wait_http(f"http://127.0.0.1:{port}/healthz", proc).status_code == 200
        for _ in range(20):
            assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok
    finally:
        proc.terminate()  # SIGTERM: requests in flight finish, then a clean exit
        out, err = proc.communicate(timeout=40)
    output = out + err
    assert proc.returncode == 0, output
    assert output.count("Spawning worker") == 3 and "Traceback" not in output
    settings = load_settings(environ={k: v for k, v in env.items() if k.startswith("IDP_")})
    expected = startup_warnings(settings)
    assert expected and any("secret_key" in w for w in expected)
    for warning in expected:
        assert output.count(warning) == 1, (warning, output)
