"""The raw intake of alert webhooks (issue 18): an Alertmanager body that is certainly valid is stored as it came, in
one Redis write, before the 2xx, and normalised by the stream's consumer; one the consumer cannot normalise is
dead-lettered, counted and logged, never dropped; Redis down answers 503 and stores nothing; and the edge's quick
check (`well_formed`, `valid_time`) never admits a body the full parser would refuse."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.emulator import SlackEmulator
from bot.platform.embedded_redis import EmbeddedRedis, RedisNotFound
from bot.shell.config import ChatopsConfig, parse_config
from integrations.alerts.alertmanager import parse_payload, well_formed
from integrations.alerts.source import WebhookRejected
from integrations.alerts.times import parse_time, valid_time
from tests.conftest import BotHarness, start_bot
from tests.state import state
from tests.waiting import eventually

TOKEN = "am-raw-token-51c8"
FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
CONFIG = """
roles: {admins: [U0DEMO]}
alerts:
  default_channel: "#alerts"
  group_wait: 0s
  sources:
    alertmanager: {token_env: TEST_AM_TOKEN}
"""


@pytest.fixture
def bot_config(monkeypatch: pytest.MonkeyPatch) -> ChatopsConfig:
    monkeypatch.setenv("TEST_AM_TOKEN", TOKEN)
    return parse_config(CONFIG, "raw.yaml")


def firing(*names: str) -> dict[str, Any]:
    """Alertmanager's real firing body (tests/fixtures) with one alert per name."""
    sample = json.loads((FIXTURES / "alertmanager-firing.json").read_text())
    template = sample["alerts"][0]
    sample["alerts"] = []
    for name in names:
        alert = copy.deepcopy(template)
        alert["labels"]["alertname"] = name
        alert["fingerprint"] = f"fp-{name}"
        sample["alerts"].append(alert)
    return sample


async def post(url: str, data: bytes) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/alerts/alertmanager", data=data, headers=headers) as response,
    ):
        return response.status, await response.json()


def posted(emulator: SlackEmulator, name: str) -> list[dict[str, Any]]:
    return [m for m in emulator.messages("#alerts") if name in m.get("text", "") and not m.get("thread_ts")]


async def test_a_2xx_means_the_body_is_in_the_stream_as_sent_then_it_is_delivered(bot: BotHarness) -> None:
    store = state(bot).alerts
    stream = store.k("stream")
    for n in range(5):  # each answer is checked at once: no waiting between the 2xx and the stream
        data = json.dumps(firing(f"Raw{n}a", f"Raw{n}b")).encode()
        assert await post(bot.url, data) == (200, {"accepted": 2, "truncated": 0})
        [(_, fields)] = await store.redis.xrevrange(stream, count=1)
        assert fields["source"] == "alertmanager" and fields["body"] == data.decode() and fields["count"] == "2"
    assert await store.redis.xlen(stream) == 5
    for n in range(5):
        for name in (f"Raw{n}a", f"Raw{n}b"):
            await eventually(lambda name=name: posted(bot.emulator, name), f"{name} posted to #alerts")


async def test_a_body_the_edge_cannot_vouch_for_still_gets_its_precise_400_and_stores_nothing(bot: BotHarness) -> None:
    store = state(bot).alerts
    body = firing("Bad")
    body["alerts"][0]["startsAt"] = "yesterday"
    assert await post(bot.url, json.dumps(body).encode()) == (
        400,
        {"error": "alerts[0].startsAt must be an RFC 3339 time like 2024-05-01T12:00:00Z"},
    )
    assert await store.redis.xlen(store.k("stream")) == 0


async def test_a_stored_body_that_cannot_be_normalised_is_dead_lettered_counted_and_logged(
    bot: BotHarness, caplog: pytest.LogCaptureFixture
) -> None:
    """Written as another replica (with a source this one lacks, or a newer version) could have written them."""
    caplog.set_level(logging.ERROR, logger="bot.alerts.pipeline")
    store = state(bot).alerts
    broken = await store.append_raw("alertmanager", b'{"version": "4", "alerts": [{"status": "on fire"}]}', 1, NOW)
    unknown = await store.append_raw("grafana", json.dumps(firing("FromGrafana")).encode(), 1, NOW)
    assert await post(bot.url, json.dumps(firing("AfterTheDead")).encode()) == (200, {"accepted": 1, "truncated": 0})
    await eventually(lambda: posted(bot.emulator, "AfterTheDead"), "the alert behind the dead entries posted")
    await eventually(lambda: _len(store, "dead", 2), "both entries in the dead-letter stream")
    dead = {fields["entry"]: fields for _, fields in await store.redis.xrange(store.k("dead"))}
    assert dead[broken]["source"] == "alertmanager" and "on fire" in dead[broken]["body"]
    assert "alerts[0].status" in dead[broken]["error"]
    assert "'grafana' is not configured" in dead[unknown]["error"] and "FromGrafana" in dead[unknown]["body"]
    assert await store.backlog() == 0
    async with aiohttp.ClientSession() as session, session.get(f"{bot.url}/metrics") as response:
        metrics = await response.text()
    assert 'chatops_alert_entries_dead_lettered_total{reason="unreadable"} 2.0' in metrics
    logged = [r.getMessage() for r in caplog.records if "dead-letter" in r.getMessage()]
    assert any(broken in line for line in logged) and any(unknown in line for line in logged)


