"""Sign-in pages: the password step of the sign-in transaction."""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from werkzeug.exceptions import HTTPException

from ..security.ratelimit import RateLimited
from ..services import services
from ..web import (
    adopt_session,
    allow_form_action,
    allow_img_src,
    browser_id,
    current_session,
    current_user,
    device_cookie,
    error_page,
    set_device_cookie,
    too_many,
    validate_csrf,
)
from .passkey import AccountLocked, PasskeyFailed, authenticate_passkey, passkey_binding
from .service import (
    AccountDisabled,
    EmailNotVerified,
    LoginFailed,
    RegistrationPending,
    authenticate_password,
)
from .transaction import PASSKEY_DONE

bp = Blueprint("auth", __name__)

GENERIC_FAILURE = _l(
    "The email or password is not right. After several failed attempts sign-in is paused "
    "for a while; wait and try again, or contact the help desk."
)


# Where a sign-in without a transaction may continue (never a URL from the request).
NEXT_PAGES = {"account": "account.security"}


def asking_client() -> dict[str, Any] | None:
    """The application this browser's sign-in (``?txn=``) is for, as the pages show it:
    name, logo, home page, privacy policy and terms (RFC 7591 2). None without one.

    Every page of a sign-in names it (base.html), so a user always knows which service
    asked; the logo's origin is added to this page's CSP img-src."""
    if "asking_client" in g:
        return g.asking_client
    card = None
    txn_id = request.args.get("txn")
    if txn_id is None and request.method == "POST":
        try:
            txn_id = request.form.get("txn")
        except HTTPException:  # a body too large to read (413): its page names no one
            txn_id = None
    txn = services().transactions.get(txn_id, browser_id()) if txn_id else None
    if txn is not None:
        from ..oidc.server import query_client

        client = query_client(txn.params.get("client_id"))
        if client is not None:
            card = {
                "name": client.name,
                "logo_uri": allow_img_src(client.logo_uri),
                "client_uri": client.client_uri,
                "policy_uri": client.policy_uri,
                "tos_uri": client.tos_uri,
            }
    g.asking_client = card
    return card


def back_to() -> dict[str, str] | None:
    """The application this browser session last signed in to, with its registered home
    page (never a URL from the request): "Back to ..." on the account and admin pages."""
    session = current_session()
    if session is None or not session.last_client:
        return None
    from ..oidc.server import query_client

    client = query_client(session.last_client)
    if client is None or not client.client_uri:
        return None
    return {"name": client.name, "uri": client.client_uri}


@bp.app_context_processor
def _asking_client_global() -> dict[str, Any]:
    return {"asking_client": asking_client, "back_to": back_to}


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
            # The passkey sign-in, where WebAuthn can work (not on an IP address).
            passkeys=_passkeys() is not None,
        ),
        status=status,
    )


