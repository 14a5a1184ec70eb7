"""The ``idp`` command: database, keys, clients, users, audit, demo data and a dev server.

Exit status: 0 done; 1 refused (the configuration, the database or the state of what
was named does not allow it: "already exists", "rotate before generating", a production
check that fails); 2 usage error (an unknown option, a bad option value, an argument
that names nothing: "no user", as GNU tools answer an inaccessible argument). With
``--json`` the result is JSON on stdout and an error is one JSON object on stderr,
``{"error": "...", "exit_code": N}``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn

import click
from sqlalchemy.exc import OperationalError, ProgrammingError

from .config import ConfigError, load_settings

#: Exit status of a refused operation and of a usage error.
EXIT_REFUSED, EXIT_USAGE = 1, 2


def _json_requested() -> bool:
    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        if ctx.params.get("as_json"):
            return True
        ctx = ctx.parent
    return False


def _error(message: str, code: int, as_json: bool | None = None) -> NoReturn:
    if _json_requested() if as_json is None else as_json:
        click.echo(json.dumps({"error": message, "exit_code": code}), err=True)
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _fail(message: str) -> NoReturn:
    """Refuse the operation (exit status 1)."""
    _error(message, EXIT_REFUSED)


def _usage(message: str) -> NoReturn:
    """Refuse the command line (exit status 2)."""
    _error(message, EXIT_USAGE)


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


class _Main(click.Group):
    """The ``idp`` group: click's usage errors as JSON when ``--json`` is given."""

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:  # fmt: skip
        argv = list(sys.argv[1:] if args is None else args)
        if not standalone_mode:
            return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
        try:
            result = super().main(argv, prog_name, complete_var, False, **extra)
        except click.ClickException as exc:
            if "--json" in argv:
                _error(exc.format_message(), exc.exit_code, as_json=True)
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(EXIT_REFUSED)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="idp", prog_name="idp", message="%(prog)s %(version)s")
def main() -> None:
    """Administer the identity provider (settings from IDP_CONFIG and IDP_* variables).

    Exit status: 0 done, 1 refused, 2 usage error. Commands that list, show or create
    take --json (errors then come as JSON on stderr too).
    """


# -- config ---------------------------------------------------------------------


@main.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("check")
@click.option("--json", "as_json", is_flag=True)
def config_check(as_json: bool) -> None:
    """Validate the configuration as start-up does; in production also refuse what is
    unfit to serve users: SQLite, the memory store, console delivery (exit status 1)."""
    from .app import check_database_url, startup_warnings
    from .ops.readiness import production_problems

    try:
        settings = load_settings()
        url = check_database_url(settings.database.url)
    except ConfigError as exc:
        _fail(str(exc))
    problems = production_problems(settings)
    warnings = [] if settings.is_production else startup_warnings(settings)
    notes = []
    if url != settings.database.url:
        notes.append(f"[database] url {settings.database.url.split('://', 1)[0]}:// is read "
                     "as postgresql+psycopg:// (psycopg 3)")  # fmt: skip
    if as_json:
        click.echo(json.dumps({"ok": not problems, "env": settings.env,
                               "issuer": settings.issuer, "problems": problems,
                               "warnings": warnings, "notes": notes}, indent=2))  # fmt: skip
        sys.exit(EXIT_REFUSED if problems else 0)
    for note in notes:
        click.echo(f"note: {note}")
    for w in warnings:
        click.echo(f"warning: {w}")
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        click.echo(f"error: {len(problems)} setting(s) unfit for production", err=True)
        sys.exit(EXIT_REFUSED)
    click.echo(f"ok: env={settings.env} issuer={settings.issuer}")


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Accepted for symmetry: always JSON.")
def config_show(as_json: bool) -> None:
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


def _announce_keys() -> str:
    """Tell the running instances the ring changed; return how soon they follow."""
    from .keys.shared import CHECK_INTERVAL, RESCAN_INTERVAL, announce_change
    from .store import create_store

    s = load_settings()
    store = create_store(s.store.backend, redis_url=s.store.redis_url, prefix=s.store.prefix)
    if store.shared and announce_change(store):
        return f"every instance uses it within {CHECK_INTERVAL:g} s (announced in the store)"
    return f"the instances notice the key directory change within {RESCAN_INTERVAL:g} s"


