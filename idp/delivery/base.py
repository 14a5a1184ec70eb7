"""The delivery contract: one Sender protocol per channel (email, SMS, voice).

A sender either hands the message to its channel or raises :class:`DeliveryError`; it
never fails silently, so callers can tell the user plainly and offer another way.
Backends (``console``, ``smtp``, ``twilio``) are chosen in ``[delivery]``; see
``docs/DELIVERY.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class DeliveryError(Exception):
    """The message could not be handed to the channel.

    ``reason`` is one of ``"timeout"``, ``"refused"`` (the server or gateway answered
    no), ``"unavailable"`` (could not connect, or a server error after the retries) or
    ``"outbox"`` (the console outbox could not be written). Messages never contain the
    message body, so they are safe to log.
    """

    def __init__(self, message: str, *, reason: str = "unavailable"):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class EmailMessage:
    to: str
    subject: str
    text: str
    purpose: str  # e.g. "notify.factor_added": for logs and the outbox, never shown
    html: str | None = None  # sent as the text/html alternative of a multipart message
    reply_to: str | None = None  # overrides [delivery] email_reply_to for this message


@dataclass(frozen=True)
class TextMessage:
    """An SMS to an E.164 number."""

    to: str
    text: str
    purpose: str


@dataclass(frozen=True)
class VoiceMessage:
    """A phone call to an E.164 number that reads ``twiml``; ``text`` is what it says,
    in plain words (for the console outbox and logs of the development backend)."""

    to: str
    text: str
    twiml: str
    purpose: str


class EmailSender(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Deliver or raise :class:`DeliveryError`."""


class SmsSender(Protocol):
    def send(self, message: TextMessage) -> None:
        """Deliver or raise :class:`DeliveryError`."""


class VoiceSender(Protocol):
    def send(self, message: VoiceMessage) -> None:
        """Place the call or raise :class:`DeliveryError`."""
