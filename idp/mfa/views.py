"""Second-factor pages: set-up, challenge, "remind me later", the second-factor
recommendation, inside a sign-in transaction (``txn``) or from the account page
(``next=account``)."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for

from .. import audit
from ..auth.session import BrowserSession
from ..auth.transaction import Transaction
from ..extensions import db
from ..models import User
from ..security.ratelimit import RateLimited
from ..services import services
from ..web import (
    adopt_session,
    allow_form_action,
    browser_id,
    current_session,
    current_user,
    error_page,
    validate_csrf,
)
from . import code_views
from .base import EnrollmentError, InvalidResponse, MFAError, SecondFactorLocked

bp = Blueprint("mfa", __name__, url_prefix="/mfa")


@dataclass
class Ctx:
    """Where a second-factor page runs: a sign-in transaction or the account page."""

    user: User
    session: BrowserSession
    txn: Transaction | None

    @property
    def args(self) -> dict[str, str]:
        return {"txn": self.txn.id} if self.txn else {"next": "account"}

    def done_url(self) -> str:
        if self.txn is not None:
            return url_for("oidc.resume", txn=self.txn.id)
        return url_for("account.security")

    def finish(self) -> Response:
        """After a passed challenge: take the sign-in on in this request (see
        :func:`idp.oidc.views.continue_authorization`), or back to the account page."""
        if self.txn is not None:
            from ..oidc.views import continue_authorization

            return continue_authorization(self.txn)
        return redirect(self.done_url())


def _mfa():
    from flask import current_app

    return current_app.extensions["idp.mfa"]


def _ctx() -> Ctx | Response:
    """Load the page's context, or the response that ends the request."""
    svc = services()
    txn = None
    txn_id = request.values.get("txn")
    if txn_id:
        txn = svc.transactions.get(txn_id, browser_id())
        if txn is None:
            return error_page(
                400,
                "This sign-in has expired",
                "Go back to the application you were using and start again.",
            )
        allow_form_action(txn.params.get("redirect_uri", ""))
    user, session = current_user(), current_session()
    if user is None or session is None:
        if txn is not None:
            return redirect(url_for("auth.signin", txn=txn.id))
        return redirect(url_for("auth.signin", next="account"))
    return Ctx(user, session, txn)


def _pass(ctx: Ctx, method: str, amr: tuple[str, ...], factor_id: int) -> None:
    """Record a factor that was just VERIFIED (a challenge answered, or a new factor's
    possession proven at set-up) and rotate the session id.

    Nothing else may call this: a step that verifies nothing (new recovery codes, a
    postponed set-up, a dismissed recommendation) never marks a factor as passed.
    """
    cookie, session = services().sessions.establish(
        ctx.user.id, method, previous=ctx.session, amr=amr, factor_id=factor_id
    )
    adopt_session(cookie, session)
    ctx.session = session
    if ctx.txn is not None:
        if f"mfa:{method}" not in ctx.txn.done:
            ctx.txn.done.append(f"mfa:{method}")
        services().transactions.save(ctx.txn)


def _offers(types) -> list[Any]:
    registry = _mfa().registry
    return [registry[t] for t in registry if t in types]


def _within(age: int | None, window: int) -> bool:
    """True when a method passed, and no more than *window* seconds ago (0 counts)."""
    return age is not None and age <= window


def _reauth_needed(ctx: Ctx) -> Response | None:
    """Safe enrollment: the first factor needs a recent password; adding another (or
    changing one) needs a recent second factor."""
    window = services().settings.mfa.reauth_window
    now = int(time.time())
    facts = _mfa().facts(ctx.user)
    if not facts.factor_types:
        age = ctx.session.method_age("pwd", now)
        if age is None or age > window:
            if ctx.txn is not None:
                if "login" in ctx.txn.done:
                    ctx.txn.done.remove("login")
                    services().transactions.save(ctx.txn)
                return redirect(url_for("auth.signin", txn=ctx.txn.id, reauth=1))
            return redirect(url_for("auth.signin", next="account", reauth=1))
        return None
    recent = [t for t in facts.factor_types if _within(ctx.session.method_age(t, now), window)]
    if not recent:
        return redirect(url_for("mfa.challenge", reauth=1, **ctx.args))
    return None


# -- set-up ------------------------------------------------------------------------


