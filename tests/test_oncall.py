"""On-call end to end with a controlled clock: the bot's real web app, the Slack emulator and a real Redis; time is
a FakeClock every service reads, and the test calls the escalation tick where the scheduler would."""

from __future__ import annotations

import asyncio
import html
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.alerts.model import AlertGroup
from bot.shell.config import ChatopsConfig, parse_config
from integrations.alerts.model import Alert
from tests.conftest import BotHarness, FakeClock
from tests.state import state
from tests.waiting import eventually

CONFIG = """
roles: {admins: [U0DEMO], responders: [U0DEMO, U0ALICE, U0BOB]}
alerts:
  default_channel: "#alerts"
  group_wait: 0s
  routes:
    - {match: {severity: critical}, escalation: default}
oncall:
  rotations:
    primary:   {members: [U0ALICE, U0BOB], shift: 1w, handoff: "monday 09:00", timezone: Europe/Berlin, \
                start: 2026-01-05}
    secondary: {members: [U0CAROL], shift: 1d, handoff: "09:00", timezone: America/New_York, start: 2026-01-05}
  handoff_channel: "#oncall"
  escalation_policies:
    default:
      steps:
        - {notify: primary, after: 0m}
        - {notify: secondary, after: 5m}
        - {notify: "#incidents", after: 15m, mention: "@here"}
      repeat: 1
  ack_reminder: 2h
scheduler: {tick: 1m}
"""
# Monday 23 Nov 2026, 10:00 UTC: primary's week began at 09:00 Berlin (08:00 UTC) and is Alice's (week 46 of 2).
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def bot_config() -> ChatopsConfig:
    return parse_config(CONFIG, "oncall.yaml")


def critical(
    clock: FakeClock, fingerprint: str = "fp-db", title: str = "DatabaseDown", status: str = "firing"
) -> Alert:
    return Alert(
        source="alertmanager",
        fingerprint=fingerprint,
        status=status,
        title=title,
        severity="critical",
        labels={"alertname": title, "service": "db"},
        annotations={},
        summary="primary database unreachable",
        starts_at=clock.now,
        ends_at=clock.now if status == "resolved" else None,
        links={},
    )


async def fire(bot: BotHarness, alert: Alert) -> AlertGroup:
    """Ingests an alert and waits until its group's message is posted."""
    store = state(bot).alerts
    await bot.deps.alerts.ingest([alert])

    async def posted() -> AlertGroup | None:
        groups = await store.groups(await store.firing_ids())
        return next((g for g in groups if alert.fingerprint in g.members and g.message_ts), None)

    return await eventually(posted, f"the message of alert {alert.fingerprint} posted")


async def group_of(bot: BotHarness, group_id: str) -> AlertGroup:
    group = await bot.deps.alerts.get(group_id)
    assert group is not None
    return group


def dms(bot: BotHarness, user: str) -> list[dict[str, Any]]:
    channel = bot.emulator.workspace.im_with(user, create=False)
    return bot.emulator.messages(channel.id) if channel else []


def pages_to(bot: BotHarness, user: str) -> list[dict[str, Any]]:
    """Every page DMed to `user` (open, or closed after someone acted)."""
    return [m for m in dms(bot, user) if (m.get("blocks") or [{}])[0].get("text", {}).get("text", "").startswith("📟")]


def thread_texts(bot: BotHarness, group: AlertGroup) -> list[str]:
    assert group.message_ts
    return [
        html.unescape(str(m["text"]))
        for m in bot.emulator.messages(group.message_channel or group.channel)
        if m.get("thread_ts") == group.message_ts and m["ts"] != group.message_ts
    ]


def channel_pages(bot: BotHarness, channel: str) -> list[dict[str, Any]]:
    return [m for m in bot.emulator.messages(channel) if "Paged:" in str(m.get("text", ""))]


async def at(bot: BotHarness, clock: FakeClock, moment: timedelta) -> int:
    """Moves the clock to T0 + `moment` and runs one escalation tick; returns how many deadlines it handled."""
    clock.now = T0 + moment
    return await bot.deps.pager.tick()


async def command(bot: BotHarness, text: str, user: str, name: str = "/oncall") -> str:
    result = await bot.emulator.send_command(command=name, text=text, user_id=user, channel_id="C0GENERAL")
    assert result.status == 200 and result.json is not None, result
    return html.unescape(result.json["text"])


