"""Every action confirmed by an emailed link needs a POST from the link's page.

Mail scanners, link previews and prefetching browsers follow links with GET and HEAD;
if a GET confirmed anything, a scanner could confirm a registration, an email change
or a reset for whoever asked for it. The link routes are discovered from the URL map
(any rule with a ``<token>`` argument), so a new kind of link is covered automatically:
the test fails until it knows how to issue a valid token for it.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import PASSWORD
from tests.integration.account_helpers import STRONG, post, sent
from tests.integration.test_route_matrix import db_state

EMAIL = "ada@example.com"


def _attempt_token(app, make_user) -> str:
    from idp.account import links
    from idp.extensions import db
    from idp.models import RegistrationAttempt

    client = app.test_client()
    data = {"name": "Grace Hopper", "email": "grace@example.com", "password": STRONG,
            "password_confirm": STRONG}  # fmt: skip
    assert sent(post(client, "/register", data)).status_code == 303
    with app.test_request_context():
        attempt = db.session.execute(db.select(RegistrationAttempt)).scalar_one()
        return links.issue("verify_email", attempt, 3600)


def _user_token(purpose: str, **data):
    def issue(app, make_user) -> str:
        from idp.account import links
        from idp.extensions import db
        from idp.models import User

        uid, _ = make_user(email=EMAIL)
        with app.test_request_context():
            user = db.session.get(User, uid)
            if purpose == "verify_email":
                user.email_verified = False
                db.session.commit()
            return links.issue(purpose, user, 3600, **data)

    return issue


# endpoint -> how to get a valid token for it (and the purpose it is peeked with)
TOKENS = {
    "register.verify": (_attempt_token, "verify_email"),
    "password.reset": (_user_token("reset"), "reset"),
    "email.confirm": (_user_token("email_change", new_email="ada@new.example"), "email_change"),
}


def _link_rules(app):
    return sorted(
        (rule.endpoint, rule.rule, rule.methods)
        for rule in app.url_map.iter_rules()
        if "token" in rule.arguments
    )


def test_every_link_route_is_known(app):
    """A new link route fails here until the test can issue a token for it."""
    assert {endpoint for endpoint, _, _ in _link_rules(app)} == set(TOKENS)


@pytest.mark.parametrize("endpoint", sorted(TOKENS))
def test_opening_a_link_changes_nothing_and_keeps_it_usable(app, make_user, endpoint):
    from idp.account import links

    issue, purpose = TOKENS[endpoint]
    token = issue(app, make_user)
    [(_, rule, methods)] = [r for r in _link_rules(app) if r[0] == endpoint]
    path = re.sub(r"<[^>]*token>", token, rule)
    before = db_state(app)
    scanner = app.test_client()
    for method in ("GET", "HEAD"):
        if method not in methods:
            continue
        for _ in range(2):
            resp = scanner.open(path, method=method)
            assert resp.status_code < 500, (method, path, resp.status_code)
            assert resp.status_code != 302 or "/verify" not in (resp.location or "")
    assert db_state(app) == before
    with app.test_request_context():
        links.peek(purpose, token)  # not used up: raises if it were
    # A POST without the page's CSRF token (a cross-site form) changes nothing either.
    resp = scanner.post(path, data={"password": PASSWORD})
    assert resp.status_code in (400, 403, 404), resp.status_code
    assert db_state(app) == before


def test_head_is_answered_like_get_on_every_page(app, make_user):
    """Routes that take GET and POST must not treat HEAD as a form post."""
    make_user(email=EMAIL)
    client = app.test_client()
    checked = 0
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.arguments or rule.endpoint == "static":
            continue
        get = client.get(rule.rule)
        head = client.head(rule.rule)
        assert head.status_code == get.status_code, (rule.rule, get.status_code, head.status_code)
        checked += 1
    assert checked >= 30, checked
