"""Settings: production refuses weak secrets and names them; development defaults are sensible."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from authgate.config import Settings


def test_production_without_secret_key_refuses_and_says_why() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(env="production", _env_file=None)  # type: ignore[call-arg]
    assert "AUTHGATE_SECRET_KEY is not set" in str(refused.value)


def test_production_with_short_secret_refuses() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(env="production", secret_key="short", _env_file=None)  # type: ignore[call-arg]
    assert "shorter than 32" in str(refused.value)


def test_production_names_every_problem() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(env="production", admin_password="weak", twilio_account_sid="AC1", _env_file=None)  # type: ignore[call-arg]
    text = str(refused.value)
    assert "SECRET_KEY" in text and "ADMIN_PASSWORD" in text and "TWILIO_AUTH_TOKEN" in text


def test_production_with_strong_secret_starts() -> None:
    settings = Settings(env="production", secret_key="k" * 48, _env_file=None)  # type: ignore[call-arg]
    assert settings.secure_cookies is True
    assert settings.should_auto_migrate is False
    assert settings.console_logs is False


@pytest.mark.parametrize("database_url", ["sqlite+aiosqlite:///./var/x.db", "postgresql+asyncpg://u@h/db"])
def test_serve_migrates_outside_production_on_either_database(database_url: str) -> None:
    development = Settings(database_url=database_url, _env_file=None)  # type: ignore[call-arg]
    assert development.should_auto_migrate is True
    production = Settings(env="production", secret_key="k" * 48, database_url=database_url, _env_file=None)  # type: ignore[call-arg]
    assert production.should_auto_migrate is False
    assert (
        Settings(database_url=database_url, auto_migrate=False, _env_file=None).should_auto_migrate is False
    )  # type: ignore[call-arg]


def test_environment_variables_and_nested_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHGATE_ACCESS_TOKEN_TTL", "600")
    monkeypatch.setenv("AUTHGATE_FEATURES__REQUIRE_VERIFIED_EMAIL", "true")
    monkeypatch.setenv("AUTHGATE_PORT", "9000")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.access_token_ttl == timedelta(minutes=10)
    assert settings.features.require_verified_email is True
    assert settings.port == 9000


def test_development_generates_and_keeps_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = Settings(_env_file=None).secret()  # type: ignore[call-arg]
    second = Settings(_env_file=None).secret()  # type: ignore[call-arg]
    assert first == second and len(first) >= 32
    assert (tmp_path / "var" / "secret_key").stat().st_mode & 0o777 == 0o600


ENV_EXAMPLE = Path(__file__).parent.parent / ".env.example"


def _names(model: type[BaseModel], prefix: str) -> set[str]:
    names: set[str] = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= _names(annotation, f"{prefix}{name.upper()}__")
        else:
            names.add(f"{prefix}{name.upper()}")
    return names


def test_env_example_lists_every_setting() -> None:
    text = ENV_EXAMPLE.read_text()
    missing = sorted(n for n in _names(Settings, "AUTHGATE_") if f"{n}=" not in text)
    assert missing == []


def test_env_example_parses_to_the_defaults() -> None:
    from_file = Settings(_env_file=ENV_EXAMPLE)  # type: ignore[call-arg]
    assert from_file.model_dump() == Settings(_env_file=None).model_dump()  # type: ignore[call-arg]


def test_a_copy_of_env_example_keeps_the_production_limits() -> None:
    """The file sets nothing production would set differently: its stricter per-IP limits apply."""
    values = {"env": "production", "secret_key": "k" * 48}
    from_file = Settings(_env_file=ENV_EXAMPLE, **values)  # type: ignore[call-arg]
    assert (from_file.rate_limit.login_per_ip, from_file.rate_limit.register_per_ip) == (
        "30/minute",
        "10/minute",
    )
    assert from_file.model_dump() == Settings(_env_file=None, **values).model_dump()  # type: ignore[call-arg]


@pytest.mark.parametrize("name", ["AUTHGATE_RATE_LIMIT_ENABLED", "AUTHGATE_RATE_LIMIT__ENABLED"])
def test_rate_limits_turn_off_by_either_name(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "false")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.rate_limit.enabled is False
    monkeypatch.delenv(name)
    assert Settings(_env_file=None).rate_limit.enabled is True  # type: ignore[call-arg]


def test_the_example_env_file_lets_the_environment_turn_limits_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy of .env.example sets only one of the two names, so the other cannot contradict it."""
    monkeypatch.setenv("AUTHGATE_RATE_LIMIT_ENABLED", "false")
    assert Settings(_env_file=ENV_EXAMPLE).rate_limit.enabled is False  # type: ignore[call-arg]