async def click(bot: BotHarness, message: dict[str, Any], channel: str, action: str, user: str) -> None:
    result = await bot.emulator.send_block_action(
        channel=channel, message_ts=message["ts"], action_id=action, user_id=user
    )
    assert result.status == 200


# -- the walk ---------------------------------------------------------------------------------------------


async def test_an_alert_nobody_acknowledges_walks_the_policy_on_schedule(bot: BotHarness, clock: FakeClock) -> None:
    group = await fire(bot, critical(clock))
    assert group.escalation_state == "paging" and group.pending_at == T0

    assert await at(bot, clock, timedelta(0)) == 1
    assert len(pages_to(bot, "U0ALICE")) == 1 and pages_to(bot, "U0CAROL") == []
    page = pages_to(bot, "U0ALICE")[0]
    assert "alerts.ack" in json.dumps(page["blocks"]) and "step 1 of 3, round 1 of 2" in json.dumps(page["blocks"])
    group = await group_of(bot, group.id)
    await eventually(
        lambda: any("Paging <@U0ALICE> (primary on call)" in t for t in thread_texts(bot, group)), "the thread says so"
    )

    assert await at(bot, clock, timedelta(minutes=4, seconds=59)) == 0
    assert pages_to(bot, "U0CAROL") == []
    assert await at(bot, clock, timedelta(minutes=5)) == 1
    assert len(pages_to(bot, "U0CAROL")) == 1

    assert await at(bot, clock, timedelta(minutes=14)) == 0
    assert await at(bot, clock, timedelta(minutes=15)) == 1
    posted = channel_pages(bot, "#incidents")
    assert len(posted) == 1 and "<!here>" in posted[0]["text"]

    # Round 2 starts 10 minutes (the gap between the last two steps) after the last step: 25m, 30m, 40m.
    assert await at(bot, clock, timedelta(minutes=24)) == 0
    assert await at(bot, clock, timedelta(minutes=25)) == 1
    assert len(pages_to(bot, "U0ALICE")) == 2
    assert await at(bot, clock, timedelta(minutes=30)) == 1
    assert await at(bot, clock, timedelta(minutes=40)) == 1
    group = await group_of(bot, group.id)
    assert group.escalation_state == "exhausted" and group.pending is None
    assert [(p.round, p.step, p.due - T0) for p in group.pages] == [
        (0, 0, timedelta(0)),
        (0, 1, timedelta(minutes=5)),
        (0, 2, timedelta(minutes=15)),
        (1, 0, timedelta(minutes=25)),
        (1, 1, timedelta(minutes=30)),
        (1, 2, timedelta(minutes=40)),
    ]
    await eventually(
        lambda: any("last step of `default` after 2 rounds" in t for t in thread_texts(bot, group)),
        "the thread says so",
    )
    assert await at(bot, clock, timedelta(hours=5)) == 0
    assert len(pages_to(bot, "U0ALICE")) == 2 and len(pages_to(bot, "U0CAROL")) == 2


async def test_acknowledging_from_the_dm_stops_the_walk_and_records_the_step(bot: BotHarness, clock: FakeClock) -> None:
    group = await fire(bot, critical(clock))
    await at(bot, clock, timedelta(0))
    await at(bot, clock, timedelta(minutes=5))
    carol_page = pages_to(bot, "U0CAROL")[0]
    clock.now = T0 + timedelta(minutes=7)
    # Carol is not a responder, but she was paged: her Acknowledge counts.
    await click(bot, carol_page, carol_page["channel"], "alerts.ack", "U0CAROL")
    await eventually(lambda: _acked(bot, group.id), "the alert group acknowledged")

    acks = await bot.deps.alerts.acks()
    assert len(acks) == 1
    ack = acks[0]
    assert (ack["user"], ack["via"], ack["step"], ack["round"], ack["rotation"]) == (
        "U0CAROL",
        "dm",
        "2",
        "1",
        "secondary",
    )
    assert float(ack["seconds_to_ack"]) == 7 * 60 and ack["paged"] == "U0ALICE,U0CAROL"

    assert await at(bot, clock, timedelta(minutes=15)) == 0
    assert channel_pages(bot, "#incidents") == []
    # Both pages lost their buttons and say who acknowledged.
    await eventually(lambda: _pages_closed(bot, ["U0ALICE", "U0CAROL"]), "the pages to U0ALICE and U0CAROL closed")


