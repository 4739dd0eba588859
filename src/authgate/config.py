"""Settings: the one pydantic-settings class, read from `AUTHGATE_*` variables or `.env`."""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import secrets
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

Environment = Literal["development", "test", "production"]
JWTAlgorithm = Literal["ES256", "RS256", "EdDSA", "HS256"]

DEV_SECRET_FILE = Path("var/secret_key")


def _seconds(value: object) -> object:
    """Durations from the environment may be plain seconds ("900") as well as ISO 8601 ("PT15M")."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


Duration = Annotated[timedelta, BeforeValidator(_seconds)]

# The async driver each supported database is reached through, by the names an URL may give it.
_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


def _database_url(value: str) -> str:
    """An SQLite or PostgreSQL URL, on its async driver (`postgresql://` reads as asyncpg, and
    libpq's `sslmode=` as asyncpg's `ssl=`, which takes the same values).

    The error never repeats the URL: it may carry a password.
    """
    scheme, sep, rest = value.partition("://")
    driver = _DRIVERS.get(scheme.lower())
    if not sep or driver is None:
        raise ValueError(
            "use sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DATABASE"
        )
    url = f"{driver}://{rest}"
    if driver == "postgresql+asyncpg" and "sslmode=" in rest:
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ValueError("not a database URL") from None
        query = dict(parsed.query)
        query.setdefault("ssl", query.pop("sslmode"))
        url = parsed.set(query=query).render_as_string(hide_password=False)
    return url


DatabaseURL = Annotated[str, AfterValidator(_database_url)]


def _list_from_env(value: object) -> object:
    """Lists from the environment: a JSON list, or comma-separated values as people write them."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return json.loads(text)  # malformed JSON is a validation error naming the setting
    return [part.strip() for part in text.split(",") if part.strip()]


def _forwarded_allow_ips(value: list[str]) -> list[str]:
    """uvicorn's `forwarded_allow_ips`: IP addresses and networks (CIDR), or `*` alone.

    uvicorn reads anything else as a literal host name that no TCP peer ever matches, so a typo
    (`10.0.0.0/33`, `10.0.0.1/8`) would silently trust nobody; it is refused here instead.
    """
    if "*" in value:
        if len(value) > 1:
            raise ValueError("`*` (trust every peer) stands alone, not beside addresses")
        return value
    for entry in value:
        try:
            if "/" in entry:
                ipaddress.ip_network(entry)  # strict: host bits set are refused, as uvicorn does
            else:
                ipaddress.ip_address(entry)
        except ValueError:
            raise ValueError(
                f"{entry!r} is not an IP address or network: list the proxies' addresses or "
                "networks (CIDR, e.g. 10.0.0.0/8), comma-separated, or `*`"
            ) from None
    return value


MIN_SECRET_LENGTH = 32


class FeatureFlags(BaseModel):
    """Feature switches (`AUTHGATE_FEATURES__<NAME>=true`); all are readable at GET /api/v1/features."""

    enumeration_safe_registration: bool = False
    require_verified_email: bool = False
    self_registration: bool = True


class PasswordPolicy(BaseModel):
    """Password rules and hashing cost (OWASP's Argon2id minimum by default)."""

    min_length: int = 8
    max_length: int = 128
    min_strength: int = Field(default=2, ge=0, le=4)  # zxcvbn score floor
    argon2_memory_cost: int = 19_456  # KiB
    argon2_time_cost: int = 2
    argon2_parallelism: int = 1
    # Hashes waiting for a worker thread beyond about this much work are refused with 503.
    max_queue_seconds: float = 3.0


class RateLimits(BaseModel):
    """Per-IP and per-account limits, in the `limits` library's notation.

    `enabled=False` switches off these request limits; the per-account brute-force wait
    (`failed_logins_before_delay` and the `lockout_*` fields) always applies.
    """

    enabled: bool = True
    login_per_ip: str = "120/minute"
    login_per_account: str = "120/minute"
    register_per_ip: str = "120/minute"
    refresh_per_session: str = "60/minute"
    verification_per_ip: str = "30/minute"
    verification_per_account: str = "10/hour"
    # Workspace invitations sent per inviting account: each one emails an address the inviter
    # chooses, naming a workspace the inviter named.
    invitations_per_user: str = "20/hour"
    failed_logins_before_delay: int = Field(default=10, ge=1)
    lockout_base_wait: Duration = timedelta(minutes=1)  # doubles with each further failure
    lockout_max_wait: Duration = timedelta(minutes=15)  # the cap: no account waits longer
    lockout_failure_reset: Duration = timedelta(hours=12)  # a quiet period that forgets old failures
    # Let a client at an IP the account has signed in from past the wait (its password is still
    # checked and its failures still count): failures from elsewhere cannot lock the owner out of
    # their own network. Off by default: the wait then holds every address alike.
    lockout_spares_known_ips: bool = False


