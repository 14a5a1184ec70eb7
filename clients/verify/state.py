"""The app's local state: accounts and their device keys, in one JSON file.

Default location: ``~/.config/idp-verify/accounts.json`` (``$XDG_CONFIG_HOME`` is
honoured), overridden by ``--state`` or ``IDP_VERIFY_STATE``. The file holds private
keys and TOTP secrets, so it is written atomically with mode 0600 in a 0700 directory,
and a file readable by others is refused.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ENV_VAR = "IDP_VERIFY_STATE"


class StateError(Exception):
    """The state file is unreadable, malformed or too widely readable."""


@dataclass
class Account:
    issuer: str
    device_id: str
    alg: str
    private_key: str  # PEM, PKCS#8
    account: str = ""
    service_name: str = ""
    label: str = ""
    totp: dict[str, Any] = field(default_factory=dict)
    added: int = 0

    @property
    def title(self) -> str:
        return f"{self.account or '?'} at {self.service_name or self.issuer}"


def default_path() -> Path:
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "idp-verify" / "accounts.json"


def load(path: Path) -> list[Account]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return []
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StateError(
            f"{path} is readable by other users (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run: chmod 600 {path}"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [Account(**a) for a in data.get("accounts", [])]
    except (OSError, ValueError, TypeError) as exc:
        raise StateError(f"{path} cannot be read: {exc}") from exc


def save(path: Path, accounts: list[Account]) -> None:
    """Write atomically (temporary file, fsync, rename) with mode 0600."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    body = json.dumps({"version": 1, "accounts": [asdict(a) for a in accounts]}, indent=2)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(body + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
