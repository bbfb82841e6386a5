"""PagerDuty both ways, end to end: the bot's real web app, the Slack emulator, a real Redis, and a local
PagerDuty (tests/pagerduty_server.py) that validates events as PagerDuty's docs say; time is a FakeClock and the
test runs the escalation tick where the scheduler would. The outbox's own loop sends events; tests poll for them."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from bot.alerts.model import AlertGroup
from bot.emulator import SlackEmulator
from bot.shell.composition import StartupError, preflight
from bot.shell.config import ChatopsConfig, ConfigError, parse_config
from tests.conftest import BotHarness, FakeClock, make_settings, start_bot, start_site
from tests.pagerduty_server import (
    Fault,
    PagerDutyServer,
    send_webhook,
    sign,
    webhook_body,
)
from tests.state import state
from tests.test_incidents import declared
from tests.test_oncall import T0, critical, fire, group_of, pages_to, thread_texts
from tests.waiting import eventually

ROUTING_KEY = "R0" + "a" * 30  # Events API integration keys are 32 characters
SECRET = "pd-webhook-secret-" + "x" * 14
CONFIG = """
roles: {admins: [U0DEMO], responders: [U0DEMO, U0ALICE, U0BOB]}
alerts:
  default_channel: "#alerts"
  group_wait: 0s
  routes:
    - {match: {severity: critical}, escalation: critical}
integrations:
  pagerduty:
    routing_keys: {platform: TEST_PD_ROUTING_KEY}
    events_url: "__PD__/v2/enqueue"
    webhook_secret_env: TEST_PD_WEBHOOK_SECRET
    api_url: "__PD__"
    api_token_env: TEST_PD_API_TOKEN
oncall:
  rotations:
    primary: {members: [U0BOB], shift: 1w, handoff: "monday 09:00", timezone: Europe/Berlin, start: 2026-01-05}
  escalation_policies:
    critical:
      steps:
        - {notify: primary, after: 0m}
        - {notify: {pagerduty: platform}, after: 5m}
        - {notify: "#incidents", after: 15m, mention: "@here"}
