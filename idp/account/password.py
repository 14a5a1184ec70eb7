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

import time

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)

from .. import audit
from ..extensions import db
from ..models import User
from ..models.base import utcnow
from ..notify import notify
from ..security.crypto import equal, hash_token
from ..security.password_policy import check_for
from ..security.ratelimit import Limit, RateLimited, RateLimiter
from ..services import services
from ..web import browser_id, error_page, set_session_cookie, validate_csrf
from . import links
from .mail import send_after_response
from .registration import link_error, password_lengths, valid_email

bp = Blueprint("password", __name__)

# How long a passed second factor keeps a reset open in this browser.
MFA_PASS_TTL = 900


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
    if not valid_email(email):
        return Response(
            render_template(
                "account/forgot.html",
                email=email,
                error="Enter the email address of your account, like name@example.com.",
            ),
            status=400,
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
                error=f"Too many requests. Wait {max(1, exc.retry_after // 60)} minutes and "
                "try again.",
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


def _pass_key(link: links.LinkData) -> str:
    return f"reset:mfa:{link.link_id}"


def _binding(link: links.LinkData) -> str:
    return f"reset:{link.link_id}:{hash_token(browser_id())[:32]}"


def _factor_passed(link: links.LinkData) -> bool:
    raw = services().store.get(_pass_key(link))
    return raw is not None and equal(raw, hash_token(browser_id()).encode())


# Factors this page can challenge without a signed-in session (push approval is not
# offered here). An email-code factor that sends to the account's own address is not
# offered either: the reset link already proves that inbox, so it would add nothing.
RESET_KINDS = ("webauthn", "totp", "sms", "voice", "email", "recovery")


def _factor_types(user: User) -> list[str]:
    """Every active second-factor type of the user (any of them makes the factor step
    mandatory, whether or not this page can present it)."""
    mfa = _mfa()
    types = mfa.facts(user).factor_types
    return [t for t in mfa.registry if t in types]


def _code_factors(user: User, kind: str) -> list:
    """The user's factors of a code-sending kind this page may use."""
    impl = _mfa().registry.get(kind)
    if impl is None or not hasattr(impl, "send"):
        return []
    factors = impl.active(user)
    if kind == "email":
        own = User.normalize_email(user.email)
        factors = [f for f in factors if User.normalize_email(impl.destination(user, f)) != own]
    return factors


def _sends_codes(kind: str | None) -> bool:
    return hasattr(_mfa().registry.get(kind or ""), "send")


def _allowed_kinds(user: User) -> list[str]:
    return [
        t
        for t in _factor_types(user)
        if t in RESET_KINDS and (not _sends_codes(t) or _code_factors(user, t))
    ]


def _bad_link(exc: links.LinkError) -> Response:
    audit.record_now("password.reset_failed", outcome="failure", reason=type(exc).__name__)
    return link_error(exc, again=url_for("password.forgot"), again_text="Ask for a new link")


def _challenge_page(token: str, link: links.LinkData, kinds: list[str], kind: str | None,
                    error: str | None = None, status: int = 200,
                    notice: str | None = None) -> Response:  # fmt: skip
    mfa = _mfa()
    if kind not in kinds:
        kind = mfa.default_type(link.user, kinds) if kinds else None
    targets = []
    if _sends_codes(kind):
        impl = mfa.registry[kind]
        targets = [(f.id, impl.masked(f)) for f in _code_factors(link.user, kind)]
    return Response(
        render_template(
            "account/reset_challenge.html",
            token=token,
            kind=kind,
            sends_codes=_sends_codes(kind),
            targets=targets,
            factor_id=request.values.get("factor_id", ""),
            error=error,
            notice=notice,
            others=[mfa.registry[t] for t in kinds if t != kind],
        ),
        status=status,
    )


def _locked(exc) -> Response:
    resp = Response(
        render_template("mfa/locked.html", minutes=max(1, (exc.retry_after + 59) // 60)),
        status=429,
    )
    resp.headers["Retry-After"] = str(exc.retry_after)
    return resp


def _password_page(token: str, error: str | None = None, status: int = 200) -> Response:
    return Response(
        render_template("account/reset.html", token=token, error=error, **password_lengths()),
        status=status,
    )


@bp.route("/reset/<token>", methods=["GET", "POST"])
def reset(token: str) -> Response:
    """The reset link: a second factor first (when the account has one), then the new
    password. Looking at the page does not use the link up; setting the password does."""
    try:
        link = links.peek("reset", token)
    except links.LinkError as exc:
        return _bad_link(exc)
    has_factor = bool(_factor_types(link.user))
    kinds = _allowed_kinds(link.user)
    need_factor = has_factor and not _factor_passed(link)
    if request.method in ("GET", "HEAD"):
        if need_factor:
            return _challenge_page(token, link, kinds, request.args.get("kind"))
        return _password_page(token)
    validate_csrf()
    step = request.form.get("step")
    if step in ("challenge", "send"):
        if not need_factor:
            return redirect(url_for("password.reset", token=token), 303)
        if step == "send":
            return _send_code(token, link, kinds)
        return _verify_factor(token, link, kinds)
    if need_factor:
        # Never reachable through the pages: a new password posted without the factor.
        audit.record_now("password.reset_refused", outcome="failure", user_id=link.user.id,
                         reason="second factor not passed")  # fmt: skip
        return error_page(
            403,
            "Verify it's you first",
            "This account has a second sign-in step. Open the link from your email again "
            "and complete that step before choosing a new password.",
        )
    return _set_new_password(token, link, has_factor)


def _send_code(token: str, link: links.LinkData, kinds: list[str]) -> Response:
    """Send a one-time code to one of the user's phones or (other) email addresses."""
    from ..mfa.base import MFAError
    from ..mfa.otp_codes import ResendTooSoon

    kind = request.form.get("kind") or ""
    if kind not in kinds or not _sends_codes(kind):
        return _challenge_page(token, link, kinds, None, "Choose one of your sign-in methods.", 400)
    impl = _mfa().registry[kind]
    factor = impl.choose(_code_factors(link.user, kind), request.form.get("factor_id"))
    if factor is None:
        return _challenge_page(token, link, kinds, kind, "Choose where to send the code.", 400)
    try:
        impl.send(link.user, factor, ip=request.remote_addr or "")
    except ResendTooSoon as exc:
        return _challenge_page(token, link, kinds, kind,
                               f"A code was just sent. Wait {exc.retry_after} seconds before "
                               "asking for another.", 429)  # fmt: skip
    except RateLimited as exc:
        message = f"Too many codes sent. Wait {exc.retry_after} seconds."
        resp = _challenge_page(token, link, kinds, kind, message, 429)
        resp.headers["Retry-After"] = str(exc.retry_after)
        return resp
    except MFAError as exc:
        message = f"{exc.message} Try again, or choose another way below."
        return _challenge_page(token, link, kinds, kind, message, 502)
    return _challenge_page(token, link, kinds, kind,
                           notice=f"We sent a code to {impl.masked(factor)}.")  # fmt: skip


def _verify_factor(token: str, link: links.LinkData, kinds: list[str]) -> Response:
    from ..mfa.base import InvalidResponse, SecondFactorLocked

    kind = request.form.get("kind") or ""
    if kind not in kinds:
        return _challenge_page(token, link, kinds, None, "Choose one of your sign-in methods.", 400)
    payload = {
        "code": request.form.get("code", ""),
        "credential": request.form.get("credential", ""),
        "factor_id": request.form.get("factor_id", ""),
    }
    if _sends_codes(kind) and not any(
        str(f.id) == payload["factor_id"] for f in _code_factors(link.user, kind)
    ):
        return _challenge_page(token, link, kinds, kind, "Choose where to send the code.", 400)
    try:
        _mfa().verify(link.user, kind, payload, binding=_binding(link))
    except SecondFactorLocked as exc:
        return _locked(exc)
    except RateLimited as exc:
        resp = _challenge_page(token, link, kinds, kind,
                               f"Too many attempts. Wait {exc.retry_after} seconds and try again.",
                               429)  # fmt: skip
        resp.headers["Retry-After"] = str(exc.retry_after)
        return resp
    except InvalidResponse as exc:
        db.session.refresh(link.user)
        try:
            _mfa().check_not_locked(link.user)
        except SecondFactorLocked as locked:
            return _locked(locked)
        return _challenge_page(token, link, kinds, kind, exc.message, 400)
    ttl = max(1, min(MFA_PASS_TTL, link.expires_at - int(time.time())))
    services().store.set(_pass_key(link), hash_token(browser_id()).encode(), ttl)
    audit.record_now("password.reset_factor_passed", user_id=link.user.id, factor=kind)
    return redirect(url_for("password.reset", token=token), 303)


def _set_new_password(token: str, link: links.LinkData, had_factor: bool) -> Response:
    svc = services()
    user = link.user
    password = request.form.get("password") or ""
    problem = check_for(svc.settings, password, [user.email, user.name or ""])
    if problem:
        return _password_page(token, problem, 400)
    if password != (request.form.get("password_confirm") or ""):
        return _password_page(token, "The two passwords are not the same. Type them again.", 400)
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
    svc.store.delete(_pass_key(link))
    set_session_cookie(None)
    notify(user, "password_changed", reset=True)
    return Response(render_template("account/reset_done.html"))


@bp.post("/reset/<token>/webauthn-options")
def reset_webauthn_options(token: str) -> Response:
    """Security-key options for the reset challenge, bound to this link and browser."""
    validate_csrf()
    try:
        link = links.peek("reset", token)
    except links.LinkError:
        abort(404)
    impl = _mfa().registry.get("webauthn")
    if impl is None or "webauthn" not in _allowed_kinds(link.user):
        abort(404)
    body = impl.authentication_options(link.user, binding=_binding(link))
    return Response(body, mimetype="application/json", headers={"Cache-Control": "no-store"})


# -- change (signed in) -----------------------------------------------------------------


@bp.route("/account/password", methods=["GET", "POST"])
def change() -> Response:
    """Change the password: the current one is required; other sessions end."""
    from .views import _gate

    gate = _gate()
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
        errors["current"] = f"Too many attempts. Wait {max(1, exc.retry_after // 60)} minutes."
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
        errors["current"] = "Your current password is not right."
    else:
        problem = check_for(svc.settings, password, [user.email, user.name or "", current])
        if equal(password.encode(), current.encode()):
            errors["password"] = "Choose a password different from your current one."
        elif problem:
            errors["password"] = problem
        elif password != (request.form.get("password_confirm") or ""):
            errors["password_confirm"] = "The two passwords are not the same. Type them again."
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
    cookie, _ = svc.sessions.establish(user.id, "pwd", previous=session, amr=("pwd",))
    set_session_cookie(cookie)
    audit.record_now("session.revoked_all", user_id=user.id, sessions=ended, reason="password")
    notify(user, "password_changed", reset=False)
    return redirect(url_for("password.change", done=1), 303)
