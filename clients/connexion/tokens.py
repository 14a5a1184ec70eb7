"""The resource-server side: validate the provider's RFC 9068 JWT access tokens.

An API that receives ``Authorization: Bearer <token>`` checks, offline, against the
provider's published keys (JWKS, found through discovery):

- the JOSE header: ``typ`` is ``at+jwt`` (RFC 9068 2.1, so an ID token cannot be
  replayed as an access token), ``alg`` is an asymmetric algorithm we accept, ``kid``
  names a published key;
- the signature;
- the claims: ``iss`` is the issuer exactly, ``exp`` has not passed (``nbf``/``iat``
  not in the future), ``sub`` is present, and the token was issued for this API:
  ``aud`` contains the API's resource URI (RFC 8707, RFC 9068 3). A token the provider
  issued to Connexion itself (``aud`` = the client id, the one for the userinfo
  endpoint) is refused: a token is only good where it was meant to be used.

The key set is cached for ``ttl`` seconds and fetched again when a token names a key
we have not seen (the provider rotated its keys), at most once every
``min_refetch_interval`` seconds so that made-up ``kid`` values cannot make us hammer
the provider.

Offline validation cannot see revocation: a revoked token stays valid here until it
expires (the provider's access tokens live 5 minutes). :class:`IntrospectionValidator`
is the other mode: it asks the provider's introspection endpoint (RFC 7662) about
every token, with the API's own client credentials, and so sees revocation at once.

Authlib's client is deliberately not used here: the API shows what any resource server
does with a plain JOSE library (joserfc).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from joserfc import jws, jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import KeySet

ACCESS_TOKEN_TYPES = ("at+jwt", "application/at+jwt")
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384")
LEEWAY = 30  # seconds of clock skew tolerated on exp, nbf and iat


class InvalidToken(Exception):
    """The token cannot be used: RFC 6750 ``invalid_token``."""


class ProviderUnavailable(Exception):
    """The provider's discovery document or key set could not be fetched."""


def fetch_json(url: str) -> dict[str, Any]:
    """GET a JSON object. Tests replace this function to serve their own documents."""
    resp = requests.get(url, timeout=10, headers={"Accept": "application/json"})
    resp.raise_for_status()
    data = resp.json()
    if not isinstance(data, dict):
        raise ValueError(f"{url} did not return a JSON object")
    return data


