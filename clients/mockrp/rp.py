"""The mock relying party: drives an OpenID Connect authorization code flow.

Everything cryptographic is done with ``jwcrypto`` (never the provider's own JOSE
library), so a test that passes here was checked by an independent implementation.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote_plus, urlencode, urlsplit, urlunsplit

from jwcrypto import jwk, jws
from jwcrypto import jwt as jwc_jwt
from jwcrypto.common import JWException

from .forms import Form, find_form, page_info, parse_forms
from .transport import HTTPTransport, Response, Transport

__all__ = [
    "AuthorizationResult",
    "MockRP",
    "MockRPError",
    "OAuthError",
    "TokenSet",
    "pkce_challenge",
    "rfc6749_basic_credentials",
    "token_hash",
]

_DEFAULT_SCOPE = "openid profile email"
_HASHES = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}
_UNSET: Any = ...


class MockRPError(Exception):
    """A protocol violation detected by the relying party (bad ID token, state mismatch...)."""


class OAuthError(Exception):
    """An OAuth error response from an endpoint (``{"error": ...}`` or a non-2xx status)."""

    def __init__(
        self,
        status: int,
        error: str | None,
        error_description: str | None = None,
        body: Any = None,
    ):
        self.status = status
        self.error = error
        self.error_description = error_description
        self.body = body
        detail = f": {error_description}" if error_description else ""
        super().__init__(f"HTTP {status} {error}{detail}")


@dataclass
class AuthorizationResult:
    code: str | None
    state: str | None
    error: str | None
    error_description: str | None
    iss: str | None
    redirect_url: str
    nonce: str | None
    code_verifier: str | None


@dataclass
class TokenSet:
    access_token: str
    token_type: str | None
    expires_in: int | None
    refresh_token: str | None
    id_token: str | None
    scope: str | None
    raw: dict = field(default_factory=dict)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256: ``BASE64URL(SHA256(ASCII(verifier)))`` without padding."""
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def rfc6749_basic_credentials(client_id: str, client_secret: str) -> tuple[str, str]:
    """RFC 6749 section 2.3.1: form-urlencode id and secret before HTTP Basic."""
    return quote_plus(client_id, safe=""), quote_plus(client_secret, safe="")


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, f"{host}:{port}"


def _add_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _clean(params: dict[str, Any]) -> dict[str, str]:
    """Drop ``None`` values; JSON-encode dicts/lists; stringify the rest."""
    out: dict[str, str] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, dict | list):
            out[key] = json.dumps(value, separators=(",", ":"))
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        else:
            out[key] = str(value)
    return out


def _targets(url: str, base: str) -> bool:
    """True when ``url`` is ``base`` plus only a query or fragment."""
    if url == base:
        return True
    seps = ("&", "#") if "?" in base else ("?", "#")
    return any(url.startswith(base + sep) for sep in seps)


def _looks_html(resp: Response) -> bool:
    if resp.content_type in ("text/html", "application/xhtml+xml"):
        return True
    return not resp.content_type and b"<form" in resp.body.lower()