def _key_json(info: Any) -> dict[str, Any]:
    return {"kid": info.kid, "alg": info.alg, "status": info.status,
            "created_at": info.created_at, "retired_at": info.retired_at,
            "path": str(info.path)}  # fmt: skip


@keys.command("generate")
@click.option("--alg", type=click.Choice(["RS256", "ES256"]), default=None)
@click.option("--json", "as_json", is_flag=True)
def keys_generate(alg: str | None, as_json: bool) -> None:
    """Generate a key: the active one if there is none, else the next one (published first)."""
    from .keys import KeyRingError, generate_key

    directory, _, default_alg = _keys_dir()
    try:
        info = generate_key(directory, alg or default_alg)
    except KeyRingError as exc:
        _fail(str(exc))
    _announce_keys()
    if as_json:
        click.echo(json.dumps(_key_json(info)))
        return
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
@click.option("--json", "as_json", is_flag=True)
def keys_list(as_json: bool) -> None:
    """List keys with their status."""
    from .keys import list_keys

    directory, _, _ = _keys_dir()
    if as_json:
        click.echo(json.dumps([_key_json(info) for info in list_keys(directory)], indent=2))
        return
    for info in list_keys(directory):
        retired = (
            f" retired {time.strftime('%Y-%m-%d %H:%M', time.gmtime(info.retired_at))}"
            if info.retired_at
            else ""
        )
        click.echo(f"{info.status:8} {info.alg} {info.kid}{retired}")


@keys.command("rotate")
@click.option("--alg", type=click.Choice(["RS256", "ES256"]), default=None)
@click.option("--json", "as_json", is_flag=True)
def keys_rotate(alg: str | None, as_json: bool) -> None:
    """Promote the next key, retire the active one, and publish a new next key. Running
    instances follow without a restart (docs/OPERATIONS.md, "Signing keys")."""
    from .keys import KeyRingError, rotate_keys

    directory, retire_for, _ = _keys_dir()
    try:
        retired, active, nxt = rotate_keys(directory, retire_for=retire_for, alg=alg)
    except KeyRingError as exc:
        _fail(str(exc))
    when = _announce_keys()
    if as_json:
        click.echo(json.dumps({"retired": _key_json(retired) if retired else None,
                               "active": _key_json(active), "next": _key_json(nxt),
                               "propagation": when}))  # fmt: skip
        return
    if retired:
        click.echo(f"retired {retired.kid} (published for {retire_for} s more)")
    click.echo(f"active  {active.kid}\nnext    {nxt.kid}")
    click.echo(f"signing with {active.kid}: {when}")


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
        _usage(f"no client {client_id!r}")
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
        _usage(f"--jwks {path}: {exc}")
    return None


def _info_uri_options(fn):
    """--logo-uri, --client-uri, --policy-uri, --tos-uri: what the sign-in pages show about
    the application (RFC 7591 section 2; '' clears one on update)."""
    for option, help_text in reversed((
        ("--logo-uri", "Logo shown next to the application's name on the sign-in pages."),
        ("--client-uri", "The application's home page."),
        ("--policy-uri", "The application's privacy policy."),
        ("--tos-uri", "The application's terms of service."),
    )):  # fmt: skip
        fn = click.option(option, default=None, help=help_text)(fn)
    return fn


def _info_uris(**values: str | None) -> dict[str, str | None]:
    return {key: value for key, value in values.items() if value is not None}


