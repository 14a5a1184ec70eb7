"""Email change: ``/account/email`` and the confirmation link sent to the NEW address.

Changing the address needs a recent re-authentication, like every sensitive change (a
second factor within ``[mfa] reauth_window``, or the password for a user without one).
The link proves the new inbox, is single use, expires after ``[registration]
verify_ttl`` and dies if the address changed meanwhile. An address that already
belongs to another account gets the same "check your new inbox" answer, but a notice
instead of a link, so the form cannot be used to find out who has an account. When the
change is confirmed the OLD address is told.
"""

from __future__ import annotations

from flask import Blueprint, Response, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from sqlalchemy.exc import IntegrityError

from .. import audit
from ..extensions import db
from ..models import User
from ..security.ratelimit import Limit, RateLimited, RateLimiter
from ..services import services
from ..web import error_page, validate_csrf
from . import links
from .mail import send
from .registration import email_problem, link_error, valid_email

bp = Blueprint("email", __name__)


def _gate_and_reauth() -> tuple[User, object] | Response:
    from ..mfa.pages import Ctx, reauth_needed
    from .views import account_gate

    gate = account_gate()
    if isinstance(gate, Response):
        return gate
    user, session = gate
    again = reauth_needed(Ctx(user, session, None))
    if again is not None:
        return again
    return user, session


def _page(error: str | None = None, email: str = "", status: int = 200) -> Response:
    from ..web import current_user

    return Response(
        render_template("account/email.html", user=current_user(), error=error, email=email),
        status=status,
    )


@bp.route("/account/email", methods=["GET", "POST"])
def change() -> Response:
    gate = _gate_and_reauth()
    if isinstance(gate, Response):
        return gate
    user, _session = gate
    if request.method in ("GET", "HEAD"):
        return _page()
    validate_csrf()
    svc = services()
    new = User.normalize_email(request.form.get("email") or "")
    if problem := email_problem(new):
        return _page(problem, new if len(new) <= 254 else "", 400)
    if new == user.email:
        return _page(_("That is already your email address."), new, 400)
    try:
        RateLimiter(svc.store, Limit("email_change.user", 5, 3600)).hit(str(user.id))
    except RateLimited as exc:
        wait = ngettext(
            "Too many attempts. Wait %(num)d minute.",
            "Too many attempts. Wait %(num)d minutes.",
            max(1, exc.retry_after // 60),
        )
        resp = _page(wait, new, 429)
        resp.headers["Retry-After"] = str(exc.retry_after)
        return resp
    ttl = svc.settings.registration.verify_ttl
    if _address_in_use(new, user.id):
        audit.record_now("email.change_requested", outcome="failure", user_id=user.id,
                         reason="address in use")  # fmt: skip
        send(new, "email_change_taken")
    else:
        token = links.issue("email_change", user, ttl, new_email=new)
        audit.record_now("email.change_requested", user_id=user.id)
        send(new, "email_change_verify", user=user,
             link=links.url(url_for("email.confirm", token=token)),
             hours=max(1, ttl // 3600))  # fmt: skip
    return Response(
        render_template(
            "account/check_email.html", hours=max(1, ttl // 3600), txn=None, new_address=True
        )
    )


def _address_in_use(address: str, user_id: int) -> bool:
    query = db.select(User.id).filter(User.email == address, User.id != user_id)
    return db.session.execute(query).first() is not None


def _confirm_page(token: str, link: links.LinkData, *, error: str | None = None,
                  status: int = 200) -> Response:  # fmt: skip
    from ..web import current_user

    signed_in = current_user() is not None and current_user().id == link.user.id
    return Response(
        render_template("account/email_confirm.html", token=token,
                        new_email=str(link.data.get("new_email") or ""), current=link.user.email,
                        ask_password=not signed_in, error=error),
        status=status,
    )  # fmt: skip


def _bad_link(exc: links.LinkError) -> Response:
    audit.record_now("email.change_failed", outcome="failure", reason=type(exc).__name__)
    return link_error(exc, again=url_for("email.change"), again_text=_("Change your email again"))


@bp.route("/account/email/confirm/<token>", methods=["GET", "POST"])
def confirm(token: str) -> Response:
    """The link from the new inbox: a page first (a GET changes nothing, so a mail
    scanner that follows links confirms nothing), then the change on a POST from it.

    The POST must come from the account's owner: a browser signed in to the account, or
    the account's password typed on the page (through the sign-in rules: limits, the
    failure counter and the locks)."""
    from ..auth.service import AccountDisabled, LoginFailed, authenticate_password
    from ..web import current_user, device_cookie, limited, too_many

    svc = services()
    try:
        link = links.peek("email_change", token)
    except links.LinkError as exc:
        return _bad_link(exc)
    if request.method in ("GET", "HEAD"):
        return _confirm_page(token, link)
    validate_csrf()
    viewer = current_user()
    if viewer is None or viewer.id != link.user.id:
        try:
            authenticate_password(
                svc,
                link.user.email,
                request.form.get("password") or "",
                request.remote_addr or "",
                device_cookie=device_cookie(),
            )
        except RateLimited as exc:
            return limited(_confirm_page(token, link, error=too_many(exc)), exc)
        except (LoginFailed, AccountDisabled):
            audit.record_now("email.change_failed", outcome="failure", user_id=link.user.id,
                             reason="bad_password")  # fmt: skip
            error = _(
                "That password is not right. Type the password of "
                "the account whose address you are changing."
            )
            return _confirm_page(token, link, status=400, error=error)
    try:
        link = links.consume("email_change", token)
    except links.LinkError as exc:
        return _bad_link(exc)
    user = link.user
    new = str(link.data.get("new_email") or "")
    old = user.email
    in_use = _address_in_use(new, user.id)
    if not in_use and valid_email(new):
        user.email = new
        user.email_verified = True
        try:
            db.session.flush()  # the unique constraint decides a race
            audit.record("email.changed", user_id=user.id)
            db.session.commit()
        except IntegrityError:
            # Another account took the address between the check and the update.
            db.session.rollback()
            in_use = True
    else:
        in_use = True
    if in_use:
        audit.record_now("email.change_failed", outcome="failure", user_id=user.id,
                         reason="address in use")  # fmt: skip
        return error_page(
            409,
            _("This address cannot be used"),
            _(
                "This email address now belongs to another account, so your address was not "
                "changed. Choose another address."
            ),
        )
    send(old, "email_changed", user=user, new_email=new)
    return Response(render_template("account/email_changed.html", email=new))
