"""New User Registration: ``/register`` and the email verification link ``/verify/<token>``.

The response never says whether the address already has an account: every accepted
form ends on the same "check your email" page, after the same work (the password is
hashed either way). A new address gets a verification link; an address with an account
gets "someone tried to register with your address" instead; an address whose account
is still unverified gets a fresh verification link (its password is NOT replaced, or
anyone could take over a pending registration). Unverified accounts cannot sign in.
"""

from __future__ import annotations

import re
import unicodedata

from flask import Blueprint, Response, redirect, render_template, request, url_for
from sqlalchemy.exc import IntegrityError

from .. import audit
from ..extensions import db
from ..models import User
from ..models.base import utcnow
from ..security.password_policy import check_for
from ..security.ratelimit import Limit, RateLimited, RateLimiter
from ..services import services
from ..web import browser_id, error_page, validate_csrf
from . import links
from .mail import send

bp = Blueprint("register", __name__)

# RFC 5321 4.5.3.1: local part at most 64 octets, whole path at most 254 in practice.
_LOCAL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}$")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def valid_email(address: str) -> bool:
    """A plain internet mail address (dot-atom local part, a domain with a dot)."""
    if not address or len(address) > 254 or address.count("@") != 1:
        return False
    local, domain = address.split("@")
    if not _LOCAL.match(local) or local.startswith(".") or local.endswith(".") or ".." in local:
        return False
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        return False
    return not labels[-1].isdigit()


def _limiters() -> tuple[RateLimiter, RateLimiter]:
    svc = services()
    r = svc.settings.registration
    return (
        RateLimiter(svc.store, Limit("register.ip", r.per_ip_per_hour, 3600)),
        RateLimiter(svc.store, Limit("register.email", r.per_email_per_hour, 3600)),
    )


def _txn_id() -> str | None:
    """The sign-in transaction this registration started from, if it is this browser's."""
    txn = services().transactions.get(request.values.get("txn"), browser_id())
    return txn.id if txn else None


def _closed() -> Response:
    return error_page(
        404,
        "Registration is closed",
        "New accounts cannot be created here right now. Contact the help desk if you need "
        "an account.",
    )


def _form(values: dict, errors: dict, status: int = 200, error: str | None = None) -> Response:
    return Response(
        render_template(
            "account/register.html",
            values=values,
            errors=errors,
            error=error,
            txn=_txn_id(),
            **password_lengths(),
        ),
        status=status,
    )


def password_lengths() -> dict[str, int]:
    """The ``[password]`` length limits, for the password hints of the forms."""
    p = services().settings.password
    return {"min_length": p.min_length, "max_length": p.max_length}


def _validate(name: str, email: str, password: str, confirm: str) -> dict[str, str]:
    errors: dict[str, str] = {}
    if not name:
        errors["name"] = "Enter your full name."
    elif len(name) > 200:
        errors["name"] = "Use at most 200 characters for your name."
    elif any(unicodedata.category(ch) in ("Cc", "Cs") for ch in name):
        errors["name"] = "Use letters, spaces and punctuation only in your name."
    if not email:
        errors["email"] = "Enter your email address."
    elif not valid_email(email):
        errors["email"] = "Enter an email address like name@example.com."
    problem = check_for(services().settings, password, [email, name])
    if problem:
        errors["password"] = problem
    elif password != confirm:
        errors["password_confirm"] = "The two passwords are not the same. Type them again."
    return errors