def _protocol_options(*, update: bool) -> Callable:
    """Back-channel logout, allowed origins (CORS), the keys by URL and PAR: the
    options, gathered into one ``protocol`` argument of client metadata (only what was
    given; on update, what was given replaces the value)."""
    options = [
        click.option("--jwks-uri", default=None,
                     help="URL of the client's public JWKS (private_key_jwt), instead of "
                          "--jwks" + ("; '' to clear." if update else ".")),
        click.option("--backchannel-logout-uri", default=None,
                     help="Where logout tokens are POSTed when a session ends (OpenID "
                          "Connect Back-Channel Logout)" + ("; '' to clear." if update else ".")),
        click.option("--backchannel-logout-session-required/"
                     "--no-backchannel-logout-session-required", default=None,
                     help="The client needs the sid claim in logout tokens (always sent)."),
        click.option("--allowed-origin", "allowed_origins", multiple=True,
                     help="A browser origin (https://app.example.gov) allowed to call the "
                          "token, revocation, PAR and userinfo endpoints (CORS); repeatable"
                          + (", replaces the list." if update else ".")),
        click.option("--require-par/--no-require-par", default=None,
                     help="Authorization requests must be pushed first (RFC 9126)."),
    ]  # fmt: skip
    if update:
        options += [
            click.option("--clear-allowed-origins", is_flag=True,
                         help="Remove every allowed origin."),
            click.option("--jwks", "jwks_path", default=None,
                         help="File with the client's public JWKS (replaces --jwks-uri)."),
        ]  # fmt: skip
    names = ("jwks_uri", "backchannel_logout_uri", "backchannel_logout_session_required",
             "allowed_origins", "require_par")  # fmt: skip
    if update:
        names += ("clear_allowed_origins", "jwks_path")  # create has its own --jwks

    def decorate(fn: Callable) -> Callable:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in names if name in kwargs}
            protocol: dict[str, Any] = {}
            for key in ("backchannel_logout_session_required", "require_par"):
                if given.get(key) is not None:
                    protocol[key] = given[key]
            if given.get("backchannel_logout_uri") is not None:
                protocol["backchannel_logout_uri"] = given["backchannel_logout_uri"] or None
            if given.get("allowed_origins"):
                protocol["allowed_origins"] = list(given["allowed_origins"])
            if given.get("clear_allowed_origins"):
                if given.get("allowed_origins"):
                    _usage("--clear-allowed-origins and --allowed-origin exclude each other")
                protocol["allowed_origins"] = []
            if given.get("jwks_path") is not None:  # update: the keys replace a jwks_uri
                protocol.update(jwks=_read_jwks(given["jwks_path"]), jwks_uri=None)
            if given.get("jwks_uri") is not None:
                if given.get("jwks_path") is not None:
                    _usage("--jwks and --jwks-uri exclude each other")
                protocol["jwks_uri"] = given["jwks_uri"] or None
                if update and given["jwks_uri"]:
                    protocol["jwks"] = None  # a jwks_uri replaces registered keys
            return fn(*args, protocol=protocol, **kwargs)

        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper

    return decorate


def _resource_option(update: bool) -> Callable:
    """--resource URI (repeatable): the registered APIs (RFC 8707 resources, `idp
    resources create`) the client may ask tokens for; on update it replaces the list and
    --no-resource removes them all."""
    help_text = ("An API (registered resource URI) the client may ask tokens for; "
                 "repeatable" + ("; replaces the list." if update else "."))  # fmt: skip
    resource = click.option("--resource", "resources", multiple=True, help=help_text)
    if not update:
        return resource
    clear = click.option("--no-resource", "no_resource", is_flag=True,
                         help="Remove every API the client may call.")  # fmt: skip
    return lambda fn: resource(clear(fn))


