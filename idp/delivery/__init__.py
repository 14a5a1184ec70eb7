"""Message delivery: one Sender protocol per channel, backends chosen in config."""

from .base import (
    DeliveryError,
    EmailMessage,
    EmailSender,
    SmsSender,
    TextMessage,
    VoiceMessage,
    VoiceSender,
)
from .console import ConsoleEmailSender, ConsoleSmsSender, ConsoleVoiceSender, read_outbox

__all__ = [
    "ConsoleEmailSender",
    "ConsoleSmsSender",
    "ConsoleVoiceSender",
    "DeliveryError",
    "EmailMessage",
    "EmailSender",
    "SmsSender",
    "TextMessage",
    "VoiceMessage",
    "VoiceSender",
    "read_outbox",
]
