"""WebAuthn ceremonies against a software authenticator built without py_webauthn."""

from __future__ import annotations

import base64
import hashlib
import json

import cbor2
import pytest

from idp.mfa.webauthn import core as wa
from tests.softauthn import EDDSA, ES256, RS256, AuthenticatorError, SoftAuthenticator

RP_ID = "id.example.com"
ORIGIN = "https://id.example.com"
RP = wa.RelyingParty(rp_id=RP_ID, rp_name="Example ID", origins=(ORIGIN,), timeout_ms=90000)
USER = b"\x01" * 32
SAFE = "This security key response could not be verified."


def auth(alg: int = ES256, **kw) -> SoftAuthenticator:
    return SoftAuthenticator(alg, RP_ID, ORIGIN, **kw)


def register(a: SoftAuthenticator, exclude=()) -> wa.NewCredential:
    options, challenge = wa.registration_options(
        RP, user_handle=USER, user_name="ada@example.com", display_name="Ada", exclude=exclude
    )
    return wa.verify_registration(RP, response=a.create(options), challenge=challenge)


def stored(new: wa.NewCredential, sign_count: int | None = None) -> wa.StoredCredential:
    return wa.StoredCredential(
        credential_id=new.credential_id,
        public_key=new.public_key,
        sign_count=new.sign_count if sign_count is None else sign_count,
        transports=new.transports,
    )


def login(a: SoftAuthenticator, cred: wa.StoredCredential, **get_kw) -> wa.Assertion:
    options, challenge = wa.authentication_options(RP, allow=[cred])
    response = a.get(options, **get_kw)
    return wa.verify_authentication(RP, response=response, challenge=challenge, credential=cred)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- round trips --------------------------------------------------------------------


@pytest.mark.parametrize("alg", [ES256, EDDSA, RS256], ids=["ES256", "EdDSA", "RS256"])
def test_register_then_authenticate_round_trip(alg):
    a = auth(alg)
    new = register(a)
    assert new.credential_id == a.credential_id
    assert new.public_key == a.cose_key()
    assert new.alg == alg
    assert new.sign_count == 0
    assert new.aaguid == "00000000-0000-0000-0000-000000000000"
    assert new.transports == ("internal",)

    cred = stored(new)
    first = login(a, cred)
    assert first.credential_id == a.credential_id
    assert first.new_sign_count == 1
    second = login(a, stored(new, first.new_sign_count))
    assert second.new_sign_count == 2


def test_response_may_be_a_json_string():
    a = auth()
    options, challenge = wa.registration_options(
        RP, user_handle=USER, user_name="ada", display_name="Ada", exclude=()
    )
    new = wa.verify_registration(RP, response=json.dumps(a.create(options)), challenge=challenge)
    options, challenge = wa.authentication_options(RP, allow=[stored(new)])
    got = wa.verify_authentication(
        RP, response=json.dumps(a.get(options)), challenge=challenge, credential=stored(new)
    )
    assert got.new_sign_count == 1


def test_aaguid_is_reported():
    a = auth(aaguid=bytes.fromhex("ee882879721c491397753dfcce97072a"))
    assert register(a).aaguid == "ee882879-721c-4913-9775-3dfcce97072a"


def test_second_origin_is_accepted():
    rp = wa.RelyingParty(RP_ID, "Example ID", ("https://other.example.com", ORIGIN))
    a = auth()
    options, challenge = wa.registration_options(
        rp, user_handle=USER, user_name="ada", display_name="Ada", exclude=()
    )
    assert wa.verify_registration(rp, response=a.create(options), challenge=challenge)


# --- options --------------------------------------------------------------------------


def test_registration_options_policy():
    options, challenge = wa.registration_options(
        RP, user_handle=USER, user_name="ada@example.com", display_name="Ada Lovelace", exclude=()
    )
    o = json.loads(options)
    assert o["rp"] == {"id": RP_ID, "name": "Example ID"}
    assert o["user"] == {"id": b64(USER), "name": "ada@example.com", "displayName": "Ada Lovelace"}
    # A passkey where the authenticator can keep one; a plain security key still registers.
    assert o["authenticatorSelection"]["residentKey"] == "preferred"
    assert o["authenticatorSelection"]["userVerification"] == "required"
    assert o["authenticatorSelection"].get("requireResidentKey", False) is False
    assert o["extensions"] == {"credProps": True}
    assert o["attestation"] == "none"
    assert [p["alg"] for p in o["pubKeyCredParams"]] == [-7, -8, -257]
    assert {p["type"] for p in o["pubKeyCredParams"]} == {"public-key"}
    assert o["timeout"] == 90000
    assert o["excludeCredentials"] == []
    assert len(challenge) == 32
    assert wa.b64url_decode(o["challenge"]) == challenge


