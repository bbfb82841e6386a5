"""The Redis connection pool under a burst (cause 8): a bounded, blocking pool makes a burst of webhooks wait
for a connection instead of opening one per request and failing when Redis refuses more clients."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from bot.emulator import SlackEmulator
from bot.platform.embedded_redis import free_port
from bot.shell.config import parse_config
from tests.conftest import start_bot
from tests.redis_servers import RedisProcess, require_binaries, server_args
from tests.state import state

TOKEN = "am-pool-token-7c2e"
FIRING = (Path(__file__).parent / "fixtures" / "alertmanager-firing.json").read_text()
BURST = 500


@pytest.fixture
def small_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server of our own that accepts at most 40 clients, as a managed Redis caps them."""
    binary = require_binaries("redis-server")["redis-server"]
    server = RedisProcess(binary, free_port(), tmp_path / "redis", [])
    server.start_with(lambda port, d: server_args(port, d, "--maxclients", "40"))
    try:
        yield f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.stop()


async def test_a_burst_of_webhooks_waits_for_the_pool_and_none_gets_503(
    emulator: SlackEmulator,
    small_redis: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_AM_TOKEN", TOKEN)
    config = parse_config(
        """
redis: {max_connections: 8, pool_timeout: 30s}
alerts:
  default_channel: "#alerts"
  group_wait: 0s
  sources: {alertmanager: {token_env: TEST_AM_TOKEN}}
""",
        "pool.yaml",
    )
    bot, runner = await start_bot(emulator, small_redis, config)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

            async def post(index: int) -> int:
                body = json.loads(FIRING)
                body["alerts"][0]["labels"]["alertname"] = f"Burst{index}"
                async with session.post(
                    f"{bot.url}/alerts/alertmanager",
                    data=json.dumps(body),
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=120),
                ) as response:
                    return response.status

            statuses = await asyncio.gather(*(post(i) for i in range(BURST)))
        counts = {status: statuses.count(status) for status in set(statuses)}
        assert counts == {200: BURST}, f"answers by status: {counts}"
        assert await state(bot).alerts.redis.xlen(state(bot).alerts.k("stream")) == BURST
    finally:
        await runner.cleanup()
