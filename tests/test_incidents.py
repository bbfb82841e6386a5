"""Incidents end to end: the bot's real web app, the Slack emulator (signed requests, the real slack_sdk client) and a
real Redis; time is a FakeClock every service reads, and the test runs the ticks where the leader scheduler would."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.deploys.model import DeployRecord, DeployState
from bot.emulator import SlackEmulator
from bot.incidents.model import Incident
from bot.shell.config import ChatopsConfig, parse_config
from commands.incident import ADD_TO_TIMELINE
from integrations.alerts.model import Alert
from tests.conftest import BotHarness, FakeClock, fake_deploy_argv, hold_leader_lease, start_bot
from tests.state import state
from tests.waiting import eventually

CONFIG = f"""
roles: {{admins: [U0DEMO], deployers: [U0BOB], responders: [U0DEMO, U0ALICE, U0BOB]}}
services:
  web:
    channel: "#deploys"
    environments:
      production:
        deployer: {{kind: command, argv: {fake_deploy_argv()}, timeout: 30s}}
alerts:
  default_channel: "#alerts"
  group_wait: 0s
oncall:
  rotations:
    primary: {{members: [U0ALICE, U0BOB], shift: 1w, handoff: "monday 09:00", timezone: Europe/Berlin, \
               start: 2026-01-05}}
incidents:
  announce_channel: "#incidents"
  channel_prefix: inc
  severities:
    sev1: {{description: "Complete outage, data loss or security breach", respond_within: 15m, page: primary}}
    sev2: {{description: "Partial outage or major feature broken", respond_within: 30m, page: primary}}
    sev3: {{description: "Minor feature broken", respond_within: 2h}}
  responders: ["@sre"]