def _resources_given(resources: tuple[str, ...], no_resource: bool) -> list[str] | None:
    """The new list of APIs for `clients update`: None when neither option is given."""
    if resources and no_resource:
        _usage("--resource and --no-resource exclude each other")
    if no_resource:
        return []
    return list(resources) if resources else None


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
@_info_uri_options
@_resource_option(update=False)
@click.option("--json", "as_json", is_flag=True)
@_protocol_options(update=False)
@with_app()
def clients_create(
    name, redirect_uris, logout_uris, public, auth_method, grant_types, scope, jwks_path,
    first_party, require_mfa, default_acr, client_id, logo_uri, client_uri, policy_uri,
    tos_uri, resources, as_json, protocol,
) -> None:  # fmt: skip
    """Register a client. The secret is printed once."""
    from .oidc.clients import ClientValidationError, create_client, describe

    method = auth_method or ("none" if public else "client_secret_basic")
    if public and method != "none":
        _usage("--public clients use --auth-method none")
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
            resources=list(resources),
            **_info_uris(
                logo_uri=logo_uri, client_uri=client_uri, policy_uri=policy_uri, tos_uri=tos_uri
            ),  # fmt: skip
            **protocol,
        )
    except ClientValidationError as exc:
        _usage(str(exc))
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
@_info_uri_options
@_resource_option(update=True)
@click.option("--json", "as_json", is_flag=True)
@_protocol_options(update=True)
@with_app()
def clients_update(
    client_id, name, redirect_uris, logout_uris, grant_types, scope, first_party, require_mfa,
    default_acr, disabled, logo_uri, client_uri, policy_uri, tos_uri, resources, no_resource,
    as_json, protocol,
) -> None:  # fmt: skip
    """Change a client's settings (lists given are replaced whole)."""
    from .oidc.clients import UNSET, ClientValidationError, describe, update_client

    client = _load_client(client_id)
    metadata = {"name": name, "redirect_uris": list(redirect_uris) or None,
                "post_logout_redirect_uris": list(logout_uris) or None,
                "grant_types": list(grant_types) or None, "scope": scope,
                **_info_uris(logo_uri=logo_uri, client_uri=client_uri, policy_uri=policy_uri,
                             tos_uri=tos_uri)}  # fmt: skip
    try:
        update_client(
            client,
            actor="cli",
            first_party=first_party,
            require_mfa=require_mfa,
            default_acr=UNSET if default_acr is None else (default_acr or None),
            disabled=disabled,
            resources=_resources_given(resources, no_resource),
            **{key: value for key, value in metadata.items() if value is not None},
            **protocol,
        )
    except ClientValidationError as exc:
        _usage(str(exc))
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
        _usage(str(exc))
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
        _usage(f"no user {email!r}")
    return user


@users.command("create")
@click.option("--email", required=True)
@click.option("--name", default=None)
@click.option("--given-name", default=None)
@click.option("--family-name", default=None)
@click.option("--verified/--unverified", default=True, help="Mark the email as verified.")
@click.option("--json", "as_json", is_flag=True)
@with_app()
def users_create(email, name, given_name, family_name, verified, as_json) -> None:
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
        _usage("--email is not an email address")
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
    if as_json:
        click.echo(json.dumps(_user_json(user)))
        return
    click.echo(f"created {email} (sub {user.sub})")


def _user_json(u: Any) -> dict[str, Any]:
    return {"email": u.email, "sub": u.sub, "status": u.status, "role": u.role,
            "email_verified": bool(u.email_verified), "name": u.name,
            "created_at": u.created_at.isoformat() if u.created_at else None,
            "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None}  # fmt: skip


@users.command("list")
@click.option("--search", default=None, help="Only users whose email or name contains this.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@with_app()
def users_list(search: str | None, limit: int, offset: int, as_json: bool) -> None:
    """List users, oldest first (--search, then --offset and --limit page through)."""
    from .users_io import search_users

    rows, total = search_users(search, limit, offset)
    if as_json:
        click.echo(json.dumps({"total": total, "offset": offset, "limit": limit,
                               "users": [_user_json(u) for u in rows]}, indent=2))  # fmt: skip
        return
    for u in rows:
        click.echo(f"{u.email:40} {u.status:9} {u.sub}")
    if offset + len(rows) < total:
        click.echo(f"({offset + len(rows)} of {total}; --offset {offset + len(rows)} for more)",
                   err=True)  # fmt: skip


@users.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default=None,
              help="Default: from the file name (.csv) or its content.")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Check every row; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@click.option("--quiet", is_flag=True, help="No progress lines on stderr.")
@with_app()
def users_import(file: Path, fmt: str | None, dry_run: bool, as_json: bool, quiet: bool) -> None:
    """Create users from FILE (JSON lines, CSV or a Keycloak export) with their existing
    password hashes, phone numbers and TOTP secrets; report the rows taken and refused.
    The columns are listed in docs/OPERATIONS.md ("Bringing existing users in")."""
    from .services import services
    from .users_io import ImportFileError, import_users, read_records

    def progress(report: Any) -> None:
        if not quiet:
            rate = report.rows / report.seconds if report.seconds else 0
            line = (f"{report.rows} rows read, {report.taken} taken, {len(report.refused)} "
                    f"refused ({report.seconds:.1f} s, {rate:.0f} rows/s)")  # fmt: skip
            click.echo(line, err=True)

    try:
        report = import_users(
            services(), read_records(file, {"jsonl": "json", "csv": "csv"}.get(fmt or "")),
            dry_run=dry_run, source=file.name, progress=progress,
        )  # fmt: skip
    except ImportFileError as exc:
        _fail(str(exc))
    data = report.as_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        verb = "would take" if dry_run else "took"
        click.echo(f"{verb} {report.taken} of {report.rows} rows, refused "
                   f"{len(report.refused)} ({report.seconds:.1f} s)")  # fmt: skip
        for r in report.refused:
            click.echo(f"  row {r.row}{f' ({r.email})' if r.email else ''}: {r.reason}")
    if report.rows and not report.taken:
        sys.exit(EXIT_REFUSED)


@users.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (default: stdout).")  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default=None,
              help="Default: csv for a .csv file, else JSON lines.")  # fmt: skip
