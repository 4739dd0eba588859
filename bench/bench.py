"""Load benchmark: authgate (SQLite and PostgreSQL), a bare JWT ceiling and the fastapi-users peer.

Run with `make bench` (or `bench/run.sh`). Every server is one uvicorn worker on 127.0.0.1,
started fresh on an empty database; wrk (with the Lua scripts in `bench/lua/`) drives it:

* `me`: GET the current user with a bearer token, 64 connections;
* `login`: sign in, rotating over pre-registered accounts, 16 connections;
* `register`: create an account with a unique email every request, 16 connections.

The hash-bound login limit is cores ÷ the time of one Argon2id verify at authgate's default
parameters, measured here with pwdlib. The figures go to stdout as a Markdown table and into
`docs/benchmarks.md` between the `bench:begin` and `bench:end` markers (text outside them is kept).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LUA = BENCH / "lua"
PROJECT_BIN = Path(sys.executable).parent
PEER_VENV = BENCH / ".peer-venv"
PEER_REQUIREMENTS = [
    "fastapi-users[sqlalchemy]>=15,<16",
    "uvicorn[standard]>=0.30,<1",
    "aiosqlite>=0.20,<1",
    "asyncpg>=0.30,<1",
]
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
PASSWORD = "Bench-horse-battery-staple-2026"
SECRET_KEY = secrets.token_urlsafe(48)
ME_CONNECTIONS, LOGIN_CONNECTIONS, REGISTER_CONNECTIONS = 64, 16, 16


@dataclass(frozen=True)
class Target:
    name: str
    label: str
    kind: str  # authgate | peer | ceiling
    db: str | None  # sqlite | postgresql | None
    me_path: str
    login_path: str | None = None
    register_path: str | None = None
    login_format: str = "json"

    @property
    def scenarios(self) -> list[str]:
        return ["me"] + (["login"] if self.login_path else []) + (["register"] if self.register_path else [])


TARGETS = {
    t.name: t
    for t in (
        Target(
            "ceiling",
            "bare FastAPI + PyJWT / + one Argon2id verify (ceilings)",
            "ceiling",
            None,
            "/api/v1/users/me",
            "/api/v1/auth/login",
        ),
        Target(
            "authgate-sqlite",
            "authgate, SQLite",
            "authgate",
            "sqlite",
            "/api/v1/users/me",
            "/api/v1/auth/login",
            "/api/v1/auth/register",
        ),
        Target(
            "authgate-postgresql",
            "authgate, PostgreSQL",
            "authgate",
            "postgresql",
            "/api/v1/users/me",
            "/api/v1/auth/login",
            "/api/v1/auth/register",
        ),
        Target(
            "peer-sqlite",
            "fastapi-users example, SQLite",
            "peer",
            "sqlite",
            "/users/me",
            "/auth/jwt/login",
            "/auth/register",
            "form",
        ),
        Target(
            "peer-postgresql",
            "fastapi-users example, PostgreSQL",
            "peer",
            "postgresql",
            "/users/me",
            "/auth/jwt/login",
            "/auth/register",
            "form",
        ),
    )
}


@dataclass
class Result:
    target: Target
    scenario: str
    connections: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    server_cpu: float  # server process CPU seconds per wall second (1.0 = one core busy)
    command: str

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        return self.server_cpu * self.seconds * 1000 / self.requests if self.requests else 0.0

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


@dataclass
class Run:
    args: argparse.Namespace
    workdir: Path
    results: list[Result] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    argon2_seconds: float = 0.0
    argon2_cpu_seconds: float = 0.0
    argon2_parallel_rate: float = 0.0  # verifies/s with every core hashing and nothing else running
    postgres_version: str = "-"
    peer_versions: str = "-"
    load: tuple[float, float] = (0.0, 0.0)


# --- machine ---------------------------------------------------------------------------------


def _first_match(path: str, pattern: str) -> str | None:
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    match = re.search(pattern, text, re.MULTILINE)
    return match.group(1).strip() if match else None


def machine() -> dict[str, str]:
    mem_kb = _first_match("/proc/meminfo", r"^MemTotal:\s+(\d+)")
    os_name = _first_match("/etc/os-release", r'^PRETTY_NAME="?([^"\n]+)')
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return {
        "CPU": _first_match("/proc/cpuinfo", r"^model name\s*:\s*(.+)$") or platform.processor() or "?",
        "cores": str(os.cpu_count()),
        "RAM": f"{int(mem_kb) / 1024 / 1024:.1f} GiB" if mem_kb else "?",
        "OS": f"{os_name or platform.system()} (kernel {platform.release()})",
        "Python": platform.python_version(),
        "wrk": (wrk.stdout + wrk.stderr).split("Copyright")[0].strip() or "?",
    }


def _argon2_hasher() -> Any:
    from pwdlib.hashers.argon2 import Argon2Hasher

    from authgate.config import PasswordPolicy

    policy = PasswordPolicy()
    return Argon2Hasher(
        memory_cost=policy.argon2_memory_cost,
        time_cost=policy.argon2_time_cost,
        parallelism=policy.argon2_parallelism,
    )


def measure_argon2_parallel(samples: int) -> float:
    """Verifies per second with one thread per core verifying at once, nothing else running.

    The most any login endpoint could reach on this machine: the verifies share memory bandwidth
    and the last-level cache (each holds 19 MiB), so together they run slower than one alone.
    """
    import threading

    hasher = _argon2_hasher()
    digest = hasher.hash(PASSWORD)
    cores = os.cpu_count() or 1
    start = threading.Barrier(cores + 1)

    def verify_many() -> None:
        start.wait()
        for _ in range(samples):
            hasher.verify(PASSWORD, digest)

    threads = [threading.Thread(target=verify_many) for _ in range(cores)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return cores * samples / (time.perf_counter() - began)


def measure_argon2(samples: int) -> tuple[float, float]:
    """Median wall and CPU time of one Argon2id verify at authgate's default parameters.

    The limit uses the CPU time: on a machine shared with other work the wall time grows, the
    work per verify does not.
    """
    hasher = _argon2_hasher()
    digest = hasher.hash(PASSWORD)
    hasher.verify(PASSWORD, digest)  # warm up the allocator
    walls, cpus = [], []
    for _ in range(samples):
        w0, c0 = time.perf_counter(), time.thread_time()
        if not hasher.verify(PASSWORD, digest):
            raise RuntimeError("argon2 verify failed")
        walls.append(time.perf_counter() - w0)
        cpus.append(time.thread_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


# --- servers ---------------------------------------------------------------------------------


def _log(message: str) -> None:
    print(f"[bench {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def ensure_peer_venv() -> str:
    python = PEER_VENV / "bin" / "python"
    if not (PEER_VENV / "bin" / "uvicorn").exists():
        _log(f"creating {PEER_VENV.relative_to(ROOT)} with {' '.join(PEER_REQUIREMENTS)}")
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                *PEER_REQUIREMENTS,
            ],
            check=True,
        )
    out = subprocess.run(
        [
            str(python),
            "-c",
            "import fastapi_users, fastapi, pwdlib; "
            "print(f'fastapi-users {fastapi_users.__version__}, fastapi {fastapi.__version__}')",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def _sync_pg_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _pg(url: str, *statements: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(_sync_pg_url(url))
    try:
        for statement in statements:
            await conn.execute(statement)
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


async def _courier_backlog(server: Server) -> int:
    """Messages authgate's courier still has to deliver (pending or being sent)."""
    query = "SELECT count(*) FROM outbox_message WHERE status IN ('pending', 'sending')"
    if server.target.db == "postgresql":
        import asyncpg

        conn = await asyncpg.connect(_sync_pg_url(server.run.args.pg_url))
        try:
            return int(await conn.fetchval(query))
        finally:
            await conn.close()
    with sqlite3.connect(server.dir / "db.sqlite") as conn:
        return int(conn.execute(query).fetchone()[0])