class OutboxSettings(BaseModel):
    """The message courier (`AUTHGATE_OUTBOX__<NAME>`): delivery, retries, transports."""

    # Run the dispatcher inside `authgate serve`; default: on in development or on SQLite, never in tests.
    in_process: bool | None = None
    batch_size: int = Field(default=50, ge=1, le=1000)
    poll_interval: float = Field(default=1.0, gt=0)
    # The in-process courier is woken by every commit of this process that queues a message; this
    # poll is only the safety net for retries coming due and messages queued by other processes.
    in_process_poll_interval: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=8, ge=1)
    backoff_base: Duration = timedelta(seconds=5)
    backoff_max: Duration = timedelta(hours=1)
    # A message claimed longer ago than this (its worker died) is claimed again: at-least-once.
    claim_timeout: Duration = timedelta(minutes=5)
    email_transport: Literal["log", "smtp"] | None = None  # default: smtp when SMTP_URL is set
    sms_transport: Literal["log", "twilio"] | None = None  # default: twilio when TWILIO_ACCOUNT_SID is set
    smtp_tls: bool = False  # implicit TLS (port 465); also implied by an smtps:// URL
    smtp_starttls: bool | None = None  # None: upgrade when the server offers it; True: require; False: never
    smtp_timeout: float = 30.0
    twilio_timeout: float = 10.0


class RetentionSettings(BaseModel):
    """How long ended records are kept before `authgate purge` deletes them (`AUTHGATE_RETENTION__<NAME>`)."""

    # Sessions expired or signed out this long ago (with their refresh tokens), and sign-in
    # throttles whose last failure is this old and that are not holding anyone back. At least a
    # day: the lockout's failure count and the known-IP check read these rows.
    ended_sessions: Duration = Field(default=timedelta(days=30), ge=timedelta(days=1))
    # Email and reset links, phone codes, MFA challenges and workspace invitations used, revoked or
    # expired this long ago. At least a day: the daily SMS caps count the phone codes of 24 hours.
    spent_tokens: Duration = Field(default=timedelta(days=7), ge=timedelta(days=1))
    # Outbox messages sent, dead or suppressed this long ago (their bodies and context hold links).
    finished_messages: Duration = Field(default=timedelta(days=14), gt=timedelta(0))
    # Soft-deleted accounts are erased for good (row, profile, avatar, sessions, keys, memberships).
    deleted_accounts: Duration = Field(default=timedelta(days=30), gt=timedelta(0))
    # Purge every `interval` in `authgate worker` and in the in-process courier of `authgate serve`.
    automatic: bool = True
    interval: Duration = Field(default=timedelta(hours=1), gt=timedelta(0))


class VerificationSettings(BaseModel):
    """Email and phone verification, password recovery (`AUTHGATE_VERIFICATION__<NAME>`)."""

    email_token_ttl: Duration = timedelta(hours=24)
    password_reset_ttl: Duration = timedelta(hours=1)
    phone_code_ttl: Duration = timedelta(minutes=10)
    phone_code_attempts: int = Field(default=5, ge=1)
    phone_resend_cooldown: Duration = timedelta(seconds=60)
    phone_daily_cap_per_number: int = Field(default=5, ge=1)
    phone_daily_cap_per_user: int = Field(default=10, ge=1)
    new_device_alerts: bool = True
    # Email an address without an account that someone asked to reset its password (Kratos-style).
    notify_unknown_recipients: bool = False


