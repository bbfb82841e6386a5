"""The whole bot on highly available Redis, started here from redis-server: a three-master Redis Cluster (every
MULTI and Lua script must stay in one hash tag's slot: a CROSSSLOT error is a bug), and a primary with replicas
under three Sentinels (a failover loses no answered write when `redis.min_replicas_acked` is set)."""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from bot.deploys.model import DeployState
from bot.emulator import SlackEmulator
from bot.shell.config import ChatopsConfig, parse_config
from tests.conftest import BotHarness, fake_deploy_argv, start_bot
from tests.redis_servers import ClusterDeployment, SentinelDeployment
from tests.state import state
from tests.waiting import eventually

TOKEN = "am-ha-token-91d0"
FIRING = (Path(__file__).parent / "fixtures" / "alertmanager-firing.json").read_text()
CONFIG = f"""
roles: {{admins: [U0DEMO], deployers: [U0BOB, U0DEMO], responders: [U0DEMO, U0ALICE, U0BOB]}}
services:
  web:
    channel: "#deploys"
    environments:
      staging:
        deployer:
          kind: command
          argv: {fake_deploy_argv()}
          env: {{DEPLOY_LOG: "@LOG@", STATE_DIR: "@STATE@"}}
          timeout: 30s
alerts:
  default_channel: "#alerts"
  group_wait: 0s
  sources: {{alertmanager: {{token_env: TEST_AM_TOKEN}}}}
oncall:
  rotations:
    primary:
      {{members: [U0ALICE, U0BOB], shift: 1w, handoff: "monday 09:00", timezone: Europe/Berlin, start: 2026-01-05}}
incidents:
  announce_channel: "#incidents"
  channel_prefix: inc
  severities:
    sev2: {{description: "Partial outage", respond_within: 30m, page: primary}}
"""


def config(monkeypatch: pytest.MonkeyPatch, work: Path, extra: str = "") -> ChatopsConfig:
    """The test configuration; the fake deploy script writes its log and state under `work`."""
    monkeypatch.setenv("TEST_AM_TOKEN", TOKEN)
    (work / "state").mkdir(parents=True, exist_ok=True)
    text = CONFIG.replace("@LOG@", str(work / "deploy.log")).replace("@STATE@", str(work / "state"))
    return parse_config(text + extra, "ha.yaml")


async def post_alert(bot: BotHarness, name: str) -> int:
    """POSTs one Alertmanager notification for alert `name`; returns the HTTP status."""
    body = json.loads(FIRING)
    body["alerts"][0]["labels"]["alertname"] = name
    body["alerts"][0]["fingerprint"] = f"fp-{name}"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{bot.url}/alerts/alertmanager",
                data=json.dumps(body),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=30),
            ) as response,
        ):
            return response.status
    except aiohttp.ClientError:
        return 0


def posted(bot: BotHarness, name: str) -> list[dict[str, Any]]:
    """Top-level messages in #alerts about alert `name`."""
    return [
        m
        for m in bot.emulator.messages("#alerts")
        if name in json.dumps(m)
        and not m.get("ephemeral_to")
        and (not m.get("thread_ts") or m.get("thread_ts") == m["ts"])
    ]


async def command(bot: BotHarness, name: str, text: str, user: str = "U0DEMO") -> str:
    result = await bot.emulator.send_command(command=name, text=text, user_id=user, channel_id="C0GENERAL")
    assert result.error is None and result.status == 200 and result.json is not None, result
    answer = html.unescape(result.json["text"])
    assert "Something went wrong" not in answer and "cannot reach" not in answer, answer
    return answer


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[ClusterDeployment]:
    deployment = await asyncio.to_thread(ClusterDeployment(tmp_path / "cluster").start)
    try:
        yield deployment
    finally:
        await asyncio.to_thread(deployment.stop)


