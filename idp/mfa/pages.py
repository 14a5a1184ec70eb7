"""What every second-factor page shares: the blueprint, the context a page runs in, and
the few steps all factors take the same way (record a pass, finish a set-up, show the
lock). Factor packages (``idp.mfa.totp``, ``.webauthn``, ``.push``, ``.codes``,
``.recovery``) build their pages from these public names and nothing else of ``idp.mfa``
but :mod:`idp.mfa.base`.

One challenge page (``/mfa/challenge``) serves every context, named by its query:

==================  ================================  ================================
context             query                             a passed factor...
==================  ================================  ================================
sign-in, step-up    ``txn=<sign-in transaction>``     counts in the session, and the
                                                      sign-in goes on
account changes     ``next=account``                  counts in the session; back to
                                                      the account page
admin pages         ``next=/admin/...``               counts in the session; on to
                                                      the admin page
password reset      ``reset=<link token>``            is recorded for that link in
                                                      this browser (nobody signs in);
                                                      back to the reset page
==================  ================================  ================================
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext

from .. import audit
from ..auth.assurance import factors_reaching
from ..auth.session import BrowserSession
from ..auth.transaction import PASSKEY_DONE, Transaction
from ..models import Factor, User
from ..security.crypto import equal, hash_token
from ..security.text import is_ascii_digits
from ..services import services
from ..web import (
    adopt_session,
    allow_form_action,
    browser_id,
    current_session,
    current_user,
    error_page,
    safe_admin_path,
)
from .base import SecondFactorLocked

bp = Blueprint("mfa", __name__, url_prefix="/mfa")

# How long a factor passed on the reset challenge keeps the reset open in this browser.
RESET_PASS_TTL = 900
# Factor types the password reset can challenge: every type (a push request is bound to
# the reset link in this browser, like a WebAuthn challenge).
RESET_KINDS = ("webauthn", "push", "totp", "sms", "voice", "email", "recovery")


def mfa() -> Any:
    """The application's :class:`idp.mfa.service.MFAService`."""
    return current_app.extensions["idp.mfa"]