def test_challenges_are_fresh():
    def one():
        return wa.registration_options(
            RP, user_handle=USER, user_name="a", display_name="A", exclude=()
        )[1]

    assert one() != one()
    assert wa.authentication_options(RP, allow=())[1] != wa.authentication_options(RP, allow=())[1]


def test_exclude_credentials_are_listed_with_transports_and_refused_by_the_authenticator():
    a = auth()
    cred = stored(register(a))
    other = wa.StoredCredential(b"\x07" * 16, b"k", 0, ("usb", "nfc", "some-future-transport"))
    options, _ = wa.registration_options(
        RP, user_handle=USER, user_name="ada", display_name="Ada", exclude=[cred, other]
    )
    excluded = json.loads(options)["excludeCredentials"]
    assert excluded == [
        {"id": b64(a.credential_id), "type": "public-key", "transports": ["internal"]},
        {"id": b64(b"\x07" * 16), "type": "public-key", "transports": ["usb", "nfc"]},
    ]
    with pytest.raises(AuthenticatorError) as exc:
        a.create(options)
    assert exc.value.name == "InvalidStateError"


def test_authentication_options_list_allowed_credentials():
    cred = wa.StoredCredential(b"\x09" * 20, b"k", 3, ("hybrid", "internal"))
    options, challenge = wa.authentication_options(RP, allow=[cred], user_verification="required")
    o = json.loads(options)
    assert o["rpId"] == RP_ID
    assert o["userVerification"] == "required"
    assert o["timeout"] == 90000
    assert o["allowCredentials"] == [
        {"id": b64(b"\x09" * 20), "type": "public-key", "transports": ["hybrid", "internal"]}
    ]
    assert len(challenge) == 32
    assert wa.b64url_decode(o["challenge"]) == challenge
    assert json.loads(wa.authentication_options(RP, allow=())[0])["userVerification"] == (
        "preferred"
    )
    assert o["extensions"] == {"uvm": True}


def test_discoverable_request_has_an_empty_allow_list():
    o = json.loads(wa.authentication_options(RP, allow=(), user_verification="required")[0])
    assert o["allowCredentials"] == [] and o["userVerification"] == "required"


def test_user_handle_must_be_1_to_64_bytes():
    for bad in (b"", b"x" * 65):
        with pytest.raises(ValueError):
            wa.registration_options(
                RP, user_handle=bad, user_name="a", display_name="A", exclude=()
            )


# --- bad registration responses ---------------------------------------------------------


def _reg(a: SoftAuthenticator, **create_kw):
    options, challenge = wa.registration_options(
        RP, user_handle=USER, user_name="ada", display_name="Ada", exclude=()
    )
    return a.create(options, **create_kw), challenge


@pytest.mark.parametrize(
    "forge",
    [
        {"origin": "https://evil.example.net"},
        {"origin": "http://id.example.com"},
        {"rp_id": "example.com"},
        {"challenge": b"\x00" * 32},
    ],
    ids=["origin", "scheme", "rp_id", "challenge"],
)
def test_registration_rejects_forged_context(forge):
    response, challenge = _reg(auth(), **forge)
    with pytest.raises(wa.WebAuthnError) as exc:
        wa.verify_registration(RP, response=response, challenge=challenge)
    assert str(exc.value) == SAFE
    assert exc.value.reason


def test_registration_requires_user_presence():
    response, challenge = _reg(auth())
    att = cbor2.loads(wa.b64url_decode(response["response"]["attestationObject"]))
    auth_data = bytearray(att["authData"])
    auth_data[32] &= ~0x01  # clear UP
    att["authData"] = bytes(auth_data)
    response["response"]["attestationObject"] = b64(cbor2.dumps(att))
    with pytest.raises(wa.WebAuthnError, match=SAFE):
        wa.verify_registration(RP, response=response, challenge=challenge)


def test_registration_rejects_authentication_response():
    a = auth()
    new = register(a)
    options, challenge = wa.authentication_options(RP, allow=[stored(new)])
    with pytest.raises(wa.WebAuthnError):
        wa.verify_registration(RP, response=a.get(options), challenge=challenge)


