"""Issue 17, items 3, 4 and 11 on incidents, the audit log, on-call and status: the channel topic names the
commander by name (topics do not render mentions), `/chatops audit` shows mentions and channels as Slack renders
them, `/oncall schedule` alone lists the rotations, and `/status` lists a second incident under the first and says
how long the check took for people (the emulator, real Redis, a FakeClock)."""

from __future__ import annotations

import html
import json
import re

from bot.emulator.mrkdwn import Names, to_html
from tests.conftest import BotHarness
from tests.test_incidents import bot_config, clock, command, declared, settled  # noqa: F401 (fixtures)
from tests.waiting import eventually


async def run(bot: BotHarness, slash: str, text: str, user: str = "U0DEMO") -> dict:
    result = await bot.emulator.send_command(command=slash, text=text, user_id=user, channel_id="C0GENERAL")
    assert result.status == 200 and result.json is not None, result
    return result.json


async def test_the_topic_names_the_commander_by_display_name(bot: BotHarness) -> None:
    inc = await declared(bot)
    await command(bot, "commander <@U0ALICE|alice>", channel=inc.channel_id or "")

    def topic() -> str:
        return str(bot.emulator.channel(inc.channel_id or "")["topic"]["value"])

    await eventually(lambda: "IC " in topic(), "the topic to name the commander")
    assert topic().endswith("IC Alice Anders"), topic()
    assert "<@" not in topic()


async def test_the_audit_log_shows_people_channels_and_emoji_as_slack_renders_them(bot: BotHarness) -> None:
    inc = await declared(bot)
    await command(bot, "commander <@U0CAROL|carol>", channel=inc.channel_id or "")
    await command(bot, "role scribe <@U0BOB|bob>", channel=inc.channel_id or "")
    await command(bot, "update Rolling back & watching <@U0CAROL> <!here> <b>", channel=inc.channel_id or "")
    await settled(bot)
    await bot.deps.audit.record(
        actor="U0DEMO",
        action="incident.note",
        result="ok",
        target="INC-1",
        channel="#incidents",
        detail="posted in #incidents",
    )
    answer = await run(bot, "/chatops", "audit 10")
    text = json.dumps(answer.get("blocks"))
    assert "##incidents" not in text and "<##" not in text, text
    assert "scribe: <@U0BOB>" in text, text  # not "scribe: U0BOB"
    assert "watching <@U0CAROL>" in text and "&lt;!here&gt;" in text and "&amp;" in text and "&lt;b&gt;" in text
    # As the page shows it: mentions by name, no markup typed out, emoji as emoji.
    shown = to_html(answer["blocks"][1]["text"]["text"], Names.of(bot.emulator.workspace))
    assert "&lt;@U0" not in shown and "##" not in shown, shown
    # The commander's timeline emoji, shown as an emoji on the page, not as ":crown:" typed out.
    assert "👑" in to_html(":crown: <@U0CAROL> is the commander", Names.of(bot.emulator.workspace))


async def test_oncall_schedule_alone_lists_the_rotations(bot: BotHarness) -> None:
    answer = html.unescape((await run(bot, "/oncall", "schedule"))["text"])
    assert "`schedule` needs a rotation. Rotations: `primary`." in answer, answer


async def test_status_lists_incidents_one_per_line_and_the_check_time_for_people(bot: BotHarness) -> None:
    await declared(bot)
    await declared(bot, "declare sev3 Slow search")
    answer = await run(bot, "/status", "")
    text = json.dumps(answer.get("blocks"), ensure_ascii=False)
    assert "*Incidents:*\\n• " in text and text.count("\\n• ") >= 2, text
    checked = next(
        e["text"]
        for b in answer["blocks"]
        if b["type"] == "context"
        for e in b["elements"]
        if e["text"].startswith("Checked")
    )
    assert re.search(r" in (\d+ ms|under 1 ms|\d+s) ·", checked), checked  # not "in 0.0s"


async def test_usage_placeholders_in_capitals_show_as_typed(bot: BotHarness) -> None:
    answer = await run(bot, "/backup", "restore appdb", user="U0BOB")
    shown = to_html(answer["text"], Names.of(bot.emulator.workspace))
    assert "into &lt;ENV_VAR&gt;" in shown and "&lt;target&gt; &lt;id&gt;" in shown, (answer, shown)
