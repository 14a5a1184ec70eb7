"""Console delivery: log the message and append it to a JSON-lines outbox file.

The embedded default, for development and tests; the development page ``/dev/outbox``
lists the outbox. Never use it in production: messages (and any codes in them) land on
disk. Every record has ``at``, ``channel`` (``email``, ``sms`` or ``voice``), ``to``,
``text`` and ``purpose``; emails add ``subject`` (and ``html``), calls add ``twiml``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from .base import DeliveryError, EmailMessage, TextMessage, VoiceMessage

log = logging.getLogger("idp.delivery")
_lock = threading.Lock()


def append_record(outbox: Path, record: dict[str, Any]) -> None:
    """Append one record to the outbox (mode 0600), or raise :class:`DeliveryError`."""
    try:
        outbox.parent.mkdir(parents=True, exist_ok=True)
        with _lock:
            fd = os.open(outbox, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
    except OSError as exc:
        raise DeliveryError(f"cannot write the outbox: {exc}", reason="outbox") from exc


def read_outbox(outbox: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All records in the outbox, oldest first (development page and tests)."""
    path = Path(outbox)
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


class ConsoleEmailSender:
    def __init__(self, outbox: str | os.PathLike[str]):
        self.outbox = Path(outbox)

    def send(self, message: EmailMessage) -> None:
        record = {
            "at": int(time.time()),
            "channel": "email",
            "to": message.to,
            "subject": message.subject,
            "text": message.text,
            "purpose": message.purpose,
        }
        if message.html is not None:
            record["html"] = message.html
        log.info("email to %s: %s", message.to, message.subject)
        append_record(self.outbox, record)

    def read(self) -> list[dict]:
        """All messages in the outbox, oldest first (development page and tests)."""
        return read_outbox(self.outbox)


class ConsoleSmsSender:
    """Text messages to the outbox (channel ``sms``), with their full text."""

    def __init__(self, outbox: str | os.PathLike[str]):
        self.outbox = Path(outbox)

    def send(self, message: TextMessage) -> None:
        log.info("sms to %s (%s)", message.to, message.purpose)
        append_record(
            self.outbox,
            {"at": int(time.time()), "channel": "sms", "to": message.to,
             "text": message.text, "purpose": message.purpose},
        )  # fmt: skip


class ConsoleVoiceSender:
    """Voice calls to the outbox (channel ``voice``): what the call would say, and its TwiML."""

    def __init__(self, outbox: str | os.PathLike[str]):
        self.outbox = Path(outbox)

    def send(self, message: VoiceMessage) -> None:
        log.info("voice call to %s (%s)", message.to, message.purpose)
        append_record(
            self.outbox,
            {"at": int(time.time()), "channel": "voice", "to": message.to,
             "text": message.text, "twiml": message.twiml, "purpose": message.purpose},
        )  # fmt: skip