def test_registration_rejects_raw_id_not_matching_attested_id():
    response, challenge = _reg(auth())
    response["id"] = response["rawId"] = b64(b"\x05" * 32)
    with pytest.raises(wa.WebAuthnError):
        wa.verify_registration(RP, response=response, challenge=challenge)


@pytest.mark.parametrize(
    "path",
    [
        ("id",),
        ("rawId",),
        ("type",),
        ("response",),
        ("response", "clientDataJSON"),
        ("response", "attestationObject"),
    ],
)
def test_registration_rejects_missing_fields(path):
    response, challenge = _reg(auth())
    wa.verify_registration(RP, response=json.loads(json.dumps(response)), challenge=challenge)
    target = response
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    with pytest.raises(wa.WebAuthnError):
        wa.verify_registration(RP, response=response, challenge=challenge)


@pytest.mark.parametrize(
    "bad", ["", "{not json", "[]", "null", "42", '"x"', b"\xff", {"id": 1}, {}, None]
)
def test_registration_rejects_malformed_json(bad):
    with pytest.raises(wa.WebAuthnError):
        wa.verify_registration(RP, response=bad, challenge=b"\0" * 32)


@pytest.mark.parametrize(
    "field, value",
    [
        ("clientDataJSON", "!!!"),
        ("clientDataJSON", b64(b"not json")),
        ("clientDataJSON", b64(b'{"type":"webauthn.create"}')),
        ("attestationObject", b64(b"\xa1")),
        ("attestationObject", b64(cbor2.dumps({"fmt": "none"}))),
        ("attestationObject", b64(cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": b""}))),
    ],
)
def test_registration_rejects_garbage_in_fields(field, value):
    response, challenge = _reg(auth())
    response["response"][field] = value
    with pytest.raises(wa.WebAuthnError):
        wa.verify_registration(RP, response=response, challenge=challenge)


# --- bad authentication responses -------------------------------------------------------


@pytest.fixture
def enrolled():
    a = auth()
    return a, stored(register(a))


def _assert(a, cred, **get_kw):
    options, challenge = wa.authentication_options(RP, allow=[cred])
    return a.get(options, **get_kw), challenge


@pytest.mark.parametrize(
    "forge",
    [
        {"origin": "https://evil.example.net"},
        {"origin": "https://id.example.com:8443"},
        {"rp_id": "evil.example.net"},
        {"challenge": b"\x00" * 32},
    ],
    ids=["origin", "port", "rp_id", "challenge"],
)
def test_authentication_rejects_forged_context(enrolled, forge):
    a, cred = enrolled
    response, challenge = _assert(a, cred, **forge)
    with pytest.raises(wa.WebAuthnError) as exc:
        wa.verify_authentication(RP, response=response, challenge=challenge, credential=cred)
    assert type(exc.value) is wa.WebAuthnError
    assert str(exc.value) == SAFE


def test_authentication_rejects_a_replayed_response_for_a_new_challenge(enrolled):
    a, cred = enrolled
    response, _ = _assert(a, cred)
    _, fresh = wa.authentication_options(RP, allow=[cred])
    with pytest.raises(wa.WebAuthnError):
        wa.verify_authentication(RP, response=response, challenge=fresh, credential=cred)


@pytest.mark.parametrize("alg", [ES256, EDDSA, RS256], ids=["ES256", "EdDSA", "RS256"])
def test_authentication_rejects_tampered_signature(alg):
    a = auth(alg)
    cred = stored(register(a))
    response, challenge = _assert(a, cred)
    sig = bytearray(wa.b64url_decode(response["response"]["signature"]))
    sig[len(sig) // 2] ^= 0x01
    response["response"]["signature"] = b64(bytes(sig))
    with pytest.raises(wa.WebAuthnError):
        wa.verify_authentication(RP, response=response, challenge=challenge, credential=cred)


def test_authentication_rejects_tampered_authenticator_data(enrolled):
    a, cred = enrolled
    response, challenge = _assert(a, cred)
    data = bytearray(wa.b64url_decode(response["response"]["authenticatorData"]))
    data[36] ^= 0x40  # sign count low byte: still parses, no longer signed
    response["response"]["authenticatorData"] = b64(bytes(data))
    with pytest.raises(wa.WebAuthnError):
        wa.verify_authentication(RP, response=response, challenge=challenge, credential=cred)


def test_authentication_rejects_signature_by_another_key(enrolled):
    a, cred = enrolled
    other = auth()
    other.credential_id = a.credential_id  # same id, different private key
    other.user_handle = USER
    response, challenge = _assert(other, cred)
    with pytest.raises(wa.WebAuthnError):
        wa.verify_authentication(RP, response=response, challenge=challenge, credential=cred)


def test_authentication_rejects_credential_id_mismatch(enrolled):
    a, cred = enrolled
    b = auth()
    cred_b = stored(register(b))
    response, challenge = _assert(a, cred)
    # Response from credential A checked against stored credential B.
    with pytest.raises(wa.WebAuthnError, match=SAFE) as exc:
        wa.verify_authentication(RP, response=response, challenge=challenge, credential=cred_b)
    assert "different credential" in exc.value.reason
    # Response relabelled with B's id (id and rawId agree) but signed by A.
    response["id"] = response["rawId"] = b64(b.credential_id)
    with pytest.raises(wa.WebAuthnError):
        wa.verify_authentication(RP, response=response, challenge=challenge, credential=cred_b)


def test_authentication_rejects_id_differing_from_raw_id(enrolled):
    a, cred = enrolled
    response, challenge = _assert(a, cred)
    response["id"] = b64(b"\x08" * 32)
    with pytest.raises(wa.WebAuthnError):
        wa.verify_authentication(RP, response=response, challenge=challenge, credential=cred)


@pytest.mark.parametrize(
    "path",
    [
        ("id",),
        ("rawId",),
        ("type",),
        ("response",),
        ("response", "clientDataJSON"),
        ("response", "authenticatorData"),
        ("response", "signature"),
    ],
)
def test_authentication_rejects_missing_fields(enrolled, path):
    a, cred = enrolled
    response, challenge = _assert(a, cred, sign_count_step=0)
    wa.verify_authentication(
        RP, response=json.loads(json.dumps(response)), challenge=challenge, credential=cred
    )
    target = response
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    with pytest.raises(wa.WebAuthnError):
        wa.verify_authentication(RP, response=response, challenge=challenge, credential=cred)


@pytest.mark.parametrize(
    "bad", ["", "{not json", "[]", "null", "42", b"\xff", {"rawId": 5}, {}, None]
)
def test_authentication_rejects_malformed_json(enrolled, bad):
    _, cred = enrolled
    with pytest.raises(wa.WebAuthnError):
        wa.verify_authentication(RP, response=bad, challenge=b"\0" * 32, credential=cred)


@pytest.mark.parametrize(
    "field, value",
    [
        ("clientDataJSON", "***"),
        ("clientDataJSON", b64(b'{"type":"webauthn.get","origin":"' + ORIGIN.encode() + b'"}')),
        ("authenticatorData", b64(b"\x00" * 10)),
        ("signature", "#"),
        ("userHandle", 7),
    ],
)
def test_authentication_rejects_garbage_in_fields(enrolled, field, value):
    a, cred = enrolled
    response, challenge = _assert(a, cred)
    response["response"][field] = value
    with pytest.raises(wa.WebAuthnError):
        wa.verify_authentication(RP, response=response, challenge=challenge, credential=cred)


def test_authentication_rejects_cross_origin_client_data(enrolled):
    a, cred = enrolled
    response, challenge = _assert(a, cred)
    client_data = json.loads(wa.b64url_decode(response["response"]["clientDataJSON"]))
    client_data["crossOrigin"] = True
    raw = json.dumps(client_data).encode()
    # Re-sign so only crossOrigin is wrong.
    auth_data = wa.b64url_decode(response["response"]["authenticatorData"])
    response["response"]["clientDataJSON"] = b64(raw)
    response["response"]["signature"] = b64(a._sign(auth_data + hashlib.sha256(raw).digest()))
    with pytest.raises(wa.WebAuthnError) as exc:
        wa.verify_authentication(RP, response=response, challenge=challenge, credential=cred)
    assert "crossOrigin" in exc.value.reason


def test_authentication_rejects_registration_response(enrolled):
    a, cred = enrolled
    response, challenge = _reg(a)
    with pytest.raises(wa.WebAuthnError):
        wa.verify_authentication(RP, response=response, challenge=challenge, credential=cred)


# --- credential_id_of ---------------------------------------------------------------------


def test_credential_id_of(enrolled):
    a, cred = enrolled
    response, _ = _assert(a, cred)
    assert wa.credential_id_of(response) == a.credential_id
    assert wa.credential_id_of(json.dumps(response)) == a.credential_id


@pytest.mark.parametrize(
    "bad",
    [
        "{",
        "[]",
        None,
        {},
        {"rawId": "AAAA"},
        {"id": "AAAA"},
        {"id": "AAAA", "rawId": "AAAB"},
        {"id": "", "rawId": ""},
        {"id": "A", "rawId": "A"},
        {"id": "AA+/", "rawId": "AA+/"},
        {"id": "AA AA", "rawId": "AA AA"},
        {"id": 1, "rawId": 1},
    ],
)
def test_credential_id_of_rejects_malformed(bad):
    with pytest.raises(wa.WebAuthnError):
        wa.credential_id_of(bad)


# --- sign counter ---------------------------------------------------------------------------


def test_sign_count_regression_is_a_possible_clone(enrolled):
    a, cred = enrolled
    a.set_sign_count(3)
    with pytest.raises(wa.PossibleClone) as exc:
        login(a, stored_with(cred, 10))  # authenticator says 4
    assert exc.value.stored_sign_count == 10
    assert exc.value.new_sign_count == 4
    assert isinstance(exc.value, wa.WebAuthnError)
    assert str(exc.value) != SAFE and "support" in str(exc.value)


def test_sign_count_that_does_not_advance_is_a_possible_clone(enrolled):
    a, cred = enrolled
    a.set_sign_count(5)
    with pytest.raises(wa.PossibleClone):
        login(a, stored_with(cred, 5), sign_count_step=0)


def test_sign_count_dropping_to_zero_is_a_possible_clone(enrolled):
    # WebAuthn L2 7.2 step 21: either counter non-zero and new <= stored.
    a, cred = enrolled
    with pytest.raises(wa.PossibleClone):
        login(a, stored_with(cred, 5), sign_count_step=0)


def test_possible_clone_is_only_raised_for_a_valid_signature(enrolled):
    a, cred = enrolled
    response, challenge = _assert(a, cred)  # counter 1
    sig = bytearray(wa.b64url_decode(response["response"]["signature"]))
    sig[-1] ^= 0xFF
    response["response"]["signature"] = b64(bytes(sig))
    with pytest.raises(wa.WebAuthnError) as exc:
        wa.verify_authentication(
            RP, response=response, challenge=challenge, credential=stored_with(cred, 9)
        )
    assert type(exc.value) is wa.WebAuthnError


def test_counters_that_stay_zero_are_accepted(enrolled):
    a, cred = enrolled
    assert cred.sign_count == 0
    for _ in range(3):
        got = login(a, cred, sign_count_step=0)
        assert got.new_sign_count == 0


def test_counter_may_jump_forward(enrolled):
    a, cred = enrolled
    assert login(a, stored_with(cred, 7), sign_count_step=100).new_sign_count == 100


def stored_with(cred: wa.StoredCredential, count: int) -> wa.StoredCredential:
    return wa.StoredCredential(cred.credential_id, cred.public_key, count, cred.transports)


# --- flags ----------------------------------------------------------------------------------


@pytest.mark.parametrize("uv", [True, False])
def test_user_verified_is_reported(uv):
    a = auth(user_verified=uv)
    new = register(a)  # UV is not required to register
    assert new.user_verified is uv
    assert login(a, stored(new)).user_verified is uv


def test_require_user_verification():
    a = auth(user_verified=False)
    cred = stored(register(a))
    response, challenge = _assert(a, cred)
    with pytest.raises(wa.WebAuthnError):
        wa.verify_authentication(
            RP,
            response=response,
            challenge=challenge,
            credential=cred,
            require_user_verification=True,
        )
    b = auth(user_verified=True)
    cred_b = stored(register(b))
    response, challenge = _assert(b, cred_b)
    got = wa.verify_authentication(
        RP,
        response=response,
        challenge=challenge,
        credential=cred_b,
        require_user_verification=True,
    )
    assert got.user_verified is True


@pytest.mark.parametrize(
    "eligible, device_type", [(True, "multi_device"), (False, "single_device")]
)
def test_device_type_follows_backup_eligibility(eligible, device_type):
    a = auth(backup_eligible=eligible)
    new = register(a)
    assert (new.device_type, new.backed_up) == (device_type, eligible)
    got = login(a, stored(new))
    assert (got.device_type, got.backed_up) == (device_type, eligible)


# --- encoding -------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"\xfb", b"\xfb\xff", b"\xfb\xff\xfe", bytes(range(256))])
def test_b64url_round_trip(data):
    encoded = wa.b64url(data)
    assert "=" not in encoded and "+" not in encoded and "/" not in encoded
    assert wa.b64url_decode(encoded) == data
    assert wa.b64url_decode(encoded + "=" * (-len(encoded) % 4)) == data


@pytest.mark.parametrize("bad", ["A", "AA+A", "AA/A", "AA A", "A\nAA", "ü", 3, None])
def test_b64url_decode_rejects_garbage(bad):
    with pytest.raises(wa.WebAuthnError):
        wa.b64url_decode(bad)


def test_error_carries_safe_message_and_reason():
    err = wa.WebAuthnError("Unexpected RP ID hash")
    assert str(err) == SAFE and err.reason == "Unexpected RP ID hash"


# --- discoverable credentials, user handles, how the user was verified ------------------------


@pytest.mark.parametrize("rk", [True, False, None])
def test_cred_props_rk_is_reported(rk):
    assert register(auth(discoverable=rk)).discoverable is rk


@pytest.mark.parametrize(
    "results",
    [{"credProps": {"rk": "yes"}}, {"credProps": "x"}, {"credProps": None}, [], "x", None],
)
def test_cred_props_that_is_not_a_boolean_is_not_believed(results):
    a = auth()
    options, challenge = wa.registration_options(
        RP, user_handle=USER, user_name="a", display_name="A", exclude=()
    )
    response = a.create(options)
    response["clientExtensionResults"] = results
    assert wa.verify_registration(RP, response=response, challenge=challenge).discoverable is None


def test_the_user_handle_of_a_discoverable_assertion_is_reported():
    a = auth()
    cred = stored(register(a))
    options, challenge = wa.authentication_options(RP, allow=(), user_verification="required")
    got = wa.verify_authentication(
        RP, response=a.get(options), challenge=challenge, credential=cred
    )
    assert got.user_handle == USER


def test_no_user_handle_is_none():
    a = auth()
    cred = stored(register(a))
    options, challenge = wa.authentication_options(RP, allow=[cred])
    response = a.get(options)
    response["response"]["userHandle"] = None
    got = wa.verify_authentication(RP, response=response, challenge=challenge, credential=cred)
    assert got.user_handle is None


UVM = [
    pytest.param((), (), id="none reported"),
    pytest.param((0x02,), ("fpt",), id="fingerprint"),
    pytest.param((0x04,), ("pin",), id="passcode"),
    pytest.param((0x800,), ("pin",), id="external passcode"),
    pytest.param((0x10,), ("face",), id="face"),
    pytest.param((0x02, 0x04), ("fpt", "pin"), id="fingerprint and passcode"),
    pytest.param((0x01,), (), id="presence only"),
    pytest.param((0x200,), (), id="NONE"),
]


@pytest.mark.parametrize(("methods", "amr"), UVM)
def test_uvm_extension_becomes_rfc_8176_values(methods, amr):
    a = auth(uvm=methods)
    got = login(a, stored(register(a)))
    assert got.verification_amr == amr


def test_uvm_without_user_verification_says_nothing():
    a = auth(uvm=(0x02,), user_verified=False)
    got = login(a, stored(register(a)))
    assert got.user_verified is False and got.verification_amr == ()


@pytest.mark.parametrize(
    "extensions", [b"\xa1", cbor2.dumps({"uvm": "x"}), cbor2.dumps({"uvm": [["x"], [True]]})]
)
def test_malformed_uvm_output_says_nothing(extensions):
    flags_at = 32
    data = bytearray(hashlib.sha256(RP_ID.encode()).digest() + bytes([0x85]) + b"\0\0\0\1")
    data += extensions
    assert data[flags_at] & 0x80
    assert wa.uvm_amr(bytes(data)) == ()


def test_decoy_matches_no_response():
    a = auth()
    new = register(a)
    options, challenge = wa.authentication_options(RP, allow=())
    decoy = wa.decoy(new.credential_id)
    assert decoy.credential_id == new.credential_id and decoy.public_key != new.public_key
    with pytest.raises(wa.WebAuthnError) as exc:
        wa.verify_authentication(RP, response=a.get(options), challenge=challenge, credential=decoy)
    assert "signature" in exc.value.reason.lower()
    assert wa.decoy(b"x").public_key == decoy.public_key  # made once per process
