"""Token issuance: RFC 9068 JWT access tokens, refresh tokens with rotation families,
OpenID Connect ID tokens, and revocation of access tokens by ``jti``.

Access tokens are short-lived signed JWTs, so resource servers can validate them
offline against JWKS; a revoked ``jti`` is remembered in the store until the token
would have expired anyway, and introspection and userinfo consult it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ..extensions import db
from ..models import OAuthClient, RefreshToken, User
from ..models.base import utcnow
from ..security.crypto import hash_token
from ..services import Services

ACCESS_TOKEN_TYP = "at+jwt"


@dataclass(frozen=True)
class AuthContext:
    """How the user authenticated; travels from the session to the code to every token."""

    auth_time: int | None = None
    acr: str | None = None
    amr: tuple[str, ...] = ()
    sid: str | None = None
    # The second factors the sign-in used (not a claim: removing one ends what it earned).
    factor_ids: tuple[int, ...] = ()

    def claims(self) -> dict[str, Any]:
        """``auth_time``, ``acr``, ``amr`` and ``sid``, where known (OIDC Core 2)."""
        out: dict[str, Any] = {}
        if self.auth_time is not None:
            out["auth_time"] = self.auth_time
        if self.acr:
            out["acr"] = self.acr
        if self.amr:
            out["amr"] = list(self.amr)
        if self.sid:
            out["sid"] = self.sid
        return out


def is_id_token_header(header: dict[str, Any]) -> bool:
    """ID tokens are signed without ``typ`` (or with ``JWT``); a token with another
    ``typ``, such as an RFC 9068 ``at+jwt`` access token carrying the same ``iss``,
    ``aud`` and ``sub``, must not pass for one (RFC 8725 3.11)."""
    return header.get("typ", "JWT") == "JWT"


def half_hash(value: str, alg: str) -> str:
    """``at_hash`` (OIDC Core 3.1.3.6): left half of the hash matching the JWS alg."""
    bits = alg[2:] if alg[:2] in ("RS", "ES", "PS") else "256"
    digest = getattr(hashlib, f"sha{bits}")(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


class TokenService:
    def __init__(self, svc: Services):
        self.svc = svc
        self.settings = svc.settings

    # -- access tokens (RFC 9068) ---------------------------------------------
    @staticmethod
    def new_jti() -> str:
        """A fresh access-token ``jti`` (RFC 9068 2.2, RFC 7519 4.1.7)."""
        return uuid.uuid4().hex

    def access_token(
        self,
        client: OAuthClient,
        user: User | None,
        scope: str,
        ctx: AuthContext,
        *,
        jti: str | None = None,
        audience: str | None = None,
    ) -> tuple[str, str, int]:
        """Return (token, jti, expires_in); *jti* when the caller already recorded it.

        ``aud`` is *audience*: a resource URI for a token meant for an API (RFC 8707
        2.2, RFC 9068 3), by default the client itself; ``client_id`` always names the
        client the token was issued to (RFC 9068 2.2)."""
        now = int(time.time())
        ttl = self.settings.tokens.access_token_ttl
        jti = jti or self.new_jti()
        claims: dict[str, Any] = {
            "iss": self.settings.issuer,
            "sub": user.sub if user else client.client_id,
            "aud": audience or client.client_id,
            "client_id": client.client_id,
            "iat": now,
            "exp": now + ttl,
            "jti": jti,
            "scope": scope,
        }
        if user is not None:
            # RFC 9068 2.2.1: the authentication facts travel in the access token too.
            claims.update(ctx.claims())
        return self.svc.keys.sign_jwt(claims, typ=ACCESS_TOKEN_TYP), jti, ttl

    def is_revoked(self, jti: str) -> bool:
        return self.svc.store.get(f"revoked_jti:{jti}") is not None

    def revoke_access_token(self, jti: str, exp: int | None = None) -> None:
        ttl = self.settings.tokens.access_token_ttl
        if exp is not None:
            ttl = max(1, min(ttl, exp - int(time.time()) + 1))
        self.svc.store.set(f"revoked_jti:{jti}", b"1", ttl)

    # -- ID tokens (OIDC Core 2, 3.1.3.6) -------------------------------------
    def id_token(
        self,
        client: OAuthClient,
        user: User,
        ctx: AuthContext,
        *,
        nonce: str | None,
        access_token: str | None,
        groups: list[str] | None = None,
        requested: dict[str, Any] | None = None,
    ) -> str:
        """The ID token: who signed in and how (OIDC Core 2), ``at_hash`` of the access
        token issued with it (3.1.3.6) and, when the ``groups`` scope was granted, the
        names of the user's groups (*groups*). Profile and email claims are released at
        the userinfo endpoint (OIDC Core 5.4), and here only when the ``claims``
        parameter asked for them (*requested*, :func:`idp.oidc.claims.id_token_claims`;
        OIDC Core 5.5)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.settings.issuer,
            "sub": user.sub,
            "aud": client.client_id,
            "iat": now,
            "exp": now + self.settings.tokens.id_token_ttl,
        }
        claims.update(ctx.claims())
        if nonce:
            claims["nonce"] = nonce
        if access_token:
            claims["at_hash"] = half_hash(access_token, self.svc.keys.alg)
        if groups is not None:
            claims["groups"] = groups
        for name, value in (requested or {}).items():
            claims.setdefault(name, value)
        return self.svc.keys.sign_jwt(claims)

    # -- refresh tokens ---------------------------------------------------------
    def new_refresh_token(
        self,
        client: OAuthClient,
        user: User,
        scope: str,
        ctx: AuthContext,
        *,
        access_token_jti: str,
        family_id: str | None = None,
        code_id: int | None = None,
        expires_at=None,
        offline: bool = False,
        resources: list[str] | None = None,
    ) -> str:
        """Create a refresh token row (the token itself is returned, only its hash is kept).

        *offline* (``offline_access`` was granted) lets it outlive the browser session;
        otherwise it is bound to ``ctx.sid`` and dies with that session (OIDC Core 11).
        *resources* are the RFC 8707 resources of the grant, to which a refresh may
        narrow an access token."""
        token = secrets.token_urlsafe(32)
        db.session.add(
            RefreshToken(
                token_hash=hash_token(token),
                family_id=family_id or uuid.uuid4().hex,
                client_id=client.client_id,
                user_id=user.id,
                code_id=code_id,
                scope=scope,
                auth_time=ctx.auth_time,
                acr=ctx.acr,
                amr=list(ctx.amr),
                sid=ctx.sid,
                factor_ids=list(ctx.factor_ids),
                offline=offline,
                resources=list(resources) if resources else None,
                access_token_jti=access_token_jti,
                expires_at=expires_at
                or utcnow() + timedelta(seconds=self.settings.tokens.refresh_token_ttl),
            )
        )
        return token

    def find_refresh_token(self, token: str) -> RefreshToken | None:
        """The row of a refresh token. Its user is loaded by the same query (one round
        trip instead of two on the refresh grant, which needs both)."""
        if not token or len(token) > 256:
            return None
        row = db.session.execute(
            db.select(RefreshToken, User)
            .outerjoin(User, User.id == RefreshToken.user_id)
            .where(RefreshToken.token_hash == hash_token(token))
        ).one_or_none()
        if row is None:
            return None
        found, user = row
        # The session's identity map holds objects weakly: keep the user referenced by
        # the token so that ``db.session.get(User, ...)`` finds it without a query.
        found.loaded_user = user
        return found

    def revoke_family(self, family_id: str) -> int:
        """Revoke every refresh token of a family and the access tokens issued with them."""
        now = utcnow()
        rows = db.session.execute(db.select(RefreshToken).filter_by(family_id=family_id)).scalars()
        count = 0
        for row in rows:
            if row.revoked_at is None:
                row.revoked_at = now
                count += 1
            if row.access_token_jti and row.created_at > now - timedelta(
                seconds=self.settings.tokens.access_token_ttl
            ):
                self.revoke_access_token(row.access_token_jti)
        return count

    def bound_session_ended(self, row: RefreshToken) -> bool:
        """A refresh token without ``offline_access`` whose browser session has ended
        (signed out, revoked, expired): it may not be used any more (OIDC Core 11)."""
        return not row.offline and not self.svc.sessions.is_alive(row.sid)

    def revoke_session_grants(self, user_id: int, sids: list[str]) -> int:
        """Revoke the session-bound refresh-token families of the ended sessions *sids*
        (grants with ``offline_access`` survive sign-out). The caller commits."""
        families = db.session.execute(
            db.select(RefreshToken.family_id)
            .where(
                RefreshToken.user_id == user_id,
                RefreshToken.sid.in_(sids),
                RefreshToken.offline.is_(False),
                RefreshToken.revoked_at.is_(None),
            )
            .distinct()
        ).scalars()
        return sum(self.revoke_family(f) for f in list(families))

    def revoke_for_factor(self, user_id: int, factor_id: int) -> int:
        """Revoke every refresh-token family (offline ones too) earned with the second
        factor *factor_id*, which is being removed. The caller commits."""
        rows = db.session.execute(
            db.select(RefreshToken.family_id, RefreshToken.factor_ids).where(
                RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None)
            )
        ).all()
        families = {f for f, ids in rows if factor_id in (ids or ())}
        return sum(self.revoke_family(f) for f in families)

    def revoke_for_user(self, user_id: int) -> int:
        """Revoke all refresh-token families of a user (help desk, password reset)."""
        families = db.session.execute(
            db.select(RefreshToken.family_id).filter_by(user_id=user_id, revoked_at=None).distinct()
        ).scalars()
        return sum(self.revoke_family(f) for f in list(families))

    def revoke_for_code(self, code_id: int, access_token_jti: str | None) -> None:
        """A replayed code revokes what it issued (RFC 6749 4.1.2)."""
        if access_token_jti:
            self.revoke_access_token(access_token_jti)
        families = db.session.execute(
            db.select(RefreshToken.family_id).filter_by(code_id=code_id).distinct()
        ).scalars()
        for family in list(families):
            self.revoke_family(family)

    # -- validation of our own access tokens -----------------------------------
    def validate_access_token(self, token: str) -> dict[str, Any] | None:
        """Claims of a valid, unexpired, unrevoked access token issued here, else None."""
        from ..keys import TokenVerificationError

        if not token or len(token) > 8192:
            return None
        try:
            _header, claims = self.svc.keys.verify_jwt(token, typ=ACCESS_TOKEN_TYP)
        except TokenVerificationError:
            return None
        now = int(time.time())
        if claims.get("iss") != self.settings.issuer:
            return None
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= now:
            return None
        jti = claims.get("jti")
        if not isinstance(jti, str) or self.is_revoked(jti):
            return None
        return claims