@pytest.mark.parametrize("mode", ["500", "html502", "429"])
async def test_a_page_slack_fails_to_close_is_closed_once_it_is_back(
    bot: BotHarness, clock: FakeClock, mode: str
) -> None:
    """Before: closing the page DMs was one chat.update each, made inline by whoever acted (the button's handler, the
    consumer for a resolve at the source): a 5xx left the page's buttons up for good, and a 429 was waited out there.
    Now the closing is queued with the change and the flusher makes it, retrying until Slack takes it."""
    group = await fire(bot, critical(clock))
    await at(bot, clock, timedelta(0))
    (page,) = pages_to(bot, "U0ALICE")
    bot.emulator.faults.add(mode, methods=["chat.update"], count=3, retry_after=2)
    clock.now = T0 + timedelta(minutes=3)
    await click(bot, page, page["channel"], "alerts.ack", "U0ALICE")
    await eventually(lambda: _acked(bot, group.id), "the alert group acknowledged")

    async def closed_as_time_passes() -> bool:
        clock.now += timedelta(seconds=3)  # retries are due on the services' clock
        return await _pages_closed(bot, ["U0ALICE"])

    await eventually(closed_as_time_passes, "the page to U0ALICE closed")
    failed_on = {c.args.get("channel") for c in bot.emulator.calls_to("chat.update") if c.fault}
    assert failed_on, "Slack failed some updates"

    async def nothing_left_to_close() -> bool:  # recorded just after Slack took the last update
        return await state(bot).alerts.page_outcome(group.id) is None

    await eventually(nothing_left_to_close, "the closing recorded as done")


async def test_a_resolve_at_the_source_closes_the_pages(bot: BotHarness, clock: FakeClock) -> None:
    """The consumer queues the closing with the change that resolved the group; the flusher makes it."""
    group = await fire(bot, critical(clock))
    await at(bot, clock, timedelta(0))
    assert pages_to(bot, "U0ALICE")
    clock.now = T0 + timedelta(minutes=4)
    await bot.deps.alerts.ingest([critical(clock, status="resolved")])

    async def closed() -> bool:
        (page,) = pages_to(bot, "U0ALICE")
        text = json.dumps(page["blocks"], ensure_ascii=False)
        return "alerts.ack" not in text and "Resolved at the source after 4m" in text

    await eventually(closed, "the page to U0ALICE closed")
    assert (await group_of(bot, group.id)).state == "resolved"


async def _acked(bot: BotHarness, group_id: str) -> bool:
    group = await bot.deps.alerts.get(group_id)
    return group is not None and group.acked_by is not None


async def _pages_closed(bot: BotHarness, users: list[str]) -> bool:
    pages = [m for user in users for m in dms(bot, user) if "📟" in json.dumps(m.get("blocks", []), ensure_ascii=False)]
    return bool(pages) and all(
        "alerts.ack" not in json.dumps(m["blocks"]) and "Acknowledged by" in json.dumps(m["blocks"]) for m in pages
    )


async def test_acknowledgements_from_every_place_are_one_record_each(bot: BotHarness, clock: FakeClock) -> None:
    by_command = await fire(bot, critical(clock, "fp-a", "DiskFull"))
    by_channel = await fire(bot, critical(clock, "fp-b", "QueueStuck"))
    await at(bot, clock, timedelta(0))
    clock.now = T0 + timedelta(minutes=2)
    assert "Acknowledged" in await command(bot, f"ack {by_command.id}", "U0BOB", "/alerts")
    message = next(m for m in bot.emulator.messages("#alerts") if m["ts"] == by_channel.message_ts)
    await click(bot, message, "#alerts", "alerts.ack", "U0ALICE")
    await eventually(lambda: _acked(bot, by_channel.id), "the channel alert acknowledged")
    acks = sorted(await bot.deps.alerts.acks(), key=lambda a: a["via"])
    assert [(a["group"], a["user"], a["via"], a["step"]) for a in acks] == [
        (by_channel.id, "U0ALICE", "button", "1"),
        (by_command.id, "U0BOB", "command", "1"),
    ]
    # A second acknowledgement is refused and writes nothing.
    assert "already acknowledged" in await command(bot, f"ack {by_command.id}", "U0ALICE", "/alerts")
    assert len(await bot.deps.alerts.acks()) == 2
    assert await at(bot, clock, timedelta(minutes=5)) == 0


