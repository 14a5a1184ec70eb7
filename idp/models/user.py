"""End users."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import Boolean, Integer, String, func, update
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.orm.attributes import set_committed_value

from ..extensions import db
from .base import UTCDateTime, utcnow


def new_subject() -> str:
    """Public, stable, non-guessable subject identifier (OIDC Core 2, ``sub``)."""
    return secrets.token_hex(16)


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sub: Mapped[str] = mapped_column(String(64), unique=True, default=new_subject)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str | None] = mapped_column(String(200))
    given_name: Mapped[str | None] = mapped_column(String(100))
    family_name: Mapped[str | None] = mapped_column(String(100))
    phone_number: Mapped[str | None] = mapped_column(String(32))
    phone_number_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | disabled
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    # The failed-attempt lock (too many wrong passwords): a password reset clears it.
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The administrative lock (help desk or administrator): only an unlock clears it.
    admin_locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Second-factor guessing: consecutive failures across all factors, and the lock.
    mfa_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    mfa_locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # WebAuthn user handle (random, never the email: WebAuthn L2 14.6.1).
    webauthn_handle: Mapped[str | None] = mapped_column(String(128), unique=True)
    # Administration: "user", "helpdesk" (help-desk pages) or "admin" (everything).
    role: Mapped[str] = mapped_column(String(16), default="user", server_default="user")
    # Last "set up a second sign-in step" reminder sent from the MFA adoption dashboard.
    mfa_reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The language of the pages, emails and messages (a supported locale, e.g. "es").
    locale: Mapped[str | None] = mapped_column(String(16))
    # When the "sign in faster with a passkey" offer was last shown (at most monthly).
    passkey_offered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @staticmethod
    def normalize_email(email: str) -> str:
        """The one normalisation of addresses (NFKC, stripped, lower case)."""
        from ..security.email_address import normalize

        return normalize(email)

    @property
    def is_active(self) -> bool:
        return self.status == "active"

    def is_locked(self, now: datetime) -> bool:
        """The failed-attempt lock is on (a browser trusted by this account may pass it)."""
        return self.locked_until is not None and self.locked_until > now

    def is_admin_locked(self, now: datetime) -> bool:
        """The administrative lock is on: nobody signs in until it is lifted or ends."""
        return self.admin_locked_until is not None and self.admin_locked_until > now

    def count_failure(self, counter: str) -> int:
        """Add one to the failure counter *counter* (``failed_logins`` or
        ``mfa_failures``) in the database itself and return the new value.

        ``UPDATE ... SET n = n + 1 RETURNING n`` takes the row lock, so concurrent
        failures are each counted (a read, then a write of n + 1, would let parallel
        guesses count as one and push the lockout further away).
        """
        column = getattr(User, counter)
        value = db.session.execute(
            update(User)
            .where(User.id == self.id)
            .values({counter: func.coalesce(column, 0) + 1})
            .returning(column)
            .execution_options(synchronize_session=False)
        ).scalar_one()
        set_committed_value(self, counter, value)
        return value

    def get_user_id(self) -> int:  # Authlib's user contract
        return self.id
