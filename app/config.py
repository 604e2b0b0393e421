"""Per-environment configuration.

One environment variable, ``APP_ENV``, picks the settings class (development by default). Every
setting can then be overridden by an environment variable of the same name, and finally by the
mapping passed to ``create_app``. Production refuses to start with an unsafe configuration.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

ENV_VAR = "APP_ENV"

# Secret keys that are public knowledge (in this repo or in tutorials): never valid in production.
KNOWN_INSECURE_SECRET_KEYS = frozenset(
    {
        "",
        "dev",
        "secret",
        "changeme",
        "change-me",
        "development-only-insecure-secret-key",
        "testing-only-insecure-secret-key",
        "replace-me-with-a-long-random-string",
    }
)
MIN_PRODUCTION_SECRET_KEY_LENGTH = 32

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
# Settings given in the environment as a comma-separated list.
_LIST_SETTINGS = frozenset({"TRUSTED_HOSTS", "CORS_ORIGINS"})


class ConfigError(RuntimeError):
    """The configuration is invalid; the message says what to change."""


class BaseConfig:
    """Settings shared by every environment. Only UPPERCASE attributes are settings."""

    APP_ENV = "base"
    SECRET_KEY: str | None = None
    DEBUG = False
    TESTING = False

    # Logging: "json" (one object per line) or "text" (human-readable).
    LOG_LEVEL = "INFO"
    LOG_FORMAT = "json"

    # Host names this service answers to (Flask's setting; "api.example.com,.example.org" from the
    # environment, a leading dot allows subdomains). Unset: any Host. Set it in production unless
    # a proxy in front already refuses other hosts.
    TRUSTED_HOSTS: list[str] | None = None
    # Reverse proxies in front of the app that append to X-Forwarded-For (a load balancer: 1).
    # The client's address (logs, audit, rate limits, IP lists) and scheme are read from the
    # entries they added; 0: those headers are ignored. See app/core/proxies.py.
    TRUSTED_PROXIES = 0

    # Browser origins allowed to call the API (CORS), exact: "https://app.example.com,
    # http://localhost:3000" from the environment. Unset: no CORS headers at all. "*" (any
    # origin) is refused in production. Preflight answers may be cached CORS_MAX_AGE seconds.
    # See app/core/cors.py.
    CORS_ORIGINS: list[str] | None = None
    CORS_MAX_AGE = 600
    # Strict-Transport-Security on HTTPS responses (on in production): browsers then use only
    # HTTPS for this host (and its subdomains) for HSTS_MAX_AGE seconds. Behind a TLS-terminating
    # proxy, set TRUSTED_PROXIES so the app knows the request came over HTTPS.
    HSTS_ENABLED = False
    HSTS_MAX_AGE = 365 * 24 * 3600
    HSTS_INCLUDE_SUBDOMAINS = True

    # Largest accepted request body in bytes; larger bodies get 413.
    MAX_CONTENT_LENGTH = 1024 * 1024

    # Databases (chapter 3). DATABASE_URL: the control database (the workspace directory); unset
    # outside production: sqlite:///taskapi.db in instance/. SHARD_URLS: "name=url,name=url", the
    # shard databases holding the tasks; unset: one shard, "main", on the control database.
    # PostgreSQL URLs name the driver: postgresql+psycopg://user@host:5432/dbname
    DATABASE_URL: str | None = None
    SHARD_URLS: str | None = None
    # Connection pool per PostgreSQL database (SQLAlchemy's QueuePool).
    DATABASE_POOL_SIZE = 5
    DATABASE_MAX_OVERFLOW = 10
    DATABASE_POOL_TIMEOUT = 5  # seconds to wait for a free connection before a 503
    DATABASE_POOL_RECYCLE = 1800  # seconds; below any server or proxy idle timeout
    # Before a pooled connection is reused: always a free check that the server has not closed it
    # (restart, failover, pg_terminate_backend), and a real round trip ("ping") only when it sat
    # idle for DATABASE_POOL_PING_IDLE seconds (silent network drops). PRE_PING=true pings on
    # every checkout instead: one more round trip per database per request.
    DATABASE_POOL_PRE_PING = False
    DATABASE_POOL_PING_IDLE = 10  # seconds
    # Streaming replicas of shards, "shard=url,...": reads outside a write may go there.
    # PostgreSQL only. Unset: every read goes to the primary.
    REPLICA_URLS: str | None = None
    REPLICA_MAX_LAG_SECONDS = 5  # a replica further behind than this is skipped
    # Demo tasks are seeded in development (into the default workspace, when it is empty).
    SEED_DEMO_DATA = False

    # Where backups are kept (a directory; created if missing). Unset: instance/backups, except
    # in production, which refuses to start without it. Platform administrators (chapter 4:
    # `flask users create-admin`) make and restore backups.
    BACKUP_DIR: str | None = None
    BACKUP_KEEP = 7  # retention: after each new backup, only the newest BACKUP_KEEP are kept
    # Largest workspace archive accepted by the import endpoint, in bytes (it has its own limit:
    # MAX_CONTENT_LENGTH is far too small for an archive).
    WORKSPACE_IMPORT_MAX_BYTES = 64 * 1024 * 1024

    # --- Chapter 4: authentication (docs/chapters/04-auth-security.md) ---
    # Signing keys for access and refresh tokens (Ed25519, EdDSA): one PEM file per key in this
    # directory, named <kid>.pem; the newest signs, the others still verify until they are pruned.
    # `flask keys rotate` adds a key. Unset: instance/jwt-keys (created in development and
    # testing); production refuses to start unless the directory holds a key.
    JWT_KEYS_DIR: str | None = None
    TOKEN_ISSUER = "task-management-api"  # the tokens' "iss" and "aud"
    ACCESS_TOKEN_TTL = 900  # seconds: short, since an access token is checked without the database
    REFRESH_TOKEN_TTL = 14 * 24 * 3600  # seconds; each refresh token is single use
    # A used refresh token presented again within this many seconds gets a new pair (a client
    # retrying after a lost response) instead of revoking its session as a reuse.
    REFRESH_REUSE_GRACE = 10
    # Passwords (NIST SP 800-63B-4): at least PASSWORD_MIN_LENGTH characters, not a common
    # password, no composition rules. Argon2id cost: argon2-cffi's defaults (RFC 9106's low
    # memory profile); a stored hash made with other parameters is redone at the next login.
    PASSWORD_MIN_LENGTH = 15
    PASSWORD_MAX_LENGTH = 128
    PASSWORD_HASH_TIME_COST = 3
    PASSWORD_HASH_MEMORY_KIB = 65536
    PASSWORD_HASH_PARALLELISM = 4
    # TOTP second factor: the issuer shown in authenticator apps.
    MFA_ISSUER = "Task Management API"

    # Redis (chapter 4 on): the revocation list of tokens and the rate limit counters. Unset:
    # revocations in the control database, rate limit counters in process memory (one process;
    # use Redis with several workers). Keys start with REDIS_KEY_PREFIX.
    REDIS_URL: str | None = None
    REDIS_KEY_PREFIX = "taskapi:"
    # Rate limits (Flask-Limiter syntax: "10 per minute; 100 per hour"). RATE_LIMIT_AUTH_IP:
    # login, registration, token refresh and MFA from one client address; RATE_LIMIT_AUTH_ACCOUNT:
    # the same endpoints against one account; RATE_LIMIT_API: every other request of one user or
    # key (anonymous: per address).
    RATE_LIMITS_ENABLED = True
    RATE_LIMIT_AUTH_IP = "20 per minute; 200 per hour"
    RATE_LIMIT_AUTH_ACCOUNT = "10 per minute; 50 per hour"
    RATE_LIMIT_API = "1200 per minute"

    # Swagger / Flask-RESTX.
    API_TITLE = "Task Management API"
    RESTX_MASK_SWAGGER = False  # no X-Fields parameter on every operation
    RESTX_ERROR_404_HELP = False
    SWAGGER_UI_DOC_EXPANSION = "list"


class DevelopmentConfig(BaseConfig):
    APP_ENV = "development"
    SECRET_KEY: str | None = "development-only-insecure-secret-key"
    DEBUG = True
    LOG_LEVEL = "DEBUG"
    LOG_FORMAT = "text"
    SEED_DEMO_DATA = True
    # Two shard files beside the control database, so sharding is there to see.
    SHARD_URLS: str | None = "shard-1=sqlite:///shard-1.db,shard-2=sqlite:///shard-2.db"


class TestingConfig(BaseConfig):
    APP_ENV = "testing"
    SECRET_KEY: str | None = "testing-only-insecure-secret-key"
    TESTING = True
    # Cheap hashes: the suite creates many users. Never this low anywhere else.
    PASSWORD_HASH_TIME_COST = 1
    PASSWORD_HASH_MEMORY_KIB = 256
    PASSWORD_HASH_PARALLELISM = 1
    LOG_LEVEL = "DEBUG"
    LOG_FORMAT = "text"


class ProductionConfig(BaseConfig):
    APP_ENV = "production"
    # SECRET_KEY stays None: it must come from the environment.
    HSTS_ENABLED = True


CONFIGS: dict[str, type[BaseConfig]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def _settings_of(config_class: type[BaseConfig]) -> dict[str, Any]:
    return {name: getattr(config_class, name) for name in dir(config_class) if name.isupper()}


def _coerce(name: str, raw: str, default: Any) -> Any:
    """Convert an environment string to the type of the setting's default."""
    if name in _LIST_SETTINGS:
        return [item.strip() for item in raw.split(",") if item.strip()] or None
    if isinstance(default, bool):
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise ConfigError(
            f"{name} must be a boolean (one of {sorted(_TRUE | _FALSE)}), got {raw!r}"
        )
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    return raw


