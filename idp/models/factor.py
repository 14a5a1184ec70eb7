"""A user's second factors ("MFA devices") and recovery codes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .base import UTCDateTime, utcnow


class Factor(db.Model):
    """One enrolled (or enrolling) second factor.

    ``status`` is ``pending`` from enrollment start until the user proves possession
    (a valid code, a verified attestation), then ``active``. Secrets that must be read
    back (TOTP seeds) are AES-GCM encrypted (:class:`idp.security.crypto.SecretBox`).
    """

    __tablename__ = "factors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(16))  # totp | webauthn | recovery | ...
    label: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # TOTP
    secret_enc: Mapped[str | None] = mapped_column(Text)
    last_step: Mapped[int | None] = mapped_column(Integer)
    # WebAuthn
    credential_id: Mapped[str | None] = mapped_column(String(1400), unique=True)
    public_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(Integer, default=0)
    transports: Mapped[list[str]] = mapped_column(JSON, default=list)
    aaguid: Mapped[str | None] = mapped_column(String(36))
    device_type: Mapped[str | None] = mapped_column(String(16))  # single_device | multi_device
    # Anything else a factor type needs (e.g. the delivery address of a code factor).
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    @property
    def is_active(self) -> bool:
        return self.status == "active"


class RecoveryCode(db.Model):
    """One look-up secret; ``code_hash`` is a keyed hash, ``used_at`` burns it."""

    __tablename__ = "recovery_codes"
    __table_args__ = (Index("ix_recovery_codes_user_hash", "user_id", "code_hash", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
