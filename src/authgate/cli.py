"""The `authgate` command line (also `python -m authgate`)."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
import uvicorn
from alembic.util.exc import CommandError
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import DBAPIError
from typer.core import TyperGroup

from authgate import migrate as migrations
from authgate.config import Settings, get_settings
from authgate.security.keys import UnreadableKeysError

# What an operator's setup or input can cause: one line on stderr and exit 1, not a traceback.
OPERATOR_ERRORS = (
    ValidationError,
    CommandError,
    DBAPIError,
    OSError,
    migrations.SchemaBehindError,
    UnreadableKeysError,
)


def describe_error(exc: BaseException) -> str:
    """One line for an operator, without input values: a setting's value may be a secret."""
    if isinstance(exc, ValidationError):
        prefix = "AUTHGATE_" if exc.title == "Settings" else ""
        problems = []
        for error in exc.errors(include_url=False, include_input=False, include_context=False):
            message = error["msg"].removeprefix("Value error, ")
            name = "__".join(str(part) for part in error["loc"]).upper()
            problems.append(f"{prefix}{name}: {message}" if name else message)
        return "; ".join(problems)
    if isinstance(exc, CommandError):
        return f"migration: {exc}"
    if isinstance(exc, DBAPIError):  # the message alone: the statement and its parameters stay out
        first_line = str(exc.orig).strip().partition("\n")[0]
        return f"database: {first_line or type(exc.orig).__name__}"
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        return f"cannot reach the database (AUTHGATE_DATABASE_URL): {exc.strerror or str(exc) or type(exc).__name__}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


class Commands(TyperGroup):
    """The command group: an operator error from any command is one line on stderr and exit 1
    (click keeps exit 2 for usage errors). `authgate`, `python -m authgate` and tests share it."""

    def invoke(self, ctx: Any) -> Any:  # the Context of the click typer vendors
        try:
            return super().invoke(ctx)
        except OPERATOR_ERRORS as exc:
            if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
                raise  # a closed pipe (`| head`): typer exits quietly
            if os.environ.get("AUTHGATE_LOG_LEVEL", "").upper() == "DEBUG":
                raise  # the whole traceback, for a bug report
            console.print(f"[bold red]Error:[/] {escape(describe_error(exc))}", highlight=False)
            raise typer.Exit(code=1) from None


app = typer.Typer(
    cls=Commands, help="authgate: self-hosted identity and user management.", no_args_is_help=True
)
migrate_app = typer.Typer(help="Database migrations (Alembic).", no_args_is_help=True)
keys_app = typer.Typer(help="Signing keys.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log.", no_args_is_help=True)
users_app = typer.Typer(help="Bulk import and export of accounts.", no_args_is_help=True)
app.add_typer(migrate_app, name="migrate")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(users_app, name="users")
console = Console(stderr=True, soft_wrap=True)

DEFAULT_ADMIN_EMAIL = "admin@example.com"


def _prepare_sqlite_dir(settings: Settings) -> None:
    if settings.is_sqlite and ":memory:" not in settings.database_url:
        path = settings.database_url.split("///", 1)[-1]
        Path(path).parent.mkdir(parents=True, exist_ok=True)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Default AUTHGATE_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="Default AUTHGATE_PORT")] = None,
    reload: Annotated[bool, typer.Option(help="Reload on code changes (development)")] = False,
) -> None:
    """Serve the API. Outside production this migrates the database and creates the first admin."""
    # Options win over the environment, for the app's settings too (links, issuer: PUBLIC_URL's default).
    for name, value in (("AUTHGATE_HOST", host), ("AUTHGATE_PORT", port)):
        if value is not None:
            os.environ[name] = str(value)
    get_settings.cache_clear()
    settings = get_settings()
    _prepare_sqlite_dir(settings)
    settings.secret()  # fail early (and create the development key) before serving
    if settings.should_auto_migrate:
        migrations.upgrade(settings.database_url)
    if settings.env != "production":  # production creates its admin explicitly: `authgate create-admin`
        asyncio.run(_bootstrap_admin(settings, quiet=True))
    asyncio.run(_preflight(settings, keys=True))  # what the app's start would refuse, as one line
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    bound = f"http://{host}:{settings.port}"
    typer.echo(f"authgate serving on {bound} (API docs at {bound}/docs)")
    if settings.public_url.rstrip("/") != bound:
        typer.echo(f"public address (token issuer, links in messages): {settings.public_url}")
    uvicorn.run(
        "authgate.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        reload=reload,
        loop=settings.server_loop,  # asyncio on SQLite, uvloop on PostgreSQL (Settings.server_loop)
        http="httptools",
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,  # whose X-Forwarded-For names the client
        access_log=False,
        log_level="warning",
        server_header=False,
    )


