"""Bringing existing users in and out: ``idp users import|export|delete``.

The file format (one record per user), as JSON lines or CSV with these columns:

=======================  ==============================================================
``email``                required; normalised as everywhere else (NFKC, lower case)
``email_verified``       true/false (default false: the user confirms the address)
``name``, ``given_name``, ``family_name``    optional
``sub``                  optional: the subject identifier relying parties already
                         hold (OpenID Connect Core 1.0 section 2, ``sub``); kept so their
                         accounts stay linked. Default: a new random one
``phone_number``         optional, any form ``phonenumbers`` parses ([otp] phone_region
                         for numbers without +country); stored in E.164 (the ``phone``
                         claim), ``phone_number_verified`` true/false
``mfa_phone``            ``sms`` or ``voice``: ``phone_number`` becomes an active
                         text-message or voice-call factor, encrypted at rest exactly as
                         the set-up page stores it (:mod:`idp.mfa.codes`)
``password_hash``        optional: argon2, bcrypt or PBKDF2 in the formats of
                         :mod:`idp.security.passwords`, stored as given and replaced by
                         argon2id at the user's next sign-in. Without it the user sets a
                         password with "Forgot your password?"
``totp_secret``          optional base32 TOTP secret (SHA-1, 6 digits, 30 s, at least
                         128 bits: RFC 4226 section 4): an active authenticator-app
                         factor, AES-GCM encrypted as :mod:`idp.mfa.totp` stores it
``status``               ``active`` (default) or ``disabled``
=======================  ==============================================================

A JSON input may also be a Keycloak export: a realm or users file (``{"users": [...]}``,
from ``kc.sh export``) or one Keycloak ``UserRepresentation`` per line. Its ``id``
becomes ``sub`` (Keycloak's tokens carry it as ``sub``), ``emailVerified``,
``firstName``, ``lastName``, ``enabled`` and the ``phoneNumber`` attribute map to the
columns above, a ``password`` credential (``pbkdf2-sha256``, ``pbkdf2-sha512``,
``pbkdf2``, ``argon2``) is converted to the equivalent PHC string and an ``otp``
credential of sub-type ``totp`` becomes ``totp_secret``.

Rows are checked one by one; a refused row is reported with its reason and the others
are taken. Users are written in batches of :data:`BATCH` (one transaction each), so an
interrupted import can be run again: rows already taken are then refused as existing.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import delete, func, or_, select

from . import audit
from .extensions import db
from .models import (
    AuthorizationCode,
    Consent,
    Factor,
    GroupMember,
    RecoveryCode,
    RefreshToken,
    RegistrationAttempt,
    User,
)
from .models.base import utcnow
from .security.email_address import is_valid
from .security.passwords import UnsupportedHash, ab64_encode, hash_scheme
from .services import Services

#: Users written per transaction.
BATCH = 1000
COLUMNS = (
    "email", "email_verified", "name", "given_name", "family_name", "sub", "phone_number",
    "phone_number_verified", "mfa_phone", "password_hash", "totp_secret", "status",
)  # fmt: skip
SECRET_COLUMNS = ("password_hash", "totp_secret")
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False, "": False}
_SUB = re.compile(r"[A-Za-z0-9._~:@-]{1,64}")
_MIN_TOTP_BYTES = 16
_LIMITS = {"name": 200, "given_name": 100, "family_name": 100}


class ImportFileError(ValueError):
    """The file as a whole cannot be read (not a row: the import does not start)."""


@dataclass
class Refusal:
    row: int
    email: str | None
    reason: str


@dataclass
class ImportReport:
    rows: int = 0
    taken: int = 0
    refused: list[Refusal] = field(default_factory=list)
    dry_run: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "taken": self.taken,
            "refused": len(self.refused),
            "dry_run": self.dry_run,
            "seconds": round(self.seconds, 3),
            "refusals": [
                {"row": r.row, "email": r.email, "reason": r.reason} for r in self.refused
            ],  # fmt: skip
        }


class RowError(ValueError):
    """A refused row; the message is the reason in the report."""


# -- reading ---------------------------------------------------------------------------


def _detect(path: Path, text: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    if path.suffix.lower() == ".csv":
        return "csv"
    return "json" if text.lstrip()[:1] in ("{", "[") else "csv"


def read_records(path: Path, fmt: str | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, record) for each user in the file; raises :class:`ImportFileError`."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportFileError(f"{path}: cannot be read ({exc})") from None
    if _detect(path, text, fmt) == "csv":
        yield from _csv_records(text, path)
        return
    stripped = text.lstrip()
    if stripped.startswith("[") or (stripped.startswith("{") and '"users"' in stripped[:4096]):
        try:
            whole = json.loads(text)
        except ValueError:
            whole = None
        if isinstance(whole, dict) and isinstance(whole.get("users"), list):
            whole = whole["users"]
        if isinstance(whole, list):
            for i, item in enumerate(whole, start=1):
                yield i, item if isinstance(item, dict) else {"_invalid": "not a JSON object"}
            return
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            yield i, {"_invalid": f"not JSON ({exc.msg})"}
            continue
        yield i, item if isinstance(item, dict) else {"_invalid": "not a JSON object"}


def _csv_records(text: str, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    unknown = [name for name in header if name not in COLUMNS]
    if "email" not in header:
        raise ImportFileError(f"{path}: the CSV header has no 'email' column")
    if unknown:
        raise ImportFileError(f"{path}: unknown CSV column(s) {', '.join(map(repr, unknown))} "
                              f"(known: {', '.join(COLUMNS)})")  # fmt: skip
    for record in reader:
        yield reader.line_num, {k: v for k, v in record.items() if k is not None}


# -- Keycloak --------------------------------------------------------------------------


def _kc_json(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            loaded = json.loads(value)
        except ValueError:
            raise RowError("Keycloak credential data is not JSON") from None
        if isinstance(loaded, dict):
            return loaded
    raise RowError("Keycloak credential data is not a JSON object")


def _kc_param(params: dict[str, Any], name: str, default: str) -> str:
    value = params.get(name, default)
    return str(value[0] if isinstance(value, list) and value else value)


def keycloak_password(credential: dict[str, Any]) -> str:
    """A Keycloak ``password`` credential as a PHC / passlib string."""
    secret = _kc_json(credential.get("secretData", {}))
    data = _kc_json(credential.get("credentialData", {}))
    algorithm = str(data.get("algorithm", ""))
    try:
        salt = base64.b64decode(str(secret.get("salt", "")), validate=True)
        digest = base64.b64decode(str(secret.get("value", "")), validate=True)
    except (binascii.Error, ValueError):
        raise RowError("Keycloak password salt or value is not base64") from None
    iterations = data.get("hashIterations")
    if not isinstance(iterations, int) or not salt or not digest:
        raise RowError("Keycloak password credential lacks hashIterations, salt or value")
    schemes = {"pbkdf2-sha256": "pbkdf2-sha256", "pbkdf2-sha512": "pbkdf2-sha512",
               "pbkdf2": "pbkdf2"}  # fmt: skip
    if algorithm in schemes:
        return f"${schemes[algorithm]}${iterations}${ab64_encode(salt)}${ab64_encode(digest)}"
    if algorithm == "argon2":
        params = data.get("additionalParameters") or {}
        kind = _kc_param(params, "type", "id")
        version = {"1.3": 19, "1.0": 16}.get(_kc_param(params, "version", "1.3"), 19)
        memory = _kc_param(params, "memory", "7168")
        parallelism = _kc_param(params, "parallelism", "1")

        def b64(raw: bytes) -> str:
            return base64.b64encode(raw).decode().rstrip("=")

        return (f"$argon2{kind}$v={version}$m={memory},t={iterations},p={parallelism}"
                f"${b64(salt)}${b64(digest)}")  # fmt: skip
    raise RowError(f"Keycloak password algorithm {algorithm!r} is not supported")


def keycloak_totp(credential: dict[str, Any]) -> str:
    """A Keycloak ``otp`` credential's secret as base32."""
    secret = _kc_json(credential.get("secretData", {}))
    data = _kc_json(credential.get("credentialData", {}))
    if data.get("subType", "totp") != "totp":
        raise RowError("Keycloak OTP credential is HOTP; only TOTP is supported")
    if (data.get("digits", 6), data.get("period", 30)) != (6, 30) or data.get(
        "algorithm", "HmacSHA1"
    ) not in ("HmacSHA1", "SHA1"):
        raise RowError("Keycloak OTP credential is not SHA-1, 6 digits, 30 seconds")
    value = str(secret.get("value", ""))
    if str(data.get("secretEncoding", "")).upper() == "BASE32":
        return value
    return base64.b32encode(value.encode("utf-8")).decode().rstrip("=")