scheduler: {{tick: 1m}}
"""
# Monday 23 Nov 2026, 10:00 UTC: primary's week is Alice's.
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CHANNEL = "inc-20261123-checkout-errors-on-web"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def bot_config() -> ChatopsConfig:
    return parse_config(CONFIG, "incidents.yaml")


@pytest.fixture
def leads() -> bool:
    return False  # the tests run the leader's ticks by hand: no scheduled tick may take a page first


async def command(bot: BotHarness, text: str, *, user: str = "U0DEMO", channel: str = "C0GENERAL") -> str:
    result = await bot.emulator.send_command(command="/incident", text=text, user_id=user, channel_id=channel)
    assert result.status == 200 and result.json is not None, result
    return html.unescape(result.json["text"])


async def incident(bot: BotHarness, inc_id: str = "INC-1") -> Incident:
    found = await state(bot).incidents.get(inc_id)
    assert found is not None
    return found


async def settled(bot: BotHarness, inc_id: str = "INC-1") -> Incident:
    """Waits until Slack shows everything Redis has for the incident: every entry posted, and then (the bot idle)
    the topic, summary and announcement refreshed after the last post."""

    async def done() -> bool:
        found = await state(bot).incidents.get(inc_id)
        if found is None or not found.setup_done:
            return False
        entries = await state(bot).incidents.timeline(inc_id)
        return bool(entries) and await state(bot).incidents.published(inc_id) == entries[-1].id

    await eventually(done, f"every timeline entry of {inc_id} posted to Slack")
    await bot.idle()
    return await incident(bot, inc_id)


async def declared(bot: BotHarness, text: str = "declare sev2 Checkout errors on web") -> Incident:
    answer = await command(bot, text)
    assert "declared *INC-" in answer, answer
    return await settled(bot, answer.split("*")[1])


def texts(bot: BotHarness, channel: str, *, thread_ts: str | None = None) -> list[str]:
    found = bot.emulator.messages(channel)
    if thread_ts is not None:
        found = [m for m in found if m.get("thread_ts") == thread_ts and m["ts"] != thread_ts]
    return [html.unescape(str(m.get("text", ""))) for m in found if not m.get("ephemeral_to")]


def ephemerals(bot: BotHarness, channel: str, user: str) -> list[str]:
    return [
        html.unescape(str(m.get("text", ""))) for m in bot.emulator.messages(channel) if m.get("ephemeral_to") == user
    ]


def dms(bot: BotHarness, user: str) -> list[dict[str, Any]]:
    channel = bot.emulator.workspace.im_with(user, create=False)
    return bot.emulator.messages(channel.id) if channel else []


def blocks_text(message: dict[str, Any] | None) -> str:
    assert message is not None
    return html.unescape(json.dumps(message.get("blocks") or []))


# -- declaring ------------------------------------------------------------------------------------------------


async def test_declare_creates_the_channel_invites_pins_announces_and_pages(bot: BotHarness, clock: FakeClock) -> None:
    bot.emulator.workspace.add_channel(CHANNEL)  # someone took the first-choice name: Slack says name_taken
    inc = await declared(bot)

    assert inc.channel_name == f"{CHANNEL}-2" and inc.channel_id
    channel = bot.emulator.channel(inc.channel_id)
    assert {"U0DEMO", "U0ALICE", "U0BOB", "U0CAROL"} <= set(channel["members"])  # declarer, on call, @sre
    assert "INC-1 SEV2 investigating: Checkout errors on web" in channel["topic"]["value"]
    pinned = bot.emulator.state.pinned(inc.channel_id)
    assert len(pinned) == 1 and pinned[0]["ts"] == inc.summary_ts
    summary = blocks_text(pinned[0])
    assert (
        "SEV2" in summary and "investigating" in summary and "nobody yet" in summary and "2026-11-23 10:00Z" in summary
    )
    announce = bot.emulator.find_message("#incidents", inc.announce_ts or "")
    assert "INC-1 SEV2" in blocks_text(announce) and f"<#{inc.channel_id}>" in blocks_text(announce)

    # The page is an alert group posted in the incident channel; the escalation tick DMs whoever is on call.
    assert len(inc.page_ids) == 1
    assert await bot.deps.pager.tick() == 1
    page = [m for m in dms(bot, "U0ALICE") if "alerts.ack" in json.dumps(m.get("blocks"))]
    assert len(page) == 1 and "INC-1 SEV2: Checkout errors on web" in blocks_text(page[0])
    audit = [r.action for r in await bot.deps.audit.recent(50)]
    assert "incident.declare" in audit


async def test_updates_appear_in_the_channel_and_the_announce_thread_in_order(bot: BotHarness) -> None:
    inc = await declared(bot)
    assert inc.channel_id and inc.announce_ts
    for n in range(1, 4):
        answer = await command(bot, f"update Step {n}: rolled back <@U0ALICE|alice>'s change", channel=inc.channel_id)
        assert "Update posted for INC-1" in answer
    inc = await settled(bot)

    in_channel = [t for t in texts(bot, inc.channel_id) if "Step " in t]
    assert [t.split("Step ")[1][:1] for t in in_channel] == ["1", "2", "3"]
    assert "rolled back <@U0ALICE>'s change" in in_channel[0]
    thread = [t for t in texts(bot, "#incidents", thread_ts=inc.announce_ts) if "Step " in t]
    assert [t.split("Step ")[1][:1] for t in thread] == ["1", "2", "3"]
    assert "Step 3" in blocks_text(bot.emulator.find_message(inc.channel_id, inc.summary_ts or ""))
    assert "Step 3" in blocks_text(bot.emulator.find_message("#incidents", inc.announce_ts))

    await command(bot, "status identified", channel=inc.channel_id)
    inc = await settled(bot)
    assert "identified" in blocks_text(bot.emulator.find_message("#incidents", inc.announce_ts))
    assert any("Status investigating → identified" in t for t in texts(bot, "#incidents", thread_ts=inc.announce_ts))


async def test_raising_the_severity_pages_per_the_new_severity(bot: BotHarness) -> None:
    inc = await declared(bot, "declare sev3 Search is slow")
    assert inc.page_ids == ()  # sev3 pages nobody
    answer = await command(bot, f"severity {'INC-1'} sev1")
    assert "INC-1 is now *SEV1*" in answer
    inc = await settled(bot)
    assert len(inc.page_ids) == 1 and [c.severity for c in inc.severity_history] == ["sev3", "sev1"]
    assert await bot.deps.pager.tick() == 1
    assert any("INC-1 SEV1: Search is slow" in blocks_text(m) for m in dms(bot, "U0ALICE"))
    assert any("Severity raised: SEV3 → SEV1" in t for t in texts(bot, "#incidents", thread_ts=inc.announce_ts))


async def test_resolve_closes_the_incident_and_records_the_durations(bot: BotHarness, clock: FakeClock) -> None:
    inc = await declared(bot)
    assert inc.channel_id
    clock.advance(timedelta(minutes=4))
    assert "<@U0ALICE> is INC-1's incident commander" in await command(
        bot, "commander <@U0ALICE|alice>", channel=inc.channel_id
    )
    clock.advance(timedelta(hours=1))
    answer = await command(bot, "resolve Rolled back the bad config", user="U0ALICE", channel=inc.channel_id)
    assert "INC-1 resolved: commander after 4m, resolved after 1h 4m" in answer
    inc = await settled(bot)

    assert inc.status == "resolved" and inc.resolution == "Rolled back the bad config" and inc.deadline is None
    assert await state(bot).incidents.open_ids() == []
    figures = await state(bot).incidents.figures()
    assert figures[0]["incident"] == "INC-1" and figures[0]["seconds_to_commander"] == "240.000"
    assert figures[0]["seconds_to_resolve"] == "3840.000"
    page = await bot.deps.alerts.get(inc.page_ids[0])
    assert page is not None and page.state == "resolved"
    assert "resolved" in blocks_text(bot.emulator.find_message("#incidents", inc.announce_ts or ""))
    assert "is resolved" in await command(bot, "update more", channel=inc.channel_id)


# -- the postmortem ---------------------------------------------------------------------------------------------


async def test_postmortem_has_the_timeline_alerts_acks_and_deploys_of_the_window(
    bot: BotHarness, clock: FakeClock
) -> None:
    def deploy(version: str, at: datetime, kind: str = "deploy") -> DeployRecord:
        return DeployRecord(
            id=f"d-{version}",
            kind=kind,
            service="web",
            environment="production",
            version=version,
            previous_version="v1",
            requested_by="U0BOB",
            state=DeployState.SUCCEEDED,
            created_at=at,
            updated_at=at,
        )

    store = state(bot).deploys
    await store.create(deploy("v0-before", T0 - timedelta(days=1)))
    inc = await declared(bot)
    assert inc.channel_id
    clock.advance(timedelta(minutes=2))
    await store.create(deploy("v2-during", clock.now))
    await bot.deps.pager.tick()
    page = next(m for m in dms(bot, "U0ALICE") if "alerts.ack" in json.dumps(m.get("blocks")))
    await bot.emulator.send_block_action(
        channel=page["channel"], message_ts=page["ts"], action_id="alerts.ack", user_id="U0ALICE"
    )
    await eventually(lambda: _acked(bot, inc.page_ids[0]), "the page acknowledged")
    await command(bot, "update Rolled back web", channel=inc.channel_id)
    clock.advance(timedelta(minutes=10))
    await command(bot, "resolve Config reverted", channel=inc.channel_id)
    clock.advance(timedelta(minutes=10))
    await store.create(deploy("v3-after", clock.now))
    answer = await final_answer(bot, inc, await command(bot, "postmortem", channel=inc.channel_id))
    assert "Postmortem draft for INC-1 uploaded" in answer, answer

    shared = [m for m in bot.emulator.messages(inc.channel_id) if m.get("files")]
    assert len(shared) == 1
    markdown = bot.emulator.file_content(shared[0]["files"][0]["id"]).decode()
    assert markdown.startswith("# Postmortem: INC-1 Checkout errors on web")
    for heading in (
        "## Summary",
        "## Impact window",
        "## Severity history",
        "## Timeline",
        "## Alerts and pages",
        "## Deploys and rollbacks in the window",
        "## Action items",
    ):
        assert heading in markdown
    assert "update: Rolled back web" in markdown and "resolved: Resolved after 12m: Config reverted" in markdown
    assert f"`{inc.page_ids[0]}`" in markdown and "@alice after 2m via dm" in markdown
    assert "v2-during" in markdown and "v0-before" not in markdown and "v3-after" not in markdown


async def _acked(bot: BotHarness, group_id: str) -> bool:
    group = await bot.deps.alerts.get(group_id)
    return group is not None and group.acked_by is not None


# -- bad input and permissions --------------------------------------------------------------------------------


async def test_bad_input_gets_a_precise_error_and_changes_nothing(bot: BotHarness) -> None:
    answer = await command(bot, "declare sev9 Checkout errors")
    assert "`sev9` is not a severity. Use one of: `sev1`" in answer and "Usage:" in answer
    answer = await command(bot, "declare sev2   ")
    assert "An incident needs a title after the severity" in answer
    answer = await command(bot, "update Rolled back web")
    assert "This is not an incident channel, so name the incident" in answer and "Open incidents: none" in answer
    answer = await command(bot, "update INC-42 Rolled back web")
    assert "There is no incident `INC-42`" in answer
    answer = await command(bot, "frobnicate")
    assert "`frobnicate` is not an /incident command" in answer

    redis = state(bot).redis
    assert await redis.keys("*{incidents}*") == []
    assert not [c for c in bot.emulator.calls_to("conversations.create")]
    assert not [r for r in await bot.deps.audit.recent(50) if r.action.startswith("incident.")]


async def test_only_the_incidents_people_may_change_it(bot: BotHarness) -> None:
    bot.emulator.workspace.add_user("U0EVE", "eve")
    inc = await declared(bot)
    assert inc.channel_id
    answer = await command(bot, "update I should not", user="U0EVE", channel=inc.channel_id)
    assert answer.startswith(":no_entry: Only INC-1's declarer") and "/incident role" in answer
    message = bot.emulator.post_as_user(inc.channel_id, "U0ALICE", "a message")
    await bot.emulator.send_message_shortcut(
        channel=inc.channel_id, message_ts=message["ts"], callback_id=ADD_TO_TIMELINE, user_id="U0EVE"
    )
    await eventually(
        lambda: _count(ephemerals(bot, inc.channel_id, "U0EVE"), "Only INC-1's declarer", 2),
        "U0EVE told twice that only INC-1's people may change it",
    )
    assert [e.kind for e in await state(bot).incidents.timeline("INC-1")] == ["declared", "page"]
    denied = [r for r in await bot.deps.audit.recent(50) if r.result == "denied"]
    assert {r.action for r in denied} == {"incident.update", "incident.note"}
    # Anyone may read, and anyone given a role may change it.
    assert "INC-1 timeline" in await command(bot, "timeline INC-1", user="U0EVE")
    await command(bot, "role scribe <@U0EVE|eve>", channel=inc.channel_id)
    assert "Update posted" in await command(bot, "update now I may", user="U0EVE", channel=inc.channel_id)
    assert "U0EVE" in bot.emulator.channel(inc.channel_id)["members"]


async def _has(found: list[str], text: str) -> bool:
    return any(text in t for t in found)


async def _count(found: list[str], text: str, count: int) -> bool:
    return sum(text in t for t in found) >= count


# -- restarts and deadlines ----------------------------------------------------------------------------------


async def test_an_update_after_a_restart_goes_to_the_same_channel_and_thread(
    emulator: SlackEmulator,
    redis_url: str,
    bot_config: ChatopsConfig,
    clock: FakeClock,
) -> None:
    await hold_leader_lease(redis_url, bot_config)
    first, runner = await start_bot(emulator, redis_url, bot_config, clock=clock)
    inc = await declared(first)
    assert inc.channel_id and inc.announce_ts
    await runner.cleanup()

    second, runner = await start_bot(emulator, redis_url, bot_config, clock=clock)
    try:
        assert "Update posted for INC-1" in await command(second, "update After the restart", channel=inc.channel_id)
        await settled(second)
        assert any("After the restart" in t for t in texts(second, inc.channel_id))
        assert any("After the restart" in t for t in texts(second, "#incidents", thread_ts=inc.announce_ts))
        assert "After the restart" in blocks_text(emulator.find_message(inc.channel_id, inc.summary_ts or ""))
        assert len(emulator.calls_to("conversations.create")) == 1
    finally:
        await runner.cleanup()


async def test_no_commander_within_respond_within_escalates_once(bot: BotHarness, clock: FakeClock) -> None:
    inc = await declared(bot)  # sev2: respond within 30m
    other = await declared(bot, "declare sev2 Payments slow")
    assert inc.channel_id and other.channel_id
    clock.advance(timedelta(minutes=5))
    await command(bot, "commander <@U0BOB|bob>", channel=other.channel_id)

    clock.advance(timedelta(minutes=24, seconds=59))
    assert await bot.deps.incidents.tick() == 0
    clock.now = T0 + timedelta(minutes=30)
    assert await bot.deps.incidents.tick() == 1  # INC-1 only: INC-2 has a commander
    inc = await settled(bot)
    assert len(inc.page_ids) == 2 and inc.deadline is None
    assert any("No commander 30m after the declaration" in t for t in texts(bot, inc.channel_id))
    assert any("No commander" in t for t in texts(bot, "#incidents", thread_ts=inc.announce_ts))
    assert len((await incident(bot, "INC-2")).page_ids) == 1
    clock.advance(timedelta(hours=1))
    assert await bot.deps.incidents.tick() == 0  # once, never again
    # The new page walks the escalation policy like any alert: Alice is paged for it.
    await bot.deps.pager.tick()
    assert any("no commander after 30m" in blocks_text(m) for m in dms(bot, "U0ALICE"))


async def test_an_unacknowledged_incident_page_escalates_after_respond_within(
    bot: BotHarness, clock: FakeClock
) -> None:
    inc = await declared(bot)  # sev2 pages primary (Alice) at once, then #incidents with @here after 30m
    assert inc.channel_id
    await command(bot, "commander <@U0BOB|bob>", channel=inc.channel_id)  # so only the page escalates
    assert await bot.deps.pager.tick() == 1
    assert any("Checkout errors on web" in blocks_text(m) for m in dms(bot, "U0ALICE"))
    clock.now = T0 + timedelta(minutes=29, seconds=59)
    assert await bot.deps.pager.tick() == 0
    clock.now = T0 + timedelta(minutes=30)
    assert await bot.deps.pager.tick() == 1
    paged = [m for m in bot.emulator.messages("#incidents") if "<!here>" in str(m.get("text"))]
    assert len(paged) == 1 and "Checkout errors on web" in paged[0]["text"]
    assert await bot.deps.incidents.tick() == 0  # a commander is set: no "no commander" page on top


# -- the form, the alert button and the shortcut -----------------------------------------------------------------


async def test_the_declare_form_checks_its_input_and_declares(bot: BotHarness) -> None:
    assert "Fill in the form" in await command(bot, "")
    view = bot.emulator.open_views("U0DEMO")[-1]
    result = await bot.emulator.send_view_submission(
        view_id=view["id"], values={"title": {"title": "  "}, "severity": {"severity": "sev1"}}
    )
    assert result.json == {"response_action": "errors", "errors": {"title": "Say what is broken, for whom."}}
    assert await state(bot).incidents.open_ids() == []
    result = await bot.emulator.send_view_submission(
        view_id=view["id"],
        values={"title": {"title": "Login broken"}, "severity": {"severity": "sev1"}, "service": {"service": "auth"}},
    )
    assert result.status == 200
    inc = await settled(bot)
    assert (inc.title, inc.severity, inc.service) == ("Login broken", "sev1", "auth")
    await eventually(
        lambda: _has(ephemerals(bot, "C0GENERAL", "U0DEMO"), "Declared *INC-1* SEV1: Login broken"),
        "the declarer told INC-1 was declared",
    )


async def test_the_alert_button_prefills_the_form_from_the_alert(bot: BotHarness, clock: FakeClock) -> None:
    alert = Alert(
        source="alertmanager",
        fingerprint="fp-db",
        status="firing",
        title="DatabaseDown",
        severity="critical",
        labels={"alertname": "DatabaseDown", "service": "db"},
        annotations={},
        summary="primary database unreachable",
        starts_at=clock.now,
        ends_at=None,
        links={},
    )
    await bot.deps.alerts.ingest([alert])
    store = state(bot).alerts

    async def posted() -> bool:
        return any(g.message_ts for g in await store.groups(await store.firing_ids()))

    await eventually(posted, "the alert posted")
    group = (await store.groups(await store.firing_ids()))[0]
    await bot.emulator.send_block_action(
        channel="#alerts", message_ts=group.message_ts or "", action_id="incidents.declare_from_alert", user_id="U0BOB"
    )

    async def opened() -> bool:
        return bool(bot.emulator.open_views("U0BOB"))

    await eventually(opened, "the declare form opened for U0BOB")
    view = bot.emulator.open_views("U0BOB")[-1]
    shown = json.dumps(view["blocks"])
    assert (
        '"initial_value": "DatabaseDown"' in shown
        and '"initial_value": "db"' in shown
        and '"value": "sev1"}, "initial_option"' not in shown
    )
    assert view["blocks"][1]["element"]["initial_option"]["value"] == "sev1"
    await bot.emulator.send_view_submission(
        view_id=view["id"],
        values={"title": {"title": "DatabaseDown"}, "severity": {"severity": "sev1"}, "service": {"service": "db"}},
    )
    inc = await settled(bot)
    assert inc.alert_ids == (group.id,) and inc.declared_by == "U0BOB" and inc.service == "db"
    thread = [t for t in texts(bot, "#alerts", thread_ts=group.message_ts) if "declared INC-1" in t]
    assert thread and f"<#{inc.channel_id}>" in thread[0]


async def test_add_to_timeline_adds_a_message_of_the_incident_channel(bot: BotHarness) -> None:
    inc = await declared(bot)
    assert inc.channel_id
    message = bot.emulator.post_as_user(inc.channel_id, "U0ALICE", "Seeing 502s from lb-3 since 09:58")
    result = await bot.emulator.send_message_shortcut(
        channel=inc.channel_id, message_ts=message["ts"], callback_id=ADD_TO_TIMELINE, user_id="U0BOB"
    )
    assert result.status == 200
    await eventually(
        lambda: _has(ephemerals(bot, inc.channel_id, "U0BOB"), "Added to INC-1's timeline"),
        "U0BOB told the message was added",
    )
    note = (await state(bot).incidents.timeline("INC-1"))[-1]
    assert (note.kind, note.by, note.author, note.text, note.source_ts) == (
        "note",
        "U0BOB",
        "U0ALICE",
        "Seeing 502s from lb-3 since 09:58",
        message["ts"],
    )

    elsewhere = bot.emulator.post_as_user("#general", "U0ALICE", "not an incident")
    await bot.emulator.send_message_shortcut(
        channel="#general", message_ts=elsewhere["ts"], callback_id=ADD_TO_TIMELINE, user_id="U0BOB"
    )
    await eventually(
        lambda: _has(ephemerals(bot, "C0GENERAL", "U0BOB"), "works on messages in an incident's channel"),
        "U0BOB told the shortcut works in incident channels only",
    )


async def test_list_timeline_and_the_oncall_handoff_show_open_incidents(bot: BotHarness) -> None:
    inc = await declared(bot)
    listed = await command(bot, "list")
    assert "1 open incident" in listed and "INC-1" in listed and f"<#{inc.channel_id}>" in listed
    assert "INC-1 timeline" in await command(bot, "timeline INC-1")
    assert "No open incidents" not in listed
    assert [line for line in await bot.deps.incidents.open_lines() if "INC-1" in line]


async def test_postmortem_is_written_when_slack_cannot_name_someone(bot: BotHarness, clock: FakeClock) -> None:
    inc = await declared(bot)
    assert inc.channel_id
    await command(bot, "role scribe @bob", channel=inc.channel_id)
    await command(bot, "role comms @alice", channel=inc.channel_id)
    await command(bot, "resolve Config reverted", channel=inc.channel_id)
    bot.emulator.users_info_unreachable.add("U0BOB")  # the connection drops: no answer at all
    bot.emulator.api.users_info_fails["U0ALICE"] = "user_not_found"  # Slack answers an error
    answer = await command(bot, "postmortem", channel=inc.channel_id)
    # slack_sdk retries the dropped connection (backing off 0.5 + 1 + 2 s), past the 2.2 s ack deadline: Slack gets
    # "Working on it…" in time, and the answer follows through the command's response_url.
    assert "Working on it" in answer, answer
    answer = await final_answer(bot, inc, answer)
    assert "Postmortem draft for INC-1 uploaded" in answer, answer
    failed = [c for c in bot.emulator.calls_to("users.info") if c.args.get("user") == "U0ALICE"]
    assert failed and failed[0].error == "user_not_found", "users.info was not asked about U0ALICE"
    shared = [m for m in bot.emulator.messages(inc.channel_id) if m.get("files")]
    markdown = bot.emulator.file_content(shared[0]["files"][0]["id"]).decode()
    assert (
        "- **Scribe:** @U0BOB" in markdown
        and "- **Comms:** @U0ALICE" in markdown
        and "- **Declared:**" in markdown
        and "by @demo" in markdown
    ), markdown


async def final_answer(bot: BotHarness, inc: Incident, answer: str) -> str:
    """A command's answer: the acknowledgement itself, or, when the command ran past the ack deadline (a loaded
    machine, a slow Slack) and was acknowledged "Working on it…", what followed through its response_url."""
    if "Working on it" not in answer:
        return answer
    assert inc.channel_id

    def followed() -> list[str]:
        return [
            str(m["text"])
            for m in bot.emulator.messages(inc.channel_id)
            if m.get("ephemeral_to") and "Working on it" not in str(m.get("text"))
        ]

    await eventually(followed, "the command's answer through response_url")
    return followed()[-1]