class MockRP:
    """A scriptable OpenID Connect relying party for tests.

    See the package docstring for a usage guide.
    """

    #: JWS algorithms accepted for ID tokens and JWT access tokens.
    allowed_algs: tuple[str, ...] = ("RS256", "ES256")

    def __init__(
        self,
        issuer: str,
        client_id: str,
        redirect_uri: str,
        *,
        client_secret: str | None = None,
        auth_method: str = "client_secret_basic",
        private_key_jwk: dict | None = None,
        transport: Transport | None = None,
        use_pkce: bool = True,
    ):
        if auth_method not in (
            "client_secret_basic",
            "client_secret_post",
            "none",
            "private_key_jwt",
        ):
            raise ValueError(f"unsupported auth_method {auth_method!r}")
        if auth_method.startswith("client_secret") and client_secret is None:
            raise ValueError(f"{auth_method} needs client_secret")
        if auth_method == "private_key_jwt" and not private_key_jwk:
            raise ValueError("private_key_jwt needs private_key_jwk")
        self.issuer = issuer
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self.client_secret = client_secret
        self.auth_method = auth_method
        self.private_key_jwk = private_key_jwk
        self.transport: Transport = transport if transport is not None else HTTPTransport()
        self.use_pkce = use_pkce
        #: The state dict of the last :meth:`authorization_url` call.
        self.last_request: dict[str, Any] | None = None
        #: Audience of private_key_jwt client assertions; defaults to the token endpoint.
        self.assertion_audience: str | None = None
        self._metadata: dict | None = None
        self._jwks: jwk.JWKSet | None = None

    # ------------------------------------------------------------------ discovery

    def discover(self, *, refresh: bool = False) -> dict:
        """Fetch and cache the provider metadata; the ``issuer`` must match exactly."""
        if self._metadata is not None and not refresh:
            return self._metadata
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        resp = self.transport.request("GET", url)
        if resp.status != 200:
            raise MockRPError(f"discovery: HTTP {resp.status} from {url}")
        try:
            meta = resp.json()
        except ValueError as exc:
            raise MockRPError(f"discovery: response is not JSON: {exc}") from exc
        if not isinstance(meta, dict):
            raise MockRPError("discovery: response is not a JSON object")
        if meta.get("issuer") != self.issuer:
            raise MockRPError(
                f"discovery: issuer mismatch: expected {self.issuer!r}, got {meta.get('issuer')!r}"
            )
        self._metadata = meta
        return meta

    def endpoint(self, name: str) -> str:
        """A metadata endpoint, e.g. ``endpoint("token_endpoint")``."""
        url = self.discover().get(name)
        if not url:
            raise MockRPError(f"discovery: provider metadata has no {name}")
        return url

    def jwks(self, *, refresh: bool = False) -> jwk.JWKSet:
        """The provider's JWKS (cached)."""
        if self._jwks is not None and not refresh:
            return self._jwks
        url = self.endpoint("jwks_uri")
        resp = self.transport.request("GET", url)
        if resp.status != 200:
            raise MockRPError(f"jwks: HTTP {resp.status} from {url}")
        try:
            keyset = jwk.JWKSet.from_json(resp.text)
        except (ValueError, JWException) as exc:
            raise MockRPError(f"jwks: not a valid JWK Set: {exc}") from exc
        for key in keyset["keys"]:
            if key.has_private:
                raise MockRPError(f"jwks: key {key.get('kid')!r} contains private material")
        self._jwks = keyset
        return keyset

    def _signing_key(self, kid: str | None, alg: str) -> jwk.JWK:
        if not kid:
            raise MockRPError("kid: JWS header has no kid")
        key = self.jwks().get_key(kid)
        if key is None:
            key = self.jwks(refresh=True).get_key(kid)
        if key is None:
            raise MockRPError(f"kid: unknown kid {kid!r} (not in the provider's JWKS)")
        if key.get("use") not in (None, "sig"):
            raise MockRPError(f"kid: key {kid!r} has use={key.get('use')!r}, not 'sig'")
        if key.get("alg") not in (None, alg):
            raise MockRPError(f"alg: key {kid!r} is for {key.get('alg')!r}, token uses {alg!r}")
        return key

    # ----------------------------------------------------------------- authorize

    def authorization_url(self, scope: str = _DEFAULT_SCOPE, **extra: Any) -> tuple[str, dict]:
        """Build an authorization request.

        Returns ``(url, state)`` where ``state`` is ``{"state", "nonce",
        "code_verifier"}``. ``extra`` parameters are added verbatim and override
        the defaults; ``None`` omits a parameter (e.g. ``nonce=None``); dicts and
        lists (e.g. ``claims``) are JSON-encoded. Keys starting with ``_`` are
        options, not parameters.
        """
        verifier = secrets.token_urlsafe(48) if self.use_pkce else None
        params: dict[str, Any] = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": scope,
            "state": secrets.token_urlsafe(24),
            "nonce": secrets.token_urlsafe(24),
        }
        if verifier:
            params["code_challenge"] = pkce_challenge(verifier)
            params["code_challenge_method"] = "S256"
        params.update({k: v for k, v in extra.items() if not k.startswith("_")})
        params = _clean(params)
        if verifier and params.get("code_challenge") != pkce_challenge(verifier):
            verifier = None  # the caller replaced or removed the challenge
        state = {
            "state": params.get("state"),
            "nonce": params.get("nonce"),
            "code_verifier": verifier,
        }
        self.last_request = state
        url = _add_query(self.endpoint("authorization_endpoint"), params)
        return url, state

    def start(self, scope: str = _DEFAULT_SCOPE, **extra: Any) -> Response:
        """Send the authorization request (GET, or POST when ``_method="POST"``).

        The request's state dict is in :attr:`last_request`.
        """
        method = str(extra.get("_method", "GET")).upper()
        url, _ = self.authorization_url(scope, **extra)
        if method == "GET":
            return self.transport.request("GET", url)
        parts = urlsplit(url)
        endpoint = urlunsplit(parts._replace(query=""))
        return self.transport.request(
            method, endpoint, data=parse_qsl(parts.query, keep_blank_values=True)
        )

    def sign_in(
        self,
        email: str,
        password: str,
        *,
        scope: str = _DEFAULT_SCOPE,
        consent: str | None = "allow",
        max_steps: int = 12,
        **extra: Any,
    ) -> AuthorizationResult:
        """Run the whole front channel like a browser and return the authorization result.

        Follows redirects on the issuer's origin, fills the form with ``email`` and
        ``password`` fields, presses the ``decision`` button with ``consent``, and
        stops (without requesting it) at the first redirect to ``redirect_uri``.
        """
        resp = self.start(scope, **extra)
        return self.resume(
            resp,
            self.last_request,
            email=email,
            password=password,
            consent=consent,
            max_steps=max_steps,
        )

    def resume(
        self,
        response: Response,
        state: dict | None = None,
        *,
        email: str | None = None,
        password: str | None = None,
        consent: str | None = "allow",
        max_steps: int = 12,
    ) -> AuthorizationResult:
        """Continue driving the front channel from ``response`` (see :meth:`sign_in`).

        ``state`` defaults to :attr:`last_request`. Without ``email``/``password`` a
        login page is an error.
        """
        if state is None:
            state = self.last_request
        if state is None:
            raise ValueError("resume() needs the state dict from authorization_url()")
        resp = response
        logged_in = False
        consented = False
        for _ in range(max_steps):
            if 300 <= resp.status < 400:
                loc = resp.location
                if not loc:
                    raise MockRPError(f"HTTP {resp.status} redirect without Location at {resp.url}")
                if _targets(loc, self.redirect_uri):
                    return self._authorization_result(loc, None, state)
                if loc.startswith(self.redirect_uri):
                    raise MockRPError(f"redirect to {loc} does not match redirect_uri exactly")
                if _origin(loc) != _origin(self.issuer):
                    raise MockRPError(f"redirect to an unexpected origin: {loc}")
                resp = self.transport.request("GET", loc)
                continue
            if not _looks_html(resp):
                kind = resp.content_type or "(no content type)"
                raise MockRPError(f"HTTP {resp.status} {kind} at {resp.url}: {resp.text[:300]}")
            forms = parse_forms(resp.text, resp.url)
            # response_mode=form_post: an auto-submitting form aimed at the redirect URI.
            for form in forms:
                if _targets(form.action, self.redirect_uri):
                    return self._authorization_result(form.action, form.fields, state)
            login = _first(forms, "email", "password")
            # The consent form: a choice made with "decision" buttons (a form that only
            # carries a hidden decision, such as a "Sign out" link, is not a consent).
            decision = next(
                (f for f in forms if any(name == "decision" for name, _v in f.buttons)), None
            )
            if login is not None:
                if email is None or password is None:
                    raise self._page_error(resp, "login page shown but no credentials given")
                if logged_in:
                    raise self._page_error(resp, "login page shown again (credentials rejected?)")
                logged_in = True
                login.fill(email=email, password=password)
                resp = self.submit_form(login)
            elif decision is not None:
                if consent is None:
                    raise self._page_error(resp, "consent page shown but consent=None")
                if consented:
                    raise self._page_error(resp, "consent page shown again")
                consented = True
                resp = self.submit_form(decision, button=("decision", consent))
            else:
                raise self._page_error(resp, "no known form on page")
        raise MockRPError(f"gave up after {max_steps} steps at {resp.url} (HTTP {resp.status})")

    def _page_error(self, resp: Response, reason: str) -> MockRPError:
        info = page_info(resp.text)
        return MockRPError(f"{reason}: HTTP {resp.status} at {resp.url}: {info.summary()}")

    def _authorization_result(
        self, url: str, form_fields: dict[str, str] | None, state: dict
    ) -> AuthorizationResult:
        if form_fields is not None:
            params = dict(form_fields)
        else:
            parts = urlsplit(url)
            params = dict(parse_qsl(parts.query, keep_blank_values=True))
            if "code" not in params and "error" not in params and parts.fragment:
                params = dict(parse_qsl(parts.fragment, keep_blank_values=True))
        result = AuthorizationResult(
            code=params.get("code"),
            state=params.get("state"),
            error=params.get("error"),
            error_description=params.get("error_description"),
            iss=params.get("iss"),
            redirect_url=url,
            nonce=state.get("nonce"),
            code_verifier=state.get("code_verifier"),
        )
        expected = state.get("state")
        if result.state != expected:
            raise MockRPError(f"state mismatch: sent {expected!r}, got {result.state!r}")
        if result.iss is not None and result.iss != self.issuer:
            raise MockRPError(f"iss mismatch in authorization response: {result.iss!r}")
        if result.code is None and result.error is None:
            raise MockRPError(f"authorization response has neither code nor error: {url}")
        return result

    # ------------------------------------------------------------ page helpers

    def follow(self, response: Response) -> Response:
        """GET the ``Location`` of a redirect response (one hop, any origin)."""
        loc = response.location
        if not (300 <= response.status < 400) or not loc:
            raise MockRPError(f"not a redirect: HTTP {response.status} at {response.url}")
        return self.transport.request("GET", loc)

    def submit(
        self,
        response: Response,
        fields: dict[str, Any] | None = None,
        button: tuple[str, str] | str | None = None,
    ) -> Response:
        """Fill and submit the form of ``response`` that has all ``fields`` (and ``button``).

        When no form has all the names but the page has exactly one form, that one is
        used (so extra fields can be injected).
        """
        fields = dict(fields or {})
        forms = parse_forms(response.text, response.url)
        names = list(fields)
        if button is not None:
            names.append(button if isinstance(button, str) else button[0])
        form = _first(forms, *names)
        if form is None and len(forms) == 1:
            form = forms[0]
        if form is None:
            raise self._page_error(response, f"no form with {names}")
        form.fill(fields)
        return self.submit_form(form, button=button)

    def submit_form(self, form: Form, button: tuple[str, str] | str | None = None) -> Response:
        """Submit a parsed :class:`Form` (see :meth:`Form.submit_data`)."""
        data = form.submit_data(button)
        if form.method == "GET":
            parts = urlsplit(form.action)
            url = urlunsplit(parts._replace(query=urlencode(data)))
            return self.transport.request("GET", url)
        return self.transport.request(form.method, form.action, data=data)

    # ------------------------------------------------------------- back channel

    def _client_auth(self) -> tuple[dict[str, str], tuple[str, str] | None]:
        method = self.auth_method
        if method == "client_secret_basic":
            return {}, rfc6749_basic_credentials(self.client_id, self.client_secret or "")
        if method == "client_secret_post":
            return {"client_id": self.client_id, "client_secret": self.client_secret or ""}, None
        if method == "none":
            return {"client_id": self.client_id}, None
        return {
            "client_id": self.client_id,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": self.client_assertion(),
        }, None

    def client_assertion(self, audience: str | None = None, lifetime: int = 60) -> str:
        """A private_key_jwt client assertion signed with ``private_key_jwk`` (jwcrypto)."""
        if not self.private_key_jwk:
            raise ValueError("no private_key_jwk configured")
        key = jwk.JWK(**self.private_key_jwk)
        alg = self.private_key_jwk.get("alg") or {
            "RSA": "RS256",
            "EC": {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}.get(
                self.private_key_jwk.get("crv", ""), "ES256"
            ),
            "OKP": "EdDSA",
        }.get(self.private_key_jwk.get("kty", ""), "RS256")
        header: dict[str, str] = {"alg": alg, "typ": "JWT"}
        if self.private_key_jwk.get("kid"):
            header["kid"] = self.private_key_jwk["kid"]
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience or self.assertion_audience or self.endpoint("token_endpoint"),
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + lifetime,
        }
        token = jwc_jwt.JWT(header=header, claims=claims)
        token.make_signed_token(key)
        return token.serialize()

    def _post_authenticated(self, endpoint: str, params: dict[str, Any]) -> Response:
        data, auth = self._client_auth()
        data.update(_clean(params))
        return self.transport.request(
            "POST",
            self.endpoint(endpoint),
            data=data,
            auth=auth,
            headers={"Accept": "application/json"},
        )

    def token_request(self, grant_type: str, **params: Any) -> TokenSet:
        """POST to the token endpoint with client authentication; ``None`` omits a param."""
        resp = self._post_authenticated("token_endpoint", {"grant_type": grant_type, **params})
        body = _json_or_error(resp)
        if "access_token" not in body:
            raise MockRPError(f"token response has no access_token: {body}")
        expires_in = body.get("expires_in")
        return TokenSet(
            access_token=body["access_token"],
            token_type=body.get("token_type"),
            expires_in=int(expires_in) if expires_in is not None else None,
            refresh_token=body.get("refresh_token"),
            id_token=body.get("id_token"),
            scope=body.get("scope"),
            raw=body,
        )

    def exchange_code(
        self,
        result: AuthorizationResult,
        *,
        redirect_uri: str | None = None,
        code_verifier: str | None = _UNSET,
        **extra: Any,
    ) -> TokenSet:
        """Redeem the authorization code. ``code_verifier`` defaults to the result's
        (pass ``None`` to omit it); ``extra`` adds or (with ``None``) removes params."""
        if result.code is None:
            raise MockRPError(f"no authorization code: {result.error}: {result.error_description}")
        if code_verifier is _UNSET:
            code_verifier = result.code_verifier
        params = {
            "code": result.code,
            "redirect_uri": redirect_uri or self.redirect_uri,
            "code_verifier": code_verifier,
            **extra,
        }
        return self.token_request("authorization_code", **params)

    def refresh(self, refresh_token: str, scope: str | None = None) -> TokenSet:
        return self.token_request("refresh_token", refresh_token=refresh_token, scope=scope)

    def client_credentials(self, scope: str | None = None) -> TokenSet:
        return self.token_request("client_credentials", scope=scope)

    def introspect(self, token: str, token_type_hint: str | None = None) -> dict:
        """RFC 7662 introspection; returns the JSON response."""
        resp = self._post_authenticated(
            "introspection_endpoint", {"token": token, "token_type_hint": token_type_hint}
        )
        return _json_or_error(resp)

    def revoke(self, token: str, token_type_hint: str | None = None) -> int:
        """RFC 7009 revocation; returns the HTTP status (200 expected)."""
        resp = self._post_authenticated(
            "revocation_endpoint", {"token": token, "token_type_hint": token_type_hint}
        )
        return resp.status

    def userinfo(
        self,
        access_token: str,
        *,
        method: str = "GET",
        in_body: bool = False,
        expected_sub: str | None = None,
    ) -> dict:
        """Call the userinfo endpoint (Bearer header, or form body when ``in_body``).

        A signed ``application/jwt`` response is verified against the JWKS. With
        ``expected_sub``, the ``sub`` must equal it (OIDC Core 5.3.4).
        """
        url = self.endpoint("userinfo_endpoint")
        if in_body:
            resp = self.transport.request(
                "POST" if method.upper() == "GET" else method,
                url,
                data={"access_token": access_token},
            )
        else:
            resp = self.transport.request(
                method, url, headers={"Authorization": f"Bearer {access_token}"}
            )
        if resp.status != 200:
            raise _error_from(resp)
        if resp.content_type == "application/jwt":
            _, claims = self._verify_jws(resp.text.strip(), what="userinfo")
            if claims.get("iss") != self.issuer:
                raise MockRPError(f"iss: userinfo JWT iss {claims.get('iss')!r}")
        else:
            claims = _json_or_error(resp)
        if "sub" not in claims:
            raise MockRPError("sub: userinfo response has no sub")
        if expected_sub is not None and claims["sub"] != expected_sub:
            raise MockRPError(f"sub: userinfo sub {claims['sub']!r} != {expected_sub!r}")
        return claims

    # --------------------------------------------------------------- ID tokens

    def _verify_jws(self, token: str, *, what: str, typ: str | None = None) -> tuple[dict, dict]:
        """Check header alg/kid, verify the signature with jwcrypto; return (header, claims)."""
        if not isinstance(token, str) or not token:
            raise MockRPError(f"format: no {what} (got {token!r})")
        parts = token.split(".")
        if len(parts) != 3:
            raise MockRPError(f"format: {what} is not a compact JWS ({len(parts)} parts)")
        try:
            header = json.loads(_b64url_decode(parts[0]))
        except ValueError as exc:
            raise MockRPError(f"format: {what} header is not JSON: {exc}") from exc
        if not isinstance(header, dict):
            raise MockRPError(f"format: {what} header is not a JSON object")
        alg = header.get("alg")
        if alg not in self.allowed_algs:
            raise MockRPError(f"alg: {what} uses alg {alg!r}; allowed {list(self.allowed_algs)}")
        if header.get("crit"):
            raise MockRPError(f"crit: {what} has unsupported critical headers {header['crit']}")
        if typ is not None:
            got = str(header.get("typ", "")).lower()
            if got.removeprefix("application/") != typ:
                raise MockRPError(f"typ: {what} header typ {header.get('typ')!r}, expected {typ!r}")
        key = self._signing_key(header.get("kid"), alg)
        obj = jws.JWS()
        try:
            obj.deserialize(token)
            obj.verify(key, alg=alg)
        except JWException as exc:
            raise MockRPError(f"signature: {what} signature is invalid: {exc}") from exc
        try:
            claims = json.loads(obj.payload)
        except ValueError as exc:
            raise MockRPError(f"format: {what} payload is not JSON: {exc}") from exc
        if not isinstance(claims, dict):
            raise MockRPError(f"format: {what} payload is not a JSON object")
        return header, claims

    def verify_id_token(
        self,
        id_token: str,
        *,
        nonce: str | None,
        access_token: str | None = None,
        max_age: int | None = None,
        leeway: int = 30,
        require_at_hash: bool = False,
    ) -> dict:
        """Validate an ID token per OIDC Core 3.1.3.7 with jwcrypto; return its claims.

        ``nonce=None`` skips the nonce check (e.g. refreshed ID tokens). With
        ``access_token``, a present ``at_hash`` must match (and must be present if
        ``require_at_hash``). Raises :class:`MockRPError` whose message starts with
        the failed check (``alg``, ``kid``, ``signature``, ``iss``, ``aud``, ``azp``,
        ``exp``, ``iat``, ``nonce``, ``at_hash``, ``auth_time``, ``sub``).
        """
        header, claims = self._verify_jws(id_token, what="ID token")
        now = time.time()
        if claims.get("iss") != self.issuer:
            raise MockRPError(f"iss: expected {self.issuer!r}, got {claims.get('iss')!r}")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise MockRPError("sub: missing or not a string")
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if self.client_id not in auds:
            raise MockRPError(f"aud: {self.client_id!r} not in {aud!r}")
        if len(auds) > 1 and claims.get("azp") != self.client_id:
            raise MockRPError(f"azp: multiple audiences but azp is {claims.get('azp')!r}")
        if "azp" in claims and claims["azp"] != self.client_id:
            raise MockRPError(f"azp: {claims['azp']!r} != {self.client_id!r}")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise MockRPError(f"exp: missing or not a number: {exp!r}")
        if now > exp + leeway:
            raise MockRPError(f"exp: token expired {int(now - exp)}s ago")
        iat = claims.get("iat")
        if not isinstance(iat, int | float) or isinstance(iat, bool):
            raise MockRPError(f"iat: missing or not a number: {iat!r}")
        if iat > now + leeway:
            raise MockRPError(f"iat: issued {int(iat - now)}s in the future")
        if nonce is not None and claims.get("nonce") != nonce:
            raise MockRPError(f"nonce: expected {nonce!r}, got {claims.get('nonce')!r}")
        if access_token is not None:
            if "at_hash" in claims:
                expected = token_hash(access_token, header["alg"])
                if not hmac.compare_digest(str(claims["at_hash"]), expected):
                    raise MockRPError(f"at_hash: {claims['at_hash']!r} != {expected!r}")
            elif require_at_hash:
                raise MockRPError("at_hash: missing")
        if max_age is not None:
            auth_time = claims.get("auth_time")
            if not isinstance(auth_time, int | float) or isinstance(auth_time, bool):
                raise MockRPError(
                    f"auth_time: missing although max_age was requested: {auth_time!r}"
                )
            if now - auth_time > max_age + leeway:
                raise MockRPError(
                    f"auth_time: {int(now - auth_time)}s ago exceeds max_age={max_age}"
                )
        return claims

    def verify_access_token(self, access_token: str, *, leeway: int = 30) -> dict:
        """Validate an RFC 9068 JWT access token issued to this client; return its claims."""
        _, claims = self._verify_jws(access_token, what="access token", typ="at+jwt")
        if claims.get("iss") != self.issuer:
            raise MockRPError(f"iss: expected {self.issuer!r}, got {claims.get('iss')!r}")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise MockRPError(f"exp: missing or not a number: {exp!r}")
        if time.time() > exp + leeway:
            raise MockRPError("exp: access token expired")
        if claims.get("client_id") != self.client_id:
            raise MockRPError(
                f"client_id: expected {self.client_id!r}, got {claims.get('client_id')!r}"
            )
        for name in ("aud", "sub", "iat", "jti"):
            if name not in claims:
                raise MockRPError(f"{name}: missing (required by RFC 9068)")
        return claims

    # ------------------------------------------------------------------ logout

    def logout_url(
        self,
        *,
        id_token_hint: str | None = None,
        post_logout_redirect_uri: str | None = None,
        state: str | None = None,
        client_id: bool | str | None = True,
        **extra: Any,
    ) -> str:
        """The RP-initiated logout URL (``client_id=True`` sends this client's id)."""
        if client_id is True:
            client_id = self.client_id
        params = _clean(
            {
                "id_token_hint": id_token_hint,
                "post_logout_redirect_uri": post_logout_redirect_uri,
                "state": state,
                "client_id": client_id or None,
                **extra,
            }
        )
        return _add_query(self.endpoint("end_session_endpoint"), params)

    def logout(self, *, decision: str = "logout", max_steps: int = 8, **kwargs: Any) -> Response:
        """GET the logout URL, confirm once if asked (``decision`` button), and return
        the final response. Redirects on the issuer's origin are followed; a redirect
        elsewhere (e.g. to ``post_logout_redirect_uri``) is returned, not followed."""
        resp = self.transport.request("GET", self.logout_url(**kwargs))
        confirmed = False
        for _ in range(max_steps):
            if 300 <= resp.status < 400 and resp.location:
                if _origin(resp.location) != _origin(self.issuer):
                    return resp
                post = kwargs.get("post_logout_redirect_uri")
                if post and _targets(resp.location, post):
                    return resp
                resp = self.transport.request("GET", resp.location)
                continue
            if confirmed or not _looks_html(resp):
                return resp
            form = _first(parse_forms(resp.text, resp.url), "decision")
            if form is None:
                return resp
            confirmed = True
            resp = self.submit_form(form, button=("decision", decision))
        return resp


