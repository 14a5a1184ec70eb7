"""Secrets in URLs never reach a log: the emailed links (``/verify/<token>``,
``/reset/<token>``, ``/account/email/confirm/<token>``), the push status handle and
credentials in query strings are replaced by ``[redacted]`` in gunicorn's access and
error logs, the development server's request log and the provider's own text and JSON
logs (OWASP ASVS 4.0 V7.1.1; RFC 6750 section 5.3).

The secret routes are found from the URL map, so the walk over ``app.url_map`` below
covers routes added after this test was written.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import runpy
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
_VARIABLE = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")


def link_token() -> str:
    """A value shaped like an emailed link token (``<expiry>.<id>.<signature>``)."""
    return f"{int(time.time()) + 3600}.{secrets.token_urlsafe(18)}.{secrets.token_urlsafe(32)}"


def _sample_path(rule_text: str) -> tuple[str, dict[str, str]]:
    """The rule's path with a distinctive value for every argument."""
    values: dict[str, str] = {}

    def fill(m: re.Match[str]) -> str:
        name, converter = m["name"], m["converter"]
        if converter == "int":
            value = str(900000 + len(values))
        elif converter == "path":
            value = f"css/{secrets.token_hex(8)}.css"
        else:
            value = link_token()
        values[name] = value
        return value

    return _VARIABLE.sub(fill, rule_text), values


# -- the URL map --------------------------------------------------------------------------


def test_every_rule_with_a_secret_is_redacted_in_every_shape(app):
    """Walk the URL map: every argument not declared public is redacted wherever the
    path appears (request line, URL in a message, JSON), and public ones are kept."""
    from idp.ops.logs import PUBLIC_ARGUMENTS, REDACTED, redact

    checked = 0
    for rule in app.url_map.iter_rules():
        if not rule.arguments:
            continue
        path, values = _sample_path(rule.rule)
        shapes = (
            f"GET {path}?next=%2Fhome HTTP/1.1",
            f"link https://id.example.gov{path} sent",
            json.dumps({"path": path}),
            f'10.0.0.1 "POST {path} HTTP/1.1" 400 12 3ms rid=-',
        )
        for line in shapes:
            out = redact(line, app.url_map)
            for name, value in values.items():
                if name in PUBLIC_ARGUMENTS:
                    assert value in out, (rule.rule, out)
                else:
                    assert value not in out and REDACTED in out, (rule.rule, out)
        checked += 1
    assert checked >= 10


def test_the_emailed_links_and_the_push_handle_are_secret_routes(app):
    from idp.ops.logs import PUBLIC_ARGUMENTS, secret_rules

    found = {rule.rule for rule in secret_rules(app.url_map)}
    assert {
        "/verify/<token>",
        "/reset/<token>",
        "/account/email/confirm/<token>",
        "/push/v1/status/<handle>",
    } <= found
    # The public list names only arguments that exist (no stale exemptions).
    used = {name for rule in app.url_map.iter_rules() for name in rule.arguments}
    assert used >= PUBLIC_ARGUMENTS


def test_a_new_link_route_is_redacted_without_being_listed(app):
    from idp.ops.logs import REDACTED, redact

    secret = link_token()
    assert redact(f"GET /verify/{secret} HTTP/1.1", app.url_map).count(REDACTED) == 1
    app.add_url_rule("/invite/<code>", "invite_test", lambda code: "")
    assert redact(f"GET /invite/{secret} HTTP/1.1", app.url_map) == (
        f"GET /invite/{REDACTED} HTTP/1.1"
    )


def test_credentials_in_query_strings_are_redacted(app):
    from idp.ops.logs import REDACTED, redact

    hint = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl"
    line = f"GET /logout?id_token_hint={hint}&post_logout_redirect_uri=https%3A%2F%2Frp HTTP/1.1"
    assert redact(line, app.url_map) == (
        f"GET /logout?id_token_hint={REDACTED}&post_logout_redirect_uri=https%3A%2F%2Frp HTTP/1.1"
    )
    for name in ("access_token", "refresh_token", "client_secret", "code", "Token"):
        out = redact(f"POST /token?x=1&{name}=s3cr3t-value HTTP/1.1", app.url_map)
        assert "s3cr3t-value" not in out and f"{name}={REDACTED}" in out
    # Public parameters, including ones that merely start like a secret one, stay.
    line = "GET /authorize?response_type=code&code_challenge=abc&state=xyz HTTP/1.1"
    assert redact(line, app.url_map) == line