@click.option(
    "--with-secrets",
    is_flag=True,
    help="Include password hashes and TOTP secrets (the file is written 0600).",
)
@with_app()
def users_export(output: Path | None, fmt: str | None, with_secrets: bool) -> None:
    """Write every user in the format `idp users import` reads."""
    import os

    from .services import services
    from .users_io import export_records, write_records

    fmt = fmt or ("csv" if output is not None and output.suffix.lower() == ".csv" else "jsonl")
    records = export_records(services(), with_secrets=with_secrets)
    if output is None:
        write_records(records, sys.stdout, fmt, with_secrets)
        return
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8", newline="") as out:
        count = write_records(records, out, fmt, with_secrets)
    click.echo(f"exported {count} users to {output}", err=True)


@users.command("delete")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True)
@with_app()
def users_delete(email: str, yes: bool, as_json: bool) -> None:
    """Delete a user with their factors, tokens and sessions; their audit events are
    pseudonymised so the audit chain stays verifiable (`idp audit verify`)."""
    from .services import services
    from .users_io import delete_user

    user = _load_user(email)
    if not yes:
        click.confirm(f"Delete {user.email} and everything that signs them in?", abort=True)
    counts = delete_user(services(), user, actor="cli")
    if as_json:
        click.echo(json.dumps({"deleted": user.email, **counts}))
        return
    removed = ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in counts.items() if n)
    click.echo(f"deleted {user.email}{f' ({removed})' if removed else ''}")


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
        _usage("--reason must say why (at least 4 characters)")
    user = _load_user(email)
    if not yes:
        click.confirm(f"Remove every sign-in method of {email}?", abort=True)
    count = current_app.extensions["idp.mfa"].reset(user, reason=reason, actor="cli")
    click.echo(f"{email}: removed {count} factor(s); sessions and refresh tokens revoked")


# -- API resources (RFC 8707) -------------------------------------------------------


@main.group()
def resources() -> None:
    """APIs (RFC 8707 resources) that access tokens can be issued for, with their scopes.

    A scope is NAME or "NAME=DESCRIPTION" (the description is what the consent page shows):
    --scope forms:read --scope "forms:write=Change your forms". Clients are allowed an
    API with `idp clients create|update --resource URI`."""


def _load_resource(uri: str):
    from .oidc.resources import find_resource

    resource = find_resource(uri.strip())
    if resource is None:
        _usage(f"no API {uri!r}")
    return resource


def _print_resource(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"{'uri':12} {data['uri']}")
    click.echo(f"{'name':12} {data['name']}")
    click.echo(f"{'client_id':12} {data['client_id'] or '-'}")
    for s in data["scopes"]:
        described = f"  ({s['description']})" if s["description"] else ""
        click.echo(f"{'scope':12} {s['name']}{described}")
    click.echo(f"{'clients':12} {', '.join(data['clients']) or '-'}")


