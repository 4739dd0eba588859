"""A real uvicorn server in its own process: migrated temp SQLite, plain HTTP, cheap hashing.

For what only a real server shows (cookies in a browser, HEAD answered without a body).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from authgate import migrate
from tests.conftest import TEST_SECRET


def _spare_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_ready(base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Poll /health until the server answers; a server that exits or never answers fails the test."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"uvicorn exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"uvicorn did not become ready:\n{log_path.read_text()}")


@contextmanager
def live_server(workdir: Path) -> Iterator[str]:
    """Serve authgate from `workdir` until the block ends; yields the base URL."""
    url = f"sqlite+aiosqlite:///{workdir / 'authgate.db'}"
    migrate.upgrade(url)
    port = _spare_port()
    env = {
        **os.environ,
        "AUTHGATE_ENV": "test",
        "AUTHGATE_DATABASE_URL": url,
        "AUTHGATE_SECRET_KEY": TEST_SECRET,
        "AUTHGATE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "AUTHGATE_COOKIE_SECURE": "false",
        "AUTHGATE_PASSWORD__ARGON2_MEMORY_COST": "1024",
        "AUTHGATE_PASSWORD__ARGON2_TIME_COST": "1",
        "AUTHGATE_UPLOAD_DIR": str(workdir / "uploads"),
        "AUTHGATE_LOG_LEVEL": "WARNING",
    }
    log_path = workdir / "server.log"
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "authgate.main:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(base_url, process, log_path)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
