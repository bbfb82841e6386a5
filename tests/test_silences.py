"""Silences: user-supplied regex matchers run on RE2 (linear time), patterns RE2 cannot run are refused with a
clear message and store nothing, and creating a silence needs the responders role (or admin) whether it comes from
/alerts silence or a Silence button. The bot's real web app, the Slack emulator and a real Redis."""

from __future__ import annotations

from collections.abc import Awaitable

import pytest

from bot.alerts.config import AlertsSection
from bot.alerts.patterns import MAX_PATTERN
from bot.alerts.routing import parse_matcher, route
from bot.shell.config import ChatopsConfig, ConfigError, parse_config
from tests.conftest import BotHarness
from tests.state import posted_alert
from tests.waiting import eventually

CONFIG = """
roles: {admins: [U0DEMO]}
alerts:
  default_channel: "#alerts"
  group_wait: 0s
"""
CATASTROPHIC = "(a+)+$"  # Python's re backtracks for minutes on "a"*30 + "!"


@pytest.fixture
def bot_config() -> ChatopsConfig:
    return parse_config(CONFIG, "silences.yaml")


async def alerts(bot: BotHarness, text: str, user: str) -> str:
    result = await bot.emulator.send_command(command="/alerts", text=text, user_id=user, channel_id="C0GENERAL")
    assert result.status == 200 and result.json is not None, result
    return str(result.json["text"])


# -- RE2 ----------------------------------------------------------------------------------------------------------


def test_a_catastrophic_pattern_matches_in_linear_time() -> None:
    matcher = parse_matcher(f"alertname=~{CATASTROPHIC}")
    assert matcher.matches({"alertname": "a" * 30 + "!"}) is False  # returns at once: RE2 does not backtrack
    assert matcher.matches({"alertname": "a" * 100_000}) is True


@pytest.mark.parametrize(
    "pattern, reason",
    [
        (r"(a)\1", "invalid escape sequence"),
        ("(?=a)a", "invalid perl operator"),
        ("a" * (MAX_PATTERN + 1), "characters"),
    ],
)
def test_patterns_re2_cannot_run_are_refused_naming_them(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_matcher(f"alertname=~{pattern}")
    assert reason in str(refused.value) and pattern[:40] in str(refused.value)


def test_check_config_refuses_a_route_regex_re2_cannot_run() -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config('alerts: {routes: [{match_re: {service: "(a)\\\\1"}, channel: "#x"}]}', "bad.yaml")
    assert (
        "match_re.service" in str(refused.value)
        and "(a)\\1" in str(refused.value)
        and "backreferences" in str(refused.value)
    )
    config = AlertsSection.model_validate({"routes": [{"match_re": {"alertname": CATASTROPHIC}, "channel": "#slow"}]})
    assert [d.channel for d in route(config, {"alertname": "a" * 30 + "!"})] == ["#alerts"]
    assert [d.channel for d in route(config, {"alertname": "aaa"})] == ["#slow"]


async def test_silence_command_accepts_re2_and_refuses_backreferences_storing_nothing(bot: BotHarness) -> None:
    answer = await alerts(bot, f'silence alertname=~{CATASTROPHIC} 1h --reason "noisy"', user="U0DEMO")
    assert "Silence `s-" in answer, answer
    (stored,) = (await bot.deps.alerts.silences()).values()
    assert stored["matchers"] == [f"alertname=~{CATASTROPHIC}"]
    answer = await alerts(bot, 'silence alertname=~(a)\\1 1h --reason "noisy"', user="U0DEMO")
    assert "(a)\\1" in answer and "backreferences" in answer and "Usage" in answer, answer
    assert len(await bot.deps.alerts.silences()) == 1


# -- who may silence ------------------------------------------------------------------------------------------------


async def test_without_responders_only_admins_may_silence_by_command(bot: BotHarness) -> None:
    answer = await alerts(bot, 'silence service=web 1h --reason "deploy"', user="U0ALICE")
    assert "You need the `responders` role to silence alerts" in answer, answer
    assert await bot.deps.alerts.silences() == {}
    answer = await alerts(bot, 'silence service=web 1h --reason "deploy"', user="U0DEMO")
    assert "Silence `s-" in answer, answer


async def test_without_responders_only_admins_may_use_the_silence_button(bot: BotHarness) -> None:
    group = posted = await posted_alert(bot, "a-button01")

    def choose(user: str) -> Awaitable[object]:
        return bot.emulator.send_block_action(
            channel="#alerts",
            message_ts=posted.message_ts or "",
            action_id="alerts.silence",
            user_id=user,
            selected_option={"text": {"type": "plain_text", "text": "Silence 1h"}, "value": f"{group.id}:1h"},
        )

    await choose("U0ALICE")

    async def refused() -> bool:
        return any(
            m.get("ephemeral_to") == "U0ALICE" and "responders" in m.get("text", "")
            for m in bot.emulator.messages("#alerts")
        )

    await eventually(refused, "the refusal shown to U0ALICE")
    assert await bot.deps.alerts.silences() == {}

    await choose("U0DEMO")

    async def silenced() -> bool:
        return bool(await bot.deps.alerts.silences())

    await eventually(silenced, "the admin's silence to be stored")
    (stored,) = (await bot.deps.alerts.silences()).values()
    assert stored["created_by"] == "U0DEMO" and stored["matchers"] == ["alertname=DiskFull"]
