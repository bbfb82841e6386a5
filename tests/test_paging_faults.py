"""Pages are sent, not only recorded: a page DM that Slack fails (5xx, an HTML error page, a timeout, or a post that
went through but was answered 500) is not recorded as sent; the deadline comes due again after the claim lease
(`scheduler.lease`), and the retry finds the DM it may already have sent instead of sending it twice."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.alerts.model import AlertGroup
from bot.oncall.pager import Pager
from bot.shell.config import ChatopsConfig, parse_config
from tests.conftest import BotHarness, FakeClock
from tests.state import state
from tests.test_oncall import (
    CONFIG,
    T0,
    command,
    critical,
    dms,
    fire,
    group_of,
    pages_to,
    thread_texts,
)
from tests.waiting import eventually

LEASE = timedelta(seconds=20)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def bot_config() -> ChatopsConfig:
    return parse_config(CONFIG.replace("scheduler: {tick: 1m}", "scheduler: {tick: 1m, lease: 20s}"), "paging.yaml")


async def tick_at(bot: BotHarness, clock: FakeClock, moment: timedelta) -> int:
    clock.now = T0 + moment
    return await bot.deps.pager.tick()


async def killed_before_the_record(*_args: object, **_kwargs: object) -> None:
    """Stands in for `Pager._record`: the process stopped after sending, before anything was recorded."""
    raise ConnectionError("the process stopped here")


async def thread_lines_once_sent(bot: BotHarness, group: AlertGroup, word: str) -> list[str]:
    """The lines of the group's thread that hold `word`, once there is one and no reply is left queued."""
    store = state(bot).alerts

    def lines() -> list[str]:
        return [line for text in thread_texts(bot, group) for line in text.splitlines() if word in line]

    async def all_sent() -> bool:
        return bool(lines()) and not await store.queued_replies(group.id, 10)

    await eventually(all_sent, f"the thread's {word!r} note sent")
    return lines()


@pytest.mark.parametrize("mode", ["500", "html502", "timeout"])
async def test_a_page_slack_did_not_take_is_sent_after_the_lease_not_recorded(
    bot: BotHarness,
    clock: FakeClock,
    mode: str,
) -> None:
    """Before: `Pager._send` caught the Slack error and recorded a page with no DM as sent: step 1 was lost. And the
    claim lease was a fixed 60 s whatever `scheduler.lease` said (here 20 s), with a late note blaming no process."""
    group = await fire(bot, critical(clock))
    bot.emulator.faults.add(mode, methods=["chat.postMessage"], count=1, hold=3.0)
    await tick_at(bot, clock, timedelta(0))
    assert pages_to(bot, "U0ALICE") == []
    after = await group_of(bot, group.id)
    assert after.pages == () and after.pending is not None, "a page Slack refused was recorded as sent"

    await tick_at(bot, clock, LEASE - timedelta(seconds=1))  # still leased to the failed attempt
    assert pages_to(bot, "U0ALICE") == []
    await tick_at(bot, clock, LEASE + timedelta(seconds=1))
    assert len(pages_to(bot, "U0ALICE")) == 1
    paged = await group_of(bot, group.id)
    assert [p.step for p in paged.pages] == [0] and paged.pages[0].dms
    await eventually(
        lambda: any("earlier attempt did not complete" in text for text in thread_texts(bot, paged)),
        "the thread says so",
    )
    assert not any("no chatops process was running" in text for text in thread_texts(bot, paged))


async def test_a_page_that_went_through_but_was_answered_500_is_not_sent_twice(
    bot: BotHarness, clock: FakeClock
) -> None:
    """The DM reached Slack, the answer did not: the retry finds it by its metadata and records it."""
    group = await fire(bot, critical(clock))
    bot.emulator.faults.add("applied_then_500", methods=["chat.postMessage"], count=1)
    await tick_at(bot, clock, timedelta(0))
    assert len(pages_to(bot, "U0ALICE")) == 1
    assert (await group_of(bot, group.id)).pages == ()
    await tick_at(bot, clock, LEASE + timedelta(seconds=1))
    paged: AlertGroup = await group_of(bot, group.id)
    assert len(pages_to(bot, "U0ALICE")) == 1, "the page was sent twice"
    assert [p.step for p in paged.pages] == [0]
    [(_channel, ts)] = paged.pages[0].dms.items()
    assert ts == pages_to(bot, "U0ALICE")[0]["ts"]
    await tick_at(bot, clock, timedelta(minutes=5))  # step 2 goes on as usual
    assert len(pages_to(bot, "U0CAROL")) == 1


async def test_a_process_killed_between_sending_a_page_and_recording_it_leaves_one_note(
    bot: BotHarness, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DM went out, then the process stopped before the page was recorded (here: the record's transaction never
    runs). The retry finds the DM and records it; the thread says "Paging" once. Before, the note was queued between
    the DM and the record, so the retry queued a second one."""
    group = await fire(bot, critical(clock))
    with monkeypatch.context() as patch:
        patch.setattr(Pager, "_record", killed_before_the_record)
        await tick_at(bot, clock, timedelta(0))
    assert len(pages_to(bot, "U0ALICE")) == 1
    assert (await group_of(bot, group.id)).pages == ()

    await tick_at(bot, clock, LEASE + timedelta(seconds=1))
    paged = await group_of(bot, group.id)
    assert len(pages_to(bot, "U0ALICE")) == 1, "the page was sent twice"
    assert [p.step for p in paged.pages] == [0]
    notes = await thread_lines_once_sent(bot, paged, "Paging")
    assert len(notes) == 1, notes


async def test_a_reminder_interrupted_before_its_record_is_sent_and_noted_once(
    bot: BotHarness, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same for the acknowledgement reminder: the retry finds the reminder DM instead of sending another, and the
    thread says "Reminded" once."""
    group = await fire(bot, critical(clock))
    await tick_at(bot, clock, timedelta(0))
    clock.now = T0 + timedelta(minutes=1)
    await command(bot, f"ack {group.id}", "U0ALICE", "/alerts")
    with monkeypatch.context() as patch:
        patch.setattr(Pager, "_record", killed_before_the_record)
        await tick_at(bot, clock, timedelta(hours=2, minutes=1))
    assert (await group_of(bot, group.id)).reminders == 0
    await tick_at(bot, clock, timedelta(hours=2, minutes=1) + LEASE + timedelta(seconds=1))
    reminded = await group_of(bot, group.id)
    assert reminded.reminders == 1
    assert len([m for m in dms(bot, "U0ALICE") if "still firing" in str(m.get("text"))]) == 1, "reminded twice"
    notes = await thread_lines_once_sent(bot, reminded, "Reminded")
    assert len(notes) == 1, notes
