"""Seed PostgreSQL with many users (COPY) and time the admin user list on it.

    python bench/seed_users.py --url postgresql+asyncpg://postgres@127.0.0.1:5432/bench_c --users 1000000

Migrates the database, seeds users (with profile, settings and role rows) unless that many are
there already, runs ANALYZE, then times `UserAdminService.list_page` — the code behind
`GET /api/v1/users` — for page 1, page 1,000 (its keyset cursor looked up beforehand) and the
filters of SPEC §6. Each figure is the median of several runs on a warm cache.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import text

from authgate import migrate
from authgate.config import Settings
from authgate.db import create_engine, create_sessionmaker
from authgate.pagination import PageParams, encode_cursor
from authgate.security.passwords import PasswordHasher
from authgate.users.admin_service import UserAdminService, UserFilters
from authgate.users.models import fold_name

FIRST = ["ada", "alan", "grace", "linus", "margaret", "ken", "barbara", "edsger", "donald", "frances", "zora"]
LAST = [
    "lovelace",
    "turing",
    "hopper",
    "torvalds",
    "hamilton",
    "thompson",
    "liskov",
    "dijkstra",
    "knuth",
    "allen",
]
PAGE = 50
BATCH = 50_000


def uuid7_at(moment: datetime, rng: random.Random) -> uuid.UUID:
    ms = int(moment.timestamp() * 1000)
    rand = rng.getrandbits(74)
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return uuid.UUID(int=value)


def user_rows(count: int, start: datetime) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(42)
    step = timedelta(days=3 * 365) / count
    digest = "$argon2id$v=19$m=19456,t=2,p=1$c2VlZHNlZWRzZWVk$0000000000000000000000000000000000000000000"
    for i in range(count):
        created = start + step * i
        name = f"{rng.choice(FIRST).title()} {rng.choice(LAST).title()} {i}"
        email = f"seed{i}@example.com"
        yield (
            uuid7_at(created, rng),
            email,
            email,
            rng.random() < 0.8,
            f"seed_{i}",
            name,
            fold_name(name),
            None,
            False,
            digest,
            rng.random() > 0.02,
            False,
            created,
            created,
        )


USER_COLUMNS = [
    "id",
    "email",
    "email_normalized",
    "email_verified",
    "username",
    "full_name",
    "full_name_folded",
    "phone",
    "phone_verified",
    "password_hash",
    "is_active",
    "mfa_enabled",
    "created_at",
    "updated_at",
]


async def seed(dsn: str, count: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        existing = await conn.fetchval("SELECT count(*) FROM user_account WHERE email LIKE 'seed%'")
        if existing >= count:
            print(f"{existing} seeded users present; not seeding")
            return
        roles = {r["name"]: r["id"] for r in await conn.fetch("SELECT id, name FROM role")}
        if "user" not in roles:
            raise SystemExit("run the app once (or `authgate serve`) so the built-in roles exist")
        start = datetime.now(UTC) - timedelta(days=3 * 365)
        started = time.perf_counter()
        batch: list[tuple[Any, ...]] = []
        done = 0
        for row in user_rows(count, start):
            batch.append(row)
            if len(batch) == BATCH:
                await _copy(conn, batch, roles)
                done += len(batch)
                batch = []
                print(f"  {done:>9,} users  {time.perf_counter() - started:6.1f} s", end="\r", flush=True)
        if batch:
            await _copy(conn, batch, roles)
        print(f"\nseeded {count:,} users in {time.perf_counter() - started:.1f} s")
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def _copy(conn: asyncpg.Connection, batch: list[tuple[Any, ...]], roles: dict[str, uuid.UUID]) -> None:
    async with conn.transaction():
        await conn.copy_records_to_table("user_account", records=batch, columns=USER_COLUMNS)
        now = datetime.now(UTC)
        ids = [row[0] for row in batch]
        role_rows = [(uid, roles["user"]) for uid in ids]
        role_rows += [(uid, roles["admin"]) for n, uid in enumerate(ids) if n % 1000 == 0]
        await conn.copy_records_to_table("user_role", records=role_rows, columns=["user_id", "role_id"])
        await conn.copy_records_to_table(
            "user_profile", records=[(uid, now) for uid in ids], columns=["user_id", "updated_at"]
        )
        await conn.copy_records_to_table(
            "user_settings",
            records=[(uid, "members", True, False, "system", now) for uid in ids],
            columns=[
                "user_id",
                "profile_visibility",
                "security_alerts",
                "marketing_emails",
                "theme",
                "updated_at",
            ],
        )


async def median_ms(fn: Callable[[], Awaitable[int]], runs: int = 7) -> tuple[float, int]:
    await fn()  # warm up
    times, rows = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        rows = await fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), rows


async def measure(url: str) -> None:
    settings = Settings(database_url=url, secret_key="bench-" * 8, _env_file=None)  # type: ignore[call-arg]
    engine = create_engine(settings)
    factory = create_sessionmaker(engine)
    passwords = PasswordHasher(settings.password)
    async with factory() as session:
        offset = PAGE * 999 - 1
        last_of_999 = await session.scalar(
            text("SELECT id FROM user_account WHERE deleted_at IS NULL ORDER BY id DESC OFFSET :o LIMIT 1"),
            {"o": offset},
        )
    cursor_1000 = encode_cursor(last_of_999)
    cases: list[tuple[str, UserFilters, str | None]] = [
        ("page 1", UserFilters(), None),
        ("page 1,000 (keyset cursor)", UserFilters(), cursor_1000),
        ("q=seed12345 (email prefix)", UserFilters(q="seed12345"), None),
        ("q=grace (name prefix)", UserFilters(q="grace"), None),
        ("is_active=false", UserFilters(is_active=False), None),
        ("role=admin", UserFilters(role="admin"), None),
        (
            "created_after=30 days ago",
            UserFilters(created_after=datetime.now(UTC) - timedelta(days=30)),
            None,
        ),
        (
            "created_before=1000 days ago",
            UserFilters(created_before=datetime.now(UTC) - timedelta(days=1000)),
            None,
        ),
    ]
    print(f"{'query':<32} {'median ms':>10} {'rows':>6}")
    for label, filters, cursor in cases:

        async def run(filters: UserFilters = filters, cursor: str | None = cursor) -> int:
            async with factory() as session:
                items, _ = await UserAdminService(session, passwords, settings).list_page(
                    filters, PageParams(limit=PAGE, cursor=cursor)
                )
                return len(items)

        ms, rows = await median_ms(run)
        print(f"{label:<32} {ms:>10.2f} {rows:>6}")
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/bench_c"),
    )
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--measure-only", action="store_true")
    args = parser.parse_args()
    migrate.upgrade(args.url)
    if not args.measure_only:
        asyncio.run(_prepare_and_seed(args.url, args.users))
    asyncio.run(measure(args.url))


async def _prepare_and_seed(url: str, count: int) -> None:
    from authgate.roles.service import ensure_builtin_roles

    settings = Settings(database_url=url, secret_key="bench-" * 8, _env_file=None)  # type: ignore[call-arg]
    engine = create_engine(settings)
    async with create_sessionmaker(engine)() as session, session.begin():
        await ensure_builtin_roles(session)
    await engine.dispose()
    await seed(url.replace("postgresql+asyncpg://", "postgresql://"), count)


if __name__ == "__main__":
    main()