@bp.route("/register", methods=["GET", "POST"])
def register() -> Response:
    svc = services()
    if not svc.settings.registration.enabled:
        return _closed()
    if request.method == "GET":
        return _form({}, {})
    validate_csrf()
    try:
        # Every form counts here (the password check costs CPU even for a rejected form);
        # the stricter limits below count only forms that would send mail.
        form_limit = 3 * svc.settings.registration.per_ip_per_hour
        RateLimiter(svc.store, Limit("register.form.ip", form_limit, 3600)).hit(
            request.remote_addr or "unknown"
        )
    except RateLimited as exc:
        return _limited(exc, {})
    name = " ".join((request.form.get("name") or "").split())
    email = User.normalize_email(request.form.get("email") or "")
    password = request.form.get("password") or ""
    confirm = request.form.get("password_confirm") or ""
    values = {"name": name, "email": email}
    errors = _validate(name, email, password, confirm)
    if errors:
        return _form(values, errors, 400)
    per_ip, per_email = _limiters()
    try:
        per_ip.hit(request.remote_addr or "unknown")
        per_email.hit(email)
    except RateLimited as exc:
        return _limited(exc, values)

    # Hash before looking the address up, so both outcomes cost the same.
    password_hash = svc.passwords.hash(password)
    txn = _txn_id()
    user = _existing(email)
    if user is None:
        user = User(email=email, name=name, email_verified=False, password_hash=password_hash,
                    password_changed_at=utcnow())  # fmt: skip
        db.session.add(user)
        try:
            db.session.flush()
            audit.record("user.registered", user_id=user.id)
            link = links.prepare_email_verification(user, txn=txn)
            # One commit and one message, as for a taken address (equal timing).
            db.session.commit()
        except IntegrityError:
            # Registered by a concurrent request a moment ago: treat it as taken.
            db.session.rollback()
            user = _existing(email)
        else:
            links.deliver_email_verification(user, link)
            return redirect(url_for("register.sent", txn=txn), 303)
    if user is not None:
        _repeat(user, txn)
    return redirect(url_for("register.sent", txn=txn), 303)


def _limited(exc: RateLimited, values: dict) -> Response:
    audit.record_now("user.register_limited", outcome="failure", limit=exc.name)
    message = f"Too many attempts. Wait {max(1, exc.retry_after // 60)} minutes and try again."
    resp = _form(values, {}, 429, message)
    resp.headers["Retry-After"] = str(exc.retry_after)
    return resp


def _existing(email: str) -> User | None:
    return db.session.execute(db.select(User).filter_by(email=email)).scalar_one_or_none()


def _repeat(user: User, txn: str | None) -> None:
    """Registration with an address that has an account: tell its owner, reveal nothing."""
    if user.is_active and not user.email_verified:
        audit.record_now("user.register_repeat", user_id=user.id)
        links.send_email_verification(user, txn=txn)
        return
    audit.record_now("user.register_existing", outcome="failure", user_id=user.id)
    send(user.email, "register_existing", user=user, forgot=links.url(url_for("password.forgot")))


@bp.get("/register/sent")
def sent() -> Response:
    if not services().settings.registration.enabled:
        return _closed()
    hours = max(1, services().settings.registration.verify_ttl // 3600)
    return Response(
        render_template("account/check_email.html", hours=hours, txn=_txn_id(), new_address=False)
    )


@bp.get("/verify/<token>")
def verify(token: str) -> Response:
    """Complete a registration (or re-prove the address after a help-desk reset)."""
    try:
        link = links.consume("verify_email", token)
    except links.LinkError as exc:
        audit.record_now("email.verify_failed", outcome="failure", reason=type(exc).__name__)
        return link_error(exc, again=url_for("auth.signin"), again_text="Sign in to get a new link")
    user = link.user
    user.email_verified = True
    audit.record("email.verified", user_id=user.id)
    db.session.commit()
    txn = services().transactions.get(link.data.get("txn"), browser_id())
    return Response(render_template("account/verified.html", txn=txn.id if txn else None))


def link_error(exc: links.LinkError, *, again: str, again_text: str) -> Response:
    """The friendly page for a link that cannot be used (400)."""
    return Response(
        render_template(
            "account/link_error.html",
            title=exc.title,
            message=exc.message,
            again=again,
            again_text=again_text,
        ),
        status=400,
    )