async def test_resolving_stops_the_walk(bot: BotHarness, clock: FakeClock) -> None:
    group = await fire(bot, critical(clock))
    await at(bot, clock, timedelta(0))
    clock.now = T0 + timedelta(minutes=1)
    await bot.deps.alerts.ingest([critical(clock, status="resolved")])
    await eventually(lambda: _resolved(bot, group.id), "the alert group resolved")
    assert await at(bot, clock, timedelta(minutes=5)) == 0
    assert pages_to(bot, "U0CAROL") == []
    assert await state(bot).alerts.deadline_at(f"page|{group.id}|1|1") is None


async def _resolved(bot: BotHarness, group_id: str) -> bool:
    group = await bot.deps.alerts.get(group_id)
    return group is not None and group.state == "resolved"


async def test_still_firing_after_the_reminder_reminds_then_reescalates(bot: BotHarness, clock: FakeClock) -> None:
    group = await fire(bot, critical(clock))
    await at(bot, clock, timedelta(0))
    clock.now = T0 + timedelta(minutes=1)
    await command(bot, f"ack {group.id}", "U0ALICE", "/alerts")
    assert await at(bot, clock, timedelta(hours=2)) == 0
    assert await at(bot, clock, timedelta(hours=2, minutes=1)) == 1
    reminders = [m for m in dms(bot, "U0ALICE") if "still firing 2h" in str(m.get("text"))]
    assert len(reminders) == 1
    group = await group_of(bot, group.id)
    assert group.acked_by == "U0ALICE" and group.reminders == 1

    assert await at(bot, clock, timedelta(hours=4, minutes=1)) == 1
    group = await group_of(bot, group.id)
    assert group.acked_by is None and group.escalation_state == "paging"
    assert group.escalation_started == T0 + timedelta(hours=4, minutes=1)
    await eventually(
        lambda: any("the acknowledgement is withdrawn. Escalating again." in t for t in thread_texts(bot, group)),
        "the thread says so",
    )
    assert await at(bot, clock, timedelta(hours=4, minutes=1)) == 1  # the new walk's first page
    assert len(pages_to(bot, "U0ALICE")) == 2
    # The acknowledgement stays in history: never overwritten.
    assert [a["user"] for a in await bot.deps.alerts.acks()] == ["U0ALICE"]


async def test_taking_an_acknowledgement_back_escalates_again(bot: BotHarness, clock: FakeClock) -> None:
    group = await fire(bot, critical(clock))
    await at(bot, clock, timedelta(0))
    clock.now = T0 + timedelta(minutes=1)
    await command(bot, f"ack {group.id}", "U0BOB", "/alerts")
    group = await group_of(bot, group.id)
    message = next(m for m in bot.emulator.messages("#alerts") if m["ts"] == group.message_ts)
    await bot.deps.alerts.flush()
    message = next(m for m in bot.emulator.messages("#alerts") if m["ts"] == group.message_ts)
    await click(bot, message, "#alerts", "alerts.unack", "U0BOB")
    await eventually(lambda: _paging(bot, group.id), "the alert group escalating again")
    assert await at(bot, clock, timedelta(minutes=1)) == 1
    assert len(pages_to(bot, "U0ALICE")) == 2


async def _paging(bot: BotHarness, group_id: str) -> bool:
    group = await bot.deps.alerts.get(group_id)
    return group is not None and group.escalation_state == "paging" and group.acked_by is None


async def test_a_deadline_claimed_by_a_process_that_died_comes_due_again(bot: BotHarness, clock: FakeClock) -> None:
    group = await fire(bot, critical(clock))
    claimed = await state(bot).alerts.claim_deadlines(T0)  # a process claims the page, then dies
    assert claimed == [f"page|{group.id}|1|0"]
    assert await at(bot, clock, timedelta(seconds=59)) == 0  # leased to the dead process
    assert await at(bot, clock, timedelta(seconds=61)) == 1
    assert len(pages_to(bot, "U0ALICE")) == 1
    group = await group_of(bot, group.id)
    assert group.pages[0].due == T0 and group.pages[0].at == T0 + timedelta(seconds=61)
    await eventually(lambda: any("paged 1m 1s late" in t for t in thread_texts(bot, group)), "the thread says so")