def wait_for_courier(server: Server, timeout: float = 120.0) -> None:
    """Let the in-process courier deliver the mail the previous phase queued (sign-up links,
    new-device alerts), so each scenario measures its own requests, not the backlog of the last."""
    if server.target.kind != "authgate" or server.target.db != "sqlite":
        return  # on PostgreSQL a production server leaves delivery to `authgate worker`
    deadline = time.monotonic() + timeout
    while (left := asyncio.run(_courier_backlog(server))) and time.monotonic() < deadline:
        time.sleep(0.5)
    if left:
        _log(f"{server.target.name}: {left} messages still queued after {timeout:.0f} s")


def reset_postgres(url: str) -> str:
    """Drop everything in the benchmark database's public schema; returns the server version."""
    return asyncio.run(_pg(url, "DROP SCHEMA IF EXISTS public CASCADE", "CREATE SCHEMA public"))


class Server:
    def __init__(self, target: Target, port: int, run: Run) -> None:
        self.target, self.port, self.run = target, port, run
        self.dir = run.workdir / target.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHGATE_", "PEER_"))}
        db_url = (
            f"sqlite+aiosqlite:///{self.dir / 'db.sqlite'}"
            if self.target.db == "sqlite"
            else self.run.args.pg_url
        )
        if self.target.kind == "authgate":
            if self.run.args.authgate_src:  # another checkout's code, e.g. for a before/after comparison
                env["PYTHONPATH"] = str(Path(self.run.args.authgate_src).resolve())
            env.update(
                AUTHGATE_ENV="production",
                AUTHGATE_SECRET_KEY=SECRET_KEY,
                AUTHGATE_DATABASE_URL=db_url,
                AUTHGATE_RATE_LIMIT_ENABLED="false",
                AUTHGATE_LOG_LEVEL="WARNING",
                AUTHGATE_PUBLIC_URL=self.base_url,
            )
        elif self.target.kind == "peer":
            env.update(PEER_DATABASE_URL=db_url, PEER_SECRET=SECRET_KEY)
        else:
            env["BENCH_CEILING_PUBLIC_KEY"] = str(self.run.workdir / "ceiling-public.pem")
            env["BENCH_PASSWORD"] = PASSWORD
        return env

    def _command(self) -> list[str]:
        common = [
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        if self.target.kind == "authgate":  # as deployed: one `authgate serve` process is one worker
            return [str(PROJECT_BIN / "authgate"), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if self.target.kind == "peer":
            return [str(PEER_VENV / "bin" / "uvicorn"), "app:app", "--app-dir", str(BENCH / "peer"), *common]
        return [str(PROJECT_BIN / "uvicorn"), "ceiling:app", "--app-dir", str(BENCH), *common]

    def prepare(self) -> None:
        if self.target.db == "postgresql":
            self.run.postgres_version = reset_postgres(self.run.args.pg_url)
        if self.target.kind == "authgate":
            subprocess.run(
                [str(PROJECT_BIN / "authgate"), "migrate", "upgrade"],
                env=self._env(),
                cwd=self.dir,
                check=True,
                capture_output=True,
            )

    def start(self) -> None:
        command = self._command()
        self.run.commands.append(f"{self.target.name}: {' '.join(_short(c) for c in command)}")
        with self.log_path.open("wb") as log:
            # cwd is the server's own directory, so no `.env` of the checkout leaks in.
            self.proc = subprocess.Popen(
                command, env=self._env(), cwd=self.dir, stdout=log, stderr=subprocess.STDOUT
            )
        health = "/docs" if self.target.kind == "peer" else "/health"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.target.name} exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.base_url + health, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.target.name} did not become healthy:\n{self.log_path.read_text()[-3000:]}")

    def cpu_seconds(self) -> float:
        if self.proc is None:
            return 0.0
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _short(part: str) -> str:
    return part.replace(str(ROOT) + "/", "")


