"""The ``idp`` command: database, keys, clients, users, audit, demo data and a dev server."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import OperationalError, ProgrammingError

from .config import ConfigError, load_settings


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def with_app(require_keys: bool = False) -> Callable:
    """Run the command inside an application context built from the configuration."""

    def deco(fn: Callable) -> Callable:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from .app import create_app
            from .keys import KeyRingError

            try:
                app = create_app(load_settings(), require_keys=require_keys, warn=False)
            except (ConfigError, KeyRingError) as exc:
                _fail(str(exc))
            with app.app_context():
                try:
                    return fn(*args, **kwargs)
                except (OperationalError, ProgrammingError) as exc:
                    if fn.__name__.startswith("db_"):
                        raise
                    _fail(
                        "the database is not reachable or not migrated "
                        f"({type(exc.orig).__name__}); run `idp db upgrade` first"
                    )

        return wrapper

    return deco


@click.group()
def main() -> None:
    """Administer the identity provider (settings from IDP_CONFIG and IDP_* variables)."""


# -- config ---------------------------------------------------------------------


@main.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("check")
def config_check() -> None:
    """Load and validate the configuration; print warnings."""
    from .config import development_warnings

    try:
        settings = load_settings()
    except ConfigError as exc:
        _fail(str(exc))
    for w in development_warnings(settings):
        click.echo(f"warning: {w}")
    click.echo(f"ok: env={settings.env} issuer={settings.issuer}")


@config.command("show")
def config_show() -> None:
    """Print the effective settings (secrets masked)."""
    try:
        click.echo(json.dumps(load_settings().as_dict(), indent=2))
    except ConfigError as exc:
        _fail(str(exc))


# -- database -------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema migrations."""


@db.command("upgrade")
@click.argument("revision", default="head")
@with_app()
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    from flask_migrate import upgrade

    upgrade(revision=revision)
    click.echo(f"database at {revision}")


