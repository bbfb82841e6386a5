"""The demo a new user meets in `chatops dev`, driven through the emulator against the bot running the demo
configuration itself (examples/chatops.yaml): `/alerts test` (admins only) posts a marked test alert through the
real pipeline; help examples name what the configuration has; the demo backup target restores end to end, with
approval, into the second Redis `chatops dev` starts, and the restore card says where the data goes."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest
import redis

from bot.backups.model import BackupState, RestoreState
from bot.platform.embedded_redis import EmbeddedRedis
from bot.shell.config import ChatopsConfig, parse_config
from tests.conftest import BotHarness
from tests.state import state
from tests.waiting import eventually

DEMO = Path(__file__).resolve().parent.parent / "examples" / "chatops.yaml"


@pytest.fixture
def bot_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str, restore_redis: EmbeddedRedis
) -> ChatopsConfig:
    """The demo configuration, with the environment `chatops dev` gives it and its backups in tmp_path."""
    monkeypatch.setenv("CHATOPS_DEMO_ALERT_TOKEN", "demo-alert-token")
    monkeypatch.setenv("CHATOPS_DEMO_REDIS_URL", redis_url)
    monkeypatch.setenv("CHATOPS_DEMO_RESTORE_REDIS_URL", restore_redis.url)
    text = DEMO.read_text().replace("./.chatops-dev/backups", str(tmp_path / "backups"))
    return parse_config(text, str(DEMO))


async def command(bot: BotHarness, name: str, text: str, user: str = "U0DEMO") -> str:
    result = await bot.emulator.send_command(command=name, text=text, user_id=user, channel_id="C0GENERAL")
    assert result.status == 200 and result.json is not None, result
    return html.unescape(json.dumps(result.json))


def top_level(bot: BotHarness, channel: str) -> list[dict]:
    return [
        m
        for m in bot.emulator.messages(channel)
        if not m.get("ephemeral_to") and (not m.get("thread_ts") or m.get("thread_ts") == m["ts"])
    ]


async def test_alerts_test_sends_a_marked_alert_through_the_pipeline_for_admins_only(bot: BotHarness) -> None:
    store = state(bot).alerts
    refused = await command(bot, "/alerts", "test critical", user="U0BOB")
    assert "`admins` role" in refused
    assert await store.redis.xlen(store.k("stream")) == 0, "a refused test alert was stored"
    bad = await command(bot, "/alerts", "test fatal")
    assert "`test` takes one severity: `critical` or `warning`" in bad

    sent = await command(bot, "/alerts", "test critical")
    assert "Sent a critical test alert" in sent and "<#C0INCIDENTS>" in sent and "`default` escalation policy" in sent

    def posted() -> bool:
        return any("TEST alert (critical)" in str(m.get("text")) for m in top_level(bot, "#incidents"))

    await eventually(posted, "the test alert's message in #incidents")
    message = next(m for m in top_level(bot, "#incidents") if "TEST alert" in str(m.get("text")))
    assert "alerts.resolve" in json.dumps(message["blocks"]), "the test alert has no Resolve button"
    assert "nothing is wrong" in json.dumps(message["blocks"])


async def test_help_examples_name_what_the_configuration_has(bot: BotHarness) -> None:
    deploy = await command(bot, "/deploy", "help")
    assert "/deploy demo v1.4.2 to staging" in deploy and "web" not in deploy
    backup = await command(bot, "/backup", "help")
    assert "/backup run dev-redis" in backup and "into CHATOPS_DEMO_RESTORE_REDIS_URL" in backup
    assert "appdb" not in backup and "rds-prod" not in backup, "an example names a target the demo lacks"
    status = await command(bot, "/status", "help")
    assert "/status demo production" in status and "web" not in status


async def test_demo_backup_restores_into_the_second_redis_with_approval(
    bot: BotHarness, redis_url: str, restore_redis: EmbeddedRedis
) -> None:
    redis.Redis.from_url(redis_url).set("demo:marker", "from the dev redis")
    service = bot.deps.backups
    ran = await command(bot, "/backup", "run dev-redis")
    backup_id = ran.split("`")[3]

    async def backed_up() -> bool:
        record = await service.get(backup_id)
        return record is not None and record.state != BackupState.RUNNING

    await eventually(backed_up, "the dev-redis backup to finish")
    record = await service.get(backup_id)
    assert record is not None and record.state == BackupState.SUCCEEDED, record.detail

    asked = await command(bot, "/backup", f"restore dev-redis {backup_id} into CHATOPS_DEMO_RESTORE_REDIS_URL")
    assert "needs 1 approval" in asked, asked
    restore_id = asked.split("`")[1]
    restore = await service.get_restore(restore_id)
    assert restore is not None and restore.channel and restore.message_ts
    card = json.dumps(bot.emulator.find_message(restore.channel, restore.message_ts)["blocks"])
    place = restore_redis.url.split("//")[1].split("/")[0]
    assert f"the Redis at `{place}` from `CHATOPS_DEMO_RESTORE_REDIS_URL`" in card, card
    assert "replaces the data in the Redis at" in card

    result = await bot.emulator.send_block_action(
        channel=restore.channel,
        message_ts=restore.message_ts,
        action_id="backup.approve",
        value=restore_id,
        user_id="U0ALICE",
    )
    assert result.status == 200

    async def restored() -> bool:
        current = await service.get_restore(restore_id)
        return current is not None and current.terminal

    await eventually(restored, "the approved restore to finish")
    done = await service.get_restore(restore_id)
    assert done is not None and done.state == RestoreState.SUCCEEDED, done.detail
    assert redis.Redis.from_url(restore_redis.url).get("demo:marker") == b"from the dev redis"
