"""Alerts end to end: Alertmanager's real webhook bodies into `POST /alerts/alertmanager`, the Redis Stream and its
consumer, routing and dedup into one Slack message per lifecycle, buttons and /alerts through signed requests."""

from __future__ import annotations

import asyncio
import copy
import html
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.shell.config import ChatopsConfig, parse_config
from tests.conftest import BotHarness
from tests.state import state
from tests.waiting import eventually

TOKEN = "am-test-token-4f1c"
SAMPLES = Path(__file__).parent / "fixtures"
CONFIG = """
roles: {admins: [U0DEMO], responders: [U0BOB, U0DEMO, U0ALICE]}
alerts:
  default_channel: "#alerts"
  group_by: [alertname, service]
  group_wait: 0s
  sources:
    alertmanager: {token_env: TEST_AM_TOKEN}
  routes:
    - {match: {severity: critical}, channel: "#incidents", escalation: default, continue: true}
    - {match_re: {service: "web|api"}, channel: "#deploys"}
oncall:
  escalation_policies:
    default: {steps: [{notify: "#incidents", after: 1h}]}
"""


@pytest.fixture
def bot_config(monkeypatch: pytest.MonkeyPatch) -> ChatopsConfig:
    monkeypatch.setenv("TEST_AM_TOKEN", TOKEN)
    return parse_config(CONFIG, "alerts.yaml")


def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / f"alertmanager-{name}.json").read_text())


async def send(
    bot: BotHarness, body: Any, token: str | None = TOKEN, raw: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json", "User-Agent": "Alertmanager/0.25.0"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else json.dumps(body)
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{bot.url}/alerts/alertmanager", data=data, headers=headers) as response,
    ):
        return response.status, await response.json()


async def settle(bot: BotHarness) -> None:
    """Waits until every accepted alert is delivered and no message post or update is left due (the bot says so:
    an empty backlog alone is also what an entry not read yet looks like)."""
    await bot.idle()


def top_level(bot: BotHarness, channel: str) -> list[dict[str, Any]]:
    return [m for m in bot.emulator.messages(channel) if not m.get("thread_ts") or m.get("thread_ts") == m["ts"]]


async def test_unauthenticated_or_malformed_bodies_store_nothing(bot: BotHarness) -> None:
    assert await send(bot, sample("firing"), token=None) == (401, {"error": "missing bearer token"})
    status, body = await send(bot, sample("firing"), token="wrong")
    assert status == 401 and "bad bearer token" in body["error"]
    status, body = await send(bot, None, raw=b"{not json")
    assert status == 400 and "not JSON" in body["error"]
    stream = state(bot).alerts.k("stream")
    assert await state(bot).alerts.redis.xlen(stream) == 0


async def test_firing_dedup_resolve_and_refire_are_one_message_per_lifecycle(bot: BotHarness) -> None:
    status, body = await send(bot, sample("firing"))
    assert status == 200 and body["accepted"] == 1
    await settle(bot)
    incidents, deploys = top_level(bot, "#incidents"), top_level(bot, "#deploys")
    assert len(incidents) == 1 and len(deploys) == 1 and top_level(bot, "#alerts") == []
    assert "alerts.ack" in json.dumps(incidents[0]["blocks"])

    await send(bot, sample("firing"))
    await settle(bot)
    assert len(top_level(bot, "#incidents")) == 1
    assert "Notifications" in json.dumps(top_level(bot, "#incidents")[0]["blocks"])

    await send(bot, sample("resolved"))
    await settle(bot)
    message = top_level(bot, "#incidents")[0]
    assert "RESOLVED" in message["text"]
    replies = [
        m
        for m in bot.emulator.messages("#incidents")
        if m.get("thread_ts") == message["ts"] and m["ts"] != message["ts"]
    ]
    assert any("resolved (fired for" in r["text"] for r in replies)

    await send(bot, sample("firing"))
    await settle(bot)
    assert len(top_level(bot, "#incidents")) == 2


async def test_grouping_turns_a_burst_into_one_message(bot: BotHarness) -> None:
    body = sample("firing")
    template = body["alerts"][0]
    body["alerts"] = []
    for n in range(30):
        alert = copy.deepcopy(template)
        alert["labels"]["instance"] = f"host-{n}"
        alert["fingerprint"] = f"fp{n:04d}"
        body["alerts"].append(alert)
    assert (await send(bot, body))[0] == 200
    await settle(bot)
    messages = top_level(bot, "#incidents")
    assert len(messages) == 1
    assert "30 of 30 firing" in json.dumps(messages[0]["blocks"])


