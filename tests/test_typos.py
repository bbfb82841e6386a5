"""Typos: a mistyped command or subcommand word is answered with the closest real one ("Did you mean …?"), through
/chatops or the command's own slash command; help lists the real slash commands, since Slack itself answers a
mistyped one. The bot's real web app, the Slack emulator and a real Redis."""

from __future__ import annotations

import html

import pytest

from tests.conftest import BotHarness


async def _answer(bot: BotHarness, command: str, text: str) -> str:
    result = await bot.emulator.send_command(command=command, text=text, user_id="U0DEMO", channel_id="C0GENERAL")
    assert result.status == 200 and result.json is not None, result
    return html.unescape(str(result.json["text"]))


@pytest.mark.parametrize(
    ("command", "text", "meant"),
    [
        ("/chatops", "deplyo web v1.2 to staging", "/chatops deploy web v1.2 to staging"),
        ("/chatops", "deplyo histroy web", "/chatops deploy history web"),
        ("/chatops", "deploy histroy web", "/chatops deploy history web"),
        ("/deploy", "histroy web", "/deploy history web"),
        ("/oncall", "overide primary @alice for 4h", "/oncall override primary @alice for 4h"),
        ("/chatops", "audti 5", "/chatops audit 5"),
        ("/alerts", "silense service=web 1h", "/alerts silence service=web 1h"),
    ],
)
async def test_a_mistyped_word_is_answered_with_the_closest_command(
    bot: BotHarness, command: str, text: str, meant: str
) -> None:
    answer = await _answer(bot, command, text)
    assert f"Did you mean `{meant}`?" in answer, answer


async def test_an_unknown_chatops_word_lists_the_real_commands(bot: BotHarness) -> None:
    answer = await _answer(bot, "/chatops", "xyzzy")
    assert "`xyzzy` is not a chatops command" in answer and "Did you mean" not in answer, answer
    assert "The commands are `/deploy` `/rollback`" in answer and "`/alerts`" in answer, answer
    answer = await _answer(bot, "/deploy", "history")  # a right word that failed for another reason
    assert "Did you mean" not in answer and "The commands are" not in answer, answer


async def test_the_help_footer_lists_the_real_slash_commands(bot: BotHarness) -> None:
    result = await bot.emulator.send_command(command="/chatops", text="help", user_id="U0DEMO", channel_id="C0GENERAL")
    assert result.json is not None
    footer = str(result.json["blocks"][-1])
    assert "`/deploy` `/rollback` `/backup` `/status` `/oncall` `/incident` `/alerts` `/chatops`" in footer, footer
    assert "Slack itself answers a mistyped one" in footer, footer
