"""One key ring for every instance: a shared key directory, followed without restarts.

How instances share the ring: every instance mounts the **same key directory**
(``[keys] directory``: a network file system, a shared volume), the way they share one
database. The directory stays the one source of truth: ``idp keys generate|rotate``
change it under an exclusive ``flock`` and replace files atomically
(:mod:`idp.keys.ring`), so a reader never sees half a rotation. Back it up with the
database (docs/OPERATIONS.md, "Backup and restore").

How a rotation reaches the instances: :class:`SharedKeyRing` is what the app signs and
publishes with. It reloads the ring from the directory when

* the **generation** in the shared store changes (``keys.generation`` under the store
  prefix, incremented by ``idp keys generate|rotate`` after the files are written,
  read at most once every :data:`CHECK_INTERVAL` seconds per process); with Redis a
  rotation therefore reaches every instance within about a second;
* the directory's **fingerprint** (names, sizes and modification times of the key
  files) changes, looked at every :data:`RESCAN_INTERVAL` seconds: this bounds the
  delay when the store is not shared (the in-memory store, one process), when Redis was
  down at the moment of the rotation, or when someone changed the files by hand.

The signing key and the JWKS come from the same loaded ring, so they change together.
Between two instances the change is never a gap: the new active key was published as
"next" for a whole rotation period, and the old one stays published as "retired", so
a token signed by either instance verifies at both. A reload that fails (a key file
being restored by hand, say) keeps the ring in use and is logged; the next check retries.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from joserfc import jwk

from ..store import Store, StoreUnavailable
from .ring import KeyRing, KeyRingError

log = logging.getLogger("idp.keys")

#: The store key every instance reads (under the store prefix).
GENERATION_KEY = "keys.generation"
_GENERATION_TTL = 400 * 86400
#: Seconds between two reads of the generation in one process.
CHECK_INTERVAL = 1.0
#: Seconds between two looks at the key directory itself.
RESCAN_INTERVAL = 5.0


def fingerprint(directory: str | os.PathLike[str]) -> tuple[tuple[str, int, int, int], ...]:
    """(name, size, mtime_ns, inode) of every key file: changes with any write."""
    out = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.endswith(".json") and not entry.name.startswith("."):
                    st = entry.stat(follow_symlinks=False)
                    out.append((entry.name, st.st_size, st.st_mtime_ns, st.st_ino))
    except OSError:
        return ()
    return tuple(sorted(out))


def announce_change(store: Store) -> bool:
    """Tell every instance the ring changed (after the files are written). False when
    the store is unreachable: instances then notice within :data:`RESCAN_INTERVAL`."""
    try:
        store.incr(GENERATION_KEY, _GENERATION_TTL)
    except StoreUnavailable as exc:
        log.warning("key change not announced (store unavailable; instances see it within "
                    "%ss): %s", RESCAN_INTERVAL, exc)  # fmt: skip
        return False
    return True


class SharedKeyRing:
    """A :class:`KeyRing` that follows the shared key directory (see the module doc).

    It offers the ring's interface (``sign_jwt``, ``verify_jwt``, ``jwks``,
    ``public_key``, ``signing_key``, ``kid``, ``alg``) and answers each call from the
    ring current at that moment.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        load: Callable[[], KeyRing],
        store: Store | None,
        *,
        check_interval: float = CHECK_INTERVAL,
        rescan_interval: float = RESCAN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = Path(directory)
        self._load = load
        # Only a store every process shares can carry the generation.
        self._store = store if store is not None and getattr(store, "shared", False) else None
        self.check_interval = check_interval
        self.rescan_interval = rescan_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._generation = self._read_generation()
        self._fingerprint = fingerprint(self.directory)
        self._ring = load()
        now = clock()
        self._checked = self._scanned = now
        self.reloads = 0

    def _read_generation(self) -> bytes | None:
        if self._store is None:
            return None
        try:
            return self._store.get(GENERATION_KEY) or b"0"
        except StoreUnavailable:
            return None

    def current(self) -> KeyRing:
        """The ring to use now (reloaded first when the shared ring has changed)."""
        now = self._clock()
        if now - self._checked < self.check_interval:
            return self._ring
        with self._lock:
            if now - self._checked < self.check_interval:
                return self._ring
            self._checked = now
            generation = self._read_generation()
            announced = generation is not None and generation != self._generation
            if announced or now - self._scanned >= self.rescan_interval:
                self._scanned = now
                seen = fingerprint(self.directory)
                if announced or seen != self._fingerprint:
                    self._reload(seen, generation)
                elif generation is not None:
                    self._generation = generation
            return self._ring

    def refresh(self) -> KeyRing:
        """Reload now (after a rotation made by this process)."""
        with self._lock:
            self._reload(fingerprint(self.directory), self._read_generation())
            self._checked = self._scanned = self._clock()
            return self._ring

    def _reload(self, seen: tuple, generation: bytes | None) -> None:
        try:
            ring = self._load()
        except KeyRingError as exc:
            log.error("key ring not reloaded, still signing with %s: %s", self._ring.kid, exc)
            return
        if ring.kid != self._ring.kid:
            log.info("key ring reloaded: signing with %s (was %s)", ring.kid, self._ring.kid)
        self._ring, self._fingerprint = ring, seen
        if generation is not None:
            self._generation = generation
        self.reloads += 1

    # -- the KeyRing interface -------------------------------------------------------

    @property
    def kid(self) -> str:
        return self.current().kid

    @property
    def alg(self) -> str:
        return self.current().alg

    @property
    def retire_for(self) -> int:
        return self.current().retire_for

    def signing_key(self) -> jwk.Key:
        return self.current().signing_key()

    def public_key(self, kid: str) -> jwk.Key | None:
        return self.current().public_key(kid)

    def jwks(self) -> dict[str, Any]:
        return self.current().jwks()

    def sign_jwt(self, claims: Mapping[str, Any], *, typ: str | None = None) -> str:
        return self.current().sign_jwt(claims, typ=typ)

    def verify_jwt(self, token: str, *, typ: str | None = None) -> tuple[dict, dict]:
        return self.current().verify_jwt(token, typ=typ)