def test_paths_without_secrets_are_untouched(app):
    from idp.ops.logs import redact

    for line in (
        "GET /signin?next=/account/security HTTP/1.1",
        "GET /static/idp.css HTTP/1.1",
        "POST /admin/users/42/action HTTP/1.1",
        "GET /reset HTTP/1.1",
        "settings loaded from /etc/idp/idp.toml",
    ):
        assert redact(line, app.url_map) == line


def test_before_any_app_is_built_long_tokens_in_paths_are_redacted(monkeypatch):
    """A process that has not built the application yet has no URL map: any path
    segment long enough to be one of the provider's secrets is redacted instead."""
    from idp.ops import logs

    monkeypatch.setattr(logs, "_current", None)
    token, handle = link_token(), secrets.token_urlsafe(32)
    assert logs.redact(f"GET /verify/{token}?a=1 HTTP/1.1") == "GET /verify/[redacted]?a=1 HTTP/1.1"
    assert logs.redact(f"/push/v1/status/{handle}") == "/push/v1/status/[redacted]"
    assert logs.redact("GET /logout?id_token_hint=x.y.z HTTP/1.1") == (
        "GET /logout?id_token_hint=[redacted] HTTP/1.1"
    )
    for line in ("GET /admin/users/42 HTTP/1.1", "GET /static/idp.css HTTP/1.1"):
        assert logs.redact(line) == line


# -- the provider's own logs --------------------------------------------------------------


@pytest.fixture
def idp_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    yield stream
    logger = logging.getLogger("idp")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_provider_logs_redact_urls_in_messages_and_tracebacks(app, idp_log, log_format):
    """No URL map is passed: the formatters use the application built in this process."""
    from idp.ops import configure_logging

    configure_logging(log_format, "INFO", stream=idp_log)
    token, handle = link_token(), secrets.token_urlsafe(32)
    log = logging.getLogger("idp.test")
    log.info("sent https://id.example.gov/reset/%s to ada", token)
    try:
        raise ValueError(f"cannot serve /push/v1/status/{handle}")
    except ValueError:
        log.exception("failed on /account/email/confirm/%s", token)
    out = idp_log.getvalue()
    assert token not in out and handle not in out, out
    assert "https://id.example.gov/reset/[redacted] to ada" in out
    assert "/push/v1/status/[redacted]" in out and "/account/email/confirm/[redacted]" in out
    if log_format == "json":
        assert all(json.loads(line) for line in out.splitlines())


# -- the development server (idp run) ----------------------------------------------------


