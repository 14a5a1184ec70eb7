"""Signed app requests: the provider's verifier (idp.mfa.push_jws) against JWS made by
the companion app's own signer (clients.verify.device), an independent implementation."""

from __future__ import annotations

import base64
import json
import time

import pytest

from clients.verify import device
from idp.mfa import push_jws

URL = "https://id.example/push/v1/challenges"


def signed(key, **claims):
    base = device.request_claims("GET", URL, sub="dev1")
    return device.sign(key, {"kid": "dev1"}, {**base, **claims})


def server_key(key):
    alg, pub = push_jws.public_key_from_jwk(device.public_jwk(key))
    return alg, push_jws.load_public_key(push_jws.public_key_der(pub), alg)


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_a_good_request_verifies(alg):
    key = device.generate(alg)
    got_alg, pub = server_key(key)
    assert got_alg == alg
    header, claims = push_jws.verify(signed(key), pub, alg)
    assert header["kid"] == "dev1" and header["typ"] == "idp-verify+jwt"
    push_jws.check_claims(claims, aud=URL, htm="GET", now=int(time.time()), skew=60)


def _b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_unsigned_requests_are_refused():
    key = device.generate("ES256")
    alg, pub = server_key(key)
    none = _b64({"alg": "none", "typ": "idp-verify+jwt"}) + "." + _b64({"sub": "dev1"}) + "."
    with pytest.raises(push_jws.SignatureError) as err:
        push_jws.verify(none, pub, alg)
    assert err.value.code == "unsigned_request"
    for token in ("", "abc", "a.b", "x" * 9000):
        with pytest.raises(push_jws.SignatureError):
            push_jws.verify(token, pub, alg)


def test_a_bad_signature_is_refused():
    key, other = device.generate("ES256"), device.generate("ES256")
    alg, pub = server_key(key)
    with pytest.raises(push_jws.SignatureError, match="bad signature"):
        push_jws.verify(signed(other), pub, alg)
    h, p, s = signed(key).split(".")
    tampered = (
        h + "." + _b64({**json.loads(base64.urlsafe_b64decode(p + "==")), "sub": "x"}) + "." + s
    )
    with pytest.raises(push_jws.SignatureError, match="bad signature"):
        push_jws.verify(tampered, pub, alg)


def test_the_header_cannot_switch_algorithms():
    ed = device.generate("EdDSA")
    alg, pub = server_key(device.generate("ES256"))
    with pytest.raises(push_jws.SignatureError, match="algorithm"):
        push_jws.verify(signed(ed), pub, alg)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        # Offsets from the time the test RUNS (not when it is collected: a long suite
        # would otherwise bring "120 s ahead" within the skew).
        ({"iat": -120}, "stale_request"),
        ({"iat": +120}, "stale_request"),
        ({"iat": "now"}, "invalid_request_signature"),
        ({"aud": "https://id.example/push/v1/device"}, "invalid_request_signature"),
        ({"htm": "POST"}, "invalid_request_signature"),
        ({"jti": "short"}, "invalid_request_signature"),
    ],
)
def test_claims_must_fit_this_request(change, code):
    if isinstance(change.get("iat"), int):
        change = {**change, "iat": int(time.time()) + change["iat"]}
    claims = {**device.request_claims("GET", URL, sub="dev1"), **change}
    with pytest.raises(push_jws.SignatureError) as err:
        push_jws.check_claims(claims, aud=URL, htm="GET", now=int(time.time()), skew=60)
    assert err.value.code == code


def test_only_public_p256_and_ed25519_keys_are_accepted():
    from cryptography.hazmat.primitives.asymmetric import ec

    with pytest.raises(push_jws.SignatureError):
        push_jws.public_key_from_jwk({**device.public_jwk(device.generate("ES256")), "d": "AA"})
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key().public_numbers()
    jwk = {
        "kty": "EC",
        "crv": "P-384",
        "x": device.b64url(p384.x.to_bytes(48, "big")),
        "y": device.b64url(p384.y.to_bytes(48, "big")),
    }
    with pytest.raises(push_jws.SignatureError):
        push_jws.public_key_from_jwk(jwk)
    with pytest.raises(push_jws.SignatureError):
        push_jws.public_key_from_jwk({"kty": "RSA", "n": "AQAB", "e": "AQAB"})
