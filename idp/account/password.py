"""Password reset (``/forgot``, ``/reset/<token>``) and password change
(``/account/password``).

Reset: the emailed link is signed, single use and valid ``[password] reset_ttl`` (1 h);
it dies when the password changes. When the account has second factors, the reset also
needs one of them (so a stolen inbox alone cannot take the account): the factor is
checked with :meth:`MFAService.verify` (the shared failure counter and lock apply) and
the pass is recorded for this link in this browser only; the browser is NOT signed in.
Completing a reset sets the new password, ends every session and refresh token, clears
the sign-in lock, marks the email verified (the link proved the inbox), audits and
notifies. Change: the signed-in user types the current password; other sessions and
refresh tokens end.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import ngettext

from .. import audit
from ..extensions import db
from ..models import User
from ..models.base import utcnow
from ..notify import notify
from ..security.crypto import equal
from ..security.password_policy import check_for
from ..security.ratelimit import Limit, RateLimited, RateLimiter
from ..services import services
from ..web import error_page, set_session_cookie, validate_csrf
from . import links
from .mail import send_after_response
from .registration import email_problem, link_error, password_lengths

bp = Blueprint("password", __name__)


def _mfa():
    return current_app.extensions["idp.mfa"]


def _revoke_tokens(user: User) -> None:
    from ..oidc.tokens import TokenService

    TokenService(services()).revoke_for_user(user.id)


# -- forgot --------------------------------------------------------------------------


@bp.route("/forgot", methods=["GET", "POST"])
def forgot() -> Response:
    """Ask for a reset link; the answer is the same whether or not the address is known."""
    svc = services()
    if request.method in ("GET", "HEAD"):
        return Response(render_template("account/forgot.html", email="", error=None))
    validate_csrf()
    email = User.normalize_email(request.form.get("email") or "")
    if problem := email_problem(email):
        shown = email if len(email) <= 254 else ""  # (not echo a page of text back)
        return Response(
            render_template("account/forgot.html", email=shown, error=problem), status=400
        )
    p = svc.settings.password
    try:
        RateLimiter(svc.store, Limit("reset.ip", p.reset_per_ip_per_hour, 3600)).hit(
            request.remote_addr or "unknown"
        )
        RateLimiter(svc.store, Limit("reset.email", p.reset_per_email_per_hour, 3600)).hit(email)
    except RateLimited as exc:
        resp = Response(
            render_template(
                "account/forgot.html",
                email=email,
                error=ngettext(
                    "Too many requests. Wait %(num)d minute and try again.",
                    "Too many requests. Wait %(num)d minutes and try again.",
                    max(1, exc.retry_after // 60),
                ),
            ),
            status=429,
        )
        resp.headers["Retry-After"] = str(exc.retry_after)
        return resp
    user = db.session.execute(db.select(User).filter_by(email=email)).scalar_one_or_none()
    # Known and unknown addresses take the same path up to the response: the email is
    # sent after it (send_after_response), so the answer time does not tell them apart.
    to, user_id, context = None, None, {}
    if user is not None and user.is_active:
        to, user_id = user.email, user.id
        token = links.issue("reset", user, p.reset_ttl)
        audit.record_now("password.reset_requested", user_id=user_id)
        context = {"link": links.url(url_for("password.reset", token=token)),
                   "minutes": max(1, p.reset_ttl // 60)}  # fmt: skip
    else:
        audit.record_now("password.reset_requested", outcome="failure", reason="no such account")
    return send_after_response(
        redirect(url_for("password.forgot_sent"), 303), to, "password_reset",
        user_id=user_id, **context,
    )  # fmt: skip


@bp.get("/forgot/sent")
def forgot_sent() -> Response:
    minutes = max(1, services().settings.password.reset_ttl // 60)
    return Response(render_template("account/forgot_sent.html", minutes=minutes))


# -- reset ---------------------------------------------------------------------------


def _bad_link(exc: links.LinkError) -> Response:
    audit.record_now("password.reset_failed", outcome="failure", reason=type(exc).__name__)
    return link_error(exc, again=url_for("password.forgot"), again_text=_("Ask for a new link"))


def _password_page(token: str, error: str | None = None, status: int = 200) -> Response:
    return Response(
        render_template("account/reset.html", token=token, error=error, **password_lengths()),
        status=status,
    )


@bp.route("/reset/<token>", methods=["GET", "POST"])
def reset(token: str) -> Response:
    """The reset link: a second factor first (when the account has one), on the one
    challenge page (``/mfa/challenge?reset=<token>``), then the new password. Looking at
    the page does not use the link up; setting the password does."""
    from ..mfa.pages import reset_factor_passed

    try:
        link = links.peek("reset", token)
    except links.LinkError as exc:
        return _bad_link(exc)
    has_factor = bool(_mfa().facts(link.user).factor_types)
    need_factor = has_factor and not reset_factor_passed(link)
    if request.method in ("GET", "HEAD"):
        if need_factor:
            return redirect(url_for("mfa.challenge", reset=token))
        return _password_page(token)
    validate_csrf()
    if need_factor:
        # Never reachable through the pages: a new password posted without the factor.
        audit.record_now("password.reset_refused", outcome="failure", user_id=link.user.id,
                         reason="second factor not passed")  # fmt: skip
        return error_page(
            403,
            _("Verify it's you first"),
            _(
                "This account has a second sign-in step. Open the link from your email again "
                "and complete that step before choosing a new password."
            ),
        )
    return _set_new_password(token, link, has_factor)


def _set_new_password(token: str, link: links.LinkData, had_factor: bool) -> Response:
    svc = services()
    user = link.user
    password = request.form.get("password") or ""
    problem = check_for(svc.settings, password, [user.email, user.name or ""])
    if problem:
        return _password_page(token, problem, 400)
    if password != (request.form.get("password_confirm") or ""):
        return _password_page(token, _("The two passwords are not the same. Type them again."), 400)
    try:
        link = links.consume("reset", token)  # burns it: of two submissions one wins
    except links.LinkError as exc:
        return _bad_link(exc)
    user = link.user
    user.password_hash = svc.passwords.hash(password)
    user.password_changed_at = utcnow()
    user.failed_logins = 0
    user.locked_until = None
    user.email_verified = True  # the link reached the inbox
    _revoke_tokens(user)
    audit.record("password.reset", user_id=user.id, second_factor=had_factor)
    db.session.commit()
    svc.sessions.destroy_all(user.id)
    svc.store.delete(f"reset:mfa:{link.link_id}")
    set_session_cookie(None)
    notify(user, "password_changed", reset=True)
    return Response(render_template("account/reset_done.html"))


# -- change (signed in) -----------------------------------------------------------------


@bp.route("/account/password", methods=["GET", "POST"])
def change() -> Response:
    """Change the password: the current one is required; other sessions end."""
    from .views import account_gate

    gate = account_gate()
    if isinstance(gate, Response):
        return gate
    user, session = gate
    if request.method in ("GET", "HEAD"):
        done = bool(request.args.get("done"))
        return Response(
            render_template("account/password.html", **password_lengths(), errors={}, done=done)
        )
    validate_csrf()
    svc = services()
    errors: dict[str, str] = {}
    try:
        RateLimiter(svc.store, Limit("password.change.user", 5, 900)).hit(str(user.id))
    except RateLimited as exc:
        errors["current"] = ngettext(
            "Too many attempts. Wait %(num)d minute.",
            "Too many attempts. Wait %(num)d minutes.",
            max(1, exc.retry_after // 60),
        )
        resp = Response(
            render_template("account/password.html", **password_lengths(), errors=errors),
            status=429,
        )
        resp.headers["Retry-After"] = str(exc.retry_after)
        return resp
    current = request.form.get("current_password") or ""
    password = request.form.get("password") or ""
    if not svc.passwords.verify(user.password_hash, current):
        audit.record_now("password.change_failed", outcome="failure", user_id=user.id,
                         reason="bad current password")  # fmt: skip
        errors["current"] = _("Your current password is not right.")
    else:
        problem = check_for(svc.settings, password, [user.email, user.name or "", current])
        if equal(password.encode(), current.encode()):
            errors["password"] = _("Choose a password different from your current one.")
        elif problem:
            errors["password"] = problem
        elif password != (request.form.get("password_confirm") or ""):
            errors["password_confirm"] = _("The two passwords are not the same. Type them again.")
    if errors:
        return Response(
            render_template("account/password.html", **password_lengths(), errors=errors),
            status=400,
        )
    user.password_hash = svc.passwords.hash(password)
    user.password_changed_at = utcnow()
    user.failed_logins = 0
    user.locked_until = None
    _revoke_tokens(user)
    audit.record("password.changed", user_id=user.id)
    db.session.commit()
    # End every session, then give this browser a fresh one with what it had passed.
    ended = svc.sessions.destroy_all(user.id)
    cookie, _session = svc.sessions.establish(user.id, "pwd", previous=session, amr=("pwd",))
    set_session_cookie(cookie)
    audit.record_now("session.revoked_all", user_id=user.id, sessions=ended, reason="password")
    notify(user, "password_changed", reset=False)
    return redirect(url_for("password.change", done=1), 303)
