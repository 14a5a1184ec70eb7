"""Signed app requests: the provider's verifier (idp.mfa.push.jws) against JWS made by
the companion app's own signer (clients.verify.device), and against tokens signed by
hand here (as earlier versions of the app did), plus a guard that the JOSE work of the
provider and the clients stays in joserfc."""

from __future__ import annotations

import ast
import base64
import json
import time
import warnings
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from joserfc import jwk

from clients.verify import device
from idp.mfa.push import jws as push_jws

ROOT = Path(__file__).resolve().parents[2]

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
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


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
    with pytest.raises(push_jws.SignatureError):
        push_jws.public_key_from_jwk({**device.public_jwk(device.generate("ES256")), "d": "AA"})
    for kty, crv in [("EC", "P-384"), ("EC", "P-521"), ("OKP", "Ed448"), ("OKP", "X25519")]:
        other = jwk.generate_key(kty, crv, private=False).as_dict()
        with pytest.raises(push_jws.SignatureError) as err:
            push_jws.public_key_from_jwk(other)
        assert err.value.code == "invalid_key"
    with pytest.raises(push_jws.SignatureError):
        push_jws.public_key_from_jwk({"kty": "RSA", "n": "AQAB", "e": "AQAB"})
    good = device.public_jwk(device.generate("ES256"))
    for bad in (
        {**good, "x": good["y"]},  # not on the curve
        {**good, "x": 5},
        {**good, "crv": ["P-256"]},
        {k: v for k, v in good.items() if k != "y"},
        # RFC 7518 section 6.2.1.2: coordinates are full length, no leading zero byte.
        {**good, "x": _b64(b"\x00" + _unb64(good["x"]))},
        {"kty": "OKP", "crv": "Ed25519", "x": _b64(b"\x01" * 31)},
        "not a dict",
    ):
        with pytest.raises(push_jws.SignatureError) as err:
            push_jws.public_key_from_jwk(bad)
        assert err.value.code == "invalid_key"
    # Members other than the key material (use, kid, alg...) are ignored, as before.
    alg, key = push_jws.public_key_from_jwk({**good, "use": "sig", "kid": "x", "alg": "ES256"})
    assert alg == "ES256"
    assert {k: key.as_dict()[k] for k in good} == good


# -- tokens made by hand, as earlier versions of the app made them ---------------------


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _hand_signed(key, header: dict, payload: bytes | dict) -> str:
    """A compact JWS signed with *key* (a ``cryptography`` key) without joserfc."""
    if isinstance(payload, dict):
        payload = json.dumps(payload).encode()
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(payload)}".encode()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        signature = key.sign(signing_input)
    return signing_input.decode() + "." + _b64(signature)


def _hand_jwk(key) -> dict:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        n = key.public_key().public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64(n.x.to_bytes(32, "big")),
            "y": _b64(n.y.to_bytes(32, "big")),
        }
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64(raw)}


def _spki(key) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _cryptography_key(alg):
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_earlier_apps_and_stored_keys_still_work(alg):
    """Installed apps sign by hand (``alg`` ES256 or EdDSA) and devices enrolled before
    are stored as SubjectPublicKeyInfo DER: both keep working."""
    old = _cryptography_key(alg)
    claims = device.request_claims("GET", URL, sub="dev1")
    token = _hand_signed(old, {"alg": alg, "typ": "idp-verify+jwt", "kid": "dev1"}, claims)
    got_alg, pub = push_jws.public_key_from_jwk(_hand_jwk(old))
    assert got_alg == alg
    assert push_jws.public_key_der(pub) == _spki(old)  # the stored format is unchanged
    stored = push_jws.load_public_key(_spki(old), alg)
    assert push_jws.verify(token, stored, alg)[1] == claims
    # The app's state file (PKCS #8 PEM) reads back; its signatures verify with the
    # plain cryptography primitives a provider of the earlier version uses.
    pem = old.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    key = device.from_pem(pem)
    assert device.algorithm_of(key) == alg and device.public_jwk(key) == _hand_jwk(old)
    header_b64, payload_b64, sig_b64 = device.sign(key, {"kid": "dev1"}, claims).split(".")
    assert json.loads(_unb64(header_b64))["alg"] == alg
    signing_input, signature = f"{header_b64}.{payload_b64}".encode(), _unb64(sig_b64)
    if alg == "ES256":
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        old.public_key().verify(
            encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256())
        )
    else:
        old.public_key().verify(signature, signing_input)


