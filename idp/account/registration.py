"""New User Registration: ``/register`` and the email verification link ``/verify/<token>``.

The response never says whether the address already has an account: every accepted
form ends on the same "check your email" page, after the same work (the password is
hashed either way). An address with an account gets "someone tried to register with
your address". Any other address gets a *registration attempt*
(:class:`~idp.models.RegistrationAttempt`) of its own, and a link bound to it: no
account exists until the owner of the mailbox opens the link of her attempt and
confirms it with the password she chose. A stranger who registered the address first
(the pre-account hijack) gains nothing: his attempt is a different attempt, it is
deleted when hers is confirmed, and his password never reaches her account.
"""

from __future__ import annotations

import unicodedata
from datetime import timedelta

from flask import Blueprint, Response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from .. import audit
from ..auth.service import AccountDisabled, LoginFailed, authenticate_password
from ..extensions import db
from ..i18n import page_locale, supported
from ..models import Consent, Factor, RegistrationAttempt, User
from ..models.base import utcnow
from ..models.user import new_subject
from ..security import email_address
from ..security.password_policy import check_for
from ..security.ratelimit import Limit, RateLimited, RateLimiter
from ..services import services
from ..web import (
    adopt_session,
    browser_id,
    current_session,
    device_cookie,
    error_page,
    limited,
    set_device_cookie,
    too_many,
    validate_csrf,
)
from . import links
from .mail import send_after_response

bp = Blueprint("register", __name__)


def valid_email(address: str) -> bool:
    """A plain internet mail address (:func:`idp.security.email_address.is_valid`)."""
    return email_address.is_valid(address)


def email_problem(address: str) -> str | None:
    """What an email field says about *address* (normalised), or None when it is fine."""
    if not address:
        return _("Enter your email address.")
    if len(address) > email_address.MAX_LENGTH:
        return _(
            "Use at most %(max)s characters for an email address.", max=email_address.MAX_LENGTH
        )
    if not valid_email(address):
        return _("Enter an email address like name@example.com.")
    return None


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
        _("Registration is closed"),
        _(
            "New accounts cannot be created here right now. Contact the help desk if you need "
            "an account."
        ),
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
        errors["name"] = _("Enter your full name.")
    elif len(name) > 200:
        errors["name"] = _("Use at most %(max)s characters for your name.", max=200)
    elif any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in name):
        # (Format characters such as right-to-left marks could disguise a name in the
        # messages that quote it.)
        errors["name"] = _("Use letters, spaces and punctuation only in your name.")
    if problem := email_problem(email):
        errors["email"] = problem
    problem = check_for(services().settings, password, [email, name])
    if problem:
        errors["password"] = problem
    elif password != confirm:
        errors["password_confirm"] = _("The two passwords are not the same. Type them again.")
    return errors


