"""Costs of the security layer: the audit append per request, and the rate limiter on login.

Not a test: prints figures. Usage (PostgreSQL and Redis optional):

    python bench/security_costs.py [--postgres URL] [--redis URL] [-n 300]

The PostgreSQL database is migrated and its audit rows are left in place; point it at a
scratch database.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from httpx import ASGITransport, AsyncClient
from sqlalchemy import text

from authgate import migrate
from authgate.audit.service import Actor, AuditLog
from authgate.config import PasswordPolicy, RateLimits, Settings
from authgate.db import create_engine, create_sessionmaker
from authgate.main import create_app
from authgate.ratelimit.service import RateLimiter

SECRET = "bench-secret-key-that-is-long-enough-0123456789"
FAST = PasswordPolicy(argon2_memory_cost=1024, argon2_time_cost=1)


def settings_for(url: str, **extra: object) -> Settings:
    return Settings(
        env="test",
        database_url=url,
        secret_key=SECRET,
        password=FAST,
        log_level="WARNING",
        _env_file=None,
        **extra,  # type: ignore[arg-type]
    )


def ms(samples: list[float]) -> str:
    samples = sorted(samples)
    p95 = samples[int(len(samples) * 0.95) - 1]
    return f"median {statistics.median(samples) * 1000:.3f} ms, p95 {p95 * 1000:.3f} ms"


async def audit_append(url: str, n: int) -> None:
    await asyncio.to_thread(migrate.upgrade, url)
    engine = create_engine(settings_for(url))
    factory = create_sessionmaker(engine)
    async with engine.begin() as conn:  # a small table standing in for the request's own write
        await conn.execute(text("CREATE TABLE IF NOT EXISTS bench_row (id INTEGER PRIMARY KEY, v TEXT)"))

    async def txn(with_audit: bool, i: int) -> float:
        started = time.perf_counter()
        async with factory() as s, s.begin():
            await s.execute(text("INSERT INTO bench_row (id, v) VALUES (:i, 'x')"), {"i": i})
            if with_audit:
                await AuditLog(s).record(
                    "bench.event",
                    actor=Actor.system(),
                    target_type="user",
                    target_id="00000000-0000-0000-0000-000000000000",
                    data={"i": i},
                )
        return time.perf_counter() - started

    base = int(time.time() * 1000) % 1_000_000_000
    plain = [await txn(False, base + i) for i in range(n)]
    audited = [await txn(True, base + n + i) for i in range(n)]
    delta = statistics.median(audited) - statistics.median(plain)
    print(f"  write txn without audit: {ms(plain)}")
    print(f"  write txn with audit:    {ms(audited)}  -> append adds ~{delta * 1000:.3f} ms")

    # Concurrent appenders queue on the chain head: throughput with 10 writers at once.
    writers, per = 10, max(10, n // 10)

    async def writer(w: int) -> None:
        for i in range(per):
            await txn(True, base + 10 * n + w * per + i)

    started = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    elapsed = time.perf_counter() - started
    print(f"  {writers} concurrent writers: {writers * per / elapsed:.0f} audited txns/s")
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE bench_row"))
    await engine.dispose()


async def login_overhead(url: str, n: int, redis_url: str | None) -> None:
    async def run(enabled: bool, redis: str | None) -> list[float]:
        limits = RateLimits(enabled=enabled, login_per_ip="100000/minute", login_per_account="100000/minute")
        app = create_app(settings_for(url, rate_limit=limits, redis_url=redis))
        async with app.router.lifespan_context(app):
            if redis:
                await app.state.rate_limiter.reset()
            transport = ASGITransport(app=app, client=("192.0.2.1", 1))
            async with AsyncClient(transport=transport, base_url="https://bench") as c:
                email = f"bench{time.time_ns()}@example.com"
                body = {"email": email, "password": "correct horse battery staple"}
                assert (await c.post("/api/v1/auth/register", json=body)).status_code == 201
                for _ in range(10):  # warm up
                    await c.post("/api/v1/auth/login", json=body)
                samples = []
                for _ in range(n):
                    started = time.perf_counter()
                    r = await c.post("/api/v1/auth/login", json=body)
                    samples.append(time.perf_counter() - started)
                    assert r.status_code == 200, r.text
        return samples

    off = await run(False, None)
    memory = await run(True, None)
    print(f"  login, limits off:        {ms(off)}")
    extra = (statistics.median(memory) - statistics.median(off)) * 1000
    print(f"  login, in-memory limits:  {ms(memory)}  ({extra:+.3f} ms)")
    if redis_url:
        shared = await run(True, redis_url)
        extra = (statistics.median(shared) - statistics.median(off)) * 1000
        print(f"  login, Redis limits:      {ms(shared)}  ({extra:+.3f} ms)")

    for label, redis in (("memory", None), ("redis", redis_url)):
        if label == "redis" and not redis:
            continue
        limiter = RateLimiter(RateLimits(login_per_ip="1000000/minute"), redis)
        samples = []
        for i in range(n):
            started = time.perf_counter()
            await limiter.hit("login_per_ip", f"198.51.100.{i % 200}")
            samples.append(time.perf_counter() - started)
        await limiter.reset()
        await limiter.close()
        print(f"  one limiter.hit ({label}): {ms(samples)}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres")
    parser.add_argument("--redis")
    parser.add_argument("-n", type=int, default=300)
    args = parser.parse_args()
    sqlite_url = f"sqlite+aiosqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    print("Audit append, SQLite:")
    await audit_append(sqlite_url, args.n)
    if args.postgres:
        print("Audit append, PostgreSQL:")
        await audit_append(args.postgres, args.n)
    print("Rate limiter on login (SQLite, cheap Argon2 so the limiter's share is visible):")
    await login_overhead(sqlite_url, args.n, args.redis)
    if args.postgres:
        print("Rate limiter on login (PostgreSQL):")
        await login_overhead(args.postgres, args.n, args.redis)


if __name__ == "__main__":
    asyncio.run(main())