# --- seeding ---------------------------------------------------------------------------------


async def _seed(server: Server, users: int, tokens: int) -> tuple[list[str], list[str]]:
    """Register `users` accounts and sign `tokens` of them in; returns (emails, access tokens)."""
    target = server.target
    emails = [f"user{i}-{uuid.uuid4().hex[:8]}@bench.example.com" for i in range(users)]
    limit = asyncio.Semaphore(4)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:

        async def register(email: str) -> None:
            async with limit:
                r = await client.post(target.register_path or "", json={"email": email, "password": PASSWORD})
                if r.status_code != 201:
                    raise RuntimeError(f"seeding {target.name}: register {r.status_code} {r.text[:300]}")

        async def login(email: str) -> str:
            async with limit:
                if target.login_format == "form":
                    r = await client.post(
                        target.login_path or "", data={"username": email, "password": PASSWORD}
                    )
                else:
                    r = await client.post(
                        target.login_path or "", json={"email": email, "password": PASSWORD}
                    )
                if r.status_code != 200:
                    raise RuntimeError(f"seeding {target.name}: login {r.status_code} {r.text[:300]}")
                return str(r.json()["access_token"])

        await asyncio.gather(*(register(e) for e in emails))
        access = await asyncio.gather(*(login(e) for e in emails[:tokens]))
        check = await client.get(target.me_path, headers={"Authorization": f"Bearer {access[0]}"})
        if check.status_code != 200:
            raise RuntimeError(f"seeding {target.name}: me {check.status_code} {check.text[:300]}")
    return emails, list(access)


