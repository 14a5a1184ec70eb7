"""Browser side of push approval: the set-up page (QR code, waits for the app), the
challenge page (send a request, show the number, wait for the answer) and their JSON
status endpoints, polled by ``static/push.js``. Without JavaScript the pages still work:
"I added the app, continue" and "I approved it, continue" submit the same forms.

The per-type logic lives here; the shared pages (:mod:`idp.mfa.views`) reach it through
the factor (:func:`setup` and :func:`challenge_action`).
"""

from __future__ import annotations

import time
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import ngettext

from ... import audit
from ...security.ratelimit import RateLimited
from ...web import current_session, current_user
from ..base import EnrollmentError, SecondFactorLocked
from ..pages import Ctx, finish_setup, load_ctx, locked_page, pass_factor, render_challenge
from .service import AMR, ChallengeGone, NotApproved, PushLocked, PushService

bp = Blueprint("mfa_push", __name__, url_prefix="/mfa/push")


def _service() -> PushService | None:
    impl = current_app.extensions["idp.mfa"].registry.get("push")
    return impl.service if impl is not None else None


def _json(body: dict[str, Any], status: int = 200) -> Response:
    resp = jsonify(body)
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    return resp


# -- set-up ----------------------------------------------------------------------------


def setup(ctx: Ctx, impl: Any) -> Response:
    """GET: the enrollment link and QR code; POST: finish once the app registered."""
    svc: PushService = impl.service
    binding = ctx.binding
    error = None
    if request.method == "POST":
        try:
            device = svc.finish_enrollment(ctx.user, binding=binding)
            return finish_setup(ctx, device, AMR)
        except EnrollmentError as exc:
            audit.record_now(
                "mfa.enroll_failed",
                outcome="failure",
                user_id=ctx.user.id,
                factor="push",
                reason=exc.reason,
            )
            error = exc.message
    try:
        data = svc.begin_enrollment(ctx.user, binding=binding)
    except EnrollmentError as exc:
        from ...web import error_page

        return error_page(409, _("Cannot set up push approval"), str(exc.message))
    return Response(
        render_template("mfa/push_setup.html", error=error, ctx_args=ctx.args, **data),
        status=200 if error is None else 400,
    )


@bp.get("/enroll/status")
def enroll_status() -> Response:
    """``{"status": "waiting" | "enrolled" | "expired"}`` for this browser session."""
    session, svc = current_session(), _service()
    if session is None or current_user() is None or svc is None:
        return _json({"status": "signed_out"}, 401)
    return _json({"status": svc.enrollment_status(session.sid)})


# -- challenge ----------------------------------------------------------------------------


def _render(ctx: Ctx, error: str | None, status: int, **headers: str) -> Response:
    resp = render_challenge(ctx, "push", error=error, status=status)
    for k, v in headers.items():
        resp.headers[k] = v
    return resp


def challenge_action(ctx: Ctx, impl: Any) -> Response:
    """The challenge page's forms: ``action=send`` sends a (new) request to the user's
    devices; anything else continues with the approved request."""
    svc = _service()
    mfa = current_app.extensions["idp.mfa"]
    assert svc is not None
    try:
        mfa.check_not_locked(ctx.user)
    except SecondFactorLocked as exc:
        return locked_page(exc)
    if request.form.get("action") == "send":
        # What the app shows as asking: the application, or what the user is doing.
        # (In the language of this page, as the app shows it.)
        client = ctx.client_name() or {"reset": _("Password reset"), "admin": _("Admin pages")}.get(
            ctx.purpose, _("Your account")
        )
        try:
            ch = svc.send(
                ctx.user,
                binding=ctx.binding,
                client=client,
                ip=request.remote_addr or "",
                user_agent=request.user_agent.string,
            )
        except RateLimited as exc:
            return _render(
                ctx,
                ngettext(
                    "Too many requests were sent. Wait %(num)d second, or try another way.",
                    "Too many requests were sent. Wait %(num)d seconds, or try another way.",
                    exc.retry_after,
                ),
                429,
                **{"Retry-After": str(exc.retry_after)},
            )
        except (PushLocked, ChallengeGone) as exc:
            return _render(ctx, exc.message, 403)
        resp = redirect(url_for("mfa.challenge", kind="push", **ctx.args))
        # For clients without a browser page (docs/PUSH.md): where to read the number.
        status_url = url_for("push_api.status", handle=ch.handle, _external=True)
        resp.headers["Link"] = f'<{status_url}>; rel="push-status"'
        return resp
    try:
        device = svc.complete(ctx.user, binding=ctx.binding)
    except NotApproved as exc:
        return _render(ctx, exc.message, 409 if exc.status == "pending" else 400)
    pass_factor(ctx, "push", AMR, device.id)
    return redirect(ctx.done_url())


@bp.get("/status")
def status() -> Response:
    """The page's request: ``{"status", "number"?, "expires_in"?}``, for the context the
    query names (the browser session, or a password-reset link in this browser).
    ``challenge`` (the id the page was rendered with) makes a replaced or lost request
    read as ``expired``."""
    ctx, svc = load_ctx(signed_in=False), _service()
    if isinstance(ctx, Response) or svc is None:
        return _json({"status": "signed_out"}, 401)
    state, ch = svc.current(ctx.binding, request.args.get("challenge") or None)
    body: dict[str, Any] = {"status": state}
    if ch is not None and state == "pending":
        body["number"] = ch.number
        body["expires_in"] = max(0, ch.expires - int(time.time()))
    return _json(body)


def challenge_vars(ctx: Ctx) -> dict[str, Any]:
    """What the challenge page shows for push in this context: the devices, the
    request's status, its number, and the out-of-band status URL."""
    svc = _service()
    if svc is None:
        return {"push": {"status": "none", "devices": [], "locked": False}}
    state, ch = svc.current(ctx.binding)
    out: dict[str, Any] = {
        "status": state,
        "devices": [d.label for d in svc.devices(ctx.user)],
        "locked": svc.is_locked(ctx.user),
    }
    if ch is not None:
        out["challenge"] = ch.id
        if state == "pending":
            out["number"] = ch.number
            out["expires_in"] = max(0, ch.expires - int(time.time()))
            out["handle_url"] = url_for("push_api.status", handle=ch.handle, _external=False)
    return {"push": out}
