"""Typed settings for the identity provider.

Settings come from three layers, later layers winning: built-in defaults (safe for local
development only); a TOML file named by the ``path`` argument or ``IDP_CONFIG``; and
environment variables, ``IDP_<KEY>`` for top-level keys (``IDP_SECRET_KEY``) and
``IDP_<SECTION>_<KEY>`` for keys in a section (``IDP_STORE_REDIS_URL``).

Each ``[section]`` is a frozen pydantic dataclass whose fields declare, once, their type,
default, description, range or choices and the reason a refusal gives; building a section
(``dataclasses.replace`` included) checks them. :func:`validate` adds the rules that tie
fields together and the production rules. Every problem is a :class:`ConfigError` with a
one-line message naming the key; unknown sections, keys and ``IDP_*`` environment
variables are refused with a did-you-mean. ``config.example.toml`` documents every key.
"""

import base64
import binascii
import dataclasses
import datetime
import difflib
import functools
import os
import re
import tomllib
import typing
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Annotated, Any, Literal, NoReturn
from urllib.parse import SplitResult, urlsplit

import pydantic
from pydantic import AfterValidator, Field
from pydantic.fields import FieldInfo

__all__ = [
    "DEV_ENCRYPTION_KEY", "DEV_SECRET_KEY", "NON_SETTING_VARIABLES", "ConfigError",
    "DatabaseSettings", "KeySettings", "LoginSettings", "PasswordSettings", "PushSettings",
    "RegistrationSettings", "SecuritySettings", "ServerSettings", "SessionSettings", "Settings",
    "StoreSettings", "TokenSettings", "UISettings", "development_warnings", "load_settings",
    "validate",
]  # fmt: skip

#: Secret key used when none is configured. Refused when ``env = "production"``.
DEV_SECRET_KEY = "dev-only-insecure-secret-key-do-not-use-in-production"
#: urlsafe base64 of the 32 bytes ``b"dev-only-insecure-encryption-key"``.
#: Refused (under any key id) when ``env = "production"``.
DEV_ENCRYPTION_KEY = "ZGV2LW9ubHktaW5zZWN1cmUtZW5jcnlwdGlvbi1rZXk="
FACTOR_TYPES = ("totp", "webauthn", "recovery", "push", "email", "sms", "voice")
AdminAcr = Literal[
    "urn:idp:acr:mfa",
    "http://idmanagement.gov/ns/assurance/aal/2",
    "http://idmanagement.gov/ns/assurance/aal/2?phishing_resistant=true",
]
ADMIN_ACRS: tuple[str, ...] = typing.get_args(AdminAcr)

ENV_PREFIX = "IDP_"
CONFIG_ENV_VAR = "IDP_CONFIG"
#: ``IDP_*`` environment variables that belong to the project but are not settings, with
#: where they are read. Any other ``IDP_*`` variable must name a setting, so that a typo
#: is refused instead of ignored: add a variable here when the project reads a new one.
NON_SETTING_VARIABLES: Mapping[str, str] = MappingProxyType({
    CONFIG_ENV_VAR: "idp/config.py: the TOML file to load",
    "IDP_LOG_CONFIG": "idp/app.py: log the effective settings at start-up",
    "IDP_BIND": "idp/serving.py, gunicorn.conf.py: the address to listen on",
    "IDP_THREADS": "idp/serving.py, gunicorn.conf.py, idp/mfa/push/api.py: threads per worker",
    "IDP_WORKER_TIMEOUT": "gunicorn.conf.py: seconds before a stuck worker is replaced",
    "IDP_GRACEFUL_TIMEOUT": "idp/serving.py, gunicorn.conf.py: seconds requests in flight "
    "get on SIGTERM",
    "IDP_FORWARDED_ALLOW_IPS": "gunicorn.conf.py: proxies whose forwarded headers count",
    "IDP_ACCESS_LOG": "idp/granian_app.py, gunicorn.conf.py: the access log file",
    "IDP_VERIFY_STATE": "clients/verify: the companion app's state file",
    "IDP_TEST_REQUIRE": "tests, .ci/: services whose absence fails the test run",
    "IDP_TEST_POSTGRES_URL": "tests: the PostgreSQL server",
    "IDP_TEST_REDIS_URL": "tests: the Redis server",
})  # fmt: skip

_MASK = "***"
_KEY_BYTES = 32
_MIN_PRODUCTION_SECRET_LENGTH = 32
_URLSAFE_B64 = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_COOKIE_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 6265 4.1.1: an RFC 2616 token
_SQLALCHEMY_URL = re.compile(r"[A-Za-z][A-Za-z0-9+_.-]*://")
_BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_URL_FIELDS = {("database", "url"), ("store", "redis_url")}  # as_dict masks their passwords
_REDIS_SCHEMES = ("redis", "rediss", "unix")
_KEYGEN = 'python -c "import base64,os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())"'
_SECRETGEN = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'
_SECONDS = " seconds"


class ConfigError(Exception):
    """A configuration problem; the message is one line that names the offending key."""


class _Problem(ConfigError):
    """A refused value of one key; :func:`load_settings` adds the variable it came from."""

    def __init__(self, section: str, key: str, problem: str, var: str | None = None) -> None:
        self.section, self.key, self.problem = section, key, problem
        source = f" (from {var})" if var else ""
        super().__init__(f"config: {_label(section, key)}{source} {problem}")


def _fail(message: str) -> NoReturn:
    raise ConfigError(f"config: {message}")


def _label(section: str, key: str) -> str:
    return f"[{section}] {key}" if section else key


# ---------------------------------------------------------------- declaring settings