async def test_acknowledge_button_is_recorded_once_and_checked(bot: BotHarness) -> None:
    await send(bot, sample("firing"))
    await settle(bot)
    message = top_level(bot, "#incidents")[0]
    denied = await bot.emulator.send_block_action(
        channel="#incidents", message_ts=message["ts"], action_id="alerts.ack", user_id="U0CAROL", value=None
    )
    assert denied.status == 200
    clicks = [
        bot.emulator.send_block_action(
            channel="#incidents", message_ts=message["ts"], action_id="alerts.ack", user_id="U0BOB"
        )
        for _ in range(3)
    ]
    await asyncio.gather(*clicks)
    await eventually(bot.deps.alerts.acks, "the acknowledgement to be recorded")
    await bot.idle()  # every click handled: a second acknowledgement would be recorded by now
    acks = await bot.deps.alerts.acks()
    assert [(a["user"], a["via"]) for a in acks] == [("U0BOB", "button")]
    assert float(acks[0]["seconds_to_ack"]) >= 0
    updated = bot.emulator.find_message("#incidents", message["ts"])
    assert "Acknowledged" in json.dumps(updated["blocks"]) and "alerts.unack" in json.dumps(updated["blocks"])
    refused = [m for m in bot.emulator.messages("#incidents") if m.get("ephemeral_to") == "U0CAROL"]
    assert refused and "`responders` role" in html.unescape(refused[-1]["text"])


async def test_commands_list_silence_and_stats(bot: BotHarness) -> None:
    await send(bot, sample("firing"))
    await settle(bot)
    listed = await bot.emulator.send_command(
        command="/alerts", text="list severity=critical", user_id="U0BOB", channel_id="C0GENERAL"
    )
    assert listed.json is not None and "Test" in listed.json["text"]
    group_id = listed.json["text"].split("`")[1]
    acked = await bot.emulator.send_command(
        command="/alerts", text=f"ack {group_id}", user_id="U0BOB", channel_id="C0GENERAL"
    )
    assert acked.json is not None and "Acknowledged" in acked.json["text"]
    again = await bot.emulator.send_command(
        command="/alerts", text=f"ack {group_id}", user_id="U0ALICE", channel_id="C0GENERAL"
    )
    assert again.json is not None and "already acknowledged by <@U0BOB>" in again.json["text"]
    silenced = await bot.emulator.send_command(
        command="/alerts", text='silence alertname=Other 2h --reason "noisy"', user_id="U0BOB", channel_id="C0GENERAL"
    )
    assert silenced.json is not None and "Silence `s-" in silenced.json["text"]
    other = sample("firing")
    other["alerts"][0]["labels"]["alertname"] = "Other"
    other["alerts"][0]["fingerprint"] = "otherfp"
    await send(bot, other)
    await settle(bot)
    assert not any("Other" in m.get("text", "") for m in top_level(bot, "#incidents"))
    stats = await bot.emulator.send_command(command="/alerts", text="stats 7d", user_id="U0BOB", channel_id="C0GENERAL")
    assert stats.json is not None
    assert (
        "2 received" in stats.json["text"]
        and "1 silenced" in stats.json["text"]
        and "1 acknowledgement," in stats.json["text"]
    )
    bad = await bot.emulator.send_command(
        command="/alerts", text="silence service=web forever", user_id="U0BOB", channel_id="C0GENERAL"
    )
    assert bad.json is not None and "is not a duration" in bad.json["text"]


async def test_accepted_alerts_survive_a_restart_before_delivery(emulator, redis_url, bot_config) -> None:
    from datetime import UTC, datetime

    import redis.asyncio as aioredis

    from bot.alerts.store import AlertStore
    from bot.platform.keys import Keys
    from bot.platform.metrics import Metrics
    from bot.platform.store import Store
    from integrations.alerts.alertmanager import parse_payload
    from tests.conftest import start_bot

    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    store = AlertStore(Store(client, Keys("chatops"), Metrics()))
    alerts = parse_payload(sample("firing"), now=datetime.now(UTC)).alerts
    await store.append(list(alerts), datetime.now(UTC))  # accepted, then the process died before delivering
    bot, runner = await start_bot(emulator, redis_url, bot_config)
    try:
        await settle(bot)
        assert len(top_level(bot, "#incidents")) == 1
        entry_id = (await client.xrange(store.k("stream")))[0][0]
        await bot.deps.alerts.deliver_events([(f"{entry_id}-0", alerts[0])])  # a redelivery of the same entry
        await bot.deps.alerts.flush()
        assert len(top_level(bot, "#incidents")) == 1
    finally:
        await runner.cleanup()
        await client.aclose()