PRODUCTION_IP_LIMITS = {"login_per_ip": "30/minute", "register_per_ip": "10/minute"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AUTHGATE_",
        env_file=".env",
        env_nested_delimiter="__",
        env_ignore_empty=True,
        extra="ignore",
    )

    env: Environment = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    # The peers (load balancers, reverse proxies) whose X-Forwarded-For and X-Forwarded-Proto
    # `serve` believes: IP addresses or CIDR networks, or `*` for every peer. A request from any
    # other peer is taken to come from that peer's own address (rate limits, audit, sessions).
    forwarded_allow_ips: Annotated[
        list[str], NoDecode, BeforeValidator(_list_from_env), AfterValidator(_forwarded_allow_ips)
    ] = ["127.0.0.1", "::1"]
    # auto: asyncio on SQLite, uvloop on PostgreSQL (see docs/benchmarks.md, "Which event loop").
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"
    database_url: DatabaseURL = "sqlite+aiosqlite:///./var/authgate.db"
    database_pool_size: int = 10
    database_max_overflow: int = 20
    database_pool_timeout: float = 10.0
    redis_url: str | None = None
    secret_key: SecretStr | None = None
    public_url: str = ""  # default: http://HOST:PORT (127.0.0.1 when HOST binds every address)
    access_token_ttl: Duration = timedelta(minutes=30)
    refresh_token_ttl: Duration = timedelta(days=7)
    refresh_reuse_grace: Duration = timedelta(seconds=10)
    jwt_algorithm: JWTAlgorithm = "ES256"
    issuer: str | None = None  # defaults to public_url
    audience: str = "authgate"
    cors_origins: Annotated[list[str], NoDecode, BeforeValidator(_list_from_env)] = []
    cookie_secure: bool | None = None  # default: Secure everywhere but development
    max_body_bytes: int = 1_048_576
    smtp_url: str | None = None
    email_from: str = "authgate <no-reply@localhost>"
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from: str | None = None
    twilio_base_url: str = "https://api.twilio.com"
    sentry_dsn: str | None = None
    admin_email: str | None = None  # checked as registration checks an address, when it is used
    # The first admin's password; `create-admin` (and `serve` outside production) holds it to the
    # password policy, as registration does. Production also refuses one under 12 characters.
    admin_password: SecretStr | None = None
    upload_dir: Path = Path("var/uploads")
    max_upload_bytes: int = 5 * 1_048_576
    log_format: Literal["console", "json"] | None = None  # default: console in development
    log_level: str = "INFO"
    auto_migrate: bool | None = None  # default: `serve` migrates outside production (any database)
    features: FeatureFlags = Field(default_factory=FeatureFlags)
    password: PasswordPolicy = Field(default_factory=PasswordPolicy)
    rate_limit: RateLimits = Field(default_factory=RateLimits)
    # SPEC's name for the switch (AUTHGATE_RATE_LIMIT_ENABLED); it only feeds `rate_limit.enabled`.
    rate_limit_enabled: bool | None = Field(default=None, exclude=True)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    verification: VerificationSettings = Field(default_factory=VerificationSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)

    @model_validator(mode="after")
    def _public_url_from_the_address_served(self) -> Self:
        """Unset, the public URL is where `serve` listens: links and the issuer follow `PORT`."""
        if not self.public_url:
            host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
            self.public_url = f"http://{f'[{host}]' if ':' in host else host}:{self.port}"
        return self

    @model_validator(mode="after")
    def _one_rate_limit_switch(self) -> Self:
        """`RATE_LIMIT_ENABLED` and `RATE_LIMIT__ENABLED` name one switch; set both, they must agree.

        The service reads `rate_limit.enabled`; the flat name only feeds it.
        """
        flat = self.rate_limit_enabled
        if flat is None:
            return self
        if "enabled" not in self.rate_limit.model_fields_set:
            self.rate_limit = self.rate_limit.model_copy(update={"enabled": flat})
        elif self.rate_limit.enabled != flat:
            raise ValueError(
                "AUTHGATE_RATE_LIMIT_ENABLED and AUTHGATE_RATE_LIMIT__ENABLED disagree: set only one"
            )
        return self

    @model_validator(mode="after")
    def _cors_origins_are_listed(self) -> Self:
        """Cross-origin requests carry credentials (cookies): only origins named one by one.

        With credentials allowed, `*` makes the CORS middleware echo whatever Origin a request
        brings, so any web page could call the API as its signed-in visitor and read the answer;
        `null` is the origin of sandboxed frames and local files, which any page can produce.
        """
        refused = [o for o in self.cors_origins if o.strip().lower() in ("*", "null")]
        if refused:
            raise ValueError(
                f"AUTHGATE_CORS_ORIGINS may not contain {' or '.join(sorted(set(refused)))}: list "
                "each origin allowed (https://app.example.com,https://admin.example.com); the API "
                "lets cross-origin requests carry cookies, and those cannot go to any origin"
            )
        return self

    @model_validator(mode="after")
    def _keep_failed_sign_ins_as_long_as_the_lockout_counts_them(self) -> Self:
        if self.retention.ended_sessions < self.rate_limit.lockout_failure_reset:
            raise ValueError(
                "RETENTION__ENDED_SESSIONS must be at least RATE_LIMIT__LOCKOUT_FAILURE_RESET: "
                "the purge would forget failed sign-ins before the lockout stops counting them"
            )
        return self

    @model_validator(mode="after")
    def _refuse_weak_secrets_in_production(self) -> Self:
        if self.env != "production":
            return self
        # Stricter per-IP defaults in production, unless set explicitly.
        stricter = {
            k: v for k, v in PRODUCTION_IP_LIMITS.items() if k not in self.rate_limit.model_fields_set
        }
        self.rate_limit = self.rate_limit.model_copy(update=stricter)  # never the caller's object
        problems = []
        if self.secret_key is None:
            problems.append("AUTHGATE_SECRET_KEY is not set")
        elif len(self.secret_key.get_secret_value()) < MIN_SECRET_LENGTH:
            problems.append(f"AUTHGATE_SECRET_KEY is shorter than {MIN_SECRET_LENGTH} characters")
        if self.admin_password is not None and len(self.admin_password.get_secret_value()) < 12:
            problems.append("AUTHGATE_ADMIN_PASSWORD is shorter than 12 characters")
        if self.twilio_account_sid and self.twilio_auth_token is None:
            problems.append("AUTHGATE_TWILIO_AUTH_TOKEN is not set")
        if problems:
            raise ValueError("refusing to start in production: " + "; ".join(problems))
        return self

    @property
    def is_development(self) -> bool:
        return self.env == "development"

    @property
    def exposes_dev_tools(self) -> bool:
        return self.env in ("development", "test")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def server_loop(self) -> Literal["asyncio", "uvloop"]:
        """The event loop `authgate serve` runs on.

        On SQLite an authenticated read never waits, so a loop turn serves every ready request
        and takes tens of milliseconds; uvloop (libuv) accepts one new connection per turn, which
        kept new connections waiting up to a second. asyncio accepts all that wait. On PostgreSQL
        every request awaits the database, turns stay short, and uvloop is the faster loop.
        """
        if self.event_loop != "auto":
            return self.event_loop
        return "asyncio" if self.is_sqlite or importlib.util.find_spec("uvloop") is None else "uvloop"

    @property
    def token_issuer(self) -> str:
        return self.issuer or self.public_url.rstrip("/")

    @property
    def secure_cookies(self) -> bool:
        return self.cookie_secure if self.cookie_secure is not None else not self.is_development

    @property
    def should_auto_migrate(self) -> bool:
        """Development and test servers bring their database to head; production runs
        `authgate migrate upgrade` once per release, not once per process."""
        return self.auto_migrate if self.auto_migrate is not None else self.env != "production"

    @property
    def runs_dispatcher_in_process(self) -> bool:
        if self.outbox.in_process is not None:
            return self.outbox.in_process
        return self.env != "test" and (self.is_development or self.is_sqlite)

    @property
    def console_logs(self) -> bool:
        return (self.log_format or ("console" if self.is_development else "json")) == "console"

    def secret(self) -> str:
        """The secret key; development without one generates it once and keeps it in `var/`."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        if self.env == "production":  # unreachable: the validator refuses this
            raise RuntimeError("AUTHGATE_SECRET_KEY is required in production")
        if not DEV_SECRET_FILE.exists():
            DEV_SECRET_FILE.parent.mkdir(parents=True, exist_ok=True)
            DEV_SECRET_FILE.write_text(secrets.token_urlsafe(48))
            DEV_SECRET_FILE.chmod(0o600)
        self.secret_key = SecretStr(DEV_SECRET_FILE.read_text().strip())
        return self.secret_key.get_secret_value()


@lru_cache
def get_settings() -> Settings:
    return Settings()