@bp.get("/setup")
def setup() -> Response:
    """Choose a factor to set up (the enrollment prompt of the sign-in policy)."""
    ctx = _ctx()
    if isinstance(ctx, Response):
        return ctx
    from ..auth.flow import evaluate

    decision = evaluate(ctx.txn) if ctx.txn else None
    facts = _mfa().facts(ctx.user)
    if decision is not None and decision.step == "enroll":
        offers = _offers(decision.factors)
    else:
        offers = _offers([t for t in _mfa().registry if facts.factor_types or t != "recovery"])
    return Response(render_template(
        "mfa/setup.html", offers=offers, ctx_args=ctx.args, txn=ctx.txn.id if ctx.txn else None,
        optional=bool(decision and decision.optional),
        days_left=decision.days_left if decision else None,
        enforce_from=decision.enforce_from if decision else None,
        second=bool(facts.factor_types),
        reason_pr=bool(decision and decision.factors == ("webauthn",)),
    ))  # fmt: skip


@bp.post("/postpone")
def postpone() -> Response:
    """ "Remind me later": allowed only while the policy says set-up is optional."""
    validate_csrf()
    ctx = _ctx()
    if isinstance(ctx, Response):
        return ctx
    from ..auth.flow import evaluate

    decision = evaluate(ctx.txn) if ctx.txn else None
    if decision is None or decision.step != "enroll" or not decision.optional:
        audit.record_now("mfa.postpone_refused", outcome="failure", user_id=ctx.user.id)
        return error_page(
            400,
            "Set-up is required",
            "A second sign-in step is required now and cannot be postponed.",
        )
    ctx.txn.done.append("mfa_postponed")
    services().transactions.save(ctx.txn)
    audit.record_now("mfa.postponed", user_id=ctx.user.id, days_left=decision.days_left)
    return redirect(ctx.done_url())


@bp.route("/setup/<kind>", methods=["GET", "POST"])
def setup_factor(kind: str) -> Response:
    ctx = _ctx()
    if isinstance(ctx, Response):
        return ctx
    impl = _mfa().registry.get(kind)
    if impl is None:
        abort(404)
    facts = _mfa().facts(ctx.user)
    if not facts.factor_types and not impl.first_factor:
        return error_page(
            400,
            "Choose another method first",
            f"{impl.display_name} can be added once you have another sign-in method.",
        )
    if request.method == "POST":
        validate_csrf()
    gate = _reauth_needed(ctx)
    if gate is not None:
        return gate
    if kind == "push":  # push approval: idp/mfa/push_views.py
        from .push_views import setup_push

        return setup_push(ctx, impl)
    code_setup = functools.partial(code_views.setup, finish=_finish_setup)
    handler = {"totp": _setup_totp, "webauthn": _setup_webauthn, "recovery": _setup_recovery,
               **dict.fromkeys(code_views.KINDS, code_setup)}[kind]  # fmt: skip
    try:
        return handler(ctx, impl)
    except SecondFactorLocked as exc:
        return _locked(exc)


def _finish_setup(ctx: Ctx, factor, amr: tuple[str, ...]) -> Response:
    _mfa().added(ctx.user, factor)
    _pass(ctx, factor.type, amr, factor.id)
    if ctx.txn is None:
        return redirect(url_for("account.security", added=factor.type))
    return redirect(ctx.done_url())


def _setup_totp(ctx: Ctx, impl) -> Response:
    binding = ctx.session.sid
    error = None
    if request.method == "POST":
        try:
            services().mfa_attempts.hit(f"enroll:{ctx.user.id}")
            factor = impl.finish_enrollment(
                ctx.user,
                request.form.get("code", ""),
                (request.form.get("label") or "").strip()[:60],
                binding=binding,
            )
            return _finish_setup(ctx, factor, ("otp",))
        except InvalidResponse as exc:
            audit.record_now(
                "mfa.enroll_failed", outcome="failure", user_id=ctx.user.id, factor="totp"
            )
            error = exc.message
        except EnrollmentError as exc:
            error = exc.message
        except RateLimited as exc:
            error = f"Too many attempts. Wait {exc.retry_after} seconds."
    try:
        data = impl.begin_enrollment(ctx.user, binding=binding)
    except EnrollmentError as exc:
        return error_page(409, "Cannot add another authenticator app", exc.message)
    status = 200 if error is None else 400
    return Response(
        render_template("mfa/totp_setup.html", error=error, ctx_args=ctx.args, **data),
        status=status,
    )