@db.command("downgrade")
@click.argument("revision")
@with_app()
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION."""
    from flask_migrate import downgrade

    downgrade(revision=revision)


@db.command("current")
@with_app()
def db_current() -> None:
    """Show the current migration revision."""
    from flask_migrate import current

    current()


# -- keys ------------------------------------------------------------------------


def _keys_dir() -> tuple[str, int, str]:
    try:
        s = load_settings()
    except ConfigError as exc:
        _fail(str(exc))
    return s.keys.directory, max(s.tokens.access_token_ttl, s.tokens.id_token_ttl), s.keys.algorithm


@main.group()
def keys() -> None:
    """Signing keys (JWK files, mode 0600)."""


@keys.command("generate")
@click.option("--alg", type=click.Choice(["RS256", "ES256"]), default=None)
def keys_generate(alg: str | None) -> None:
    """Generate a key: the active one if there is none, else the next one (published first)."""
    from .keys import KeyRingError, generate_key

    directory, _, default_alg = _keys_dir()
    try:
        info = generate_key(directory, alg or default_alg)
    except KeyRingError as exc:
        _fail(str(exc))
    click.echo(f"{info.status} {info.alg} {info.kid} ({info.path})")


@keys.command("ensure")
def keys_ensure() -> None:
    """Generate an active key only if none exists (used by `make run`)."""
    from .keys import ensure_keys

    directory, _, alg = _keys_dir()
    info = ensure_keys(directory, alg)
    if info:
        click.echo(f"generated {info.alg} signing key {info.kid}")


@keys.command("list")
def keys_list() -> None:
    """List keys with their status."""
    from .keys import list_keys

    directory, _, _ = _keys_dir()
    for info in list_keys(directory):
        retired = (
            f" retired {time.strftime('%Y-%m-%d %H:%M', time.gmtime(info.retired_at))}"
            if info.retired_at
            else ""
        )
        click.echo(f"{info.status:8} {info.alg} {info.kid}{retired}")


@keys.command("rotate")
@click.option("--alg", type=click.Choice(["RS256", "ES256"]), default=None)
def keys_rotate(alg: str | None) -> None:
    """Promote the next key, retire the active one, and publish a new next key."""
    from .keys import KeyRingError, rotate_keys

    directory, retire_for, _ = _keys_dir()
    try:
        retired, active, nxt = rotate_keys(directory, retire_for=retire_for, alg=alg)
    except KeyRingError as exc:
        _fail(str(exc))
    if retired:
        click.echo(f"retired {retired.kid} (published for {retire_for} s more)")
    click.echo(f"active  {active.kid}\nnext    {nxt.kid}")
    click.echo("restart the provider instances to sign with the new key")


# -- clients ---------------------------------------------------------------------


@main.group()
def clients() -> None:
    """OAuth clients (relying parties)."""


def _load_client(client_id: str):
    from .extensions import db as _db
    from .models import OAuthClient

    client = _db.session.execute(
        _db.select(OAuthClient).filter_by(client_id=client_id)
    ).scalar_one_or_none()
    if client is None:
        _fail(f"no client {client_id!r}")
    return client


def _print_client(data: dict[str, Any], secret: str | None, as_json: bool) -> None:
    if as_json:
        out = dict(data)
        if secret:
            out["client_secret"] = secret
        click.echo(json.dumps(out, indent=2))
        return
    for key, value in data.items():
        click.echo(f"{key:27} {', '.join(value) if isinstance(value, list) else value}")
    if secret:
        click.echo(f"{'client_secret':27} {secret}")
        click.echo("the secret is shown once; store it now (only its hash is kept)")


def _read_jwks(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        _fail(f"--jwks {path}: {exc}")
    return None


@clients.command("create")
@click.option("--name", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True)
@click.option("--post-logout-redirect-uri", "logout_uris", multiple=True)
@click.option("--public", is_flag=True, help="Public client (no secret; PKCE required).")
@click.option(
    "--auth-method",
    type=click.Choice(["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]),
    default=None,
)
@click.option("--grant-type", "grant_types", multiple=True)
@click.option("--scope", default="openid profile email")
@click.option("--jwks", "jwks_path", help="File with the client's public JWKS (private_key_jwt).")
@click.option("--first-party", is_flag=True, help="Skip the consent page.")
@click.option("--require-mfa", is_flag=True, help="Users must pass MFA for this client.")
@click.option("--default-acr", default=None)
@click.option("--client-id", default=None, help="Choose the client_id (default: random).")
@click.option("--json", "as_json", is_flag=True)
@with_app()
def clients_create(
    name, redirect_uris, logout_uris, public, auth_method, grant_types, scope, jwks_path,
    first_party, require_mfa, default_acr, client_id, as_json,
) -> None:  # fmt: skip
    """Register a client. The secret is printed once."""
    from .oidc.clients import ClientValidationError, create_client, describe

    method = auth_method or ("none" if public else "client_secret_basic")
    if public and method != "none":
        _fail("--public clients use --auth-method none")
    try:
        client, secret = create_client(
            client_id=client_id,
            name=name,
            redirect_uris=redirect_uris,
            post_logout_redirect_uris=logout_uris,
            auth_method=method,
            grant_types=list(grant_types) or None,
            scope=scope,
            jwks=_read_jwks(jwks_path),
            first_party=first_party,
            require_mfa=require_mfa,
            default_acr=default_acr,
            actor="cli",
        )
    except ClientValidationError as exc:
        _fail(str(exc))
    _print_client(describe(client), secret, as_json)


@clients.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_app()
def clients_list(as_json: bool) -> None:
    """List registered clients."""
    from .extensions import db as _db
    from .models import OAuthClient
    from .oidc.clients import describe

    rows = _db.session.execute(_db.select(OAuthClient).order_by(OAuthClient.id)).scalars()
    data = [describe(c) for c in rows]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for c in data:
        state = " (disabled)" if c["disabled"] else ""
        click.echo(f"{c['client_id']:26} {c['token_endpoint_auth_method']:20} {c['name']}{state}")


@clients.command("show")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
@with_app()
def clients_show(client_id: str, as_json: bool) -> None:
    """Show one client."""
    from .oidc.clients import describe

    _print_client(describe(_load_client(client_id)), None, as_json)


@clients.command("update")
@click.argument("client_id")
@click.option("--name", default=None)
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="Replaces the list.")
@click.option("--post-logout-redirect-uri", "logout_uris", multiple=True, help="Replaces the list.")
@click.option("--grant-type", "grant_types", multiple=True, help="Replaces the list.")
@click.option("--scope", default=None)
@click.option("--first-party/--no-first-party", default=None)
@click.option("--require-mfa/--no-require-mfa", default=None)
@click.option("--default-acr", default=None, help="Use '' to clear.")
@click.option("--disable/--enable", "disabled", default=None)
@click.option("--json", "as_json", is_flag=True)
@with_app()
def clients_update(
    client_id, name, redirect_uris, logout_uris, grant_types, scope, first_party, require_mfa,
    default_acr, disabled, as_json,
) -> None:  # fmt: skip
    """Change a client's settings (lists given are replaced whole)."""
    from . import audit
    from .extensions import db as _db
    from .oidc.clients import (
        ClientValidationError,
        check_default_acr,
        describe,
        normalize_metadata,
    )

    client = _load_client(client_id)
    try:
        if default_acr:
            check_default_acr(default_acr)
        data = normalize_metadata(
            name=name or client.name,
            redirect_uris=redirect_uris or client.redirect_uris,
            post_logout_redirect_uris=logout_uris or client.post_logout_redirect_uris,
            auth_method=client.token_endpoint_auth_method,
            grant_types=list(grant_types) or client.grant_types,
            scope=scope or client.scope,
            jwks=client.jwks,
        )
    except ClientValidationError as exc:
        _fail(str(exc))
    changed = [k for k, v in data.items() if getattr(client, k) != v]
    for key, value in data.items():
        setattr(client, key, value)
    for attr, value in (
        ("first_party", first_party),
        ("require_mfa", require_mfa),
        ("disabled", disabled),
    ):
        if value is not None and getattr(client, attr) != value:
            setattr(client, attr, value)
            changed.append(attr)
    if default_acr is not None and client.default_acr != (default_acr or None):
        client.default_acr = default_acr or None
        changed.append("default_acr")
    audit.record("client.updated", client_id=client.client_id, actor="cli", fields=changed)
    _db.session.commit()
    _print_client(describe(client), None, as_json)


