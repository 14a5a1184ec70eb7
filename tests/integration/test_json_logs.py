"""Logs an operator can ship: with ``[ops] log_format = "json"`` every line the
production server writes is one JSON object, access lines carry the request's facts as
fields (secrets redacted), and audit events carry theirs as a JSON object."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from idp.keys import generate_key

IDP = Path(sys.executable).with_name("idp")
GUNICORN = Path(sys.executable).with_name("gunicorn")
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gunicorn_writes_one_json_object_per_line(tmp_path):
    keys = tmp_path / "keys"
    generate_key(keys, "RS256")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.pop("WEB_CONCURRENCY", None)
    env.update(
        IDP_DATABASE_URL=f"sqlite:///{tmp_path / 'idp.sqlite3'}",
        IDP_KEYS_DIRECTORY=str(keys),
        IDP_ISSUER=f"http://127.0.0.1:{port}",
        IDP_OPS_LOG_FORMAT="json",
        IDP_PASSWORD_MEMORY_COST="1024",
        IDP_PASSWORD_TIME_COST="1",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
    )
    subprocess.run([str(IDP), "db", "upgrade"], env=env, check=True, capture_output=True)
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(  # noqa: S603
            [str(GUNICORN), "-c", str(ROOT / "gunicorn.conf.py"), "-b", f"127.0.0.1:{port}",
             "idp.wsgi:app"],
            env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, log.read_text()
                try:
                    requests.get(f"{base}/healthz", timeout=2)
                    break
                except requests.ConnectionError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            secret = "x7Gq2LmN9pR4tV8wY1zA3bC5dE6fH0jK"
            resp = requests.get(f"{base}/reset/{secret}?code=abc123secret", timeout=10,
                                headers={"X-Request-ID": "req-json-log-0001"})  # fmt: skip
            assert resp.headers["X-Request-ID"] == "req-json-log-0001"
            requests.post(f"{base}/token", data={"grant_type": "client_credentials"},
                          auth=("nobody", "wrong"), timeout=10)  # fmt: skip
            time.sleep(0.5)
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    text = log.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    entries = []
    for line in lines:
        entry = json.loads(line)  # every line, start-up and shutdown included
        assert {"time", "level", "logger", "message"} <= set(entry), entry
        entries.append(entry)
    loggers = {e["logger"] for e in entries}
    assert {"gunicorn.error", "gunicorn.access", "idp"} <= loggers, loggers
    assert secret not in text and "abc123secret" not in text

    [access] = [e for e in entries
                if e["logger"] == "gunicorn.access" and e["path"].startswith("/reset/")]  # fmt: skip
    assert access["method"] == "GET" and access["path"] == "/reset/[redacted]"
    assert access["query"] == "code=[redacted]"
    assert isinstance(access["status"], int) and access["request_id"] == "req-json-log-0001"
    assert isinstance(access["duration_ms"], float) and access["duration_ms"] >= 0
    audit = [e for e in entries if e["logger"] == "idp.audit"]
    assert audit and all(isinstance(e["audit"], dict) for e in audit), audit
    assert any(e["audit"]["event"] == "token.failure" or e["audit"]["outcome"] == "failure"
               for e in audit)  # fmt: skip


def _capture(log_format: str) -> tuple[io.StringIO, logging.Logger]:
    from idp.ops import configure_logging

    stream = io.StringIO()
    configure_logging(log_format, "INFO", stream=stream)
    return stream, logging.getLogger("idp")


def _reset(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


def test_audit_details_are_json_fields_not_a_printed_dict(app):
    from idp import audit
    from idp.extensions import db

    for log_format in ("json", "text"):
        stream, logger = _capture(log_format)
        try:
            with app.app_context():
                audit.record("client.updated", client_id="rp-1", actor="cli",
                             fields=["name", "scope"], note="it's \"quoted\"")  # fmt: skip
                db.session.rollback()
        finally:
            _reset(logger)
        line = stream.getvalue().strip().splitlines()[-1]
        if log_format == "json":
            entry = json.loads(line)
            assert entry["audit"] == {
                "event": "client.updated", "outcome": "success", "user_id": None,
                "client_id": "rp-1",
                "details": {"actor": "cli", "fields": ["name", "scope"],
                            "note": "it's \"quoted\""},
            }  # fmt: skip
            assert "{'" not in entry["message"]  # no Python repr in the message
        else:
            # Text lines end with the details as JSON text (a parser can still read them).
            details = json.loads(line[line.index("{") :])
            assert details["fields"] == ["name", "scope"] and "{'" not in line
