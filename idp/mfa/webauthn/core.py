"""WebAuthn (security keys and passkeys) as pure functions over py_webauthn.

No Flask, no database: callers keep the challenge (server side, single use) between the
options and the verify step, and persist what the verify step returns.

Policy: attestation "none" (we trust no vendor list), resident key and user verification
"preferred" (passkeys where possible, plain security keys still work), user presence always
required. Every failure raises :class:`WebAuthnError`, whose ``str()`` is safe to show a
user and whose ``reason`` is the internal detail for the audit log. A signature counter that
did not advance raises :class:`PossibleClone` (WebAuthn L2 6.1.1 and 7.2 step 21), and only
after the signature has been verified, so a forged response cannot trigger it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    decode_credential_public_key,
    parse_authentication_credential_json,
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
    "registration_options",
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

    default_message = "This security key response could not be verified."

    def __init__(self, reason: str, message: str | None = None) -> None:
        self.reason = reason
        self.message = message or self.default_message
        super().__init__(self.message)


class PossibleClone(WebAuthnError):
    """The signature counter did not advance: the authenticator may have been cloned."""

    default_message = (
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


@dataclass(frozen=True)
class Assertion:
    credential_id: bytes
    new_sign_count: int
    user_verified: bool
    device_type: str
    backed_up: bool


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


def registration_options(
    rp: RelyingParty,
    *,
    user_handle: bytes,
    user_name: str,
    display_name: str,
    exclude: Sequence[StoredCredential],
) -> tuple[str, bytes]:
    """Options for ``navigator.credentials.create()``: (JSON for the browser, challenge)."""
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
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=_descriptors(exclude),
        supported_pub_key_algs=[COSEAlgorithmIdentifier(a) for a in SUPPORTED_ALGS],
    )
    return options_to_json(options), challenge


def authentication_options(
    rp: RelyingParty,
    *,
    allow: Sequence[StoredCredential],
    user_verification: str = "preferred",
) -> tuple[str, bytes]:
    """Options for ``navigator.credentials.get()``: (JSON for the browser, challenge).

    An empty ``allow`` asks for a discoverable credential (passkey) of any user.
    """
    challenge = secrets.token_bytes(CHALLENGE_BYTES)
    options = generate_authentication_options(
        rp_id=rp.rp_id,
        challenge=challenge,
        timeout=rp.timeout_ms,
        allow_credentials=_descriptors(allow),
        user_verification=UserVerificationRequirement(user_verification),
    )
    return options_to_json(options), challenge


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
    )


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
    )