def _field(default: Any, doc: str, *, why: str = "", secret: bool = False, **rules: Any) -> Any:
    """A setting: its default, description, rules (``ge``, ``le``, ...) and ``why``, the
    unit or reason a range message ends with ("must be at least 60 seconds (got 5)")."""
    extra = {"why": why} if why else None
    return Field(default, description=doc, repr=not secret, json_schema_extra=extra, **rules)


def _rule(test: Callable[[Any], Any], problem: str, each: bool = False) -> AfterValidator:
    """Refuse a value (with ``each``: an item of it) for which ``test`` is false, with
    ``problem`` shown after the key's name; ``{0}`` in it is the value (or item)."""

    def check(value: Any) -> Any:
        for item in value if each else (value,):
            if not test(item):
                raise ValueError(problem.format(item))
        return value

    return AfterValidator(check)


def _decode_key(value: str) -> bytes | None:
    """Decode urlsafe base64 (padding optional); None when it is not valid base64."""
    value = value.strip()
    if not _URLSAFE_B64.fullmatch(value):
        return None
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None


def _issuer(value: str) -> str:
    # Relying parties compare the issuer byte for byte (OpenID Connect Discovery 1.0,
    # section 4.3), so keep one canonical form without trailing slash.
    issuer, example = value.rstrip("/"), "such as 'https://id.example.com'"
    if any(ch.isspace() for ch in issuer):
        raise ValueError(f"must be an http(s) URL {example} without spaces (got {issuer!r})")
    parts = _split(issuer)
    try:
        parts is None or parts.port  # noqa: B018 - raises ValueError for an invalid port
    except ValueError:
        raise ValueError(f"has an invalid port (got {issuer!r})") from None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http(s) URL {example} (got {issuer!r})")
    if "?" in issuer or "#" in issuer:
        raise ValueError("must not contain a query or fragment (OpenID Connect Core 1.0, "
                         f"section 1.2) (got {issuer!r})")  # fmt: skip
    if "@" in parts.netloc:
        raise ValueError("must not contain user information (user:password@)")
    return issuer


def _encryption_keys(keys: Mapping[str, str]) -> Mapping[str, str]:
    if not keys:
        raise ValueError("must contain at least one key")
    for kid, value in keys.items():
        decoded = _decode_key(value)
        if not kid.strip():
            raise ValueError("has an empty key id")
        if decoded is None:
            raise ValueError(f"key {kid!r} is not urlsafe base64 (generate one with: {_KEYGEN})")
        if len(decoded) != _KEY_BYTES:
            raise ValueError(f"key {kid!r} must decode to exactly {_KEY_BYTES} bytes for "
                             f"AES-256-GCM (got {len(decoded)} bytes)")  # fmt: skip
    return MappingProxyType(dict(keys))  # a read-only copy: the caller's dict may change


def _is_date(text: str) -> bool:
    try:
        return not text or bool(datetime.date.fromisoformat(text))
    except ValueError:
        return False


def _is_origin(origin: str) -> bool:
    parts = _split(origin)
    return bool(parts and parts.scheme in ("https", "http") and parts.netloc and not parts.path)


def _split(url: str) -> SplitResult | None:
    """``urlsplit``, or None for a URL it cannot parse (an unclosed ``[`` IPv6 address)."""
    try:
        return urlsplit(url)
    except ValueError:
        return None


# Values with a rule of their own; ranges and choices are declared at the fields.
_NonEmpty = Annotated[str, _rule(str.strip, "must not be empty")]
_Issuer = Annotated[str, AfterValidator(_issuer)]
_DatabaseUrl = Annotated[str, _rule(_SQLALCHEMY_URL.match, "must be an SQLAlchemy URL such as "
    "'postgresql+psycopg://user@host/db' or 'sqlite:///instance/idp.sqlite3'")]  # fmt: skip
_CookieName = Annotated[str, _rule(_COOKIE_TOKEN.fullmatch, "must be a non-empty RFC 6265 "
    "cookie name of letters, digits and !#$%&'*+-.^_`|~ (got {0!r})")]  # fmt: skip
_CodeTtl = Annotated[int, _rule(lambda ttl: ttl <= 600, "must be at most 600 seconds (RFC 6749 "
    "section 4.1.2 recommends a maximum lifetime of 10 minutes) (got {0})")]  # fmt: skip
_EncryptionKeys = Annotated[Mapping[str, str], AfterValidator(_encryption_keys)]
_Date = Annotated[str, _rule(_is_date, "must be a date YYYY-MM-DD (got {0!r})")]
_Factors = Annotated[tuple[str, ...], _rule(FACTOR_TYPES.__contains__,
    f"has unknown factor {{0!r}} (known: {', '.join(FACTOR_TYPES)})", each=True)]  # fmt: skip
_Origins = Annotated[tuple[str, ...], _rule(_is_origin,
    "{0!r} is not an origin like https://id.example", each=True)]  # fmt: skip
_Logo = Annotated[str, _rule(lambda url: not url or url.startswith(("https://", "/static/")),
    "must be an https:// URL or a /static/ path (got {0!r})")]  # fmt: skip
_Color = Annotated[str, _rule(lambda c: not c or re.fullmatch(r"#[0-9a-fA-F]{6}", c),
    "must be a colour like '#005ea2' (got {0!r})")]  # fmt: skip
_Region = Annotated[str, _rule(lambda code: len(code) == 2 and code.isalpha() and code.isupper(),
    "must be a two-letter region code such as 'US' (got {0!r})")]  # fmt: skip


