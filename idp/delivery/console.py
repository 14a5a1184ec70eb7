"""Console delivery: log the message and append it to a JSON-lines outbox file.

The embedded default, for development and tests; a development page can list the
outbox. Never use it in production: messages (and any codes in them) land on disk.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from .base import DeliveryError, EmailMessage

log = logging.getLogger("idp.delivery")
_lock = threading.Lock()


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
        log.info("email to %s: %s", message.to, message.subject)
        try:
            self.outbox.parent.mkdir(parents=True, exist_ok=True)
            with _lock:
                fd = os.open(self.outbox, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                with os.fdopen(fd, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(record) + "\n")
        except OSError as exc:
            raise DeliveryError(f"cannot write the outbox: {exc}") from exc

    def read(self) -> list[dict]:
        """All messages in the outbox, oldest first (development page and tests)."""
        if not self.outbox.exists():
            return []
        with self.outbox.open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
