"""Quick clicks: buttons that only show something (help navigation) answer every click however fast; a second
click on a button that changes something (Acknowledge) runs nothing and says "already done" to the clicker only.
The bot's real web app, the Slack emulator and a real Redis."""

from __future__ import annotations

import pytest

from bot.shell.config import ChatopsConfig, parse_config
from tests.conftest import BotHarness
from tests.state import posted_alert
from tests.waiting import eventually

CONFIG = """
roles: {admins: [U0DEMO]}
alerts:
  default_channel: "#alerts"
  group_wait: 0s
"""


@pytest.fixture
def bot_config() -> ChatopsConfig:
    return parse_config(CONFIG, "quick_clicks.yaml")


def _header(bot: BotHarness, channel: str, ts: str) -> str:
    message = bot.emulator.find_message(channel, ts) or {}
    return str(((message.get("blocks") or [{}])[0].get("text") or {}).get("text"))


async def test_help_navigation_clicked_four_times_quickly_shows_every_page(bot: BotHarness) -> None:
    await bot.emulator.send_command(command="/chatops", text="help", user_id="U0DEMO", channel_id="C0GENERAL")
    (message,) = [m for m in bot.emulator.messages("C0GENERAL") if m.get("ephemeral_to") == "U0DEMO"]
    ts = message["ts"]
    # Usage → All commands → Usage → All commands: the third and fourth repeat the first two within seconds.
    for action_id, value, header in [
        ("chatops.help.show", "deploy", "/deploy"),
        ("chatops.help.overview", "overview", "chatops: what you can ask"),
    ] * 2:
        result = await bot.emulator.send_block_action(
            channel="C0GENERAL", message_ts=ts, action_id=action_id, value=value, user_id="U0DEMO"
        )
        assert result.status == 200, result
        await eventually(
            lambda h=header: _header(bot, "C0GENERAL", ts) == h,
            f"the help message to show {header!r} after clicking {action_id}",
            deadline=20,
        )
    metrics = bot.deps.metrics.render()[0].decode()
    assert 'outcome="duplicate"' not in metrics, "no help click was dropped"


async def test_a_double_click_on_acknowledge_answers_already_done(bot: BotHarness) -> None:
    group = posted = await posted_alert(bot, "a-dblclick1")
    for _ in range(2):
        result = await bot.emulator.send_block_action(
            channel="#alerts", message_ts=posted.message_ts, action_id="alerts.ack", value=group.id, user_id="U0DEMO"
        )
        assert result.status == 200, result

    def answered() -> list[str]:
        return [m.get("text", "") for m in bot.emulator.messages("#alerts") if m.get("ephemeral_to") == "U0DEMO"]

    await eventually(
        lambda: any("already done" in text.lower() for text in answered()),
        'an ephemeral "already done" answer to the second click',
        deadline=20,
    )

    async def acknowledged() -> bool:
        after = await bot.deps.alerts.get(group.id)
        return after is not None and after.acked_by == "U0DEMO"

    await eventually(acknowledged, "the first click to acknowledge the alert", deadline=20)
    assert len(await bot.deps.alerts.acks()) == 1
    assert not any("already acknowledged" in text for text in answered()), answered()