def ceiling_tokens(workdir: Path, count: int) -> list[str]:
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    (workdir / "ceiling-public.pem").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    now = datetime.now(UTC)
    claims = {
        "iss": "http://bench.example",
        "aud": "bench",
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(hours=1),
    }
    return [jwt.encode({**claims, "sub": str(uuid.uuid4())}, key, algorithm="ES256") for _ in range(count)]


# --- load ------------------------------------------------------------------------------------


def wrk(server: Server, scenario: str, seconds: float, env: dict[str, str], *, record: bool) -> Result:
    target = server.target
    path, connections, script = {
        "me": (target.me_path, ME_CONNECTIONS, "me.lua"),
        "login": (target.login_path, LOGIN_CONNECTIONS, "login.lua"),
        "register": (target.register_path, REGISTER_CONNECTIONS, "register.lua"),
    }[scenario]
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA / script),
        server.base_url + str(path),
    ]
    cpu0, wall0 = server.cpu_seconds(), time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env}, check=False)
    cpu = (server.cpu_seconds() - cpu0) / max(1e-9, time.monotonic() - wall0)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed for {target.name}/{scenario}:\n{proc.stdout}\n{proc.stderr}")
    data: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    shown_env = " ".join(f"{k}={_short(v)}" for k, v in env.items() if k != "BENCH_LUA_DIR")
    result = Result(
        target=target,
        scenario=scenario,
        connections=connections,
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        non_2xx=int(data["status"]),
        socket_errors=sum(int(data[k]) for k in ("connect", "read", "write", "timeout")),
        server_cpu=cpu,
        command=f"{shown_env} {' '.join(_short(c) for c in command)}",
    )
    if record:
        _log(
            f"{target.name:20} {scenario:8} {result.rps:8.1f} req/s  p50 {result.p50_ms:7.1f} ms  "
            f"p99 {result.p99_ms:7.1f} ms  errors {result.errors}  server CPU {cpu:.2f}"
        )
    return result


def bench_target(run: Run, target: Target, port: int) -> None:
    args = run.args
    server = Server(target, port, run)
    _log(f"{target.name}: preparing on port {port}")
    server.prepare()
    if target.kind == "ceiling":  # the key pair exists before the server reads its public half
        tokens = ceiling_tokens(run.workdir, args.tokens)
        emails = [f"user{i}@bench.example.com" for i in range(args.users)]  # any: one hash for all
    server.start()
    try:
        files = server.dir
        if target.kind != "ceiling":
            emails, tokens = asyncio.run(_seed(server, args.users, args.tokens))
        (files / "tokens.txt").write_text("\n".join(tokens) + "\n")
        (files / "users.txt").write_text("\n".join(emails) + "\n")
        env = {
            "BENCH_LUA_DIR": str(LUA),
            "BENCH_TOKENS": str(files / "tokens.txt"),
            "BENCH_USERS": str(files / "users.txt"),
            "BENCH_PASSWORD": PASSWORD,
            "BENCH_FORMAT": target.login_format,
        }
        wanted = {
            "me": ("BENCH_LUA_DIR", "BENCH_TOKENS"),
            "login": ("BENCH_LUA_DIR", "BENCH_USERS", "BENCH_PASSWORD", "BENCH_FORMAT"),
            "register": ("BENCH_LUA_DIR", "BENCH_PASSWORD"),
        }
        for scenario in target.scenarios:
            if scenario not in args.scenarios:
                continue
            scenario_env = {k: env[k] for k in wanted[scenario]}
            wait_for_courier(server)
            if args.warmup > 0:
                wrk(server, scenario, args.warmup, {**scenario_env, "BENCH_RUN": "warmup"}, record=False)
            if scenario == "register":
                scenario_env["BENCH_RUN"] = "run"
            result = wrk(server, scenario, args.duration, scenario_env, record=True)
            run.results.append(result)
    finally:
        server.stop()


# --- report ----------------------------------------------------------------------------------


def _find(run: Run, name: str, scenario: str) -> Result | None:
    return next((r for r in run.results if r.target.name == name and r.scenario == scenario), None)


def _mark(ok: bool) -> str:
    return "**pass**" if ok else "**FAIL**"


