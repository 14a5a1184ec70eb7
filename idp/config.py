"""Typed settings for the identity provider.

Settings are assembled from three layers, later layers winning:

1. built-in defaults (safe for local development only);
2. a TOML file, named by the ``path`` argument or the ``IDP_CONFIG`` environment variable;
3. environment variables: ``IDP_<KEY>`` for top-level keys (``IDP_SECRET_KEY``) and
   ``IDP_<SECTION>_<KEY>`` for keys inside a section (``IDP_STORE_REDIS_URL``).

Every problem is reported as a :class:`ConfigError` whose message is one line naming the
offending key, so that start-up can print it and exit. See ``config.example.toml`` at the
project root for every key with its default and a recommendation.
"""

import base64
import binascii
import dataclasses
import datetime
import difflib
import os
import re
import tomllib
import typing
import urllib.parse
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NoReturn
from urllib.parse import urlsplit

__all__ = [
    "DEV_ENCRYPTION_KEY",
    "DEV_SECRET_KEY",
    "ConfigError",
    "DatabaseSettings",
    "KeySettings",
    "LoginSettings",
    "PasswordSettings",
    "PushSettings",
    "RegistrationSettings",
    "SecuritySettings",
    "ServerSettings",
    "SessionSettings",
    "Settings",
    "StoreSettings",
    "TokenSettings",
    "UISettings",
    "development_warnings",
    "load_settings",
    "validate",
]

#: Secret key used when none is configured. Refused when ``env = "production"``.
DEV_SECRET_KEY = "dev-only-insecure-secret-key-do-not-use-in-production"

#: urlsafe base64 of the 32 bytes ``b"dev-only-insecure-encryption-key"``.
#: Refused (under any key id) when ``env = "production"``.
DEV_ENCRYPTION_KEY = "ZGV2LW9ubHktaW5zZWN1cmUtZW5jcnlwdGlvbi1rZXk="

ENVIRONMENTS = ("development", "test", "production")
STORE_BACKENDS = ("memory", "redis")
KEY_ALGORITHMS = ("RS256", "ES256")

ENV_PREFIX = "IDP_"
CONFIG_ENV_VAR = "IDP_CONFIG"

_MASK = "***"
_ENCRYPTION_KEY_BYTES = 32
_MIN_PRODUCTION_SECRET_LENGTH = 32
_URLSAFE_B64 = re.compile(r"[A-Za-z0-9_-]+={0,2}")
# RFC 6265 section 4.1.1: cookie-name is an RFC 2616 token.
_COOKIE_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_SQLALCHEMY_URL = re.compile(r"[A-Za-z][A-Za-z0-9+_.-]*://")
_BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class ConfigError(Exception):
    """A configuration problem; the message is one line that names the offending key."""


# --------------------------------------------------------------------------------------
# Settings dataclasses
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """``[server]``: where the WSGI server listens and how many processes it runs."""

    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 1
    trusted_proxies: int = 0


@dataclasses.dataclass(frozen=True)
class DatabaseSettings:
    """``[database]``: SQLAlchemy connection."""

    url: str = "sqlite:///instance/idp.sqlite3"
    echo: bool = False
    pool_pre_ping: bool = False


@dataclasses.dataclass(frozen=True)
class StoreSettings:
    """``[store]``: short-lived shared state (sessions, rate limits, lockouts, nonces)."""

    backend: str = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "idp:"


@dataclasses.dataclass(frozen=True)
class KeySettings:
    """``[keys]``: token signing keys."""

    directory: str = "keys"
    algorithm: str = "RS256"


@dataclasses.dataclass(frozen=True)
class SessionSettings:
    """``[session]``: browser session cookie and timeouts (seconds)."""

    cookie_name: str = "idp_session"
    idle_timeout: int = 900
    absolute_timeout: int = 43200


@dataclasses.dataclass(frozen=True)
class TokenSettings:
    """``[tokens]``: lifetimes of issued artefacts (seconds)."""

    access_token_ttl: int = 300
    id_token_ttl: int = 600
    refresh_token_ttl: int = 2592000
    code_ttl: int = 60


@dataclasses.dataclass(frozen=True)
class LoginSettings:
    """``[login]``: throttling of sign-in attempts, the lock, trusted browsers."""

    max_consecutive_failures: int = 10
    lockout_seconds: int = 900
    # Every attempt from one IP address (a ceiling: an office behind one NAT signs in).
    per_ip_per_minute: int = 300
    # Failed attempts only: from one IP address, and for one account from one address.
    failures_per_ip_per_minute: int = 30
    failures_per_account_ip_per_minute: int = 5
    # How long a browser stays trusted by an account after signing in (device cookie).
    device_trust_days: int = 180


@dataclasses.dataclass(frozen=True)
class PasswordSettings:
    """``[password]``: Argon2id cost parameters and password length policy."""

    memory_cost: int = 19456
    time_cost: int = 2
    parallelism: int = 1
    min_length: int = 12
    max_length: int = 128
    # zxcvbn score (0-4) a new password must reach; 3 = "safely unguessable".
    min_score: int = 3
    # Lifetime of a password reset link (seconds).
    reset_ttl: int = 3600
    reset_per_ip_per_hour: int = 20
    reset_per_email_per_hour: int = 3


