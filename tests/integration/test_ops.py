"""Operations endpoints: liveness, readiness with each dependency down, request ids,
JSON logs and Prometheus metrics (with and without the bearer token)."""

from __future__ import annotations

import io
import json
import logging
import re
from dataclasses import replace

import pytest

from tests.conftest import PASSWORD, make_settings


def _standalone_app(settings, store=None):
    from flask_migrate import upgrade

    from idp.app import create_app

    app = create_app(settings, store=store, warn=False)
    app.config["TESTING"] = True
    return app, upgrade


def _dispose(app, store=None) -> None:
    from idp.extensions import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    if store is not None:
        store.close()


# -- liveness and readiness ------------------------------------------------------------


def test_healthz_is_cheap_and_leaves_no_trace(app, client):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok"}
    assert resp.headers["Cache-Control"] == "no-store"
    assert not resp.headers.getlist("Set-Cookie")


def test_readyz_reports_every_check(app, client):
    resp = client.get("/readyz")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["status"] == "ready"
    assert {name: c["ok"] for name, c in body["checks"].items()} == {
        "database": True,
        "store": True,
        "keys": True,
    }


def test_readyz_503_when_the_store_is_down(settings):
    from idp.store import RedisStore

    store = RedisStore("redis://127.0.0.1:1/0", socket_timeout=0.2)
    app, upgrade = _standalone_app(settings, store)
    try:
        with app.app_context():
            upgrade()
        resp = app.test_client().get("/readyz")
        assert resp.status_code == 503
        body = resp.get_json()
        assert body["status"] == "unavailable"
        assert body["checks"]["store"] == {"ok": False, "error": "StoreUnavailable",
                                           "ms": body["checks"]["store"]["ms"]}  # fmt: skip
        assert body["checks"]["database"]["ok"] is True
        # Liveness is unaffected: the process itself is fine.
        assert app.test_client().get("/healthz").status_code == 200
    finally:
        _dispose(app, store)


def test_readyz_503_when_the_database_is_down(settings):
    down = replace(
        settings,
        database=replace(settings.database, url="postgresql+psycopg://postgres@127.0.0.1:1/x"),
    )
    app, _ = _standalone_app(down)
    try:
        resp = app.test_client().get("/readyz")
        assert resp.status_code == 503
        checks = resp.get_json()["checks"]
        assert checks["database"]["ok"] is False
        assert checks["store"]["ok"] is True and checks["keys"]["ok"] is True
    finally:
        _dispose(app)


# -- request ids and logs ----------------------------------------------------------------


def test_every_response_carries_a_request_id(app, client):
    first = client.get("/healthz").headers["X-Request-ID"]
    second = client.get("/signin").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and re.fullmatch(r"[0-9a-f]{32}", second)
    assert first != second


def test_a_proxy_request_id_is_kept_and_a_bad_one_replaced(app, client):
    kept = client.get("/healthz", headers={"X-Request-ID": "lb-7f3a9c2e-0001"})
    assert kept.headers["X-Request-ID"] == "lb-7f3a9c2e-0001"
    for bad in ("short", "x" * 200, "evil value with spaces", "a;b=c" * 4):
        resp = client.get("/healthz", headers={"X-Request-ID": bad})
        assert resp.headers["X-Request-ID"] != bad
        assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["X-Request-ID"])


def test_json_logs_carry_the_request_id(app, client, make_user):
    from idp.ops import configure_logging

    stream = io.StringIO()
    configure_logging("json", "INFO", stream=stream)
    try:
        make_user()
        page = client.get("/signin")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))[1]
        resp = client.post(
            "/signin",
            data={"email": "ada@example.com", "password": "wrong", "csrf_token": token},
            headers={"X-Request-ID": "req-abcdef123456"},
        )
        assert resp.headers["X-Request-ID"] == "req-abcdef123456"
    finally:
        logger = logging.getLogger("idp")
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    audit_lines = [x for x in lines if x["logger"] == "idp.audit"]
    assert audit_lines, lines
    entry = audit_lines[-1]
    assert entry["request_id"] == "req-abcdef123456"
    assert entry["level"] == "INFO" and "login.failure" in entry["message"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])


