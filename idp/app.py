"""Application factory."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Flask
from sqlalchemy.engine import make_url
from werkzeug.middleware.proxy_fix import ProxyFix

from .config import Settings, development_warnings, load_settings, validate
from .extensions import db, migrate
from .keys import KeyRing, KeyRingError
from .services import build_services, load_keyring
from .store import Store, create_store

log = logging.getLogger("idp")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _database_uri(url: str) -> str:
    """Resolve a relative SQLite path against the working directory and create its folder."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        if not path.is_absolute():
            path = Path.cwd() / path
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(parsed.set(database=str(path)))
    return url


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    keys: KeyRing | None = None,
    require_keys: bool = True,
    warn: bool = True,
) -> Flask:
    """Build the provider. Tests pass their own settings, store or key ring.

    ``require_keys=False`` is for commands that run before keys exist
    (``idp keys generate``, ``idp db upgrade``); the server always loads them at start-up
    so a missing key fails fast with a clear message.
    """
    if settings is None:
        settings = load_settings()
    else:
        validate(settings)  # settings built in code get the same checks as loaded ones
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SQLALCHEMY_DATABASE_URI=_database_uri(settings.database.url),
        SQLALCHEMY_ECHO=settings.database.echo,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": settings.database.pool_pre_ping},
        MAX_CONTENT_LENGTH=64 * 1024,
        MAX_FORM_PARTS=200,
        JSON_SORT_KEYS=False,
    )
    if settings.server.trusted_proxies:
        n = settings.server.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)

    store = store or create_store(
        settings.store.backend, redis_url=settings.store.redis_url, prefix=settings.store.prefix
    )
    if keys is None and require_keys:
        try:
            keys = load_keyring(settings)
        except KeyRingError as exc:
            if settings.keys.directory in str(exc):
                raise
            raise KeyRingError(f"key directory {settings.keys.directory}: {exc}") from exc
    app.extensions["idp"] = build_services(settings, store, keys)
    from .oidc import client_cache

    client_cache.install(app, store)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"))
    from . import models  # noqa: F401  (register tables)
    from .account.views import bp as account_bp
    from .audit import init_audit
    from .auth.views import bp as auth_bp
    from .mfa import init_mfa
    from .oidc.views import init_oidc
    from .ops import health_bp, init_metrics, init_request_ids
    from .web import init_web

    init_mfa(app)
    init_audit(app, settings.audit.seal_interval)
    init_request_ids(app)
    init_metrics(app, settings)
    init_web(app)
    app.register_blueprint(health_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(account_bp)
    from .delivery.views import init_dev

    init_dev(app)  # /dev/outbox, only when env = "development"
    from .account import email_change, password, recovery, registration

    for feature in (registration, password, email_change, recovery):
        app.register_blueprint(feature.bp)
    from .admin import init_admin

    init_admin(app)
    init_oidc(app)

    for warning in development_warnings(settings) if warn else ():
        log.warning("%s", warning)
    if os.environ.get("IDP_LOG_CONFIG"):
        log.info("settings: %s", settings.as_dict())
    return app
