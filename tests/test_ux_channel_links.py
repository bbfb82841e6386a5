"""Issue 17 item 11, channel names: every reply that names a configured channel links it (`<#C…>`, resolved from
the configured `#name` through one cached lookup), in deploy, backup, alert, incident, status and audit replies;
a channel Slack does not know stays plain `#name`, never an error. And `/status` does not show a backup target
without any good backup as healthy (driven through the emulator against the demo configuration)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.alerts.model import Page
from bot.emulator.server import SlackEmulator
from bot.platform.channels import ChannelDirectory
from bot.platform.embedded_redis import EmbeddedRedis
from bot.shell.config import ChatopsConfig, parse_config
from bot.text.blocks import channel_link
from tests.conftest import BOT_TOKEN, BotHarness
from tests.test_ux_demo import DEMO, command
from tests.waiting import eventually

# The channels the demo configuration names; the demo workspace has each as C0<NAME>.
CONFIGURED = ("general", "deploys", "alerts", "incidents", "oncall", "backups")
PLAIN = re.compile(r"(?<![\w|])#(" + "|".join(CONFIGURED) + r")\b")


@pytest.fixture
def bot_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str, restore_redis: EmbeddedRedis
) -> ChatopsConfig:
    """The demo configuration without its Friday-evening freeze (a production deploy must wait for approval,
    whatever the day), its backups in tmp_path."""
    monkeypatch.setenv("CHATOPS_DEMO_ALERT_TOKEN", "demo-alert-token")
    monkeypatch.setenv("CHATOPS_DEMO_REDIS_URL", redis_url)
    monkeypatch.setenv("CHATOPS_DEMO_RESTORE_REDIS_URL", restore_redis.url)
    text = DEMO.read_text().replace("./.chatops-dev/backups", str(tmp_path / "backups"))
    text = re.sub(r"\n\s+freeze: \[.*\]", "", text)
    return parse_config(text, str(DEMO))


def plain_names(reply: str) -> list[str]:
    """Configured channel names written as plain text in a reply."""
    return PLAIN.findall(reply)


async def test_every_reply_links_the_configured_channels_it_names(bot: BotHarness) -> None:
    replies: dict[str, str] = {}
    # Production needs an approval: nothing is started, and the reply says where the approval is asked.
    replies["deploy"] = await command(bot, "/deploy", "demo v1 to production --reason links")
    assert "<#C0DEPLOYS>" in replies["deploy"], replies["deploy"]

    replies["backup run"] = await command(bot, "/backup", "run dev-redis")
    assert "<#C0BACKUPS>" in replies["backup run"], replies["backup run"]
    backup_id = replies["backup run"].split("`")[3]

    async def backed_up() -> bool:
        record = await bot.deps.backups.get(backup_id)
        return record is not None and record.state == "succeeded"

    await eventually(backed_up, "the dev-redis backup to succeed")
    replies["restore"] = await command(
        bot, "/backup", f"restore dev-redis {backup_id} into CHATOPS_DEMO_RESTORE_REDIS_URL"
    )
    assert "<#C0BACKUPS>" in replies["restore"], replies["restore"]

    replies["alert test"] = await command(bot, "/alerts", "test critical")
    assert "<#C0INCIDENTS>" in replies["alert test"], replies["alert test"]

    replies["incident"] = await command(bot, "/incident", "declare sev3 Links in replies")
    replies["status"] = await command(bot, "/status", "")
    replies["audit"] = await command(bot, "/chatops", "audit 20")
    for name, reply in replies.items():
        assert not plain_names(reply), f"{name} names {plain_names(reply)} as plain text: {reply}"


async def test_a_target_without_a_good_backup_does_not_look_healthy_in_status(bot: BotHarness) -> None:
    status = await command(bot, "/status", "")
    line = next((part for part in status.split("\\n") if "dev-redis" in part), "")
    assert "no good backup yet" in line, status
    assert ":large_green_circle:" not in line, line
    assert ":white_circle:" in line, line


async def test_the_directory_resolves_names_caches_them_and_falls_back_to_plain_text(emulator: SlackEmulator) -> None:
    from slack_sdk.web.async_client import AsyncWebClient

    now = [0.0]
    slack = AsyncWebClient(token=BOT_TOKEN, base_url=emulator.api_url)
    directory = ChannelDirectory(slack, ttl=60, clock=lambda: now[0])
    assert await directory.link("#deploys") == "<#C0DEPLOYS>"
    assert await directory.link("C0ALERTS") == "<#C0ALERTS>"
    assert await directory.link("#nowhere") == "#nowhere"  # not a channel Slack knows: plain text, no error
    emulator.workspace.add_channel("nowhere", id="C0NOWHERE")
    assert await directory.link("#nowhere") == "#nowhere", "the listing is cached for the TTL"
    now[0] += 61
    assert await directory.link("#nowhere") == "<#C0NOWHERE>"
    broken = ChannelDirectory(AsyncWebClient(token="xoxb-wrong", base_url=emulator.api_url))
    assert await broken.link("#deploys") == "#deploys"  # Slack refuses: plain text, never an error


def test_the_page_field_links_the_channel_slack_answered_with() -> None:
    from datetime import UTC, datetime

    from bot.alerts.render import _paged_channel

    at = datetime(2026, 1, 5, tzinfo=UTC)
    page = Page(number=3, round=0, step=2, due=at, at=at, channel="#incidents", dms={"C0INCIDENTS": "1.2"})
    assert _paged_channel(page) == "<#C0INCIDENTS>"
    assert _paged_channel(page.model_copy(update={"dms": {"D0DEMO": "1.2"}})) == "#incidents"
    assert channel_link("#a&b") == "#a&amp;b"