async def _len(store: Any, part: str, expected: int) -> bool:
    return await store.redis.xlen(store.k(part)) == expected


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    """A Redis this test may stop and start."""
    try:
        server = await EmbeddedRedis(tmp_path / "redis").astart()
    except RedisNotFound as error:
        pytest.skip(str(error))
    yield server
    await server.astop()


async def test_redis_down_answers_503_to_every_waiting_webhook_and_acknowledges_nothing(
    emulator: SlackEmulator, own_redis: EmbeddedRedis, bot_config: ChatopsConfig
) -> None:
    bot, runner = await start_bot(emulator, own_redis.url, bot_config)
    try:
        own_redis.kill()
        answers = await asyncio.gather(*[post(bot.url, json.dumps(firing(f"Down{n}")).encode()) for n in range(8)])
        assert [status for status, _ in answers] == [503] * 8
        assert all("could not store the alerts; retry" in body["error"] for _, body in answers)
        await asyncio.to_thread(own_redis.start, same_port=True)  # back, empty: what was refused is not there
        store = state(bot).alerts
        data = json.dumps(firing("Retried")).encode()

        async def accepted() -> bool:
            return (await post(bot.url, data))[0] == 200

        await eventually(accepted, "the webhook accepted once Redis is back")
        entries = await store.redis.xrange(store.k("stream"))
        assert [fields["body"] for _, fields in entries] == [data.decode()]
        await eventually(lambda: posted(emulator, "Retried"), "the retried alert posted")
    finally:
        await runner.cleanup()


# -- the edge's quick check never admits what the full parser refuses -------------------------------------------

_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 3),
    st.text(max_size=6),
    st.sampled_from(
        [
            "firing",
            "resolved",
            "4",
            "0001-01-01T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-12-02T03:04:05.123456789Z",
            "2026-12-02T03:04:05+24:00",
            "fp-1",
            "fp 1",
            "http://x",
        ]
    ),
    st.lists(st.just({}), max_size=1),
    st.dictionaries(st.sampled_from(["a", "b"]), st.one_of(st.text(max_size=3), st.integers()), max_size=2),
)
_ALERT_KEYS = ["status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"]
_BODY_KEYS = ["version", "alerts", "truncatedAlerts", "groupKey", "externalURL", "commonLabels"]


@st.composite
def mutated_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """Alertmanager's real body with a few alerts, then some of its fields replaced, removed or duplicated."""
    body = firing(*[f"A{n}" for n in range(draw(st.integers(1, 3)))])
    for _ in range(draw(st.integers(0, 4))):
        alerts = (
            [a for a in body.get("alerts") or [] if isinstance(a, dict)] if isinstance(body.get("alerts"), list) else []
        )
        if alerts and draw(st.booleans()):
            target, key = draw(st.sampled_from(alerts)), draw(st.sampled_from(_ALERT_KEYS))
        else:
            target, key = body, draw(st.sampled_from(_BODY_KEYS))
        action = draw(st.sampled_from(["set", "delete", "duplicate"]))
        if action == "set":
            target[key] = draw(_VALUES)
        elif action == "delete":
            target.pop(key, None)
        elif isinstance(body.get("alerts"), list) and body["alerts"]:
            body["alerts"].append(copy.deepcopy(body["alerts"][0]))
    return body


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(mutated_bodies())
def test_what_the_edge_admits_the_parser_accepts_with_the_same_count(body: dict[str, Any]) -> None:
    admitted = well_formed(body)
    if admitted is None:
        return  # the full `receive` decides, as before
    result = parse_payload(json.loads(json.dumps(body)), now=NOW)
    assert (len(result.alerts), result.truncated) == (admitted.count, admitted.truncated)


def test_the_real_bodies_are_admitted() -> None:
    for name in ("firing", "resolved"):
        data = json.loads((FIXTURES / f"alertmanager-{name}.json").read_text())
        assert well_formed(data) is not None, name


_TIMES = st.builds(
    lambda pad, y, mo, d, sep, h, mi, s, frac, off: f"{pad}{y}-{mo}-{d}{sep}{h}:{mi}:{s}{frac}{off}{pad}",
    st.sampled_from(["", " "]),
    st.sampled_from(["0000", "0001", "1970", "2024", "9999"]),
    st.sampled_from(["00", "01", "02", "12", "13"]),
    st.sampled_from(["00", "01", "29", "30", "31", "32"]),
    st.sampled_from(["T", "t", " ", "x"]),
    st.sampled_from(["00", "23", "24"]),
    st.sampled_from(["00", "59", "60"]),
    st.sampled_from(["00", "59", "60"]),
    st.sampled_from(["", ".5", ".123456789", ".1234567890123"]),
    st.sampled_from(["Z", "z", "+00:00", "-23:59", "+24:00", "+0530", ""]),
)


@settings(max_examples=600, deadline=None)
@given(st.one_of(_TIMES, st.text(max_size=30), st.none(), st.integers()))
def test_valid_time_says_exactly_whether_parse_time_accepts(value: object) -> None:
    try:
        parse_time(value, "t")
        accepted = True
    except WebhookRejected:
        accepted = False
    assert valid_time(value) is accepted
