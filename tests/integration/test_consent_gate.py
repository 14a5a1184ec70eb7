"""Consent belongs to a complete sign-in.

With only the password passed and the second factor still pending, the consent page
shows nothing and writes nothing: otherwise whoever knows the password could grant a
client access, and a later ``prompt=none`` request from the real user's browser would
silently return a code to that client (OIDC Core 3.1.2.4, 3.1.2.6).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest

from clients.mockrp.forms import parse_forms
from tests.conftest import PASSWORD, make_settings
from tests.integration.account_helpers import add_totp
from tests.integration.mfa_helpers import browsers, get, path_of, walk

EMAIL = "ada@example.com"
CB = "https://rp.example.com/cb"


@pytest.fixture
def settings(tmp_path, keys_dir):
    return make_settings(tmp_path, keys_dir, mfa={"required": True, "enforce_from": ""})


@pytest.fixture
def new_browser(app, make_client, make_user):
    make_user()
    client_id, secret = make_client()  # a third-party client: consent is asked
    add_totp(app, EMAIL)
    return browsers(app, client_id, secret, CB)


def consents(app) -> int:
    from idp.extensions import db
    from idp.models import Consent

    with app.app_context():
        return db.session.execute(db.select(db.func.count(Consent.id))).scalar_one()


def test_consent_with_the_second_factor_pending_writes_nothing(app, new_browser):
    rp = new_browser()
    resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/challenge"  # password passed, factor pending
    txn = re.search(r"txn=([\w-]+)", resp.url).group(1)
    csrf = parse_forms(resp.text, resp.url)[0].fields["csrf_token"]

    page = get(rp, f"/consent?txn={txn}")
    assert page.status == 302 and "/authorize/resume" in page.location
    posted = rp.transport.request(
        "POST",
        "http://localhost/consent",
        data={"txn": txn, "csrf_token": csrf, "decision": "allow"},
    )
    assert posted.status == 302
    assert not posted.location.startswith(CB), posted.location
    assert consents(app) == 0
    # The resume leads back to the challenge, never to the client.
    back = get(rp, posted.location)
    assert back.status == 302 and "/mfa/challenge" in back.location

    # Later, silently: no code for this client.
    resp = rp.start(prompt="none")
    query = parse_qs(urlsplit(resp.location).query)
    assert "code" not in query and query["error"] == ["login_required"]


def test_consent_after_the_second_factor_is_written(app, new_browser):
    """The same client, once the factor passed: the consent page works as before."""
    import time

    from tests.integration.mfa_helpers import submit, totp_code

    rp = new_browser()
    resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    from idp.extensions import db
    from idp.models import Factor

    with app.app_context():
        secret_row = db.session.execute(db.select(Factor)).scalar_one()
        secret = app.extensions["idp"].secrets.decrypt(
            secret_row.secret_enc, context=f"totp:{secret_row.user_id}"
        )
    resp = submit(rp, resp, {"code": totp_code(secret, int(time.time() // 30) + 1)})
    resp = walk(rp, resp, email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/recommend"
    resp = walk(rp, submit(rp, resp, button=("choice", "skip")), email=EMAIL, password=PASSWORD)
    assert resp.status == 302 and resp.location.startswith(CB)
    assert consents(app) == 1
