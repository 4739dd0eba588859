"""The command line: migrate, create-admin, keys rotate, audit verify, openapi."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from authgate.cli import app
from authgate.config import get_settings

runner = CliRunner()


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTHGATE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("AUTHGATE_ENV", "test")
    monkeypatch.setenv("AUTHGATE_SECRET_KEY", "cli-secret-key-long-enough-0123456789abcdef")
    monkeypatch.setenv("AUTHGATE_PASSWORD__ARGON2_MEMORY_COST", "1024")
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_migrate_upgrade_current_downgrade(cli_env: Path) -> None:
    assert runner.invoke(app, ["migrate", "upgrade"]).exit_code == 0
    current = runner.invoke(app, ["migrate", "current"])
    assert current.exit_code == 0 and "(head)" in current.output
    assert runner.invoke(app, ["migrate", "downgrade", "base"]).exit_code == 0
    assert "(empty database)" in runner.invoke(app, ["migrate", "current"]).output


def test_create_admin_prints_a_generated_password_once(cli_env: Path) -> None:
    runner.invoke(app, ["migrate", "upgrade"])
    first = runner.invoke(app, ["create-admin"])
    assert first.exit_code == 0, first.output
    assert "admin@example.com" in first.output and "password" in first.output
    second = runner.invoke(app, ["create-admin"])
    assert second.exit_code == 0 and "password" not in second.output and "exists already" in second.output


def test_create_admin_from_settings(cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHGATE_ADMIN_EMAIL", "root@example.org")
    monkeypatch.setenv("AUTHGATE_ADMIN_PASSWORD", "a long admin pass phrase")
    get_settings.cache_clear()
    runner.invoke(app, ["migrate", "upgrade"])
    result = runner.invoke(app, ["create-admin"])
    assert result.exit_code == 0 and "root@example.org" in result.output
    assert "a long admin pass phrase" not in result.output


def test_keys_rotate(cli_env: Path) -> None:
    runner.invoke(app, ["migrate", "upgrade"])
    first = runner.invoke(app, ["keys", "rotate"])
    second = runner.invoke(app, ["keys", "rotate"])
    assert first.exit_code == second.exit_code == 0
    assert "New signing key" in first.output and first.output != second.output


def test_audit_verify_intact(cli_env: Path) -> None:
    runner.invoke(app, ["migrate", "upgrade"])
    runner.invoke(app, ["create-admin"])
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 0 and "intact: 1 events" in result.output


def test_openapi_prints_the_schema(cli_env: Path) -> None:
    result = runner.invoke(app, ["openapi"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["info"]["title"] == "authgate"