@dataclasses.dataclass(frozen=True)
class RegistrationSettings:
    """``[registration]``: New User Registration (self-service sign-up)."""

    enabled: bool = True
    # Lifetime of an email verification link (seconds).
    verify_ttl: int = 86400
    per_ip_per_hour: int = 10
    per_email_per_hour: int = 3


def _default_encryption_keys() -> Mapping[str, str]:
    return MappingProxyType({"dev": DEV_ENCRYPTION_KEY})


@dataclasses.dataclass(frozen=True)
class SecuritySettings:
    """``[security]``: encryption at rest and HTTP hardening."""

    encryption_keys: Mapping[str, str] = dataclasses.field(
        default_factory=_default_encryption_keys, repr=False, hash=False
    )
    active_encryption_key: str = "dev"
    hsts_max_age: int = 31536000
    max_parameter_length: int = 2048

    def __post_init__(self) -> None:
        # Copy into a read-only view so that neither the caller's dict nor this object
        # can be changed afterwards.
        if isinstance(self.encryption_keys, Mapping):
            object.__setattr__(
                self, "encryption_keys", MappingProxyType(dict(self.encryption_keys))
            )


@dataclasses.dataclass(frozen=True)
class UISettings:
    """``[ui]``: texts shown to end users."""

    service_name: str = "Identity Provider"
    help_text: str = ""
    help_phone: str = ""
    help_hours: str = ""


FACTOR_TYPES = ("totp", "webauthn", "recovery", "push", "email", "sms", "voice")


@dataclasses.dataclass(frozen=True)
class DeliverySettings:
    """``[delivery]``: how messages to users are sent."""

    email_backend: str = "console"
    outbox: str = "instance/outbox.jsonl"
    email_from: str = "no-reply@localhost"
    email_reply_to: str = ""
    smtp_host: str = "localhost"
    smtp_port: int = 587
    smtp_security: str = "starttls"
    smtp_username: str = ""
    smtp_password: str = dataclasses.field(default="", repr=False)
    smtp_timeout: int = 10
    sms_backend: str = "console"
    voice_backend: str = "console"
    twilio_account_sid: str = ""
    twilio_auth_token: str = dataclasses.field(default="", repr=False)
    twilio_from: str = ""
    twilio_base_url: str = "https://api.twilio.com"
    timeout: int = 10
    retries: int = 2


@dataclasses.dataclass(frozen=True)
class OTPSettings:
    """``[otp]``: one-time codes sent by email, text message or voice call."""

    code_ttl: int = 600
    max_attempts_per_code: int = 3
    resend_cooldown: int = 30
    sends_per_user_per_hour: int = 10
    sends_per_destination: int = 11
    destination_window: int = 300
    sends_per_ip_per_hour: int = 30
    phone_region: str = "US"


@dataclasses.dataclass(frozen=True)
class MFASettings:
    """``[mfa]``: who must use a second factor, from when, and the guessing limits."""

    required: bool = True
    enforce_from: str = ""
    allowed_factors: tuple[str, ...] = FACTOR_TYPES
    recommend_second: bool = True
    max_totp_per_user: int = 3
    max_failures: int = 10
    lockout_seconds: int = 600
    reauth_window: int = 600


@dataclasses.dataclass(frozen=True)
class OpsSettings:
    """``[ops]``: logs, request ids and metrics for operators."""

    log_format: str = "text"
    log_level: str = "INFO"
    metrics_enabled: bool = True
    metrics_token: str = dataclasses.field(default="", repr=False)


@dataclasses.dataclass(frozen=True)
class AuditSettings:
    """``[audit]``: how soon recorded events are sealed into the hash chain."""

    seal_interval: int = 1


@dataclasses.dataclass(frozen=True)
class PushSettings:
    """``[push]``: push approval with number matching in the companion app (idp-verify)."""

    challenge_ttl: int = 120
    enroll_ttl: int = 600
    sends_per_user: int = 3
    send_window: int = 300
    clock_skew: int = 60
    long_poll: int = 20
    # Long-polls one device may hold open at once (each holds a worker thread).
    max_polls_per_device: int = 2


@dataclasses.dataclass(frozen=True)
class WebAuthnSettings:
    """``[webauthn]``: the relying party identity security keys and passkeys bind to."""

    rp_id: str = ""
    rp_name: str = ""
    origins: tuple[str, ...] = ()


ADMIN_ACRS = (
    "urn:idp:acr:mfa",
    "http://idmanagement.gov/ns/assurance/aal/2",
    "http://idmanagement.gov/ns/assurance/aal/2?phishing_resistant=true",
)