# -- /oncall ----------------------------------------------------------------------------------------------


async def test_oncall_now_shows_every_rotation_with_next(bot: BotHarness) -> None:
    text = await command(bot, "", "U0DEMO")
    assert "*primary*: <@U0ALICE> until Mon 30 Nov 09:00 CET · next <@U0BOB>" in text
    assert "*secondary*: <@U0CAROL> until Mon 23 Nov 15:00 CET" in text  # Demo lives in Berlin: 09:00 New York


async def test_schedule_is_in_the_viewers_timezone(bot: BotHarness) -> None:
    text = await command(bot, "schedule primary 2w", "U0BOB")  # Bob is in Asia/Kolkata
    lines = text.splitlines()
    assert lines[0] == "Mon 23 Nov 13:30 IST → Mon 30 Nov 13:30 IST  <@U0ALICE>"
    assert lines[1] == "Mon 30 Nov 13:30 IST → Mon 07 Dec 13:30 IST  <@U0BOB>"
    assert lines[2] == "Mon 07 Dec 13:30 IST → Mon 14 Dec 13:30 IST  <@U0ALICE>"  # overlaps the window's end
    assert len(lines) == 3


async def test_overrides_change_who_is_paged_and_are_announced(bot: BotHarness, clock: FakeClock) -> None:
    answer = await command(bot, 'override primary @bob for 4h --reason "Alice at the dentist"', "U0ALICE")
    override_id = answer.split("`")[1]
    assert answer.startswith(":repeat: <@U0BOB> covers *primary* from now until Mon 23 Nov 09:00 EST")  # Alice's zone
    announced = [html.unescape(str(m["text"])) for m in bot.emulator.messages("#oncall")]
    assert any(
        "<@U0BOB> covers *primary* from now until Mon 23 Nov 15:00 CET" in t
        and override_id in t  # the rotation's
        and "Alice at the dentist" in t
        for t in announced
    )

    text = await command(bot, "", "U0DEMO")
    assert (
        f"*primary*: <@U0BOB> (override `{override_id}`: Alice at the dentist) until Mon 23 Nov 15:00 CET · next "
        f"<@U0ALICE>" in text
    )
    assert override_id in await command(bot, "overrides", "U0DEMO")
    schedule = await command(bot, "schedule primary 1d", "U0DEMO")
    assert schedule.splitlines()[0] == "Mon 23 Nov 11:00 CET → Mon 23 Nov 15:00 CET  <@U0BOB> _(override)_"
    assert schedule.splitlines()[1] == "Mon 23 Nov 15:00 CET → Mon 30 Nov 09:00 CET  <@U0ALICE>"

    await fire(bot, critical(clock))
    await at(bot, clock, timedelta(0))
    assert len(pages_to(bot, "U0BOB")) == 1 and pages_to(bot, "U0ALICE") == []

    refused = await command(bot, f"override cancel {override_id}", "U0CAROL")
    assert "Only <@U0ALICE>, <@U0BOB> or an admin" in refused
    assert "Cancelled" in await command(bot, f"override cancel {override_id}", "U0ALICE")
    assert "*primary*: <@U0ALICE> until" in await command(bot, "", "U0DEMO")
    assert "already cancelled" in await command(bot, f"override cancel {override_id}", "U0ALICE")
    audit = [r.action for r in await bot.deps.audit.recent(20)]
    assert {"oncall.override", "oncall.override_cancel"} <= set(audit)