def results_table(run: Run) -> str:
    lines = [
        "| server | scenario | connections | req/s | p50 ms | p99 ms | max ms | errors | server CPU "
        "| CPU ms/req |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in run.results:
        errors = f"{r.errors}" + (f" ({r.non_2xx} non-2xx)" if r.non_2xx and r.socket_errors else "")
        lines.append(
            f"| {r.target.label} | {r.scenario} | {r.connections} | {r.rps:,.0f} | {r.p50_ms:.1f} | "
            f"{r.p99_ms:.1f} | {r.max_ms:.0f} | {errors} | {r.server_cpu:.2f} | {r.cpu_ms_per_request:.2f} |"
        )
    return "\n".join(lines)


def hash_limit(run: Run) -> float:
    return (os.cpu_count() or 1) / run.argon2_cpu_seconds


def targets_table(run: Run) -> tuple[str, bool]:
    rows: list[str] = ["| target | measured | goal | result |", "|---|---|---|---|"]
    all_ok = True

    def add(what: str, measured: str, goal: str, ok: bool) -> None:
        nonlocal all_ok
        all_ok = all_ok and ok
        rows.append(f"| {what} | {measured} | {goal} | {_mark(ok)} |")

    ceiling = _find(run, "ceiling", "me")
    login_ceiling = _find(run, "ceiling", "login")
    limit = hash_limit(run)
    for db in ("sqlite", "postgresql"):
        me = _find(run, f"authgate-{db}", "me")
        if me is not None:
            peer = _find(run, f"peer-{db}", "me") or _find(run, "peer-sqlite", "me")
            if peer is not None:
                add(
                    f"GET /users/me ({db}) vs fastapi-users ({peer.target.db})",
                    f"{me.rps:,.0f} / {peer.rps:,.0f} = {me.rps / peer.rps:.2f}×",
                    "≥ 2×",
                    me.rps >= 2 * peer.rps,
                )
            if ceiling is not None:
                add(
                    f"GET /users/me ({db}) vs bare ceiling",
                    f"{me.rps:,.0f} / {ceiling.rps:,.0f} = {me.rps / ceiling.rps:.0%}",
                    "≥ 40 %",
                    me.rps >= 0.4 * ceiling.rps,
                )
            add(
                f"GET /users/me ({db}) p99 at 64 connections",
                f"{me.p99_ms:.1f} ms",
                "< 100 ms",
                me.p99_ms < 100,
            )
            add(f"GET /users/me ({db}) errors", str(me.errors), "0", me.errors == 0)
        login = _find(run, f"authgate-{db}", "login")
        if login is not None:
            add(
                f"login ({db}) vs hash-bound limit",
                f"{login.rps:,.1f} / {limit:,.1f} = {login.rps / limit:.0%}",
                "≥ 90 %",
                login.rps >= 0.9 * limit,
            )
            if login_ceiling is not None:
                rows.append(
                    f"| login ({db}) vs the login ceiling (hash + JWT only; for reference) | "
                    f"{login.rps:,.1f} / {login_ceiling.rps:,.1f} = {login.rps / login_ceiling.rps:.0%} | - | - |"
                )
            add(
                f"login ({db}) p99 at 16 connections",
                f"{login.p99_ms:.0f} ms",
                "< 1000 ms",
                login.p99_ms < 1000,
            )
            add(f"login ({db}) errors", str(login.errors), "0", login.errors == 0)
    if run.argon2_parallel_rate:
        rows.append(
            f"| hashing alone, one thread per core, vs hash-bound limit (for reference) | "
            f"{run.argon2_parallel_rate:,.1f} / {limit:,.1f} = {run.argon2_parallel_rate / limit:.0%} | - | - |"
        )
    if login_ceiling is not None:
        rows.append(
            f"| login ceiling (hash + JWT only) vs hash-bound limit (for reference) | "
            f"{login_ceiling.rps:,.1f} / {limit:,.1f} = {login_ceiling.rps / limit:.0%} | - | - |"
        )
    register = _find(run, "authgate-sqlite", "register")
    if register is not None:
        add(
            "register (sqlite) errors",
            f"{register.errors} of {register.requests:,}",
            "0",
            register.errors == 0,
        )
    return "\n".join(rows), all_ok


def report(run: Run, info: dict[str, str]) -> str:
    targets, all_ok = targets_table(run)
    cores = os.cpu_count() or 1
    machine_rows = "\n".join(f"| {k} | {v} |" for k, v in info.items())
    commands = "\n".join(run.commands)
    wrk_commands = "\n".join(f"{r.target.name}/{r.scenario}: {r.command}" for r in run.results)
    when = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    return f"""{BEGIN}
_Generated by `make bench` on {when}; {run.args.duration:g} s per scenario after a {run.args.warmup:g} s
warm-up, one uvicorn worker per server, wrk on the same machine. Load average (1 min) when the run
started: {run.load[0]:.2f}, when it ended: {run.load[1]:.2f}._

### Machine

| | |
|---|---|
{machine_rows}
| PostgreSQL | {run.postgres_version} |
| peer | {run.peer_versions} (pwdlib's default Argon2id: m=64 MiB, t=3, p=4) |

### Hash-bound login limit

One Argon2id verify at authgate's defaults (m=19 MiB, t=2, p=1) with pwdlib, median of
{run.args.argon2_samples}: **{run.argon2_cpu_seconds * 1000:.1f} ms of CPU**
({run.argon2_seconds * 1000:.1f} ms wall).
Limit = {cores} cores ÷ {run.argon2_cpu_seconds * 1000:.1f} ms = **{hash_limit(run):,.1f} logins/s**.
With {cores} threads verifying at once and nothing else running (no HTTP, no load generator),
this machine does **{run.argon2_parallel_rate:,.1f} verifies/s**
({run.argon2_parallel_rate / hash_limit(run):.0%} of the limit): parallel verifies share the memory
bandwidth and the last-level cache, so no login endpoint can pass that figure here.

### Results

{results_table(run)}

`errors` counts non-2xx answers plus socket errors and timeouts (10 s). `server CPU` is the
server process's CPU time per second of wall time (1.00 = one core; hashing threads can add more);
`CPU ms/req` is that CPU time divided by the requests served, the figure least disturbed by other
load on the machine.

### Targets

{targets}

Overall: {"all targets met" if all_ok else "some targets missed (see above)"}.

### Commands

Servers (each in its own directory, environment as set by `bench/bench.py`):

```
{commands}
```

Load (each preceded by an unrecorded warm-up of the same command):

```
{wrk_commands}
```
{END}"""


def write_doc(section: str) -> None:
    if DOC.exists() and BEGIN in (text := DOC.read_text()) and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        DOC.write_text(head + section + tail)
    else:
        DOC.write_text(f"# Benchmarks\n\nReproduce with `make bench`.\n\n{section}\n")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=float(os.environ.get("BENCH_DURATION", 15)))
    parser.add_argument("--warmup", type=float, default=float(os.environ.get("BENCH_WARMUP", 3)))
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/bench"),
        help="an expendable database: its public schema is dropped before each PostgreSQL server",
    )
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("BENCH_PORT", 8201)), help="first port"
    )
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--scenarios", nargs="+", default=["me", "login", "register"])
    parser.add_argument("--users", type=int, default=100, help="accounts registered per server for login")
    parser.add_argument("--tokens", type=int, default=16, help="access tokens rotated over by `me`")
    parser.add_argument("--argon2-samples", type=int, default=30)
    parser.add_argument(
        "--authgate-src",
        default=None,
        help="serve authgate from this `src` directory instead of the installed one",
    )
    parser.add_argument("--no-doc", action="store_true", help=f"do not write {DOC.relative_to(ROOT)}")
    args = parser.parse_args()

    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    info = machine()
    workdir = Path(tempfile.mkdtemp(prefix="authgate-bench-"))
    run = Run(args=args, workdir=workdir)
    started = time.monotonic()
    load_at_start = os.getloadavg()[0]
    try:
        _log(f"measuring Argon2id ({args.argon2_samples} verifies)")
        run.argon2_seconds, run.argon2_cpu_seconds = measure_argon2(args.argon2_samples)
        _log(
            f"one verify: {run.argon2_cpu_seconds * 1000:.1f} ms CPU "
            f"({run.argon2_seconds * 1000:.1f} ms wall); limit {hash_limit(run):.1f}/s"
        )
        run.argon2_parallel_rate = measure_argon2_parallel(args.argon2_samples)
        _log(
            f"{os.cpu_count() or 1} threads verifying at once: {run.argon2_parallel_rate:.1f}/s "
            f"({run.argon2_parallel_rate / hash_limit(run):.0%} of the limit)"
        )
        if any(TARGETS[name].kind == "peer" for name in args.targets):
            run.peer_versions = ensure_peer_venv()
        for offset, name in enumerate(args.targets):
            bench_target(run, TARGETS[name], args.port + offset)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    run.load = (load_at_start, os.getloadavg()[0])
    section = report(run, info)
    print(results_table(run))
    print()
    print(targets_table(run)[0])
    if not args.no_doc:
        write_doc(section)
        _log(f"wrote {DOC.relative_to(ROOT)}")
    _log(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