@dataclasses.dataclass(frozen=True)
class AdminSettings:
    """``[admin]``: who may open the admin pages, and the MFA reminder batches."""

    mfa_max_age: int = 900
    required_acr: str = "urn:idp:acr:mfa"
    reminder_interval: int = 604800
    reminder_batch_size: int = 50
    registration_token_ttl: int = 86400


@dataclasses.dataclass(frozen=True)
class Settings:
    """All settings. Build with :func:`load_settings`; instances are immutable."""

    env: str = "development"
    issuer: str = "http://127.0.0.1:5000"
    secret_key: str = dataclasses.field(default=DEV_SECRET_KEY, repr=False)
    server: ServerSettings = dataclasses.field(default_factory=ServerSettings)
    database: DatabaseSettings = dataclasses.field(default_factory=DatabaseSettings)
    store: StoreSettings = dataclasses.field(default_factory=StoreSettings)
    keys: KeySettings = dataclasses.field(default_factory=KeySettings)
    session: SessionSettings = dataclasses.field(default_factory=SessionSettings)
    tokens: TokenSettings = dataclasses.field(default_factory=TokenSettings)
    login: LoginSettings = dataclasses.field(default_factory=LoginSettings)
    password: PasswordSettings = dataclasses.field(default_factory=PasswordSettings)
    security: SecuritySettings = dataclasses.field(default_factory=SecuritySettings)
    ui: UISettings = dataclasses.field(default_factory=UISettings)
    mfa: MFASettings = dataclasses.field(default_factory=MFASettings)
    webauthn: WebAuthnSettings = dataclasses.field(default_factory=WebAuthnSettings)
    push: PushSettings = dataclasses.field(default_factory=PushSettings)
    delivery: DeliverySettings = dataclasses.field(default_factory=DeliverySettings)
    otp: OTPSettings = dataclasses.field(default_factory=OTPSettings)
    registration: RegistrationSettings = dataclasses.field(default_factory=RegistrationSettings)
    ops: OpsSettings = dataclasses.field(default_factory=OpsSettings)
    audit: AuditSettings = dataclasses.field(default_factory=AuditSettings)
    admin: AdminSettings = dataclasses.field(default_factory=AdminSettings)

    def __post_init__(self) -> None:
        # The issuer is compared byte for byte by relying parties (OpenID Connect
        # Discovery 1.0, section 4.3), so keep one canonical form without trailing slash.
        if isinstance(self.issuer, str) and self.issuer.endswith("/"):
            object.__setattr__(self, "issuer", self.issuer.rstrip("/"))

    @property
    def is_production(self) -> bool:
        """True when ``env`` is ``"production"``."""
        return self.env == "production"

    def as_dict(self) -> dict[str, Any]:
        """Return the settings as nested plain dicts with secrets masked as ``"***"``.

        ``secret_key``, every encryption key value and any password embedded in the
        database or Redis URL are masked; key ids stay visible.
        """
        out: dict[str, Any] = {
            "env": self.env,
            "issuer": self.issuer,
            "secret_key": _MASK,
        }
        for section, cls in _SECTIONS.items():
            values = getattr(self, section)
            table: dict[str, Any] = {}
            for field in dataclasses.fields(cls):
                value = getattr(values, field.name)
                if (section, field.name) == ("security", "encryption_keys"):
                    value = {kid: _MASK for kid in value}
                elif (section, field.name) in _SECRET_FIELDS and value:
                    value = _MASK
                elif (section, field.name) in _URL_FIELDS:
                    value = _mask_url_password(value)
                table[field.name] = value
            out[section] = table
        return out


# --------------------------------------------------------------------------------------
# Schema derived from the dataclasses
# --------------------------------------------------------------------------------------

_TOP_LEVEL: dict[str, type] = {}
_SECTIONS: dict[str, type] = {}
for _field in dataclasses.fields(Settings):
    _hint = typing.get_type_hints(Settings)[_field.name]
    if dataclasses.is_dataclass(_hint):
        _SECTIONS[_field.name] = typing.cast(type, _hint)
    else:
        _TOP_LEVEL[_field.name] = _hint
del _field, _hint

_SECRET_FIELDS = {
    ("", "secret_key"),
    ("security", "encryption_keys"),
    ("ops", "metrics_token"),
    ("delivery", "smtp_password"),
    ("delivery", "twilio_auth_token"),
}
_URL_FIELDS = {("database", "url"), ("store", "redis_url")}


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _is_mapping_type(hint: Any) -> bool:
    return typing.get_origin(hint) is Mapping


def _is_list_type(hint: Any) -> bool:
    return typing.get_origin(hint) is tuple


def _label(section: str, key: str) -> str:
    return f"[{section}] {key}" if section else key


def _env_var(section: str, key: str) -> str:
    if section:
        return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"
    return f"{ENV_PREFIX}{key.upper()}"


def _fail(message: str) -> NoReturn:
    raise ConfigError(f"config: {message}")


def _describe(value: Any, secret: bool = False) -> str:
    """Render a TOML value for an error message without leaking secrets."""
    if isinstance(value, bool):
        text = "true" if value else "false"
        return f"boolean {text}" if not secret else "a boolean"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if secret:
        return f"a value of type {type(value).__name__}"
    if isinstance(value, int | float | str):
        return repr(value)
    return f"a value of type {type(value).__name__}"


