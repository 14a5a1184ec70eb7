"""mockrp: a small mock OpenID Connect relying party for tests.

It drives a complete authorization code flow against a provider, using the
provider's own HTML pages the way a browser would, and checks every token with
``jwcrypto`` (an independent JOSE implementation)::

    from clients.mockrp import FlaskTransport, MockRP

    rp = MockRP(
        "http://localhost",                      # issuer, must match discovery exactly
        "my-client",
        "https://rp.example/callback",
        client_secret="s3cret",                  # client_secret_basic by default
        transport=FlaskTransport(app.test_client()),  # or HTTPTransport() for real HTTP
    )
    result = rp.sign_in("alice@example.com", "correct horse")   # login + consent
    assert result.error is None
    tokens = rp.exchange_code(result)            # PKCE verifier sent automatically
    claims = rp.verify_id_token(
        tokens.id_token, nonce=result.nonce, access_token=tokens.access_token
    )
    profile = rp.userinfo(tokens.access_token, expected_sub=claims["sub"])
    refreshed = rp.refresh(tokens.refresh_token)
    assert rp.introspect(refreshed.access_token)["active"]
    assert rp.revoke(refreshed.refresh_token, "refresh_token") == 200
    resp = rp.logout(
        id_token_hint=tokens.id_token, post_logout_redirect_uri="https://rp.example/bye"
    )
    assert resp.location.startswith("https://rp.example/bye")   # not followed

Custom pages (e.g. an MFA step) can be interleaved with the lower-level helpers::

    resp = rp.start(acr_values="mfa")            # state dict in rp.last_request
    resp = rp.follow(resp)                       # one redirect hop
    resp = rp.submit(resp, {"email": "a@example.com", "password": "pw"})
    resp = rp.follow(resp)                       # to the provider's MFA page
    resp = rp.submit(resp, {"otp": totp.now()})
    result = rp.resume(resp)                     # drive on until the redirect URI

``sign_in`` stops at the first redirect to ``redirect_uri`` without requesting it.
Protocol violations raise :class:`MockRPError` (the message starts with the failed
check, e.g. ``"nonce: ..."``); OAuth error responses raise :class:`OAuthError`.
"""

from .forms import Form, PageInfo, find_form, page_info, parse_forms
from .rp import (
    AuthorizationResult,
    MockRP,
    MockRPError,
    OAuthError,
    TokenSet,
    pkce_challenge,
    rfc6749_basic_credentials,
    token_hash,
)
from .transport import FlaskTransport, Headers, HTTPTransport, Response, Transport

__all__ = [
    "AuthorizationResult",
    "FlaskTransport",
    "Form",
    "HTTPTransport",
    "Headers",
    "MockRP",
    "MockRPError",
    "OAuthError",
    "PageInfo",
    "Response",
    "TokenSet",
    "Transport",
    "find_form",
    "page_info",
    "parse_forms",
    "pkce_challenge",
    "rfc6749_basic_credentials",
    "token_hash",
]