def _resource_call(fn: Callable[[], Any]) -> Any:
    """Run a resource operation: a conflict is refused (exit 1), bad values are a usage
    error (exit 2)."""
    from .oidc.resources import ResourceConflict, ResourceValidationError

    try:
        return fn()
    except ResourceConflict as exc:
        _fail(str(exc))
    except ResourceValidationError as exc:
        _usage(str(exc))


def _scopes(values: tuple[str, ...]) -> list[tuple[str, str]]:
    from .oidc.resources import parse_scope

    return _resource_call(lambda: [parse_scope(v) for v in values])


@resources.command("create")
@click.option("--uri", required=True, help="The API's absolute https URI (resource indicator).")
@click.option("--scope", "scopes", multiple=True, help='NAME or "NAME=DESCRIPTION"; repeatable.')
@click.option("--name", default="", help="Name shown to users on the consent page.")
@click.option("--client", "client_id", default=None,
              help="The API's own client (it may introspect the API's tokens).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True)
@with_app()
def resources_create(uri: str, scopes: tuple[str, ...], name: str, client_id: str | None,
                     as_json: bool) -> None:  # fmt: skip
    """Register an API and its scopes."""
    from .oidc.resources import create_resource, describe_resource

    parsed = _scopes(scopes)
    resource = _resource_call(
        lambda: create_resource(uri, parsed, name=name, client_id=client_id, actor="cli")
    )
    _print_resource(describe_resource(resource), as_json)


@resources.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_app()
def resources_list(as_json: bool) -> None:
    """List the registered APIs."""
    from .oidc.resources import describe_resource, list_resources

    data = [describe_resource(r) for r in list_resources()]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for r in data:
        names = " ".join(s["name"] for s in r["scopes"]) or "-"
        click.echo(f"{r['uri']:40} {names}")


@resources.command("show")
@click.argument("uri")
@click.option("--json", "as_json", is_flag=True)
@with_app()
def resources_show(uri: str, as_json: bool) -> None:
    """Show one API, its scopes and the clients allowed to call it."""
    from .oidc.resources import describe_resource

    _print_resource(describe_resource(_load_resource(uri)), as_json)


@resources.command("update")
@click.argument("uri")
@click.option("--uri", "new_uri", default=None, help="A new URI (tokens carry it from now on).")
@click.option("--scope", "scopes", multiple=True, help="Replaces the list; repeatable.")
@click.option("--no-scope", "no_scope", is_flag=True, help="Remove every scope.")
@click.option("--name", default=None)
@click.option("--client", "client_id", default=None, help="The API's own client.")
@click.option("--no-client", is_flag=True, help="The API has no client of its own.")
@click.option("--json", "as_json", is_flag=True)
@with_app()
def resources_update(uri: str, new_uri: str | None, scopes: tuple[str, ...], no_scope: bool,
                     name: str | None, client_id: str | None, no_client: bool,
                     as_json: bool) -> None:  # fmt: skip
    """Change an API (scopes given replace the list; a scope taken away is taken from
    every client too)."""
    from .oidc.resources import UNSET, describe_resource, update_resource

    if scopes and no_scope:
        _usage("--scope and --no-scope exclude each other")
    if client_id is not None and no_client:
        _usage("--client and --no-client exclude each other")
    resource = _load_resource(uri)
    parsed = _scopes(scopes) if scopes else ([] if no_scope else None)
    server = None if no_client else (client_id if client_id is not None else UNSET)
    _resource_call(
        lambda: update_resource(
            resource, uri=new_uri, name=name, scopes=parsed, client_id=server, actor="cli"
        )
    )
    _print_resource(describe_resource(resource), as_json)


@resources.command("delete")
@click.argument("uri")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True)
@with_app()
def resources_delete(uri: str, yes: bool, as_json: bool) -> None:
    """Delete an API: its scopes go, and every client loses it and its scopes."""
    from .oidc.resources import delete_resource

    resource = _load_resource(uri)
    if not yes:
        click.confirm(f"Delete the API {resource.uri} and its scopes?", abort=True)
    delete_resource(resource, actor="cli")
    if as_json:
        click.echo(json.dumps({"deleted": uri}))
        return
    click.echo(f"deleted {uri}")


# -- groups ------------------------------------------------------------------------------