def test_the_two_rate_limit_switches_must_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHGATE_RATE_LIMIT_ENABLED", "false")
    monkeypatch.setenv("AUTHGATE_RATE_LIMIT__ENABLED", "true")
    with pytest.raises(ValidationError, match="RATE_LIMIT_ENABLED and AUTHGATE_RATE_LIMIT__ENABLED disagree"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("AUTHGATE_RATE_LIMIT__ENABLED", "false")
    assert Settings(_env_file=None).rate_limit.enabled is False  # type: ignore[call-arg]


def test_production_has_stricter_ip_limits_unless_set() -> None:
    strict = Settings(env="production", secret_key="k" * 48, _env_file=None)  # type: ignore[call-arg]
    assert strict.rate_limit.login_per_ip == "30/minute"
    assert strict.rate_limit.register_per_ip == "10/minute"
    chosen = Settings(
        env="production", secret_key="k" * 48, rate_limit={"login_per_ip": "500/minute"}, _env_file=None
    )  # type: ignore[call-arg]
    assert chosen.rate_limit.login_per_ip == "500/minute"
    assert Settings(_env_file=None).rate_limit.login_per_ip == "120/minute"  # type: ignore[call-arg]


def test_settings_never_change_the_objects_they_were_given() -> None:
    """Building production settings, or switching limits off by the flat name, copies the limits."""
    from authgate.config import RateLimits

    given = RateLimits()
    before = given.model_dump()
    production = Settings(env="production", secret_key="k" * 48, rate_limit=given, _env_file=None)  # type: ignore[call-arg]
    assert production.rate_limit.login_per_ip == "30/minute"
    switched = Settings(rate_limit=given, rate_limit_enabled=False, _env_file=None)  # type: ignore[call-arg]
    assert switched.rate_limit.enabled is False
    assert given.model_dump() == before


@pytest.mark.parametrize(
    ("env", "public_url"),
    [
        ({}, "http://127.0.0.1:8000"),
        ({"port": 8133}, "http://127.0.0.1:8133"),
        ({"host": "0.0.0.0", "port": 9000}, "http://127.0.0.1:9000"),  # noqa: S104
        ({"host": "::1"}, "http://[::1]:8000"),
        ({"port": 8133, "public_url": "https://id.example.com"}, "https://id.example.com"),
    ],
)
def test_public_url_follows_the_address_served_unless_set(env: dict[str, object], public_url: str) -> None:
    settings = Settings(**env, _env_file=None)  # type: ignore[arg-type]
    assert settings.public_url == public_url
    assert settings.token_issuer == public_url


@pytest.mark.parametrize(
    ("value", "origins"),
    [
        ("https://app.example.com", ["https://app.example.com"]),
        ("https://a.example.com, https://b.example.com", ["https://a.example.com", "https://b.example.com"]),
        ('["https://a.example.com"]', ["https://a.example.com"]),
        ("[]", []),
    ],
)
def test_cors_origins_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, origins: list[str]
) -> None:
    monkeypatch.setenv("AUTHGATE_CORS_ORIGINS", value)
    assert Settings(_env_file=None).cors_origins == origins  # type: ignore[call-arg]


def test_malformed_json_cors_origins_name_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHGATE_CORS_ORIGINS", '["https://a.example.com"')
    with pytest.raises(ValidationError, match="cors_origins"):
        Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("*", "*"),
        ("null", "null"),
        ("https://app.example.com, *", "*"),
        ('["https://app.example.com", "NULL"]', "NULL"),
    ],
)
def test_cors_origins_refuse_any_origin(monkeypatch: pytest.MonkeyPatch, value: str, named: str) -> None:
    """With credentials allowed, `*` made the CORS middleware echo every Origin: any page could call
    the API as its signed-in visitor and read the answer. `null` is any sandboxed page."""
    monkeypatch.setenv("AUTHGATE_CORS_ORIGINS", value)
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None)  # type: ignore[call-arg]
    message = refused.value.errors(include_url=False)[0]["msg"]
    assert f"AUTHGATE_CORS_ORIGINS may not contain {named}: list each origin allowed" in message
    assert "cannot go to any origin" in message
    with pytest.raises(ValidationError, match="AUTHGATE_CORS_ORIGINS"):
        Settings(cors_origins=["*"], _env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("sqlite:///./var/x.db", "sqlite+aiosqlite:///./var/x.db"),
        ("postgresql://u:pw@h:5432/db", "postgresql+asyncpg://u:pw@h:5432/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgres://u:pw@h/db?sslmode=require", "postgresql+asyncpg://u:pw@h/db?ssl=require"),
        (
            "postgresql://u@h/db?sslmode=verify-full&application_name=x",
            "postgresql+asyncpg://u@h/db?application_name=x&ssl=verify-full",
        ),
    ],
)
def test_database_urls_are_read_on_their_async_driver(given: str, used: str) -> None:
    assert Settings(database_url=given, _env_file=None).database_url == used  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "given", ["mysql://u:s3cret-pw@h/db", "nonsense", "postgresql+psycopg2://u:s3cret-pw@h/db"]
)
def test_an_unsupported_database_url_is_refused_without_repeating_it(given: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(database_url=given, _env_file=None)  # type: ignore[call-arg]
    text = refused.value.errors(include_input=False)[0]["msg"]
    assert "sqlite+aiosqlite" in text and "s3cret-pw" not in text


@pytest.mark.parametrize(
    ("value", "trusted"),
    [
        ("10.0.0.5", ["10.0.0.5"]),
        ("10.0.0.0/8, 2001:db8::/32,::1", ["10.0.0.0/8", "2001:db8::/32", "::1"]),
        ('["172.16.0.0/12"]', ["172.16.0.0/12"]),
        ("*", ["*"]),
        ("[]", []),  # no proxy at all: every peer is the client
    ],
)
def test_forwarded_allow_ips_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, trusted: list[str]
) -> None:
    monkeypatch.setenv("AUTHGATE_FORWARDED_ALLOW_IPS", value)
    assert Settings(_env_file=None).forwarded_allow_ips == trusted  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "value",
    [
        "10.0.0.0/33",  # no such network
        "10.0.0.1/8",  # host bits set: uvicorn would read it as a name and trust nobody
        "lb.internal",  # a name: uvicorn compares peers' addresses, never names
        "10.0.0.5:8080",  # a port: uvicorn compares addresses alone
        "10.0.0.5;10.0.0.6",
        "*,10.0.0.5",  # `*` beside addresses would be read as a name by uvicorn
    ],
)
def test_a_malformed_forwarded_allow_ips_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("AUTHGATE_FORWARDED_ALLOW_IPS", value)
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None)  # type: ignore[call-arg]
    error = refused.value.errors()[0]
    assert error["loc"] == ("forwarded_allow_ips",)
    assert "IP address or network" in error["msg"] or "stands alone" in error["msg"]
