"""The sign-in policy: what an authorization request still needs from this user.

:func:`decide` is a pure function of the request, the client, the browser session, the
user's factors, the MFA settings and the clock; it is tested as a table
(``tests/unit/test_mfa_policy.py``). Steps, in the order they are considered:

``login``      the password step (no session, ``prompt=login``, ``id_token_hint`` for
               another user, or a password older than ``max_age``);
``enroll``     set up a second factor: required (on/after the enforcement date, or a
               client or ``acr_values`` demands a level the user's factors cannot reach),
               or ``optional`` before the date ("Remind me later", with the days left);
``challenge``  verify one of ``factors`` (only the step needed: a recent password is
               not asked again);
``recommend``  after a sign-in in which a second factor passed, when only one exists,
               recommend another (skippable; never after a step-up);
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

from ..auth.assurance import ACR_AAL1, ACR_LEVELS, ACR_MFA, FACTOR_LEVELS, level_index
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


@dataclass(frozen=True)
class Request:
    acr_values: tuple[str, ...] = ()  # requested, in order of preference
    acr_essential: bool = False  # through the claims parameter (OIDC Core 5.5.1.1)
    max_age: int | None = None
    prompt: frozenset[str] = frozenset()
    login_done: bool = False  # the password step ran inside this transaction
    hinted_sub_mismatch: bool = False
    postponed: bool = False  # "Remind me later" chosen in this transaction
    recommend_dismissed: bool = False  # "Not now" on the second-factor recommendation
    passed_in_txn: frozenset[str] = frozenset()  # factor types passed/set up in this transaction

    @property
    def mfa_in_txn(self) -> bool:
        return bool(self.passed_in_txn)


@dataclass(frozen=True)
class ClientPolicy:
    require_mfa: bool = False
    default_acr: str | None = None


@dataclass(frozen=True)
class SessionFacts:
    auth_time: int
    methods: Mapping[str, int]  # "pwd" or a factor type -> when it last passed


@dataclass(frozen=True)
class UserFacts:
    factor_types: frozenset[str] = frozenset()  # types of the user's active factors
    factor_count: int = 0  # active factors (a set of recovery codes counts once)


@dataclass(frozen=True)
class Decision:
    step: str  # login | enroll | challenge | recommend | unmet | ok
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
    """The highest acr the passed methods reach (``None`` without a password)."""
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
        in_txn = req.login_done if method == "pwd" else method in req.passed_in_txn
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
    if session is None or "pwd" not in session.methods:
        return Decision("login", reason="no session")
    if "login" in req.prompt and not req.login_done:
        return Decision("login", reason="prompt=login")
    # OIDC Core 3.1.2.1: "max_age=0 is equivalent to prompt=login".
    if req.max_age == 0 and not req.login_done:
        return Decision("login", reason="max_age=0")
    if req.hinted_sub_mismatch:
        return Decision("login", reason="id_token_hint names another user")
    counted = counted_methods(req, session, now)
    if "pwd" not in counted:
        # OIDC Core 3.1.2.1 max_age: the password is older than the request allows. Every
        # level includes the password, so it is asked again before any second factor.
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
        return _finish(req, known, counted, user, mfa)

    qualifying = {t for t in mfa.allowed if _level(FACTOR_LEVELS.get(t, ACR_AAL1)) >= _level(need)}
    if any(t in counted for t in qualifying):
        return _finish(req, known, counted, user, mfa)
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
) -> Decision:
    # Only after a whole sign-in (password and factor in this request), not after a
    # step-up from an existing session: the user came to do something else.
    if (
        mfa.recommend_second
        and req.login_done
        and req.mfa_in_txn
        and user.factor_count == 1
        and not req.recommend_dismissed
    ):
        others = tuple(sorted(mfa.allowed - user.factor_types))
        if others:
            return Decision("recommend", reason="only one factor", factors=others)
    return Decision("ok", acr=_final_acr(requested, counted), methods=tuple(sorted(counted)))


def settings_from(config) -> Settings:
    """The policy's view of ``[mfa]`` settings."""
    enforce = _dt.date.fromisoformat(config.enforce_from) if config.enforce_from else None
    return Settings(
        required=config.required,
        enforce_from=enforce,
        allowed=frozenset(config.allowed_factors),
        recommend_second=config.recommend_second,
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