@main.group()
def groups() -> None:
    """Groups of users, released in the `groups` claim (scope `groups`)."""


def _load_group(name: str):
    from .groups import find_group

    group = find_group(name)
    if group is None:
        _usage(f"no group {name!r}")
    return group


def _group_call(fn: Callable[[], Any]) -> Any:
    """Run a group operation: a conflict is refused (exit 1), a bad name is a usage
    error (exit 2)."""
    from .groups import GroupConflict, GroupError

    try:
        return fn()
    except GroupConflict as exc:
        _fail(str(exc))
    except GroupError as exc:
        _usage(str(exc))


@groups.command("create")
@click.argument("name")
@click.option("--description", default="")
@click.option("--json", "as_json", is_flag=True)
@with_app()
def groups_create(name: str, description: str, as_json: bool) -> None:
    """Create a group (NAME: letters, digits and . _ -)."""
    from .groups import create_group, describe_group

    group = _group_call(lambda: create_group(name, description=description, actor="cli"))
    if as_json:
        click.echo(json.dumps(describe_group(group)))
        return
    click.echo(f"created group {group.name}")


@groups.command("add")
@click.argument("group")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True)
@with_app()
def groups_add(group: str, email: str, as_json: bool) -> None:
    """Add the user EMAIL to GROUP."""
    from .groups import add_member

    found, user = _load_group(group), _load_user(email)
    _group_call(lambda: add_member(found, user, actor="cli"))
    if as_json:
        click.echo(json.dumps({"group": found.name, "added": user.email}))
        return
    click.echo(f"{user.email}: added to {found.name}")


@groups.command("remove")
@click.argument("group")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True)
@with_app()
def groups_remove(group: str, email: str, as_json: bool) -> None:
    """Take the user EMAIL out of GROUP."""
    from .groups import remove_member

    found, user = _load_group(group), _load_user(email)
    _group_call(lambda: remove_member(found, user, actor="cli"))
    if as_json:
        click.echo(json.dumps({"group": found.name, "removed": user.email}))
        return
    click.echo(f"{user.email}: removed from {found.name}")


@groups.command("list")
@click.argument("group", required=False)
@click.option("--json", "as_json", is_flag=True)
@with_app()
def groups_list(group: str | None, as_json: bool) -> None:
    """List the groups (with how many members), or the members of GROUP."""
    from .groups import describe_group, list_groups

    if group is not None:
        data = describe_group(_load_group(group), with_members=True)
        if as_json:
            click.echo(json.dumps(data, indent=2))
            return
        for email in data["members"]:
            click.echo(email)
        return
    rows = [describe_group(g) for g in list_groups()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for g in rows:
        click.echo(f"{g['name']:30} {g['members']:6} {g['description']}".rstrip())


@groups.command("delete")
@click.argument("group")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True)
@with_app()
def groups_delete(group: str, yes: bool, as_json: bool) -> None:
    """Delete a group (its members stay; they lose the group)."""
    from .groups import delete_group

    found = _load_group(group)
    if not yes:
        click.confirm(f"Delete the group {found.name}?", abort=True)
    count = delete_group(found, actor="cli")
    if as_json:
        click.echo(json.dumps({"deleted": group, "members": count}))
        return
    click.echo(f"deleted group {group} ({count} member(s) removed from it)")


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
# Connexion's Form C API as a registered resource (RFC 8707), with its own client for
# token introspection (RFC 7662).
CONNEXION_API_CLIENT_ID = "connexion-api"
CONNEXION_API_CLIENT_SECRET = "connexion-api-secret-for-local-development-only"  # noqa: S105
CONNEXION_API_SCOPE = "form-c:file"
CONNEXION_API_SCOPE_TEXT = "File the Form C semi-annual report for your company"


