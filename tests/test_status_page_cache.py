"""The public status page's cache (bot/status/public.py): readers are answered from the last page while the next
one is computed in the background, and the last page stays up while Redis is unreachable. Against a real Redis,
killed and started again with its data."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bot.platform.embedded_redis import EmbeddedRedis
from bot.platform.keys import Keys
from bot.platform.metrics import Metrics
from bot.platform.store import Store
from bot.status.config import PublicComponent, StatusPageSection
from bot.status.public import PublicStatus, PublicTarget
from bot.status.store import ProbeStore
from tests.waiting import eventually

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
TARGET = PublicTarget(name="web/production", service="web")


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis", persist=True).start()
    try:
        yield server
    finally:
        server.stop()


async def probe(probes: ProbeStore, state: str, *, good: bool) -> None:
    await probes.record(TARGET.name, NOW, good=good, latency_ms=20, detail={"at": NOW.isoformat(), "state": state})


async def settled(public: PublicStatus) -> bool:
    """No background computation running (white-box: the task the module starts)."""
    return public._refreshing is None


async def test_readers_get_the_last_page_while_the_next_is_computed_and_while_redis_is_down(
    own_redis: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    client = aioredis.Redis.from_url(own_redis.url, decode_responses=True, socket_timeout=1, socket_connect_timeout=1)
    probes = ProbeStore(Store(client, Keys("chatops"), Metrics()))
    section = StatusPageSection(components=(PublicComponent(name="Website", targets=("web",)),))
    public = PublicStatus(
        section=section,
        store=probes,
        targets=[TARGET],
        probe_interval=timedelta(minutes=1),
        incidents=None,
        clock=lambda: NOW,
    )
    try:
        await probe(probes, "up", good=True)
        first = await public.rendered()  # nothing cached yet: computed now
        assert first.page.components[0].state == "operational"
        assert await public.rendered() is first, "within `cache`, the same page"

        await probe(probes, "down", good=False)
        public._expires = 0  # `cache` has passed
        assert await public.rendered() is first, "the last page at once; the next is computed in the background"
        await eventually(lambda: settled(public), "the background computation done")
        second = await public.rendered()
        assert second is not first and second.page.components[0].state != "operational"

        own_redis.kill()
        public._expires = 0
        with caplog.at_level(logging.WARNING, logger="bot.status.public"):
            assert await public.rendered() is second, "Redis down: the last page"
            await eventually(lambda: settled(public), "the failed computation over")
        assert await public.rendered() is second, "and it stays up"
        assert "could not be refreshed" in caplog.text

        own_redis.start(same_port=True)  # with its data (append-only file)
        await probe(probes, "up", good=True)
        public._expires = 0
        await public.rendered()
        await eventually(lambda: settled(public), "the next computation done")
        third = await public.rendered()
        assert third is not second and third.page.components[0].state == "operational"
    finally:
        await client.aclose()