def _admin_address(settings: Settings) -> str:
    """AUTHGATE_ADMIN_EMAIL as registration would take it, or the one-line error and exit 1."""
    from pydantic import TypeAdapter

    from authgate.schemas import Email

    try:
        return TypeAdapter(Email).validate_python(settings.admin_email or DEFAULT_ADMIN_EMAIL)
    except ValidationError as exc:
        reason = exc.errors(include_input=False)[0]["msg"].removeprefix("Value error, ")
        console.print(
            f"[bold red]Error:[/] AUTHGATE_ADMIN_EMAIL is refused: {escape(reason)}", highlight=False
        )
        raise typer.Exit(1) from None


async def _bootstrap_admin(settings: Settings, *, quiet: bool) -> None:
    """Create the first admin unless one exists; a generated password is printed once.

    A password the policy refuses ends the command (exit 1, `serve` does not start) with nothing made.
    """
    from authgate.audit.service import AuditLog
    from authgate.db import create_engine, create_sessionmaker
    from authgate.errors import InvalidInputError
    from authgate.roles.permissions import ADMIN_ROLE
    from authgate.roles.service import ensure_builtin_roles
    from authgate.security.passwords import PasswordHasher
    from authgate.users.repository import UserRepository
    from authgate.users.service import UserService

    if settings.admin_password is None:
        password, source = _generate_password(settings), "the generated admin password"
    else:
        password, source = settings.admin_password.get_secret_value(), "AUTHGATE_ADMIN_PASSWORD"
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            await ensure_builtin_roles(session)
            users = UserRepository(session)
            if await users.any_with_role(ADMIN_ROLE):
                if not quiet:
                    console.print("An admin exists already; nothing to do.")
                return
            # Checked only now: once an admin exists the setting is unused, and must not stop anything.
            email = _admin_address(settings)
            service = UserService(users, PasswordHasher(settings.password), AuditLog(session), notifier=None)
            holder, created = await service.ensure_admin(email, password)
            holder_deleted = holder.deleted_at is not None
    except InvalidInputError as exc:  # the password policy: the transaction is rolled back, nothing made
        console.print(f"[bold red]Error:[/] {source} is refused: {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        await engine.dispose()
    if not created:  # the address belongs to an account that is not an admin
        what = "a deleted account (restore it, or wait for the purge)" if holder_deleted else "an account"
        console.print(
            f"[bold red]No admin created:[/] {email} belongs to {what}. Give that account the admin "
            "role, or set AUTHGATE_ADMIN_EMAIL to another address."
        )
        if not quiet:
            raise typer.Exit(1)
        return
    console.print(f"[bold green]Created the first admin[/] {email}")
    if settings.admin_password is None:
        console.print(f"  password (shown once, change it): [bold]{password}[/]")


def _generate_password(settings: Settings) -> str:
    """A random password the policy accepts: 24 characters, or its minimum length if longer."""
    policy = settings.password
    length = min(max(24, policy.min_length), policy.max_length)
    return secrets.token_urlsafe(length)[:length]


@app.command("create-admin")
def create_admin() -> None:
    """Create the first admin from AUTHGATE_ADMIN_EMAIL / AUTHGATE_ADMIN_PASSWORD (or generate a password).

    The password must pass the password policy registration applies; a refused one creates nothing.
    """
    asyncio.run(_bootstrap_admin(get_settings(), quiet=False))


@app.command()
def worker(
    once: Annotated[bool, typer.Option(help="Deliver what is due now, then exit")] = False,
) -> None:
    """Deliver outbox messages and purge old records (AUTHGATE_RETENTION__*) until SIGTERM/SIGINT;
    the batch in hand is finished or released."""
    from authgate.logging import configure_logging

    settings = get_settings()
    configure_logging(console=settings.console_logs, level=settings.log_level)
    asyncio.run(_preflight(settings, keys=False))
    sent = asyncio.run(_run_worker(settings, once=once))
    if once:
        console.print(f"Processed {sent} message(s).")


async def _preflight(settings: Settings, *, keys: bool) -> None:
    """Refuse to start on a database behind this code (or unreachable), or, for `serve`, on
    signing keys this SECRET_KEY cannot open: one line and exit 1 instead of a failed start-up."""
    from authgate.db import create_engine, create_sessionmaker
    from authgate.security.keys import KeyRing

    engine = create_engine(settings)
    try:
        factory = create_sessionmaker(engine)
        async with factory() as session:
            await migrations.require_current_schema(session)
        if keys:
            ring = KeyRing(settings.secret(), settings.jwt_algorithm)
            await ring.load(factory, create=False)
            ring.require_signing()
    finally:
        await engine.dispose()


async def _run_worker(settings: Settings, *, once: bool) -> int:
    import signal

    from authgate.db import create_engine, create_sessionmaker
    from authgate.ops.housekeeping import Housekeeper
    from authgate.outbox.dispatcher import Dispatcher

    engine = create_engine(settings)
    try:
        factory = create_sessionmaker(engine)
        dispatcher = Dispatcher(factory, settings)
        if once:
            return await dispatcher.drain()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with asyncio.TaskGroup() as jobs:  # one failing stops the other
            jobs.create_task(dispatcher.run(stop))
            if settings.retention.automatic:
                jobs.create_task(Housekeeper.from_settings(factory, settings).run(stop))
        return 0
    finally:
        await engine.dispose()


@app.command()
def purge(
    dry_run: Annotated[bool, typer.Option(help="Count what is due; delete nothing")] = False,
) -> None:
    """Delete what ended longer ago than its retention (AUTHGATE_RETENTION__*): ended sessions,
    spent tokens and codes, delivered messages, and deleted accounts (erased for good)."""
    from rich.table import Table

    from authgate.logging import configure_logging

    settings = get_settings()
    configure_logging(console=settings.console_logs, level=settings.log_level)
    report = asyncio.run(_purge(settings, dry_run=dry_run))
    table = Table("records", "due" if dry_run else "deleted", title="authgate purge")
    for kind, count in report.items():
        table.add_row(kind.replace("_", " "), str(count))
    Console(soft_wrap=True).print(table)


async def _purge(settings: Settings, *, dry_run: bool) -> dict[str, int]:
    from authgate.db import create_engine, create_sessionmaker
    from authgate.ops.housekeeping import Housekeeper

    engine = create_engine(settings)
    try:
        return await Housekeeper.from_settings(create_sessionmaker(engine), settings).purge(dry_run=dry_run)
    finally:
        await engine.dispose()


@migrate_app.command("upgrade")
def migrate_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Upgrade the database to REVISION (default: the latest)."""
    settings = get_settings()
    _prepare_sqlite_dir(settings)
    migrations.upgrade(settings.database_url, revision)
    console.print(f"Database at {revision}.")


def _revision(value: str) -> str:
    """A revision, `base`, or a relative step back (`-1`): anything else starting with `-` is an
    option this command does not have."""
    if value.startswith("-") and not value[1:].isdigit():
        raise typer.BadParameter(f"no such option: {value}")
    return value


@migrate_app.command("downgrade", context_settings={"ignore_unknown_options": True})  # `-1` is a revision
def migrate_downgrade(
    revision: Annotated[str, typer.Argument(help="Target, e.g. -1 or base", callback=_revision)],
) -> None:
    """Downgrade the database to REVISION (relative ones such as -1 count back from the current one)."""
    url = get_settings().database_url
    migrations.downgrade(url, revision)
    console.print(f"Database at {migrations.current(url) or 'no revision (empty database)'}.")


@migrate_app.command("current")
def migrate_current() -> None:
    """Print the database's current revision."""
    typer.echo(migrations.current(get_settings().database_url) or "(empty database)")


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Create a new signing key; the old one stays in the JWKS until its tokens have expired."""
    from authgate.db import create_engine, create_sessionmaker
    from authgate.security.keys import rotate

    settings = get_settings()

    async def run() -> str:
        engine = create_engine(settings)
        try:
            return await rotate(
                create_sessionmaker(engine),
                settings.secret(),
                settings.jwt_algorithm,
                settings.access_token_ttl,
            )
        finally:
            await engine.dispose()

    kid = asyncio.run(run())
    console.print(
        f"New signing key [bold]{kid}[/] ({settings.jwt_algorithm}). Running servers publish it and sign with it within a second."
    )


@audit_app.command("verify")
def audit_verify() -> None:
    """Walk the audit hash chain: exit 0 when intact, 1 naming the first broken event."""
    from authgate.audit.service import ChainReport, verify_chain
    from authgate.db import create_engine, create_sessionmaker

    settings = get_settings()

    async def run() -> ChainReport:
        engine = create_engine(settings)
        try:
            async with create_sessionmaker(engine)() as session:
                return await verify_chain(session)
        finally:
            await engine.dispose()

    report = asyncio.run(run())
    if report.broken_event_id is None:
        console.print(f"Audit chain intact: {report.checked} events.")
        return
    console.print(f"[bold red]Audit chain broken[/] at event {report.broken_event_id}: {report.reason}")
    typer.echo(report.broken_event_id)
    raise typer.Exit(code=1)


@users_app.command("import")
def users_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A .csv or .json file")],
) -> None:
    """Create accounts from a file; bcrypt and Argon2 hashes are kept (bcrypt is upgraded at first login).

    Columns: email (required), username, full_name, phone, email_verified, phone_verified, is_active,
    password_hash, roles
    (default: user). Invalid or duplicate rows, and rows naming a role that does not exist, are
    skipped and listed with the reason; exit code 1 if any was skipped. In CSV, a cell of ' before
    =, +, -, @, tab or CR loses that ' (the quote an export puts there).
    """
    from rich.progress import track

    from authgate.db import create_engine, create_sessionmaker
    from authgate.security.passwords import PasswordHasher
    from authgate.users.transfer import ImportReport, import_users, read_rows

    settings = get_settings()
    try:
        rows = read_rows(file)
    except (ValueError, UnicodeDecodeError) as exc:
        console.print(f"[bold red]Error:[/] {escape(f'cannot read {file}: {exc}')}", highlight=False)
        raise typer.Exit(code=1) from exc

    async def run() -> ImportReport:
        engine = create_engine(settings)
        try:
            progress = track(rows, description="Importing", console=console)
            return await import_users(
                create_sessionmaker(engine), PasswordHasher(settings.password), progress
            )
        finally:
            await engine.dispose()

    report = asyncio.run(run())
    console.print(f"Created {report.created} accounts; skipped {len(report.skipped)}.")
    for number, reason in report.skipped:
        console.print(f"  row {number}: {escape(reason)}")  # the reason may quote the file
    if report.skipped:
        raise typer.Exit(code=1)


@users_app.command("export")
def users_export(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout)")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="json or csv")] = "json",
) -> None:
    """Write every account (with its password hash) as JSON or CSV. Treat the output as a secret.

    A progress bar goes to stderr; stdout carries only the accounts. A file is created readable by
    its owner only, and replaces FILE only once complete. In CSV, a cell starting with =, +, -, @,
    tab or CR gets a leading ' so that no spreadsheet runs it as a formula (import takes it off).
    """
    from contextlib import nullcontext

    from rich.progress import Progress

    from authgate.db import create_engine, create_sessionmaker
    from authgate.users.transfer import ExportWriter, count_exported, export_users, private_file

    if fmt not in ("json", "csv"):
        raise typer.BadParameter("json or csv", param_hint="--format")
    settings = get_settings()
    stdout = sys.stdout  # written directly, whatever the progress display does to sys.stdout

    async def run(stream: TextIO) -> int:
        engine = create_engine(settings)
        try:
            async with create_sessionmaker(engine)() as session:
                total = await count_exported(session)
                writer = ExportWriter(stream, as_csv=fmt == "csv")
                with Progress(
                    console=console,
                    redirect_stdout=False,
                    redirect_stderr=False,
                    disable=output is None and stdout.isatty(),  # not drawn over the rows themselves
                ) as progress:
                    task = progress.add_task("Exporting", total=total)
                    async for row in export_users(session):
                        writer.write(row)
                        progress.advance(task)
                writer.close()
                return writer.count
        finally:
            await engine.dispose()

    with private_file(output) if output else nullcontext(stdout) as stream:
        exported = asyncio.run(run(stream))
    console.print(f"Exported {exported} accounts.")


@app.command()
def openapi() -> None:
    """Print the OpenAPI schema as JSON."""
    from authgate.main import create_app

    json.dump(create_app(get_settings()).openapi(), sys.stdout, indent=2)
    sys.stdout.write("\n")


def main() -> None:
    app()
