"""Incidents made public flow to Statuspage: the bot's real web app, the Slack emulator, a real Redis and the local
Statuspage stand-in (tests/statuspage_server.py); time is a FakeClock and the test runs the leader's tick itself.

Only text given with `/incident public` leaves; status, severity and resolution follow with component states; a
Statuspage outage, a lost answer or a restart delays an update but never loses or repeats it."""

from __future__ import annotations

import html
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web

from bot.emulator import SlackEmulator
from bot.shell.config import ChatopsConfig, parse_config
from tests.conftest import (
    BotHarness,
    FakeClock,
    fake_deploy_argv,
    start_bot,
    start_site,
)
from tests.state import state
from tests.statuspage_server import StatuspageServer
from tests.waiting import eventually

API_KEY = "sp-test-key-0123456789abcdef"
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
INTERNAL = ("Primary DB failover botched", "bob fat-fingered the replica", "U0ALICE", "U0BOB", "inc-2026")


def config(api_url: str, *, component: str = "cmp_web") -> ChatopsConfig:
    return parse_config(
        f"""
roles: {{admins: [U0DEMO], deployers: [U0DEMO], responders: [U0DEMO, U0ALICE, U0BOB]}}
services:
  web:
    channel: "#deploys"
    environments: {{production: {{deployer: {{kind: command, argv: {fake_deploy_argv()}}}}}}}
incidents:
  announce_channel: "#incidents"
  severities:
    sev1: {{description: "Complete outage", respond_within: 15m}}
    sev2: {{description: "Partial outage", respond_within: 30m}}
scheduler: {{tick: 1m}}
integrations:
  statuspage: {{page_id: pg1, api_key_env: CHATOPS_TEST_STATUSPAGE_KEY, api_url: "{api_url}/v1",
               components: {{web: {component}}}}}
""",
        "statuspage.yaml",
    )


@pytest.fixture
async def statuspage(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[StatuspageServer, str]]:
    monkeypatch.setenv("CHATOPS_TEST_STATUSPAGE_KEY", API_KEY)
    server = StatuspageServer(page_id="pg1", api_key=API_KEY)
    server.add_component("cmp_web", "Website")
    runner, origin = await start_site(server.app())
    yield server, origin
    await runner.cleanup()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


async def running(
    emulator: SlackEmulator, redis_url: str, origin: str, clock: FakeClock, **extra: str
) -> tuple[BotHarness, web.AppRunner]:
    return await start_bot(emulator, redis_url, config(origin, **extra), clock=clock)


async def command(bot: BotHarness, text: str) -> str:
    result = await bot.emulator.send_command(command="/incident", text=text, user_id="U0DEMO", channel_id="C0GENERAL")
    assert result.status == 200 and result.json is not None, result
    return html.unescape(result.json["text"])


async def declared(bot: BotHarness) -> str:
    incident = await bot.deps.incidents.declare("sev1", INTERNAL[0], "U0DEMO", service="web")
    await bot.deps.incidents.changes.update(incident, INTERNAL[1], "U0BOB")
    return incident.id


async def accepted(bot: BotHarness, server: StatuspageServer, count: int, clock: FakeClock) -> None:
    """Runs the tick (moving time past any backoff) until Statuspage holds `count` incident updates in all and
    chatops has nothing left to send."""

    async def done() -> bool:
        await bot.deps.incidents.tick()
        clock.advance(timedelta(minutes=6))
        left = [await bot.deps.incidents.public.pending(i) for i in await state(bot).incidents.recent_ids(10)]
        return sum(len(i["incident_updates"]) for i in server.incidents.values()) >= count and not any(left)

    await eventually(done, f"{count} incident updates on Statuspage")


def sent(server: StatuspageServer) -> str:
    return json.dumps([body for _, _, body in server.requests])


