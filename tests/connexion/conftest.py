"""Fixtures for Connexion tests that do not need the real provider: a test signing key
served as JWKS through a stand-in for ``tokens.fetch_json``, access-token minting,
and the app with Authlib's provider metadata preloaded (so nothing goes to the network).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from clients.connexion import create_app, tokens

ISSUER = "https://op.example.test"
CLIENT_ID = "connexion"
BASE = "https://connexion.example.test"
API = f"{BASE}/api"  # the Form C API's resource URI (CONNEXION_API_RESOURCE's default)
API_SCOPE = "form-c:file"
AAL1 = "http://idmanagement.gov/ns/assurance/aal/1"
MFA = "urn:idp:acr:mfa"
AAL2 = "http://idmanagement.gov/ns/assurance/aal/2"
PHISHING_RESISTANT = "http://idmanagement.gov/ns/assurance/aal/2?phishing_resistant=true"


@pytest.fixture(scope="session")
def signing_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "test-key-1", "alg": "RS256", "use": "sig"})


@pytest.fixture(scope="session")
def other_key() -> RSAKey:
    """A key the provider never published (same kid, to test the signature check)."""
    return RSAKey.generate_key(2048, parameters={"kid": "test-key-1", "alg": "RS256", "use": "sig"})


class Provider:
    """What ``fetch_json`` serves: discovery and a JWKS that tests can change."""

    def __init__(self, key: RSAKey):
        self.keys = [key]
        self.requests: list[str] = []
        self.down = False

    def fetch_json(self, url: str) -> dict:
        self.requests.append(url)
        if self.down:
            raise tokens.requests.ConnectionError("provider down")
        if url == f"{ISSUER}/.well-known/openid-configuration":
            return {"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks",
                    "introspection_endpoint": f"{ISSUER}/introspect"}  # fmt: skip
        if url == f"{ISSUER}/jwks":
            return {"keys": [k.as_dict(private=False) for k in self.keys]}
        raise AssertionError(f"unexpected fetch {url}")

    @property
    def jwks_fetches(self) -> int:
        return self.requests.count(f"{ISSUER}/jwks")


@pytest.fixture
def provider(monkeypatch, signing_key) -> Provider:
    p = Provider(signing_key)
    monkeypatch.setattr(tokens, "fetch_json", p.fetch_json)
    return p


@pytest.fixture
def mint(signing_key) -> Callable[..., str]:
    """An RFC 9068 access token as the provider issues it for the Form C API (``aud`` the
    API's resource URI, its scope only); keyword arguments override claims (``None``
    removes one); ``header=`` and ``key=`` override those."""

    def factory(*, header: dict | None = None, key=None, **overrides) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": "user-123",
            "aud": API,
            "client_id": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
            "scope": API_SCOPE,
            "auth_time": now - 60,
            "acr": MFA,
            "amr": ["mfa", "otp", "pwd"],
        }
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        signer = key or signing_key
        head = {"alg": "RS256", "typ": "at+jwt", "kid": signer.kid, **(header or {})}
        head = {k: v for k, v in head.items() if v is not None}
        return jwt.encode(head, claims, signer, algorithms=[head["alg"]])

    return factory


@pytest.fixture
def cx_app(tmp_path, provider):
    app = create_app(
        {
            "CONNEXION_ISSUER": ISSUER,
            "CONNEXION_CLIENT_ID": CLIENT_ID,
            "CONNEXION_CLIENT_SECRET": "s3cret",
            "CONNEXION_BASE_URL": BASE,
            "CONNEXION_DATABASE": str(tmp_path / "connexion.sqlite3"),
            "CONNEXION_SECRET_KEY": "test-secret",
            "TESTING": True,
        }
    )
    # Authlib's client reads discovery once; preloading it keeps these tests offline.
    app.extensions["connexion"].oauth.server_metadata.update(
        {
            "issuer": ISSUER,
            "authorization_endpoint": f"{ISSUER}/authorize",
            "token_endpoint": f"{ISSUER}/token",
            "userinfo_endpoint": f"{ISSUER}/userinfo",
            "jwks_uri": f"{ISSUER}/jwks",
            "end_session_endpoint": f"{ISSUER}/logout",
            "authorization_response_iss_parameter_supported": True,
            "_loaded_at": time.time(),
        }
    )
    return app


@pytest.fixture
def cx(cx_app):
    return cx_app.test_client()