async def test_override_until_a_time_in_the_users_zone(bot: BotHarness) -> None:
    answer = await command(bot, "override secondary <@U0ALICE|alice> until tomorrow 09:00", "U0DEMO")
    assert "until Tue 24 Nov 09:00 CET" in answer
    record = (await bot.deps.oncall.active_overrides())[0]
    assert record.member == "U0ALICE" and record.ends == datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("override", "needs a rotation, a person and how long"),
        ("override tertiary @bob for 4h", "There is no rotation `tertiary` (rotations: `primary`, `secondary`)"),
        ("override primary @nobody for 4h", "There is nobody called `@nobody`"),
        ("override primary @bob for 1m", "An override lasts at least 5m"),
        ("override primary @bob for soon", "`soon` is not a duration"),
        ("override primary @bob until whenever", "`whenever` is not a time"),
        ("override primary @bob during lunch", "Say how long: `for 4h` or `until <time>`"),
        ("override cancel o-nope", "There is no override `o-nope`"),
        ("schedule", "`schedule` needs a rotation. Rotations: `primary`, `secondary`."),
        ("schedule primary 1y", "`1y` is not a duration"),
        ("schedule primary 6mo", "is not a duration"),
        ("schedule primary 100w", "The window is from 1 day to 12 weeks"),
        ("acks 0d", "The window is from 1 day to"),
        ("frobnicate", "`frobnicate` is not an /oncall command"),
    ],
)
async def test_bad_oncall_input_gets_a_precise_error_and_changes_nothing(
    bot: BotHarness, text: str, expected: str
) -> None:
    answer = await command(bot, text, "U0DEMO")
    assert expected in answer, answer
    assert await state(bot).overrides.all() == []
    assert bot.emulator.messages("#oncall") == []


async def test_acks_figures_per_person_and_rotation(bot: BotHarness, clock: FakeClock) -> None:
    for number, (user, minutes) in enumerate([("U0ALICE", 1), ("U0ALICE", 3), ("U0BOB", 10)]):
        clock.now = T0 + timedelta(hours=number)
        group = await fire(bot, critical(clock, f"fp-{number}", f"Alert{number}"))
        await bot.deps.pager.tick()
        clock.now += timedelta(minutes=minutes)
        await command(bot, f"ack {group.id}", user, "/alerts")
    text = await command(bot, "acks", "U0DEMO")
    assert "*3 acknowledgements in the last 7 days*" in text
    assert "<@U0ALICE>: 2 · 2m · 3m" in text and "<@U0BOB>: 1 · 10m · 10m" in text
    assert "`primary`: 3 · 4m 40s · 10m" in text
    only_bob = await command(bot, "acks @bob 30d", "U0DEMO")
    assert "*1 acknowledgement by <@U0BOB> in the last 30 days*" in only_bob and "U0ALICE>:" not in only_bob
    assert "No acknowledgements by <@U0CAROL>" in await command(bot, "acks <@U0CAROL> 7d", "U0DEMO")


# -- hand-offs --------------------------------------------------------------------------------------------


async def test_handoff_is_posted_once_with_open_and_acknowledged_alerts(bot: BotHarness, clock: FakeClock) -> None:
    clock.now = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
    assert not await bot.deps.oncall.handoff("primary")  # first run: records the current shift silently
    open_alert = await fire(bot, critical(clock, "fp-open", "OpenOne"))
    acked = await fire(bot, critical(clock, "fp-acked", "AckedOne"))
    await command(bot, f"ack {acked.id}", "U0BOB", "/alerts")

    clock.now = datetime(2026, 11, 30, 8, 0, 5, tzinfo=UTC)  # 09:00:05 in Berlin: Bob takes over from Alice
    results = await asyncio.gather(*(bot.deps.oncall.handoff("primary") for _ in range(3)))
    assert sorted(results) == [False, False, True]
    posted = bot.emulator.messages("#oncall")
    assert len(posted) == 1
    blocks = html.unescape(json.dumps(posted[0]["blocks"], ensure_ascii=False))
    assert "<@U0ALICE> → <@U0BOB>" in blocks and "on call until Mon 07 Dec 09:00 CET" in blocks
    assert (
        f"`{open_alert.id}` OpenOne" in blocks and f"`{acked.id}` AckedOne" in blocks and "acked by <@U0BOB>" in blocks
    )
    assert "Open incidents (0)" in blocks


async def test_a_missed_handoff_is_posted_once_late_with_a_note(bot: BotHarness, clock: FakeClock) -> None:
    clock.now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    await bot.deps.oncall.handoff("primary")
    clock.now = datetime(2026, 11, 30, 11, 0, tzinfo=UTC)  # three hours after the hand-off nobody ran
    assert await bot.deps.oncall.handoff("primary")
    assert not await bot.deps.oncall.handoff("primary")
    posted = bot.emulator.messages("#oncall")
    assert len(posted) == 1 and "posted 3h late" in json.dumps(posted[0]["blocks"])