def from_keycloak(user: dict[str, Any]) -> dict[str, Any]:
    """A Keycloak ``UserRepresentation`` as a record of this module's columns."""
    attributes = user.get("attributes") or {}

    def attribute(*names: str) -> str | None:
        for name in names:
            value = attributes.get(name)
            if isinstance(value, list) and value:
                return str(value[0])
            if isinstance(value, str):
                return value
        return None

    record: dict[str, Any] = {
        "email": user.get("email") or user.get("username"),
        "email_verified": bool(user.get("emailVerified", False)),
        "given_name": user.get("firstName"),
        "family_name": user.get("lastName"),
        "sub": user.get("id"),
        "status": "active" if user.get("enabled", True) else "disabled",
        "phone_number": attribute("phoneNumber", "phone_number", "phone"),
        "phone_number_verified": attribute("phoneNumberVerified", "phone_number_verified"),
    }
    names = [n for n in (record["given_name"], record["family_name"]) if n]
    record["name"] = " ".join(names) or None
    for credential in user.get("credentials") or []:
        kind = credential.get("type") if isinstance(credential, dict) else None
        if kind == "password" and "password_hash" not in record:
            record["password_hash"] = keycloak_password(credential)
        elif kind == "otp" and "totp_secret" not in record:
            record["totp_secret"] = keycloak_totp(credential)
    return {k: v for k, v in record.items() if v is not None}


