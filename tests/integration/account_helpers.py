"""Helpers for the self-service account tests: forms with their CSRF token, the outbox,
links in emails, audit events."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

from clients.mockrp.forms import page_info, parse_forms

STRONG = "correct horse battery staple"
OTHER_STRONG = "violet lantern orbit whisper"


def form_fields(resp, *names: str) -> dict[str, str]:
    """The fields of the page's form that has *names* (hidden fields included)."""
    html = resp.get_data(as_text=True) if hasattr(resp, "get_data") else resp.text
    for form in parse_forms(html, "http://localhost/"):
        if all(n in form.fields for n in names):
            return dict(form.fields)
    raise AssertionError(f"no form with {names}: {html[:400]}")


def post(client, path: str, data: dict, *, form_path: str | None = None, names=()):
    """GET the page (for its CSRF token and hidden fields), then POST *data*."""
    page = client.get(form_path or path)
    assert page.status_code == 200, (page.status_code, page.get_data(as_text=True)[:300])
    fields = form_fields(page, "csrf_token", *names)
    fields.update(data)
    return client.post(path, data=fields)


def sent(resp):
    """Read the body, then close the response as a WSGI server does: the work scheduled
    for after the response (emails that must not change the answer's timing) runs then.
    Returns *resp*."""
    resp.get_data()
    resp.close()
    return resp


def text(resp) -> str:
    return resp.get_data(as_text=True)


def errors(resp) -> list[str]:
    return page_info(text(resp)).errors


def outbox(app, purpose: str | None = None) -> list[dict]:
    path = Path(app.extensions["idp"].settings.delivery.outbox)
    if not path.exists():
        return []
    mails = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [m for m in mails if purpose is None or m["purpose"] == purpose]


def link_in(mail: dict, part: str) -> str:
    """The path (and query) of the first URL in *mail* containing *part*."""
    for url in re.findall(r"https?://\S+", mail["text"]):
        if part in url:
            parts = urlsplit(url)
            return parts.path + (f"?{parts.query}" if parts.query else "")
    raise AssertionError(f"no link with {part!r} in {mail['text']!r}")


def events(app, name: str) -> list[tuple[str, int | None, dict]]:
    from idp.extensions import db
    from idp.models import AuditEvent

    with app.app_context():
        rows = db.session.execute(
            db.select(AuditEvent).filter_by(event=name).order_by(AuditEvent.id)
        ).scalars()
        return [(r.outcome, r.user_id, dict(r.details or {})) for r in rows]


def user_row(app, email: str):
    """(id, email_verified, password_hash, name) of the user with *email*, or None."""
    from idp.extensions import db
    from idp.models import User

    with app.app_context():
        u = db.session.execute(db.select(User).filter_by(email=email)).scalar_one_or_none()
        return None if u is None else (u.id, u.email_verified, u.password_hash, u.name)


def signin(client, email: str, password: str, **extra):
    return post(client, "/signin", {"email": email, "password": password, **extra})


def add_totp(app, email: str, step: int | None = None) -> str:
    """Give the user an authenticator app (proven with the code of time step *step*, by
    default the current one); returns its secret (base32)."""
    from idp.extensions import db
    from idp.models import User
    from tests.integration.mfa_helpers import totp_code

    with app.test_request_context():
        user = db.session.execute(db.select(User).filter_by(email=email)).scalar_one()
        impl = app.extensions["idp.mfa"].registry["totp"]
        data = impl.begin_enrollment(user, binding="test-setup")
        secret = data["secret_grouped"].replace(" ", "")
        impl.finish_enrollment(user, totp_code(secret, step), "Phone", binding="test-setup")
        db.session.commit()
    return secret


def add_recovery_codes(app, email: str) -> list[str]:
    from idp.extensions import db
    from idp.models import User

    with app.test_request_context():
        user = db.session.execute(db.select(User).filter_by(email=email)).scalar_one()
        _factor, codes = app.extensions["idp.mfa"].registry["recovery"].generate(user)
        db.session.commit()
    return codes


def next_totp(secret: str) -> str:
    """A code for the next time step (set-up used the current one; replays are refused)."""
    import time

    from tests.integration.mfa_helpers import totp_code

    return totp_code(secret, int(time.time() // 30) + 1)
