"""Accepted means delivered: each fault on its own, against the real bot, the emulator and a real Redis.

Slack failing (5xx, a proxy's HTML error page, timeouts, a post that went through but was answered 500), a group
pointer left without its group, the consumer group lost with an emptied Redis, Redis down at start-up: every
alert accepted with 2xx ends up as exactly one Slack message, and /readyz says when a loop cannot make progress.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.emulator import SlackEmulator
from bot.platform.embedded_redis import EmbeddedRedis, RedisNotFound
from bot.shell.config import ChatopsConfig, parse_config
from tests.conftest import BotHarness, start_bot
from tests.state import state
from tests.waiting import eventually

TOKEN = "am-faults-token-9d2e"


def config_text(group_wait: str) -> str:
    return f"""
roles: {{admins: [U0DEMO], responders: [U0DEMO]}}
alerts:
  default_channel: "#alerts"
  group_wait: {group_wait}
  sources:
    alertmanager: {{token_env: TEST_AM_TOKEN}}
"""


@pytest.fixture(params=["0s", "1s"])
def bot_config(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ChatopsConfig:
    monkeypatch.setenv("TEST_AM_TOKEN", TOKEN)
    return parse_config(config_text(request.param), "faults.yaml")


def alertmanager_body(names: list[str], status: str = "firing") -> dict[str, Any]:
    """An Alertmanager webhook body with one alert per name (shaped as tests/fixtures/alertmanager-firing.json)."""
    sample = json.loads((Path(__file__).parent / "fixtures" / "alertmanager-firing.json").read_text())
    template = sample["alerts"][0]
    alerts = []
    for name in names:
        alert = json.loads(json.dumps(template))
        alert["labels"] = {**alert["labels"], "alertname": name}
        alert["annotations"] = {**alert.get("annotations", {}), "summary": f"{name} summary"}
        alert["fingerprint"] = f"fp-{name}"
        alert["status"] = status
        alerts.append(alert)
    return {**sample, "status": status, "alerts": alerts}


async def send(url: str, names: list[str]) -> int:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as session:
        try:
            async with session.post(
                f"{url}/alerts/alertmanager", json=alertmanager_body(names), headers=headers
            ) as response:
                return response.status
        except aiohttp.ClientError:
            return 0


def posts_naming(emulator: SlackEmulator, channel: str, name: str) -> list[dict[str, Any]]:
    """Top-level messages in `channel` whose content names alert `name`."""
    found = []
    for message in emulator.messages(channel):
        if message.get("thread_ts") and message.get("thread_ts") != message["ts"]:
            continue
        if name in json.dumps(message.get("blocks") or []) or name in (message.get("text") or ""):
            found.append(message)
    return found


async def idle(bot: BotHarness) -> bool:
    """Nothing left to deliver: no entry pending, no post, update, thread reply or page closing due."""
    store = state(bot).alerts
    if await store.backlog():
        return False
    for due in ("post_due", "update_due", "replies_due", "pages_due"):
        if await store.redis.zcard(store.k(due)):
            return False
    return True


async def assert_each_posted_once(bot: BotHarness, names: list[str]) -> None:
    await eventually(lambda: all(posts_naming(bot.emulator, "#alerts", n) for n in names), f"all of {names} posted")
    await eventually(lambda: idle(bot), "delivery idle")
    for name in names:
        assert len(posts_naming(bot.emulator, "#alerts", name)) == 1, f"{name} posted more than once"


@pytest.mark.parametrize("mode", ["500", "html502", "timeout", "applied_then_500"])
async def test_slack_failing_posts_delays_but_never_loses_or_doubles(bot: BotHarness, mode: str) -> None:
    """Before: a failing post ended the flush pass after the claim had removed the rest (lost), and with group_wait
    0s the retried entry treated the alert as stale (lost); applied-then-500 posted twice."""
    bot.emulator.faults.add(mode, methods=["chat.postMessage"], count=3, hold=4.0)
    names = [f"Fault{mode.replace('_', '')}N{i}" for i in range(6)]
    assert await send(bot.url, names) == 200
    await assert_each_posted_once(bot, names)


async def test_a_kill_between_post_and_record_does_not_post_twice(bot: BotHarness) -> None:
    """A post that reached Slack but was never recorded (the process died in between) is found in the channel's
    history by its metadata, not posted again."""
    pipeline = bot.deps.alerts
    bot.emulator.faults.add("applied_then_500", methods=["chat.postMessage"], count=1)
    assert await send(bot.url, ["KilledMidPost"]) == 200
    await eventually(lambda: posts_naming(bot.emulator, "#alerts", "KilledMidPost"), "the first (unrecorded) post")
    await eventually(lambda: idle(bot), "delivery idle")
    assert len(posts_naming(bot.emulator, "#alerts", "KilledMidPost")) == 1
    group_id = (await state(bot).alerts.firing_ids())[0]
    group = await pipeline.get(group_id)
    assert group is not None and group.message_ts == posts_naming(bot.emulator, "#alerts", "KilledMidPost")[0]["ts"]


async def test_an_open_pointer_without_its_group_does_not_block_the_key(bot: BotHarness) -> None:
    """Before: `open:` was SET NX before the group was written; a kill in between left a pointer to nothing, and
    every later alert with that key failed ten times and was dead-lettered while its webhook answered 200."""
    store = state(bot).alerts
    assert await send(bot.url, ["Orphaned"]) == 200
    await assert_each_posted_once(bot, ["Orphaned"])
    [group_id] = await store.firing_ids()
    await store.redis.delete(store.k("group", group_id))  # the pointer stays, as a kill between the writes left it
    assert await store.redis.keys(store.k("open") + ":*")
    assert await send(bot.url, ["Orphaned"]) == 200
    await eventually(lambda: len(posts_naming(bot.emulator, "#alerts", "Orphaned")) == 2, "a new group posted")
    await eventually(lambda: idle(bot), "delivery idle")
    assert await store.redis.xlen(store.k("dead")) == 0


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    """A Redis this test may stop, empty and restart."""
    try:
        server = await EmbeddedRedis(tmp_path / "redis").astart()
    except RedisNotFound as error:
        pytest.skip(str(error))
    yield server
    await server.astop()


async def ready(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/readyz") as response:
        return response.status, await response.json()


async def test_redis_back_empty_recreates_the_consumer_group(
    emulator: SlackEmulator,
    own_redis: EmbeddedRedis,
    bot_config: ChatopsConfig,
) -> None:
    """Before: the consumer group was created once at start-up; Redis back empty logged NOGROUP forever while
    /readyz said 200, and no alert accepted after that was ever posted."""
    bot, runner = await start_bot(emulator, own_redis.url, bot_config)
    try:
        assert await send(bot.url, ["BeforeWipe"]) == 200
        await eventually(lambda: posts_naming(emulator, "#alerts", "BeforeWipe"), "the alert before the wipe")
        own_redis.kill()
        await asyncio.to_thread(own_redis.start, same_port=True)  # the same port, no data
        names = ["AfterWipe1", "AfterWipe2"]
        await eventually(lambda: _accepted(bot.url, names), "the webhook accepted again after the wipe")
        await eventually(
            lambda: all(posts_naming(emulator, "#alerts", n) for n in names), "alerts after the wipe posted"
        )
        await eventually(lambda: _status_is(bot.url, 200), "/readyz back to 200")
    finally:
        await runner.cleanup()


async def test_redis_down_at_start_up_then_up_delivers_and_readyz_follows(
    emulator: SlackEmulator,
    own_redis: EmbeddedRedis,
    bot_config: ChatopsConfig,
) -> None:
    """Before: the consumer task died silently when Redis was down at start-up."""
    own_redis.kill()
    bot, runner = await start_bot(emulator, own_redis.url, bot_config)
    try:
        status, body = await ready(bot.url)
        assert status == 503 and any("redis" in reason for reason in body["reasons"])
        await asyncio.to_thread(own_redis.start, same_port=True)
        await eventually(lambda: _accepted(bot.url, ["AfterStartUp"]), "the webhook accepted once Redis is up")
        await eventually(lambda: posts_naming(emulator, "#alerts", "AfterStartUp"), "the alert posted")
        await eventually(lambda: _status_is(bot.url, 200), "/readyz 200 once every loop runs")
    finally:
        await runner.cleanup()


async def _accepted(url: str, names: list[str]) -> bool:
    return await send(url, names) == 200


async def _status_is(url: str, expected: int) -> bool:
    return (await ready(url))[0] == expected
