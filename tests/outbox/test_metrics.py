from __future__ import annotations

import re

from httpx import AsyncClient

from tests.factories import register


async def test_metrics_report_the_outbox_depth(client: AsyncClient) -> None:
    await register(client)
    await register(client)
    body = (await client.get("/metrics")).text
    match = re.search(r"^authgate_outbox_pending (\S+)$", body, re.MULTILINE)
    assert match is not None
    assert float(match.group(1)) == 2
