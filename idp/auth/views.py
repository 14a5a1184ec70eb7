"""Sign-in pages: the password step of the sign-in transaction."""

from __future__ import annotations

from flask import Blueprint, Response, redirect, render_template, request, url_for

from ..security.ratelimit import RateLimited
from ..services import services
from ..web import (
    adopt_session,
    allow_form_action,
    browser_id,
    current_session,
    current_user,
    device_cookie,
    set_device_cookie,
    validate_csrf,
)
from .service import (
    AccountDisabled,
    EmailNotVerified,
    LoginFailed,
    RegistrationPending,
    authenticate_password,
)

bp = Blueprint("auth", __name__)

GENERIC_FAILURE = (
    "The email or password is not right. After several failed attempts sign-in is paused "
    "for a while; wait and try again, or contact the help desk."
)


# Where a sign-in without a transaction may continue (never a URL from the request).
NEXT_PAGES = {"account": "account.security"}


def _render(txn_id: str | None, email: str = "", error: str | None = None, status: int = 200):
    nxt = request.values.get("next")
    return Response(
        render_template(
            "signin.html",
            txn=txn_id,
            email=email,
            error=error,
            next=nxt if nxt in NEXT_PAGES else None,
            reauth=bool(request.values.get("reauth")),
            registration=services().settings.registration.enabled,
        ),
        status=status,
    )


def _unverified(txn_id: str | None, email: str, subject) -> Response:
    """The password was right but the address is not proven yet (an account after a
    help-desk reset, or a registration attempt): send a fresh link (a few per hour at
    most) and say so. Only the holder of the password sees this page."""
    from ..account.links import send_email_verification
    from ..models import User
    from ..security.ratelimit import Limit, RateLimiter

    key = f"user:{subject.id}" if isinstance(subject, User) else f"attempt:{subject.id}"
    try:
        RateLimiter(services().store, Limit("verify.resend.user", 3, 3600)).hit(key)
        sent = send_email_verification(subject, txn=txn_id)
    except RateLimited:
        sent = True  # a recent link is still on its way; do not send yet another
    if sent:
        hours = max(1, services().settings.registration.verify_ttl // 3600)
        message = (
            f"Verify your email address first. We sent a link to {subject.email}: open it "
            f"and enter your password to finish. The link works once and expires after "
            f"{hours} hours."
        )
    else:
        message = (
            "Verify your email address first. We could not send the link just now; "
            "try signing in again in a few minutes, or contact the help desk."
        )
    return _render(txn_id, email, message, 403)


@bp.route("/signin", methods=["GET", "POST"])
def signin() -> Response:
    svc = services()
    txn = svc.transactions.get(request.values.get("txn"), browser_id())
    txn_id = txn.id if txn else None
    if txn is not None:
        allow_form_action(txn.params.get("redirect_uri", ""))
    if request.method in ("GET", "HEAD"):
        hint = txn.params.get("login_hint", "") if txn else ""
        user = current_user()
        if request.args.get("reauth") and user is not None:
            hint = user.email
        return _render(txn_id, email=hint if "@" in hint else "")

    validate_csrf()
    email = (request.form.get("email") or "").strip()
    password = request.form.get("password") or ""
    if not email or not password:
        return _render(txn_id, email, "Enter your email and password.", 400)
    try:
        user = authenticate_password(
            svc, email, password, request.remote_addr or "", device_cookie=device_cookie()
        )
    except LoginFailed:
        return _render(txn_id, email, GENERIC_FAILURE, 200)
    except EmailNotVerified as exc:
        return _unverified(txn_id, email, exc.user)
    except RegistrationPending as exc:
        return _unverified(txn_id, email, exc.attempt)
    except AccountDisabled:
        return _render(
            txn_id, email, "This account is disabled. Contact the help desk for help.", 403
        )
    except RateLimited as exc:
        resp = _render(
            txn_id,
            email,
            f"Too many sign-in attempts. Wait {exc.retry_after} seconds and try again.",
            429,
        )
        resp.headers["Retry-After"] = str(exc.retry_after)
        return resp

    cookie, session = svc.sessions.establish(user.id, "pwd", previous=current_session())
    adopt_session(cookie, session)
    # This browser is now trusted by the account (a strangers' lock will not stop it).
    set_device_cookie(svc.devices.issue(device_cookie(), user))
    if txn is not None:
        from ..oidc.views import continue_authorization

        if "login" not in txn.done:
            txn.done.append("login")
        svc.transactions.save(txn)
        return continue_authorization(txn)
    nxt = request.form.get("next")
    return redirect(url_for(NEXT_PAGES[nxt]) if nxt in NEXT_PAGES else url_for("oidc.home"))