def _passkeys() -> Any:
    """The WebAuthn factor, where this deployment offers passkeys; else None."""
    return current_app.extensions["idp.mfa"].registry.get("webauthn")


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
        message = ngettext(
            "Verify your email address first. We sent a link to %(email)s: open it and "
            "enter your password to finish. The link works once and expires after "
            "%(num)d hour.",
            "Verify your email address first. We sent a link to %(email)s: open it and "
            "enter your password to finish. The link works once and expires after "
            "%(num)d hours.",
            hours,
            email=subject.email,
        )
    else:
        message = _(
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
        return _render(txn_id, email, _("Enter your email and password."), 400)
    try:
        user = authenticate_password(
            svc, email, password, request.remote_addr or "", device_cookie=device_cookie()
        )
    except LoginFailed:
        return _render(txn_id, email, str(GENERIC_FAILURE), 200)
    except EmailNotVerified as exc:
        return _unverified(txn_id, email, exc.user)
    except RegistrationPending as exc:
        return _unverified(txn_id, email, exc.attempt)
    except AccountDisabled:
        return _render(
            txn_id, email, _("This account is disabled. Contact the help desk for help."), 403
        )
    except RateLimited as exc:
        resp = _render(
            txn_id,
            email,
            ngettext(
                "Too many sign-in attempts. Wait %(num)d second and try again.",
                "Too many sign-in attempts. Wait %(num)d seconds and try again.",
                exc.retry_after,
            ),
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


# -- a sign-in with a passkey alone (idp.auth.passkey) ----------------------------------------

#: One answer for every refused passkey (no enumeration of accounts or credentials).
PASSKEY_FAILURE = _l(
    "That passkey could not sign you in. Try again, or sign in with your email and password."
)


@bp.post("/signin/passkey/options")
def passkey_options() -> Response:
    """Request options for a sign-in with a passkey alone (JSON, WebAuthn L2 5.5), bound
    to this browser and this sign-in (``txn``) for one answer within five minutes. The
    sign-in page's passkey.js asks for them as the page opens (the email field's
    autofill, WebAuthn L3 conditional mediation) and when "Sign in with a passkey" is
    pressed."""
    validate_csrf()
    impl = _passkeys()
    if impl is None:
        abort(404)
    svc = services()
    txn = svc.transactions.get(request.form.get("txn"), browser_id())
    try:
        svc.passkey_options.hit(request.remote_addr or "unknown")
    except RateLimited as exc:
        return error_page(
            429, _("Too many requests"), too_many(exc), Retry_After=str(exc.retry_after)
        )
    body = impl.passkey_options(binding=passkey_binding(browser_id(), txn.id if txn else None))
    return Response(body, mimetype="application/json", headers={"Cache-Control": "no-store"})


@bp.post("/signin/passkey")
def signin_passkey() -> Response:
    """A sign-in with a passkey alone: the assertion the page's passkey.js got from the
    browser (autofill or the button). It passes both steps (:mod:`idp.auth.passkey`)
    and the sign-in goes on in this request, as after the password."""
    svc = services()
    txn = svc.transactions.get(request.values.get("txn"), browser_id())
    txn_id = txn.id if txn else None
    if txn is not None:
        allow_form_action(txn.params.get("redirect_uri", ""))
    validate_csrf()
    if _passkeys() is None:
        abort(404)
    response = request.form.get("credential") or ""
    if not response:
        return _render(txn_id, "", str(PASSKEY_FAILURE), 400)
    from ..mfa.base import SecondFactorLocked, UserNotVerified

    try:
        passed = authenticate_passkey(
            svc,
            current_app.extensions["idp.mfa"],
            response,
            binding=passkey_binding(browser_id(), txn_id),
            ip=request.remote_addr or "",
            device_cookie=device_cookie(),
        )
    except PasskeyFailed:
        return _render(txn_id, "", str(PASSKEY_FAILURE), 400)
    except UserNotVerified as exc:
        return _render(txn_id, "", str(exc.message), 400)
    except (AccountLocked, SecondFactorLocked) as exc:
        resp = _render(
            txn_id,
            "",
            _(
                "Sign-in to this account is paused for now. Wait and try again later, or "
                "contact the help desk."
            ),
            429 if isinstance(exc, SecondFactorLocked) else 403,
        )
        if isinstance(exc, SecondFactorLocked):
            resp.headers["Retry-After"] = str(exc.retry_after)
        return resp
    except AccountDisabled:
        return _render(
            txn_id, "", _("This account is disabled. Contact the help desk for help."), 403
        )
    except EmailNotVerified as exc:
        return _unverified(txn_id, "", exc.user)
    except RateLimited as exc:
        resp = _render(
            txn_id,
            "",
            ngettext(
                "Too many sign-in attempts. Wait %(num)d second and try again.",
                "Too many sign-in attempts. Wait %(num)d seconds and try again.",
                exc.retry_after,
            ),
            429,
        )
        resp.headers["Retry-After"] = str(exc.retry_after)
        return resp

    user, verified = passed.user, passed.verified
    # Both steps at once: the first ("passkey") and a phishing-resistant second factor
    # ("webauthn"), one factor id for both (removing the passkey ends what it earned).
    cookie, session = svc.sessions.establish(
        user.id,
        "passkey",
        previous=current_session(),
        amr=verified.amr,
        factor_id=verified.factor.id,
        also=("webauthn",),
    )
    adopt_session(cookie, session)
    set_device_cookie(svc.devices.issue(device_cookie(), user))
    if txn is not None:
        from ..oidc.views import continue_authorization

        for step in (PASSKEY_DONE, "mfa:webauthn"):
            if step not in txn.done:
                txn.done.append(step)
        svc.transactions.save(txn)
        return continue_authorization(txn)
    nxt = request.form.get("next")
    return redirect(url_for(NEXT_PAGES[nxt]) if nxt in NEXT_PAGES else url_for("oidc.home"))
