"""One-time status messages that only the server can write (post/redirect/get).

A page that acts on a form post stores what it did here and redirects; the next page
this browser renders reads the message once and deletes it. Nothing in the URL says
what to show, so a link such as ``/admin/users/7?m=Your+account+is+compromised,+call+...``
cannot put words in a trusted banner (a phishing aid), and a reload does not repeat
the message.

Messages live in the store (so every instance sees them) under the SHA-256 of the
browser's ``idp_browser`` id, never the id itself (a store dump does not give out
cookie values), for :data:`FLASH_TTL` seconds at most, like everything in the store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .security.crypto import hash_token
from .services import services
from .web import browser_cookie, browser_id

#: How long a message waits for the next page: the redirect follows at once, so this
#: only bounds what a browser that never comes back leaves in the store.
FLASH_TTL = 120
#: At most this many messages wait at once (the oldest are dropped).
FLASH_MAX = 5
KINDS = ("status", "alert")


@dataclass(frozen=True)
class Flash:
    """A message for the next page: ``kind`` is its ARIA role (``status`` for what was
    done, ``alert`` for what went wrong)."""

    text: str
    kind: str = "status"


def _key(browser: str) -> str:
    return f"flash:{hash_token(browser)}"


def _decode(raw: bytes | None) -> list[Flash]:
    if not raw:
        return []
    try:
        items = json.loads(raw)
    except ValueError:
        return []
    return [
        Flash(str(i["text"]), i["kind"])
        for i in items
        if isinstance(i, dict) and i.get("kind") in KINDS and "text" in i
    ]


def flash(text: str, kind: str = "status") -> None:
    """Keep *text* for the next page this browser renders (once)."""
    if kind not in KINDS:
        raise ValueError(f"unknown flash kind {kind!r}")
    store = services().store
    key = _key(browser_id())
    pending = [*_decode(store.get(key)), Flash(text, kind)][-FLASH_MAX:]
    body = json.dumps([{"text": f.text, "kind": f.kind} for f in pending]).encode()
    store.set(key, body, FLASH_TTL)


def take_flashes() -> list[Flash]:
    """The messages waiting for this browser, deleted as they are read (``GETDEL``), so
    they show once. A browser without its id cookie has none (and gets no new id here)."""
    if not browser_cookie():
        return []
    return _decode(services().store.take(_key(browser_id())))
