"""Security keys and passkeys: the set-up page, and the options the browser asks for
before a ceremony (``/mfa/webauthn/options/register|authenticate``)."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, render_template, request

from ... import audit
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
    return Response(
        render_template("mfa/webauthn_setup.html", error=error, ctx_args=ctx.args),
        status=200 if error is None else 400,
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
        return error_page(401, "Sign in first", "Your session has ended. Sign in again.")
    if purpose == "register":
        # Only where the set-up page itself is allowed (safe enrollment): creation
        # options never go to a password-only session of a user who has factors.
        if reauth_needed(ctx) is not None:
            audit.record_now("mfa.enroll_refused", outcome="failure", user_id=ctx.user.id,
                             factor="webauthn", reason="reauthentication needed")  # fmt: skip
            return error_page(
                403, "Verify it's you first", "Pass a second sign-in step again first."
            )
        body = impl.registration_options(ctx.user, binding=ctx.binding)
    else:
        if "webauthn" not in ctx.allowed():
            abort(404)
        body = impl.authentication_options(ctx.user, binding=ctx.binding)
    return Response(body, mimetype="application/json", headers={"Cache-Control": "no-store"})
