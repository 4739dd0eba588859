"""CPU cost of one authenticated read, in process: GET /api/v1/users/me straight into the ASGI app.

No HTTP server and no load generator, so the figure is the application's own work per request
(middleware, routing, dependencies, JWT verification, the database round trip, serialisation)
and stays comparable on a busy machine. Optionally concurrent, to see pool and lock effects.

    .venv/bin/python bench/profile_me.py                       # SQLite in a temp dir
    .venv/bin/python bench/profile_me.py --db postgresql+asyncpg://postgres@127.0.0.1:5432/bench
    .venv/bin/python bench/profile_me.py --profile 30          # cProfile, top 30 by own time
    .venv/bin/python bench/profile_me.py --concurrency 64      # 64 requests in flight
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

PASSWORD = "Bench-horse-battery-staple-2026"


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--db", default=None, help="database URL (default: SQLite in a temp dir); it is reset"
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--profile", type=int, default=0, help="print the top N functions by own time")
    parser.add_argument("--ceiling", action="store_true", help="measure bench/ceiling.py instead")
    parser.add_argument("--breakdown", action="store_true", help="also time the parts of the request alone")
    parser.add_argument(
        "--gc", choices=["default", "freeze", "off"], default="default", help="garbage collector"
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="authgate-profile-"))
    if args.ceiling:
        app, token = _ceiling(tmp)
        path = "/api/v1/users/me"
        await _run(app, path, token, args)
        return

    url = args.db or f"sqlite+aiosqlite:///{tmp / 'db.sqlite'}"
    os.environ.update(
        AUTHGATE_ENV="production",
        AUTHGATE_SECRET_KEY="p" * 48,
        AUTHGATE_DATABASE_URL=url,
        AUTHGATE_RATE_LIMIT_ENABLED="false",
        AUTHGATE_LOG_LEVEL="WARNING",
    )
    from authgate import migrate
    from authgate.config import Settings
    from authgate.main import create_app

    if url.startswith("postgresql"):
        import asyncpg

        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
        await conn.close()
    await asyncio.to_thread(migrate.upgrade, url)
    app = create_app(Settings())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            body = {"email": "profile@bench.example.com", "password": PASSWORD}
            assert (await client.post("/api/v1/auth/register", json=body)).status_code == 201
            r = await client.post("/api/v1/auth/login", json=body)
            token = r.json()["access_token"]
        await _run(app, "/api/v1/users/me", token, args)
        if args.breakdown:
            await _breakdown(app, token, args.requests)


def _ceiling(tmp: Path) -> tuple[Any, str]:
    import importlib.util
    import sys
    from datetime import UTC, datetime, timedelta

    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    pem = tmp / "public.pem"
    pem.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    os.environ["BENCH_CEILING_PUBLIC_KEY"] = str(pem)
    spec = importlib.util.spec_from_file_location("ceiling", Path(__file__).with_name("ceiling.py"))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ceiling"] = module
    spec.loader.exec_module(module)
    now = datetime.now(UTC)
    claims = {
        "iss": "http://bench.example",
        "aud": "bench",
        "sub": "x",
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(hours=1),
    }
    return module.app, jwt.encode(claims, key, algorithm="ES256")


async def _run(app: Any, path: str, token: str, args: argparse.Namespace) -> None:
    headers = [
        (b"host", b"bench"),
        (b"authorization", f"Bearer {token}".encode()),
        (b"user-agent", b"profile"),
    ]

    async def one() -> int:
        return await _request(app, path, headers)

    for _ in range(200):  # warm caches (statement cache, key ring, pools)
        assert await one() == 200
    if args.gc == "freeze":
        gc.freeze()
    elif args.gc == "off":
        gc.disable()
    collections0 = sum(s["collections"] for s in gc.get_stats())

    async def worker(n: int) -> None:
        for _ in range(n):
            status = await one()
            if status != 200:
                raise RuntimeError(f"status {status}")

    per = args.requests // args.concurrency
    profiler = cProfile.Profile(time.thread_time) if args.profile else None  # CPU, not wall
    wall0, cpu0, main0, t0 = time.perf_counter(), time.process_time(), time.thread_time(), os.times()
    if profiler:
        profiler.enable()
    await asyncio.gather(*(worker(per) for _ in range(args.concurrency)))
    if profiler:
        profiler.disable()
    wall, cpu, main = time.perf_counter() - wall0, time.process_time() - cpu0, time.thread_time() - main0
    t1 = os.times()
    user, system = t1.user - t0.user, t1.system - t0.system
    total = per * args.concurrency
    collections = sum(s["collections"] for s in gc.get_stats()) - collections0
    print(
        f"{total} requests, concurrency {args.concurrency}: {wall / total * 1e3:.3f} ms wall/req, "
        f"{cpu / total * 1e3:.3f} ms CPU/req ({main / total * 1e3:.3f} on the event loop's thread; "
        f"user {user / total * 1e3:.3f}, kernel {system / total * 1e3:.3f}), "
        f"{total / wall:,.0f} req/s in process, {collections} GC collections"
    )
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile)


async def _breakdown(app: Any, token: str, n: int) -> None:
    """CPU per call of each part of GET /users/me, measured alone (event loop thread)."""
    from authgate.users.schemas import UserRead

    tokens = app.state.tokens
    reader = app.state.access
    claims = await tokens.decode_access(token)
    account = (await reader.resolve(claims)).account

    async def decode() -> None:
        await tokens.decode_access(token)

    async def resolve() -> None:
        await reader.resolve(claims)

    async def serialise() -> None:
        UserRead.model_validate(account).model_dump_json()

    async def live() -> None:
        await _request(app, "/live", [(b"host", b"bench")])

    async def unauthenticated() -> None:
        await _request(app, "/api/v1/users/me", [(b"host", b"bench")])

    for name, fn in (
        ("JWT verify (TokenService.decode_access; remembered after the first)", decode),
        (f"caller read ({type(reader).__name__}.resolve)", resolve),
        ("UserRead validate + JSON", serialise),
        ("GET /live through the whole app (middleware, routing)", live),
        ("GET /users/me without a token (-> 401 problem)", unauthenticated),
    ):
        for _ in range(100):
            await fn()
        cpu0 = time.thread_time()
        for _ in range(n):
            await fn()
        print(f"  {(time.thread_time() - cpu0) / n * 1e3:7.3f} ms CPU  {name}")


async def _request(app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> int:
    status = 0
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


if __name__ == "__main__":
    asyncio.run(main())
