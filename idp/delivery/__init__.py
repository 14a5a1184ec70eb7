"""Message delivery: one Sender protocol per channel, backends chosen in config."""

from .base import DeliveryError, EmailMessage, EmailSender
from .console import ConsoleEmailSender

__all__ = ["ConsoleEmailSender", "DeliveryError", "EmailMessage", "EmailSender"]