def _type_name(hint: Any) -> str:
    if hint is bool:
        return "a boolean (true or false)"
    if hint is int:
        return "an integer"
    if hint is str:
        return "a string"
    if _is_mapping_type(hint):
        return "a table of key id = string"
    if _is_list_type(hint):
        return "an array of strings"
    return str(hint)  # pragma: no cover - every field has one of the types above


def _suggest(word: str, choices: Any, brackets: bool = False) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1)
    if not match:
        return ""
    return f" (did you mean [{match[0]}]?)" if brackets else f" (did you mean '{match[0]}'?)"


def _check_type(value: Any, hint: Any, section: str, key: str) -> Any:
    """Return ``value`` if it has the TOML type the field expects, else raise."""
    secret = (section, key) in _SECRET_FIELDS
    if hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is bool or hint is str:
        ok = isinstance(value, hint)
    elif _is_mapping_type(hint):
        ok = isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        )
    elif _is_list_type(hint):
        ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        if ok:
            return tuple(value)
    else:  # pragma: no cover - every field has one of the types above
        ok = False
    if not ok:
        _fail(
            f"{_label(section, key)} must be {_type_name(hint)} "
            f"(got {_describe(value, secret=secret)})"
        )
    return dict(value) if isinstance(value, dict) else value


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------

_Values = dict[str, dict[str, Any]]  # "" holds top-level keys, otherwise section name


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fp:
            return tomllib.load(fp)
    except FileNotFoundError:
        _fail(f"file {path} does not exist")
    except IsADirectoryError:
        _fail(f"{path} is a directory, not a TOML file")
    except PermissionError:
        _fail(f"{path} cannot be read (permission denied)")
    except tomllib.TOMLDecodeError as exc:
        _fail(f"{path} is not valid TOML: {exc}")
    except UnicodeDecodeError as exc:
        _fail(f"{path} is not valid TOML: not UTF-8 ({exc.reason} at byte {exc.start})")
    except OSError as exc:
        _fail(f"{path} cannot be read: {exc.strerror or exc}")


def _values_from_table(data: Mapping[str, Any]) -> _Values:
    """Check a parsed TOML document against the schema; return the values it sets."""
    values: _Values = {"": {}}
    top_types = _TOP_LEVEL
    for key, value in data.items():
        if key in top_types:
            values[""][key] = _check_type(value, top_types[key], "", key)
        elif key in _SECTIONS:
            if not isinstance(value, dict):
                _fail(f"[{key}] must be a table (got {_describe(value)})")
            field_types = _field_types(_SECTIONS[key])
            section_values: dict[str, Any] = {}
            for sub_key, sub_value in value.items():
                if sub_key not in field_types:
                    _fail(f"unknown key [{key}] {sub_key}{_suggest(sub_key, field_types)}")
                section_values[sub_key] = _check_type(sub_value, field_types[sub_key], key, sub_key)
            values[key] = section_values
        elif isinstance(value, dict):
            _fail(f"unknown section [{key}]{_suggest(key, _SECTIONS, brackets=True)}")
        else:
            _fail(f"unknown key {key}{_suggest(key, [*top_types, *_SECTIONS])}")
    return values


def _parse_encryption_keys(raw: str, var: str) -> dict[str, str]:
    keys: dict[str, str] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        kid, sep, key = item.partition(":")
        kid, key = kid.strip(), key.strip()
        if not sep or not kid or not key:
            _fail(
                f"{var} must be a comma-separated list of key_id:base64key "
                f"(entry {len(keys) + 1} is not key_id:base64key)"
            )
        if kid in keys:
            _fail(f"{var} lists key id {kid!r} twice")
        keys[kid] = key
    if not keys:
        _fail(f"{var} must list at least one key_id:base64key")
    return keys


def _coerce_env(raw: str, hint: Any, section: str, key: str, var: str) -> Any:
    """Convert an environment variable string to the field's type."""
    where = f"{var} ({_label(section, key)})"
    secret = (section, key) in _SECRET_FIELDS
    shown = "a value that is not shown" if secret else repr(raw)
    if hint is str:
        return raw
    if hint is int:
        try:
            return int(raw.strip())
        except ValueError:
            _fail(f"{where} must be an integer (got {shown})")
    if hint is bool:
        word = raw.strip().lower()
        if word not in _BOOL_WORDS:
            _fail(f"{where} must be one of true/false/1/0/yes/no (got {shown})")
        return _BOOL_WORDS[word]
    if _is_mapping_type(hint):
        return _parse_encryption_keys(raw, var)
    if _is_list_type(hint):
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    _fail(f"{where} cannot be set from the environment")  # pragma: no cover