@clients.command("rotate-secret")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
@with_app()
def clients_rotate_secret(client_id: str, as_json: bool) -> None:
    """Issue a new client secret (the old one stops working at once)."""
    from .oidc.clients import ClientValidationError, rotate_secret

    client = _load_client(client_id)
    try:
        secret = rotate_secret(client, actor="cli")
    except ClientValidationError as exc:
        _fail(str(exc))
    _print_client({"client_id": client.client_id}, secret, as_json)


@clients.command("delete")
@click.argument("client_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_app()
def clients_delete(client_id: str, yes: bool) -> None:
    """Delete a client with its codes, refresh tokens and consents."""
    from .oidc.clients import delete_client

    client = _load_client(client_id)
    if not yes:
        click.confirm(f"Delete client {client.name!r} ({client_id})?", abort=True)
    delete_client(client, actor="cli")
    click.echo(f"deleted {client_id}")


@clients.command("issue-registration-token")
@click.option(
    "--expires-in",
    type=int,
    default=None,
    help="Lifetime in seconds (default: [admin] registration_token_ttl).",
)
@click.option(
    "--uses",
    type=int,
    default=1,
    show_default=True,
    help="How many clients the token may register.",
)
@click.option("--label", default="", help="A note on who the token is for.")
@click.option("--json", "as_json", is_flag=True)
@with_app()
def clients_issue_registration_token(
    expires_in: int | None, uses: int, label: str, as_json: bool
) -> None:
    """Issue an initial access token for dynamic client registration (RFC 7591). The
    token is printed once; only its hash is stored."""
    from .oidc.registration import issue_token
    from .services import services

    svc = services()
    try:
        token, row = issue_token(
            expires_in=expires_in or svc.settings.admin.registration_token_ttl,
            uses=uses, label=label, created_by="cli",
        )  # fmt: skip
    except ValueError as exc:
        _fail(str(exc))
    endpoint = f"{svc.settings.issuer}/connect/register"
    if as_json:
        out = {
            "initial_access_token": token,
            "registration_endpoint": endpoint,
            "expires_at": row.expires_at.isoformat(),
            "uses": uses,
        }
        click.echo(json.dumps(out))
        return
    click.echo(f"initial_access_token   {token}")
    click.echo(f"registration_endpoint  {endpoint}")
    click.echo(f"expires_at             {row.expires_at.isoformat()}  uses {uses}")
    click.echo("the token is shown once; only its hash is kept")


# -- users -----------------------------------------------------------------------


@main.group()
def users() -> None:
    """End users."""


def _read_password(confirm: bool = True) -> str:
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=confirm)
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


