"""Application factory."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from flask import Flask, Response
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from werkzeug.middleware.proxy_fix import ProxyFix

from .config import ConfigError, Settings, development_warnings, load_settings, validate
from .extensions import db, migrate
from .keys import KeyRing, KeyRingError
from .keys.shared import SharedKeyRing
from .process_guard import SecondProcess, guard_for
from .services import build_services, load_keyring
from .store import Store, create_store

log = logging.getLogger("idp")
#: Alembic migrations, shipped inside the package (a wheel install runs `idp db upgrade`).
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


#: Schemes hosting platforms hand out (``DATABASE_URL=postgres://...``) that SQLAlchemy
#: would map to psycopg2, which is not installed: they mean psycopg 3.
_POSTGRES_ALIASES = ("postgres://", "postgresql://")


def normalize_database_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` as ``postgresql+psycopg://`` (the driver
    the provider ships); any other URL unchanged."""
    for alias in _POSTGRES_ALIASES:
        if url.startswith(alias):
            return "postgresql+psycopg://" + url[len(alias) :]
    return url


def check_database_url(url: str) -> str:
    """The normalised URL, or a :class:`ConfigError` naming ``[database] url`` when
    SQLAlchemy has no driver for it (never a traceback)."""
    url = normalize_database_url(url)
    try:
        make_url(url).get_dialect().import_dbapi()  # the driver itself, not only its name
    except ArgumentError as exc:
        raise ConfigError(f"config: [database] url is not a valid SQLAlchemy URL ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - NoSuchModuleError, a missing driver's ImportError
        scheme = url.split("://", 1)[0]
        raise ConfigError(
            f"config: [database] url scheme {scheme!r} is not supported ({type(exc).__name__}); "
            "use 'postgresql+psycopg://user@host/db' or 'sqlite:///path/idp.sqlite3'"
        ) from None
    return url


def _database_uri(url: str) -> str:
    """Resolve a relative SQLite path against the working directory and create its folder."""
    url = check_database_url(url)
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
    serve: bool = False,
) -> Flask:
    """Build the provider. Tests pass their own settings, store or key ring.

    ``require_keys=False`` is for commands that run before keys exist
    (``idp keys generate``, ``idp db upgrade``); the server always loads them at start-up
    so a missing key fails fast with a clear message. ``warn`` prints the start-up
    warnings (once per process: :func:`warn_once`). ``serve`` is for the entry points
    that serve requests (``idp run``, :mod:`idp.wsgi`): on the in-memory store the
    process claims the deployment at once (:mod:`idp.process_guard`).
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

    guarded = store is None and settings.store.backend == "memory"
    store = store or create_store(
        settings.store.backend, redis_url=settings.store.redis_url, prefix=settings.store.prefix
    )
    if guarded:
        _install_process_guard(app, settings, claim_now=serve)
    if keys is None and require_keys:
        keys = _shared_keyring(settings, store)  # type: ignore[assignment]
    with _held_startup_warnings():  # printed by warn_once, not at each build
        app.extensions["idp"] = build_services(settings, store, keys)
    from .oidc import client_cache

    client_cache.install(app, store)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS))
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
    from .i18n import init_i18n

    init_i18n(app)  # after init_web: the language's filters and texts
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
    if serve:
        # A serving process runs the back-channel logout worker from the start, so that
        # expired sessions are swept even before anyone signs out (idp.oidc.backchannel).
        app.extensions["idp"].backchannel.start()

    if warn:
        warn_once(settings)
    if os.environ.get("IDP_LOG_CONFIG"):
        log.info("settings: %s", settings.as_dict())
    return app


def _shared_keyring(settings: Settings, store: Store) -> SharedKeyRing:
    """The key ring, following the shared key directory (:mod:`idp.keys.shared`)."""

    def load() -> KeyRing:
        try:
            return load_keyring(settings)
        except KeyRingError as exc:
            if settings.keys.directory in str(exc):
                raise
            raise KeyRingError(f"key directory {settings.keys.directory}: {exc}") from exc

    return SharedKeyRing(settings.keys.directory, load, store)


def _install_process_guard(app: Flask, settings: Settings, *, claim_now: bool) -> None:
    """One serving process on the in-memory store (:mod:`idp.process_guard`)."""
    guard = guard_for(_database_uri(settings.database.url))
    if claim_now:
        try:
            guard.claim()
        except SecondProcess as exc:
            raise ConfigError(str(exc)) from None
    reported: set[str] = set()

    @app.before_request
    def _one_serving_process() -> Response | None:
        reason = guard.check()
        if reason is None:
            return None
        if reason not in reported:
            reported.add(reason)
            log.error("refusing requests: %s", reason)
        return Response(f"Service unavailable: {reason}\n", 503, mimetype="text/plain")


# -- start-up warnings, once per process start --------------------------------------

#: Warnings already printed by this process, or by the process it was forked from: a
#: gunicorn master prints them before forking (gunicorn.conf.py, ``on_starting``), and
#: its workers inherit this set, so N workers do not print them N more times.
_WARNED: set[str] = set()
_WARNED_LOCK = threading.Lock()


def startup_warnings(settings: Settings) -> list[str]:
    """Every warning a start-up prints: the development settings outside production; in
    production what ``idp config check`` refuses but start-up allows (console delivery,
    SQLite, the in-memory store); and security keys that cannot work at this issuer."""
    from .auth.assurance import webauthn_impossible
    from .ops.readiness import production_problems

    if settings.is_production:
        problems = [f"{p} (`idp config check` refuses it)" for p in production_problems(settings)]
    else:
        problems = development_warnings(settings)
    if "webauthn" in settings.mfa.allowed_factors:
        why = webauthn_impossible(settings.issuer, settings.webauthn.rp_id)
        if why:
            problems.append(f"[mfa] allowed_factors: {why}; they are not offered")
    return problems


def warn_once(settings: Settings) -> list[str]:
    """Log the start-up warnings this process has not printed yet; return them."""
    fresh = []
    with _WARNED_LOCK:
        for warning in startup_warnings(settings):
            if warning not in _WARNED:
                _WARNED.add(warning)
                fresh.append(warning)
    for warning in fresh:
        log.warning("%s", warning)
    return fresh


class _Hold(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


@contextlib.contextmanager
def _held_startup_warnings() -> Iterator[None]:
    """Building the senders warns about console delivery in production; those warnings
    are part of :func:`startup_warnings`, printed once by :func:`warn_once` instead of
    at every app built (each worker, each command)."""
    logger = logging.getLogger("idp.delivery")
    hold = _Hold()
    logger.addFilter(hold)
    try:
        yield
    finally:
        logger.removeFilter(hold)
