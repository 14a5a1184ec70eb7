"""Tests for idp.config: loading, environment overrides and every refusal."""

import base64
import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from idp.config import (
    DEV_ENCRYPTION_KEY,
    DEV_SECRET_KEY,
    NON_SETTING_VARIABLES,
    ConfigError,
    SecuritySettings,
    Settings,
    development_warnings,
    load_settings,
    validate,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
CONFIG_PY = Path(__file__).resolve().parents[2] / "idp" / "config.py"

STRONG_SECRET = "s" * 48
REAL_KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()
# A production environment that passes every production check.
PROD_ENV = {
    "IDP_ENV": "production",
    "IDP_ISSUER": "https://id.example.com",
    "IDP_SECRET_KEY": STRONG_SECRET,
    "IDP_SECURITY_ENCRYPTION_KEYS": f"k1:{REAL_KEY}",
    "IDP_SECURITY_ACTIVE_ENCRYPTION_KEY": "k1",
    "IDP_OPS_METRICS_TOKEN": "m" * 32,
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "idp.toml"
    path.write_text(text, encoding="utf-8")
    return path


def refused(text: str | None = None, tmp_path: Path | None = None, **environ: str) -> str:
    """Load and return the ConfigError message, failing if loading succeeds."""
    path = write(tmp_path, text) if text is not None and tmp_path is not None else None
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ=environ)
    message = str(info.value)
    assert message.startswith("config: ")
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- defaults and the example


def test_defaults_without_file() -> None:
    settings = load_settings(None, environ={})
    assert settings == Settings()
    assert settings.env == "development"
    assert not settings.is_production
    assert settings.issuer == "http://127.0.0.1:5000"
    assert settings.secret_key == DEV_SECRET_KEY
    assert settings.server.port == 5000
    assert settings.store.backend == "memory"
    assert settings.tokens.code_ttl == 60
    assert settings.password.memory_cost == 19456
    assert dict(settings.security.encryption_keys) == {"dev": DEV_ENCRYPTION_KEY}
    assert settings.security.active_encryption_key == "dev"
    assert settings.ui.help_text == ""


def test_dev_encryption_key_is_32_bytes() -> None:
    assert base64.urlsafe_b64decode(DEV_ENCRYPTION_KEY) == b"dev-only-insecure-encryption-key"


def test_example_file_loads_and_equals_defaults() -> None:
    assert load_settings(EXAMPLE, environ={}) == Settings()


def test_example_file_lists_every_key() -> None:
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    defaults = Settings()
    for field in dataclasses.fields(Settings):
        assert field.name in data, field.name
        value = getattr(defaults, field.name)
        if dataclasses.is_dataclass(value):
            missing = {f.name for f in dataclasses.fields(value)} - set(data[field.name])
            assert not missing, (field.name, missing)


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 8080\n")
    settings = load_settings(environ={"IDP_CONFIG": str(path)})
    assert settings.server.port == 8080


def test_missing_file_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="nope.toml does not exist"):
        load_settings(missing, environ={})


def test_missing_file_from_idp_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.toml does not exist"):
        load_settings(environ={"IDP_CONFIG": str(tmp_path / "nope.toml")})


def test_issuer_trailing_slash_is_stripped(tmp_path: Path) -> None:
    path = write(tmp_path, 'issuer = "http://localhost:5000/"\n')
    assert load_settings(path, environ={}).issuer == "http://localhost:5000"


def test_settings_are_immutable() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.env = "production"  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.security.encryption_keys["evil"] = "x"  # type: ignore[index]


def test_encryption_keys_copied_from_caller_dict() -> None:
    keys = {"k1": REAL_KEY}
    security = SecuritySettings(encryption_keys=keys, active_encryption_key="k1")
    keys["k2"] = REAL_KEY
    assert list(security.encryption_keys) == ["k1"]


# ---------------------------------------------------------------- file and env precedence