def _load_user(email: str):
    from .extensions import db as _db
    from .models import User

    user = _db.session.execute(
        _db.select(User).filter_by(email=User.normalize_email(email))
    ).scalar_one_or_none()
    if user is None:
        _fail(f"no user {email!r}")
    return user


@users.command("create")
@click.option("--email", required=True)
@click.option("--name", default=None)
@click.option("--given-name", default=None)
@click.option("--family-name", default=None)
@click.option("--verified/--unverified", default=True, help="Mark the email as verified.")
@with_app()
def users_create(email, name, given_name, family_name, verified) -> None:
    """Create a user. The password is read from a prompt or stdin, never from arguments."""
    from . import audit
    from .extensions import db as _db
    from .models import User
    from .models.base import utcnow
    from .security.passwords import validate_new_password
    from .services import services

    svc = services()
    email = User.normalize_email(email)
    if "@" not in email or len(email) > 320:
        _fail("--email is not an email address")
    if _db.session.execute(_db.select(User.id).filter_by(email=email)).first():
        _fail(f"a user with email {email!r} already exists")
    password = _read_password()
    problem = validate_new_password(
        password,
        min_length=svc.settings.password.min_length,
        max_length=svc.settings.password.max_length,
    )
    if problem:
        _fail(f"password not accepted: {problem}")
    user = User(
        email=email,
        name=name,
        given_name=given_name,
        family_name=family_name,
        email_verified=verified,
        password_hash=svc.passwords.hash(password),
        password_changed_at=utcnow(),
    )
    _db.session.add(user)
    _db.session.flush()
    audit.record("user.created", user_id=user.id, actor="cli")
    _db.session.commit()
    click.echo(f"created {email} (sub {user.sub})")


@users.command("list")
@with_app()
def users_list() -> None:
    """List users."""
    from .extensions import db as _db
    from .models import User

    for u in _db.session.execute(_db.select(User).order_by(User.id)).scalars():
        click.echo(f"{u.email:40} {u.status:9} {u.sub}")


def _set_status(email: str, status: str) -> None:
    from . import audit
    from .extensions import db as _db
    from .services import services

    user = _load_user(email)
    user.status = status
    audit.record(
        f"user.{'disabled' if status == 'disabled' else 'enabled'}", user_id=user.id, actor="cli"
    )
    _db.session.commit()
    if status == "disabled":
        services().sessions.destroy_all(user.id)
        _db.session.commit()  # the grants bound to those sessions end with them
    click.echo(f"{email}: {status}")


@users.command("disable")
@click.argument("email")
@with_app()
def users_disable(email: str) -> None:
    """Disable a user and end their sessions."""
    _set_status(email, "disabled")


@users.command("enable")
@click.argument("email")
@with_app()
def users_enable(email: str) -> None:
    """Enable a disabled user."""
    _set_status(email, "active")


@users.command("unlock")
@click.argument("email")
@with_app()
def users_unlock(email: str) -> None:
    """Clear the sign-in and second-factor lockouts."""
    from flask import current_app

    user = _load_user(email)
    current_app.extensions["idp.mfa"].unlock(user, actor="cli")
    click.echo(f"{email}: unlocked")


def _set_role(email: str, role: str) -> None:
    from .admin.service import set_role

    user = _load_user(email)
    set_role(user, role, actor="cli")
    click.echo(f"{user.email}: role {role}")


