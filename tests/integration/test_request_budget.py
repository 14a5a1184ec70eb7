"""What one sign-in costs in round trips: SQL statements and shared-store commands per
request of the whole journey (authorize, password, TOTP, code, token).

Each request's budget is the figure of today's code. A change that adds a statement or a
store command to a sign-in step fails here and has to say why in the budget (or find
another way); a change that saves one lowers the budget. docs/PERFORMANCE.md explains the
figures. The audit sealer, which runs after the response is sent and at most once a
second, and the key ring's look for a rotation (once a second) are not counted.
"""

from __future__ import annotations

import base64
import collections
import json
import re

import pytest

from clients.mockrp import MockRP
from clients.mockrp.transport import FlaskTransport
from tests.conftest import PASSWORD, make_settings
from tests.integration.mfa_helpers import totp_code

ISS = "http://localhost"
CB = "https://rp.example.com/cb"
EMAIL = "ada@example.com"
STORE_CALLS = ("get", "set", "set_if_absent", "delete", "take", "incr", "ttl", "expire",
               "add_to_set", "remove_from_set", "members", "publish")  # fmt: skip

#: (SQL statements, store calls) per request of a sign-in with TOTP, on SQLite with the
#: in-memory store (no client cache: clients are read from the database) and on
#: PostgreSQL with Redis (clients cached per process, checked against a generation key).
BUDGET = {
    "sqlite": {
        "GET /.well-known/openid-configuration": (1, 0),  # the client reads it first
        "GET /authorize": (1, 1),
        "GET /signin": (1, 1),
        "POST /signin": (5, 8),
        "GET /mfa/challenge": (3, 2),
        "POST /mfa/challenge": (9, 11),
        "POST /token": (6, 0),
    },
    "postgres": {
        "GET /.well-known/openid-configuration": (0, 1),  # scopes remembered
        "GET /authorize": (1, 2),
        "GET /signin": (0, 2),
        "POST /signin": (4, 9),
        "GET /mfa/challenge": (2, 3),
        "POST /mfa/challenge": (7, 12),
        "POST /token": (5, 1),
    },
}


@pytest.fixture
def settings(tmp_path, keys_dir):
    return make_settings(tmp_path, keys_dir, mfa={"required": True, "recommend_second": False})


class Meter:
    """Counts, per request path, the statements sent to the database and the calls made
    to the shared store while the application builds the response."""

    def __init__(self, app) -> None:
        from sqlalchemy import event

        from idp.extensions import db

        self.sql: dict[str, int] = collections.Counter()
        self.store: dict[str, int] = collections.Counter()
        self.seen: list[str] = []
        self.path: str | None = None
        inner = app.wsgi_app

        def wsgi(environ, start_response):
            self.path = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}"
            self.seen.append(self.path)
            body = inner(environ, start_response)
            data = b"".join(body)
            self.path = None  # the sealer runs at close(), after the response
            if hasattr(body, "close"):
                body.close()
            return [data]

        app.wsgi_app = wsgi
        with app.app_context():
            event.listen(db.engine, "before_cursor_execute", self._statement)
        store = app.extensions["idp"].store
        for name in STORE_CALLS:
            original = getattr(store, name)
            setattr(store, name, self._counted(original))

    def _statement(self, *_args) -> None:
        if self.path is not None:
            self.sql[self.path] += 1

    def _counted(self, original):
        def call(*args, **kwargs):
            if self.path is not None:
                self.store[self.path] += 1
            return original(*args, **kwargs)

        return call


def _totp_user(app) -> str:
    from idp.extensions import db
    from idp.models import Factor, User
    from idp.security import totp
    from idp.services import services

    with app.app_context():
        svc = services()
        user = User(email=EMAIL, email_verified=True, password_hash=svc.passwords.hash(PASSWORD))
        db.session.add(user)
        db.session.flush()
        secret = totp.new_secret()
        db.session.add(Factor(user_id=user.id, type="totp", label="Phone", status="active",
                              secret_enc=svc.secrets.encrypt(secret, context=f"totp:{user.id}")))  # fmt: skip
        db.session.commit()
        return secret


def _sign_in(app, rp: MockRP, secret: str):
    resp = rp.start(scope="openid email")
    resp = rp.transport.request("GET", resp.location)
    fields = dict(re.findall(r'name="(csrf_token|txn)" value="([^"]+)"', resp.text))
    resp = rp.transport.request("POST", f"{ISS}/signin",
                                data={**fields, "email": EMAIL, "password": PASSWORD})  # fmt: skip
    assert resp.status == 302 and "/mfa/challenge" in resp.location, resp.text[:500]
    resp = rp.transport.request("GET", resp.location)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', resp.text).group(1)
    resp = rp.transport.request("POST", f"{ISS}/mfa/challenge",
        data={"csrf_token": csrf, "txn": fields["txn"], "kind": "totp",
              "code": totp_code(secret)})  # fmt: skip
    return rp.exchange_code(rp.resume(resp, rp.last_request))


def test_a_sign_in_stays_within_its_round_trip_budget(app, backend, make_client):
    secret = _totp_user(app)
    client_id, client_secret = make_client(first_party=True)
    app.test_client().get("/.well-known/openid-configuration")  # the key ring is loaded
    # The shared key ring looks for a rotation once a second: not a cost of a sign-in.
    app.extensions["idp"].keys.check_interval = 3600
    meter = Meter(app)
    rp = MockRP(ISS, client_id, CB, client_secret=client_secret,
                transport=FlaskTransport(app.test_client()))  # fmt: skip
    tokens = _sign_in(app, rp, secret)
    claims = json.loads(base64.urlsafe_b64decode(tokens.id_token.split(".")[1] + "=="))
    assert "otp" in claims["amr"]  # the ID token was verified by the client
    budget = BUDGET[backend]
    assert meter.seen == list(budget), meter.seen
    spent = {path: (meter.sql[path], meter.store[path]) for path in budget}
    assert spent == budget, "\n".join(
        f"{path}: SQL {spent[path][0]} (budget {sql}), store {spent[path][1]} (budget {calls})"
        for path, (sql, calls) in budget.items()
        if spent[path] != (sql, calls)
    )
