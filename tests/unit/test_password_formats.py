"""Imported password hashes: verified in the formats other systems export, then replaced.

The vectors below were made by the systems themselves (Django 5.2's hashers and passlib
1.7.4, an implementation independent of ours) for the password ``PASSWORD``; the
Keycloak ones are built as Keycloak 26 stores them (PBKDF2 with a 64-byte key, or
Argon2 with its parameters in ``credentialData``) and converted by the importer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os

import pytest
from argon2 import PasswordHasher as Argon2
from argon2 import Type

from idp.security.passwords import (
    MAX_BCRYPT_COST,
    MAX_PBKDF2_ITERATIONS,
    PasswordHasher,
    UnsupportedHash,
    hash_scheme,
)
from idp.users_io import RowError, from_keycloak, keycloak_password, keycloak_totp

PASSWORD = "correct horse battery staple"

DJANGO = {
    "pbkdf2_sha256": "pbkdf2_sha256$1200$seasalt2024$HCnO9DJgu2pg2a3bh5rZMEJjrcH3eDsFaq55EKPqvCI=",
    "pbkdf2_sha1": "pbkdf2_sha1$1200$seasalt2024$LTvknZkJtHMVI4hogGiOOlREzu0=",
    "bcrypt_sha256": "bcrypt_sha256$$2b$05$f0iQPCpmchUiG675zmndBu8YAiYt4OuM1EcC9z1niMExqATC6YZh2",
    "bcrypt": "bcrypt$$2b$05$4DLIpFANdZBNw82/WJYhK.0/n0uTh309A.yHYoenn2DTbJFn5y.eq",
}
PASSLIB = {
    "pbkdf2-sha256": "$pbkdf2-sha256$1000$xjhnDGHM.d97r/VeS0nJ2Q$qbGpSWOt9xtH3tLg499oYE7PbpjYdKylwhYMKNyj.d0",
    "pbkdf2-sha512": "$pbkdf2-sha512$1000$2ptTyhkjhND6f8.5V0rpvQ$s6Jxook4BzVkHkJ5RaSYXCMiZXpDq9Wdrw1TFBy6G8k6Z6ouvSSIt6N5Zyg9Jdue9MwW8LtYwESdXppdx6Se/g",
    "pbkdf2-sha1": "$pbkdf2$1000$JMS4N4YQ4nxvTemdE0JozQ$S7uVMhpBLG/4byAp.SxIwp2kN8A",
}
BCRYPT_2B = DJANGO["bcrypt"].removeprefix("bcrypt$")


@pytest.fixture(scope="module")
def hasher() -> PasswordHasher:
    return PasswordHasher(memory_cost=1024, time_cost=1)


@pytest.mark.parametrize(
    "stored",
    [
        *DJANGO.values(),
        *PASSLIB.values(),
        BCRYPT_2B,
        BCRYPT_2B.replace("$2b$", "$2y$", 1),  # PHP's password_hash: the same algorithm
        BCRYPT_2B.replace("$2b$", "$2a$", 1),
    ],
    ids=[*DJANGO, *PASSLIB, "bcrypt-2b", "bcrypt-2y", "bcrypt-2a"],
)
def test_imported_hashes_verify_and_need_rehash(hasher, stored):
    assert hasher.verify(stored, PASSWORD)
    assert not hasher.verify(stored, PASSWORD + "!")
    assert not hasher.verify(stored, "")
    assert hasher.needs_rehash(stored)  # replaced by argon2id at the next sign-in


def test_argon2_variants(hasher):
    for kind in (Type.I, Type.D, Type.ID):
        stored = Argon2(memory_cost=1024, time_cost=1, type=kind).hash(PASSWORD)
        assert hasher.verify(stored, PASSWORD) and not hasher.verify(stored, "nope")
        assert hash_scheme(stored) == "argon2"
    argon2i = Argon2(memory_cost=1024, time_cost=1, type=Type.I).hash(PASSWORD)
    assert hasher.needs_rehash(argon2i)  # argon2i -> argon2id
    django = "argon2" + Argon2(memory_cost=1024, time_cost=1).hash(PASSWORD)
    assert hasher.verify(django, PASSWORD) and hasher.needs_rehash(django)
    assert not hasher.needs_rehash(hasher.hash(PASSWORD))  # today's own hash stays


def test_bcrypt_counts_only_the_first_72_bytes_like_the_systems_that_made_it(hasher):
    import bcrypt

    long_password = "x" * 80
    stored = bcrypt.hashpw(long_password.encode()[:72], bcrypt.gensalt(4)).decode()
    assert hasher.verify(stored, long_password)  # bcrypt 5 would raise on 80 bytes


@pytest.mark.parametrize(
    ("stored", "why"),
    [
        ("plaintext-password", "known format"),
        ("$1$saltsalt$qjXMvbEw8oaL.CzflDugX/", "known format"),  # md5-crypt: refused
        ("pbkdf2_sha256$99999999$salt$AAAA", "iterations"),
        (f"pbkdf2_sha256${MAX_PBKDF2_ITERATIONS + 1}$salt$AAAA", "iterations"),
        ("$pbkdf2-sha256$1000$!!!$AAAA", "known format"),
        ("pbkdf2_sha256$1000$salt$@@@@", "known format"),
        (BCRYPT_2B.replace("$05$", f"${MAX_BCRYPT_COST + 1}$"), "cost"),
    ],
)
def test_unsupported_or_abusive_hashes_are_refused(hasher, stored, why):
    with pytest.raises(UnsupportedHash, match=why):
        hash_scheme(stored)
    assert not hasher.verify(stored, PASSWORD)  # never raises, never matches


def _keycloak_pbkdf2(algorithm: str, digest: str, iterations: int = 27500) -> dict:
    salt = os.urandom(16)
    value = hashlib.pbkdf2_hmac(digest, PASSWORD.encode(), salt, iterations, 64)
    return {
        "type": "password",
        "secretData": json.dumps({"value": base64.b64encode(value).decode(),
                                  "salt": base64.b64encode(salt).decode(),
                                  "additionalParameters": {}}),
        "credentialData": json.dumps({"hashIterations": iterations, "algorithm": algorithm,
                                      "additionalParameters": {}}),
    }  # fmt: skip


@pytest.mark.parametrize(
    ("algorithm", "digest"),
    [("pbkdf2-sha256", "sha256"), ("pbkdf2-sha512", "sha512"), ("pbkdf2", "sha1")],
)
def test_keycloak_pbkdf2_credentials(hasher, algorithm, digest):
    stored = keycloak_password(_keycloak_pbkdf2(algorithm, digest))
    assert stored.startswith(f"${algorithm}$27500$")
    assert hasher.verify(stored, PASSWORD) and not hasher.verify(stored, "wrong")
    assert hasher.needs_rehash(stored)


def test_keycloak_argon2_credential(hasher):
    # Keycloak keeps the raw salt and hash, and the parameters beside them.
    phc = Argon2(memory_cost=7168, time_cost=5, parallelism=1, type=Type.ID).hash(PASSWORD)
    *_, salt, value = phc.split("$")

    def unpadded(text: str) -> str:
        return base64.b64encode(base64.b64decode(text + "=" * (-len(text) % 4))).decode()

    credential = {
        "type": "password",
        "secretData": {"value": unpadded(value), "salt": unpadded(salt)},
        "credentialData": {"hashIterations": 5, "algorithm": "argon2", "additionalParameters": {
            "hashLength": ["32"], "memory": ["7168"], "type": ["id"], "version": ["1.3"],
            "parallelism": ["1"]}},
    }  # fmt: skip
    stored = keycloak_password(credential)
    assert stored == phc
    assert hasher.verify(stored, PASSWORD)


def test_keycloak_user_representation():
    secret = "abcdefghijklmnopqrst"  # Keycloak keeps the raw secret; apps get its base32
    user = {
        "id": "2f1c5c6e-6a7b-4b5e-9f7e-0d9a0b3c1d2e",
        "username": "ada",
        "email": "Ada@Example.com",
        "emailVerified": True,
        "firstName": "Ada",
        "lastName": "Lovelace",
        "enabled": False,
        "attributes": {"phoneNumber": ["+1 202 555 0143"]},
        "credentials": [
            _keycloak_pbkdf2("pbkdf2-sha256", "sha256"),
            {"type": "otp", "secretData": json.dumps({"value": secret}),
             "credentialData": json.dumps({"subType": "totp", "digits": 6, "period": 30,
                                           "algorithm": "HmacSHA1"})},
        ],
    }  # fmt: skip
    record = from_keycloak(user)
    assert record["sub"] == user["id"] and record["email"] == "Ada@Example.com"
    assert record["email_verified"] is True and record["status"] == "disabled"
    assert record["name"] == "Ada Lovelace" and record["phone_number"] == "+1 202 555 0143"
    assert record["password_hash"].startswith("$pbkdf2-sha256$27500$")
    padded = record["totp_secret"] + "=" * (-len(record["totp_secret"]) % 8)
    assert base64.b32decode(padded) == secret.encode()

    hotp = {"type": "otp", "secretData": "{}", "credentialData": '{"subType": "hotp"}'}
    with pytest.raises(RowError, match="HOTP"):
        keycloak_totp(hotp)
    eight = {"type": "otp", "secretData": "{}", "credentialData": '{"digits": 8}'}
    with pytest.raises(RowError, match="6 digits"):
        keycloak_totp(eight)
    bad = {"type": "password", "secretData": "{}", "credentialData": '{"algorithm": "md5"}'}
    with pytest.raises(RowError):
        keycloak_password(bad)