@users.command("grant-admin")
@click.argument("email")
@click.option("--helpdesk", is_flag=True, help="Only the help-desk pages and the dashboard.")
@with_app()
def users_grant_admin(email: str, helpdesk: bool) -> None:
    """Let a user open the admin pages (/admin) after a recent second factor."""
    _set_role(email, "helpdesk" if helpdesk else "admin")


@users.command("revoke-admin")
@click.argument("email")
@with_app()
def users_revoke_admin(email: str) -> None:
    """Take the admin or help-desk role away (the user keeps the account)."""
    _set_role(email, "user")


@users.command("factors")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True)
@with_app()
def users_factors(email: str, as_json: bool) -> None:
    """List a user's second factors (type, label, status, added, last used; never secrets)."""
    from flask import current_app

    user = _load_user(email)
    mfa = current_app.extensions["idp.mfa"]
    rows = [
        {
            "id": f.id,
            "type": f.type,
            "label": f.label,
            "status": f.status,
            "default": f.is_default,
            "added": f.created_at.isoformat(),
            "last_used": f.last_used_at.isoformat() if f.last_used_at else None,
        }
        for f in mfa.factors(user, active_only=False)
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"{email}: no factors")
    for r in rows:
        click.echo(
            f"{r['id']:6} {r['type']:9} {r['status']:8} {r['label']:24} "
            f"added {r['added'][:10]} last used {(r['last_used'] or 'never')[:16]}"
        )
    if user.mfa_locked_until:
        click.echo(f"second-factor step locked until {user.mfa_locked_until.isoformat()}")