def _apply_env(
    values: _Values, environ: Mapping[str, str], sources: dict[tuple[str, str], str]
) -> None:
    """Overlay ``IDP_*`` environment variables onto ``values`` (in place)."""
    schema: dict[str, dict[str, Any]] = {"": dict(_TOP_LEVEL)}
    schema.update({name: _field_types(cls) for name, cls in _SECTIONS.items()})
    for section, field_types in schema.items():
        for key, hint in field_types.items():
            var = _env_var(section, key)
            if var in environ:
                values.setdefault(section, {})[key] = _coerce_env(
                    environ[var], hint, section, key, var
                )
                sources[(section, key)] = var


def _build(values: _Values) -> Settings:
    top = dict(values.get("", {}))
    sections = {name: cls(**values.get(name, {})) for name, cls in _SECTIONS.items()}
    return Settings(**top, **sections)


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Load, validate and return the settings.

    ``path`` names a TOML file; when it is ``None`` the ``IDP_CONFIG`` environment
    variable is used, and when that is unset or empty only defaults and environment
    overrides apply. ``environ`` defaults to ``os.environ``; ``IDP_<KEY>`` and
    ``IDP_<SECTION>_<KEY>`` variables override the file. Raises :class:`ConfigError`
    on any problem, including unsafe production settings.
    """
    if environ is None:
        environ = os.environ
    if path is None:
        path = environ.get(CONFIG_ENV_VAR) or None
    values: _Values = {"": {}}
    if path is not None:
        values = _values_from_table(_read_toml(os.fspath(path)))
    sources: dict[tuple[str, str], str] = {}
    _apply_env(values, environ, sources)
    settings = _build(values)
    _validate(settings, environ, sources)
    return settings


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


class _Checker:
    """Formats messages with the key name and, for env overrides, the variable name."""

    def __init__(self, settings: Settings, sources: Mapping[tuple[str, str], str]) -> None:
        self.settings = settings
        self.sources = sources

    def name(self, section: str, key: str) -> str:
        label = _label(section, key)
        var = self.sources.get((section, key))
        return f"{label} (from {var})" if var else label

    def value(self, section: str, key: str) -> Any:
        holder = getattr(self.settings, section) if section else self.settings
        return getattr(holder, key)

    def fail(self, section: str, key: str, problem: str) -> NoReturn:
        _fail(f"{self.name(section, key)} {problem}")

    def one_of(self, section: str, key: str, choices: tuple[str, ...]) -> None:
        value = self.value(section, key)
        if value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            self.fail(section, key, f"must be one of {allowed} (got {value!r})")

    def at_least(self, section: str, key: str, minimum: int, why: str = "") -> None:
        value = self.value(section, key)
        if value < minimum:
            self.fail(section, key, f"must be at least {minimum}{why} (got {value})")

    def between(self, section: str, key: str, low: int, high: int, why: str = "") -> None:
        value = self.value(section, key)
        if not low <= value <= high:
            self.fail(section, key, f"must be between {low} and {high}{why} (got {value})")

    def not_empty(self, section: str, key: str) -> None:
        if not self.value(section, key).strip():
            self.fail(section, key, "must not be empty")


def _decode_encryption_key(value: str) -> bytes | None:
    """Decode urlsafe base64 (padding optional); None when it is not valid base64."""
    value = value.strip()
    if not _URLSAFE_B64.fullmatch(value):
        return None
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None


def _check_issuer(c: _Checker) -> None:
    issuer = c.settings.issuer
    example = "such as 'https://id.example.com'"
    if any(ch.isspace() for ch in issuer):
        c.fail("", "issuer", f"must be an http(s) URL {example} without spaces (got {issuer!r})")
    parts = urlsplit(issuer)
    try:
        parts.port  # noqa: B018 - raises ValueError for an invalid port
    except ValueError:
        c.fail("", "issuer", f"has an invalid port (got {issuer!r})")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        c.fail("", "issuer", f"must be an http(s) URL {example} (got {issuer!r})")
    if "?" in issuer or "#" in issuer:
        c.fail(
            "",
            "issuer",
            f"must not contain a query or fragment (OpenID Connect Core 1.0, "
            f"section 1.2) (got {issuer!r})",
        )
    if "@" in parts.netloc:
        c.fail("", "issuer", "must not contain user information (user:password@)")


def _check_mfa(c: _Checker) -> None:
    s = c.settings
    if s.mfa.enforce_from:
        try:
            datetime.date.fromisoformat(s.mfa.enforce_from)
        except ValueError:
            c.fail("mfa", "enforce_from", f"must be a date YYYY-MM-DD (got {s.mfa.enforce_from!r})")
    unknown = [f for f in s.mfa.allowed_factors if f not in FACTOR_TYPES]
    if unknown:
        c.fail(
            "mfa",
            "allowed_factors",
            f"has unknown factor {unknown[0]!r} (known: {', '.join(FACTOR_TYPES)})",
        )
    if s.mfa.required and not [f for f in s.mfa.allowed_factors if f != "recovery"]:
        c.fail("mfa", "allowed_factors", "must allow a factor other than recovery codes")
    c.between("mfa", "max_failures", 1, 100, " (NIST SP 800-63B 5.2.2 allows at most 100)")
    c.at_least("mfa", "lockout_seconds", 1)
    c.at_least("mfa", "max_totp_per_user", 1)
    c.between("mfa", "reauth_window", 60, 3600)
    c.between("push", "challenge_ttl", 5, 600)
    c.between("push", "enroll_ttl", 60, 3600)
    c.at_least("push", "sends_per_user", 1)
    c.at_least("push", "send_window", 1)
    c.between("push", "clock_skew", 5, 300)
    c.between("push", "long_poll", 1, 55)
    c.between("push", "max_polls_per_device", 1, 10)
    host = urllib.parse.urlsplit(s.issuer).hostname or ""
    rp_id = s.webauthn.rp_id
    if rp_id and not (host == rp_id or host.endswith("." + rp_id)):
        c.fail("webauthn", "rp_id", f"must be the issuer host {host!r} or a parent domain of it")
    for origin in s.webauthn.origins:
        parts = urllib.parse.urlsplit(origin)
        if parts.scheme not in ("https", "http") or not parts.netloc or parts.path not in ("",):
            c.fail("webauthn", "origins", f"{origin!r} is not an origin like https://id.example")


EMAIL_BACKENDS = ("console", "smtp")
PHONE_BACKENDS = ("console", "twilio")
SMTP_SECURITY = ("starttls", "tls", "none")


def _check_delivery(c: _Checker) -> None:
    d = c.settings.delivery
    c.one_of("delivery", "email_backend", EMAIL_BACKENDS)
    c.one_of("delivery", "smtp_security", SMTP_SECURITY)
    c.between("delivery", "smtp_port", 1, 65535)
    c.between("delivery", "smtp_timeout", 1, 120, " seconds")
    c.one_of("delivery", "sms_backend", PHONE_BACKENDS)
    c.one_of("delivery", "voice_backend", PHONE_BACKENDS)
    c.between("delivery", "timeout", 1, 60, " seconds")
    c.between("delivery", "retries", 0, 5)
    if d.email_backend == "smtp":
        c.not_empty("delivery", "smtp_host")
        if d.smtp_password and not d.smtp_username:
            c.fail("delivery", "smtp_password", "is set but [delivery] smtp_username is empty")
    if "twilio" in (d.sms_backend, d.voice_backend):
        for key in ("twilio_account_sid", "twilio_auth_token", "twilio_from"):
            c.not_empty("delivery", key)
        parts = urlsplit(d.twilio_base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            c.fail("delivery", "twilio_base_url", "must be an http(s) URL such as "
                   f"'https://api.twilio.com' (got {d.twilio_base_url!r})")  # fmt: skip
    o = c.settings.otp
    c.between("otp", "code_ttl", 60, 600, " seconds (NIST SP 800-63B allows at most 10 minutes)")
    c.between("otp", "max_attempts_per_code", 1, 10)
    c.between("otp", "resend_cooldown", 0, 600, " seconds")
    c.at_least("otp", "sends_per_user_per_hour", 1)
    c.at_least("otp", "sends_per_destination", 1)
    c.at_least("otp", "destination_window", 1, " second")
    c.at_least("otp", "sends_per_ip_per_hour", 1)
    if len(o.phone_region) != 2 or not o.phone_region.isalpha() or not o.phone_region.isupper():
        c.fail("otp", "phone_region", f"must be a two-letter region code such as 'US' "
               f"(got {o.phone_region!r})")  # fmt: skip


def _check_admin(c: _Checker) -> None:
    c.between("admin", "mfa_max_age", 60, 43200, " seconds")
    c.one_of("admin", "required_acr", ADMIN_ACRS)
    c.at_least("admin", "reminder_interval", 3600, " seconds")
    c.between("admin", "reminder_batch_size", 1, 1000)
    c.between("admin", "registration_token_ttl", 60, 31536000, " seconds")


def _check_fields(c: _Checker) -> None:
    s = c.settings
    _check_mfa(c)
    _check_admin(c)
    _check_delivery(c)
    c.one_of("ops", "log_format", ("text", "json"))
    c.between("audit", "seal_interval", 0, 3600)
    c.one_of("ops", "log_level", ("DEBUG", "INFO", "WARNING", "ERROR"))
    c.not_empty("delivery", "email_from")
    c.one_of("", "env", ENVIRONMENTS)
    _check_issuer(c)
    c.not_empty("", "secret_key")

    c.not_empty("server", "host")
    c.between("server", "port", 1, 65535)
    c.at_least("server", "workers", 1)
    c.at_least("server", "trusted_proxies", 0)

    if not _SQLALCHEMY_URL.match(s.database.url):
        c.fail(
            "database",
            "url",
            "must be an SQLAlchemy URL such as 'postgresql+psycopg://user@host/db' "
            "or 'sqlite:///instance/idp.sqlite3'",
        )

    c.one_of("store", "backend", STORE_BACKENDS)
    if s.store.backend == "redis" and urlsplit(s.store.redis_url).scheme not in (
        "redis",
        "rediss",
        "unix",
    ):
        c.fail(
            "store",
            "redis_url",
            "must be a redis://, rediss:// or unix:// URL such as 'redis://127.0.0.1:6379/0'",
        )

    c.not_empty("keys", "directory")
    c.one_of("keys", "algorithm", KEY_ALGORITHMS)

    if not _COOKIE_TOKEN.fullmatch(s.session.cookie_name):
        c.fail(
            "session",
            "cookie_name",
            f"must be a non-empty RFC 6265 cookie name of letters, digits and "
            f"!#$%&'*+-.^_`|~ (got {s.session.cookie_name!r})",
        )
    c.at_least("session", "idle_timeout", 60, " seconds")
    c.at_least("session", "absolute_timeout", 60, " seconds")
    if s.session.idle_timeout > s.session.absolute_timeout:
        c.fail(
            "session",
            "idle_timeout",
            f"({s.session.idle_timeout}) must not exceed "
            f"{c.name('session', 'absolute_timeout')} ({s.session.absolute_timeout})",
        )

    for key in ("access_token_ttl", "id_token_ttl", "refresh_token_ttl", "code_ttl"):
        c.at_least("tokens", key, 1, " second")
    if s.tokens.code_ttl > 600:
        c.fail(
            "tokens",
            "code_ttl",
            f"must be at most 600 seconds (RFC 6749 section 4.1.2 recommends a "
            f"maximum lifetime of 10 minutes) (got {s.tokens.code_ttl})",
        )

    c.between(
        "login",
        "max_consecutive_failures",
        1,
        100,
        " (NIST SP 800-63B section 5.2.2 allows at most 100)",
    )
    c.at_least("login", "lockout_seconds", 1)
    c.at_least("login", "per_ip_per_minute", 1)
    c.at_least("login", "failures_per_ip_per_minute", 1)
    c.at_least("login", "failures_per_account_ip_per_minute", 1)
    c.between("login", "device_trust_days", 1, 400, " days (browsers cap cookies at 400)")

    c.at_least("password", "time_cost", 1)
    c.at_least("password", "parallelism", 1)
    c.at_least(
        "password",
        "memory_cost",
        8 * s.password.parallelism,
        " KiB (Argon2 needs 8 KiB per lane of [password] parallelism)",
    )
    c.at_least("password", "min_length", 8, " (NIST SP 800-63B section 5.1.1.2)")
    c.at_least(
        "password",
        "max_length",
        64,
        " (NIST SP 800-63B section 5.1.1.2 requires accepting at least 64 characters)",
    )
    if s.password.max_length < s.password.min_length:
        c.fail(
            "password",
            "max_length",
            f"({s.password.max_length}) must be at least "
            f"{c.name('password', 'min_length')} ({s.password.min_length})",
        )

    keys = s.security.encryption_keys
    if not keys:
        c.fail("security", "encryption_keys", "must contain at least one key")
    for kid, value in keys.items():
        if not kid.strip():
            c.fail("security", "encryption_keys", "has an empty key id")
        decoded = _decode_encryption_key(value)
        if decoded is None:
            c.fail(
                "security",
                "encryption_keys",
                f"key {kid!r} is not urlsafe base64 (generate one with: python -c "
                f'"import base64,os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())")',
            )
        if len(decoded) != _ENCRYPTION_KEY_BYTES:
            c.fail(
                "security",
                "encryption_keys",
                f"key {kid!r} must decode to exactly {_ENCRYPTION_KEY_BYTES} bytes for "
                f"AES-256-GCM (got {len(decoded)} bytes)",
            )
    if s.security.active_encryption_key not in keys:
        known = ", ".join(repr(k) for k in keys)
        c.fail(
            "security",
            "active_encryption_key",
            f"must name a key in [security] encryption_keys ({known}) "
            f"(got {s.security.active_encryption_key!r})",
        )
    c.at_least("security", "hsts_max_age", 0, " seconds")
    c.at_least("security", "max_parameter_length", 256, " characters")

    c.not_empty("ui", "service_name")

    c.between("password", "min_score", 0, 4, " (a zxcvbn score)")
    c.between("password", "reset_ttl", 300, 86400, " seconds")
    c.at_least("password", "reset_per_ip_per_hour", 1)
    c.at_least("password", "reset_per_email_per_hour", 1)
    c.between("registration", "verify_ttl", 600, 7 * 86400, " seconds")
    c.at_least("registration", "per_ip_per_hour", 1)
    c.at_least("registration", "per_email_per_hour", 1)


def _web_concurrency(environ: Mapping[str, str]) -> int | None:
    raw = environ.get("WEB_CONCURRENCY")
    if raw is None:
        return None
    try:
        return int(raw.strip())
    except ValueError:
        return None  # not ours to validate; gunicorn reports it


def _check_deployment(c: _Checker, environ: Mapping[str, str]) -> None:
    s = c.settings
    if s.store.backend == "memory":
        backend = _label("store", "backend")
        advice = "(use backend = 'redis')"
        if s.server.workers > 1:
            _fail(
                f"{backend} 'memory' keeps state in one process; it cannot serve "
                f"{c.name('server', 'workers')} = {s.server.workers} {advice}"
            )
        concurrency = _web_concurrency(environ)
        if concurrency is not None and concurrency > 1:
            _fail(
                f"{backend} 'memory' keeps state in one process; it cannot serve "
                f"WEB_CONCURRENCY = {concurrency} {advice}"
            )

    if not s.is_production:
        return
    if s.secret_key == DEV_SECRET_KEY:
        c.fail(
            "",
            "secret_key",
            "is the built-in development key, which is refused in production; set "
            "IDP_SECRET_KEY to the output of: python -c "
            '"import secrets; print(secrets.token_urlsafe(48))"',
        )
    if len(s.secret_key) < _MIN_PRODUCTION_SECRET_LENGTH:
        c.fail(
            "",
            "secret_key",
            f"must be at least {_MIN_PRODUCTION_SECRET_LENGTH} characters in production "
            f"(got {len(s.secret_key)}); generate one with: python -c "
            '"import secrets; print(secrets.token_urlsafe(48))"',
        )
    dev_key = _decode_encryption_key(DEV_ENCRYPTION_KEY)
    for kid, value in s.security.encryption_keys.items():
        if _decode_encryption_key(value) == dev_key:
            c.fail(
                "security",
                "encryption_keys",
                f"key {kid!r} is the built-in development key, which is refused in "
                "production; set IDP_SECURITY_ENCRYPTION_KEYS",
            )
    if urlsplit(s.issuer).scheme != "https":
        c.fail("", "issuer", f"must use https in production (got {s.issuer!r})")
    if s.ops.metrics_enabled and len(s.ops.metrics_token) < 16:
        c.fail(
            "ops",
            "metrics_token",
            "must be at least 16 characters in production while metrics_enabled is true "
            "(Prometheus sends it as a bearer token); or set metrics_enabled = false",
        )


def _validate(
    settings: Settings,
    environ: Mapping[str, str],
    sources: Mapping[tuple[str, str], str],
) -> None:
    checker = _Checker(settings, sources)
    _check_fields(checker)
    _check_deployment(checker, environ)


def validate(settings: Settings, environ: Mapping[str, str] | None = None) -> None:
    """Raise :class:`ConfigError` if ``settings`` is invalid or unsafe to run.

    Checks types, ranges and enumerations, then the production rules and the
    single-process limit of the memory store (``[server] workers`` and the
    ``WEB_CONCURRENCY`` variable in ``environ``, default ``os.environ``).
    :func:`load_settings` already calls this.
    """
    if environ is None:
        environ = os.environ
    for section, key, hint in _all_fields():
        holder = getattr(settings, section) if section else settings
        value = getattr(holder, key)
        if _is_mapping_type(hint) and isinstance(value, Mapping):
            value = dict(value)
        _check_type(value, hint, section, key)
    _validate(settings, environ, {})


def _all_fields() -> list[tuple[str, str, Any]]:
    fields = [("", key, hint) for key, hint in _TOP_LEVEL.items()]
    for section, cls in _SECTIONS.items():
        fields.extend((section, key, hint) for key, hint in _field_types(cls).items())
    return fields


def development_warnings(settings: Settings) -> list[str]:
    """Return one-line warnings for settings that are allowed but unsafe.

    Meant to be printed at start-up outside production. Returns an empty list when
    ``settings.is_production`` (the unsafe cases are refused there, or accepted as a
    deliberate choice).
    """
    if settings.is_production:
        return []
    warnings: list[str] = []
    if settings.secret_key == DEV_SECRET_KEY:
        warnings.append(
            "secret_key is the built-in development key: anyone can forge session "
            "cookies; set IDP_SECRET_KEY before exposing this server"
        )
    dev_key = _decode_encryption_key(DEV_ENCRYPTION_KEY)
    dev_kids = [
        kid
        for kid, value in settings.security.encryption_keys.items()
        if _decode_encryption_key(value) == dev_key
    ]
    if dev_kids:
        warnings.append(
            f"[security] encryption_keys {', '.join(repr(k) for k in dev_kids)} is the "
            "built-in development key: data encrypted at rest is readable by anyone; "
            "set IDP_SECURITY_ENCRYPTION_KEYS"
        )
    if settings.store.backend == "memory":
        warnings.append(
            "[store] backend is 'memory': sessions, rate limits and lockouts live in "
            "one process and are lost on restart; use backend = 'redis' when deploying"
        )
    if settings.database.url.startswith("sqlite"):
        warnings.append(
            "[database] url is SQLite: fine for development, use PostgreSQL "
            "(postgresql+psycopg://user@host/db) when deploying"
        )
    return warnings


def _mask_url_password(url: str) -> str:
    """Replace the password in ``scheme://user:password@host`` with ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    userinfo, host = parts.netloc.rsplit("@", 1)
    if ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return parts._replace(netloc=f"{user}:{_MASK}@{host}").geturl()