# -- checking a row ------------------------------------------------------------------


@dataclass
class Candidate:
    row: int
    email: str
    user: dict[str, Any]  # User columns
    totp_secret: str | None
    mfa_phone: str | None


def _bool(record: dict[str, Any], key: str) -> bool:
    value = record.get(key, False)
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text not in _BOOLS:
        raise RowError(f"{key} must be true or false (got {str(value)[:20]!r})")
    return _BOOLS[text]


def _text(record: dict[str, Any], key: str) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise RowError(f"{key} must be text")
    text = str(value).strip()
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise RowError(f"{key} contains control characters")
    limit = _LIMITS.get(key)
    if limit and len(text) > limit:
        raise RowError(f"{key} is longer than {limit} characters")
    return text or None


def _totp_secret(raw: str) -> str:
    secret = re.sub(r"[\s-]", "", raw).upper().rstrip("=")
    try:
        decoded = base64.b32decode(secret + "=" * (-len(secret) % 8))
    except (binascii.Error, ValueError):
        raise RowError("totp_secret is not base32") from None
    if len(decoded) < _MIN_TOTP_BYTES:
        raise RowError(f"totp_secret is shorter than {_MIN_TOTP_BYTES * 8} bits (RFC 4226 "
                       "section 4)")  # fmt: skip
    return secret


def check_record(svc: Services, row: int, record: dict[str, Any]) -> Candidate:
    """The user a record describes, or raise :class:`RowError` with the reason."""
    from .mfa.codes.numbers import PhoneNumberError, parse_phone

    if "_invalid" in record:
        raise RowError(str(record["_invalid"]))
    if "credentials" in record or "username" in record or "emailVerified" in record:
        record = from_keycloak(record)
    unknown = sorted(set(record) - set(COLUMNS))
    if unknown:
        raise RowError(f"unknown field(s) {', '.join(unknown)}")
    raw_email = _text(record, "email")
    if not raw_email:
        raise RowError("email is missing")
    email = User.normalize_email(raw_email)
    if len(email) > 320 or not is_valid(email):
        raise RowError("email is not a valid address")
    status = _text(record, "status") or "active"
    if status not in ("active", "disabled"):
        raise RowError(f"status must be 'active' or 'disabled' (got {status[:20]!r})")
    sub = _text(record, "sub")
    if sub is not None and not _SUB.fullmatch(sub):
        raise RowError("sub must be 1 to 64 letters, digits or ._~:@-")
    password_hash = _text(record, "password_hash")
    if password_hash:
        try:
            hash_scheme(password_hash)
        except UnsupportedHash as exc:
            raise RowError(f"password_hash: {exc}") from None
        if len(password_hash) > 255:
            raise RowError("password_hash is longer than 255 characters")
    region = svc.settings.otp.phone_region
    phone = _text(record, "phone_number")
    mfa_phone = _text(record, "mfa_phone")
    if mfa_phone not in (None, "sms", "voice"):
        raise RowError(f"mfa_phone must be 'sms' or 'voice' (got {mfa_phone[:20]!r})")
    if mfa_phone and mfa_phone not in svc.settings.mfa.allowed_factors:
        raise RowError(f"mfa_phone {mfa_phone!r} is not in [mfa] allowed_factors")
    if phone:
        try:
            phone = parse_phone(phone, region=region, channel=mfa_phone or "voice")
        except PhoneNumberError as exc:
            raise RowError(f"phone_number: {exc}") from None
    elif mfa_phone:
        raise RowError("mfa_phone needs phone_number")
    totp_raw = _text(record, "totp_secret")
    totp_secret = _totp_secret(totp_raw) if totp_raw else None
    if totp_secret and "totp" not in svc.settings.mfa.allowed_factors:
        raise RowError("totp_secret given but 'totp' is not in [mfa] allowed_factors")
    user = {
        "email": email,
        "email_verified": _bool(record, "email_verified"),
        "name": _text(record, "name"),
        "given_name": _text(record, "given_name"),
        "family_name": _text(record, "family_name"),
        "phone_number": phone,
        "phone_number_verified": bool(phone) and _bool(record, "phone_number_verified"),
        "password_hash": password_hash,
        "password_changed_at": utcnow() if password_hash else None,
        "status": status,
    }
    if sub:
        user["sub"] = sub
    return Candidate(row, email, user, totp_secret, mfa_phone)


