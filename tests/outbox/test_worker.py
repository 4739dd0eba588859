"""`authgate worker`: drains the outbox and purges old records in its own process; stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from authgate import migrate
from authgate.db import create_engine, create_sessionmaker, utcnow
from authgate.outbox.models import OutboxMessage
from authgate.outbox.service import Outbox
from tests.conftest import make_settings


async def _status(url: str, message_id: object) -> str | None:
    engine = create_engine(make_settings(url))
    try:
        async with create_sessionmaker(engine)() as session:
            return await session.scalar(select(OutboxMessage.status).where(OutboxMessage.id == message_id))
    finally:
        await engine.dispose()


async def test_worker_process_delivers_purges_and_exits_on_sigterm(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'worker.db'}"
    await asyncio.to_thread(migrate.upgrade, url)
    engine = create_engine(make_settings(url))
    async with create_sessionmaker(engine)() as session, session.begin():
        message = await Outbox(session).enqueue(
            channel="sms",
            template="phone_verification",
            to="+14155550123",
            context={"code": "123456", "expires_minutes": 10},
        )
        long_ago = utcnow() - timedelta(days=15)
        old = OutboxMessage(
            channel="sms",
            template="phone_verification",
            recipient="+14155550123",
            idempotency_key="delivered-long-ago",
            status="sent",
            created_at=long_ago,
            updated_at=long_ago,
            sent_at=long_ago,
        )
        session.add(old)
    await engine.dispose()

    env = {
        **os.environ,
        "AUTHGATE_ENV": "test",
        "AUTHGATE_DATABASE_URL": url,
        "AUTHGATE_SECRET_KEY": "worker-test-secret-key-0123456789abcdef",
        "AUTHGATE_OUTBOX__POLL_INTERVAL": "0.05",
        "AUTHGATE_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "authgate",
        "worker",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        status, old_status = None, None
        for _ in range(300):
            status, old_status = await _status(url, message.id), await _status(url, old.id)
            if status == "sent" and old_status is None:
                break
            await asyncio.sleep(0.05)
        assert status == "sent"
        assert old_status is None  # finished longer ago than its retention: purged by the worker
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
        assert process.returncode == 0, stderr.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
