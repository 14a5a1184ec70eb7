"""The provider's signing key ring: JWK files on disk, rotation, JWKS, JWT sign/verify.

Layout: one file per key, ``<directory>/<kid>.json``, mode 0600, holding the private JWK
as exported by joserfc (``kty``, key material, ``kid``, ``alg``, ``use: "sig"``) plus
three members of our own:

``status``
    ``"active"`` (signs tokens), ``"next"`` (published in JWKS, promoted by the next
    rotation, so relying parties have cached it before it signs anything) or ``"retired"``
    (published until the tokens it signed have expired, then deleted).
``created_at`` / ``retired_at``
    Unix times (``retired_at`` only on retired keys).

The ``kid`` is the RFC 7638 SHA-256 thumbprint of the public key: stable and unique.
RS256 keys are RSA 2048 (the minimum NIST SP 800-131A allows; key generation and signing
are several times faster than 3072) and ES256 keys use P-256.

Writers (:func:`generate_key`, :func:`ensure_keys`, :func:`rotate_keys`) hold an exclusive
``flock`` on the directory and replace files atomically; readers take a shared lock, so
they never see a rotation half done. A :class:`KeyRing` is a snapshot of the directory;
the application serves through :class:`idp.keys.shared.SharedKeyRing`, which reloads it
when a rotation announces itself or the files change, so no restart is needed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jwk, jws, jwt
from joserfc.errors import JoseError

__all__ = [
    "SUPPORTED_ALGS",
    "KeyInfo",
    "KeyRing",
    "KeyRingError",
    "TokenVerificationError",
    "ensure_keys",
    "generate_key",
    "list_keys",
    "rotate_keys",
]

log = logging.getLogger("idp.keys")

SUPPORTED_ALGS: tuple[str, ...] = ("RS256", "ES256")

RSA_KEY_SIZE = 2048
EC_CURVE = "P-256"

STATUS_ACTIVE = "active"
STATUS_NEXT = "next"
STATUS_RETIRED = "retired"
_STATUSES = (STATUS_ACTIVE, STATUS_NEXT, STATUS_RETIRED)
_STATUS_ORDER = {STATUS_ACTIVE: 0, STATUS_NEXT: 1, STATUS_RETIRED: 2}

# Members we add to the JWK in the file; stripped before handing the JWK to joserfc.
_META_MEMBERS = ("status", "created_at", "retired_at")
# Key type, curve and public parameters per algorithm: the only members a public JWK gets.
_KTY = {"RS256": "RSA", "ES256": "EC"}
_PUBLIC_PARAMS = {"RSA": ("n", "e"), "EC": ("crv", "x", "y")}


# Key files already reported as readable by others (the warning is printed once).
_MODE_WARNED: set[tuple[Path, int]] = set()


class KeyRingError(Exception):
    """The key directory is unusable: unreadable or invalid file, no active key,
    unsupported algorithm, or an operation that does not fit the ring's state."""


class TokenVerificationError(Exception):
    """A JWT was malformed, named an unknown (or expired) kid, used an algorithm other
    than its key's, carried a bad signature, or had the wrong ``typ``."""


@dataclass(frozen=True)
class KeyInfo:
    kid: str
    alg: str
    status: str
    created_at: int
    retired_at: int | None
    path: Path


@dataclass(frozen=True)
class _Entry:
    info: KeyInfo
    data: dict[str, Any]  # the file's content
    key: jwk.Key  # private key


# --------------------------------------------------------------------------- helpers


def _now(now: int | None) -> int:
    return int(time.time()) if now is None else int(now)