class JWKSCache:
    """The provider's signing keys, found through discovery and cached."""

    def __init__(
        self,
        issuer: str,
        *,
        ttl: float = 300,
        min_refetch_interval: float = 10,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.issuer = issuer
        self.ttl = ttl
        self.min_refetch_interval = min_refetch_interval
        self.clock = clock
        self.fetches = 0  # how many times the key set was downloaded
        self._keys: KeySet | None = None
        self._fetched_at = 0.0
        self._jwks_uri: str | None = None
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        try:
            if self._jwks_uri is None:
                meta = fetch_json(f"{self.issuer}/.well-known/openid-configuration")
                # OpenID Connect Discovery 1.0, 4.3: the issuer must match exactly.
                if meta.get("issuer") != self.issuer:
                    raise ValueError(f"discovery names issuer {meta.get('issuer')!r}")
                self._jwks_uri = str(meta["jwks_uri"])
            self._keys = KeySet.import_key_set(fetch_json(self._jwks_uri))  # type: ignore[arg-type]
        except (requests.RequestException, ValueError, KeyError, TypeError, JoseError) as exc:
            raise ProviderUnavailable(f"cannot load the provider's keys: {exc}") from exc
        finally:
            self.fetches += 1
            self._fetched_at = self.clock()

    def _find(self, kid: str | None):
        if self._keys is None:
            return None
        try:
            return self._keys.get_by_kid(kid)
        except JoseError:
            return None

    def get(self, kid: str | None):
        """The published key named *kid* (or the only key, without a kid), else ``None``."""
        with self._lock:
            age = self.clock() - self._fetched_at
            if self._keys is None or age > self.ttl:
                self._refresh()
                return self._find(kid)
            key = self._find(kid)
            if key is None and age >= self.min_refetch_interval:
                self._refresh()  # perhaps the provider rotated its keys
                key = self._find(kid)
            return key


def post_form(url: str, data: dict[str, str], auth: tuple[str, str]) -> tuple[int, Any]:
    """POST a form with HTTP Basic credentials; (status, JSON body or None). Tests
    replace this function to answer for the provider."""
    resp = requests.post(url, data=data, auth=auth, timeout=10,
                         headers={"Accept": "application/json"})  # fmt: skip
    try:
        body = resp.json()
    except ValueError:
        body = None
    return resp.status_code, body


def _for_audience(claims: dict[str, Any], audience: str) -> None:
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if audience not in audiences:
        raise InvalidToken("The access token was not issued for this API.")


class AccessTokenValidator:
    """Validates, offline, access tokens issued by *issuer* for the API *audience* (its
    resource URI: the token's ``aud``, RFC 8707 and RFC 9068 3)."""

    def __init__(self, issuer: str, audience: str, jwks: JWKSCache | None = None):
        self.issuer = issuer
        self.audience = audience
        self.jwks = jwks or JWKSCache(issuer)

    def validate(self, token: str) -> dict[str, Any]:
        """Return the token's claims, or raise :class:`InvalidToken` (or
        :class:`ProviderUnavailable` when the keys cannot be fetched)."""
        try:
            raw = token.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidToken("The access token is malformed.") from None
        if raw.count(b".") != 2:
            raise InvalidToken("The access token is not a signed JWT.")
        try:
            obj = jws.extract_compact(raw)
            header = obj.headers()
        except (JoseError, ValueError, TypeError):
            raise InvalidToken("The access token is malformed.") from None

        if str(header.get("typ", "")).lower() not in ACCESS_TOKEN_TYPES:
            raise InvalidToken('The token is not an access token (typ must be "at+jwt").')
        alg = header.get("alg")
        if alg not in ALGORITHMS or "crit" in header:
            raise InvalidToken("The access token uses an algorithm we do not accept.")
        key = self.jwks.get(header.get("kid"))
        if key is None:
            raise InvalidToken("The access token is signed with an unknown key.")
        if key.get("alg") not in (None, alg) or key.get("use") not in (None, "sig"):
            raise InvalidToken("The access token's algorithm does not match its key.")
        try:
            ok = jws.validate_compact(obj, key, algorithms=[alg])
        except (JoseError, ValueError, TypeError):
            ok = False
        if not ok:
            raise InvalidToken("The access token's signature is not valid.")

        try:
            claims = json.loads(obj.payload)
        except (TypeError, ValueError):
            raise InvalidToken("The access token's payload is not JSON.") from None
        if not isinstance(claims, dict):
            raise InvalidToken("The access token's payload is not a JSON object.")
        registry = jwt.JWTClaimsRegistry(
            leeway=LEEWAY,
            iss={"essential": True, "value": self.issuer},
            exp={"essential": True},
            sub={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise InvalidToken("The access token has expired.") from None
        except JoseError as exc:
            claim = getattr(exc, "claim", "") or "claims"
            raise InvalidToken(f"The access token's {claim} claim is not valid.") from None

        _for_audience(claims, self.audience)
        return claims


class IntrospectionValidator:
    """Validates access tokens by asking the provider (RFC 7662 2.1), as the API's own
    client (*client_id*, *client_secret*, HTTP Basic): the token must be active, from
    *issuer*, for the API *audience* (``aud``, RFC 8707) and for a user (``sub``). The
    provider answers ``active: true`` to the API's client only for tokens whose ``aud``
    is the API's resource, and sees revocation at once; the price is one request to the
    provider per API call."""

    def __init__(self, issuer: str, audience: str, client_id: str, client_secret: str):
        self.issuer = issuer
        self.audience = audience
        self.auth = (client_id, client_secret)
        self._endpoint: str | None = None
        self._lock = threading.Lock()

    def _introspection_endpoint(self) -> str:
        with self._lock:
            if self._endpoint is None:
                try:
                    meta = fetch_json(f"{self.issuer}/.well-known/openid-configuration")
                    if meta.get("issuer") != self.issuer:
                        raise ValueError(f"discovery names issuer {meta.get('issuer')!r}")
                    self._endpoint = str(meta["introspection_endpoint"])
                except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
                    raise ProviderUnavailable(f"no introspection endpoint: {exc}") from exc
            return self._endpoint

    def validate(self, token: str) -> dict[str, Any]:
        """The token's claims as the provider reports them, or :class:`InvalidToken`
        (:class:`ProviderUnavailable` when the provider cannot be asked, or refuses the
        API's credentials: that is a configuration problem, not a bad token)."""
        if not token or len(token) > 8192 or not token.isascii():
            raise InvalidToken("The access token is malformed.")
        endpoint = self._introspection_endpoint()
        try:
            status, body = post_form(
                endpoint, {"token": token, "token_type_hint": "access_token"}, self.auth
            )
        except requests.RequestException as exc:
            raise ProviderUnavailable(f"cannot reach the introspection endpoint: {exc}") from exc
        if status != 200 or not isinstance(body, dict):
            raise ProviderUnavailable(f"the introspection endpoint answered {status}")
        if body.get("active") is not True:
            raise InvalidToken("The access token is not active.")
        if body.get("iss") != self.issuer:
            raise InvalidToken("The access token's iss claim is not valid.")
        if not isinstance(body.get("sub"), str) or not body["sub"]:
            raise InvalidToken("The access token's sub claim is not valid.")
        exp = body.get("exp")
        if not isinstance(exp, int) or exp <= time.time() - LEEWAY:
            raise InvalidToken("The access token has expired.")
        _for_audience(body, self.audience)
        return body


def bearer_challenge(error: str, description: str, **params: str | int) -> str:
    """A ``WWW-Authenticate`` value (RFC 6750 3; RFC 9470 3 adds acr_values, max_age).

    Quoted-string values never contain ``"`` or ``\\`` here (they are replaced), so the
    header stays parseable."""

    def quote(value: str) -> str:
        return '"' + value.replace("\\", "").replace('"', "'") + '"'

    parts = [f"error={quote(error)}", f"error_description={quote(description)}"]
    for name, value in params.items():
        parts.append(f"{name}={value}" if isinstance(value, int) else f"{name}={quote(value)}")
    return "Bearer " + ", ".join(parts)


def parse_bearer_challenge(header: str) -> dict[str, str]:
    """Parse ``Bearer k="v", k2=v2`` (RFC 7235 auth-params) into a dict.

    This is what a client does with a 401 from an RFC 9470 resource server: read
    ``error``, and for ``insufficient_user_authentication`` the ``acr_values`` and
    ``max_age`` to ask the provider for.
    """
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return {}
    out: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " ,":
            i += 1
        eq = rest.find("=", i)
        if eq == -1:
            break
        name = rest[i:eq].strip().lower()
        i = eq + 1
        if i < n and rest[i] == '"':
            i += 1
            value = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(rest[i])
                i += 1
            i += 1  # closing quote
            out[name] = "".join(value)
        else:
            end = rest.find(",", i)
            end = n if end == -1 else end
            out[name] = rest[i:end].strip()
            i = end
    return out