@users.command("reset-mfa")
@click.argument("email")
@click.option("--reason", required=True, help="Why (recorded in the audit log and emailed).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_app()
def users_reset_mfa(email: str, reason: str, yes: bool) -> None:
    """Remove every factor, end sessions and refresh tokens; the user must enroll again."""
    from flask import current_app

    reason = reason.strip()
    if len(reason) < 4:
        _fail("--reason must say why (at least 4 characters)")
    user = _load_user(email)
    if not yes:
        click.confirm(f"Remove every sign-in method of {email}?", abort=True)
    count = current_app.extensions["idp.mfa"].reset(user, reason=reason, actor="cli")
    click.echo(f"{email}: removed {count} factor(s); sessions and refresh tokens revoked")


# -- audit -----------------------------------------------------------------------


@main.group()
def audit() -> None:
    """The audit log."""


def _format_event(e) -> str:
    details = json.dumps(e.details, sort_keys=True) if e.details else ""
    return (
        f"{e.at.strftime('%Y-%m-%dT%H:%M:%SZ')} {e.event:24} {e.outcome:7} "
        f"user={e.user_id or '-'} client={e.client_id or '-'} ip={e.ip or '-'} {details}"
    ).rstrip()


@audit.command("tail")
@click.option("-n", "count", default=20, show_default=True)
@click.option("-f", "--follow", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@with_app()
def audit_tail(count: int, follow: bool, as_json: bool) -> None:
    """Print the latest audit events (and follow new ones with -f)."""
    from .extensions import db as _db
    from .models import AuditEvent

    def emit(e) -> None:
        if as_json:
            click.echo(json.dumps({
                "id": e.id, "at": e.at.isoformat(), "event": e.event, "outcome": e.outcome,
                "user_id": e.user_id, "client_id": e.client_id, "ip": e.ip,
                "user_agent": e.user_agent, "details": e.details,
            }))  # fmt: skip
        else:
            click.echo(_format_event(e))

    rows = list(
        _db.session.execute(
            _db.select(AuditEvent).order_by(AuditEvent.id.desc()).limit(count)
        ).scalars()
    )
    last = 0
    for e in reversed(rows):
        emit(e)
        last = e.id
    while follow:
        time.sleep(1)
        _db.session.rollback()
        for e in _db.session.execute(
            _db.select(AuditEvent).where(AuditEvent.id > last).order_by(AuditEvent.id)
        ).scalars():
            emit(e)
            last = e.id


@audit.command("verify")
@with_app()
def audit_verify() -> None:
    """Walk the audit hash chain; report the first broken link (exit status 1)."""
    from .audit import verify_chain

    report = verify_chain()
    if report.ok:
        click.echo(f"ok: {report.checked} events, chain intact")
        return
    click.echo(
        f"broken: event {report.broken_id}: {report.problem} "
        f"({report.checked} events before it are intact)",
        err=True,
    )
    sys.exit(1)


# -- demo and dev server ---------------------------------------------------------

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "correct horse battery staple"  # noqa: S105  (public demo credential)
DEMO_CLIENT_ID = "demo-rp"
DEMO_CLIENT_SECRET = "demo-rp-secret-for-local-development-only"  # noqa: S105
CONNEXION_CLIENT_ID = "connexion"
CONNEXION_CLIENT_SECRET = "connexion-secret-for-local-development-only"  # noqa: S105


@main.command("demo")
@click.option(
    "--connexion-url",
    default="http://127.0.0.1:5001",
    show_default=True,
    help="Base URL of the Connexion sample relying party.",
)
@click.option(
    "--demo-rp-url",
    default="http://127.0.0.1:5002",
    show_default=True,
    help="Base URL of the generic demo client (the README's example).",
)
@with_app()
def demo(connexion_url: str, demo_rp_url: str) -> None:
    """Seed a demo user and the demo clients (idempotent; refused in production)."""
    from .extensions import db as _db
    from .models import OAuthClient, User
    from .models.base import utcnow
    from .oidc.clients import normalize_metadata
    from .services import services

    svc = services()
    if svc.settings.is_production:
        _fail("demo data is not created in production")
    if not _db.session.execute(_db.select(User.id).filter_by(email=DEMO_EMAIL)).first():
        _db.session.add(
            User(
                email=DEMO_EMAIL,
                name="Dana Demo",
                given_name="Dana",
                family_name="Demo",
                email_verified=True,
                password_hash=svc.passwords.hash(DEMO_PASSWORD),
                password_changed_at=utcnow(),
            )
        )
    clients = (
        (CONNEXION_CLIENT_ID, CONNEXION_CLIENT_SECRET, "Connexion", connexion_url, True),
        (DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, "Demo relying party", demo_rp_url, False),
    )
    for client_id, secret, name, base, first_party in clients:
        base = base.rstrip("/")
        data = normalize_metadata(
            name=name,
            redirect_uris=[f"{base}/callback"],
            post_logout_redirect_uris=[f"{base}/"],
            auth_method="client_secret_basic",
            scope="openid profile email phone offline_access",
        )
        client = _db.session.execute(
            _db.select(OAuthClient).filter_by(client_id=client_id)
        ).scalar_one_or_none()
        if client is None:
            client = OAuthClient(client_id=client_id, **data)
            _db.session.add(client)
        else:
            for k, v in data.items():
                setattr(client, k, v)
        client.first_party = first_party
        client.set_secret(secret)
        click.echo(f"client:       {client_id} / {secret}  (redirect_uri {base}/callback)")
    _db.session.commit()
    click.echo(f"demo user:    {DEMO_EMAIL} / {DEMO_PASSWORD}")


@main.command("run")
@click.option("--host", default=None)
@click.option("--port", type=int, default=None)
def run(host: str | None, port: int | None) -> None:
    """Run the development server (single process; use gunicorn in production)."""
    from .app import create_app
    from .keys import KeyRingError
    from .ops import configure_logging
    from .ops.logs import install_werkzeug_redaction

    try:
        settings = load_settings()
        configure_logging(settings.ops.log_format, settings.ops.log_level)
        app = create_app(settings)
        # The development server logs every request line: no emailed link's token in it.
        install_werkzeug_redaction(app.url_map)
    except ConfigError as exc:
        _fail(str(exc))
    except KeyRingError as exc:
        hint = "\n(run `idp keys generate` to create a signing key)"
        _fail(f"{exc}{'' if 'idp keys generate' in str(exc) else hint}")
    host = host or settings.server.host
    port = port or settings.server.port
    click.echo(f"issuer        {settings.issuer}")
    click.echo(f"discovery     {settings.issuer}/.well-known/openid-configuration")
    app.run(host=host, port=port, debug=False, use_reloader=False, threaded=True)


if __name__ == "__main__":  # pragma: no cover
    main()
