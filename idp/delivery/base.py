"""The delivery contract.

A sender either delivers the message to its channel or raises :class:`DeliveryError`;
it never fails silently, so callers can tell the user and offer another way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class DeliveryError(Exception):
    """The message could not be handed to the channel (refused, timed out, down)."""


@dataclass(frozen=True)
class EmailMessage:
    to: str
    subject: str
    text: str
    purpose: str  # e.g. "notify.factor_added": for logs and the outbox, never shown


class EmailSender(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Deliver or raise :class:`DeliveryError`."""
