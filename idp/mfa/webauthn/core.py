"""WebAuthn (security keys and passkeys) as pure functions over py_webauthn.

No Flask, no database: callers keep the challenge (server side, single use) between the
options and the verify step, and persist what the verify step returns.

Policy: attestation "none" (we trust no vendor list); at registration a resident key
"preferred" (a passkey where the authenticator can keep one, a plain security key still
works as a second step) and user verification "required" (WebAuthn L2 5.4.6, 5.8.6), with
the ``credProps`` extension asked for so that the browser says whether the credential is
discoverable (L2 10.4); user presence always required. A sign-in with a passkey alone asks
for a discoverable credential (an empty allow list) with user verification "required";
whether the user was verified is reported in :class:`Assertion` and decided by the caller.

Every failure raises :class:`WebAuthnError`, whose ``str()`` is safe to show a user and
whose ``reason`` is the internal detail for the audit log. A signature counter that did
not advance raises :class:`PossibleClone` (WebAuthn L2 6.1.1 and 7.2 step 21), and only
after the signature has been verified, so a forged response cannot trigger it.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from flask_babel import lazy_gettext as _l
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    decode_credential_public_key,
    encode_cbor,
    parse_authentication_credential_json,
    parse_authenticator_data,
    parse_cbor,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from ...security.crypto import equal

__all__ = [
    "SUPPORTED_ALGS",
    "Assertion",
    "NewCredential",
    "PossibleClone",
    "RelyingParty",
    "StoredCredential",
    "WebAuthnError",
    "authentication_options",
    "b64url",
    "b64url_decode",
    "credential_id_of",
    "decoy",
    "registration_options",
    "uvm_amr",
    "verify_authentication",
    "verify_registration",
]

SUPPORTED_ALGS: tuple[int, ...] = (
    COSEAlgorithmIdentifier.ECDSA_SHA_256.value,  # -7   ES256
    COSEAlgorithmIdentifier.EDDSA.value,  # -8   EdDSA (Ed25519)
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256.value,  # -257 RS256
)
CHALLENGE_BYTES = 32
MAX_CREDENTIAL_ID_BYTES = 1023  # WebAuthn L3 7.1 step 23
MAX_USER_HANDLE_BYTES = 64  # WebAuthn L2 5.4.3

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class WebAuthnError(Exception):
    """A response that cannot be accepted. ``str(exc)`` is safe for users; ``reason`` is not."""

    default_message = _l("This security key response could not be verified.")

    def __init__(self, reason: str, message: str | None = None) -> None:
        self.reason = reason
        self.message = message or self.default_message
        super().__init__(self.message)


class PossibleClone(WebAuthnError):
    """The signature counter did not advance: the authenticator may have been cloned."""

    default_message = _l(
        "This security key was refused to protect your account. "
        "Use another way to sign in, or contact support."
    )

    def __init__(self, reason: str, *, stored_sign_count: int, new_sign_count: int) -> None:
        super().__init__(reason)
        self.stored_sign_count = stored_sign_count
        self.new_sign_count = new_sign_count


@dataclass(frozen=True)
class RelyingParty:
    rp_id: str
    rp_name: str
    origins: tuple[str, ...]
    timeout_ms: int = 120000


@dataclass(frozen=True)
class StoredCredential:
    credential_id: bytes
    public_key: bytes
    sign_count: int
    transports: tuple[str, ...] = ()


@dataclass(frozen=True)
class NewCredential:
    credential_id: bytes
    public_key: bytes  # COSE_Key, as stored for verify_authentication
    sign_count: int
    aaguid: str
    transports: tuple[str, ...]
    device_type: str  # "single_device" | "multi_device"
    backed_up: bool
    user_verified: bool
    alg: int
    # The credProps extension's "rk" (WebAuthn L2 10.4): True when the browser says the
    # credential is discoverable, False when it says it is not, None when it did not say.
    discoverable: bool | None = None


@dataclass(frozen=True)
class Assertion:
    credential_id: bytes
    new_sign_count: int
    user_verified: bool
    device_type: str
    backed_up: bool
    # The user handle the authenticator returned (a discoverable credential), else None.
    user_handle: bytes | None = None
    # RFC 8176 values for how the authenticator verified the user, from the uvm extension
    # of its (signed) authenticator data; empty when it did not say (the common case).
    verification_amr: tuple[str, ...] = ()


# --- encoding ---------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 4648 section 5), as WebAuthn JSON uses."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(s: str) -> bytes:
    """Strict inverse of :func:`b64url`; padding is tolerated. Raises WebAuthnError."""
    if not isinstance(s, str):
        raise WebAuthnError(f"expected a base64url string, got {type(s).__name__}")
    body = s.rstrip("=")
    if not _B64URL.fullmatch(body) or len(body) % 4 == 1:
        raise WebAuthnError("malformed base64url")
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - regex guards this
        raise WebAuthnError(f"malformed base64url: {exc}") from exc


# --- options ----------------------------------------------------------------------------


def _descriptors(credentials: Sequence[StoredCredential]) -> list[PublicKeyCredentialDescriptor]:
    out = []
    for cred in credentials:
        transports = []
        for name in cred.transports:
            try:
                transports.append(AuthenticatorTransport(name))
            except ValueError:
                continue  # a transport this library does not know: leave it out
        out.append(PublicKeyCredentialDescriptor(id=cred.credential_id, transports=transports))
    return out


def _with_extensions(options_json: str, extensions: dict[str, Any]) -> str:
    """*options_json* with client extension inputs added (py_webauthn has no parameter
    for them)."""
    data = json.loads(options_json)
    data["extensions"] = {**data.get("extensions", {}), **extensions}
    return json.dumps(data)


def registration_options(
    rp: RelyingParty,
    *,
    user_handle: bytes,
    user_name: str,
    display_name: str,
    exclude: Sequence[StoredCredential],
) -> tuple[str, bytes]:
    """Options for ``navigator.credentials.create()``: (JSON for the browser, challenge).

    A resident key is *preferred*, not required: an authenticator that can keep a
    discoverable credential makes a passkey (a sign-in without a password), one that
    cannot still registers as a second step. User verification is *required*: the
    authenticator checks a PIN, fingerprint or face, so a passkey can later stand for
    two factors. ``credProps`` asks the browser to say which of the two it made."""
    if not isinstance(user_handle, bytes) or not 1 <= len(user_handle) <= MAX_USER_HANDLE_BYTES:
        raise ValueError("user_handle must be 1 to 64 bytes")
    challenge = secrets.token_bytes(CHALLENGE_BYTES)
    options = generate_registration_options(
        rp_id=rp.rp_id,
        rp_name=rp.rp_name,
        user_id=user_handle,
        user_name=user_name,
        user_display_name=display_name or user_name,
        challenge=challenge,
        timeout=rp.timeout_ms,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=_descriptors(exclude),
        supported_pub_key_algs=[COSEAlgorithmIdentifier(a) for a in SUPPORTED_ALGS],
    )
    return _with_extensions(options_to_json(options), {"credProps": True}), challenge


def authentication_options(
    rp: RelyingParty,
    *,
    allow: Sequence[StoredCredential],
    user_verification: str = "preferred",
) -> tuple[str, bytes]:
    """Options for ``navigator.credentials.get()``: (JSON for the browser, challenge).

    An empty ``allow`` asks for a discoverable credential (passkey) of any user. The
    ``uvm`` extension (WebAuthn L2 10.3) asks the authenticator to say how it verified
    the user; few do, and what they say only adds RFC 8176 values to ``amr``.
    """
    challenge = secrets.token_bytes(CHALLENGE_BYTES)
    options = generate_authentication_options(
        rp_id=rp.rp_id,
        challenge=challenge,
        timeout=rp.timeout_ms,
        allow_credentials=_descriptors(allow),
        user_verification=UserVerificationRequirement(user_verification),
    )
    return _with_extensions(options_to_json(options), {"uvm": True}), challenge


# --- verification -----------------------------------------------------------------------


def _load(response: str | dict) -> dict[str, Any]:
    if isinstance(response, bytes | bytearray):
        try:
            response = response.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WebAuthnError("credential is not UTF-8") from exc
    if isinstance(response, str):
        try:
            response = json.loads(response)
        except (ValueError, RecursionError) as exc:
            raise WebAuthnError("credential is not valid JSON") from exc
    if not isinstance(response, dict):
        raise WebAuthnError("credential is not a JSON object")
    return response


def _check_client_data(client_data_json: bytes) -> None:
    """Checks py_webauthn leaves out: we are never framed (CSP frame-ancestors 'none')."""
    try:
        client_data = parse_client_data_json(client_data_json)
    except Exception as exc:
        raise WebAuthnError(f"clientDataJSON malformed: {exc}") from exc
    if client_data.cross_origin:
        raise WebAuthnError("clientDataJSON crossOrigin is true")


def _fail(exc: Exception) -> WebAuthnError:
    return WebAuthnError(f"{type(exc).__name__}: {exc}")


def verify_registration(
    rp: RelyingParty, *, response: str | dict, challenge: bytes
) -> NewCredential:
    """Verify a ``navigator.credentials.create()`` response. Raises WebAuthnError."""
    data = _load(response)
    try:
        parsed = parse_registration_credential_json(data)
    except Exception as exc:
        raise _fail(exc) from exc
    _check_client_data(parsed.response.client_data_json)
    try:
        verified = verify_registration_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=rp.rp_id,
            expected_origin=list(rp.origins),
            require_user_presence=True,
            require_user_verification=False,
            supported_pub_key_algs=[COSEAlgorithmIdentifier(a) for a in SUPPORTED_ALGS],
        )
        alg = int(decode_credential_public_key(verified.credential_public_key).alg)
    except Exception as exc:
        raise _fail(exc) from exc
    if len(verified.credential_id) > MAX_CREDENTIAL_ID_BYTES:
        raise WebAuthnError("credential id longer than 1023 bytes")
    if not equal(verified.credential_id, parsed.raw_id):
        raise WebAuthnError("rawId differs from the attested credential id")
    transports = tuple(t.value for t in parsed.response.transports or ())
    return NewCredential(
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        aaguid=verified.aaguid,
        transports=transports,
        device_type=verified.credential_device_type.value,
        backed_up=verified.credential_backed_up,
        user_verified=verified.user_verified,
        alg=alg,
        discoverable=_cred_props_rk(data),
    )


def _cred_props_rk(data: dict[str, Any]) -> bool | None:
    """The ``credProps`` client extension output's ``rk`` (WebAuthn L2 10.4), or None.

    A client output, not signed by the authenticator: it only decides how the account
    page labels a key and whether a passkey is offered, never what a credential may do
    (a sign-in with a passkey alone is judged on its own signed assertion)."""
    results = data.get("clientExtensionResults")
    props = results.get("credProps") if isinstance(results, dict) else None
    rk = props.get("rk") if isinstance(props, dict) else None
    return rk if isinstance(rk, bool) else None


# FIDO Registry of Predefined Values 3.1 (user verification methods) -> RFC 8176 2.
_UVM_AMR: dict[int, str] = {
    0x00000002: "fpt",  # FINGERPRINT_INTERNAL
    0x00000004: "pin",  # PASSCODE_INTERNAL
    0x00000008: "vbm",  # VOICEPRINT_INTERNAL
    0x00000010: "face",  # FACEPRINT_INTERNAL
    0x00000040: "iris",  # EYEPRINT_INTERNAL
    0x00000080: "pin",  # PATTERN_INTERNAL (RFC 8176 "pin": a number or a pattern)
    0x00000800: "pin",  # PASSCODE_EXTERNAL
    0x00001000: "pin",  # PATTERN_EXTERNAL
}


def uvm_amr(authenticator_data: bytes) -> tuple[str, ...]:
    """RFC 8176 values for how the authenticator verified the user, from the ``uvm``
    extension output in its signed authenticator data (WebAuthn L2 10.3; FIDO Registry
    3.1): ``fpt`` for a fingerprint, ``pin`` for a PIN or pattern, ``face``, ``iris``,
    ``vbm``. Empty when the UV flag is not set or the authenticator reported nothing
    (today's browsers do not pass the extension on, so this is the common case)."""
    try:
        parsed = parse_authenticator_data(authenticator_data)
        if not parsed.flags.uv or not parsed.extensions:
            return ()
        extensions = parse_cbor(parsed.extensions)
    except Exception:
        return ()
    entries = extensions.get("uvm") if isinstance(extensions, dict) else None
    if not isinstance(entries, list):
        return ()
    found: set[str] = set()
    for entry in entries[:3]:  # at most 3 entries (WebAuthn L2 10.3)
        method = entry[0] if isinstance(entry, list) and entry else None
        if isinstance(method, int) and not isinstance(method, bool):
            found.update(v for bit, v in _UVM_AMR.items() if method & bit)
    return tuple(sorted(found))


@functools.cache
def _decoy_public_key() -> bytes:
    """A COSE ES256 public key whose private key nobody has (thrown away at once)."""
    numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    cose = {
        1: 2,
        3: -7,
        -1: 1,
        -2: numbers.x.to_bytes(32, "big"),
        -3: numbers.y.to_bytes(32, "big"),
    }
    return encode_cbor(cose)


def decoy(credential_id: bytes) -> StoredCredential:
    """A stored credential for *credential_id* that no response can match: verifying an
    assertion of an unknown credential against it costs what verifying a known one
    costs, so the time of an answer does not tell whether a credential id is registered."""
    return StoredCredential(credential_id=credential_id, public_key=_decoy_public_key(),
                            sign_count=0)  # fmt: skip


def credential_id_of(response: str | dict) -> bytes:
    """The credential id (``rawId``) of an assertion response, to look the credential up."""
    data = _load(response)
    raw_id, cred_id = data.get("rawId"), data.get("id")
    if not isinstance(raw_id, str) or not isinstance(cred_id, str):
        raise WebAuthnError("credential missing id or rawId")
    decoded = b64url_decode(raw_id)
    if not decoded or decoded != b64url_decode(cred_id):
        raise WebAuthnError("credential id and rawId differ or are empty")
    return decoded


def verify_authentication(
    rp: RelyingParty,
    *,
    response: str | dict,
    challenge: bytes,
    credential: StoredCredential,
    require_user_verification: bool = False,
) -> Assertion:
    """Verify a ``navigator.credentials.get()`` response against the stored credential.

    Raises WebAuthnError, or PossibleClone when the counter did not advance (either counter
    non-zero and new <= stored; counters that stay 0 are fine, many passkeys never count).
    """
    data = _load(response)
    try:
        parsed = parse_authentication_credential_json(data)
    except Exception as exc:
        raise _fail(exc) from exc
    if not equal(parsed.raw_id, credential.credential_id):
        raise WebAuthnError("response is for a different credential")
    _check_client_data(parsed.response.client_data_json)
    try:
        # Stored count 0 turns py_webauthn's own counter check off; ours runs below, after
        # the signature is known good, so that it can raise PossibleClone.
        verified = verify_authentication_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=rp.rp_id,
            expected_origin=list(rp.origins),
            credential_public_key=credential.public_key,
            credential_current_sign_count=0,
            require_user_verification=require_user_verification,
        )
    except Exception as exc:
        raise _fail(exc) from exc
    stored, new = credential.sign_count, verified.new_sign_count
    if (stored or new) and new <= stored:
        raise PossibleClone(
            f"sign count did not advance: stored {stored}, got {new}",
            stored_sign_count=stored,
            new_sign_count=new,
        )
    return Assertion(
        credential_id=verified.credential_id,
        new_sign_count=new,
        user_verified=verified.user_verified,
        device_type=verified.credential_device_type.value,
        backed_up=verified.credential_backed_up,
        user_handle=parsed.response.user_handle or None,
        verification_amr=uvm_amr(parsed.response.authenticator_data),
    )
