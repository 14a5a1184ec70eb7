"""The second-factor pages every factor shares: choosing a factor to set up, the set-up
page of one (drawn by its package), "remind me later", the second-factor
recommendation, and the one challenge page for every context (sign-in, step-up,
account changes, admin re-verification, password reset: :class:`idp.mfa.pages.Ctx`).

The factor packages draw their own parts through the hooks of
:class:`idp.mfa.base.FactorPages`; nothing here knows a factor by name.
"""

from __future__ import annotations

from flask import Response, abort, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext

from .. import audit
from ..extensions import db
from ..i18n import page_locale
from ..security.ratelimit import RateLimited
from ..services import services
from ..web import error_page, limited, too_many, validate_csrf
from ..wording import duration_words
from .base import InvalidResponse, SecondFactorLocked
from .pages import (
    bp,
    load_ctx,
    locked_page,
    mfa,
    offers,
    pass_factor,
    reauth_needed,
    render_challenge,
    reset_factor_passed,
)

# -- set-up ------------------------------------------------------------------------


@bp.get("/setup")
def setup() -> Response:
    """Choose a factor to set up (the enrollment prompt of the sign-in policy)."""
    ctx = load_ctx()
    if isinstance(ctx, Response):
        return ctx
    from ..auth.flow import evaluate

    decision = evaluate(ctx.txn) if ctx.txn else None
    facts = mfa().facts(ctx.user)
    if decision is not None and decision.step == "enroll":
        choices = offers(decision.factors)
    else:
        choices = offers([t for t in mfa().registry if facts.factor_types or t != "recovery"])
    return Response(render_template(
        "mfa/setup.html", offers=choices, ctx_args=ctx.args,
        txn=ctx.txn.id if ctx.txn else None,
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
    ctx = load_ctx()
    if isinstance(ctx, Response):
        return ctx
    from ..auth.flow import evaluate

    decision = evaluate(ctx.txn) if ctx.txn else None
    if decision is None or decision.step != "enroll" or not decision.optional:
        audit.record_now("mfa.postpone_refused", outcome="failure", user_id=ctx.user.id)
        return error_page(
            400,
            _("Set-up is required"),
            _("A second sign-in step is required now and cannot be postponed."),
        )
    ctx.txn.done.append("mfa_postponed")
    services().transactions.save(ctx.txn)
    audit.record_now("mfa.postponed", user_id=ctx.user.id, days_left=decision.days_left)
    return redirect(ctx.done_url())


@bp.route("/setup/<kind>", methods=["GET", "POST"])
def setup_factor(kind: str) -> Response:
    """The set-up page of one factor type, behind the safe-enrollment gate."""
    ctx = load_ctx()
    if isinstance(ctx, Response):
        return ctx
    impl = mfa().registry.get(kind)
    if impl is None:
        abort(404)
    facts = mfa().facts(ctx.user)
    if not facts.factor_types and not impl.first_factor:
        return error_page(
            400,
            _("Choose another method first"),
            _("%(method)s can be added once you have another sign-in method.",
              method=impl.display_name),
        )  # fmt: skip
    if request.method == "POST":
        validate_csrf()
    gate = reauth_needed(ctx)
    if gate is not None:
        return gate
    try:
        return impl.setup_page(ctx)
    except SecondFactorLocked as exc:
        return locked_page(exc)


# -- the challenge -------------------------------------------------------------------


@bp.route("/challenge", methods=["GET", "POST"])
def challenge() -> Response:
    """Verify one of the user's factors, in whatever context asked (the query names
    it: ``txn``, ``next=account``, ``next=/admin/...`` or ``reset``)."""
    if request.method == "POST":
        validate_csrf()
    ctx = load_ctx(signed_in=False)
    if isinstance(ctx, Response):
        return ctx
    service = mfa()
    if ctx.reset_link is not None and reset_factor_passed(ctx.reset_link):
        return redirect(ctx.done_url())  # passed already: on to the new password
    allowed = ctx.allowed()
    if not allowed:
        if ctx.purpose in ("reset", "admin"):
            return render_challenge(ctx, None)  # says why, and who can help
        return redirect(url_for("mfa.setup", **ctx.args))
    kind = request.values.get("kind")
    if kind not in allowed:
        kind = service.default_type(ctx.user, allowed)
    if request.method != "POST":
        try:
            service.check_not_locked(ctx.user)
        except SecondFactorLocked as exc:
            return locked_page(exc)
        return render_challenge(ctx, kind)
    impl = service.registry[kind]
    action = impl.challenge_action(ctx)
    if action is not None:
        return action
    payload = {
        "code": request.form.get("code", ""),
        "credential": request.form.get("credential", ""),
        "factor_id": request.form.get("factor_id", ""),
    }
    try:
        # Only the factors this context may use (a reset never takes the code of the
        # account's own inbox).
        result = service.verify(
            ctx.user, kind, payload, binding=ctx.binding, factors=ctx.factors(kind)
        )
    except SecondFactorLocked as exc:
        return locked_page(exc)
    except RateLimited as exc:
        return limited(render_challenge(ctx, kind, error=too_many(exc)), exc)
    except InvalidResponse as exc:
        db.session.refresh(ctx.user)
        try:
            service.check_not_locked(ctx.user)
        except SecondFactorLocked as locked:
            return locked_page(locked)
        return render_challenge(ctx, kind, error=f"{exc.message}{_attempts_left(ctx)}", status=400)
    pass_factor(ctx, kind, result.amr, result.factor.id)
    return ctx.finish()


def _attempts_left(ctx) -> str:
    """ "2 attempts left: after that, verification is paused for 15 minutes.": said
    before the lock, not after it (the user has passed the password, so this reveals
    nothing to a stranger)."""
    limits = services().settings.mfa
    left = limits.max_failures - (ctx.user.mfa_failures or 0)
    if left > 3:
        return ""
    pause = duration_words(limits.lockout_seconds, locale=page_locale())
    return " " + ngettext(
        "%(num)d attempt left: after that, verification is paused for %(pause)s.",
        "%(num)d attempts left: after that, verification is paused for %(pause)s.",
        left,
        pause=pause,
    )


# -- after the first factor ------------------------------------------------------------


@bp.route("/recommend", methods=["GET", "POST"])
def recommend() -> Response:
    """Recommend a second method and recovery codes: after a sign-in with the only
    factor, right after the first one was set up, and after a recovery code was used
    (then the lost method may need replacing)."""
    ctx = load_ctx()
    if isinstance(ctx, Response):
        return ctx
    facts = mfa().facts(ctx.user)
    after_recovery = False
    if ctx.txn is not None:
        from ..auth.flow import evaluate

        decision = evaluate(ctx.txn)
        if decision is None or decision.step != "recommend":
            # Only the recommendation step may be dismissed; anything else goes back to
            # the step the sign-in is at (nothing is written).
            return redirect(ctx.done_url())
        after_recovery = decision.reason == "recovery code used"
    elif facts.factor_count != 1:
        return redirect(url_for("account.security"))
    if request.method == "POST":
        validate_csrf()
        if ctx.txn is not None:
            ctx.txn.done.append("recommend_dismissed")
            services().transactions.save(ctx.txn)
        audit.record_now("mfa.second_factor_skipped", user_id=ctx.user.id)
        return redirect(ctx.done_url())
    others = [t for t in mfa().registry if after_recovery or t not in facts.factor_types]
    added_type = request.args.get("added", "")
    if ctx.txn is not None:
        # The method this sign-in just set up, if any (the step indicator's last step).
        enrolled = [d.partition(":")[2] for d in ctx.txn.done if d.startswith("enrolled:")]
        added_type = enrolled[-1] if enrolled else ""
    added = mfa().registry.get(added_type)
    return Response(render_template(
        "mfa/recommend.html", offers=offers(others), ctx_args=ctx.args,
        after_recovery=after_recovery, added=added, factor_count=facts.factor_count,
    ))  # fmt: skip