scheduler: {tick: 1m, lease: 20s}
"""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def pagerduty(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[PagerDutyServer]:
    server = PagerDutyServer()
    server.users["PALICE1"] = {"name": "Alice Adams", "email": "alice@acme.example"}
    runner, server.url = await start_site(server.app())
    monkeypatch.setenv("TEST_PD_ROUTING_KEY", ROUTING_KEY)
    monkeypatch.setenv("TEST_PD_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("TEST_PD_API_TOKEN", server.api_token)
    yield server
    await runner.cleanup()


@pytest.fixture
def bot_config(pagerduty: PagerDutyServer) -> ChatopsConfig:
    return parse_config(CONFIG.replace("__PD__", pagerduty.url), "pagerduty.yaml")


async def at(bot: BotHarness, clock: FakeClock, moment: timedelta) -> int:
    clock.now = T0 + moment
    return await bot.deps.pager.tick()


def webhook_url(bot: BotHarness) -> str:
    return f"{bot.url}/integrations/pagerduty"


async def triggered(bot: BotHarness, clock: FakeClock, pd: PagerDutyServer) -> AlertGroup:
    """Fires an alert nobody acknowledges and walks it to the PagerDuty step; returns the group."""
    group = await fire(bot, critical(clock))
    await at(bot, clock, timedelta(0))
    assert len(pages_to(bot, "U0BOB")) == 1
    await at(bot, clock, timedelta(minutes=5))
    await eventually(lambda: len(pd.accepted_for(group.id, "trigger")) == 1, "PagerDuty accepts the trigger")
    return await group_of(bot, group.id)


# -- outbound -------------------------------------------------------------------------------------------------


async def test_an_unacknowledged_alert_reaches_the_pagerduty_step_and_is_triggered_once(
    bot: BotHarness,
    clock: FakeClock,
    pagerduty: PagerDutyServer,
) -> None:
    group = await fire(bot, critical(clock))
    await at(bot, clock, timedelta(0))
    assert pagerduty.attempts == [], "PagerDuty was triggered before its step"
    assert await at(bot, clock, timedelta(minutes=5)) == 1
    await eventually(lambda: len(pagerduty.accepted_for(group.id)) == 1, "PagerDuty accepts the trigger")
    [event] = pagerduty.accepted
    assert event["routing_key"] == ROUTING_KEY and event["event_action"] == "trigger" and event["dedup_key"] == group.id
    payload = event["payload"]
    assert payload["severity"] == "critical" and payload["source"] == "db"
    assert payload["summary"] == "DatabaseDown: primary database unreachable"
    assert payload["custom_details"]["labels"] == {"alertname": "DatabaseDown", "service": "db"}
    slack_link = event["links"][0]
    assert slack_link["text"] == "Slack message" and f"/archives/{group.message_channel}/p" in slack_link["href"]
    assert pagerduty.alerts[(ROUTING_KEY, group.id)] == "triggered"

    paged = await group_of(bot, group.id)
    assert paged.pages[-1].pagerduty == "platform" and paged.pages[-1].step == 1
    await eventually(
        lambda: any("Triggering PagerDuty `platform` — step 2 of 3" in text for text in thread_texts(bot, paged)),
        "the thread says so",
    )
    await at(bot, clock, timedelta(minutes=6))
    await at(bot, clock, timedelta(minutes=15))  # the next step (a channel) goes on as usual
    await bot.deps.pager.tick()
    assert await state(bot).alerts.redis.hlen(state(bot).alerts.k("pd_events")) == 0
    assert len(pagerduty.attempts) == 1, "the trigger was sent more than once"


async def test_acknowledging_and_resolving_in_slack_is_sent_to_pagerduty_once_in_order(
    bot: BotHarness,
    clock: FakeClock,
    pagerduty: PagerDutyServer,
) -> None:
    group = await triggered(bot, clock, pagerduty)
    clock.now = T0 + timedelta(minutes=7)
    await bot.deps.alerts.acknowledge(group.id, "U0BOB", via="button")
    await eventually(lambda: pagerduty.alerts[(ROUTING_KEY, group.id)] == "acknowledged", "PagerDuty acknowledges")
    await bot.deps.alerts.unacknowledge(group.id, "U0BOB")
    clock.now = T0 + timedelta(minutes=8)
    await bot.deps.alerts.resolve(group.id, "U0BOB", via="command")
    await eventually(lambda: pagerduty.alerts[(ROUTING_KEY, group.id)] == "resolved", "PagerDuty resolves")
    assert [e["event_action"] for e in pagerduty.accepted_for(group.id)] == ["trigger", "acknowledge", "resolve"]
    assert all(e["routing_key"] == ROUTING_KEY for e in pagerduty.accepted)


async def test_an_alert_that_never_reached_pagerduty_sends_it_nothing(
    bot: BotHarness,
    clock: FakeClock,
    pagerduty: PagerDutyServer,
) -> None:
    group = await fire(bot, critical(clock))
    await at(bot, clock, timedelta(0))
    await bot.deps.alerts.acknowledge(group.id, "U0BOB", via="button")
    await bot.deps.alerts.resolve(group.id, "U0BOB", via="button")
    await at(bot, clock, timedelta(minutes=30))
    assert await bot.deps.pager.tick() == 0
    assert await state(bot).alerts.redis.hlen(state(bot).alerts.k("pd_events")) == 0
    assert pagerduty.attempts == []


async def test_pagerduty_refusing_an_event_is_logged_counted_and_not_retried(
    bot: BotHarness,
    clock: FakeClock,
    pagerduty: PagerDutyServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pagerduty.faults.append(
        Fault(
            400,
            {
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": ["'payload.source' is missing or blank"],
            },
        )
    )
    group = await fire(bot, critical(clock))
    await at(bot, clock, timedelta(0))
    await at(bot, clock, timedelta(minutes=5))
    store = state(bot).alerts
    await eventually(lambda: store.redis.xlen(store.k("pd_dead")), "the refusal is recorded")
    [(_, dead)] = await store.redis.xrange(store.k("pd_dead"))
    assert dead["group"] == group.id and "'payload.source' is missing or blank" in dead["error"]
    assert (await store.stats([clock.now]))["pagerduty_rejected"] == 1
    assert "'payload.source' is missing or blank" in caplog.text and ROUTING_KEY not in caplog.text
    await eventually(
        lambda: any("PagerDuty refused the trigger" in t for t in thread_texts(bot, group)), "the thread says so"
    )
    clock.now = T0 + timedelta(hours=1)
    await bot.deps.pager.tick()
    assert await bot.deps.pager.tick() == 0 and len(pagerduty.attempts) == 1, "a 400 was retried"


async def test_a_pagerduty_outage_delays_the_trigger_across_a_restart_without_loss_or_duplicate(
    emulator: SlackEmulator,
    redis_url: str,
    bot_config: ChatopsConfig,
    clock: FakeClock,
    pagerduty: PagerDutyServer,
) -> None:
    pagerduty.faults += [Fault(500), Fault(429, retry_after="30")]
    bot, runner = await start_bot(emulator, redis_url, bot_config, clock=clock)
    try:
        group = await fire(bot, critical(clock))
        await at(bot, clock, timedelta(0))
        await at(bot, clock, timedelta(minutes=5))
        await eventually(lambda: len(pagerduty.attempts) == 1, "the first attempt (500)")
        outbox = bot.deps.pager._outbox
        assert outbox is not None
        await eventually(lambda: _attempts(outbox, 1), "the failure is recorded")
    finally:
        await runner.cleanup()  # the bot stops with the event still owed to PagerDuty

    bot, runner = await start_bot(emulator, redis_url, bot_config, clock=clock)
    try:
        outbox = bot.deps.pager._outbox
        assert outbox is not None
        clock.now = T0 + timedelta(minutes=5, seconds=1)
        assert await outbox.drain() == 0 and len(pagerduty.attempts) == 1, "retried before its backoff"
        clock.now = T0 + timedelta(minutes=5, seconds=3)
        await eventually(lambda: len(pagerduty.attempts) == 2, "the second attempt (429)")
        await eventually(lambda: _attempts(outbox, 2), "the 429 is recorded")
        clock.now = T0 + timedelta(minutes=5, seconds=20)
        assert await outbox.drain() == 0 and len(pagerduty.attempts) == 2, "Retry-After: 30 was not honoured"
        clock.now = T0 + timedelta(minutes=5, seconds=40)
        await eventually(lambda: len(pagerduty.accepted) == 1, "PagerDuty accepts it")
        assert len(pagerduty.accepted_for(group.id, "trigger")) == 1
        await eventually(lambda: _empty(outbox), "the outbox is empty")
        clock.now = T0 + timedelta(minutes=10)
        await outbox.drain()
        assert len(pagerduty.attempts) == 3 and len(pagerduty.accepted) == 1, "the trigger was sent twice"
        paged = await group_of(bot, group.id)
        assert [p.pagerduty for p in paged.pages] == [None, "platform"], "the page was recorded twice or lost"
    finally:
        await runner.cleanup()


async def _attempts(outbox, count: int) -> bool:
    return [r["attempts"] for r in await outbox.pending()] == [count]


async def _empty(outbox) -> bool:
    return await outbox.pending() == []


# -- inbound --------------------------------------------------------------------------------------------------


async def test_a_signed_acknowledged_webhook_stops_escalation_and_is_recorded_via_pagerduty(
    bot: BotHarness,
    clock: FakeClock,
    pagerduty: PagerDutyServer,
) -> None:
    group = await triggered(bot, clock, pagerduty)
    clock.now = T0 + timedelta(minutes=6)
    body = webhook_body("incident.acknowledged", group.id)
    status, answer = await send_webhook(webhook_url(bot), body, signature=sign(body, SECRET), webhook_id="WH-1")
    assert (status, answer["status"]) == (200, "acknowledged"), answer

    acks = await bot.deps.alerts.acks()
    assert len(acks) == 1
    ack = acks[0]
    assert (ack["via"], ack["user"], ack["pagerduty_name"], ack["pagerduty_email"]) == (
        "pagerduty",
        "U0ALICE",
        "Alice Adams",
        "alice@acme.example",
    )
    assert float(ack["seconds_to_ack"]) == 6 * 60 and ack["step"] == "2"
    after = await group_of(bot, group.id)
    assert after.acked_by == "U0ALICE" and after.acked_via == "pagerduty" and after.pending is None
    await eventually(
        lambda: any("Acknowledged in PagerDuty by <@U0ALICE> after 6m" in t for t in thread_texts(bot, after)),
        "the thread says so",
    )
    channel = after.message_channel or after.channel
    await eventually(
        lambda: (
            "<@U0ALICE> in PagerDuty"
            in str(next(m for m in bot.emulator.messages(channel) if m["ts"] == after.message_ts))
        ),
        "the Slack message shows it",
    )

    assert await at(bot, clock, timedelta(minutes=15)) == 0, "escalation went on after PagerDuty's acknowledgement"
    assert [m for m in bot.emulator.messages("#incidents") if "Paged:" in str(m.get("text"))] == []
    # A replay (PagerDuty delivers at least once) is recorded once; nothing goes back to PagerDuty.
    status, answer = await send_webhook(webhook_url(bot), body, signature=sign(body, SECRET), webhook_id="WH-1")
    assert (status, answer["status"]) == (200, "duplicate")
    assert len(await bot.deps.alerts.acks()) == 1
    await bot.deps.pager.tick()
    assert [e["event_action"] for e in pagerduty.accepted] == ["trigger"]


async def test_a_resolved_webhook_by_someone_slack_does_not_know_resolves_with_their_name(
    bot: BotHarness,
    clock: FakeClock,
    pagerduty: PagerDutyServer,
) -> None:
    group = await triggered(bot, clock, pagerduty)
    clock.now = T0 + timedelta(minutes=9)
    body = webhook_body("incident.resolved", group.id)
    status, answer = await send_webhook(webhook_url(bot), body, signature=sign(body, SECRET))
    assert (status, answer["status"]) == (200, "resolved"), answer
    after = await group_of(bot, group.id)
    assert after.state == "resolved" and after.resolved_by == "pagerduty:PZED999" and after.resolved_via == "pagerduty"
    await eventually(
        lambda: any("Resolved in PagerDuty by Zed Outsider after 9m" in t for t in thread_texts(bot, after)),
        "the thread says so",
    )
    await bot.deps.pager.tick()
    assert [e["event_action"] for e in pagerduty.accepted] == ["trigger"], "PagerDuty's own resolve was sent back"


async def test_forged_malformed_and_foreign_webhooks_are_refused_and_change_nothing(
    bot: BotHarness,
    clock: FakeClock,
    pagerduty: PagerDutyServer,
) -> None:
    group = await triggered(bot, clock, pagerduty)
    body = webhook_body("incident.acknowledged", group.id)
    url = webhook_url(bot)
    assert (await send_webhook(url, body, signature=None))[0] == 401
    assert (await send_webhook(url, body, signature="v1=" + "0" * 64))[0] == 401
    assert (await send_webhook(url, body, signature=sign(body, "another-secret")))[0] == 401
    assert (await send_webhook(url, body, signature="v0=" + sign(body, SECRET)[3:]))[0] == 401
    tampered = body.replace(b"Alice Adams", b"Mallory Evil")
    status, answer = await send_webhook(url, tampered, signature=sign(body, SECRET))
    assert (status, answer) == (401, {"error": "bad signature"})
    assert (await send_webhook(url, b"{not json", signature=sign(b"{not json", SECRET)))[0] == 400
    assert (await send_webhook(url, b'{"messages": []}', signature=sign(b'{"messages": []}', SECRET)))[0] == 400
    other = webhook_body("incident.priority_updated", group.id)
    assert (await send_webhook(url, other, signature=sign(other, SECRET)))[0] == 204
    foreign = webhook_body("incident.acknowledged", "d3640fbd41094207a1c11e58e46b1662")
    assert (await send_webhook(url, foreign, signature=sign(foreign, SECRET)))[0] == 204
    assert await bot.deps.alerts.acks() == []
    assert (await group_of(bot, group.id)).acked_by is None
    # During a secret rotation PagerDuty signs with both: one matching signature is enough.
    rotated = f"{sign(body, 'old-secret')},{sign(body, SECRET)}"
    assert (await send_webhook(url, body, signature=rotated, webhook_id=secrets.token_hex(8)))[0] == 200
    assert (await group_of(bot, group.id)).acked_via == "pagerduty"


async def test_webhooks_are_refused_when_no_secret_is_configured(
    emulator: SlackEmulator,
    redis_url: str,
    clock: FakeClock,
    pagerduty: PagerDutyServer,
) -> None:
    text = CONFIG.replace("__PD__", pagerduty.url).replace("    webhook_secret_env: TEST_PD_WEBHOOK_SECRET\n", "")
    config = parse_config(text)
    bot, runner = await start_bot(emulator, redis_url, config, clock=clock)
    try:
        body = webhook_body("incident.acknowledged", "a-whatever")
        status, answer = await send_webhook(webhook_url(bot), body, signature=sign(body, SECRET))
        assert status == 404 and "webhook_secret_env" in answer["error"]
    finally:
        await runner.cleanup()


async def test_a_missing_integration_key_variable_stops_start_up_naming_it(
    emulator: SlackEmulator,
    redis_url: str,
    bot_config: ChatopsConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TEST_PD_ROUTING_KEY")
    settings = make_settings(api_url=emulator.api_url, redis_url=redis_url, signing_secret=emulator.signing_secret)
    with pytest.raises(StartupError, match="TEST_PD_ROUTING_KEY") as raised:
        await preflight(settings, bot_config)
    assert "integration key 'platform'" in str(raised.value)


async def test_an_incident_severity_that_pages_pagerduty_triggers_it_and_resolving_resolves_it(
    emulator: SlackEmulator,
    redis_url: str,
    clock: FakeClock,
    pagerduty: PagerDutyServer,
) -> None:
    text = (
        CONFIG.replace("__PD__", pagerduty.url)
        + """