def test_stored_keys_must_match_their_algorithm():
    p256, ed = _spki(_cryptography_key("ES256")), _spki(_cryptography_key("EdDSA"))
    for der, alg in [(p256, "EdDSA"), (ed, "ES256"), (p256, ""), (b"junk", "ES256"),
                     (_spki(ec.generate_private_key(ec.SECP384R1())), "ES256"),
                     (_spki(ed448.Ed448PrivateKey.generate()), "EdDSA")]:  # fmt: skip
        with pytest.raises(push_jws.SignatureError) as err:
            push_jws.load_public_key(der, alg)
        assert err.value.code == "invalid_key"


def test_ed25519_keeps_the_eddsa_name_without_a_deprecation_warning():
    """joserfc 1.8 names Ed25519 ``Ed25519`` (RFC 9864) and warns on ``EdDSA``; the wire
    name stays ``EdDSA`` on both sides, signed and verified by joserfc's Ed25519."""
    key = device.generate("EdDSA")
    alg, pub = server_key(key)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        token = signed(key)
        assert push_jws.verify(token, pub, alg)[0]["alg"] == "EdDSA"
    old = _cryptography_key("EdDSA")
    for name in ("Ed25519", "Ed448", "ES384", "HS256", None, ["EdDSA"]):
        header = {"alg": name, "typ": "idp-verify+jwt", "kid": "dev1"}
        with pytest.raises(push_jws.SignatureError) as err:
            push_jws.peek_header(_hand_signed(old, header, {"sub": "dev1"}))
        assert err.value.code == "unsigned_request"


def _deep(n: int) -> str:
    return "[" * n + "]" * n


@pytest.mark.parametrize(
    ("header", "payload"),
    [
        # Deeper than the request JSON rule (32) but small: joserfc alone would read it.
        (f'{{"alg":"ES256","typ":"idp-verify+jwt","x":{_deep(40)}}}', "{}"),
        ('{"alg":"ES256","typ":"idp-verify+jwt"}', f'{{"x":{_deep(40)}}}'),
        ("[" * 1200, "[" * 1200),  # oversized
        ('{"alg":"ES256","typ":"idp-verify+jwt","x":NaN}', "{}"),
        ('"alg"', "{}"),
        ('{"alg":"ES256","typ":"idp-verify+jwt"}', "[1]"),
        ('{"alg":"ES256","typ":"idp-verify+jwt"}', "\ufeff"),
    ],
)
def test_odd_headers_and_payloads_are_refused_not_crashing(header, payload):
    token = _b64(header.encode()) + "." + _b64(payload.encode()) + ".AAAA"
    with pytest.raises(push_jws.SignatureError) as err:
        push_jws.peek_header(token)
    assert err.value.code == "invalid_signature"


@pytest.mark.parametrize(
    "token",
    ["a.b.c.d", "\u00e9.\u00e9.\u00e9", "%%.%%.%%", "e30.e30.", "..", " . . "],
)
def test_malformed_compact_serializations_are_refused(token):
    with pytest.raises(push_jws.SignatureError):
        push_jws.peek_header(token)


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"typ": "JWT"}, "typ"),
        ({"crit": ["exp"], "exp": 1}, "header refused"),  # an extension we do not know
        ({"crit": 5}, "header refused"),
        ({"b64": False, "crit": ["b64"]}, "header refused|not JSON"),  # RFC 7797
        ({"kid": 5}, "header refused"),
    ],
)
def test_headers_joserfc_refuses(extra, reason):
    old = _cryptography_key("ES256")
    alg, pub = push_jws.public_key_from_jwk(_hand_jwk(old))
    header = {"alg": "ES256", "typ": "idp-verify+jwt", "kid": "dev1", **extra}
    token = _hand_signed(old, header, device.request_claims("GET", URL, sub="dev1"))
    with pytest.raises(push_jws.SignatureError, match=reason) as err:
        push_jws.verify(token, pub, alg)
    assert err.value.code == "invalid_signature"