async def test_public_updates_flow_to_statuspage_with_component_states(
    emulator: SlackEmulator,
    redis_url: str,
    statuspage: tuple[StatuspageServer, str],
    clock: FakeClock,
) -> None:
    server, origin = statuspage
    bot, runner = await running(emulator, redis_url, origin, clock)
    try:
        inc = await declared(bot)
        await bot.deps.incidents.tick()
        assert server.requests == []  # nothing public yet: nothing leaves
        answer = await command(bot, f"public {inc} Checkout is failing for some customers. We are investigating.")
        assert "Public update for INC-1" in answer, answer
        await accepted(bot, server, 1, clock)
        (created,) = server.incidents.values()
        assert created["name"] == "Checkout is failing for some customers"
        assert created["status"] == "investigating"
        assert created["incident_updates"][0]["body"] == "Checkout is failing for some customers. We are investigating."
        assert server.components["cmp_web"]["status"] == "major_outage"
        assert created["metadata"] == {"chatops": {"incident": inc}}

        await command(bot, f"status {inc} identified")
        await command(bot, f"public {inc} We found the cause and are rolling out a fix.")
        await command(bot, f"update {inc} {INTERNAL[1]} again")  # internal: never sent
        await accepted(bot, server, 3, clock)
        assert [u["status"] for u in created["incident_updates"]] == ["identified", "identified", "investigating"]
        assert created["incident_updates"][0]["body"] == "We found the cause and are rolling out a fix."

        await command(bot, f"resolve {inc} root cause: {INTERNAL[1]}")
        await accepted(bot, server, 4, clock)
        assert created["status"] == "resolved"
        assert server.components["cmp_web"]["status"] == "operational"
        assert created["incident_updates"][0]["body"] == ""  # the internal resolution summary stays inside
        for secret in INTERNAL:
            assert secret not in sent(server), secret
        assert all(m == "PATCH" for m, _, _ in server.requests[1:]) and len(server.requests) == 4

        timeline = await state(bot).incidents.timeline(inc)
        notes = [e.text for e in timeline if e.kind == "statuspage"]
        assert len(notes) == 4 and all(created["id"] in note for note in notes), notes
        assert created["incident_updates"][-1]["id"] in notes[0]
        assert await bot.deps.incidents.public.statuspage_id(inc) == created["id"]
    finally:
        await runner.cleanup()


async def test_an_incident_never_made_public_sends_nothing(
    emulator: SlackEmulator,
    redis_url: str,
    statuspage: tuple[StatuspageServer, str],
    clock: FakeClock,
) -> None:
    server, origin = statuspage
    bot, runner = await running(emulator, redis_url, origin, clock)
    try:
        inc = await declared(bot)
        await command(bot, f"status {inc} identified")
        await command(bot, f"severity {inc} sev2")
        await command(bot, f"resolve {inc} fixed")
        for _ in range(3):
            await bot.deps.incidents.tick()
        assert server.requests == []
        assert await bot.deps.incidents.public.pending(inc) == []
    finally:
        await runner.cleanup()


async def test_an_outage_and_a_restart_delay_but_lose_and_repeat_nothing(
    emulator: SlackEmulator,
    redis_url: str,
    statuspage: tuple[StatuspageServer, str],
    clock: FakeClock,
) -> None:
    server, origin = statuspage
    bot, runner = await running(emulator, redis_url, origin, clock)
    inc = await declared(bot)
    server.fail_next(2, 503)
    server.fail_next(1, 429)
    await command(bot, f"public {inc} Checkout is failing for some customers.")
    for _ in range(3):  # 503, 503, 429: each puts the queue back with a backoff
        await bot.deps.incidents.tick()
        clock.advance(timedelta(minutes=6))
    assert server.incidents == {} and len(server.requests) == 3
    await command(bot, f"status {inc} monitoring")
    await runner.cleanup()  # the bot goes away with both updates still queued

    bot, runner = await running(emulator, redis_url, origin, clock)
    try:
        server.lose_answers(1)  # Statuspage creates it but the answer is lost: the retry must find it, not re-create
        await bot.deps.incidents.tick()
        assert len(server.incidents) == 1
        clock.advance(timedelta(minutes=6))
        server.lose_answers(1)  # the same for the update
        await accepted(bot, server, 2, clock)
        (created,) = server.incidents.values()
        assert [u["status"] for u in created["incident_updates"]] == ["monitoring", "investigating"]
        assert created["incident_updates"][1]["body"] == "Checkout is failing for some customers."
        assert await bot.deps.incidents.public.pending(inc) == []
        notes = [e.text for e in await state(bot).incidents.timeline(inc) if e.kind == "statuspage"]
        assert len(notes) == 2, notes
    finally:
        await runner.cleanup()


async def test_a_refused_update_is_noted_with_statuspages_message_and_the_queue_goes_on(
    emulator: SlackEmulator,
    redis_url: str,
    statuspage: tuple[StatuspageServer, str],
    clock: FakeClock,
) -> None:
    server, origin = statuspage
    bot, runner = await running(emulator, redis_url, origin, clock, component="cmp_gone")
    try:
        inc = await declared(bot)
        await command(bot, f"public {inc} Checkout is failing.")
        await bot.deps.incidents.tick()
        assert len(server.requests) == 1 and server.incidents == {}
        assert await bot.deps.incidents.public.pending(inc) == []
        notes = [e.text for e in await state(bot).incidents.timeline(inc) if e.kind == "note"]
        assert any("Statuspage refused the public update (422): Components are invalid" in n for n in notes), notes
    finally:
        await runner.cleanup()