@pytest.mark.timeout(240)
async def test_the_main_flows_run_on_a_redis_cluster(
    emulator: SlackEmulator,
    cluster: ClusterDeployment,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot, runner = await start_bot(emulator, cluster.url, config(monkeypatch, tmp_path))
    try:
        # An alert: accepted, posted, acknowledged by its button, the ack recorded in the acks stream.
        assert await post_alert(bot, "ClusterAlert") == 200
        await eventually(lambda: _true(posted(bot, "ClusterAlert")), "the alert's message in #alerts")
        message = posted(bot, "ClusterAlert")[0]
        click = await emulator.send_block_action(
            channel="#alerts", message_ts=message["ts"], action_id="alerts.ack", user_id="U0BOB"
        )
        assert click.status == 200, click

        async def acked() -> bool:
            return [a["user"] for a in await bot.deps.alerts.acks()] == ["U0BOB"]

        await eventually(acked, "U0BOB's acknowledgement in the acks stream")

        # A deploy under its run lock, to the end.
        answer = await command(bot, "/deploy", "web v7 to staging", user="U0BOB")
        found = re.search(r"\bd-[a-z0-9]{8}\b", answer)
        assert found is not None, answer
        deploy_id = found.group(0)

        async def deployed() -> bool:
            record = await bot.deps.deploys.get(deploy_id)
            assert record is None or record.state != DeployState.FAILED, record
            return record is not None and record.state == DeployState.SUCCEEDED

        await eventually(deployed, f"deploy {deploy_id} to succeed")
        assert await bot.deps.deploys.current_version("web", "staging") == "v7"

        assert "declared *INC-" in await command(bot, "/incident", "declare sev2 Checkout errors on web")
        await command(bot, "/oncall", "")
        await command(bot, "/status", "")
        assert "CROSSSLOT" not in caplog.text and "CrossSlot" not in caplog.text
    finally:
        await runner.cleanup()


@pytest.fixture
async def sentinels(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[SentinelDeployment]:
    replicas = getattr(request, "param", 2)
    deployment = await asyncio.to_thread(SentinelDeployment(tmp_path / "sentinel", replicas=replicas).start)
    try:
        yield deployment
    finally:
        await asyncio.to_thread(deployment.stop)


DURABLE = "redis: {min_replicas_acked: 1, wait_timeout: 500ms}\n"


@pytest.mark.timeout(240)
async def test_after_a_failover_answered_alerts_are_kept_and_the_bot_keeps_working(
    emulator: SlackEmulator,
    sentinels: SentinelDeployment,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    bot, runner = await start_bot(emulator, sentinels.url, config(monkeypatch, tmp_path, DURABLE))
    try:
        assert await post_alert(bot, "BeforeFailover") == 200
        await eventually(lambda: _true(posted(bot, "BeforeFailover")), "the first alert's message in #alerts")
        promoted = await asyncio.to_thread(sentinels.fail_primary)
        direct = aioredis.Redis(host="127.0.0.1", port=promoted.port, decode_responses=True)
        try:
            entries = await direct.xrange(state(bot).alerts.k("stream"))
        finally:
            await direct.aclose()
        assert any("BeforeFailover" in json.dumps(fields) for _, fields in entries), "an answered alert was lost"

        async def accepted() -> bool:  # as a sender does: retry a 5xx until it is accepted
            return await post_alert(bot, "AfterFailover") == 200

        await eventually(accepted, "a webhook accepted by the promoted primary (with one replica confirming)")
        await eventually(lambda: _true(posted(bot, "AfterFailover")), "the second alert's message in #alerts")
    finally:
        await runner.cleanup()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("sentinels", [1], indirect=True)
async def test_without_a_replica_to_confirm_a_webhook_answers_503(
    emulator: SlackEmulator,
    sentinels: SentinelDeployment,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    bot, runner = await start_bot(emulator, sentinels.url, config(monkeypatch, tmp_path, DURABLE))
    try:
        assert await post_alert(bot, "Replicated") == 200
        await asyncio.to_thread(sentinels.replica_nodes[0].kill)
        assert await post_alert(bot, "NotReplicated") == 503  # the sender keeps it and retries
    finally:
        await runner.cleanup()


async def _true(value: object) -> bool:
    return bool(value)
