"""Where the sign-in transaction stands: the policy evaluated for one request.

The protocol layer (``idp.oidc``) parses the authorization request into
:class:`PolicyInputs` and asks :func:`next_step`; the second-factor pages ask
:func:`evaluate` for a stored transaction. Both see the same decision, computed by the
pure :func:`idp.mfa.policy.decide` from the session, the user's factors and the clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from flask import current_app

from ..mfa import policy
from ..models import OAuthClient
from ..services import services
from ..web import current_session, current_user
from .assurance import offered_factors
from .transaction import PASSKEY_DONE, PASSKEY_OFFERED, Transaction


@dataclass(frozen=True)
class PolicyInputs:
    acr_values: tuple[str, ...] = ()
    acr_essential: bool = False
    max_age: int | None = None
    prompt: tuple[str, ...] = ()
    hinted_sub: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicyInputs:
        return cls(
            acr_values=tuple(data.get("acr_values") or ()),
            acr_essential=bool(data.get("acr_essential")),
            max_age=data.get("max_age"),
            prompt=tuple(data.get("prompt") or ()),
            hinted_sub=data.get("hinted_sub"),
        )


def next_step(
    inputs: PolicyInputs,
    client: OAuthClient,
    txn: Transaction | None,
    *,
    passive: bool = False,
) -> policy.Decision:
    """The policy decision for this browser, user and request, now.

    ``passive`` (``prompt=none``) skips what may be skipped without a page: the
    optional set-up before the enforcement date, the second-factor recommendation and
    the passkey offer.
    """
    svc = services()
    session, user = current_session(), current_user()
    if user is None:
        session = None
    done = set(txn.done) if txn is not None else set()
    facts = current_app.extensions["idp.mfa"].facts(user) if user else policy.UserFacts()
    return policy.decide(
        policy.Request(
            acr_values=inputs.acr_values,
            acr_essential=inputs.acr_essential,
            max_age=inputs.max_age,
            prompt=frozenset(inputs.prompt),
            login_done="login" in done,
            passkey_done=PASSKEY_DONE in done,
            hinted_sub_mismatch=bool(inputs.hinted_sub and user and inputs.hinted_sub != user.sub),
            postponed=passive or "mfa_postponed" in done,
            recommend_dismissed=passive or "recommend_dismissed" in done,
            passed_in_txn=frozenset(d[4:] for d in done if d.startswith("mfa:")),
            enrolled_in_txn=any(d.startswith("enrolled:") for d in done),
            recovery_used="mfa:recovery" in done,
            passkey_offered=passive or PASSKEY_OFFERED in done,
        ),
        policy.ClientPolicy(require_mfa=client.require_mfa, default_acr=client.default_acr),
        policy.SessionFacts(session.auth_time, dict(session.methods)) if session else None,
        facts,
        policy.settings_from(
            svc.settings.mfa,
            offered_factors(svc.settings),
            passkey_offer_days=svc.settings.webauthn.passkey_offer_days,
        ),
        int(time.time()),
    )


def evaluate(txn: Transaction) -> policy.Decision | None:
    """Re-evaluate a stored transaction (None when its client is gone)."""
    from ..oidc.server import query_client  # shares the per-transaction lookup

    client = query_client(txn.params.get("client_id"))
    if client is None:
        return None
    return next_step(PolicyInputs.from_dict(txn.policy), client, txn)
