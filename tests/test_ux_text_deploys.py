"""Issue 17, items 3 and 4 on deploys: durations and counts written for people in `/deploy history`, and a reject
click that names the rejecter as a mention, not as `<@U…>` typed out (the emulator, real Redis, a real provider)."""

from __future__ import annotations

import json
import re

from bot.deploys.model import DeployState
from tests.conftest import BotHarness, Target
from tests.test_deploys import (  # noqa: F401 (bot_config: the deploy scenario's configuration, overriding conftest's)
    bot_config,
    click,
    command,
    deploy_id_of,
    until_message,
    wait_state,
)
from tests.waiting import eventually


async def test_history_figures_are_written_for_people(bot: BotHarness, target: Target) -> None:
    for version, state in (
        ("v1", DeployState.SUCCEEDED),
        ("broken", DeployState.FAILED),
        ("v2", DeployState.SUCCEEDED),
    ):
        await wait_state(bot, deploy_id_of(await command(bot, f"web {version} to staging", "U0ALICE")), state)
    rejected = await until_message(bot, deploy_id_of(await command(bot, "web v9 to production", "U0BOB")))
    await click(bot, rejected, "reject", "U0ALICE")
    await wait_state(bot, rejected.id, DeployState.REJECTED)
    history = await command(bot, "history web", "U0BOB")
    mttr = re.search(r"MTTR (.+?)(?:,|$)", history, re.MULTILINE)
    assert mttr is not None, history
    # "1s" or "412 ms", never "1s556ms425us"
    assert re.fullmatch(r"\d+ ms|under 1 ms|\d+s|\d+m( \d+s)?", mttr.group(1)), mttr.group(1)
    # Four rows are listed; the figure says it counts three, and which ones it leaves out.
    assert "Last 30 days: 3 finished deploys (not counting rollback runs, rejected or unfinished requests" in history, (
        history
    )


async def test_a_rejection_shows_the_rejecter_as_a_mention(bot: BotHarness, target: Target) -> None:
    record = await until_message(bot, deploy_id_of(await command(bot, "web v3 to production", "U0BOB")))
    await click(bot, record, "reject", "U0ALICE")
    await wait_state(bot, record.id, DeployState.REJECTED)
    assert record.channel and record.message_ts

    def blocks() -> str:
        message = bot.emulator.find_message(record.channel or "", record.message_ts or "")
        return json.dumps(message.get("blocks") if message else [])

    await eventually(lambda: "Rejected" in blocks(), "the deploy message to show the rejection")
    assert "Rejected by <@U0ALICE>." in blocks(), blocks()  # a mention Slack renders as @Alice
    assert "&lt;@U0ALICE&gt;" not in blocks()
