"""Initial access tokens for dynamic client registration (RFC 7591 section 3).

Admins issue them (``idp clients issue-registration-token``); only the SHA-256 of the
token is stored. Each use decrements ``uses_left`` with a conditional ``UPDATE``, so a
single-use token can register exactly one client even under concurrent requests.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .base import UTCDateTime, utcnow


class RegistrationToken(db.Model):
    __tablename__ = "registration_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    max_uses: Mapped[int] = mapped_column(Integer, default=1)
    uses_left: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RegistrationAttempt(db.Model):
    """One New User Registration waiting for its mailbox to be proven.

    No account exists until the owner of the address opens the link of *her* attempt and
    confirms it with the password she chose: every attempt carries its own password
    hash, so a stranger who registered the same address first gains nothing (the
    pre-account hijack), and confirming one attempt deletes every other attempt for the
    address.
    """

    __tablename__ = "registration_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
