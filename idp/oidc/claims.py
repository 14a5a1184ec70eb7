"""Claims about the user: which ones the userinfo endpoint and the ID token release.

- At the userinfo endpoint, the standard claims of the granted scopes (OIDC Core 5.4:
  ``profile``, ``email``, ``phone``) and ``groups`` (scope ``groups``): :func:`user_claims`.
- In the ID token, who signed in and how (``sub``, ``acr``, ``amr``, ``auth_time``,
  ``sid``; :mod:`idp.oidc.tokens`), ``groups`` with its scope, and the profile, email and
  phone claims only when the authorization request asks for them by name in the
  ``claims`` parameter's ``id_token`` member (OIDC Core 5.5): :func:`id_token_request`
  picks the names when the code is issued and :func:`id_token_claims` releases them
  when it is exchanged. A claim is released only when the scope that carries it was
  granted (the consent page names scopes, so nothing leaves without the user's consent;
  OIDC Core 5.5 lets the provider decline to return a requested claim).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..groups import group_names
from ..models import User

#: The standard claims each scope carries (OIDC Core 5.4) that this provider holds.
SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "profile": ("name", "given_name", "family_name", "updated_at"),
    "email": ("email", "email_verified"),
    "phone": ("phone_number", "phone_number_verified"),
}
#: Claims the ``claims`` parameter may ask for in the ID token.
ID_TOKEN_REQUESTABLE = frozenset(name for names in SCOPE_CLAIMS.values() for name in names)


def user_claims(user: User, scope: str) -> dict[str, Any]:
    """Standard claims released by scope (OIDC Core 5.4), and ``groups``."""
    scopes = set(scope.split())
    claims: dict[str, Any] = {"sub": user.sub}
    if "profile" in scopes:
        for key in ("name", "given_name", "family_name"):
            if getattr(user, key):
                claims[key] = getattr(user, key)
        claims["updated_at"] = int(user.updated_at.timestamp())
    if "email" in scopes:
        claims["email"] = user.email
        claims["email_verified"] = bool(user.email_verified)
    if "phone" in scopes and user.phone_number:
        claims["phone_number"] = user.phone_number
        claims["phone_number_verified"] = bool(user.phone_number_verified)
    if "groups" in scopes:
        claims["groups"] = group_names(user.id)
    return claims


def id_token_request(raw: str | None) -> list[str] | None:
    """The profile, email and phone claims the ``claims`` parameter asks for in the ID
    token (OIDC Core 5.5: the names of the ``id_token`` member), sorted; None when it
    asks for none of them. The parameter was checked by the authorization request
    (a JSON object; :func:`idp.oidc.authorize.check_acr`); other members and unknown
    names are ignored (OIDC Core 5.5.1: a claim the provider does not know is not an
    error)."""
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    member = value.get("id_token") if isinstance(value, dict) else None
    if not isinstance(member, dict):
        return None
    names = sorted(name for name in member if name in ID_TOKEN_REQUESTABLE)
    return names or None


def id_token_claims(user: User, scope: str, names: Iterable[str] | None) -> dict[str, Any]:
    """Of the claims *names* asked for in the ID token, those the granted *scope*
    releases (:func:`user_claims`); a claim the user has no value for is left out."""
    wanted = set(names or ()) & ID_TOKEN_REQUESTABLE
    if not wanted:
        return {}
    return {k: v for k, v in user_claims(user, scope).items() if k in wanted}