def _setup_webauthn(ctx: Ctx, impl) -> Response:
    error = None
    if request.method == "POST":
        try:
            factor, amr = impl.finish_enrollment(
                ctx.user,
                request.form.get("credential", ""),
                (request.form.get("label") or "").strip()[:60],
                binding=ctx.session.sid,
            )
            return _finish_setup(ctx, factor, amr)
        except MFAError as exc:
            audit.record_now(
                "mfa.enroll_failed",
                outcome="failure",
                user_id=ctx.user.id,
                factor="webauthn",
                reason=exc.reason,
            )
            error = exc.message
    return Response(
        render_template("mfa/webauthn_setup.html", error=error, ctx_args=ctx.args),
        status=200 if error is None else 400,
    )


def _setup_recovery(ctx: Ctx, impl) -> Response:
    svc = services()
    if request.method in ("GET", "HEAD"):
        existing = impl.remaining(ctx.user) > 0
        return Response(
            render_template(
                "mfa/recovery_setup.html", codes=None, existing=existing, ctx_args=ctx.args
            )
        )
    factor, codes = impl.generate(ctx.user)
    audit.record("mfa.recovery_codes_created", user_id=ctx.user.id)
    db.session.commit()
    from ..notify import notify

    notify(ctx.user, "recovery_codes_new")
    # New codes prove nothing about who is here: they never count as a passed factor.
    # Keep the codes (encrypted) just long enough to show them and offer the download;
    # redirect so that reloading the page does not create (and silently swap) a new set.
    svc.store.set(
        f"recovery:show:{ctx.session.sid}",
        svc.secrets.encrypt("\n".join(codes), context=f"recovery:{ctx.user.id}").encode(),
        600,
    )
    return redirect(url_for("mfa.recovery_codes", **ctx.args))


def _pending_codes(user: User, session: BrowserSession) -> list[str] | None:
    svc = services()
    raw = svc.store.get(f"recovery:show:{session.sid}")
    if raw is None:
        return None
    return svc.secrets.decrypt(raw.decode(), context=f"recovery:{user.id}").split("\n")


@bp.get("/recovery/codes")
def recovery_codes() -> Response:
    """The new recovery codes, until the user confirms they saved them."""
    ctx = _ctx()
    if isinstance(ctx, Response):
        return ctx
    codes = _pending_codes(ctx.user, ctx.session)
    if codes is None:
        return error_page(
            410,
            "Codes no longer shown",
            "Recovery codes are shown only once. Create new codes if you did not save them.",
        )
    return Response(render_template("mfa/recovery_setup.html", codes=codes, ctx_args=ctx.args))


@bp.get("/recovery/download")
def recovery_download() -> Response:
    svc = services()
    user, session = current_user(), current_session()
    if user is None or session is None:
        abort(403)
    codes = _pending_codes(user, session)
    if codes is None:
        return error_page(
            410,
            "Codes no longer available",
            "Recovery codes are shown only once. Create new codes if you did not save them.",
        )
    text = (
        f"{svc.settings.ui.service_name} recovery codes for {user.email}\n"
        "Each code works once.\n\n" + "\n".join(codes) + "\n"
    )
    return Response(
        text,
        mimetype="text/plain",
        headers={
            "Content-Disposition": 'attachment; filename="recovery-codes.txt"',
            "Cache-Control": "no-store",
        },
    )


@bp.post("/recovery/done")
def recovery_done() -> Response:
    validate_csrf()
    ctx = _ctx()
    if isinstance(ctx, Response):
        return ctx
    services().store.delete(f"recovery:show:{ctx.session.sid}")
    return redirect(ctx.done_url())


# -- WebAuthn options ------------------------------------------------------------------


@bp.post("/webauthn/options/<purpose>")
def webauthn_options(purpose: str) -> Response:
    """Creation or request options for the browser (JSON), bound to this session."""
    validate_csrf()
    user, session = current_user(), current_session()
    if user is None or session is None:
        return error_page(401, "Sign in first", "Your session has ended. Sign in again.")
    impl = _mfa().registry.get("webauthn")
    if impl is None or purpose not in ("register", "authenticate"):
        abort(404)
    if purpose == "register":
        # Only where the set-up page itself is allowed (safe enrollment): creation
        # options never go to a password-only session of a user who has factors.
        if _reauth_needed(Ctx(user, session, None)) is not None:
            audit.record_now("mfa.enroll_refused", outcome="failure", user_id=user.id,
                             factor="webauthn", reason="reauthentication needed")  # fmt: skip
            return error_page(
                403, "Verify it's you first", "Pass a second sign-in step again first."
            )
        body = impl.registration_options(user, binding=session.sid)
    else:
        body = impl.authentication_options(user, binding=session.sid)
    return Response(body, mimetype="application/json", headers={"Cache-Control": "no-store"})