async def test_public_needs_text_and_a_missing_key_stops_start_up(
    emulator: SlackEmulator,
    redis_url: str,
    statuspage: tuple[StatuspageServer, str],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bot.shell.composition import StartupError, preflight
    from bot.shell.settings import Settings

    _server, origin = statuspage
    bot, runner = await running(emulator, redis_url, origin, clock)
    try:
        inc = await declared(bot)
        answer = await command(bot, f"public {inc}")
        assert "`public` needs the text customers see" in answer, answer
        assert (await state(bot).incidents.get(inc)).public_title == ""
    finally:
        await runner.cleanup()
    monkeypatch.delenv("CHATOPS_TEST_STATUSPAGE_KEY")
    settings = Settings.model_validate(
        {"SLACK_BOT_TOKEN": "xoxb-x", "SLACK_SIGNING_SECRET": "s", "REDIS_URL": redis_url}
    )
    with pytest.raises(StartupError, match="CHATOPS_TEST_STATUSPAGE_KEY is not set"):
        await preflight(settings, config(origin))


def test_check_config_names_what_is_wrong_in_the_statuspage_section() -> None:
    from bot.shell.config import ConfigError

    text = config("http://127.0.0.1:9").model_dump_json()  # a valid one parses
    assert text
    bad = f"""
roles: {{deployers: [U0DEMO]}}
services:
  web: {{environments: {{production: {{deployer: {{kind: command, argv: {fake_deploy_argv()}}}}}}}}}
integrations:
  statuspage: {{page_id: pg1, components: {{wbe: cmp_web}}, severity_status: {{sev9: major_outage}}}}
"""
    with pytest.raises(ConfigError) as error:
        parse_config(bad, "bad.yaml")
    assert "integrations.statuspage.components.wbe: there is no service 'wbe'; did you mean 'web'?" in str(error.value)
    assert "integrations.statuspage.severity_status.sev9: not a severity" in str(error.value)
    with pytest.raises(ConfigError, match="page_id: the id from the page's URL"):
        parse_config("integrations: {statuspage: {page_id: 'not a/page'}}", "bad.yaml")


async def test_the_declare_forms_post_publicly_creates_the_statuspage_incident(
    emulator: SlackEmulator,
    redis_url: str,
    statuspage: tuple[StatuspageServer, str],
    clock: FakeClock,
) -> None:
    server, origin = statuspage
    bot, runner = await running(emulator, redis_url, origin, clock)
    message = "Checkout is failing for some customers. We are investigating."
    form = {"title": {"title": INTERNAL[0]}, "severity": {"severity": "sev1"}, "service": {"service": "web"}}
    try:
        assert "Fill in the form" in await command(bot, "")
        (view,) = bot.emulator.open_views("U0DEMO")
        # One without the other is an error on the form, and nothing is declared or sent.
        ticked = await bot.emulator.send_view_submission(
            view_id=view["id"], values=form | {"public": {"public": "yes"}}
        )
        assert ticked.json == {
            "response_action": "errors",
            "errors": {"public_text": "Posting publicly needs the message customers see."},
        }
        typed = await bot.emulator.send_view_submission(
            view_id=view["id"], values=form | {"public_text": {"public_text": message}}
        )
        assert typed.json == {
            "response_action": "errors",
            "errors": {"public": "Tick Post publicly to publish the message, or clear it."},
        }
        assert await state(bot).incidents.open_ids() == []
        await bot.deps.incidents.tick()
        assert server.requests == [] and server.incidents == {}
        assert bot.emulator.open_views("U0DEMO"), "the form closed on an error"

        both = await bot.emulator.send_view_submission(
            view_id=view["id"],
            values=form | {"public": {"public": "yes"}, "public_text": {"public_text": f"  {message}\n"}},
        )
        assert both.status == 200 and not both.json, both
        assert bot.emulator.open_views("U0DEMO") == []
        (inc,) = await state(bot).incidents.open_ids()
        incident = await state(bot).incidents.get(inc)
        assert incident is not None and incident.public_title == "Checkout is failing for some customers"
        await accepted(bot, server, 1, clock)
        (created,) = server.incidents.values()
        assert created["name"] == "Checkout is failing for some customers"
        assert created["status"] == "investigating"
        assert [u["body"] for u in created["incident_updates"]] == [message]
        assert created["incident_updates"][0]["affected_components"] == [
            {"code": "cmp_web", "name": "Website", "old_status": "operational", "new_status": "major_outage"}
        ]
        assert server.components["cmp_web"]["status"] == "major_outage"
        assert created["metadata"] == {"chatops": {"incident": inc}}
        assert len(server.requests) == 1 and server.requests[0][0] == "POST"
        for secret in INTERNAL:  # the internal title, people and channel never leave
            assert secret not in sent(server), secret
        notes = [e.text for e in await state(bot).incidents.timeline(inc) if e.kind == "statuspage"]
        assert len(notes) == 1 and created["id"] in notes[0], notes
    finally:
        await runner.cleanup()
