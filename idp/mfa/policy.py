"""The sign-in policy: what an authorization request still needs from this user.

:func:`decide` is a pure function of the request, the client, the browser session, the
user's factors, the MFA settings and the clock; it is tested as a table
(``tests/unit/test_mfa_policy.py``). Steps, in the order they are considered:

``login``      the first step: the password, or a passkey alone (no session,
               ``prompt=login``, ``id_token_hint`` for another user, or a first step
               older than ``max_age``);
``enroll``     set up a second factor: required (on/after the enforcement date, or a
               client or ``acr_values`` demands a level the user's factors cannot reach),
               or ``optional`` before the date ("Remind me later", with the days left);
``challenge``  verify one of ``factors`` (only the step needed: a recent password is
               not asked again);
``recommend``  after a sign-in in which a second factor passed, or after the first
               factor was set up, when only one exists, recommend another and recovery
               codes (skippable; never after a plain step-up); after a recovery code,
               offer to replace the lost method;
``offer_passkey`` after a password sign-in (not a re-authentication the application
               asked for with ``prompt=login`` or ``max_age``), a user without a passkey
               is offered one, at most once per ``passkey_offer_interval`` and only
               where WebAuthn is offered (skippable, never instead of a required step);
``unmet``      the requested level cannot be reached by any factor the user may set up
               (OpenID Connect ``unmet_authentication_requirements``);
``ok``         done; ``acr`` is the value to assert, ``methods`` the methods it rests
               on (:func:`counted_methods`: fresh within ``max_age`` or passed in this
               transaction); ``amr`` and ``auth_time`` are computed from them alone.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass

from ..auth.assurance import (
    ACR_AAL1,
    ACR_LEVELS,
    ACR_MFA,
    FACTOR_LEVELS,
    PASSKEY,
    PASSWORD,
    has_first_step,
    level_index,
)
from ..auth.assurance import achieved as _achieved

# Recovery codes count for the MFA rule but are never set up as the first factor.
NOT_FIRST = frozenset({"recovery"})


@dataclass(frozen=True)
class Settings:
    required: bool = True
    enforce_from: _dt.date | None = None
    # The default is the original three factors, not every known type: deployments pass
    # their [mfa] allowed_factors through settings_from(), and the table tests read
    # best against a fixed set.
    allowed: frozenset[str] = frozenset({"totp", "webauthn", "recovery"})
    recommend_second: bool = True
    # Seconds between two offers of a passkey after a password sign-in (0: never).
    passkey_offer_interval: int = 0


@dataclass(frozen=True)
class Request:
    acr_values: tuple[str, ...] = ()  # requested, in order of preference
    acr_essential: bool = False  # through the claims parameter (OIDC Core 5.5.1.1)
    max_age: int | None = None
    prompt: frozenset[str] = frozenset()
    login_done: bool = False  # the password step ran inside this transaction
    passkey_done: bool = False  # a sign-in with a passkey alone ran inside it
    hinted_sub_mismatch: bool = False
    postponed: bool = False  # "Remind me later" chosen in this transaction
    recommend_dismissed: bool = False  # "Not now" on the second-factor recommendation
    passed_in_txn: frozenset[str] = frozenset()  # factor types passed/set up in this transaction
    enrolled_in_txn: bool = False  # a factor was set up in this transaction
    recovery_used: bool = False  # a recovery code passed in this transaction
    passkey_offered: bool = False  # the passkey offer was answered (or may not be shown)

    @property
    def mfa_in_txn(self) -> bool:
        return bool(self.passed_in_txn)

    @property
    def first_step_done(self) -> bool:
        """A first step (the password or a passkey alone) ran in this transaction."""
        return self.login_done or self.passkey_done

    @property
    def reauthentication(self) -> bool:
        """The application asked for a fresh sign-in (OIDC Core 3.1.2.1 ``prompt=login``
        or ``max_age``): a step-up, not a sign-in to offer things in."""
        return "login" in self.prompt or self.max_age is not None


@dataclass(frozen=True)
class ClientPolicy:
    require_mfa: bool = False
    default_acr: str | None = None


@dataclass(frozen=True)
class SessionFacts:
    auth_time: int
    # "pwd", "passkey" (first steps) or a factor type -> when it last passed
    methods: Mapping[str, int]


@dataclass(frozen=True)
class UserFacts:
    factor_types: frozenset[str] = frozenset()  # types of the user's active factors
    factor_count: int = 0  # active factors (a set of recovery codes counts once)
    has_passkey: bool = False  # a credential that signs in without a password
    passkey_offered_at: int | None = None  # when a passkey was last offered


@dataclass(frozen=True)
class Decision:
    step: str  # login | enroll | challenge | recommend | offer_passkey | unmet | ok
    acr: str | None = None
    reason: str = ""
    factors: tuple[str, ...] = ()  # enroll: types to offer; challenge: types that satisfy
    optional: bool = False  # enroll may be postponed
    days_left: int | None = None
    enforce_from: _dt.date | None = None
    # ok: the methods that satisfy this request; acr, amr and auth_time come from them.
    methods: tuple[str, ...] = ()


def _level(acr: str) -> int:
    return level_index(acr)


def achieved(methods: Mapping[str, int]) -> str | None:
    """The highest acr the passed methods reach (``None`` without a first step)."""
    return _achieved(methods)


def _final_acr(requested: list[str], counted: Mapping[str, int]) -> str:
    reached = achieved(counted) or ACR_AAL1
    if requested:
        met = [a for a in requested if _level(a) <= _level(reached)]
        if met:
            # The highest requested level the counted methods satisfy is what it achieved.
            return max(met, key=_level)
    return reached


def counted_methods(req: Request, session: SessionFacts, now: int) -> dict[str, int]:
    """The methods that satisfy THIS request, with the time each last passed: those
    passed inside this transaction, and those fresh within ``max_age`` (every method of
    the session when there is no ``max_age``). ``prompt=login`` counts only what passed
    in this transaction (OIDC Core 3.1.2.1).

    ``acr``, ``amr`` and ``auth_time`` are computed from these methods alone, so a
    factor that passed before ``max_age`` never reaches the tokens of a request that
    asked for a more recent authentication.
    """
    max_age = 0 if "login" in req.prompt else req.max_age
    out: dict[str, int] = {}
    for method, at in session.methods.items():
        if method == PASSWORD:
            in_txn = req.login_done
        elif method == PASSKEY:
            in_txn = req.passkey_done
        else:
            in_txn = method in req.passed_in_txn
        if in_txn or max_age is None or now - at <= max_age:
            out[method] = at
    return out


def decide(
    req: Request,
    client: ClientPolicy,
    session: SessionFacts | None,
    user: UserFacts,
    mfa: Settings,
    now: int,
) -> Decision:
    """Decide the next step of an authorization request (see the module docstring)."""
    if session is None or not has_first_step(session.methods):
        return Decision("login", reason="no session")
    if "login" in req.prompt and not req.first_step_done:
        return Decision("login", reason="prompt=login")
    # OIDC Core 3.1.2.1: "max_age=0 is equivalent to prompt=login".
    if req.max_age == 0 and not req.first_step_done:
        return Decision("login", reason="max_age=0")
    if req.hinted_sub_mismatch:
        return Decision("login", reason="id_token_hint names another user")
    counted = counted_methods(req, session, now)
    if not has_first_step(counted):
        # OIDC Core 3.1.2.1 max_age: the first step is older than the request allows.
        # Every level includes a first step, so it is asked again before any second
        # factor (the password, or a passkey, which brings its second factor along).
        return Decision("login", reason="max_age")

    requested = list(req.acr_values) or ([client.default_acr] if client.default_acr else [])
    known = [a for a in requested if a in ACR_LEVELS]
    if requested and not known:
        return Decision("unmet", reason="no requested acr value is supported")

    today = _dt.datetime.fromtimestamp(now, _dt.UTC).date()
    enforced = mfa.required and (mfa.enforce_from is None or today >= mfa.enforce_from)
    has_factor = bool(user.factor_types)

    floor = ACR_AAL1
    if client.require_mfa or (mfa.required and has_factor):
        floor = ACR_MFA
    candidates = [a for a in known if _level(a) >= _level(floor)]
    need = min(candidates, key=_level) if candidates else floor

    if _level(need) == _level(ACR_AAL1):
        if mfa.required and not has_factor and not req.postponed:
            offer = tuple(sorted(mfa.allowed - NOT_FIRST))
            if enforced:
                return Decision("enroll", reason="MFA is required", factors=offer)
            days = (mfa.enforce_from - today).days if mfa.enforce_from else 0
            return Decision(
                "enroll",
                reason="MFA required from the enforcement date",
                factors=offer,
                optional=True,
                days_left=days,
                enforce_from=mfa.enforce_from,
            )
        if mfa.required and not has_factor and req.postponed and enforced:
            return Decision(
                "enroll", reason="MFA is required", factors=tuple(sorted(mfa.allowed - NOT_FIRST))
            )
        return _finish(req, known, counted, user, mfa, now)

    qualifying = {t for t in mfa.allowed if _level(FACTOR_LEVELS.get(t, ACR_AAL1)) >= _level(need)}
    if any(t in counted for t in qualifying):
        return _finish(req, known, counted, user, mfa, now)
    usable = user.factor_types & qualifying
    if usable:
        return Decision(
            "challenge", reason=f"{need} needs a second factor", factors=tuple(sorted(usable))
        )
    enrollable = qualifying - NOT_FIRST
    if enrollable:
        return Decision(
            "enroll",
            reason=f"{need} needs a factor the user does not have",
            factors=tuple(sorted(enrollable)),
        )
    return Decision("unmet", reason=f"no allowed factor reaches {need}")


def _finish(
    req: Request,
    requested: list[str],
    counted: Mapping[str, int],
    user: UserFacts,
    mfa: Settings,
    now: int,
) -> Decision:
    # After a whole sign-in (a first step and a factor in this request, a passkey sign-in
    # included), or right after the first factor was set up (in a sign-in or a step-up:
    # without a second method and recovery codes, a lost phone means the help desk); not
    # after a plain step-up from an existing session, where the user came to do
    # something else.
    whole_sign_in = req.first_step_done and req.mfa_in_txn
    if (
        mfa.recommend_second
        and (whole_sign_in or req.enrolled_in_txn)
        and user.factor_count == 1
        and not req.recommend_dismissed
    ):
        others = tuple(sorted(mfa.allowed - user.factor_types))
        if others:
            return Decision("recommend", reason="only one factor", factors=others)
    # A recovery code was used: the user may have lost the method it stands in for.
    if req.recovery_used and not req.enrolled_in_txn and not req.recommend_dismissed:
        others = tuple(sorted(mfa.allowed - {"recovery"}))
        return Decision("recommend", reason="recovery code used", factors=others)
    if _offer_passkey(req, user, mfa, now):
        return Decision("offer_passkey", reason="no passkey yet", factors=("webauthn",))
    return Decision("ok", acr=_final_acr(requested, counted), methods=tuple(sorted(counted)))


def _offer_passkey(req: Request, user: UserFacts, mfa: Settings, now: int) -> bool:
    """Offer a passkey ("sign in faster next time"): after a password sign-in in this
    request that is not a re-authentication the application asked for, to a user without
    a passkey, where WebAuthn is offered, at most once per interval, and never in a
    sign-in that already showed (or skipped) a set-up or recommendation page."""
    interval = mfa.passkey_offer_interval
    return (
        interval > 0
        and "webauthn" in mfa.allowed
        and req.login_done
        and not req.reauthentication
        and not req.passkey_offered
        and not (req.recommend_dismissed or req.postponed or req.enrolled_in_txn)
        and not user.has_passkey
        and (user.passkey_offered_at is None or now - user.passkey_offered_at >= interval)
    )


def settings_from(
    config, offered: tuple[str, ...] | None = None, *, passkey_offer_days: int = 0
) -> Settings:
    """The policy's view of ``[mfa]`` settings; *offered* narrows the allowed factors to
    those the deployment can offer (:func:`idp.auth.assurance.offered_factors`), and
    *passkey_offer_days* is ``[webauthn] passkey_offer_days``."""
    enforce = _dt.date.fromisoformat(config.enforce_from) if config.enforce_from else None
    allowed = config.allowed_factors if offered is None else offered
    return Settings(
        required=config.required,
        enforce_from=enforce,
        allowed=frozenset(allowed),
        recommend_second=config.recommend_second,
        passkey_offer_interval=passkey_offer_days * 86400,
    )


__all__ = [
    "FACTOR_LEVELS",
    "ClientPolicy",
    "Decision",
    "Request",
    "SessionFacts",
    "Settings",
    "UserFacts",
    "achieved",
    "counted_methods",
    "decide",
    "settings_from",
]
