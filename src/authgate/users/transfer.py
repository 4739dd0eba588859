"""Bulk import and export of accounts (CSV or JSON), keeping bcrypt and Argon2 hashes as they are."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload, undefer

from authgate.audit.service import AuditLog
from authgate.errors import AuthgateError
from authgate.roles.permissions import USER_ROLE
from authgate.roles.service import ensure_builtin_roles
from authgate.schemas import Email, Name, Phone, Username
from authgate.security.passwords import PasswordHasher
from authgate.users.models import User
from authgate.users.repository import UserRepository
from authgate.users.service import UserService

EXPORT_FIELDS = [
    "id",
    "email",
    "username",
    "full_name",
    "phone",
    "email_verified",
    "phone_verified",
    "is_active",
    "roles",
    "password_hash",
    "created_at",
]
_HASH_PREFIXES = ("$argon2id$", "$argon2i$", "$2a$", "$2b$", "$2y$")

# A spreadsheet opening a CSV file runs a cell that starts with one of these as a formula (OWASP,
# "CSV Injection"): a self-chosen full name `=HYPERLINK(...)` would run beside the password hashes.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value: Any) -> Any:
    """A CSV cell no spreadsheet reads as a formula: `'` before one that would be (OWASP's advice).

    A text that already starts with quotes before such a character (`'=x`) gets one more, so that
    `restore_cell` gives back every text exactly.
    """
    if isinstance(value, str) and value.lstrip("'").startswith(FORMULA_STARTS):
        return "'" + value
    return value


def restore_cell(value: Any) -> Any:
    """Undo `neutralise_cell`: a cell of quotes before a formula character loses one quote."""
    if isinstance(value, str) and value.startswith("'") and value.lstrip("'").startswith(FORMULA_STARTS):
        return value[1:]
    return value


class ImportedUser(BaseModel):
    """One row of an import file; unknown columns are ignored, booleans accept true/false/1/0."""

    model_config = ConfigDict(extra="ignore")

    email: Email
    username: Username | None = None
    full_name: Name | None = None
    phone: Phone | None = None
    email_verified: bool = False
    phone_verified: bool = False
    is_active: bool = True  # an export keeps deactivated accounts, and an import keeps them so
    password_hash: str | None = Field(default=None, max_length=255)
    roles: list[str] = Field(default_factory=lambda: [USER_ROLE])

    @field_validator("username", "full_name", "phone", "password_hash", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("email_verified", "phone_verified", mode="before")
    @classmethod
    def _blank_is_false(cls, value: Any) -> Any:
        return False if value in ("", None) else value

    @field_validator("is_active", mode="before")
    @classmethod
    def _blank_is_true(cls, value: Any) -> Any:
        return True if value in ("", None) else value

    @field_validator("roles", mode="before")
    @classmethod
    def _split_roles(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [r.strip() for r in value.replace(",", " ").split() if r.strip()] or [USER_ROLE]
        return value

    @field_validator("password_hash")
    @classmethod
    def _known_hash(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(_HASH_PREFIXES):
            raise ValueError("password_hash must be a bcrypt or Argon2 hash")
        return value


@dataclass
class ImportReport:
    created: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (row number, reason)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a `.csv` (header line) or `.json` (a list of objects) file.

    A CSV cell loses the `'` an export (or a spreadsheet) put before a formula character
    (`'+14155550100` reads as `+14155550100`); JSON is read as it is.
    """
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        data = json.loads(text)
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise ValueError("a JSON import file holds a list of objects")
        return data
    return [
        {name: restore_cell(value) for name, value in row.items()}
        for row in csv.DictReader(io.StringIO(text))
    ]


IMPORT_BATCH = 100  # rows per transaction: the audit chain's head is held no longer than that


async def import_users(
    factory: async_sessionmaker[AsyncSession], passwords: PasswordHasher, rows: Iterable[dict[str, Any]]
) -> ImportReport:
    """Create the accounts `IMPORT_BATCH` rows to a transaction, each row in its own SAVEPOINT, so
    one bad or duplicate row does not stop the rest; each account is recorded as `user.registered`
    (`{"imported": true}`) by the system.

    Each event holds the audit chain's head until its transaction commits, and a running service
    records its sign-ins on that chain: one transaction for a whole file would hold every sign-in
    until the import ended. The built-in roles are made first: a database just migrated has none
    until `serve` starts.
    """
    async with factory() as session, session.begin():
        await ensure_builtin_roles(session)
    report = ImportReport()
    batch: list[tuple[int, dict[str, Any]]] = []
    for numbered in enumerate(rows, start=1):
        batch.append(numbered)
        if len(batch) == IMPORT_BATCH:
            await _import_batch(factory, passwords, batch, report)
            batch = []
    if batch:
        await _import_batch(factory, passwords, batch, report)
    return report


async def _import_batch(
    factory: async_sessionmaker[AsyncSession],
    passwords: PasswordHasher,
    batch: list[tuple[int, dict[str, Any]]],
    report: ImportReport,
) -> None:
    async with factory() as session, session.begin():
        service = UserService(UserRepository(session), passwords, AuditLog(session), notifier=None)
        for number, raw in batch:
            await _import_row(session, service, number, raw, report)


async def _import_row(
    session: AsyncSession, service: UserService, number: int, raw: dict[str, Any], report: ImportReport
) -> None:
    """One row in a SAVEPOINT: the account and its audit event, or neither (and the reason why)."""
    try:
        row = ImportedUser.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        report.skipped.append((number, f"{'.'.join(map(str, first['loc']))}: {first['msg']}"))
        return
    try:
        async with session.begin_nested():  # the account and its audit event, or neither
            await service.create_imported(row)
    except Exception as exc:  # a domain error (email taken, ...) skips the row with its reason
        report.skipped.append((number, _reason(exc)))
        return
    report.created += 1


def _reason(exc: Exception) -> str:
    """Why a row was skipped, readable: `email_taken: Email already registered`."""
    if isinstance(exc, AuthgateError):
        return f"{exc.code}: {exc}"
    if isinstance(exc, DBAPIError):  # a race with another writer; the statement and values stay out
        first_line = str(exc.orig).strip().partition("\n")[0]
        return f"{type(exc).__name__}: {first_line}"
    return type(exc).__name__


async def count_exported(session: AsyncSession) -> int:
    """How many accounts `export_users` yields (for a progress bar)."""
    return await session.scalar(select(func.count()).select_from(User).where(User.deleted_at.is_(None))) or 0


async def export_users(session: AsyncSession, *, batch: int = 1000) -> AsyncIterator[dict[str, Any]]:
    """Every account not deleted (deactivated ones too) in creation order, with its password hash."""
    last = None
    while True:
        stmt = (
            select(User)
            .options(undefer(User.password_hash), selectinload(User.roles))
            .where(User.deleted_at.is_(None))
            .order_by(User.id)
            .limit(batch)
        )
        if last is not None:
            stmt = stmt.where(User.id > last)
        users = (await session.scalars(stmt)).all()
        for user in users:
            yield {
                "id": str(user.id),
                "email": user.email,
                "username": user.username,
                "full_name": user.full_name,
                "phone": user.phone,
                "email_verified": user.email_verified,
                "phone_verified": user.phone_verified,
                "is_active": user.is_active,
                "roles": " ".join(user.role_names),
                "password_hash": user.password_hash,
                "created_at": user.created_at.isoformat(),
            }
        if len(users) < batch:
            return
        last = users[-1].id


class ExportWriter:
    """Writes exported rows one at a time: CSV with a header line, or the JSON list
    `json.dump(rows, indent=2)` would write, without holding every row.

    CSV cells that a spreadsheet would run as formulas are written with a leading `'`
    (`neutralise_cell`; `users import` takes it off again); JSON holds the values as they are.
    """

    def __init__(self, stream: TextIO, *, as_csv: bool) -> None:
        self.count = 0
        self._stream = stream
        self._csv = csv.DictWriter(stream, fieldnames=EXPORT_FIELDS) if as_csv else None
        if self._csv is not None:
            self._csv.writeheader()
        else:
            stream.write("[")

    def write(self, row: dict[str, Any]) -> None:
        if self._csv is not None:
            self._csv.writerow({name: neutralise_cell(value) for name, value in row.items()})
        else:  # JSON escapes newlines inside strings: every "\n" here is indentation
            self._stream.write(
                ("," if self.count else "") + "\n  " + json.dumps(row, indent=2).replace("\n", "\n  ")
            )
        self.count += 1

    def close(self) -> None:
        if self._csv is None:
            self._stream.write("\n]\n" if self.count else "]\n")


@contextmanager
def private_file(path: Path) -> Iterator[TextIO]:
    """A file only its owner can read (mode 600 from its creation) that becomes `path` when the block
    completes; if the block fails, `path` is left as it was. Errors name `path`."""
    if path.is_dir():  # found before the work, not when it is done
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as stream:
            yield stream
        try:
            os.replace(temporary, path)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(path)) from None
    finally:
        Path(temporary).unlink(missing_ok=True)  # gone already once it has become `path`
