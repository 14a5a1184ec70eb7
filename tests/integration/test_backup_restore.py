"""The runbook's backup and restore (docs/OPERATIONS.md, "Backup and restore"), done as
written: the database (``pg_dump``/``pg_restore``, or SQLite's online backup), the key
directory, and the secrets from the environment, restored into a fresh instance that
then signs users in with their password and TOTP, verifies tokens the old instance
signed, and passes ``idp audit verify``. Without the encryption keys the factors'
secrets are unreadable: the test shows why they belong in the backup."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import uuid
from dataclasses import replace
from pathlib import Path

import pyotp
import pytest
from sqlalchemy.engine import make_url

from idp import audit
from idp.app import create_app
from idp.extensions import db
from idp.models import Factor, User
from idp.services import services
from idp.store import MemoryStore
from tests.conftest import PG_URL

PASSWORD = "correct horse battery staple"
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def _backup_database(url: str, dump: Path) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        # The online backup API: a consistent copy while the provider keeps writing.
        with sqlite3.connect(parsed.database) as live, sqlite3.connect(dump) as copy:
            live.backup(copy)
        return
    plain = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    subprocess.run(["pg_dump", "--format=custom", "--file", str(dump), plain], check=True)


def _restore_database(url: str, dump: Path, tmp_path: Path) -> str:
    """Restore into a fresh database; return its URL."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        target = tmp_path / "restored.sqlite3"
        shutil.copyfile(dump, target)
        return f"sqlite:///{target}"
    name = f"idp_restore_{uuid.uuid4().hex[:8]}"
    admin = PG_URL.replace("postgresql+psycopg", "postgresql")
    subprocess.run(["psql", admin, "-qc", f'CREATE DATABASE "{name}"'], check=True)
    restored = parsed.set(database=name)
    plain = restored.set(drivername="postgresql").render_as_string(hide_password=False)
    subprocess.run(["pg_restore", "--no-owner", "--dbname", plain, str(dump)], check=True)
    return restored.render_as_string(hide_password=False)


def _drop(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        admin = PG_URL.replace("postgresql+psycopg", "postgresql")
        subprocess.run(["psql", admin, "-qc", f'DROP DATABASE IF EXISTS "{parsed.database}" '
                        "WITH (FORCE)"], check=True)  # fmt: skip


def test_backup_and_restore_into_a_fresh_instance(app, settings, tmp_path):
    from idp.auth.service import authenticate_password
    from idp.mfa.totp import TOTPFactor
    from idp.users_io import import_users

    with app.app_context():
        svc = services()
        records = [
            (
                1,
                {
                    "email": "kept@example.com",
                    "email_verified": True,
                    "password_hash": svc.passwords.hash(PASSWORD),
                    "totp_secret": SECRET,
                },
            )
        ]
        assert import_users(svc, records).taken == 1  # fmt: skip
        old_token = svc.keys.sign_jwt({"iss": settings.issuer, "sub": "x"}, typ="at+jwt")
        audit.seal()
        url = str(db.engine.url.render_as_string(hide_password=False))

    # The backup: database, key directory; the secrets are in the deployment's env.
    dump = tmp_path / "idp.dump"
    _backup_database(url, dump)
    keys_backup = tmp_path / "keys-backup"
    shutil.copytree(settings.keys.directory, keys_backup)

    restored_url = _restore_database(url, dump, tmp_path)
    try:
        fresh = replace(
            settings,
            database=replace(settings.database, url=restored_url),
            keys=replace(settings.keys, directory=str(keys_backup)),
            store=replace(settings.store, backend="memory"),
        )
        instance = create_app(fresh, store=MemoryStore(), warn=False)
        with instance.test_request_context("/signin", method="POST"):
            svc = services()
            user = authenticate_password(svc, "kept@example.com", PASSWORD, "192.0.2.1")
            [factor] = db.session.execute(db.select(Factor).filter_by(user_id=user.id)).scalars()
            code = pyotp.TOTP(SECRET).now()
            assert TOTPFactor(svc).verify(user, [factor], {"code": code}, binding="b")
            db.session.commit()
            header, claims = svc.keys.verify_jwt(old_token, typ="at+jwt")
            assert claims["sub"] == "x"  # the restored ring verifies what the old one signed
            assert audit.verify_chain().ok
            db.session.remove()
            db.engine.dispose()

        # Restored without the encryption keys, the factor secrets cannot be read.
        from idp.config import DEV_ENCRYPTION_KEY

        other = replace(fresh, security=replace(fresh.security, encryption_keys={
            "other": DEV_ENCRYPTION_KEY}, active_encryption_key="other"))  # fmt: skip
        wrong = create_app(other, store=MemoryStore(), warn=False)
        with wrong.app_context():
            user = db.session.execute(
                db.select(User).filter_by(email="kept@example.com")).scalar_one()  # fmt: skip
            [factor] = db.session.execute(db.select(Factor).filter_by(user_id=user.id)).scalars()
            from idp.security.crypto import DecryptionError

            with pytest.raises(DecryptionError):
                services().secrets.decrypt(factor.secret_enc or "", context=f"totp:{user.id}")
            db.session.remove()
            db.engine.dispose()
    finally:
        _drop(restored_url)