async def test_slack_rate_limits_delay_but_lose_nothing(bot: BotHarness) -> None:
    bot.emulator.set_rate_limit(1.0)
    body = sample("firing")
    template = body["alerts"][0]
    body["alerts"] = []
    for n in range(4):
        alert = copy.deepcopy(template)
        alert["labels"]["alertname"] = f"Alert{n}"
        alert["labels"]["severity"] = "warning"
        alert["fingerprint"] = f"rl{n}"
        body["alerts"].append(alert)
    assert (await send(bot, body))[0] == 200
    # 1 message a second plus Retry-After waits: seconds on an idle machine, more on a busy one.
    await eventually(
        lambda: len(top_level(bot, "#deploys")) == 4, "all 4 rate-limited messages in #deploys", deadline=120
    )
    assert sorted(m["text"] for m in top_level(bot, "#deploys")) == [f"WARNING: Alert{n}" for n in range(4)]
    assert any(call.status == 429 for call in bot.emulator.calls_to("chat.postMessage"))


async def test_resolve_and_silence_buttons(bot: BotHarness) -> None:
    await send(bot, sample("firing"))
    await settle(bot)
    message = top_level(bot, "#deploys")[0]
    silence = await bot.emulator.send_block_action(
        channel="#deploys",
        message_ts=message["ts"],
        action_id="alerts.silence",
        user_id="U0ALICE",
        selected_option={
            "text": {"type": "plain_text", "text": "Silence 4h"},
            "value": f"{top_level_id(bot, message)}:4h",
        },
    )
    assert silence.status == 200
    await eventually(bot.deps.alerts.silences, "the silence to be stored")
    (stored,) = (await bot.deps.alerts.silences()).values()
    assert stored["matchers"] == ["alertname=Test", "service=web"] and stored["created_by"] == "U0ALICE"
    resolve = await bot.emulator.send_block_action(
        channel="#deploys", message_ts=message["ts"], action_id="alerts.resolve", user_id="U0BOB"
    )
    assert resolve.status == 200
    await eventually(
        lambda: "RESOLVED" in (bot.emulator.find_message("#deploys", message["ts"]) or {}).get("text", ""),
        "the message to read RESOLVED",
    )
    resolved = bot.emulator.find_message("#deploys", message["ts"])
    assert "RESOLVED" in resolved["text"] and "by <@U0BOB>" in json.dumps(resolved["blocks"])


def top_level_id(bot: BotHarness, message: dict[str, Any]) -> str:
    return json.dumps(message["blocks"]).split("alert:")[1].split('"')[0]


async def test_webhook_answers_503_when_the_alert_cannot_be_stored(emulator, tmp_path, bot_config) -> None:
    from bot.platform.embedded_redis import EmbeddedRedis
    from tests.conftest import start_bot

    own = EmbeddedRedis(tmp_path / "redis").start()
    bot, runner = await start_bot(emulator, own.url, bot_config)
    try:
        own.kill()
        status, body = await send(bot, sample("firing"))
        assert status == 503 and "could not store the alerts; retry" in body["error"]
    finally:
        await runner.cleanup()
        own.stop()


async def test_an_unpostable_channel_does_not_hold_up_other_alerts(emulator, redis_url, monkeypatch) -> None:
    from tests.conftest import start_bot

    monkeypatch.setenv("TEST_AM_TOKEN", TOKEN)
    config = CONFIG.replace('channel: "#deploys"', 'channel: "#no-such-channel"')
    bot, runner = await start_bot(
        emulator, redis_url, parse_config(config.replace("continue: true", "continue: false"))
    )
    try:
        broken = sample("firing")  # critical + web: routed to #incidents only
        broken["alerts"][0]["labels"] |= {"severity": "warning", "alertname": "Lost"}  # now #no-such-channel
        broken["alerts"][0]["fingerprint"] = "lostfp"
        await send(bot, broken)
        await send(bot, sample("firing"))
        await settle(bot)
        assert len(top_level(bot, "#incidents")) == 1
        stats = await state(bot).alerts.stats([datetime.now(UTC)])
        assert stats.get("undeliverable") == 1
        listed = await bot.emulator.send_command(
            command="/alerts", text="list", user_id="U0BOB", channel_id="C0GENERAL"
        )
        assert listed.json is not None and "Lost" in listed.json["text"]  # stored, not lost
    finally:
        await runner.cleanup()