def test_file_values_are_used(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        issuer = "https://id.example.com"
        [server]
        port = 8000
        [database]
        echo = true
        [ui]
        help_text = "Call 555-0100, Mon-Fri 9-17"
        """,
    )
    settings = load_settings(path, environ={})
    assert settings.issuer == "https://id.example.com"
    assert settings.server.port == 8000
    assert settings.database.echo is True
    assert settings.ui.help_text == "Call 555-0100, Mon-Fri 9-17"
    # keys not in the file keep their defaults
    assert settings.server.host == "127.0.0.1"


def test_env_overrides_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[server]\nport = 8000\nhost = "0.0.0.0"\n[store]\nbackend = "memory"\n',
    )
    settings = load_settings(
        path,
        environ={
            "IDP_SERVER_PORT": "9000",
            "IDP_STORE_BACKEND": "redis",
            "IDP_STORE_REDIS_URL": "redis://cache:6379/1",
            "IDP_DATABASE_URL": "postgresql+psycopg://user@db/idp",
            "IDP_DATABASE_ECHO": "Yes",
            "IDP_SESSION_IDLE_TIMEOUT": "600",
            "IDP_SERVER_WORKERS": "4",
        },
    )
    assert settings.server.port == 9000
    assert settings.server.host == "0.0.0.0"  # from the file, not overridden
    assert settings.store.backend == "redis"
    assert settings.store.redis_url == "redis://cache:6379/1"
    assert settings.database.url == "postgresql+psycopg://user@db/idp"
    assert settings.database.echo is True
    assert settings.session.idle_timeout == 600
    assert settings.server.workers == 4


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("TRUE", True), ("1", True), ("yes", True)]
    + [("false", False), ("False", False), ("0", False), ("NO", False)],
)
def test_env_bool_coercion(raw: str, expected: bool) -> None:
    assert load_settings(environ={"IDP_DATABASE_ECHO": raw}).database.echo is expected


def test_env_top_level_and_encryption_keys() -> None:
    settings = load_settings(environ=PROD_ENV)
    assert settings.is_production
    assert settings.secret_key == STRONG_SECRET
    assert settings.issuer == "https://id.example.com"
    assert dict(settings.security.encryption_keys) == {"k1": REAL_KEY}


def test_env_encryption_keys_several() -> None:
    other = base64.urlsafe_b64encode(b"\xff" * 32).decode()
    settings = load_settings(
        environ={
            "IDP_SECURITY_ENCRYPTION_KEYS": f"old:{REAL_KEY}, new:{other}",
            "IDP_SECURITY_ACTIVE_ENCRYPTION_KEY": "new",
        }
    )
    assert dict(settings.security.encryption_keys) == {"old": REAL_KEY, "new": other}


def test_project_variables_that_are_not_settings_are_allowed() -> None:
    environ = dict.fromkeys(NON_SETTING_VARIABLES, "x")
    del environ["IDP_CONFIG"]  # names the file to load
    assert {"IDP_TEST_REQUIRE", "IDP_BIND", "IDP_LOG_CONFIG"} <= set(environ)
    assert load_settings(environ=environ) == Settings()


def test_unknown_idp_variable_is_refused_with_a_suggestion() -> None:
    # A typo used to be ignored silently, leaving the setting at its default.
    message = refused(IDP_STORE_BACKNED="redis")
    assert message == (
        "config: unknown environment variable IDP_STORE_BACKNED (did you mean IDP_STORE_BACKEND?)"
    )
    assert refused(IDP_FOO="x") == "config: unknown environment variable IDP_FOO"
    # A renamed setting is caught the same way.
    message = refused(IDP_LOGIN_PER_ACCOUNT_IP_PER_MINUTE="5")
    assert "did you mean IDP_LOGIN_FAILURES_PER_ACCOUNT_IP_PER_MINUTE?" in message


def test_variables_outside_the_idp_prefix_are_not_ours() -> None:
    assert load_settings(environ={"IDPX_STORE": "1", "HOME": "/root"}) == Settings()


def test_every_idp_variable_the_project_reads_is_allowed() -> None:
    """gunicorn.conf.py, the app, the clients, CI and the docs name only settings or
    variables of NON_SETTING_VARIABLES (tests and bench only set variables for servers
    they start, which the server then checks)."""
    root = Path(__file__).resolve().parents[2]
    places = ["idp", "clients", ".ci", "docs", "gunicorn.conf.py", "wsgi.py", "Makefile",
              "README.md", "config.example.toml", "tests/conftest.py"]  # fmt: skip
    files = [p for place in places for p in [root / place, *(root / place).rglob("*")]]
    settings_vars = set()
    for field in dataclasses.fields(Settings):
        if dataclasses.is_dataclass(field.type):
            settings_vars |= {
                f"IDP_{field.name}_{f.name}".upper() for f in dataclasses.fields(field.type)
            }
        else:
            settings_vars.add(f"IDP_{field.name}".upper())
    unknown = {}
    for path in files:
        if path.suffix in {"", ".py", ".md", ".toml"} and path.is_file() and path != CONFIG_PY:
            for name in re.findall(r"\bIDP_[A-Z0-9_]*[A-Z0-9]", path.read_text(errors="replace")):
                if name not in settings_vars and name not in NON_SETTING_VARIABLES:
                    unknown.setdefault(name, str(path.relative_to(root)))
    assert not unknown, unknown


# ---------------------------------------------------------------- refusals: file syntax/keys


def test_malformed_toml(tmp_path: Path) -> None:
    message = refused("[server\nport = 1\n", tmp_path)
    assert "idp.toml is not valid TOML:" in message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "idp.toml"
    path.write_bytes(b'issuer = "\xff"\n')
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings(path, environ={})


def test_unknown_top_level_key(tmp_path: Path) -> None:
    message = refused('isuer = "https://x"\n', tmp_path)
    assert "unknown key isuer" in message
    assert "did you mean 'issuer'" in message


def test_unknown_section(tmp_path: Path) -> None:
    message = refused("[sesion]\nidle_timeout = 600\n", tmp_path)
    assert "unknown section [sesion]" in message
    assert "[session]" in message


def test_unknown_key_in_section(tmp_path: Path) -> None:
    message = refused('[store]\nbakend = "redis"\n', tmp_path)
    assert "unknown key [store] bakend" in message
    assert "did you mean 'backend'" in message


def test_section_that_is_not_a_table(tmp_path: Path) -> None:
    message = refused('store = "redis"\n', tmp_path)
    assert "[store] must be a table" in message


# ---------------------------------------------------------------- refusals: types


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            '[session]\nidle_timeout = "abc"\n',
            "[session] idle_timeout must be an integer (got 'abc')",
        ),
        ("[server]\nport = true\n", "[server] port must be an integer (got boolean true)"),
        ("[server]\nport = 5000.0\n", "[server] port must be an integer (got 5000.0)"),
        ("[database]\necho = 1\n", "[database] echo must be a boolean"),
        ("issuer = 5\n", "issuer must be a string (got 5)"),
        ('[store]\nbackend = ["redis"]\n', "[store] backend must be a string (got an array)"),
        ('[security]\nencryption_keys = "k"\n', "[security] encryption_keys must be a table"),
        ("[security.encryption_keys]\nk1 = 5\n", "[security] encryption_keys must be a table"),
    ],
)
def test_wrong_types(tmp_path: Path, text: str, fragment: str) -> None:
    assert fragment in refused(text, tmp_path)


def test_wrong_type_for_secret_does_not_echo_value(tmp_path: Path) -> None:
    message = refused("secret_key = 123456789\n", tmp_path)
    assert "secret_key must be a string" in message
    assert "123456789" not in message


# ---------------------------------------------------------------- refusals: values


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('env = "prod"\n', "env must be one of 'development', 'test', 'production' (got 'prod')"),
        (
            '[store]\nbackend = "mem"\n',
            "[store] backend must be one of 'memory', 'redis' (got 'mem')",
        ),
        ('[keys]\nalgorithm = "HS256"\n', "[keys] algorithm must be one of 'RS256', 'ES256'"),
        ('issuer = "ftp://id.example.com"\n', "issuer must be an http(s) URL"),
        ('issuer = "id.example.com"\n', "issuer must be an http(s) URL"),
        ('issuer = "https://id.example.com?x=1"\n', "issuer must not contain a query or fragment"),
        ('issuer = "https://id.example.com#top"\n', "issuer must not contain a query or fragment"),
        ("[server]\nport = 0\n", "[server] port must be between 1 and 65535 (got 0)"),
        ("[server]\nport = 70000\n", "[server] port must be between 1 and 65535 (got 70000)"),
        ("[server]\nworkers = 0\n", "[server] workers must be at least 1 (got 0)"),
        ("[server]\ntrusted_proxies = -1\n", "[server] trusted_proxies must be at least 0"),
        ("[session]\nidle_timeout = 30\n", "[session] idle_timeout must be at least 60"),
        ("[session]\nabsolute_timeout = 59\n", "[session] absolute_timeout must be at least 60"),
        (
            "[session]\nidle_timeout = 1000\nabsolute_timeout = 900\n",
            "[session] idle_timeout (1000) must not exceed [session] absolute_timeout (900)",
        ),
        ('[session]\ncookie_name = "my session"\n', "[session] cookie_name must be"),
        ("[tokens]\naccess_token_ttl = 0\n", "[tokens] access_token_ttl must be at least 1"),
        ("[tokens]\nrefresh_token_ttl = -5\n", "[tokens] refresh_token_ttl must be at least 1"),
        ("[tokens]\ncode_ttl = 601\n", "[tokens] code_ttl must be at most 600"),
        (
            "[login]\nmax_consecutive_failures = 101\n",
            "[login] max_consecutive_failures must be between 1 and 100",
        ),
        (
            "[login]\nmax_consecutive_failures = 0\n",
            "[login] max_consecutive_failures must be between 1 and 100",
        ),
        ("[login]\nlockout_seconds = 0\n", "[login] lockout_seconds must be at least 1"),
        ("[login]\nper_ip_per_minute = 0\n", "[login] per_ip_per_minute must be at least 1"),
        (
            "[login]\nfailures_per_account_ip_per_minute = 0\n",
            "[login] failures_per_account_ip_per_minute must be at least 1",
        ),
        ("[password]\nmin_length = 7\n", "[password] min_length must be at least 8"),
        ("[password]\nmax_length = 63\n", "[password] max_length must be at least 64"),
        (
            "[password]\nmin_length = 100\nmax_length = 80\n",
            "[password] max_length (80) must be at least [password] min_length (100)",
        ),
        ("[password]\ntime_cost = 0\n", "[password] time_cost must be at least 1"),
        ("[password]\nparallelism = 0\n", "[password] parallelism must be at least 1"),
        ("[password]\nmemory_cost = 4\n", "[password] memory_cost must be at least 8"),
        (
            "[security]\nmax_parameter_length = 255\n",
            "[security] max_parameter_length must be at least 256",
        ),
        ("[security]\nhsts_max_age = -1\n", "[security] hsts_max_age must be at least 0"),
        (
            '[security]\nactive_encryption_key = "nope"\n',
            "[security] active_encryption_key must name a key",
        ),
        ('[database]\nurl = "not a url"\n', "[database] url must be an SQLAlchemy URL"),
        (
            '[store]\nbackend = "redis"\nredis_url = "http://x"\n',
            "[store] redis_url must be a redis://",
        ),
        ('[ui]\nservice_name = " "\n', "[ui] service_name must not be empty"),
    ],
)
def test_out_of_range_and_bad_values(tmp_path: Path, text: str, fragment: str) -> None:
    assert fragment in refused(text, tmp_path)


def test_encryption_key_not_32_bytes(tmp_path: Path) -> None:
    short = base64.urlsafe_b64encode(b"x" * 16).decode()
    message = refused(f'[security.encryption_keys]\ndev = "{short}"\n', tmp_path)
    assert "[security] encryption_keys key 'dev' must decode to exactly 32 bytes" in message
    assert "got 16 bytes" in message
    assert short not in message


def test_encryption_key_not_base64(tmp_path: Path) -> None:
    message = refused('[security.encryption_keys]\ndev = "not base64!"\n', tmp_path)
    assert "[security] encryption_keys key 'dev' is not urlsafe base64" in message


def test_encryption_keys_empty(tmp_path: Path) -> None:
    message = refused("[security]\nencryption_keys = {}\n", tmp_path)
    assert "[security] encryption_keys must contain at least one key" in message


def test_value_error_names_env_var_source() -> None:
    message = refused(IDP_SERVER_PORT="0")
    assert "[server] port (from IDP_SERVER_PORT) must be between 1 and 65535" in message


# ---------------------------------------------------------------- refusals: env coercion


@pytest.mark.parametrize(
    ("var", "raw", "fragment"),
    [
        (
            "IDP_SERVER_PORT",
            "abc",
            "IDP_SERVER_PORT ([server] port) must be an integer (got 'abc')",
        ),
        ("IDP_SESSION_IDLE_TIMEOUT", "1.5", "IDP_SESSION_IDLE_TIMEOUT ([session] idle_timeout)"),
        ("IDP_DATABASE_ECHO", "maybe", "IDP_DATABASE_ECHO ([database] echo) must be one of"),
        ("IDP_SECURITY_ENCRYPTION_KEYS", "nokid", "IDP_SECURITY_ENCRYPTION_KEYS must be"),
        ("IDP_SECURITY_ENCRYPTION_KEYS", ":abc", "IDP_SECURITY_ENCRYPTION_KEYS must be"),
        ("IDP_SECURITY_ENCRYPTION_KEYS", "", "IDP_SECURITY_ENCRYPTION_KEYS must list at least one"),
        (
            "IDP_SECURITY_ENCRYPTION_KEYS",
            f"a:{REAL_KEY},a:{REAL_KEY}",
            "IDP_SECURITY_ENCRYPTION_KEYS lists key id 'a' twice",
        ),
    ],
)
def test_env_coercion_errors_name_the_variable(var: str, raw: str, fragment: str) -> None:
    assert fragment in refused(**{var: raw})


def test_env_bad_encryption_key_length() -> None:
    short = base64.urlsafe_b64encode(b"x" * 31).decode()
    message = refused(
        IDP_SECURITY_ENCRYPTION_KEYS=f"k1:{short}", IDP_SECURITY_ACTIVE_ENCRYPTION_KEY="k1"
    )
    assert "(from IDP_SECURITY_ENCRYPTION_KEYS) key 'k1' must decode to exactly 32" in message


# ---------------------------------------------------------------- refusals: production


def test_production_settings_accepted() -> None:
    assert load_settings(environ=PROD_ENV).is_production


def test_production_metrics_need_a_token() -> None:
    environ = dict(PROD_ENV)
    del environ["IDP_OPS_METRICS_TOKEN"]
    message = refused(**environ)
    assert "metrics_token must be at least 16 characters in production" in message
    # Switching metrics off is the other way to satisfy the rule.
    assert load_settings(environ={**environ, "IDP_OPS_METRICS_ENABLED": "false"}).is_production


def test_metrics_token_is_masked() -> None:
    settings = load_settings(environ=PROD_ENV)
    assert settings.as_dict()["ops"]["metrics_token"] == "***"
    assert "m" * 32 not in repr(settings)


def test_production_with_dev_secret() -> None:
    environ = dict(PROD_ENV)
    del environ["IDP_SECRET_KEY"]
    message = refused(**environ)
    assert "secret_key is the built-in development key" in message
    assert "IDP_SECRET_KEY" in message


def test_production_with_short_secret() -> None:
    message = refused(**{**PROD_ENV, "IDP_SECRET_KEY": "x" * 31})
    assert "secret_key (from IDP_SECRET_KEY) must be at least 32 characters" in message
    assert "x" * 31 not in message


def test_production_with_dev_encryption_key() -> None:
    environ = {
        **PROD_ENV,
        "IDP_SECURITY_ENCRYPTION_KEYS": f"k1:{REAL_KEY},legacy:{DEV_ENCRYPTION_KEY}",
    }
    message = refused(**environ)
    assert "[security] encryption_keys" in message
    assert "key 'legacy' is the built-in development key" in message


def test_production_with_default_encryption_keys() -> None:
    environ = dict(PROD_ENV)
    del environ["IDP_SECURITY_ENCRYPTION_KEYS"]
    del environ["IDP_SECURITY_ACTIVE_ENCRYPTION_KEY"]
    assert "key 'dev' is the built-in development key" in refused(**environ)


def test_production_with_http_issuer() -> None:
    message = refused(**{**PROD_ENV, "IDP_ISSUER": "http://id.example.com"})
    assert "issuer (from IDP_ISSUER) must use https in production" in message


def test_production_from_file(tmp_path: Path) -> None:
    text = 'env = "production"\nissuer = "https://id.example.com"\n'
    assert "secret_key is the built-in development key" in refused(text, tmp_path)


def test_sqlite_allowed_in_production() -> None:
    settings = load_settings(environ=PROD_ENV)
    assert settings.database.url.startswith("sqlite")


# ---------------------------------------------------------------- refusals: memory store


def test_memory_store_with_workers(tmp_path: Path) -> None:
    message = refused("[server]\nworkers = 2\n", tmp_path)
    assert message == (
        "config: [store] backend 'memory' keeps state in one process; it cannot serve "
        "[server] workers = 2 (use backend = 'redis')"
    )


def test_memory_store_with_web_concurrency() -> None:
    message = refused(WEB_CONCURRENCY="3")
    assert "[store] backend 'memory' keeps state in one process" in message
    assert "WEB_CONCURRENCY = 3" in message


def test_redis_store_with_workers_and_web_concurrency() -> None:
    settings = load_settings(
        environ={"IDP_STORE_BACKEND": "redis", "IDP_SERVER_WORKERS": "2", "WEB_CONCURRENCY": "3"}
    )
    assert settings.server.workers == 2


def test_web_concurrency_one_is_fine() -> None:
    assert load_settings(environ={"WEB_CONCURRENCY": "1"}) == Settings()


# ---------------------------------------------------------------- validate(), as_dict, warnings


def test_validate_on_constructed_settings() -> None:
    validate(Settings(), environ={})
    # A value outside its declared choices or range is refused as soon as it is built...
    with pytest.raises(ConfigError, match="env must be one of"):
        dataclasses.replace(Settings(), env="staging")
    # ...and validate() adds the rules that tie several fields together.
    session = dataclasses.replace(Settings().session, idle_timeout=50000)
    with pytest.raises(ConfigError, match=r"idle_timeout \(50000\) must not exceed"):
        validate(dataclasses.replace(Settings(), session=session), environ={})


def test_validate_checks_types_of_constructed_settings() -> None:
    with pytest.raises(ConfigError, match="issuer must be a string"):
        dataclasses.replace(Settings(), issuer=5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("section", "changes", "message"),
    [
        ("server", {"port": 0}, "config: [server] port must be between 1 and 65535 (got 0)"),
        ("server", {"port": "80"}, "config: [server] port must be an integer (got '80')"),
        ("login", {"per_ip_per_minute": 0}, "config: [login] per_ip_per_minute must be at least 1 (got 0)"),
        ("store", {"backend": "disk"}, "config: [store] backend must be one of 'memory', 'redis' (got 'disk')"),
        ("ops", {"metrics_token": 123}, "config: [ops] metrics_token must be a string (got a value of type int)"),
        ("mfa", {"allowed_factors": ("totp", "sms2")}, "config: [mfa] allowed_factors has unknown factor 'sms2'"),
        ("server", {"prot": 80}, "config: unknown key [server] prot (did you mean 'port'?)"),
    ],
)  # fmt: skip
def test_sections_built_in_code_are_checked(section: str, changes: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        dataclasses.replace(getattr(Settings(), section), **changes)
    assert str(info.value).startswith(message)


def test_settings_built_in_code_keep_working_with_replace() -> None:
    settings = Settings()
    faster = dataclasses.replace(settings.password, memory_cost=1024, time_cost=1)
    changed = dataclasses.replace(settings, env="test", password=faster)
    assert (changed.env, changed.password.memory_cost, changed.password.time_cost) == (
        "test", 1024, 1,
    )  # fmt: skip
    assert changed.password.min_length == settings.password.min_length
    assert dataclasses.replace(settings.mfa, allowed_factors=["totp"]).allowed_factors == ("totp",)
    assert hash(changed) == hash(dataclasses.replace(changed))
    validate(changed, environ={})


def test_as_dict_masks_secrets() -> None:
    settings = load_settings(
        environ={
            **PROD_ENV,
            "IDP_DATABASE_URL": "postgresql+psycopg://idp:hunter2@db/idp",
            "IDP_STORE_BACKEND": "redis",
            "IDP_STORE_REDIS_URL": "rediss://:s3cret@cache:6379/0",
        }
    )
    data = settings.as_dict()
    assert data["secret_key"] == "***"
    assert data["security"]["encryption_keys"] == {"k1": "***"}
    assert data["database"]["url"] == "postgresql+psycopg://idp:***@db/idp"
    assert data["store"]["redis_url"] == "rediss://:***@cache:6379/0"
    assert data["server"]["port"] == 5000
    assert data["issuer"] == "https://id.example.com"
    text = repr(data)
    for secret in (STRONG_SECRET, REAL_KEY, "hunter2", "s3cret"):
        assert secret not in text
    assert type(data["security"]["encryption_keys"]) is dict


def test_repr_hides_secrets() -> None:
    settings = load_settings(environ=PROD_ENV)
    assert STRONG_SECRET not in repr(settings)
    assert REAL_KEY not in repr(settings)


def test_development_warnings() -> None:
    warnings = development_warnings(Settings())
    joined = "\n".join(warnings)
    assert "secret_key" in joined
    assert "IDP_SECRET_KEY" in joined
    assert "[security] encryption_keys" in joined
    assert "[store] backend is 'memory'" in joined
    assert "[database] url is SQLite" in joined


def test_development_warnings_quiet_when_configured() -> None:
    settings = load_settings(
        environ={
            "IDP_SECRET_KEY": STRONG_SECRET,
            "IDP_SECURITY_ENCRYPTION_KEYS": f"k1:{REAL_KEY}",
            "IDP_SECURITY_ACTIVE_ENCRYPTION_KEY": "k1",
            "IDP_STORE_BACKEND": "redis",
            "IDP_DATABASE_URL": "postgresql+psycopg://user@host/db",
        }
    )
    assert development_warnings(settings) == []


def test_development_warnings_empty_in_production() -> None:
    assert development_warnings(load_settings(environ=PROD_ENV)) == []
