"""A silenced alert looks silenced: after Silence 1h its message says who silenced it and until when, with an
Unsilence button that restores it; Custom… opens a form (matchers, duration, reason) whose submission creates the
silence and refuses bad input under the field. The bot's real web app, the Slack emulator and a real Redis."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bot.alerts.model import AlertGroup, Member
from bot.shell.config import ChatopsConfig, parse_config
from tests.conftest import BotHarness
from tests.state import state
from tests.waiting import eventually

CONFIG = """
roles: {admins: [U0DEMO]}
alerts:
  default_channel: "#alerts"
  group_wait: 0s
"""


@pytest.fixture
def bot_config() -> ChatopsConfig:
    return parse_config(CONFIG, "silence_message.yaml")


async def _posted_alert(bot: BotHarness) -> AlertGroup:
    now = datetime.now(UTC)
    member = Member(
        fingerprint="fp-1",
        title="DiskFull",
        severity="warning",
        status="firing",
        labels={"alertname": "DiskFull", "service": "web"},
        starts_at=now,
        last_seen=now,
    )
    group = AlertGroup(
        id="a-silence01", group_key="k", channel="#alerts", members={"fp-1": member}, created_at=now, updated_at=now
    )
    await state(bot).alerts.create_group(group, post_at=now)
    await bot.deps.alerts.post(group.id)
    posted = await bot.deps.alerts.get(group.id)
    assert posted is not None and posted.message_ts
    return posted


def _message(bot: BotHarness, group: AlertGroup) -> dict[str, Any]:
    return bot.emulator.find_message("#alerts", group.message_ts or "") or {}


def _action_ids(message: dict[str, Any]) -> set[str]:
    return {
        str(element.get("action_id"))
        for block in message.get("blocks") or []
        if block.get("type") == "actions"
        for element in block.get("elements") or []
    }


def _shows_silence(bot: BotHarness, group: AlertGroup, who: str) -> bool:
    message = _message(bot, group)
    return (
        "alerts.unsilence" in _action_ids(message)
        and "alerts.silence" not in _action_ids(message)
        and "SILENCED" in str(message.get("blocks"))
        and f"by <@{who}> until" in str(message.get("blocks"))
    )


def _shows_silence_menu(bot: BotHarness, group: AlertGroup) -> bool:
    message = _message(bot, group)
    return (
        "alerts.silence" in _action_ids(message)
        and "alerts.unsilence" not in _action_ids(message)
        and "SILENCED" not in str(message.get("blocks"))
    )


async def test_silence_button_shows_on_the_message_and_unsilence_restores_it(bot: BotHarness) -> None:
    group = await _posted_alert(bot)
    assert _shows_silence_menu(bot, group)
    await bot.emulator.send_block_action(
        channel="#alerts",
        message_ts=group.message_ts or "",
        action_id="alerts.silence",
        user_id="U0DEMO",
        selected_option={"text": {"type": "plain_text", "text": "Silence 1h"}, "value": f"{group.id}:1h"},
    )
    await eventually(
        lambda: _shows_silence(bot, group, "U0DEMO"),
        "the message to show who silenced it, until when, and an Unsilence button",
        deadline=20,
    )
    (silence_id,) = await bot.deps.alerts.silences()
    assert f"`{silence_id}`" in str(_message(bot, group).get("blocks"))

    await bot.emulator.send_block_action(
        channel="#alerts",
        message_ts=group.message_ts or "",
        action_id="alerts.unsilence",
        value=group.id,
        user_id="U0DEMO",
    )
    await eventually(lambda: _shows_silence_menu(bot, group), "the message to show the Silence menu again", deadline=20)
    assert await bot.deps.alerts.silences() == {}
    thread = [m.get("text", "") for m in bot.emulator.messages("#alerts") if m.get("thread_ts") == group.message_ts]
    assert any("removed the silence" in text and "<@U0DEMO>" in text for text in thread), thread


async def test_custom_silence_opens_a_form_whose_submission_creates_the_silence(bot: BotHarness) -> None:
    group = await _posted_alert(bot)
    await bot.emulator.send_block_action(
        channel="#alerts",
        message_ts=group.message_ts or "",
        action_id="alerts.silence",
        user_id="U0DEMO",
        selected_option={"text": {"type": "plain_text", "text": "Custom…"}, "value": f"{group.id}:custom"},
    )
    await eventually(lambda: bool(bot.emulator.open_views("U0DEMO")), "the Custom… silence form to open", deadline=20)
    (view,) = bot.emulator.open_views("U0DEMO")
    assert view["callback_id"] == "alerts.silence_form"
    matchers_block = next(b for b in view["blocks"] if b.get("block_id") == "matchers")
    assert matchers_block["element"]["initial_value"] == "alertname=DiskFull"  # the group_by labels

    def values(matchers: str, duration: str, reason: str) -> dict[str, dict[str, str]]:
        return {"matchers": {"matchers": matchers}, "duration": {"duration": duration}, "reason": {"reason": reason}}

    bad = values("alertname=~(a)\\1", "3h", "disk swap")
    refused = await bot.emulator.send_view_submission(view_id=view["id"], values=bad)
    assert refused.json is not None and refused.json.get("response_action") == "errors", refused
    assert "backreferences" in refused.json["errors"]["matchers"], refused.json
    refused = await bot.emulator.send_view_submission(view_id=view["id"], values=values("service", "45d", ""))
    assert refused.json is not None and set(refused.json["errors"]) == {"matchers", "duration", "reason"}, refused.json
    assert bot.emulator.open_views("U0DEMO"), "the form stays open after bad input"
    assert await bot.deps.alerts.silences() == {}

    good = values("service=web", "3h", "disk swap")
    accepted = await bot.emulator.send_view_submission(view_id=view["id"], values=good)
    assert accepted.status == 200 and not (accepted.json or {}).get("errors"), accepted
    await eventually(
        lambda: _shows_silence(bot, group, "U0DEMO"), "the custom silence to show on the message", deadline=20
    )
    (stored,) = (await bot.deps.alerts.silences()).values()
    assert stored["matchers"] == ["service=web"] and stored["reason"] == "disk swap"
    assert stored["created_by"] == "U0DEMO"
    assert "3h" in str(_message(bot, group).get("blocks")) or "2h 59m" in str(_message(bot, group).get("blocks"))