# -- challenge -----------------------------------------------------------------------


def _locked(exc: SecondFactorLocked) -> Response:
    resp = Response(
        render_template("mfa/locked.html", minutes=max(1, (exc.retry_after + 59) // 60)), status=429
    )
    resp.headers["Retry-After"] = str(exc.retry_after)
    return resp


@bp.route("/challenge", methods=["GET", "POST"])
def challenge() -> Response:
    """Verify one of the user's factors (sign-in, step-up, or re-authentication)."""
    ctx = _ctx()
    if isinstance(ctx, Response):
        return ctx
    mfa = _mfa()
    facts = mfa.facts(ctx.user)
    allowed = [t for t in mfa.registry if t in facts.factor_types]
    if ctx.txn is not None and not request.values.get("reauth"):
        from ..auth.flow import evaluate

        decision = evaluate(ctx.txn)
        if decision is not None and decision.step == "challenge":
            allowed = [t for t in allowed if t in decision.factors]
    if not allowed:
        return redirect(url_for("mfa.setup", **ctx.args))
    kind = request.values.get("kind") or mfa.default_type(ctx.user, allowed)
    if kind not in allowed:
        kind = mfa.default_type(ctx.user, allowed)
    error = None
    status = 200
    if request.method == "POST":
        validate_csrf()
        if kind in code_views.KINDS and request.form.get("action") == "send":
            return code_views.send(ctx, mfa.registry[kind], _locked)
        if kind == "push":  # push approval: idp/mfa/push_views.py
            from .push_views import challenge_post

            return challenge_post(ctx, allowed)
        try:
            payload = {
                "code": request.form.get("code", ""),
                "credential": request.form.get("credential", ""),
                "factor_id": request.form.get("factor_id", ""),
            }
            result = mfa.verify(ctx.user, kind, payload, binding=ctx.session.sid)
            _pass(ctx, kind, result.amr, result.factor.id)
            return ctx.finish()
        except SecondFactorLocked as exc:
            return _locked(exc)
        except RateLimited as exc:
            resp = Response(
                render_template(
                    "mfa/challenge.html",
                    kind=kind,
                    error=f"Too many attempts. Wait {exc.retry_after} seconds and try again.",
                    others=[mfa.registry[t] for t in allowed if t != kind],
                    ctx_args=ctx.args,
                    **code_views.challenge_vars(ctx, kind),
                ),
                status=429,
            )
            resp.headers["Retry-After"] = str(exc.retry_after)
            return resp
        except InvalidResponse as exc:
            error, status = exc.message, 400
            db.session.refresh(ctx.user)
            if ctx.user.mfa_locked_until is not None:
                try:
                    mfa.check_not_locked(ctx.user)
                except SecondFactorLocked as locked:
                    return _locked(locked)
    else:
        try:
            mfa.check_not_locked(ctx.user)
        except SecondFactorLocked as exc:
            return _locked(exc)
    others = [mfa.registry[t] for t in allowed if t != kind]
    return Response(
        render_template(
            "mfa/challenge.html",
            kind=kind,
            error=error,
            others=others,
            ctx_args=ctx.args,
            **code_views.challenge_vars(ctx, kind),
        ),
        status=status,
    )


@bp.route("/recommend", methods=["GET", "POST"])
def recommend() -> Response:
    ctx = _ctx()
    if isinstance(ctx, Response):
        return ctx
    if ctx.txn is None:
        return redirect(url_for("account.security"))
    from ..auth.flow import evaluate

    decision = evaluate(ctx.txn)
    if decision is None or decision.step != "recommend":
        # Only the recommendation step may be dismissed; anything else goes back to the
        # step the sign-in is at (nothing is written).
        return redirect(ctx.done_url())
    if request.method == "POST":
        validate_csrf()
        ctx.txn.done.append("recommend_dismissed")
        services().transactions.save(ctx.txn)
        audit.record_now("mfa.second_factor_skipped", user_id=ctx.user.id)
        return redirect(ctx.done_url())
    facts = _mfa().facts(ctx.user)
    offers = _offers([t for t in _mfa().registry if t not in facts.factor_types])
    return Response(render_template("mfa/recommend.html", offers=offers, ctx_args=ctx.args))
