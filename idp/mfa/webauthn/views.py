"""Security keys and passkeys: the set-up page, the options the browser asks for
before a ceremony (``/mfa/webauthn/options/register|authenticate``), and the passkey
offer after a password sign-in (``/mfa/passkey/offer``)."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ... import audit
from ...auth.transaction import PASSKEY_OFFERED
from ...extensions import db
from ...models.base import utcnow
from ...services import services
from ...web import error_page, validate_csrf
from ..base import MFAError
from ..pages import Ctx, bp, finish_setup, load_ctx, mfa, reauth_needed


def setup(ctx: Ctx, impl: Any) -> Response:
    error = None
    if request.method == "POST":
        try:
            factor, amr = impl.finish_enrollment(
                ctx.user,
                request.form.get("credential", ""),
                (request.form.get("label") or "").strip()[:60],
                binding=ctx.binding,
            )
            return finish_setup(ctx, factor, amr)
        except MFAError as exc:
            audit.record_now(
                "mfa.enroll_failed",
                outcome="failure",
                user_id=ctx.user.id,
                factor="webauthn",
                reason=exc.reason,
            )
            error = exc.message
    # Reached from the passkey offer: setting it up is optional, and the sign-in may go
    # on without it.
    offered = ctx.txn is not None and PASSKEY_OFFERED in ctx.txn.done
    return Response(
        render_template(
            "mfa/webauthn_setup.html",
            error=error,
            ctx_args=ctx.args,
            continue_url=ctx.done_url() if offered else None,
        ),
        status=200 if error is None else 400,
    )


@bp.route("/passkey/offer", methods=["GET", "POST"])
def passkey_offer() -> Response:
    """ "Sign in faster next time": a passkey offered after a password sign-in (the
    policy's ``offer_passkey`` step), with "Set up a passkey" and "Not now".

    Showing it is what counts: the first page of the offer records the time on the
    account (``users.passkey_offered_at``) and the step in the sign-in, so the offer
    comes back at most once per ``[webauthn] passkey_offer_days``, whether the user
    answers, reloads or walks away. The answer is taken only in a sign-in that showed
    the offer; anything else goes back to the step the sign-in is at, writing nothing."""
    if request.method == "POST":
        validate_csrf()
    ctx = load_ctx()
    if isinstance(ctx, Response):
        return ctx
    if ctx.txn is None:
        return redirect(ctx.done_url())
    shown = PASSKEY_OFFERED in ctx.txn.done
    if not shown:
        from ...auth.flow import evaluate

        decision = evaluate(ctx.txn)
        if decision is None or decision.step != "offer_passkey":
            return redirect(ctx.done_url())
    if request.method == "POST":
        if not shown:
            return redirect(ctx.done_url())
        choice = "setup" if request.form.get("choice") == "setup" else "skip"
        audit.record("mfa.passkey_offer", user_id=ctx.user.id, choice=choice)
        db.session.commit()
        if choice == "setup":
            return redirect(url_for("mfa.setup_factor", kind="webauthn", **ctx.args))
        return redirect(ctx.done_url())
    if not shown:
        ctx.user.passkey_offered_at = utcnow()
        db.session.commit()
        ctx.txn.done.append(PASSKEY_OFFERED)
        services().transactions.save(ctx.txn)
    days = services().settings.webauthn.passkey_offer_days
    return Response(
        render_template("mfa/passkey_offer.html", ctx_args=ctx.args, days=days),
        headers={"Cache-Control": "no-store"},
    )


@bp.post("/webauthn/options/<purpose>")
def webauthn_options(purpose: str) -> Response:
    """Creation or request options for the browser (JSON), bound to the page's context:
    the browser session, or on a password reset the link in this browser."""
    validate_csrf()
    impl = mfa().registry.get("webauthn")
    if impl is None or purpose not in ("register", "authenticate"):
        abort(404)
    ctx = load_ctx(signed_in=purpose == "register")
    if isinstance(ctx, Response):
        return error_page(401, _("Sign in first"), _("Your session has ended. Sign in again."))
    if purpose == "register":
        # Only where the set-up page itself is allowed (safe enrollment): creation
        # options never go to a password-only session of a user who has factors.
        if reauth_needed(ctx) is not None:
            audit.record_now("mfa.enroll_refused", outcome="failure", user_id=ctx.user.id,
                             factor="webauthn", reason="reauthentication needed")  # fmt: skip
            return error_page(
                403, _("Verify it's you first"), _("Pass a second sign-in step again first.")
            )
        body = impl.registration_options(ctx.user, binding=ctx.binding)
    else:
        if "webauthn" not in ctx.allowed():
            abort(404)
        body = impl.authentication_options(ctx.user, binding=ctx.binding)
    return Response(body, mimetype="application/json", headers={"Cache-Control": "no-store"})