@typing.dataclass_transform(frozen_default=True, field_specifiers=(Field, dataclasses.field))
class _Section:
    """Makes each subclass a frozen, strictly typed pydantic dataclass whose refused values
    raise a :class:`ConfigError` naming the key, whether they come from a file or code."""

    def __init_subclass__(cls) -> None:
        config = pydantic.ConfigDict(strict=True, extra="forbid")
        pydantic.dataclasses.dataclass(frozen=True, config=config)(cls)
        checked_init = cls.__init__

        @functools.wraps(checked_init)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            try:
                checked_init(self, *args, **kwargs)
            except pydantic.ValidationError as exc:
                raise _refusal(cls, exc.errors()[0], kwargs) from None

        cls.__init__ = __init__  # type: ignore[method-assign]


# ---------------------------------------------------------------- the sections


class ServerSettings(_Section):
    """``[server]``: where the WSGI server listens and how many processes it runs."""

    host: _NonEmpty = _field("127.0.0.1", "Interface `idp run` listens on.")
    port: int = _field(5000, "TCP port `idp run` listens on.", ge=1, le=65535)
    workers: int = _field(1, "Worker processes; above 1 needs [store] backend 'redis'.", ge=1)
    trusted_proxies: int = _field(0, "Proxies in front whose X-Forwarded-* are trusted.", ge=0)


class DatabaseSettings(_Section):
    """``[database]``: SQLAlchemy connection."""

    url: _DatabaseUrl = _field("sqlite:///instance/idp.sqlite3", "PostgreSQL in production.")
    echo: bool = _field(False, "Log every SQL statement (debugging only).")
    pool_pre_ping: bool = _field(False, "Test a pooled connection before each use.")


class StoreSettings(_Section):
    """``[store]``: short-lived shared state (sessions, rate limits, lockouts, nonces)."""

    backend: Literal["memory", "redis"] = _field("memory", "'memory' serves one process only.")
    redis_url: str = _field("redis://127.0.0.1:6379/0", "Redis URL for backend 'redis'.")
    prefix: str = _field("idp:", "Prefix of every Redis key (deployments can share one).")


class KeySettings(_Section):
    """``[keys]``: token signing keys."""

    directory: _NonEmpty = _field("keys", "Directory of the JWK signing key files.")
    algorithm: Literal["RS256", "ES256"] = _field("RS256", "Signs ID and access tokens.")


class SessionSettings(_Section):
    """``[session]``: browser session cookie and timeouts (seconds)."""

    cookie_name: _CookieName = _field("idp_session", "Name of the session cookie.")
    idle_timeout: int = _field(900, "Inactivity that ends a session.", ge=60, why=_SECONDS)
    absolute_timeout: int = _field(43200, "Session age that ends it.", ge=60, why=_SECONDS)


class TokenSettings(_Section):
    """``[tokens]``: lifetimes of issued artefacts (seconds)."""

    access_token_ttl: int = _field(300, "Access token lifetime.", ge=1, why=" second")
    id_token_ttl: int = _field(600, "ID token lifetime.", ge=1, why=" second")
    refresh_token_ttl: int = _field(2592000, "Refresh token lifetime.", ge=1, why=" second")
    code_ttl: _CodeTtl = _field(60, "Authorization code lifetime.", ge=1, why=" second")


class LoginSettings(_Section):
    """``[login]``: throttling of sign-in attempts, the lock, trusted browsers."""

    max_consecutive_failures: int = _field(10, "Failures in a row that lock an account.",
        ge=1, le=100, why=" (NIST SP 800-63B section 5.2.2 allows at most 100)")  # fmt: skip
    lockout_seconds: int = _field(900, "How long a locked account stays locked.", ge=1)
    per_ip_per_minute: int = _field(300, "Sign-ins per IP per minute, good ones too.", ge=1)
    failures_per_ip_per_minute: int = _field(30, "Failed sign-ins per IP per minute.", ge=1)
    failures_per_account_ip_per_minute: int = _field(5, "The same per account and IP.", ge=1)
    device_trust_days: int = _field(180, "How long a browser stays trusted after a sign-in.",
        ge=1, le=400, why=" days (browsers cap cookies at 400)")  # fmt: skip


class PasswordSettings(_Section):
    """``[password]``: Argon2id cost parameters and password length policy."""

    memory_cost: int = _field(19456, "Argon2id memory in KiB.", ge=8,
        why=" KiB (Argon2 needs 8 KiB per lane of [password] parallelism)")  # fmt: skip
    time_cost: int = _field(2, "Argon2id iterations.", ge=1)
    parallelism: int = _field(1, "Argon2id lanes.", ge=1)
    min_length: int = _field(12, "Shortest password accepted.", ge=8,
        why=" (NIST SP 800-63B section 5.1.1.2)")  # fmt: skip
    max_length: int = _field(128, "Longest password accepted.", ge=64, why=" (NIST SP 800-63B "
        "section 5.1.1.2 requires accepting at least 64 characters)")  # fmt: skip
    min_score: int = _field(3, "zxcvbn score a new password must reach.", ge=0, le=4,
        why=" (a zxcvbn score)")  # fmt: skip
    reset_ttl: int = _field(3600, "Lifetime of a reset link.", ge=300, le=86400, why=_SECONDS)
    reset_per_ip_per_hour: int = _field(20, "Reset requests per IP per hour.", ge=1)
    reset_per_email_per_hour: int = _field(3, "Reset requests per email per hour.", ge=1)