def test_text_log_format_is_one_line_with_the_request_id():
    from idp.ops import configure_logging

    stream = io.StringIO()
    configure_logging("text", "INFO", stream=stream)
    try:
        logging.getLogger("idp.test").info("hello")
    finally:
        logger = logging.getLogger("idp")
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    line = stream.getvalue().strip()
    assert line.endswith("INFO idp.test [-] hello")


# -- metrics ------------------------------------------------------------------------------


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in the Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_and_sign_in_steps(app, client, make_user, make_client):
    make_user()
    client_id, secret = make_client(grant_types=["client_credentials"], scope="")
    for _ in range(2):
        resp = client.post(
            "/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
        )
        assert resp.status_code == 200
    page = client.get("/signin")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))[1]
    client.post("/signin", data={"email": "ada@example.com", "password": "nope",
                                 "csrf_token": token})  # fmt: skip
    client.post("/signin", data={"email": "ada@example.com", "password": PASSWORD,
                                 "csrf_token": token})  # fmt: skip

    text = client.get("/metrics").get_data(as_text=True)
    assert _sample(text, "idp_http_requests_total", endpoint="oidc.token", method="POST",
                   status="200") == 2  # fmt: skip
    assert _sample(text, "idp_http_request_duration_seconds_count", endpoint="oidc.token") == 2
    assert _sample(text, "idp_signin_steps_total", step="password", outcome="failure") == 1
    assert _sample(text, "idp_signin_steps_total", step="password", outcome="success") == 1
    # /metrics does not count itself, and unknown paths share one label value.
    client.get("/no/such/page")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'endpoint="metrics"' not in text
    assert _sample(text, "idp_http_requests_total", endpoint="unmatched", status="404") == 1


@pytest.fixture
def token_settings(tmp_path, keys_dir):
    return make_settings(tmp_path, keys_dir, ops={"metrics_token": "t" * 32})


def test_metrics_token_is_required_when_configured(token_settings):
    app, upgrade = _standalone_app(token_settings)
    try:
        client = app.test_client()
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics").headers["WWW-Authenticate"].startswith("Bearer")
        bad = client.get("/metrics", headers={"Authorization": "Bearer " + "u" * 32})
        assert bad.status_code == 401
        good = client.get("/metrics", headers={"Authorization": "Bearer " + "t" * 32})
        assert good.status_code == 200
        assert good.mimetype == "text/plain"
        assert "idp_http_requests_total" in good.get_data(as_text=True)
    finally:
        _dispose(app)


def test_metrics_can_be_switched_off(tmp_path, keys_dir):
    app, _ = _standalone_app(make_settings(tmp_path, keys_dir, ops={"metrics_enabled": False}))
    try:
        assert app.test_client().get("/metrics").status_code == 404
    finally:
        _dispose(app)


def test_server_error_pages_show_the_request_id(settings):
    from idp.store import RedisStore

    store = RedisStore("redis://127.0.0.1:1/0", socket_timeout=0.2)
    app, upgrade = _standalone_app(settings, store)
    try:
        with app.app_context():
            upgrade()
        client = app.test_client()
        page = client.get("/signin")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))[1]
        resp = client.post(
            "/signin",
            data={"email": "a@example.com", "password": "x", "csrf_token": token},
            headers={"X-Request-ID": "ref-0123456789"},
        )
        assert resp.status_code == 503
        assert "<code>ref-0123456789</code>" in resp.get_data(as_text=True)
        # Client errors (4xx) do not show it.
        assert "<code>" not in client.get("/no/such/page").get_data(as_text=True)
    finally:
        _dispose(app, store)


def test_method_not_allowed_names_the_allowed_methods(app, client):
    resp = client.put("/token")
    assert resp.status_code == 405
    assert resp.get_json()["error"] == "invalid_request"
    assert set(resp.headers["Allow"].replace(" ", "").split(",")) >= {"POST", "OPTIONS"}
