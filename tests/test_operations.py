"""Liveness, readiness (Redis down), and Prometheus metrics of the running bot."""

from __future__ import annotations

import aiohttp

from bot.emulator import SlackEmulator
from bot.platform.embedded_redis import EmbeddedRedis
from bot.shell.config import parse_config
from tests.conftest import DEFAULT_CONFIG, BotHarness, start_bot


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def test_healthz_and_readyz(bot: BotHarness) -> None:
    assert await _get(f"{bot.url}/healthz") == (200, '{"status": "ok"}')
    status, body = await _get(f"{bot.url}/readyz")
    assert status == 200 and "ready" in body


async def test_readyz_is_503_with_the_reason_when_redis_is_down(emulator: SlackEmulator, tmp_path) -> None:
    own_redis = EmbeddedRedis(tmp_path / "redis").start()
    harness, runner = await start_bot(emulator, own_redis.url, parse_config(DEFAULT_CONFIG))
    try:
        assert (await _get(f"{harness.url}/readyz"))[0] == 200
        own_redis.kill()
        status, body = await _get(f"{harness.url}/readyz")
        assert status == 503
        assert '"reasons": ["redis: ' in body
        assert (await _get(f"{harness.url}/healthz"))[0] == 200
        # Help needs no Redis (read-only commands keep no idempotency record) and still answers.
        answer = await emulator.send_command(command="/chatops", text="help", user_id="U0DEMO", channel_id="C0GENERAL")
        assert answer.status == 200 and answer.json is not None
        assert "chatops commands" in answer.json["text"]
        # A command that needs the store says why it cannot answer.
        answer = await emulator.send_command(command="/chatops", text="audit", user_id="U0DEMO", channel_id="C0GENERAL")
        assert answer.status == 200 and answer.json is not None
        assert "cannot reach its Redis store" in answer.json["text"] and "ref " in answer.json["text"]
        metrics = (await _get(f"{harness.url}/metrics"))[1]
        assert 'chatops_redis_errors_total{operation="ping"}' in metrics
    finally:
        await runner.cleanup()
        own_redis.stop()


async def test_metrics_count_requests_latency_and_slack_calls(bot: BotHarness) -> None:
    await bot.emulator.send_command(command="/chatops", text="help", user_id="U0DEMO", channel_id="C0GENERAL")
    await bot.emulator.send_command(command="/chatops", text="nope", user_id="U0DEMO", channel_id="C0GENERAL")
    await bot.emulator.send_command(command="/chatops", text="whoami", user_id="U0ALICE", channel_id="C0GENERAL")
    status, text = await _get(f"{bot.url}/metrics")
    assert status == 200
    assert 'chatops_requests_total{command="chatops",outcome="help"} 1.0' in text
    assert 'chatops_requests_total{command="chatops",outcome="usage_error"} 1.0' in text
    assert 'chatops_ack_latency_seconds_count{kind="command"} 3.0' in text
    assert 'chatops_slack_api_calls_total{method="usergroups.list"} 1.0' in text
    assert 'chatops_slack_api_calls_total{method="usergroups.users.list"}' in text
    assert "chatops_redis_errors_total" in text or "chatops_redis_errors" in text