def _first(forms: list[Form], *names: str) -> Form | None:
    try:
        return find_form(forms, *names)
    except LookupError:
        return None


def token_hash(value: str, alg: str) -> str:
    """OIDC ``at_hash``/``c_hash``: left half of the alg's SHA-2 digest, base64url."""
    digest = _HASHES.get(alg[-3:], hashlib.sha256)(value.encode("ascii")).digest()
    return _b64url(digest[: len(digest) // 2])


def _error_from(resp: Response) -> OAuthError:
    body: Any = resp.text
    error = description = None
    with contextlib.suppress(ValueError):
        body = resp.json()
    if isinstance(body, dict):
        error, description = body.get("error"), body.get("error_description")
    if error is None:
        challenge = resp.headers.get("WWW-Authenticate", "")
        params = {k.lower(): v for k, v in re.findall(r'([\w-]+)="([^"]*)"', challenge)}
        error, description = params.get("error"), params.get("error_description")
    return OAuthError(resp.status, error, description, body)


def _json_or_error(resp: Response) -> dict:
    if not 200 <= resp.status < 300:
        raise _error_from(resp)
    try:
        body = resp.json()
    except ValueError as exc:
        raise MockRPError(f"HTTP {resp.status} from {resp.url} is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise MockRPError(f"HTTP {resp.status} from {resp.url}: JSON is not an object")
    if "error" in body:
        raise OAuthError(resp.status, body.get("error"), body.get("error_description"), body)
    return body