def load_config(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Build the settings: class defaults < environment variables < ``overrides``."""
    environ = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    env_name = str(overrides.get(ENV_VAR) or environ.get(ENV_VAR) or "development").lower()
    if env_name not in CONFIGS:
        raise ConfigError(f"{ENV_VAR} must be one of {sorted(CONFIGS)}, got {env_name!r}")

    settings = _settings_of(CONFIGS[env_name])
    for name, default in settings.items():
        if name != ENV_VAR and name in environ:
            settings[name] = _coerce(name, environ[name], default)
    settings.update(overrides)
    settings[ENV_VAR] = env_name
    validate_config(settings)
    if env_name == "production" and environ.get("FLASK_DEBUG", "").strip().lower() in _TRUE:
        # `flask run` would switch debug (and the interactive debugger) on after we validated.
        raise ConfigError(f"refusing to start with {ENV_VAR}=production: FLASK_DEBUG is on.")
    return settings


def validate_config(settings: Mapping[str, Any]) -> None:
    """Raise ConfigError if the settings are unusable; production is held to a stricter bar."""
    problems: list[str] = []
    if settings["LOG_FORMAT"] not in {"json", "text"}:
        problems.append(f"LOG_FORMAT must be 'json' or 'text', got {settings['LOG_FORMAT']!r}")
    if str(settings["LOG_LEVEL"]).upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        problems.append(f"LOG_LEVEL must be a logging level name, got {settings['LOG_LEVEL']!r}")
    minimum, maximum = int(settings["PASSWORD_MIN_LENGTH"]), int(settings["PASSWORD_MAX_LENGTH"])
    if not 8 <= minimum <= maximum <= 1024:
        problems.append(
            "PASSWORD_MIN_LENGTH and PASSWORD_MAX_LENGTH must satisfy 8 <= min <= max <= 1024"
        )
    if int(settings.get("BACKUP_KEEP", 1)) < 1:
        problems.append(f"BACKUP_KEEP must be at least 1, got {settings['BACKUP_KEEP']!r}")
    if settings[ENV_VAR] in {"testing", "production"} and settings.get("SEED_DEMO_DATA"):
        problems.append("SEED_DEMO_DATA is only for development")
    if settings[ENV_VAR] == "production":
        secret = settings.get("SECRET_KEY")
        if not secret:
            problems.append("SECRET_KEY is not set")
        elif secret.strip().lower() in KNOWN_INSECURE_SECRET_KEYS:
            problems.append("SECRET_KEY is a publicly known default")
        elif len(secret) < MIN_PRODUCTION_SECRET_KEY_LENGTH:
            problems.append(
                f"SECRET_KEY is shorter than {MIN_PRODUCTION_SECRET_KEY_LENGTH} characters"
            )
        if not settings.get("DATABASE_URL"):
            problems.append("DATABASE_URL is not set")
        if not settings.get("BACKUP_DIR"):
            problems.append("BACKUP_DIR is not set (the admin endpoints keep backups there)")
        if settings.get("DEBUG"):
            problems.append("DEBUG is on")
        if settings.get("TESTING"):
            problems.append("TESTING is on")
    if problems:
        hint = ""
        if any(problem.startswith("SECRET_KEY") for problem in problems):
            hint = " Generate a key: python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
        raise ConfigError(
            f"refusing to start with {ENV_VAR}={settings[ENV_VAR]}: "
            + "; ".join(problems)
            + "."
            + hint
        )