# -- importing -------------------------------------------------------------------------


def _existing(column: Any, values: list[str]) -> set[str]:
    if not values:
        return set()
    return set(db.session.execute(select(column).where(column.in_(values))).scalars())


def _write_batch(svc: Services, batch: list[Candidate], report: ImportReport) -> None:
    emails = _existing(User.email, [c.email for c in batch])
    subs = _existing(User.sub, [c.user["sub"] for c in batch if "sub" in c.user])
    fresh = []
    for c in batch:
        if c.email in emails:
            report.refused.append(Refusal(c.row, c.email, "a user with this email exists"))
        elif c.user.get("sub") in subs:
            report.refused.append(Refusal(c.row, c.email, "a user with this sub exists"))
        else:
            fresh.append(c)
    users = [User(**c.user) for c in fresh]
    db.session.add_all(users)
    db.session.flush()
    now = utcnow()
    factors = []
    for c, user in zip(fresh, users, strict=True):
        if c.totp_secret:
            factors.append(Factor(
                user_id=user.id, type="totp", label="Authenticator app", status="active",
                secret_enc=svc.secrets.encrypt(c.totp_secret, context=f"totp:{user.id}"),
                activated_at=now, data={"imported": True},
            ))  # fmt: skip
        if c.mfa_phone:
            from .mfa.codes.numbers import mask_phone

            masked = mask_phone(user.phone_number or "")
            factors.append(Factor(
                user_id=user.id, type=c.mfa_phone, label=masked, status="active",
                # The context the code factors use for phone numbers (idp.mfa.codes.phone).
                secret_enc=svc.secrets.encrypt(user.phone_number or "",
                                               context=f"phone:{user.id}"),
                activated_at=now, data={"masked": masked, "imported": True},
            ))  # fmt: skip
    db.session.add_all(factors)
    db.session.flush()
    report.taken += len(fresh)