class RegistrationSettings(_Section):
    """``[registration]``: New User Registration (self-service sign-up)."""

    enabled: bool = _field(True, "Whether /register is open.")
    verify_ttl: int = _field(86400, "Lifetime of a verification link.", ge=600, le=604800,
        why=_SECONDS)  # fmt: skip
    per_ip_per_hour: int = _field(10, "Registrations per IP per hour.", ge=1)
    per_email_per_hour: int = _field(3, "Registrations per email per hour.", ge=1)


class SecuritySettings(_Section):
    """``[security]``: encryption at rest and HTTP hardening."""

    encryption_keys: Annotated[_EncryptionKeys, Field(description="AES-256-GCM keys for data "
        "at rest: key id = urlsafe base64 of 32 bytes.")] = dataclasses.field(
        default_factory=lambda: MappingProxyType({"dev": DEV_ENCRYPTION_KEY}),
        repr=False, hash=False)  # fmt: skip
    active_encryption_key: str = _field("dev", "Key id that encrypts new data.")
    hsts_max_age: int = _field(31536000, "Strict-Transport-Security max-age.", ge=0, why=_SECONDS)
    max_parameter_length: int = _field(2048, "Longest request parameter accepted.", ge=256,
        why=" characters")  # fmt: skip


class UISettings(_Section):
    """``[ui]``: texts shown to end users."""

    service_name: _NonEmpty = _field("Identity Provider", "Name of the service on its pages.")
    help_text: str = _field("", "Text of the sign-in help page.")
    help_phone: str = _field("", "Help line shown where users get stuck.")
    help_hours: str = _field("", "Opening hours of the help line.")
    help_hours_es: str = _field("", "help_hours in Spanish ('' for help_hours as it is).")
    help_text_es: str = _field("", "help_text in Spanish ('' for help_text as it is).")
    logo_url: _Logo = _field("", "Logo in the page header ('' for the name only).")
    primary_color: _Color = _field("", "Header and button colour, #rrggbb ('' for the default).")


class MFASettings(_Section):
    """``[mfa]``: who must use a second factor, from when, and the guessing limits."""

    required: bool = _field(True, "Whether every user must pass a second factor.")
    enforce_from: _Date = _field("", "UTC date from which a factor is a must ('' for now).")
    allowed_factors: _Factors = _field(FACTOR_TYPES, "Factors users may set up.", strict=False)
    recommend_second: bool = _field(True, "Recommend a second factor after the first.")
    max_totp_per_user: int = _field(3, "Authenticator apps one user may register.", ge=1)
    max_failures: int = _field(10, "Failed second-factor attempts before the lock.", ge=1,
        le=100, why=" (NIST SP 800-63B 5.2.2 allows at most 100)")  # fmt: skip
    lockout_seconds: int = _field(600, "How long the second-factor step stays locked.", ge=1)
    reauth_window: int = _field(600, "Seconds a sign-in allows security changes.", ge=60, le=3600)


class WebAuthnSettings(_Section):
    """``[webauthn]``: the relying party identity security keys and passkeys bind to."""

    rp_id: str = _field("", "The issuer host or a parent domain ('' for the host).")
    rp_name: str = _field("", "Name browsers show ('' for [ui] service_name).")
    origins: _Origins = _field((), "Origins of responses (none: the issuer's).", strict=False)
    passkey_offer_days: int = _field(30, "Days between offers of a passkey after a password "
        "sign-in (0: never).", ge=0, le=3650, why=" days")  # fmt: skip


class PushSettings(_Section):
    """``[push]``: push approval with number matching in the companion app (idp-verify)."""

    challenge_ttl: int = _field(120, "Seconds a sign-in request waits in the app.", ge=5, le=600)
    enroll_ttl: int = _field(600, "Seconds an enrollment QR code is valid.", ge=60, le=3600)
    sends_per_user: int = _field(3, "Push requests per user per send_window.", ge=1)
    send_window: int = _field(300, "Seconds that sends_per_user counts over.", ge=1)
    clock_skew: int = _field(60, "Seconds the app's clock may be off.", ge=5, le=300)
    long_poll: int = _field(20, "Seconds the app's long-poll is held open.", ge=1, le=55)
    max_polls_per_device: int = _field(2, "Long-polls one device may hold open.", ge=1, le=10)


