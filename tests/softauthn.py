"""A software WebAuthn authenticator (plus the browser's part) for tests.

It builds ``authenticatorData``, COSE keys, ``attestationObject`` (format "none") and
``clientDataJSON`` by hand with cbor2 and cryptography, independently of py_webauthn, and
returns the JSON shapes browsers produce with ``PublicKeyCredential.toJSON()``.
``get()`` (and ``create()``) take origin / rp_id / challenge overrides to forge bad responses.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

ES256, EDDSA, RS256 = -7, -8, -257

FLAG_UP, FLAG_UV, FLAG_BE, FLAG_BS, FLAG_AT, FLAG_ED = 0x01, 0x04, 0x08, 0x10, 0x40, 0x80
# FIDO Registry of Predefined Values 3.1: user verification methods (the uvm extension).
UVM_FINGERPRINT, UVM_PASSCODE = 0x00000002, 0x00000004


class AuthenticatorError(Exception):
    """What the browser would reject with a DOMException; ``name`` is that DOMException's."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64u(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _int_bytes(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


class SoftAuthenticator:
    """One credential on one authenticator, made at construction and returned by create()."""

    def __init__(
        self,
        alg: int = ES256,
        rp_id: str = "localhost",
        origin: str = "http://localhost",
        *,
        backup_eligible: bool = False,
        user_verified: bool = True,
        aaguid: bytes = b"\0" * 16,
        discoverable: bool | None = None,
        uvm: tuple[int, ...] = (),
    ) -> None:
        """*discoverable*: what the browser reports as the ``credProps`` extension's
        ``rk`` after create() (None: no report); *uvm*: the user verification methods
        the authenticator reports in the ``uvm`` extension of its assertions."""
        if len(aaguid) != 16:
            raise ValueError("aaguid must be 16 bytes")
        self.alg = alg
        self.rp_id = rp_id
        self.origin = origin
        self.backup_eligible = backup_eligible
        self.user_verified = user_verified
        self.aaguid = aaguid
        self.discoverable = discoverable
        self.uvm = uvm
        self.credential_id = os.urandom(32)
        self.sign_count = 0
        self.user_handle: bytes | None = None
        if alg == ES256:
            self._key: Any = ec.generate_private_key(ec.SECP256R1())
        elif alg == EDDSA:
            self._key = ed25519.Ed25519PrivateKey.generate()
        elif alg == RS256:
            self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            raise ValueError(f"unsupported alg {alg}")

    # --- pieces -----------------------------------------------------------------------

    def cose_key(self) -> bytes:
        pub = self._key.public_key()
        if self.alg == ES256:
            nums = pub.public_numbers()
            key = {
                1: 2,
                3: ES256,
                -1: 1,
                -2: nums.x.to_bytes(32, "big"),
                -3: nums.y.to_bytes(32, "big"),
            }
        elif self.alg == EDDSA:
            raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            key = {1: 1, 3: EDDSA, -1: 6, -2: raw}
        else:
            nums = pub.public_numbers()
            key = {1: 3, 3: RS256, -1: _int_bytes(nums.n), -2: _int_bytes(nums.e)}
        return cbor2.dumps(key)

    def spki(self) -> bytes:
        return self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def _flags(self, *, attested: bool) -> int:
        flags = FLAG_UP
        if self.user_verified:
            flags |= FLAG_UV
        if self.backup_eligible:
            flags |= FLAG_BE | FLAG_BS
        if attested:
            flags |= FLAG_AT
        return flags

    def _auth_data(self, rp_id: str, *, attested: bool) -> bytes:
        extensions = {"uvm": [[m, 0x0001, 0x0001] for m in self.uvm]} if self.uvm else None
        flags = self._flags(attested=attested) | (FLAG_ED if extensions else 0)
        data = hashlib.sha256(rp_id.encode()).digest()
        data += struct.pack(">BI", flags, self.sign_count)
        if attested:
            data += self.aaguid + struct.pack(">H", len(self.credential_id))
            data += self.credential_id + self.cose_key()
        if extensions:
            data += cbor2.dumps(extensions)
        return data

    def _sign(self, data: bytes) -> bytes:
        if self.alg == ES256:
            return self._key.sign(data, ec.ECDSA(hashes.SHA256()))  # DER
        if self.alg == EDDSA:
            return self._key.sign(data)
        return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    @staticmethod
    def _client_data(kind: str, challenge: bytes, origin: str) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": b64u(challenge), "origin": origin, "crossOrigin": False},
            separators=(",", ":"),
        ).encode()

    def set_sign_count(self, n: int) -> None:
        self.sign_count = n

    # --- ceremonies -------------------------------------------------------------------

    def create(
        self,
        options_json: str,
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        challenge: bytes | None = None,
    ) -> dict[str, Any]:
        """Answer ``navigator.credentials.create()`` options with a registration response."""
        options = json.loads(options_json)
        algs = [p["alg"] for p in options["pubKeyCredParams"]]
        if self.alg not in algs:
            raise AuthenticatorError("NotSupportedError", f"alg {self.alg} not in {algs}")
        excluded = {unb64u(c["id"]) for c in options.get("excludeCredentials", [])}
        if self.credential_id in excluded:
            raise AuthenticatorError("InvalidStateError", "credential already registered")
        if rp_id is None and options["rp"]["id"] != self.rp_id:
            raise AuthenticatorError("SecurityError", "rp.id does not match this authenticator")
        self.user_handle = unb64u(options["user"]["id"])
        auth_data = self._auth_data(rp_id or self.rp_id, attested=True)
        client_data = self._client_data(
            "webauthn.create",
            challenge if challenge is not None else unb64u(options["challenge"]),
            origin or self.origin,
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64u(self.credential_id),
            "rawId": b64u(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64u(client_data),
                "attestationObject": b64u(attestation),
                "authenticatorData": b64u(auth_data),
                "publicKey": b64u(self.spki()),
                "publicKeyAlgorithm": self.alg,
                "transports": ["internal"],
            },
            "clientExtensionResults": (
                {} if self.discoverable is None else {"credProps": {"rk": self.discoverable}}
            ),
            "authenticatorAttachment": "platform",
        }

    def get(
        self,
        options_json: str,
        *,
        sign_count_step: int = 1,
        origin: str | None = None,
        rp_id: str | None = None,
        challenge: bytes | None = None,
    ) -> dict[str, Any]:
        """Answer ``navigator.credentials.get()`` options with an assertion response."""
        options = json.loads(options_json)
        allowed = {unb64u(c["id"]) for c in options.get("allowCredentials", [])}
        if allowed and self.credential_id not in allowed:
            raise AuthenticatorError("NotAllowedError", "no allowed credential here")
        if not allowed and self.discoverable is False:
            # A server-side credential cannot answer a request for a discoverable one.
            raise AuthenticatorError("NotAllowedError", "no discoverable credential here")
        if rp_id is None and options.get("rpId", self.rp_id) != self.rp_id:
            raise AuthenticatorError("SecurityError", "rpId does not match this authenticator")
        self.sign_count += sign_count_step
        auth_data = self._auth_data(rp_id or self.rp_id, attested=False)
        client_data = self._client_data(
            "webauthn.get",
            challenge if challenge is not None else unb64u(options["challenge"]),
            origin or self.origin,
        )
        signature = self._sign(auth_data + hashlib.sha256(client_data).digest())
        return {
            "id": b64u(self.credential_id),
            "rawId": b64u(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64u(client_data),
                "authenticatorData": b64u(auth_data),
                "signature": b64u(signature),
                "userHandle": b64u(self.user_handle) if self.user_handle else None,
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }
