"""Back-channel logout, the relying party's side (OpenID Connect Back-Channel Logout
1.0, sections 2.5 to 2.8).

When a user's session at the provider ends (sign-out there, a timeout, a help-desk
revocation...), the provider POSTs a *logout token* to ``/backchannel-logout``, server to
server: no browser, no cookie, no CSRF token. Connexion validates it (section 2.6):

1. a signed JWT whose ``alg`` we accept, signed by a key the provider publishes (the
   same JWKS cache as the API's access tokens, :class:`.tokens.JWKSCache`), with ``typ``
   ``logout+jwt`` when it names one (2.4: so an ID token cannot pass for a logout token);
2. ``iss`` is the provider, ``aud`` holds our client id, ``iat`` is not in the future,
   ``exp`` has not passed (30 s of leeway each);
3. ``events`` has the member ``http://schemas.openid.net/event/backchannel-logout``
   whose value is a JSON object;
4. ``sid`` or ``sub`` (or both) is present, and ``nonce`` is not (2.4);
5. its ``jti`` was never seen before: each is kept until the token expires (2.6 step 10:
   a replayed token is refused).

Then it ends the local sessions (2.7): Connexion's sessions are signed cookies it cannot
reach, so it writes down "sessions of this ``sid`` (or this ``sub``) that began at or
before this time are over" in its SQLite database, and every request checks the
signed-in user against that list (:func:`ended`) and clears the session. A later sign-in
(a newer ID token) is not affected. The answer is ``200`` (with ``Cache-Control:
no-store``), or ``400`` with a JSON ``error`` and ``error_description`` (2.8).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from joserfc import jws
from joserfc.errors import JoseError

from .tokens import ALGORITHMS, LEEWAY, JWKSCache, ProviderUnavailable

log = logging.getLogger(__name__)

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_TYPES = ("logout+jwt", "application/logout+jwt")
#: How long a logout of a sid or sub is remembered: longer than any Connexion session
#: that could have begun before it (the provider's absolute session lifetime, 12 h).
REMEMBER = 24 * 3600
#: jti values are kept at most this long even when a token claims a longer life.
MAX_JTI_AGE = 3600

SCHEMA = """
CREATE TABLE IF NOT EXISTS logouts (
    kind TEXT NOT NULL,          -- 'sid' or 'sub'
    value TEXT NOT NULL,
    logged_out_at INTEGER NOT NULL,
    forget_at INTEGER NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE TABLE IF NOT EXISTS logout_token_ids (
    jti TEXT PRIMARY KEY,
    forget_at INTEGER NOT NULL
);
"""

bp = Blueprint("backchannel", __name__)


class LogoutTokenError(Exception):
    """A logout token that must be refused (section 2.6); the message says why."""


def init_db(database: str) -> None:
    with sqlite3.connect(database) as conn:
        conn.executescript(SCHEMA)


class LogoutTokenValidator:
    """Validates logout tokens issued by *issuer* for *client_id* (section 2.6)."""

    def __init__(self, issuer: str, client_id: str, jwks: JWKSCache):
        self.issuer, self.client_id, self.jwks = issuer, client_id, jwks

    def validate(self, token: str, now: int | None = None) -> dict[str, Any]:
        now = int(time.time()) if now is None else now
        try:
            raw = token.encode("ascii")
            obj = jws.extract_compact(raw)
            header = obj.headers()
            claims = json.loads(obj.payload)
        except (UnicodeEncodeError, JoseError, ValueError, TypeError):
            raise LogoutTokenError("The logout token is not a signed JWT.") from None
        if not isinstance(claims, dict):
            raise LogoutTokenError("The logout token's payload is not a JSON object.")
        typ = header.get("typ")
        if typ is not None and str(typ).lower() not in LOGOUT_TOKEN_TYPES:
            raise LogoutTokenError('The token is not a logout token (typ is not "logout+jwt").')
        alg = header.get("alg")
        if alg not in ALGORITHMS or "crit" in header:
            raise LogoutTokenError("The logout token uses an algorithm we do not accept.")
        key = self.jwks.get(header.get("kid"))
        if key is None:
            raise LogoutTokenError("The logout token is signed with an unknown key.")
        if key.get("alg") not in (None, alg) or key.get("use") not in (None, "sig"):
            raise LogoutTokenError("The logout token's algorithm does not match its key.")
        try:
            valid = jws.validate_compact(obj, key, algorithms=[alg])
        except (JoseError, ValueError, TypeError):
            valid = False
        if not valid:
            raise LogoutTokenError("The logout token's signature is not valid.")
        self._check_claims(claims, now)
        return claims

    def _check_claims(self, claims: dict[str, Any], now: int) -> None:
        if claims.get("iss") != self.issuer:
            raise LogoutTokenError("The logout token comes from another issuer.")
        aud = claims.get("aud")
        if self.client_id not in (aud if isinstance(aud, list) else [aud]):
            raise LogoutTokenError("The logout token is not for Connexion.")
        iat, exp = claims.get("iat"), claims.get("exp")
        if not _number(iat) or iat > now + LEEWAY:
            raise LogoutTokenError("The logout token's iat is missing or in the future.")
        if not _number(exp) or exp < now - LEEWAY:
            raise LogoutTokenError("The logout token has expired.")
        events = claims.get("events")
        if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_EVENT), dict):
            raise LogoutTokenError("The logout token has no back-channel logout event.")
        if "nonce" in claims:
            raise LogoutTokenError("A logout token must not contain a nonce.")
        sid, sub = claims.get("sid"), claims.get("sub")
        if not (isinstance(sid, str) and sid) and not (isinstance(sub, str) and sub):
            raise LogoutTokenError("The logout token names neither a sid nor a sub.")
        if not isinstance(claims.get("jti"), str) or not claims["jti"]:
            raise LogoutTokenError("The logout token has no jti.")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def record_logout(database: str, claims: dict[str, Any], now: int | None = None) -> None:
    """Remember the token's jti (a replay is :class:`LogoutTokenError`) and that the
    sessions of its sid (or, without a sid, of its sub) that began by its ``iat`` are
    over."""
    now = int(time.time()) if now is None else now
    jti_until = min(int(claims["exp"]) + LEEWAY, now + MAX_JTI_AGE)
    at = int(claims["iat"])
    with sqlite3.connect(database) as conn:
        conn.execute("DELETE FROM logout_token_ids WHERE forget_at < ?", (now,))
        conn.execute("DELETE FROM logouts WHERE forget_at < ?", (now,))
        try:
            conn.execute(
                "INSERT INTO logout_token_ids (jti, forget_at) VALUES (?, ?)",
                (claims["jti"], jti_until),
            )
        except sqlite3.IntegrityError:
            raise LogoutTokenError("This logout token was already used.") from None
        # Section 2.7: a token with a sid ends that session; one with only a sub ends
        # every session of that user.
        sid = claims.get("sid")
        kind, value = ("sid", sid) if isinstance(sid, str) and sid else ("sub", claims["sub"])
        conn.execute(
            "INSERT INTO logouts (kind, value, logged_out_at, forget_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (kind, value) DO UPDATE SET "
            "logged_out_at = max(logged_out_at, excluded.logged_out_at), "
            "forget_at = excluded.forget_at",
            (kind, value, at, now + REMEMBER),
        )


def ended(database: str, user: dict[str, Any], signed_in_at: int | None) -> bool:
    """Whether the session of *user* (its ``sid`` and ``sub`` claims), begun with an ID
    token issued at *signed_in_at*, was ended by a logout token since: one naming its
    sid, or one naming only its sub."""
    keys = [(k, user[k]) for k in ("sid", "sub") if isinstance(user.get(k), str)]
    if not keys:
        return False
    with sqlite3.connect(database) as conn:
        for kind, value in keys:
            row = conn.execute(
                "SELECT logged_out_at FROM logouts WHERE kind = ? AND value = ?", (kind, value)
            ).fetchone()
            if row is not None and (signed_in_at is None or row[0] >= signed_in_at):
                return True
    return False


def _provider_keys(cx: Any) -> JWKSCache:
    """The provider's published keys: the API's cache when it validates JWTs itself,
    else one of the application's own."""
    shared = getattr(cx.validator, "jwks", None)
    if isinstance(shared, JWKSCache):
        return shared
    return current_app.extensions.setdefault("connexion.logout_keys", JWKSCache(cx.issuer))


def _refuse(description: str) -> Response:
    resp = jsonify(error="invalid_request", error_description=description)
    resp.status_code = 400
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.post("/backchannel-logout")
def backchannel_logout() -> Response:
    """The back-channel logout URI (section 2.5): ``logout_token`` in a form body."""
    cx = current_app.extensions["connexion"]
    token = request.form.get("logout_token", "")
    if not token or len(request.form.getlist("logout_token")) != 1:
        return _refuse("Send one logout_token.")
    try:
        claims = LogoutTokenValidator(cx.issuer, cx.client_id, _provider_keys(cx)).validate(token)
        record_logout(cx.database, claims)
    except LogoutTokenError as exc:
        log.warning("logout token refused: %s", exc)
        return _refuse(str(exc))
    except ProviderUnavailable:
        # Section 2.8: a logout that failed is a 400 too; the provider tries again.
        log.exception("logout token not checked: the provider's keys are unreachable")
        return _refuse("The provider's keys cannot be fetched now.")
    log.info("back-channel logout: sid=%s sub=%s", claims.get("sid"), claims.get("sub"))
    return Response("", status=200, headers={"Cache-Control": "no-store"})