incidents:
  severities:
    sev1: {description: Outage, respond_within: 15m, page: {pagerduty: platform}}
    sev2: {description: Degraded, respond_within: 30m}
"""
    )
    bot, runner = await start_bot(emulator, redis_url, parse_config(text, "incidents.yaml"), clock=clock)
    try:
        incident = await declared(bot, "declare sev1 Checkout is down")
        [page_id] = incident.page_ids
        await bot.deps.pager.tick()
        await eventually(
            lambda: len(pagerduty.accepted_for(page_id, "trigger")) == 1, "PagerDuty is triggered for the incident"
        )
        [event] = pagerduty.accepted_for(page_id)
        assert event["payload"]["severity"] == "critical" and "Checkout is down" in event["payload"]["summary"]
        await bot.deps.alerts.resolve(page_id, "U0ALICE", via="incident")
        await eventually(lambda: pagerduty.alerts[(ROUTING_KEY, page_id)] == "resolved", "PagerDuty resolves it")
    finally:
        await runner.cleanup()


def test_a_step_naming_an_unknown_integration_key_is_a_config_error() -> None:
    with pytest.raises(
        ConfigError,
        match=r"steps\[1\]\.notify: 'platfrom' is not under integrations.pagerduty"
        r".routing_keys; did you mean 'platform'\?",
    ):
        parse_config(
            CONFIG.replace("__PD__", "http://127.0.0.1:9").replace("{pagerduty: platform}", "{pagerduty: platfrom}"),
            "bad.yaml",
        )
    without = CONFIG.split("integrations:")[0] + "oncall:" + CONFIG.split("oncall:")[1]
    with pytest.raises(
        ConfigError, match=r"pages PagerDuty .'platform'. but integrations\.pagerduty is not configured"
    ):
        parse_config(without, "bad.yaml")
