"""Set-up and challenge pages of the code factors (email, text message, voice call).

The shared pages (:mod:`idp.mfa.views`) call these through the factor; the rules:
sending happens only on POST (a GET never sends), one click on "Send code" sends to the
default destination, a failed send says so plainly and links to the user's other
methods, and a set-up binds nothing until the code comes back.
"""

from __future__ import annotations

from typing import Any

from flask import Response, redirect, render_template, request, url_for
from flask_babel import ngettext

from ... import audit
from ...security.ratelimit import RateLimited
from ...services import services
from ..base import EnrollmentError, InvalidResponse, SecondFactorLocked
from ..pages import Ctx, finish_setup, locked_page, render_challenge
from ..pages import mfa as _mfa
from .factor import CodeFactor, DeliveryFailed
from .otp import ResendTooSoon

KINDS = ("email", "sms", "voice")


def _ip() -> str:
    return request.remote_addr or ""


def _wait(seconds: int) -> str:
    return ngettext(
        "A code was sent moments ago. Wait %(num)d second before asking for a new one.",
        "A code was sent moments ago. Wait %(num)d seconds before asking for a new one.",
        seconds,
    )


def _too_many(exc: RateLimited) -> str:
    if exc.retry_after < 120:
        return ngettext(
            "Too many codes were sent. Wait %(num)d second and try again, or use another method.",
            "Too many codes were sent. Wait %(num)d seconds and try again, or use another method.",
            exc.retry_after,
        )
    return ngettext(
        "Too many codes were sent. Wait %(num)d minute and try again, or use another method.",
        "Too many codes were sent. Wait %(num)d minutes and try again, or use another method.",
        (exc.retry_after + 59) // 60,
    )


def _others(ctx: Ctx, kind: str) -> list[Any]:
    registry = _mfa().registry
    return [registry[t] for t in ctx.allowed() if t != kind]


def delivery_failed(ctx: Ctx, impl: CodeFactor, *, setup: bool) -> Response:
    """The plain "could not send" page, offering the user's other methods (or, during
    set-up, the other kinds of method)."""
    mfa = _mfa()
    if setup:
        has = mfa.facts(ctx.user).factor_types
        others = [i for t, i in mfa.registry.items() if t != impl.type and (has or i.first_factor)]
    else:
        others = _others(ctx, impl.type)
    return Response(
        render_template("mfa/code_failed.html", impl=impl, others=others, setup=setup,
                        ctx_args=ctx.args),
        status=503,
    )  # fmt: skip


# -- challenge -----------------------------------------------------------------------------


def challenge_vars(ctx: Ctx, impl: CodeFactor) -> dict[str, Any]:
    """What ``mfa/challenge.html`` needs for a code factor."""
    factors = ctx.factors(impl.type)
    factor = impl.choose(factors, request.values.get("factor_id")) or impl.choose(factors, None)
    if factor is None:
        return {}
    return {
        "code_impl": impl,
        "code_factor": factor,
        "code_masked": impl.masked(factor),
        "code_sent": impl.code_pending(ctx.user, factor),
        "code_destinations": [(f.id, impl.masked(f)) for f in factors if f.id != factor.id],
        "code_minutes": max(1, services().settings.otp.code_ttl // 60),
        "code_notice": impl.sent_notice(
            impl.masked(factor), max(1, services().settings.otp.code_ttl // 60)
        ),
        "code_send_notice": impl.send_notice(impl.masked(factor)),
    }


def send(ctx: Ctx, impl: CodeFactor) -> Response:
    """POST "Send code" / "Send a new code" on the challenge page."""
    mfa = _mfa()
    try:
        mfa.check_not_locked(ctx.user)
    except SecondFactorLocked as exc:
        return locked_page(exc)
    factor = impl.choose(ctx.factors(impl.type), request.form.get("factor_id"))
    if factor is None:
        return redirect(url_for("mfa.challenge", **ctx.args))
    error, status, headers = None, 200, {}
    try:
        impl.send(ctx.user, factor, ip=_ip())
    except ResendTooSoon as exc:
        error, status, headers = _wait(exc.retry_after), 429, {"Retry-After": str(exc.retry_after)}
    except RateLimited as exc:
        error, status = _too_many(exc), 429
        headers = {"Retry-After": str(exc.retry_after)}
    except DeliveryFailed:
        return delivery_failed(ctx, impl, setup=False)
    if error is None:
        # Post/redirect/get: reloading the code page must not send another code.
        return redirect(url_for("mfa.challenge", kind=impl.type, factor_id=factor.id, **ctx.args))
    resp = render_challenge(ctx, impl.type, error=error, status=status)
    resp.headers.update(headers)
    return resp


# -- set-up --------------------------------------------------------------------------------


def setup(ctx: Ctx, impl: CodeFactor) -> Response:
    """Enter an address or number -> a code is sent -> enter it -> the factor is bound."""
    binding = ctx.binding
    action = request.form.get("action", "") if request.method == "POST" else ""
    error, status = None, 200
    form = {"destination": "", "label": ""}
    try:
        if action == "send":
            form = {
                "destination": (request.form.get("destination") or "")[:254],
                "label": (request.form.get("label") or "").strip()[:60],
            }
            impl.begin_enrollment(ctx.user, form["destination"], form["label"],
                                  binding=binding, ip=_ip())  # fmt: skip
            return redirect(url_for("mfa.setup_factor", kind=impl.type, **ctx.args))
        if action == "resend":
            impl.resend_enrollment(ctx.user, binding=binding, ip=_ip())
            return redirect(url_for("mfa.setup_factor", kind=impl.type, resent=1, **ctx.args))
        if action == "restart":
            impl.cancel_enrollment(ctx.user, binding=binding)
            return redirect(url_for("mfa.setup_factor", kind=impl.type, **ctx.args))
        if action == "verify":
            services().mfa_attempts.hit(f"enroll:{ctx.user.id}")
            factor = impl.finish_enrollment(ctx.user, request.form.get("code", ""),
                                            binding=binding)  # fmt: skip
            return finish_setup(ctx, factor, impl.amr)
    except InvalidResponse as exc:
        audit.record_now("mfa.enroll_failed", outcome="failure", user_id=ctx.user.id,
                         factor=impl.type, reason=exc.reason)  # fmt: skip
        error, status = exc.message, 400
    except EnrollmentError as exc:
        error, status = exc.message, 400
    except ResendTooSoon as exc:
        error, status = _wait(exc.retry_after), 429
    except RateLimited as exc:
        error, status = _too_many(exc), 429
    except DeliveryFailed:
        return delivery_failed(ctx, impl, setup=True)
    pending = impl.pending_enrollment(ctx.user, binding=binding)
    if pending is None and action == "" and impl.type == "email":
        form["destination"] = ctx.user.email
    return Response(
        render_template("mfa/code_setup.html", impl=impl, pending=pending, error=error,
                        form=form, resent=bool(request.args.get("resent")), ctx_args=ctx.args,
                        minutes=max(1, services().settings.otp.code_ttl // 60)),
        status=status,
    )  # fmt: skip