def test_unknown_header_parameters_outside_crit_are_ignored():
    # RFC 7515 section 4, as before.
    old = _cryptography_key("ES256")
    alg, pub = push_jws.public_key_from_jwk(_hand_jwk(old))
    header = {"alg": "ES256", "typ": "idp-verify+jwt", "kid": "dev1", "x-y": [1]}
    token = _hand_signed(old, header, device.request_claims("GET", URL, sub="dev1"))
    assert push_jws.verify(token, pub, alg)[0]["x-y"] == [1]


def test_signatures_of_the_wrong_size_are_bad_signatures():
    key = device.generate("ES256")
    alg, pub = server_key(key)
    head, body, sig = signed(key).split(".")
    for other in (sig[:-4], sig + "AAAA", "A" * 200, "!!!!"):
        with pytest.raises(push_jws.SignatureError) as err:
            push_jws.verify(f"{head}.{body}.{other}", pub, alg)
        assert err.value.code == "invalid_signature"


# -- the guard: JOSE stays in joserfc --------------------------------------------------

_DSS = ("encode_dss_signature", "decode_dss_signature")
_ASYMMETRIC = "cryptography.hazmat.primitives.asymmetric"
#: Modules allowed to sign or verify with ``cryptography`` keys themselves, with the
#: reason. None: idp/keys/ring.py signs and verifies through joserfc as well.
_EXEMPT: dict[str, str] = {}


def _hand_jose(source: str, name: str = "<source>") -> list[str]:
    """What in *source* looks like signature handling by hand: the DSS (r, s)
    conversions, or ``.sign()``/``.verify()`` calls in a module holding ``cryptography``
    asymmetric keys (or catching its ``InvalidSignature``)."""
    found = [f"mentions {f}" for f in _DSS if f in source]
    try:
        tree = ast.parse(source, name)
    except SyntaxError:  # someone is editing it: the text check above still applies
        return found
    holds_keys = False
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = {a.name for a in node.names}
            if node.module.startswith(_ASYMMETRIC) or (
                node.module == "cryptography.exceptions" and "InvalidSignature" in names
            ):
                holds_keys = True
            if node.module.startswith(_ASYMMETRIC + ".utils") or (
                node.module == _ASYMMETRIC and "utils" in names
            ):
                found.append(f"line {node.lineno}: imports {_ASYMMETRIC}.utils")
        elif isinstance(node, ast.Import) and any(
            a.name.startswith(_ASYMMETRIC) for a in node.names
        ):
            holds_keys = True
    if holds_keys:
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("sign", "verify")
            ):
                found.append(f"line {node.lineno}: .{node.func.attr}() with a cryptography key")
    return found


def test_the_guard_recognises_hand_written_jose():
    before = (
        "from cryptography.hazmat.primitives.asymmetric import ec, ed25519\n"
        "from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature\n"
        "def verify(key, sig, data):\n"
        "    key.verify(encode_dss_signature(1, 2), data, ec.ECDSA(hashes.SHA256()))\n"
    )
    assert len(_hand_jose(before)) == 3
    signer = "from cryptography.hazmat.primitives.asymmetric import ed25519\nk.sign(b'x')\n"
    assert _hand_jose(signer) == ["line 2: .sign() with a cryptography key"]
    catcher = "from cryptography.exceptions import InvalidSignature\nkey.verify(s, m)\n"
    assert _hand_jose(catcher)
    # Other .verify() calls (passwords, TOTP, the MFA service) are not JOSE.
    assert _hand_jose("def f(svc):\n    return svc.passwords.verify(h, p)\n") == []


def test_jose_is_done_by_joserfc_only():
    """No module of the provider or the clients signs, verifies or converts JWS
    signatures with ``cryptography`` itself: joserfc does (``joserfc.jws``/``jwt``)."""
    offenders, scanned = {}, set()
    for top in ("idp", "clients"):
        for path in sorted((ROOT / top).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            scanned.add(name)
            found = _hand_jose(path.read_text(encoding="utf-8"), name)
            if found and name not in _EXEMPT:
                offenders[name] = found
    assert {"idp/mfa/push/jws.py", "clients/verify/device.py", "idp/keys/ring.py"} <= scanned
    assert not offenders, f"JOSE by hand (use joserfc): {offenders}"