def import_users(
    svc: Services,
    records: Iterable[tuple[int, dict[str, Any]]],
    *,
    dry_run: bool = False,
    source: str = "",
    actor: str = "cli",
    progress: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Check every record and create the users of the good ones (see the module doc).

    With ``dry_run`` everything is checked, duplicates against the database included,
    and nothing is written. ``progress`` is called after each batch.
    """
    start = time.monotonic()
    report = ImportReport(dry_run=dry_run)
    seen_emails: dict[str, int] = {}
    seen_subs: dict[str, int] = {}
    batch: list[Candidate] = []

    def flush() -> None:
        _write_batch(svc, batch, report)
        if dry_run:
            db.session.rollback()
        else:
            db.session.commit()
        batch.clear()
        report.seconds = time.monotonic() - start
        if progress:
            progress(report)

    for row, record in records:
        report.rows += 1
        try:
            candidate = check_record(svc, row, record)
        except RowError as exc:
            email = record.get("email") if isinstance(record.get("email"), str) else None
            report.refused.append(Refusal(row, email, str(exc)))
            continue
        first = seen_emails.setdefault(candidate.email, row)
        if first != row:
            report.refused.append(Refusal(row, candidate.email, f"same email as row {first}"))
            continue
        sub = candidate.user.get("sub")
        if sub is not None and seen_subs.setdefault(sub, row) != row:
            report.refused.append(Refusal(row, candidate.email,
                                          f"same sub as row {seen_subs[sub]}"))  # fmt: skip
            continue
        batch.append(candidate)
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    report.refused.sort(key=lambda r: r.row)
    if not dry_run and report.rows:
        audit.record("users.imported", actor=actor, source=source, rows=report.rows,
                     taken=report.taken, refused=len(report.refused))  # fmt: skip
        db.session.commit()
    report.seconds = time.monotonic() - start
    return report


# -- exporting -------------------------------------------------------------------------


def export_records(svc: Services, *, with_secrets: bool = False) -> Iterator[dict[str, Any]]:
    """Every user as a record of :data:`COLUMNS` (secrets only ``with_secrets``)."""
    factor_types = ("totp", "sms", "voice") if with_secrets else ()
    last = 0
    while True:
        users = list(db.session.execute(
            select(User).where(User.id > last).order_by(User.id).limit(BATCH)
        ).scalars())  # fmt: skip
        if not users:
            return
        last = users[-1].id
        factors: dict[int, list[Factor]] = {}
        if factor_types:
            for f in db.session.execute(
                select(Factor)
                .where(Factor.user_id.in_([u.id for u in users]), Factor.status == "active",
                       Factor.type.in_(factor_types))
                .order_by(Factor.id)
            ).scalars():  # fmt: skip
                factors.setdefault(f.user_id, []).append(f)
        for user in users:
            yield _record(svc, user, factors.get(user.id, []), with_secrets)
        db.session.expunge_all()


def _record(svc: Services, user: User, factors: list[Factor], with_secrets: bool) -> dict:
    record: dict[str, Any] = {
        "email": user.email,
        "email_verified": bool(user.email_verified),
        "name": user.name,
        "given_name": user.given_name,
        "family_name": user.family_name,
        "sub": user.sub,
        "phone_number": user.phone_number,
        "phone_number_verified": bool(user.phone_number_verified),
        "mfa_phone": None,
        "status": user.status,
    }
    if not with_secrets:
        return record
    record["password_hash"] = user.password_hash
    record["totp_secret"] = None
    for f in factors:
        if f.type == "totp" and record["totp_secret"] is None:
            record["totp_secret"] = svc.secrets.decrypt(f.secret_enc or "",
                                                        context=f"totp:{user.id}")  # fmt: skip
        elif f.type in ("sms", "voice") and record["mfa_phone"] is None:
            number = svc.secrets.decrypt(f.secret_enc or "", context=f"phone:{user.id}")
            if record["phone_number"] in (None, number):
                record["phone_number"], record["mfa_phone"] = number, f.type
    return record


def write_records(records: Iterable[dict[str, Any]], out: IO[str], fmt: str,
                  with_secrets: bool) -> int:  # fmt: skip
    """Write *records* as JSON lines or CSV; return how many."""
    columns = [c for c in COLUMNS if with_secrets or c not in SECRET_COLUMNS]
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerow({k: "" if v is None else str(v).lower() if isinstance(v, bool)
                             else v for k, v in record.items()})  # fmt: skip
            count += 1
        return count
    for record in records:
        out.write(json.dumps({k: v for k, v in record.items() if v is not None and k in columns},
                             ensure_ascii=False) + "\n")  # fmt: skip
        count += 1
    return count


# -- listing and deleting ----------------------------------------------------------------


def search_users(search: str | None, limit: int, offset: int) -> tuple[list[User], int]:
    """Users whose email or name contains *search* (case-insensitive), by id; and the total."""
    query = select(User)
    if search:
        pattern = f"%{search.strip().lower()}%"
        name = func.lower(func.coalesce(User.name, ""))
        query = query.where(or_(func.lower(User.email).like(pattern), name.like(pattern)))
    total = db.session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = db.session.execute(query.order_by(User.id).limit(limit).offset(offset)).scalars()
    return list(rows), total


def delete_user(svc: Services, user: User, *, actor: str) -> dict[str, int]:
    """Remove *user* with their factors, recovery codes, codes, refresh tokens, consents
    and sessions; pseudonymise their audit events (:func:`idp.audit.pseudonymise_user`)
    so ``idp audit verify`` still passes. Returns what was removed."""
    user_id, email = user.id, user.email
    db.session.commit()
    audit.seal()  # the user's events into the chain before this transaction writes
    svc.sessions.destroy_all(user_id)  # also revokes the session-bound refresh tokens
    counts = {}
    # (group_members too: SQLite does not enforce ON DELETE CASCADE, and a user created
    # later under the same id must not inherit the groups.)
    for model in (Factor, RecoveryCode, AuthorizationCode, RefreshToken, Consent, GroupMember):
        result = db.session.execute(delete(model).where(model.user_id == user_id))
        counts[model.__tablename__] = result.rowcount or 0
    db.session.execute(delete(RegistrationAttempt).where(RegistrationAttempt.email == email))
    _, counts["audit_events_pseudonymised"] = audit.pseudonymise_user(
        user_id, secret=svc.settings.secret_key, actor=actor
    )
    db.session.delete(user)
    db.session.commit()
    return counts
