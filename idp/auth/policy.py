"""The sign-in policy step: what a given authorization request still needs.

:func:`decide` is a pure function of the request, the client, the browser session and
the clock, so it is tested as a table. It answers one of:

* ``login``: the password step is needed (no session, ``prompt=login``, ``max_age``
  exceeded, a different user hinted);
* ``unmet``: the requested assurance cannot be reached (``unmet_authentication_requirements``,
  OpenID Connect Core Unmet Authentication Requirements 1.0);
* ``ok``: the session satisfies the request; ``acr`` is the value to assert.
"""

from __future__ import annotations

from dataclasses import dataclass

from .assurance import ACR_LEVELS, ACR_MFA, achieved_acr, level_index


@dataclass(frozen=True)
class Request:
    acr_values: tuple[str, ...] = ()  # requested, in order of preference
    acr_essential: bool = False  # through the claims parameter (OIDC Core 5.5.1.1)
    max_age: int | None = None
    prompt: frozenset[str] = frozenset()
    login_done: bool = False  # the password step ran inside this transaction
    hinted_sub_mismatch: bool = False


@dataclass(frozen=True)
class ClientPolicy:
    require_mfa: bool = False
    default_acr: str | None = None


@dataclass(frozen=True)
class SessionFacts:
    auth_time: int
    methods: frozenset[str]


@dataclass(frozen=True)
class Decision:
    step: str  # "login" | "unmet" | "ok"
    acr: str | None = None
    reason: str = ""


def _candidates(req: Request, client: ClientPolicy) -> tuple[list[str], str | None]:
    """Requested acr values the provider knows, plus the floor the client imposes."""
    requested = list(req.acr_values) or ([client.default_acr] if client.default_acr else [])
    floor = ACR_MFA if client.require_mfa else None
    return requested, floor


def decide(req: Request, client: ClientPolicy, session: SessionFacts | None, now: int) -> Decision:
    """Decide the next step of an authorization request (see module docstring)."""
    if session is None:
        return Decision("login", reason="no session")
    if "login" in req.prompt and not req.login_done:
        return Decision("login", reason="prompt=login")
    # OIDC Core 3.1.2.1: re-authenticate when more than max_age seconds have passed;
    # "max_age=0 is equivalent to prompt=login". A sign-in done inside this very
    # request satisfies it (else a slow second between pages would loop forever).
    if (
        req.max_age is not None
        and not req.login_done
        and (req.max_age == 0 or now - session.auth_time > req.max_age)
    ):
        return Decision("login", reason="max_age")
    if req.hinted_sub_mismatch:
        return Decision("login", reason="id_token_hint names another user")

    reached = achieved_acr(set(session.methods))
    if reached is None:
        return Decision("login", reason="no password in session")
    reached_level = level_index(reached)

    requested, floor = _candidates(req, client)
    if floor is not None and reached_level < level_index(floor):
        return Decision("unmet", reason=f"client requires {floor}")

    known = [a for a in requested if a in ACR_LEVELS]
    if requested:
        met = [a for a in known if level_index(a) <= reached_level]
        if floor is not None:
            met = [a for a in met if level_index(a) >= level_index(floor)]
        if not met:
            return Decision("unmet", reason="requested acr cannot be met")
        # The highest requested level the session satisfies is what it achieved.
        return Decision("ok", acr=max(met, key=level_index))
    return Decision("ok", acr=reached)
