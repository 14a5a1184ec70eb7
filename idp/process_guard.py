"""One serving process for the in-memory store, whatever server and flags start it.

``[store] backend = "memory"`` keeps sessions, sign-in transactions, one-time codes and
rate limits in the memory of one process. A second process serving the same provider
would have none of them: users bounce between "signed in" and "signed out", codes are
"expired", and the guess limits count half the guesses. The settings check refuses
``[server] workers`` and ``WEB_CONCURRENCY`` above 1, but a server can be given its
process count in other ways (``gunicorn -w 4``, ``--preload``, a second ``idp run``), so
the rule is enforced where it holds whatever the flags: in the processes that serve.

Every serving process must own an exclusive ``flock`` on the *claim file* of the
deployment (:func:`claim_path`, one per database), taken through a file description the
process opened itself:

* at start (``idp run``, ``idp.wsgi``): a second server, or a second gunicorn worker
  that builds its own app, cannot take the lock and refuses to start (gunicorn then
  stops with "Worker failed to boot");
* at the first request of a process that did not take the lock itself (a worker forked
  from a ``--preload`` master, which inherited the master's description): it drops the
  inherited lock and takes its own, so exactly one forked worker gets it; any other
  records itself in the *conflict file* and answers 503;
* at every request (one ``stat``): while a conflict file names a live process, every
  process answers 503 with the reason, so no request is served half-stateless.

``flock`` locks are released by the kernel when their process dies, so a crashed server
never leaves a stale claim; a conflict file is removed once the process it names is gone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import tempfile
import threading
from pathlib import Path

from sqlalchemy.engine import make_url

_ADVICE = (
    "run a single process (one gunicorn worker, no second `idp run`) or set [store] "
    "backend = 'redis'"
)
MESSAGE = (
    "[store] backend 'memory' keeps sessions and limits in one process, but another "
    "process (pid {pid}) already serves this provider; " + _ADVICE
)
CONFLICT = (
    "[store] backend 'memory' keeps sessions and limits in one process, but a second "
    "process (pid {pid}) was started to serve this provider too; " + _ADVICE
)


class SecondProcess(RuntimeError):
    """Another process already serves this provider on the in-memory store."""


def claim_path(database_url: str) -> Path:
    """The claim file of a deployment: beside its SQLite file, else in the temp folder
    under a digest of the database URL."""
    with contextlib.suppress(Exception):  # an unparsable URL fails elsewhere, with a message
        url = make_url(database_url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            db_file = Path(url.database)
            return db_file.with_name(db_file.name + ".serving.lock")
    digest = hashlib.sha256(database_url.encode()).hexdigest()[:20]
    return Path(tempfile.gettempdir()) / f"idp-memory-store-{digest}.lock"


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


class ProcessGuard:
    """The claim of one deployment (one per lock path per process)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conflict = path.with_name(path.name + ".conflict")
        self.pid: int | None = None  # the process that holds the claim through self.fd
        self.fd: int | None = None
        self.refused: str | None = None  # this process's own refusal, once known
        self._lock = threading.Lock()

    def claim(self) -> None:
        """Take the claim for this process, or raise :class:`SecondProcess`."""
        with self._lock:
            pid = os.getpid()
            if self.pid == pid:
                return
            if self.fd is not None:
                # Inherited across fork: release the parent's lock (it belongs to the
                # file description every child shares) and take one of our own.
                with contextlib.suppress(OSError):
                    fcntl.flock(self.fd, fcntl.LOCK_UN)
                os.close(self.fd)
                self.fd, self.pid = None, None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                holder = _read_pid(self.path)
                self.refused = MESSAGE.format(pid=holder or "unknown")
                self._record_conflict(pid)
                raise SecondProcess(self.refused) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{pid}\n".encode(), 0)
            self.fd, self.pid, self.refused = fd, pid, None
            other = _read_pid(self.conflict)
            if other and not _alive(other):
                with contextlib.suppress(FileNotFoundError):
                    self.conflict.unlink()

    def _record_conflict(self, pid: int) -> None:
        tmp = self.conflict.with_name(f".{self.conflict.name}.{pid}")
        tmp.write_text(f"{pid}\n")
        os.replace(tmp, self.conflict)

    def check(self) -> str | None:
        """At each request: ``None`` to serve, else the reason to refuse."""
        if self.pid != os.getpid():
            try:
                self.claim()
            except SecondProcess as exc:
                return str(exc)
        if self.refused:
            return self.refused
        try:
            other = _read_pid(self.conflict) if self.conflict.exists() else 0
        except OSError:
            other = 0
        if other and other != os.getpid() and _alive(other):
            return CONFLICT.format(pid=other)
        return None


_guards: dict[Path, ProcessGuard] = {}
_guards_lock = threading.Lock()


def guard_for(database_url: str) -> ProcessGuard:
    """The process's guard of the deployment on *database_url* (shared by its apps)."""
    path = claim_path(database_url)
    with _guards_lock:
        found = _guards.get(path)
        if found is None:
            found = _guards[path] = ProcessGuard(path)
        return found
