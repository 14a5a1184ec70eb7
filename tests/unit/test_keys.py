"""Signing key ring: files on disk, kid, JWKS, rotation, JWT sign/verify."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import stat

import pytest
from jwcrypto import jwk as jc_jwk
from jwcrypto import jwt as jc_jwt

from idp.keys import (
    SUPPORTED_ALGS,
    KeyInfo,
    KeyRing,
    KeyRingError,
    TokenVerificationError,
    ensure_keys,
    generate_key,
    list_keys,
    rotate_keys,
)
from idp.store import MemoryStore

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
RETIRE_FOR = 600


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(obj: dict) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def read_file(info: KeyInfo) -> dict:
    return json.loads(info.path.read_text())


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def ring_dir(tmp_path):
    directory = tmp_path / "keys"
    generate_key(directory, "RS256", now=1000)
    generate_key(directory, "ES256", now=1000)
    return directory


# ------------------------------------------------------------------ generation


def test_supported_algs():
    assert SUPPORTED_ALGS == ("RS256", "ES256")


def test_generate_first_active_then_next_then_refuses(tmp_path):
    first = generate_key(tmp_path, "RS256", now=100)
    second = generate_key(tmp_path, "ES256", now=200)

    assert (first.status, first.alg, first.created_at, first.retired_at) == (
        "active",
        "RS256",
        100,
        None,
    )
    assert (second.status, second.alg, second.created_at) == ("next", "ES256", 200)
    assert first.path == tmp_path / f"{first.kid}.json"
    assert second.path == tmp_path / f"{second.kid}.json"
    assert first.kid != second.kid

    with pytest.raises(KeyRingError, match="rotate"):
        generate_key(tmp_path, "RS256")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.path.name, second.path.name])


@pytest.mark.parametrize(
    ("alg", "kty", "extra"), [("RS256", "RSA", {}), ("ES256", "EC", {"crv": "P-256"})]
)
def test_file_contents(tmp_path, alg, kty, extra):
    info = generate_key(tmp_path, alg, now=1234)
    data = read_file(info)
    assert data["kty"] == kty
    assert data["kid"] == info.kid
    assert data["alg"] == alg
    assert data["use"] == "sig"
    assert data["status"] == "active"
    assert data["created_at"] == 1234
    assert "retired_at" not in data
    assert "d" in data  # private JWK
    for name, value in extra.items():
        assert data[name] == value
    if alg == "RS256":
        assert len(unb64(data["n"])) * 8 == 2048


def test_unsupported_alg(tmp_path):
    with pytest.raises(KeyRingError, match="HS256"):
        generate_key(tmp_path, "HS256")
    with pytest.raises(KeyRingError):
        ensure_keys(tmp_path, "none")
    assert list(tmp_path.iterdir()) == []


def test_modes_even_with_permissive_umask(tmp_path):
    directory = tmp_path / "new" / "keys"
    old = os.umask(0)
    try:
        info = generate_key(directory, "ES256")
    finally:
        os.umask(old)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(info.path.stat().st_mode) == 0o600
    # no temp files left behind
    assert [p.name for p in directory.iterdir()] == [info.path.name]


def test_rewritten_files_keep_0600(ring_dir):
    retired, active, new_next = rotate_keys(ring_dir, retire_for=RETIRE_FOR, now=2000)
    for info in (retired, active, new_next):
        assert stat.S_IMODE(info.path.stat().st_mode) == 0o600


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_kid_is_rfc7638_thumbprint(tmp_path, alg):
    info = generate_key(tmp_path, alg)
    data = read_file(info)
    required = ("e", "kty", "n") if data["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = "{" + ",".join(f'"{name}":"{data[name]}"' for name in required) + "}"
    expected = b64(hashlib.sha256(canonical.encode("ascii")).digest())
    assert info.kid == expected
    assert data["kid"] == expected
    assert info.path.name == f"{expected}.json"


def test_ensure_keys(tmp_path):
    directory = tmp_path / "keys"
    created = ensure_keys(directory, "ES256")
    assert created is not None
    assert created.status == "active"
    assert created.alg == "ES256"
    assert ensure_keys(directory, "ES256") is None
    assert [k.kid for k in list_keys(directory)] == [created.kid]


def test_list_keys_order(ring_dir):
    assert list_keys(ring_dir.parent / "missing") == []
    first = list_keys(ring_dir)
    assert [k.status for k in first] == ["active", "next"]
    rotate_keys(ring_dir, retire_for=10_000, now=2000)
    rotate_keys(ring_dir, retire_for=10_000, now=3000)
    keys = list_keys(ring_dir)
    assert [k.status for k in keys] == ["active", "next", "retired", "retired"]
    assert [k.retired_at for k in keys] == [None, None, 3000, 2000]
    assert keys[3].kid == first[0].kid


# ------------------------------------------------------------------ JWKS


def test_jwks_has_active_and_next_and_only_public_members(ring_dir):
    active, pending = list_keys(ring_dir)
    ring = KeyRing.load(ring_dir, retire_for=RETIRE_FOR)
    assert ring.kid == active.kid
    assert ring.alg == "RS256"

    jwks = ring.jwks()
    assert set(jwks) == {"keys"}
    by_kid = {k["kid"]: k for k in jwks["keys"]}
    assert set(by_kid) == {active.kid, pending.kid}
    assert set(by_kid[active.kid]) == {"kty", "kid", "use", "alg", "n", "e"}
    assert set(by_kid[pending.kid]) == {"kty", "kid", "use", "alg", "crv", "x", "y"}
    for key in jwks["keys"]:
        assert not PRIVATE_MEMBERS & set(key)
        assert not {"status", "created_at", "retired_at"} & set(key)
        assert key["use"] == "sig"
    assert by_kid[active.kid]["alg"] == "RS256"
    assert by_kid[pending.kid]["alg"] == "ES256"
    # the public parameters are those of the stored private key
    stored = read_file(active)
    assert (by_kid[active.kid]["n"], by_kid[active.kid]["e"]) == (stored["n"], stored["e"])
    # callers cannot corrupt the cached JWKS
    jwks["keys"][0]["d"] = "oops"
    assert "d" not in ring.jwks()["keys"][0]


def test_public_key(ring_dir):
    active, pending = list_keys(ring_dir)
    ring = KeyRing.load(ring_dir, retire_for=RETIRE_FOR)
    for info in (active, pending):
        key = ring.public_key(info.kid)
        assert key is not None
        assert not key.is_private
        assert key.kid == info.kid
    assert ring.public_key("nope") is None
    assert ring.signing_key().is_private
    assert ring.signing_key().kid == active.kid


# ------------------------------------------------------------------ rotation


def test_rotation_lifecycle(ring_dir):
    old_active, old_next = list_keys(ring_dir)
    clock = Clock(1500)
    before = KeyRing.load(ring_dir, retire_for=RETIRE_FOR, now=clock)
    old_token = before.sign_jwt({"sub": "alice"})

    retired, active, new_next = rotate_keys(ring_dir, retire_for=RETIRE_FOR, now=2000)
    assert (retired.kid, retired.status, retired.retired_at) == (old_active.kid, "retired", 2000)
    assert (active.kid, active.status) == (old_next.kid, "active")
    assert new_next.status == "next"
    assert new_next.alg == "ES256"  # defaults to the new active key's alg
    assert new_next.kid not in {old_active.kid, old_next.kid}
    assert read_file(retired)["status"] == "retired"
    assert read_file(retired)["retired_at"] == 2000
    assert read_file(active)["status"] == "active"
    assert "retired_at" not in read_file(active)
    assert [(k.kid, k.status) for k in list_keys(ring_dir)] == [
        (active.kid, "active"),
        (new_next.kid, "next"),
        (retired.kid, "retired"),
    ]

    clock.t = 2000
    ring = KeyRing.load(ring_dir, retire_for=RETIRE_FOR, now=clock)
    assert ring.kid == active.kid
    assert ring.alg == "ES256"
    kids = {k["kid"] for k in ring.jwks()["keys"]}
    assert kids == {active.kid, new_next.kid, retired.kid}
    # tokens signed by the retired key still verify while it is published
    assert ring.verify_jwt(old_token)[1] == {"sub": "alice"}
    assert ring.public_key(retired.kid) is not None

    clock.t = 2000 + RETIRE_FOR - 1
    assert retired.kid in {k["kid"] for k in ring.jwks()["keys"]}

    clock.t = 2000 + RETIRE_FOR  # the same ring: its cached JWKS must expire the key
    assert {k["kid"] for k in ring.jwks()["keys"]} == {active.kid, new_next.kid}
    assert ring.public_key(retired.kid) is None
    with pytest.raises(TokenVerificationError):
        ring.verify_jwt(old_token)

    # still on disk until a rotation finds it expired
    assert retired.path.exists()
    rotate_keys(ring_dir, retire_for=RETIRE_FOR, now=2000 + RETIRE_FOR)
    assert retired.path.exists()  # retired_at + retire_for == now: not yet deleted
    second_retired, _, _ = rotate_keys(ring_dir, retire_for=RETIRE_FOR, now=2000 + RETIRE_FOR + 1)
    assert not retired.path.exists()
    assert second_retired.path.exists()
    assert retired.kid not in {k.kid for k in list_keys(ring_dir)}


def test_rotate_without_next_generates_active_and_next(tmp_path):
    only = generate_key(tmp_path, "ES256", now=10)
    retired, active, new_next = rotate_keys(tmp_path, retire_for=RETIRE_FOR, now=20)
    assert retired.kid == only.kid
    assert active.status == "active"
    assert active.alg == "ES256"
    assert active.kid != only.kid
    assert new_next.status == "next"
    assert len({only.kid, active.kid, new_next.kid}) == 3
    assert [k.kid for k in list_keys(tmp_path)] == [active.kid, new_next.kid, only.kid]


def test_rotate_alg_override_applies_to_fresh_next(ring_dir):
    _, active, new_next = rotate_keys(ring_dir, retire_for=RETIRE_FOR, alg="RS256", now=2000)
    assert active.alg == "ES256"  # the published next key keeps its alg
    assert new_next.alg == "RS256"


# ------------------------------------------------------------------ signing


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_sign_jwt_verifies_with_jwcrypto(tmp_path, alg):
    generate_key(tmp_path, alg)
    ring = KeyRing.load(tmp_path, retire_for=RETIRE_FOR)
    claims = {"iss": "https://idp.example", "sub": "alice", "aud": "rp", "exp": 4102444800}
    token = ring.sign_jwt(claims, typ="JWT")

    keyset = jc_jwk.JWKSet.from_json(json.dumps(ring.jwks()))
    verified = jc_jwt.JWT(jwt=token, key=keyset, algs=[alg], expected_type="JWS")
    assert json.loads(verified.claims) == claims
    header = json.loads(verified.header)
    assert header == {"alg": alg, "kid": ring.kid, "typ": "JWT"}

    # the JWKS alone verifies: a different ring's keys do not
    other = tmp_path / "other"
    generate_key(other, alg)
    other_set = jc_jwk.JWKSet.from_json(json.dumps(KeyRing.load(other, retire_for=1).jwks()))
    with pytest.raises(Exception):  # noqa: B017 - jwcrypto raises several types
        jc_jwt.JWT(jwt=token, key=other_set, algs=[alg])


def test_sign_jwt_header_without_typ(ring_dir):
    ring = KeyRing.load(ring_dir, retire_for=RETIRE_FOR)
    token = ring.sign_jwt({"sub": "alice"})
    header = json.loads(unb64(token.split(".")[0]))
    assert header == {"alg": "RS256", "kid": ring.kid}
    assert ring.verify_jwt(token) == (header, {"sub": "alice"})


def test_sign_and_verify_do_not_reimport_keys(ring_dir, monkeypatch):
    from joserfc import jwk as joserfc_jwk

    ring = KeyRing.load(ring_dir, retire_for=RETIRE_FOR)

    def forbidden(*args, **kwargs):
        raise AssertionError("key imported after load")

    monkeypatch.setattr(joserfc_jwk.JWKRegistry, "import_key", forbidden)
    monkeypatch.setattr(joserfc_jwk.RSAKey, "import_key", forbidden)
    monkeypatch.setattr(joserfc_jwk.ECKey, "import_key", forbidden)
    token = ring.sign_jwt({"sub": "alice"})
    assert ring.verify_jwt(token)[1] == {"sub": "alice"}
    ring.jwks()


def test_sign_jwt_does_not_mutate_claims(ring_dir):
    import datetime

    ring = KeyRing.load(ring_dir, retire_for=RETIRE_FOR)
    exp = datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC)
    claims = {"sub": "alice", "exp": exp}
    token = ring.sign_jwt(claims)
    assert claims["exp"] is exp
    assert ring.verify_jwt(token)[1]["exp"] == 4102444800


# ------------------------------------------------------------------ verification


@pytest.fixture
def ring(ring_dir):
    return KeyRing.load(ring_dir, retire_for=RETIRE_FOR)


def test_verify_accepts_valid_token_and_typ(ring):
    token = ring.sign_jwt({"sub": "alice"}, typ="at+jwt")
    header, claims = ring.verify_jwt(token, typ="at+jwt")
    assert header == {"alg": "RS256", "kid": ring.kid, "typ": "at+jwt"}
    assert claims == {"sub": "alice"}
    # without a typ requirement any typ is fine
    assert ring.verify_jwt(token)[1] == {"sub": "alice"}


def test_verify_rejects_tampered_payload(ring):
    token = ring.sign_jwt({"sub": "alice", "admin": False})
    header, _, signature = token.split(".")
    forged = f"{header}.{b64json({'sub': 'alice', 'admin': True})}.{signature}"
    with pytest.raises(TokenVerificationError):
        ring.verify_jwt(forged)
    # and a flipped signature byte
    sig = bytearray(unb64(signature))
    sig[-1] ^= 1
    with pytest.raises(TokenVerificationError):
        ring.verify_jwt(f"{header}.{token.split('.')[1]}.{b64(bytes(sig))}")


def test_verify_rejects_unknown_kid(ring):
    token = ring.sign_jwt({"sub": "alice"})
    _, payload, signature = token.split(".")
    for header in (
        {"alg": "RS256", "kid": "unknown"},
        {"alg": "RS256"},
        {"alg": "RS256", "kid": 5},
        {"alg": "RS256", "kid": [ring.kid]},
    ):
        with pytest.raises(TokenVerificationError):
            ring.verify_jwt(f"{b64json(header)}.{payload}.{signature}")


def test_verify_rejects_alg_none(ring):
    claims = b64json({"sub": "alice"})
    for alg in ("none", "None", "NONE"):
        header = b64json({"alg": alg, "kid": ring.kid, "typ": "JWT"})
        with pytest.raises(TokenVerificationError):
            ring.verify_jwt(f"{header}.{claims}.")
        with pytest.raises(TokenVerificationError):
            ring.verify_jwt(f"{header}.{claims}.", typ="JWT")


def test_verify_rejects_hs256_signed_with_public_key(ring):
    public = ring.public_key(ring.kid)
    secrets = [
        public.as_pem(),
        json.dumps(ring.jwks()["keys"][0]).encode(),
        unb64(ring.jwks()["keys"][0]["n"]),
    ]
    for secret in secrets:
        header = b64json({"alg": "HS256", "kid": ring.kid, "typ": "JWT"})
        payload = b64json({"sub": "alice"})
        mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        with pytest.raises(TokenVerificationError):
            ring.verify_jwt(f"{header}.{payload}.{b64(mac)}")


def test_verify_rejects_alg_not_matching_key(ring_dir):
    """A token for the ES256 (next) key cannot claim RS256, and vice versa."""
    ring = KeyRing.load(ring_dir, retire_for=RETIRE_FOR)
    es_kid = list_keys(ring_dir)[1].kid
    token = ring.sign_jwt({"sub": "alice"})  # RS256 signature
    _, payload, signature = token.split(".")
    header = b64json({"alg": "RS256", "kid": es_kid})
    with pytest.raises(TokenVerificationError, match="does not match"):
        ring.verify_jwt(f"{header}.{payload}.{signature}")


def test_verify_rejects_typ_mismatch(ring):
    token = ring.sign_jwt({"sub": "alice"}, typ="JWT")
    with pytest.raises(TokenVerificationError, match="typ"):
        ring.verify_jwt(token, typ="at+jwt")
    untyped = ring.sign_jwt({"sub": "alice"})
    with pytest.raises(TokenVerificationError, match="typ"):
        ring.verify_jwt(untyped, typ="JWT")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "!!!.!!!.!!!",
        "é.é.é",
        f"{b64(b'not json')}.{b64json({'sub': 'x'})}.AAAA",
        f"{b64json({'alg': 'RS256'})[:-2]}.x.y",
    ],
)
def test_verify_rejects_malformed(ring, token):
    with pytest.raises(TokenVerificationError):
        ring.verify_jwt(token)


def test_verify_rejects_non_object_payload(ring):
    """Even correctly signed, a payload must be a JSON object (checked with a real key)."""
    from joserfc import jws

    header = {"alg": "RS256", "kid": ring.kid}
    token = jws.serialize_compact(header, b"[1,2]", ring.signing_key())
    with pytest.raises(TokenVerificationError, match="object"):
        ring.verify_jwt(token)


def test_verify_rejects_unencoded_payload_extension(ring):
    """RFC 7797 "b64": false changes what the signature covers; we never issue it."""
    from joserfc import jws

    header = {"alg": "RS256", "kid": ring.kid, "b64": False, "crit": ["b64"]}
    # RFC 7797 payloads must be URL-safe characters, so the signature itself is valid here
    token = jws.serialize_compact(header, b"123", ring.signing_key())
    assert token.split(".")[1] == "123"
    with pytest.raises(TokenVerificationError, match="b64"):
        ring.verify_jwt(token)


# ------------------------------------------------------------------ loading


def test_load_empty_dir(tmp_path):
    with pytest.raises(KeyRingError, match="no active"):
        KeyRing.load(tmp_path, retire_for=RETIRE_FOR)


def test_load_missing_dir(tmp_path):
    with pytest.raises(KeyRingError):
        KeyRing.load(tmp_path / "missing", retire_for=RETIRE_FOR)


def test_load_without_active_key(ring_dir):
    active = list_keys(ring_dir)[0]
    active.path.unlink()
    with pytest.raises(KeyRingError, match="no active"):
        KeyRing.load(ring_dir, retire_for=RETIRE_FOR)


def test_load_corrupt_file_names_it(ring_dir):
    bad = ring_dir / "broken.json"
    bad.write_text('{"kty": "RSA", ')
    bad.chmod(0o600)
    with pytest.raises(KeyRingError, match="broken.json"):
        KeyRing.load(ring_dir, retire_for=RETIRE_FOR)
    with pytest.raises(KeyRingError, match="broken.json"):
        list_keys(ring_dir)


def test_load_rejects_public_only_key(ring_dir):
    pending = list_keys(ring_dir)[1]
    data = read_file(pending)
    del data["d"]
    pending.path.write_text(json.dumps(data))
    with pytest.raises(KeyRingError, match=pending.path.name):
        KeyRing.load(ring_dir, retire_for=RETIRE_FOR)


@pytest.mark.parametrize(
    "change",
    [
        {"status": "bogus"},
        {"alg": "HS256"},
        {"alg": "ES256"},  # an RSA key claiming ES256
        {"created_at": "yesterday"},
        {"kid": "not-the-thumbprint"},
    ],
)
def test_load_rejects_invalid_members(ring_dir, change):
    active = list_keys(ring_dir)[0]
    data = read_file(active) | change
    active.path.write_text(json.dumps(data))
    with pytest.raises(KeyRingError, match=active.path.name):
        KeyRing.load(ring_dir, retire_for=RETIRE_FOR)


def test_load_rejects_two_active_keys(ring_dir):
    pending = list_keys(ring_dir)[1]
    pending.path.write_text(json.dumps(read_file(pending) | {"status": "active"}))
    with pytest.raises(KeyRingError, match="more than one"):
        KeyRing.load(ring_dir, retire_for=RETIRE_FOR)


def test_load_warns_on_readable_key_file(ring_dir, caplog):
    active = list_keys(ring_dir)[0]
    with caplog.at_level(logging.WARNING, logger="idp.keys"):
        KeyRing.load(ring_dir, retire_for=RETIRE_FOR)
    assert not caplog.records

    active.path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="idp.keys"):
        KeyRing.load(ring_dir, retire_for=RETIRE_FOR)
    assert [r.name for r in caplog.records] == ["idp.keys"]
    assert active.path.name in caplog.records[0].getMessage()


def test_load_ignores_non_key_files(ring_dir):
    (ring_dir / "README.md").write_text("# keys\n")
    (ring_dir / ".abc.json.123.tmp").write_text("garbage")  # our temp files
    (ring_dir / "._resource-fork.json").write_text("garbage")  # hidden files
    ring = KeyRing.load(ring_dir, retire_for=RETIRE_FOR)
    assert len(ring.jwks()["keys"]) == 2


# -- the shared ring: followed without restarts (idp/keys/shared.py) ---------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _SharedStore(MemoryStore):
    shared = True  # stands in for Redis: one generation every process reads


def _shared_ring(directory, store, clock):
    from idp.keys.shared import SharedKeyRing

    return SharedKeyRing(
        directory, lambda: KeyRing.load(directory, retire_for=RETIRE_FOR), store, clock=clock
    )


def test_shared_ring_follows_an_announced_rotation_within_the_check_interval(ring_dir):
    from idp.keys.shared import CHECK_INTERVAL, announce_change

    store, clock = _SharedStore(), _Clock()
    ring = _shared_ring(ring_dir, store, clock)
    old, nxt = ring.kid, list_keys(ring_dir)[1].kid
    rotate_keys(ring_dir, retire_for=RETIRE_FOR)
    assert announce_change(store)
    assert ring.kid == old  # not yet: the generation is read at most once per interval
    clock.now += CHECK_INTERVAL
    assert ring.kid == nxt
    token = ring.sign_jwt({"sub": "x"})
    header, _ = ring.verify_jwt(token)
    assert header["kid"] == nxt and nxt in {k["kid"] for k in ring.jwks()["keys"]}
    assert old in {k["kid"] for k in ring.jwks()["keys"]}  # retired, still published


def test_shared_ring_without_a_shared_store_rescans_the_directory(ring_dir):
    from idp.keys.shared import CHECK_INTERVAL, RESCAN_INTERVAL

    clock = _Clock()
    ring = _shared_ring(ring_dir, MemoryStore(), clock)  # no generation to read
    old = ring.kid
    _, active, _ = rotate_keys(ring_dir, retire_for=RETIRE_FOR)
    clock.now += CHECK_INTERVAL
    assert ring.kid == old
    clock.now += RESCAN_INTERVAL
    assert ring.kid == active.kid  # bounded by the rescan interval
    reloads = ring.reloads
    clock.now += RESCAN_INTERVAL
    assert ring.kid == active.kid and ring.reloads == reloads  # unchanged files: no reload


def test_shared_ring_keeps_signing_when_a_reload_fails(ring_dir, caplog):
    from idp.keys.shared import RESCAN_INTERVAL

    clock = _Clock()
    ring = _shared_ring(ring_dir, MemoryStore(), clock)
    old = ring.kid
    bad = ring_dir / "broken.json"
    bad.write_text("{not json")
    clock.now += RESCAN_INTERVAL
    assert ring.kid == old  # still the loaded ring
    assert "not reloaded" in caplog.text
    bad.unlink()
    _, active, _ = rotate_keys(ring_dir, retire_for=RETIRE_FOR)
    clock.now += RESCAN_INTERVAL
    assert ring.kid == active.kid  # the next check recovers