@main.command("demo")
@click.option(
    "--connexion-url",
    default="http://localhost:5001",
    show_default=True,
    help="Base URL of the Connexion sample relying party.",
)
@click.option(
    "--demo-rp-url",
    default="http://localhost:5002",
    show_default=True,
    help="Base URL of the generic demo client (the README's example).",
)
@with_app()
def demo(connexion_url: str, demo_rp_url: str) -> None:
    """Seed a demo user, the demo clients and Connexion's Form C API (a resource with
    its scope form-c:file and its own client, connexion-api); idempotent; refused in
    production."""
    from .extensions import db as _db
    from .models import OAuthClient, User
    from .models.base import utcnow
    from .oidc.clients import normalize_metadata
    from .oidc.resources import set_client_resources
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
    api_uri = _demo_api(connexion_url.rstrip("/"))
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
            scope="openid profile email phone offline_access"
            + (f" {CONNEXION_API_SCOPE}" if client_id == CONNEXION_CLIENT_ID else ""),
            # What the sign-in pages show about the application (RFC 7591 2).
            client_uri=f"{base}/",
            logo_uri=f"{base}/static/favicon.svg" if name == "Connexion" else None,
            # Connexion ends its sessions when the provider's end (Back-Channel Logout).
            backchannel_logout_uri=(
                f"{base}/backchannel-logout" if client_id == CONNEXION_CLIENT_ID else None
            ),
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
        _db.session.flush()
        if client_id == CONNEXION_CLIENT_ID:
            set_client_resources(client, [api_uri], actor="cli")
        click.echo(f"client:       {client_id} / {secret}  (redirect_uri {base}/callback)")
    _db.session.commit()
    click.echo(f"api:          {api_uri} (scope {CONNEXION_API_SCOPE}; its client "
               f"{CONNEXION_API_CLIENT_ID} / {CONNEXION_API_CLIENT_SECRET})")  # fmt: skip
    click.echo(f"demo user:    {DEMO_EMAIL} / {DEMO_PASSWORD}")


def _demo_api(connexion_url: str) -> str:
    """Connexion's Form C API at CONNEXION_URL/api: its client (for introspection) and
    the resource with its scope; moved to the new address when the URL changed."""
    from .extensions import db as _db
    from .models import OAuthClient
    from .oidc.clients import normalize_metadata
    from .oidc.resources import create_resource, find_resource, scope_owners, update_resource

    data = normalize_metadata(
        name="Connexion Form C API", redirect_uris=[], auth_method="client_secret_basic",
        grant_types=["client_credentials"], scope="",
    )  # fmt: skip
    client = _db.session.execute(
        _db.select(OAuthClient).filter_by(client_id=CONNEXION_API_CLIENT_ID)
    ).scalar_one_or_none()
    if client is None:
        client = OAuthClient(client_id=CONNEXION_API_CLIENT_ID, **data)
        _db.session.add(client)
    else:
        for k, v in data.items():
            setattr(client, k, v)
    client.set_secret(CONNEXION_API_CLIENT_SECRET)
    _db.session.flush()
    uri = f"{connexion_url}/api"
    scopes = [(CONNEXION_API_SCOPE, CONNEXION_API_SCOPE_TEXT)]
    resource = scope_owners([CONNEXION_API_SCOPE]).get(CONNEXION_API_SCOPE) or find_resource(uri)
    fields = {"name": "Connexion Form C API", "client_id": CONNEXION_API_CLIENT_ID, "actor": "cli"}
    if resource is None:
        _resource_call(lambda: create_resource(uri, scopes, **fields))
    else:
        _resource_call(lambda: update_resource(resource, uri=uri, scopes=scopes, **fields))
    return uri


@main.command("run")
@click.option("--host", default=None)
@click.option("--port", type=int, default=None)
def run(host: str | None, port: int | None) -> None:
    """Run the development server (single process; `idp serve` in production)."""
    from .app import create_app
    from .keys import KeyRingError
    from .ops import configure_logging
    from .ops.logs import install_werkzeug_redaction

    try:
        settings = load_settings()
        configure_logging(settings.ops.log_format, settings.ops.log_level, root=True)
        app = create_app(settings, serve=True)
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


@main.command("serve")
def serve() -> None:
    """Run the production server (granian): IDP_BIND, WEB_CONCURRENCY, IDP_THREADS."""
    from .serving import ServeError
    from .serving import serve as run_server

    try:
        run_server()
    except (ConfigError, ServeError) as exc:
        _fail(str(exc))


if __name__ == "__main__":  # pragma: no cover
    main()