def _check_alg(alg: str) -> None:
    if alg not in SUPPORTED_ALGS:
        raise KeyRingError(
            f"unsupported signing algorithm {alg!r}; supported: {', '.join(SUPPORTED_ALGS)}"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@contextlib.contextmanager
def _locked(directory: Path, *, exclusive: bool) -> Iterator[None]:
    """flock the directory itself (no lock file to leave behind)."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def _ensure_dir(directory: Path) -> None:
    if directory.is_dir():
        return
    try:
        directory.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        if not directory.is_dir():
            raise KeyRingError(f"{directory} exists and is not a directory") from None
        return
    os.chmod(directory, 0o700)  # whatever the umask


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write *data* to *path* with mode 0600 via a temp file in the same directory."""
    content = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # the umask may only have removed bits, but be explicit
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _public_jwk(key: jwk.Key, kid: str, alg: str) -> dict[str, Any]:
    """Public JWK built from an allow-list of members, so nothing private can leak."""
    kty = _KTY[alg]
    public = key.as_dict(private=False)
    out: dict[str, Any] = {"kty": kty, "kid": kid, "use": "sig", "alg": alg}
    for name in _PUBLIC_PARAMS[kty]:
        out[name] = public[name]
    return out


def _new_key(alg: str) -> tuple[jwk.Key, dict[str, Any]]:
    """Generate a key; return it and its private JWK (with kid, alg, use)."""
    key: jwk.Key
    if alg == "RS256":
        key = jwk.RSAKey.generate_key(RSA_KEY_SIZE, private=True)
    else:
        key = jwk.ECKey.generate_key(EC_CURVE, private=True)
    kid = key.thumbprint()
    data = dict(key.as_dict(private=True))
    data.update({"kid": kid, "alg": alg, "use": "sig"})
    return key, data


def _parse_file(path: Path) -> _Entry:
    name = path.name
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KeyRingError(f"key file {name}: cannot read: {exc.strerror or exc}") from exc
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise KeyRingError(f"key file {name}: invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise KeyRingError(f"key file {name}: not a JSON object")

    status = data.get("status")
    if status not in _STATUSES:
        raise KeyRingError(f"key file {name}: status must be one of {_STATUSES}, got {status!r}")
    created_at = data.get("created_at")
    if not _is_int(created_at):
        raise KeyRingError(f"key file {name}: created_at must be an integer")
    retired_at = data.get("retired_at")
    if retired_at is not None and not _is_int(retired_at):
        raise KeyRingError(f"key file {name}: retired_at must be an integer")
    if status == STATUS_RETIRED and retired_at is None:
        raise KeyRingError(f"key file {name}: retired key without retired_at")

    alg = data.get("alg")
    if alg not in SUPPORTED_ALGS:
        raise KeyRingError(
            f"key file {name}: unsupported alg {alg!r}; supported: {', '.join(SUPPORTED_ALGS)}"
        )
    if data.get("kty") != _KTY[alg]:
        raise KeyRingError(f"key file {name}: alg {alg} needs kty {_KTY[alg]}")
    if alg == "ES256" and data.get("crv") != EC_CURVE:
        raise KeyRingError(f"key file {name}: ES256 needs curve {EC_CURVE}")
    if data.get("use", "sig") != "sig":
        raise KeyRingError(f"key file {name}: use must be 'sig'")
    jwk_data = {k: v for k, v in data.items() if k not in _META_MEMBERS}
    try:
        key = jwk.import_key(jwk_data, _KTY[alg])
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise KeyRingError(f"key file {name}: invalid {alg} key: {exc}") from exc
    if not key.is_private:
        raise KeyRingError(f"key file {name}: not a private key")
    if alg == "RS256" and key.raw_value.key_size < RSA_KEY_SIZE:
        raise KeyRingError(f"key file {name}: RSA key shorter than {RSA_KEY_SIZE} bits")

    kid = key.thumbprint()
    if data.get("kid") != kid:
        raise KeyRingError(f"key file {name}: kid is not the key's RFC 7638 thumbprint")
    if path.stem != kid:
        raise KeyRingError(f"key file {name}: file name must be <kid>.json ({kid}.json)")

    info = KeyInfo(
        kid=kid,
        alg=alg,
        status=status,
        created_at=created_at,
        retired_at=retired_at if status == STATUS_RETIRED else None,
        path=path,
    )
    return _Entry(info=info, data=data, key=key)


def _scan(directory: Path) -> list[_Entry]:
    """Parse every ``*.json`` key file (hidden files, e.g. temp files, are skipped)."""
    entries = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or path.suffix != ".json":
            continue
        try:
            mode = path.lstat().st_mode
        except OSError as exc:
            raise KeyRingError(f"key file {path.name}: cannot stat: {exc.strerror}") from exc
        if not stat.S_ISREG(mode):
            raise KeyRingError(f"key file {path.name}: not a regular file")
        if mode & 0o077 and (path, mode) not in _MODE_WARNED:
            _MODE_WARNED.add((path, mode))  # once per file per process, not per reload
            log.warning(
                "key file %s is accessible by group/others (mode %04o); run: chmod 600 %s",
                path,
                stat.S_IMODE(mode),
                path,
            )
        entries.append(_parse_file(path))
    return entries


def _by_status(entries: list[_Entry], status: str) -> list[_Entry]:
    return [e for e in entries if e.info.status == status]


def _single(entries: list[_Entry], status: str) -> _Entry | None:
    found = _by_status(entries, status)
    if len(found) > 1:
        names = ", ".join(e.info.path.name for e in found)
        raise KeyRingError(f"more than one {status!r} key: {names}")
    return found[0] if found else None


def _sort_key(info: KeyInfo) -> tuple[int, int, int, str]:
    return (_STATUS_ORDER[info.status], -(info.retired_at or 0), -info.created_at, info.kid)


def _store(directory: Path, data: dict[str, Any]) -> KeyInfo:
    path = directory / f"{data['kid']}.json"
    _write_json_atomic(path, data)
    return KeyInfo(
        kid=data["kid"],
        alg=data["alg"],
        status=data["status"],
        created_at=data["created_at"],
        retired_at=data.get("retired_at"),
        path=path,
    )


def _with_status(data: dict[str, Any], status: str, retired_at: int | None = None) -> dict:
    out = {k: v for k, v in data.items() if k != "retired_at"}
    out["status"] = status
    if retired_at is not None:
        out["retired_at"] = retired_at
    return out


def _generate_locked(directory: Path, alg: str, now: int) -> KeyInfo:
    entries = _scan(directory)
    active = _single(entries, STATUS_ACTIVE)
    pending = _single(entries, STATUS_NEXT)
    if active is not None and pending is not None:
        raise KeyRingError(
            f"the ring already has a next key ({pending.info.kid}); rotate before generating"
        )
    _, data = _new_key(alg)
    data["status"] = STATUS_ACTIVE if active is None else STATUS_NEXT
    data["created_at"] = now
    return _store(directory, data)


# --------------------------------------------------------------------------- public API


def generate_key(
    directory: str | os.PathLike[str], alg: str = "RS256", *, now: int | None = None
) -> KeyInfo:
    """Generate a key: "active" if the ring has no active key, else "next".

    Raises :class:`KeyRingError` if there is already a next key (rotate first).
    """
    _check_alg(alg)
    directory = Path(directory)
    _ensure_dir(directory)
    with _locked(directory, exclusive=True):
        return _generate_locked(directory, alg, _now(now))


def ensure_keys(directory: str | os.PathLike[str], alg: str = "RS256") -> KeyInfo | None:
    """Generate an active key if the ring has none (start-up); return it, else ``None``."""
    _check_alg(alg)
    directory = Path(directory)
    _ensure_dir(directory)
    with _locked(directory, exclusive=True):
        if _single(_scan(directory), STATUS_ACTIVE) is not None:
            return None
        return _generate_locked(directory, alg, _now(None))


def rotate_keys(
    directory: str | os.PathLike[str],
    *,
    retire_for: int,
    alg: str | None = None,
    now: int | None = None,
) -> tuple[KeyInfo | None, KeyInfo, KeyInfo]:
    """Rotate: active -> retired, next -> active, fresh key -> next.

    Returns ``(retired, new_active, new_next)``; ``retired`` is ``None`` if there was no
    active key. Without a next key a new one is generated and goes active unpublished.
    The fresh next key uses *alg*, defaulting to the new active key's. Retired keys with
    ``retired_at + retire_for < now`` are deleted. *retire_for* should be at least the
    longest lifetime of a token the keys sign.
    """
    if not _is_int(retire_for) or retire_for < 0:
        raise ValueError("retire_for must be a non-negative integer (seconds)")
    if alg is not None:
        _check_alg(alg)
    directory = Path(directory)
    if not directory.is_dir():
        raise KeyRingError(f"key directory {directory} does not exist")
    ts = _now(now)
    with _locked(directory, exclusive=True):
        entries = _scan(directory)
        active = _single(entries, STATUS_ACTIVE)
        pending = _single(entries, STATUS_NEXT)

        # Generate all key material (slow for RSA) before touching any file.
        if pending is not None:
            promoted = _with_status(pending.data, STATUS_ACTIVE)
        else:
            fallback_alg = alg or (active.info.alg if active else "RS256")
            _, promoted = _new_key(fallback_alg)
            promoted.update(status=STATUS_ACTIVE, created_at=ts)
            log.warning(
                "rotating without a published next key: new active key %s is not yet in "
                "any relying party's cached JWKS",
                promoted["kid"],
            )
        _, fresh = _new_key(alg or promoted["alg"])
        fresh.update(status=STATUS_NEXT, created_at=ts)

        # Promote first: a crash now leaves two active keys, which load() reports, rather
        # than none, which ensure_keys() would silently "fix" with an unpublished key.
        new_active = _store(directory, promoted)
        retired = None
        if active is not None:
            retired = _store(directory, _with_status(active.data, STATUS_RETIRED, ts))
        new_next = _store(directory, fresh)

        for entry in _by_status(entries, STATUS_RETIRED):
            assert entry.info.retired_at is not None
            if entry.info.retired_at + retire_for < ts:
                with contextlib.suppress(FileNotFoundError):
                    entry.info.path.unlink()
                log.info("deleted expired retired key %s", entry.info.kid)
        _fsync_dir(directory)
    log.info(
        "rotated keys: retired=%s active=%s next=%s",
        retired.kid if retired else None,
        new_active.kid,
        new_next.kid,
    )
    return retired, new_active, new_next


def list_keys(directory: str | os.PathLike[str]) -> list[KeyInfo]:
    """All keys, sorted: active, next, retired (most recently retired first)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    with _locked(directory, exclusive=False):
        entries = _scan(directory)
    return sorted((e.info for e in entries), key=_sort_key)


@dataclass(frozen=True)
class _Published:
    kid: str
    alg: str
    public_key: jwk.Key
    public_jwk: dict[str, Any]
    expires_at: float  # math.inf unless retired
    registry: jws.JWSRegistry  # accepts only this key's alg


class KeyRing:
    """The loaded key ring. Keys are parsed once, in :meth:`load`."""

    def __init__(
        self,
        entries: list[_Entry],
        *,
        retire_for: int,
        now: Callable[[], float] = time.time,
    ) -> None:
        active = _single(entries, STATUS_ACTIVE)
        if active is None:
            raise KeyRingError("no active signing key (run: idp keys generate)")
        _single(entries, STATUS_NEXT)
        self.kid: str = active.info.kid
        self.alg: str = active.info.alg
        self.retire_for = retire_for
        self._now = now
        self._signing_key = active.key
        self._sign_registry = jws.JWSRegistry(algorithms=[self.alg])
        self._header_base = {"alg": self.alg, "kid": self.kid}

        published: dict[str, _Published] = {}
        for entry in sorted(entries, key=lambda e: _sort_key(e.info)):
            info = entry.info
            expires_at = math.inf
            if info.status == STATUS_RETIRED:
                assert info.retired_at is not None
                expires_at = info.retired_at + retire_for
            public = _public_jwk(entry.key, info.kid, info.alg)
            published[info.kid] = _Published(
                kid=info.kid,
                alg=info.alg,
                public_key=jwk.import_key(public, _KTY[info.alg]),
                public_jwk=public,
                expires_at=expires_at,
                registry=jws.JWSRegistry(algorithms=[info.alg]),
            )
        self._published = published
        # JWKS cache: (keys, valid_from, valid_until); recomputed outside that window.
        self._jwks_lock = threading.Lock()
        self._jwks_cache: tuple[list[dict[str, Any]], float, float] | None = None

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        *,
        retire_for: int,
        now: Callable[[], float] = time.time,
    ) -> KeyRing:
        directory = Path(directory)
        if not directory.is_dir():
            raise KeyRingError(f"key directory {directory} does not exist")
        try:
            with _locked(directory, exclusive=False):
                entries = _scan(directory)
        except PermissionError as exc:
            raise KeyRingError(f"key directory {directory}: {exc.strerror}") from exc
        return cls(entries, retire_for=retire_for, now=now)

    # ------------------------------------------------------------------ keys

    def signing_key(self) -> jwk.Key:
        """The active private key."""
        return self._signing_key

    def _lookup(self, kid: Any) -> _Published | None:
        if not isinstance(kid, str):
            return None
        entry = self._published.get(kid)
        if entry is None or not self._now() < entry.expires_at:
            return None
        return entry

    def public_key(self, kid: str) -> jwk.Key | None:
        """The public key of a published key (active, next, unexpired retired)."""
        entry = self._lookup(kid)
        return entry.public_key if entry else None

    def jwks(self) -> dict[str, Any]:
        """``{"keys": [...]}``: public JWKs of the active, next and unexpired retired keys."""
        now = self._now()
        cache = self._jwks_cache
        if cache is None or not cache[1] <= now < cache[2]:
            with self._jwks_lock:
                live = [p for p in self._published.values() if now < p.expires_at]
                until = min((p.expires_at for p in live), default=math.inf)
                cache = ([p.public_jwk for p in live], now, until)
                self._jwks_cache = cache
        return {"keys": [dict(k) for k in cache[0]]}

    # ------------------------------------------------------------------ JWT

    def sign_jwt(self, claims: Mapping[str, Any], *, typ: str | None = None) -> str:
        """Compact JWS over *claims* with the active key (header alg, kid and typ)."""
        header = dict(self._header_base)
        if typ is not None:
            header["typ"] = typ
        return jwt.encode(
            header,
            dict(claims),  # joserfc rewrites datetime exp/iat/nbf in place
            self._signing_key,
            registry=self._sign_registry,
            default_type=None,
        )

    def verify_jwt(self, token: str, *, typ: str | None = None) -> tuple[dict, dict]:
        """Verify *token* against the published key its header names.

        Returns ``(header, claims)``. Does NOT check exp, nbf, iss or aud.
        """
        if isinstance(token, str):
            try:
                raw = token.encode("ascii")
            except UnicodeEncodeError:
                raise TokenVerificationError("malformed token") from None
        elif isinstance(token, bytes):
            raw = token
        else:
            raise TokenVerificationError("malformed token")
        if raw.count(b".") != 2:
            raise TokenVerificationError("malformed token")
        try:
            obj = jws.extract_compact(raw)
        except (JoseError, ValueError, TypeError) as exc:
            raise TokenVerificationError(f"malformed token: {exc}") from None
        header = obj.headers()
        if not isinstance(header, dict):
            raise TokenVerificationError("malformed token header")
        # No JWS extensions: "b64": false would change what the signature covers.
        if "crit" in header or "b64" in header:
            raise TokenVerificationError("unsupported header parameter (crit/b64)")

        entry = self._lookup(header.get("kid"))
        if entry is None:
            raise TokenVerificationError("unknown or expired key id")
        if header.get("alg") != entry.alg:
            raise TokenVerificationError("algorithm does not match the key")
        if typ is not None and header.get("typ") != typ:
            raise TokenVerificationError(f"typ must be {typ!r}")
        try:
            ok = jws.validate_compact(obj, entry.public_key, registry=entry.registry)
        except (JoseError, ValueError, TypeError) as exc:
            raise TokenVerificationError(f"invalid token: {exc}") from None
        if not ok:
            raise TokenVerificationError("bad signature")
        try:
            claims = json.loads(obj.payload)
        except (UnicodeDecodeError, ValueError):
            raise TokenVerificationError("payload is not JSON") from None
        if not isinstance(claims, dict):
            raise TokenVerificationError("payload is not a JSON object")
        return dict(header), claims