class DeliverySettings(_Section):
    """``[delivery]``: how messages to users are sent."""

    email_backend: Literal["console", "smtp"] = _field("console", "'console': the outbox.")
    outbox: str = _field("instance/outbox.jsonl", "File the console backends append to.")
    email_from: _NonEmpty = _field("no-reply@localhost", "From address of every email.")
    email_reply_to: str = _field("", "Reply-To of every email ('' for none).")
    smtp_host: str = _field("localhost", "SMTP relay host.")
    smtp_port: int = _field(587, "SMTP relay port.", ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = _field("starttls", "TLS to the relay.")
    smtp_username: str = _field("", "SMTP AUTH user ('' for none).")
    smtp_password: str = _field("", "SMTP AUTH password.", secret=True)
    smtp_timeout: int = _field(10, "Seconds to wait for the relay.", ge=1, le=120, why=_SECONDS)
    sms_backend: Literal["console", "twilio"] = _field("console", "Sender of text messages.")
    voice_backend: Literal["console", "twilio"] = _field("console", "Maker of voice calls.")
    twilio_account_sid: str = _field("", "Twilio account SID.")
    twilio_auth_token: str = _field("", "Twilio auth token.", secret=True)
    twilio_from: str = _field("", "Sender number (E.164) or messaging service.")
    twilio_base_url: str = _field("https://api.twilio.com", "URL of the Twilio-style gateway.")
    timeout: int = _field(10, "Seconds per gateway attempt.", ge=1, le=60, why=_SECONDS)
    retries: int = _field(2, "Extra attempts after a connection error or 5xx.", ge=0, le=5)


class OTPSettings(_Section):
    """``[otp]``: one-time codes sent by email, text message or voice call."""

    code_ttl: int = _field(600, "Seconds a code stays valid.", ge=60, le=600,
        why=" seconds (NIST SP 800-63B allows at most 10 minutes)")  # fmt: skip
    max_attempts_per_code: int = _field(3, "Wrong entries one code survives.", ge=1, le=10)
    resend_cooldown: int = _field(30, "Wait before a new code.", ge=0, le=600, why=_SECONDS)
    sends_per_user_per_hour: int = _field(10, "Codes sent per user per hour.", ge=1)
    sends_per_destination: int = _field(11, "Codes sent to one address per window.", ge=1)
    destination_window: int = _field(300, "That window.", ge=1, why=" second")
    sends_per_ip_per_hour: int = _field(30, "Codes sent per IP per hour.", ge=1)
    phone_region: _Region = _field("US", "Region of numbers without a +country code.")


class OpsSettings(_Section):
    """``[ops]``: logs, request ids and metrics for operators."""

    log_format: Literal["text", "json"] = _field("text", "Plain text or one JSON object a line.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = _field("INFO", "Lowest level logged.")
    metrics_enabled: bool = _field(True, "Serve Prometheus metrics at /metrics.")
    metrics_token: str = _field("", "Bearer token /metrics requires ('' for open).", secret=True)


class AuditSettings(_Section):
    """``[audit]``: how soon recorded events are sealed into the hash chain."""

    seal_interval: int = _field(1, "Seconds between seals per process.", ge=0, le=3600)


class AdminSettings(_Section):
    """``[admin]``: who may open the admin pages, and the MFA reminder batches."""

    mfa_max_age: int = _field(900, "Age of a second factor /admin accepts.", ge=60, le=43200,
        why=_SECONDS)  # fmt: skip
    required_acr: AdminAcr = _field("urn:idp:acr:mfa", "Assurance that factor must reach.")
    reminder_interval: int = _field(604800, "Between reminders to one user.", ge=3600,
        why=_SECONDS)  # fmt: skip
    reminder_batch_size: int = _field(50, "MFA reminders sent per click.", ge=1, le=1000)
    registration_token_ttl: int = _field(86400, "Registration access token lifetime.", ge=60,
        le=31536000, why=_SECONDS)  # fmt: skip


class BackchannelLogoutSettings(_Section):
    """``[backchannel_logout]``: logout tokens POSTed to relying parties when a browser
    session ends (OpenID Connect Back-Channel Logout 1.0)."""

    timeout: int = _field(5, "Seconds one delivery attempt may take.", ge=1, le=30,
        why=_SECONDS)  # fmt: skip
    retries: int = _field(3, "Extra attempts after a failed delivery.", ge=0, le=10)
    retry_backoff: int = _field(2, "Seconds before the first retry (doubles each time).",
        ge=1, le=300, why=_SECONDS)  # fmt: skip
    queue_size: int = _field(1000, "Deliveries one process keeps waiting at most.", ge=1,
        le=100000)  # fmt: skip
    token_ttl: int = _field(120, "Lifetime of a logout token.", ge=10, le=600, why=_SECONDS)
    sweep_interval: int = _field(60, "Seconds between looks for expired sessions.", ge=1,
        le=3600, why=_SECONDS)  # fmt: skip
    allow_private_networks: bool = _field(False, "Deliver to private (RFC 1918) addresses.")


class ClientKeySettings(_Section):
    """``[client_keys]``: fetching the keys of private_key_jwt clients from their
    ``jwks_uri``."""

    fetch_timeout: int = _field(3, "Seconds a jwks_uri fetch may take.", ge=1, le=30,
        why=_SECONDS)  # fmt: skip
    max_bytes: int = _field(65536, "Largest key set accepted.", ge=1024, le=1048576,
        why=" bytes")  # fmt: skip
    cache_ttl: int = _field(300, "Seconds fetched keys are kept.", ge=10, le=86400,
        why=_SECONDS)  # fmt: skip
    refresh_interval: int = _field(60, "Least seconds between fetches for an unknown kid.",
        ge=1, le=3600, why=_SECONDS)  # fmt: skip


class PARSettings(_Section):
    """``[par]``: pushed authorization requests (RFC 9126)."""

    request_ttl: int = _field(60, "Seconds a request_uri stays usable.", ge=5, le=600,
        why=_SECONDS)  # fmt: skip


class CORSSettings(_Section):
    """``[cors]``: browser applications calling the token, userinfo and key endpoints."""

    max_age: int = _field(600, "Seconds browsers may cache a preflight answer.", ge=0,
        le=86400, why=_SECONDS)  # fmt: skip


class Settings(_Section):
    """All settings. Build with :func:`load_settings`; instances are immutable."""

    env: Literal["development", "test", "production"] = _field("development", "Where it runs.")
    issuer: _Issuer = _field("http://127.0.0.1:5000", "Public base URL (the 'iss' claim).")
    secret_key: _NonEmpty = _field(DEV_SECRET_KEY, "Signs cookies and CSRF tokens.", secret=True)
    server: ServerSettings = Field(default_factory=ServerSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    keys: KeySettings = Field(default_factory=KeySettings)
    session: SessionSettings = Field(default_factory=SessionSettings)
    tokens: TokenSettings = Field(default_factory=TokenSettings)
    login: LoginSettings = Field(default_factory=LoginSettings)
    password: PasswordSettings = Field(default_factory=PasswordSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    ui: UISettings = Field(default_factory=UISettings)
    mfa: MFASettings = Field(default_factory=MFASettings)
    webauthn: WebAuthnSettings = Field(default_factory=WebAuthnSettings)
    push: PushSettings = Field(default_factory=PushSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    otp: OTPSettings = Field(default_factory=OTPSettings)
    registration: RegistrationSettings = Field(default_factory=RegistrationSettings)
    ops: OpsSettings = Field(default_factory=OpsSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    backchannel_logout: BackchannelLogoutSettings = Field(default_factory=BackchannelLogoutSettings)
    client_keys: ClientKeySettings = Field(default_factory=ClientKeySettings)
    par: PARSettings = Field(default_factory=PARSettings)
    cors: CORSSettings = Field(default_factory=CORSSettings)

    @property
    def is_production(self) -> bool:
        """True when ``env`` is ``"production"``."""
        return self.env == "production"

    def as_dict(self) -> dict[str, Any]:
        """Return the settings as nested plain dicts with secrets masked as ``"***"``.

        ``secret_key``, every encryption key value and any password embedded in the
        database or Redis URL are masked; key ids stay visible.
        """

        def shown(holder: Any, section: str, field: dataclasses.Field) -> Any:
            value = getattr(holder, field.name)
            if isinstance(value, _Section):
                return {f.name: shown(value, field.name, f) for f in dataclasses.fields(value)}
            if isinstance(value, Mapping):
                return {kid: _MASK for kid in value}
            if (section, field.name) in _URL_FIELDS:
                return _mask_url_password(value)
            return _MASK if value and not field.repr else value

        return {f.name: shown(self, "", f) for f in dataclasses.fields(self)}


_SECTIONS: dict[str, Any] = {
    f.name: f.type
    for f in dataclasses.fields(Settings)
    if isinstance(f.type, type) and issubclass(f.type, _Section)
}
_SECTION_NAMES = {cls: name for name, cls in _SECTIONS.items()}


def _fields(section: str) -> dict[str, FieldInfo]:
    """The pydantic FieldInfo of each key of ``section`` ("" for the top level)."""
    fields = (_SECTIONS[section] if section else Settings).__pydantic_fields__
    return {key: info for key, info in fields.items() if key not in _SECTIONS}


def _env_var(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section}_{key}".upper() if section else f"{ENV_PREFIX}{key}".upper()


# ---------------------------------------------------------------- messages for refused values


def _describe(value: Any, secret: bool = False) -> str:
    """Render a TOML value for an error message without leaking secrets."""
    if isinstance(value, bool):
        return "a boolean" if secret else f"boolean {'true' if value else 'false'}"
    if isinstance(value, dict | list):
        return "a table" if isinstance(value, dict) else "an array"
    if not secret and isinstance(value, int | float | str):
        return repr(value)
    return f"a value of type {type(value).__name__}"


_TYPE_NAMES = {bool: "a boolean (true or false)", int: "an integer", str: "a string",
               Literal: "a string", Mapping: "a table of key id = string",
               tuple: "an array of strings"}  # fmt: skip


def _why(info: FieldInfo) -> str:
    """The unit or reason declared to end the field's range message."""
    return info.json_schema_extra.get("why", "") if isinstance(info.json_schema_extra, dict) else ""


def _suggest(word: str, choices: Iterable[str], template: str = "'{}'") -> str:
    match = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {template.format(match[0])}?)" if match else ""


def _refusal(cls: type, error: Any, given: Mapping[str, Any]) -> ConfigError:
    """The ConfigError for the first pydantic error raised while building ``cls``."""
    section, key = _SECTION_NAMES.get(cls, ""), str(error["loc"][0]) if error["loc"] else ""
    fields = cls.__pydantic_fields__  # type: ignore[attr-defined]
    if key not in fields:
        return ConfigError(f"config: unknown key {_label(section, key)}{_suggest(key, fields)}")
    info, kind, value = fields[key], error["type"], given.get(key, error["input"])
    if kind == "value_error":
        return _Problem(section, key, str(error["ctx"]["error"]))
    if kind in ("greater_than_equal", "less_than_equal"):
        low, high = (next((getattr(m, bound) for m in info.metadata if hasattr(m, bound)), None)
                     for bound in ("ge", "le"))  # fmt: skip
        limit = f"at least {low}" if high is None else f"between {low} and {high}"
        return _Problem(section, key, f"must be {limit}{_why(info)} (got {value})")
    if kind == "literal_error" and isinstance(value, str):
        allowed = ", ".join(repr(choice) for choice in typing.get_args(info.annotation))
        return _Problem(section, key, f"must be one of {allowed} (got {value!r})")
    hint = typing.get_origin(info.annotation) or info.annotation
    expected = _TYPE_NAMES.get(hint, f"a {getattr(hint, '__name__', hint)}")
    return _Problem(section, key, f"must be {expected} (got {_describe(value, not info.repr)})")


# ---------------------------------------------------------------- loading


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


def _values_from_table(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Refuse unknown sections and keys; return the values by section ("" for top level)."""
    values: dict[str, dict[str, Any]] = {"": {}}
    for key, value in data.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                _fail(f"[{key}] must be a table (got {_describe(value)})")
            for sub_key in value:
                if sub_key not in _fields(key):
                    _fail(f"unknown key [{key}] {sub_key}{_suggest(sub_key, _fields(key))}")
            values[key] = value
        elif key in _fields(""):
            values[""][key] = value
        elif isinstance(value, dict):
            _fail(f"unknown section [{key}]{_suggest(key, _SECTIONS, '[{}]')}")
        else:
            _fail(f"unknown key {key}{_suggest(key, [*_fields(''), *_SECTIONS])}")
    return values


def _parse_encryption_keys(raw: str, var: str) -> dict[str, str]:
    keys: dict[str, str] = {}
    for item in filter(None, (item.strip() for item in raw.split(","))):
        kid, sep, key = (part.strip() for part in item.partition(":"))
        if not sep or not kid or not key:
            _fail(f"{var} must be a comma-separated list of key_id:base64key "
                  f"(entry {len(keys) + 1} is not key_id:base64key)")  # fmt: skip
        if kid in keys:
            _fail(f"{var} lists key id {kid!r} twice")
        keys[kid] = key
    return keys or _fail(f"{var} must list at least one key_id:base64key")


def _from_env(raw: str, info: FieldInfo, var: str, label: str) -> Any:
    """Convert an environment variable's string to the field's type."""
    hint = typing.get_origin(info.annotation) or info.annotation
    shown = repr(raw) if info.repr else "a value that is not shown"
    if hint is int:
        try:
            return int(raw.strip())
        except ValueError:
            _fail(f"{var} ({label}) must be an integer (got {shown})")
    if hint is bool:
        if raw.strip().lower() not in _BOOL_WORDS:
            _fail(f"{var} ({label}) must be one of true/false/1/0/yes/no (got {shown})")
        return _BOOL_WORDS[raw.strip().lower()]
    if hint is Mapping:
        return _parse_encryption_keys(raw, var)
    if hint is tuple:
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    return raw


def _apply_env(
    values: dict[str, dict[str, Any]], environ: Mapping[str, str]
) -> dict[tuple[str, str], str]:
    """Overlay ``IDP_*`` variables onto ``values``; return {(section, key): variable}."""
    settings_vars = {_env_var(s, k): (s, k) for s in ("", *_SECTIONS) for k in _fields(s)}
    sources: dict[tuple[str, str], str] = {}
    for var in sorted(name for name in environ if name.startswith(ENV_PREFIX)):
        if var in settings_vars:
            section, key = settings_vars[var]
            info, label = _fields(section)[key], _label(section, key)
            values.setdefault(section, {})[key] = _from_env(environ[var], info, var, label)
            sources[(section, key)] = var
        elif var not in NON_SETTING_VARIABLES:
            known = [*settings_vars, *NON_SETTING_VARIABLES]
            _fail(f"unknown environment variable {var}{_suggest(var, known, '{}')}")
    return sources


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Load, validate and return the settings.

    ``path`` names a TOML file; when it is ``None`` the ``IDP_CONFIG`` environment
    variable is used, and when that is unset or empty only defaults and environment
    overrides apply. ``environ`` defaults to ``os.environ``; ``IDP_<KEY>`` and
    ``IDP_<SECTION>_<KEY>`` variables override the file, and any other ``IDP_*`` variable
    not in :data:`NON_SETTING_VARIABLES` is refused. Raises :class:`ConfigError` on any
    problem, including unsafe production settings.
    """
    environ = os.environ if environ is None else environ
    path = (environ.get(CONFIG_ENV_VAR) or None) if path is None else path
    values = _values_from_table(_read_toml(os.fspath(path))) if path is not None else {}
    sources = _apply_env(values, environ)
    try:
        sections = {name: cls(**values.get(name, {})) for name, cls in _SECTIONS.items()}
        settings = Settings(**values.get("", {}), **sections)
    except _Problem as exc:  # name the variable the refused value came from
        var = sources.get((exc.section, exc.key))
        raise _Problem(exc.section, exc.key, exc.problem, var) from None
    _validate(settings, environ, sources)
    return settings


# ---------------------------------------------------------------- rules across fields


class _Checker:
    """Names keys in messages, with the variable for values from the environment."""

    def __init__(self, settings: Settings, sources: Mapping[tuple[str, str], str]) -> None:
        self.settings, self.sources = settings, sources

    def name(self, section: str, key: str) -> str:
        var = self.sources.get((section, key))
        return f"{_label(section, key)} (from {var})" if var else _label(section, key)

    def fail(self, section: str, key: str, problem: str) -> NoReturn:
        _fail(f"{self.name(section, key)} {problem}")


def _check_mfa(c: _Checker) -> None:
    s = c.settings
    if s.mfa.required and set(s.mfa.allowed_factors) <= {"recovery"}:
        c.fail("mfa", "allowed_factors", "must allow a factor other than recovery codes")
    host, rp_id = urlsplit(s.issuer).hostname or "", s.webauthn.rp_id
    if rp_id and not (host == rp_id or host.endswith("." + rp_id)):
        c.fail("webauthn", "rp_id", f"must be the issuer host {host!r} or a parent domain of it")


def _check_delivery(c: _Checker) -> None:
    d = c.settings.delivery
    if d.email_backend == "smtp":
        if not d.smtp_host.strip():
            c.fail("delivery", "smtp_host", "must not be empty")
        if d.smtp_password and not d.smtp_username:
            c.fail("delivery", "smtp_password", "is set but [delivery] smtp_username is empty")
    if "twilio" in (d.sms_backend, d.voice_backend):
        for key in ("twilio_account_sid", "twilio_auth_token", "twilio_from"):
            if not getattr(d, key).strip():
                c.fail("delivery", key, "must not be empty")
        parts = urlsplit(d.twilio_base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            c.fail("delivery", "twilio_base_url", "must be an http(s) URL such as "
                   f"'https://api.twilio.com' (got {d.twilio_base_url!r})")  # fmt: skip


def _check_related_fields(c: _Checker) -> None:
    s, p = c.settings, c.settings.password
    if s.store.backend == "redis" and urlsplit(s.store.redis_url).scheme not in _REDIS_SCHEMES:
        c.fail("store", "redis_url", "must be a redis://, rediss:// or unix:// URL such as "
               "'redis://127.0.0.1:6379/0'")  # fmt: skip
    if s.session.idle_timeout > s.session.absolute_timeout:
        absolute = c.name("session", "absolute_timeout")
        c.fail("session", "idle_timeout", f"({s.session.idle_timeout}) must not exceed "
               f"{absolute} ({s.session.absolute_timeout})")  # fmt: skip
    if p.memory_cost < 8 * p.parallelism:
        why = _why(_fields("password")["memory_cost"])
        c.fail("password", "memory_cost", f"must be at least {8 * p.parallelism}{why} "
               f"(got {p.memory_cost})")  # fmt: skip
    if p.max_length < p.min_length:
        c.fail("password", "max_length", f"({p.max_length}) must be at least "
               f"{c.name('password', 'min_length')} ({p.min_length})")  # fmt: skip
    keys, active = s.security.encryption_keys, s.security.active_encryption_key
    if active not in keys:
        c.fail("security", "active_encryption_key", "must name a key in [security] "
               f"encryption_keys ({', '.join(map(repr, keys))}) (got {active!r})")  # fmt: skip


def _check_deployment(c: _Checker, environ: Mapping[str, str]) -> None:
    s = c.settings
    try:
        concurrency = int(environ.get("WEB_CONCURRENCY", "1").strip())
    except ValueError:
        concurrency = 1  # not ours to validate: gunicorn reports it
    for what, count in ((c.name("server", "workers"), s.server.workers),
                        ("WEB_CONCURRENCY", concurrency)):  # fmt: skip
        if s.store.backend == "memory" and count > 1:
            _fail(f"[store] backend 'memory' keeps state in one process; it cannot serve "
                  f"{what} = {count} (use backend = 'redis')")  # fmt: skip
    if not s.is_production:
        return
    if s.secret_key == DEV_SECRET_KEY:
        c.fail("", "secret_key", "is the built-in development key, which is refused in "
               f"production; set IDP_SECRET_KEY to the output of: {_SECRETGEN}")  # fmt: skip
    if len(s.secret_key) < _MIN_PRODUCTION_SECRET_LENGTH:
        c.fail("", "secret_key", f"must be at least {_MIN_PRODUCTION_SECRET_LENGTH} "
               f"characters in production (got {len(s.secret_key)}); generate one with: "
               f"{_SECRETGEN}")  # fmt: skip
    for kid in _dev_key_ids(s):
        c.fail("security", "encryption_keys", f"key {kid!r} is the built-in development key, "
               "which is refused in production; set IDP_SECURITY_ENCRYPTION_KEYS")  # fmt: skip
    if urlsplit(s.issuer).scheme != "https":
        c.fail("", "issuer", f"must use https in production (got {s.issuer!r})")
    if s.ops.metrics_enabled and len(s.ops.metrics_token) < 16:
        c.fail("ops", "metrics_token", "must be at least 16 characters in production while "
               "metrics_enabled is true (Prometheus sends it as a bearer token); or set "
               "metrics_enabled = false")  # fmt: skip


def _dev_key_ids(settings: Settings) -> list[str]:
    keys, dev_key = settings.security.encryption_keys, _decode_key(DEV_ENCRYPTION_KEY)
    return [kid for kid, value in keys.items() if _decode_key(value) == dev_key]


def _validate(
    settings: Settings, environ: Mapping[str, str], sources: Mapping[tuple[str, str], str]
) -> None:
    checker = _Checker(settings, sources)
    _check_mfa(checker)
    _check_delivery(checker)
    _check_related_fields(checker)
    _check_deployment(checker, environ)


def validate(settings: Settings, environ: Mapping[str, str] | None = None) -> None:
    """Raise :class:`ConfigError` if ``settings`` is invalid or unsafe to run.

    Each field was checked when its section was built; this adds the rules that tie
    fields together, the production rules and the single-process limit of the memory
    store (``[server] workers`` and the ``WEB_CONCURRENCY`` variable in ``environ``,
    default ``os.environ``). :func:`load_settings` already calls this.
    """
    _validate(settings, os.environ if environ is None else environ, {})


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
        warnings.append("secret_key is the built-in development key: anyone can forge session "
                        "cookies; set IDP_SECRET_KEY before exposing this server")  # fmt: skip
    if dev_kids := _dev_key_ids(settings):
        warnings.append(f"[security] encryption_keys {', '.join(map(repr, dev_kids))} is the "
                        "built-in development key: data encrypted at rest is readable by "
                        "anyone; set IDP_SECURITY_ENCRYPTION_KEYS")  # fmt: skip
    if settings.store.backend == "memory":
        warnings.append("[store] backend is 'memory': sessions, rate limits and lockouts live "
                        "in one process and are lost on restart; use backend = 'redis' when "
                        "deploying")  # fmt: skip
    if settings.database.url.startswith("sqlite"):
        warnings.append("[database] url is SQLite: fine for development, use PostgreSQL "
                        "(postgresql+psycopg://user@host/db) when deploying")  # fmt: skip
    return warnings


def _mask_url_password(url: str) -> str:
    """Replace the password in ``scheme://user:password@host`` with ``***``."""
    parts = _split(url)
    userinfo, at, host = parts.netloc.rpartition("@") if parts else ("", "", "")
    if not parts or not at or ":" not in userinfo:
        return url
    return parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:{_MASK}@{host}").geturl()
