"""The authenticator app's set-up page: a QR code (and the key to type), then a code
from the app proves it before anything is bound."""

from __future__ import annotations

from typing import Any

from flask import Response, render_template, request
from flask_babel import gettext as _
from flask_babel import ngettext

from ... import audit
from ...security.ratelimit import RateLimited
from ...services import services
from ...web import error_page
from ..base import EnrollmentError, InvalidResponse
from ..pages import Ctx, finish_setup


def setup(ctx: Ctx, impl: Any) -> Response:
    binding = ctx.binding
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
            return finish_setup(ctx, factor, ("otp",))
        except InvalidResponse as exc:
            audit.record_now(
                "mfa.enroll_failed", outcome="failure", user_id=ctx.user.id, factor="totp"
            )
            error = exc.message
        except EnrollmentError as exc:
            error = exc.message
        except RateLimited as exc:
            error = ngettext(
                "Too many attempts. Wait %(num)d second.",
                "Too many attempts. Wait %(num)d seconds.",
                exc.retry_after,
            )
    try:
        data = impl.begin_enrollment(ctx.user, binding=binding)
    except EnrollmentError as exc:
        return error_page(409, _("Cannot add another authenticator app"), str(exc.message))
    status = 200 if error is None else 400
    return Response(
        render_template("mfa/totp_setup.html", error=error, ctx_args=ctx.args, **data),
        status=status,
    )