@bp.route("/register", methods=["GET", "POST"])
def register() -> Response:
    svc = services()
    if not svc.settings.registration.enabled:
        return _closed()
    if request.method in ("GET", "HEAD"):
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
    done = redirect(url_for("register.sent", txn=txn), 303)
    # Either way one message goes out, after the response (same answer, same time).
    if user is not None and not is_pending(user):
        audit.record_now("user.register_existing", outcome="failure", user_id=user.id)
        return send_after_response(done, user.email, "register_existing", user_id=user.id,
                                   forgot=links.url(url_for("password.forgot")))  # fmt: skip
    # A new attempt of its own, whatever attempts exist for the address: its link
    # confirms only this name and this password (no pre-account hijack).
    now = utcnow()
    db.session.execute(delete(RegistrationAttempt).where(RegistrationAttempt.expires_at <= now))
    attempt = RegistrationAttempt(
        email=email,
        name=name,
        password_hash=password_hash,
        created_at=now,
        expires_at=now + timedelta(seconds=svc.settings.registration.verify_ttl),
    )
    db.session.add(attempt)
    db.session.flush()
    audit.record("user.registration_started", attempt=attempt.id,
                 pending_user=user.id if user is not None else None)  # fmt: skip
    link = links.prepare_email_verification(attempt, txn=txn, locale=page_locale())
    db.session.commit()
    hours = max(1, svc.settings.registration.verify_ttl // 3600)
    return send_after_response(done, attempt.email, "verify_email", name=attempt.name,
                               link=link, hours=hours)  # fmt: skip


def is_pending(user: User) -> bool:
    """An account that was registered but never proved its address nor signed in (made
    before registrations became attempts, or by ``idp users create --unverified``): a
    confirmed registration of the same address replaces it."""
    if user.email_verified or user.last_login_at is not None or user.role != "user":
        return False
    has_factor = db.session.execute(
        db.select(Factor.id).filter_by(user_id=user.id).limit(1)
    ).first()
    return has_factor is None


def _limited(exc: RateLimited, values: dict) -> Response:
    audit.record_now("user.register_limited", outcome="failure", limit=exc.name)
    message = ngettext(
        "Too many attempts. Wait %(num)d minute and try again.",
        "Too many attempts. Wait %(num)d minutes and try again.",
        max(1, exc.retry_after // 60),
    )
    resp = _form(values, {}, 429, message)
    resp.headers["Retry-After"] = str(exc.retry_after)
    return resp


def _existing(email: str) -> User | None:
    return db.session.execute(db.select(User).filter_by(email=email)).scalar_one_or_none()


@bp.get("/register/sent")
def sent() -> Response:
    if not services().settings.registration.enabled:
        return _closed()
    hours = max(1, services().settings.registration.verify_ttl // 3600)
    return Response(
        render_template("account/check_email.html", hours=hours, txn=_txn_id(), new_address=False)
    )


# -- confirming an address ---------------------------------------------------------------

# Wrong passwords one link accepts before it is burned.
CONFIRM_TRIES = 5


class AddressTaken(Exception):
    """The address belongs to an account that is not a pending registration."""


def _confirm_page(token: str, email: str, *, error: str | None = None,
                  status: int = 200) -> Response:  # fmt: skip
    return Response(
        render_template("account/confirm_email.html", token=token, email=email, error=error),
        status=status,
    )


def _bad_verify_link(exc: links.LinkError) -> Response:
    audit.record_now("email.verify_failed", outcome="failure", reason=type(exc).__name__)
    return link_error(exc, again=url_for("auth.signin"), again_text=_("Sign in to get a new link"))


@bp.route("/verify/<token>", methods=["GET", "POST"])
def verify(token: str) -> Response:
    """Confirm an address: a registration attempt, or an account's address after a
    help-desk reset.

    The link only opens this page (a GET changes nothing and does not use the link up,
    so a mail scanner that follows links confirms nothing). The confirmation is a POST
    from the page with the password chosen for the attempt (or the account's password):
    it proves the person at the keyboard is the one who registered, not merely someone
    who can read the mailbox, and it is the "sign in again" of the registration journey.
    """
    svc = services()
    try:
        link = links.peek("verify_email", token)
    except links.LinkError as exc:
        return _bad_verify_link(exc)
    email = link.attempt.email if link.attempt is not None else link.user.email
    if request.method in ("GET", "HEAD"):
        return _confirm_page(token, email)
    validate_csrf()
    tries = RateLimiter(svc.store, Limit("verify.link", CONFIRM_TRIES, 86400))
    ip = request.remote_addr or "unknown"
    try:
        tries.check(link.link_id)
        RateLimiter(svc.store, Limit("verify.ip", 30, 60)).hit(ip)
        ok = _password_ok(link, request.form.get("password") or "", ip)
    except RateLimited as exc:
        return limited(_confirm_page(token, email, error=too_many(exc)), exc)
    if not ok:
        count = tries.hit(link.link_id)
        audit.record_now("email.verify_failed", outcome="failure", reason="bad_password",
                         user_id=link.user.id if link.user else None,
                         attempt=link.attempt.id if link.attempt else None)  # fmt: skip
        if count >= CONFIRM_TRIES:
            links.burn(link)  # a guessed password never gets a sixth try
            return _bad_verify_link(links.InvalidLink())
        return _confirm_page(token, email, status=400,
                             error=_("That is not the password chosen for this account. Type "
                                     "the password you chose when you registered."))  # fmt: skip
    try:
        link = links.consume("verify_email", token)  # of two confirmations one wins
    except links.LinkError as exc:
        return _bad_verify_link(exc)
    if link.attempt is None:
        user = link.user
        user.email_verified = True
        audit.record("email.verified", user_id=user.id)
        db.session.commit()
        return _signed_in(user, link.data.get("txn"), signed_in_already=True)
    attempt_id = link.attempt.id  # (read now: a concurrent confirmation may delete the row)
    try:
        user = _create_account(link.attempt, locale=link.data.get("locale"))
    except AddressTaken:
        db.session.rollback()
        audit.record_now("email.verify_failed", outcome="failure", reason="address_taken",
                         attempt=attempt_id)  # fmt: skip
        return error_page(
            409,
            _("This address already has an account"),
            _(
                "An account with this email address exists already. Sign in, or choose "
                "“Forgot your password?” on the sign-in page."
            ),
        )
    return _signed_in(user, link.data.get("txn"))


def _password_ok(link: links.LinkData, password: str, ip: str) -> bool:
    """The password of the link's attempt, or (an account proving its address again) the
    account's password through the sign-in rules: limits, failure counter, locks."""
    svc = services()
    if link.attempt is not None:
        return svc.passwords.verify(link.attempt.password_hash, password)
    try:
        authenticate_password(svc, link.user.email, password, ip,
                              device_cookie=device_cookie(), allow_unverified=True)  # fmt: skip
    except (LoginFailed, AccountDisabled):
        return False
    return True


def _create_account(attempt: RegistrationAttempt, *, locale: str | None = None) -> User:
    """The account of a confirmed attempt (commits). A pending account of the same
    address (:func:`is_pending`) is taken over in place: new subject, the attempt's name
    and password, no sessions, factors or grants left; every other attempt for the
    address is deleted, so no other link can confirm it any more. The account's language
    is the one the registration was made in (*locale*), else this page's."""
    from ..oidc.tokens import TokenService

    email = attempt.email
    old = db.session.execute(
        db.select(User).filter_by(email=email).with_for_update()
    ).scalar_one_or_none()
    if old is not None and not is_pending(old):
        raise AddressTaken
    now = utcnow()
    if old is not None:
        user = old
        TokenService(services()).revoke_for_user(user.id)
        db.session.execute(delete(Consent).where(Consent.user_id == user.id))
        user.sub = new_subject()
        user.name = attempt.name
        user.given_name = user.family_name = None
        user.password_hash = attempt.password_hash
        user.failed_logins = 0
        user.locked_until = None
        user.webauthn_handle = None
        audit.record("user.pending_replaced", user_id=user.id, attempt=attempt.id)
    else:
        user = User(email=email, name=attempt.name, password_hash=attempt.password_hash)
        db.session.add(user)
    user.email_verified = True
    user.password_changed_at = now
    user.locale = supported(locale) or page_locale()
    try:
        db.session.flush()  # the unique address decides a race between two confirmations
    except IntegrityError:
        raise AddressTaken from None
    db.session.execute(delete(RegistrationAttempt).where(RegistrationAttempt.email == email))
    audit.record("user.registered", user_id=user.id, attempt=attempt.id)
    audit.record("email.verified", user_id=user.id)
    db.session.commit()
    if old is not None:
        services().sessions.destroy_all(user.id)
        db.session.commit()
    return user


def _signed_in(user: User, txn_id: str | None, *, signed_in_already: bool = False) -> Response:
    """The confirmation is the registration's "sign in again": this browser gets a
    session with the password passed, and the application's sign-in continues."""
    svc = services()
    previous = current_session()
    cookie, session = svc.sessions.establish(
        user.id, "pwd", previous=previous if previous and previous.user_id == user.id else None
    )
    adopt_session(cookie, session)
    set_device_cookie(svc.devices.issue(device_cookie(), user))
    if not signed_in_already:  # (authenticate_password recorded the sign-in itself)
        user.last_login_at = utcnow()
        audit.record("login.success", user_id=user.id, method="pwd", via="email_confirmation")
        db.session.commit()
    txn = svc.transactions.get(txn_id, browser_id())
    if txn is not None:
        from ..oidc.views import continue_authorization

        if "login" not in txn.done:
            txn.done.append("login")
        svc.transactions.save(txn)
        return continue_authorization(txn)
    return Response(render_template("account/verified.html"))


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