@dataclass
class Ctx:
    """Where a second-factor page runs (see the module docstring) and what passing
    means there. ``session`` is None only for a password reset."""

    user: User
    session: BrowserSession | None
    txn: Transaction | None = None
    admin_next: str | None = None
    reset_token: str | None = None
    reset_link: Any = None  # idp.account.links.LinkData of the reset link
    reauth: bool = False
    extra_args: dict[str, str] = field(default_factory=dict)

    # -- what the context is ------------------------------------------------------------
    @property
    def purpose(self) -> str:
        """``signin``, ``stepup``, ``account``, ``admin`` or ``reset``."""
        if self.reset_token is not None:
            return "reset"
        if self.admin_next is not None:
            return "admin"
        if self.txn is not None:
            first_step = "login" in self.txn.done or PASSKEY_DONE in self.txn.done
            return "signin" if first_step else "stepup"
        return "account"

    @property
    def args(self) -> dict[str, str]:
        """The query that names this context on every page and form."""
        if self.reset_token is not None:
            return {"reset": self.reset_token}
        if self.admin_next is not None:
            return {"next": self.admin_next}
        return {"txn": self.txn.id} if self.txn else {"next": "account"}

    @property
    def binding(self) -> str:
        """What challenge state (WebAuthn options, a push request) is bound to: the
        browser session, or for a reset the link in this browser."""
        if self.reset_link is not None:
            return f"reset:{self.reset_link.link_id}:{hash_token(browser_id())[:32]}"
        assert self.session is not None
        return self.session.sid

    def client_name(self) -> str:
        """The application that asked (sign-in and step-up), else ''."""
        if self.txn is None:
            return ""
        from ..oidc.server import query_client

        client = query_client(self.txn.params.get("client_id"))
        return client.name if client is not None else ""

    def stepup_why(self) -> str:
        """Why the application asks again, from its request (OIDC Core 3.1.2.1
        ``acr_values`` and ``max_age``), in words; '' outside a step-up (a second step
        the session lacks, or a sign-in asked again because it was older than
        ``max_age``)."""
        if self.txn is None:
            return ""
        if self.purpose != "stepup" and not self.txn.policy.get("reauth"):
            return ""
        params = self.txn.params
        if "phishing_resistant" in params.get("acr_values", ""):
            return _("It needs a phishing-resistant method (a security key or passkey) for this.")
        max_age = params.get("max_age", "")
        if is_ascii_digits(max_age):
            return ngettext(
                "It needs you to have confirmed your identity in the last %(num)d minute "
                "before a sensitive action.",
                "It needs you to have confirmed your identity in the last %(num)d minutes "
                "before a sensitive action.",
                max(1, int(max_age) // 60),
            )
        return _("It needs a fresh confirmation before a sensitive action.")

    # -- which factors ----------------------------------------------------------------
    def allowed(self) -> list[str]:
        """The user's factor types this context accepts, in presentation order."""
        registry = mfa().registry
        types = mfa().facts(self.user).factor_types
        allowed = [t for t in registry if t in types]
        if self.purpose == "reset":
            return [t for t in allowed if t in RESET_KINDS and self.factors(t)]
        if self.purpose == "admin":
            required = services().settings.admin.required_acr
            return factors_reaching(allowed, required)
        if self.txn is not None and not self.reauth:
            from ..auth.flow import evaluate

            decision = evaluate(self.txn)
            if decision is not None and decision.step == "challenge":
                return [t for t in allowed if t in decision.factors]
        return allowed

    def factors(self, kind: str) -> list[Factor]:
        """The user's active factors of *kind* usable here. On a reset, a code by email
        to the account's own address is left out: the reset link already proved that
        inbox, so it would prove nothing more."""
        found = [f for f in mfa().factors(self.user) if f.type == kind]
        if self.purpose == "reset" and kind == "email":
            impl = mfa().registry["email"]
            own = User.normalize_email(self.user.email)
            found = [
                f for f in found if User.normalize_email(impl.destination(self.user, f)) != own
            ]
        return found

    def reset_left_out(self) -> bool:
        """On a reset: the user has an email code to the account's own address, which
        this page does not accept (see :meth:`factors`)."""
        if self.purpose != "reset":
            return False
        mine = [f for f in mfa().factors(self.user) if f.type == "email"]
        return len(mine) > len(self.factors("email"))

    # -- after a pass ---------------------------------------------------------------------
    def done_url(self) -> str:
        if self.reset_token is not None:
            return url_for("password.reset", token=self.reset_token)
        if self.admin_next is not None:
            return self.admin_next
        if self.txn is not None:
            return url_for("oidc.resume", txn=self.txn.id)
        return url_for("account.security")

    def finish(self) -> Response:
        """After a passed challenge: take the sign-in on in this request (see
        :func:`idp.oidc.views.continue_authorization`), or go where the context says."""
        if self.txn is not None and self.purpose in ("signin", "stepup"):
            from ..oidc.views import continue_authorization

            return continue_authorization(self.txn)
        return redirect(self.done_url())


# -- loading the context ---------------------------------------------------------------------


def _expired() -> Response:
    return error_page(
        400,
        _("This sign-in has expired"),
        _("Go back to the application you were using and start again."),
    )


def load_ctx(*, signed_in: bool = True) -> Ctx | Response:
    """The page's context from its query, or the response that ends the request.

    ``signed_in=False`` admits the password-reset context (no browser session); every
    page that sets a factor up or reads the session needs a signed-in one."""
    svc = services()
    token = request.values.get("reset")
    if token is not None and not signed_in:
        return _reset_ctx(token)
    txn = None
    txn_id = request.values.get("txn")
    if txn_id:
        txn = svc.transactions.get(txn_id, browser_id())
        if txn is None:
            return _expired()
        allow_form_action(txn.params.get("redirect_uri", ""))
    user, session = current_user(), current_session()
    nxt = request.values.get("next")
    if user is None or session is None:
        if txn is not None:
            return redirect(url_for("auth.signin", txn=txn.id))
        return redirect(url_for("auth.signin", next="admin" if _admin_path(nxt) else "account"))
    admin_next = _admin_path(nxt) if txn is None else None
    return Ctx(user, session, txn, admin_next=admin_next, reauth=bool(request.values.get("reauth")))


def _admin_path(value: str | None) -> str | None:
    return safe_admin_path(value)


def _reset_ctx(token: str) -> Ctx | Response:
    from ..account import links

    try:
        link = links.peek("reset", token)
    except links.LinkError as exc:
        from ..account.registration import link_error

        audit.record_now("password.reset_failed", outcome="failure", reason=type(exc).__name__)
        return link_error(exc, again=url_for("password.forgot"), again_text=_("Ask for a new link"))
    return Ctx(link.user, None, reset_token=token, reset_link=link)


def reset_factor_passed(link: Any) -> bool:
    """Whether a factor passed on the reset challenge for this link, in this browser."""
    raw = services().store.get(f"reset:mfa:{link.link_id}")
    return raw is not None and equal(raw, hash_token(browser_id()).encode())


# -- the steps every factor takes the same way ---------------------------------------------


def pass_factor(ctx: Ctx, method: str, amr: tuple[str, ...], factor_id: int) -> None:
    """Record a factor that was just VERIFIED (a challenge answered, or a new factor's
    possession proven at set-up).

    In a session: the session gets the method (and the id rotates); in a sign-in, the
    transaction records it. On a reset: the pass is kept for this link and this browser
    only, and nobody is signed in. Nothing else may call this: a step that verifies
    nothing (new recovery codes, a postponed set-up, a dismissed recommendation) never
    marks a factor as passed.
    """
    svc = services()
    if ctx.reset_link is not None:
        ttl = max(1, min(RESET_PASS_TTL, ctx.reset_link.expires_at - int(time.time())))
        svc.store.set(f"reset:mfa:{ctx.reset_link.link_id}", hash_token(browser_id()).encode(), ttl)
        audit.record_now("password.reset_factor_passed", user_id=ctx.user.id, factor=method)
        return
    cookie, session = svc.sessions.establish(
        ctx.user.id, method, previous=ctx.session, amr=amr, factor_id=factor_id
    )
    adopt_session(cookie, session)
    ctx.session = session
    if ctx.txn is not None:
        if f"mfa:{method}" not in ctx.txn.done:
            ctx.txn.done.append(f"mfa:{method}")
        svc.transactions.save(ctx.txn)


def finish_setup(ctx: Ctx, factor: Factor, amr: tuple[str, ...]) -> Response:
    """A new factor proved its possession: audit and notify, count it as passed, and go
    back to the sign-in (or the account page, with a message)."""
    mfa().added(ctx.user, factor)
    pass_factor(ctx, factor.type, amr, factor.id)
    if ctx.txn is None:
        if mfa().facts(ctx.user).factor_count == 1:
            # The first method: recommend a second one and recovery codes right away.
            return redirect(url_for("mfa.recommend", next="account", added=factor.type))
        return redirect(url_for("account.security", added=factor.type))
    if f"enrolled:{factor.type}" not in ctx.txn.done:
        ctx.txn.done.append(f"enrolled:{factor.type}")
        services().transactions.save(ctx.txn)
    return redirect(ctx.done_url())


def locked_page(exc: SecondFactorLocked) -> Response:
    """The page of a paused second-factor step (429 with ``Retry-After``)."""
    resp = Response(render_template("mfa/locked.html", seconds=exc.retry_after), status=429)
    resp.headers["Retry-After"] = str(exc.retry_after)
    return resp


def within(age: int | None, window: int) -> bool:
    """True when a method passed, and no more than *window* seconds ago (0 counts)."""
    return age is not None and age <= window


def reauth_needed(ctx: Ctx) -> Response | None:
    """Safe enrollment: the first factor needs a recent password; adding another (or
    changing one) needs a recent second factor. None when the page may go on."""
    window = services().settings.mfa.reauth_window
    now = int(time.time())
    assert ctx.session is not None
    facts = mfa().facts(ctx.user)
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
    recent = [t for t in facts.factor_types if within(ctx.session.method_age(t, now), window)]
    if not recent:
        return redirect(url_for("mfa.challenge", reauth=1, **ctx.args))
    return None


def offers(types) -> list[Any]:
    """The factor implementations of *types*, in presentation order."""
    registry = mfa().registry
    return [registry[t] for t in registry if t in types]


def render_challenge(ctx: Ctx, kind: str | None, *, error: str | None = None,
                     status: int = 200, notice: str | None = None) -> Response:  # fmt: skip
    """The challenge page for *kind* in this context, with the user's other ways."""
    registry = mfa().registry
    allowed = ctx.allowed()
    impl = registry.get(kind) if kind else None
    return Response(
        render_template(
            "mfa/challenge.html",
            kind=kind,
            impl=impl,
            error=error,
            notice=notice,
            others=[registry[t] for t in allowed if t != kind],
            ctx_args=ctx.args,
            purpose=ctx.purpose,
            client_name=ctx.client_name(),
            stepup_why=ctx.stepup_why(),
            reset_left_out=ctx.reset_left_out(),
            **(impl.challenge_vars(ctx) if impl is not None else {}),
        ),
        status=status,
    )