def _plain(text: str) -> str:
    """*text* without the colours the development server adds to request lines."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, method: str = "GET") -> int:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@dataclass
class Secrets:
    token: str
    handle: str
    hint: str

    def paths(self) -> list[tuple[str, str]]:
        return [
            ("GET", f"/verify/{self.token}"),
            ("GET", f"/reset/{self.token}"),
            ("GET", f"/mfa/challenge?reset={self.token}"),
            ("GET", f"/account/email/confirm/{self.token}"),
            ("GET", f"/push/v1/status/{self.handle}"),
            ("GET", f"/logout?id_token_hint={self.hint}"),
        ]

    def values(self) -> tuple[str, ...]:
        return (self.token, self.handle, self.hint, self.token.split(".")[1])


def _secrets() -> Secrets:
    return Secrets(
        token=link_token(),
        handle=secrets.token_urlsafe(32),
        hint=f"eyJ{secrets.token_urlsafe(20)}.eyJ{secrets.token_urlsafe(30)}.{secrets.token_urlsafe(40)}",
    )


def test_werkzeug_filter_redacts_the_request_log(app):
    """The filter ``idp run`` installs on the ``werkzeug`` logger, with the real
    development server answering real requests."""
    from werkzeug.serving import make_server

    from idp.ops.logs import RedactFilter, install_werkzeug_redaction

    logger = logging.getLogger("werkzeug")
    for f in [f for f in logger.filters if isinstance(f, RedactFilter)]:
        logger.removeFilter(f)
    install_werkzeug_redaction()
    install_werkzeug_redaction()  # idempotent
    assert sum(isinstance(f, RedactFilter) for f in logger.filters) == 1
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    s = _secrets()
    try:
        for method, path in s.paths():
            _request(f"http://127.0.0.1:{server.port}{path}", method)
    finally:
        server.shutdown()
        thread.join(10)
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    out = _plain(stream.getvalue())
    assert len(re.findall(r'"(GET|POST) /\S*\[redacted\]', out)) == len(s.paths()), out
    for value in s.values():
        assert value not in out, out


# -- gunicorn ------------------------------------------------------------------------------


@pytest.fixture
def gunicorn_conf(monkeypatch, tmp_path) -> dict:
    """The settings gunicorn.conf.py gives gunicorn (the file is plain Python)."""
    # The file creates a metrics folder unless one is set: keep it out of /tmp.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def test_gunicorn_logger_class_redacts_access_and_error_lines(app, gunicorn_conf, tmp_path):
    from gunicorn.config import Config

    cfg = Config()
    for key in ("logger_class", "access_log_format"):
        cfg.set(key, gunicorn_conf[key])
    cfg.set("accesslog", str(tmp_path / "access.log"))
    cfg.set("errorlog", str(tmp_path / "error.log"))
    # A format that prints every field a secret could be in.
    cfg.set("access_log_format", cfg.access_log_format + ' %(U)s?%(q)s "%(f)s" %({raw_uri}e)s')
    logger = cfg.logger_class(cfg)
    s = _secrets()
    try:
        environ = {
            "REQUEST_METHOD": "GET",
            "RAW_URI": f"/reset/{s.token}?id_token_hint={s.hint}",
            "PATH_INFO": f"/reset/{s.token}",
            "QUERY_STRING": f"id_token_hint={s.hint}",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "10.0.0.7",
            "HTTP_REFERER": f"https://id.example.gov/push/v1/status/{s.handle}",
        }
        resp = SimpleNamespace(status="400 BAD REQUEST", headers=[("X-Request-ID", "rid-1234567")],
                               sent=321)  # fmt: skip
        req = SimpleNamespace(headers=[("REFERER", environ["HTTP_REFERER"])])
        logger.access(resp, req, environ, timedelta(microseconds=2500))
        logger.exception("Error handling request %s", f"/verify/{s.token}")
        logger.warning(f"Invalid request from ip=1.2.3.4: GET /account/email/confirm/{s.token}")
    finally:
        for log in (logger.error_log, logger.access_log):
            for handler in list(log.handlers):
                if getattr(handler, "_gunicorn", False):
                    log.removeHandler(handler)
                    handler.close()
    access = (tmp_path / "access.log").read_text()
    error = (tmp_path / "error.log").read_text()
    for value in s.values():
        assert value not in access and value not in error, (access, error)
    assert access.startswith(
        '10.0.0.7 "GET /reset/[redacted]?id_token_hint=[redacted] HTTP/1.1" 400'
    )
    assert "rid=rid-1234567" in access and "/push/v1/status/[redacted]" in access
    assert "Error handling request /verify/[redacted]" in error
    assert "/account/email/confirm/[redacted]" in error


# -- the real servers, started as in production and development ----------------------------


def _bin(name: str) -> str:
    path = Path(sys.executable).with_name(name)
    if not path.exists():
        pytest.fail(f"`{name}` is not installed next to {sys.executable} (pip install -e .)")
    return str(path)


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict[str, str]:
    """Environment for a provider process on SQLite and the memory store, migrated and
    with a signing key."""
    work = tmp_path_factory.mktemp("redaction")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IDP_", "WEB_CONCURRENCY"))}
    env.update(
        IDP_ENV="test",
        IDP_DATABASE_URL=f"sqlite:///{work / 'idp.sqlite3'}",
        IDP_KEYS_DIRECTORY=str(work / "keys"),
        IDP_DELIVERY_OUTBOX=str(work / "outbox.jsonl"),
        IDP_STORE_BACKEND="memory",
        PROMETHEUS_MULTIPROC_DIR=str(work),
        PYTHONUNBUFFERED="1",
        WEB_CONCURRENCY="1",
        WORKDIR=str(work),
    )
    for args in (("db", "upgrade"), ("keys", "generate")):
        done = subprocess.run([_bin("idp"), *args], env=env, cwd=work, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    return env


def _serve_and_log(cmd: list[str], env: dict[str, str], port: int, log_path: Path) -> str:
    """Start *cmd*, send the requests with secrets, stop it; return its output."""
    s = _secrets()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env={**env, "IDP_ISSUER": f"http://127.0.0.1:{port}"},
                                cwd=env["WORKDIR"], stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while _request_or_none(f"http://127.0.0.1:{port}/healthz") != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{cmd[0]} did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
        for method, path in s.paths():
            _request(f"http://127.0.0.1:{port}{path}", method)
        time.sleep(0.5)  # the access line is written after the response
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    out = _plain(log_path.read_text(errors="replace"))
    for value in s.values():
        assert value not in out, out
    return out


def _request_or_none(url: str) -> int | None:
    try:
        return _request(url)
    except OSError:
        return None


#: The request lines of an access log for the requests of :func:`_secrets`.
ACCESS_LINES = (
    '"GET /verify/[redacted] HTTP/1.1"',
    '"GET /reset/[redacted] HTTP/1.1"',
    '"GET /mfa/challenge?reset=[redacted] HTTP/1.1"',
    '"GET /account/email/confirm/[redacted] HTTP/1.1"',
    '"GET /push/v1/status/[redacted] HTTP/1.1"',
    '"GET /logout?id_token_hint=[redacted] HTTP/1.1"',
)


def test_gunicorn_as_configured_writes_redacted_access_lines(served, tmp_path):
    port = _free_port()
    out = _serve_and_log(
        [_bin("gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "--chdir", str(ROOT),
         "wsgi:app"],
        {**served, "IDP_BIND": f"127.0.0.1:{port}"},
        port,
        tmp_path / "gunicorn.log",
    )  # fmt: skip
    for line in ACCESS_LINES:
        assert line in out, out


def test_idp_run_request_log_is_redacted(served, tmp_path):
    port = _free_port()
    out = _serve_and_log(
        [_bin("idp"), "run", "--host", "127.0.0.1", "--port", str(port)],
        served,
        port,
        tmp_path / "run.log",
    )
    for line in (
        '"GET /verify/[redacted] HTTP/1.1"',
        '"GET /mfa/challenge?reset=[redacted] HTTP/1.1"',
        '"GET /push/v1/status/[redacted] HTTP/1.1"',
        '"GET /logout?id_token_hint=[redacted] HTTP/1.1"',
    ):
        assert line in out, out


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_idp_serve_writes_redacted_access_lines(served, tmp_path, log_format):
    """granian's own access log cannot redact: the application writes the lines."""
    port = _free_port()
    out = _serve_and_log([_bin("idp"), "serve"],
                         {**served, "IDP_BIND": f"127.0.0.1:{port}", "IDP_OPS_LOG_FORMAT": log_format},
                         port, tmp_path / "serve.log")  # fmt: skip
    if log_format == "text":
        for line in ACCESS_LINES:
            assert line in out, out
        return
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]  # every line JSON
    access = [line for line in lines if line.get("logger") == "idp.access"]
    paths = {line["path"] for line in access}
    assert {"/verify/[redacted]", "/reset/[redacted]", "/push/v1/status/[redacted]"} <= paths
    reset = next(line for line in access if line["path"] == "/reset/[redacted]")
    assert reset["method"] == "GET" and isinstance(reset["status"], int)
    assert reset["request_id"] and reset["duration_ms"] >= 0
    assert any(line.get("logger", "").startswith("_granian") for line in lines)  # its own lines
