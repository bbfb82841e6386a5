"""/status end to end against real local HTTP targets (up, slow, down, hanging), the SLO maths against a
hand-computed series, probe history memory over a simulated month, and bad arguments."""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web

from bot.shell.config import ChatopsConfig, parse_config
from bot.status.slo import Counts, Measured, budget, burn_rate, measure, sparkline
from tests.conftest import BotHarness, FakeClock, start_site
from tests.state import state
from tests.waiting import eventually

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
async def targets() -> AsyncIterator[str]:
    """A local HTTP server whose paths are up, slow, down and hanging."""
    release = asyncio.Event()

    async def up(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(0.3)
        return web.Response(text="ok")

    async def down(_: web.Request) -> web.Response:
        return web.Response(status=503, text="nope")

    async def hang(_: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/up", up)
    app.router.add_get("/slow", slow)
    app.router.add_get("/down", down)
    app.router.add_get("/hang", hang)
    runner, origin = await start_site(app)
    yield origin
    release.set()
    await runner.cleanup()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def leads() -> bool:
    return False  # the tests run the probe job by hand on the FakeClock: no scheduled probe may add to its figures


@pytest.fixture
def bot_config(targets: str, request: pytest.FixtureRequest) -> ChatopsConfig:
    """Two service environments (up, down), one without a health check, a slow probe and (with the parameter
    True) a probe that hangs."""
    hanging = (
        f'    - {{name: search, url: "{targets}/hang", timeout: 10s}}\n' if getattr(request, "param", False) else ""
    )
    return parse_config(
        f"""
roles: {{admins: [U0DEMO], deployers: [U0DEMO]}}
services:
  web:
    environments:
      staging:
        deployer: {{kind: command, argv: ["true"]}}
        health: {{url: "{targets}/up"}}
      production:
        deployer: {{kind: command, argv: ["true"]}}
        health: {{url: "{targets}/down"}}
  worker:
    environments:
      production: {{deployer: {{kind: command, argv: ["true"]}}}}
status:
  probe_interval: 30s
  slo: {{target: 99.9, window: 30d}}
  probes:
    - {{name: api, url: "{targets}/slow", timeout: 10s, max_latency: 100ms}}  # slow, never down, even under load
{hanging}""",
        "status.yaml",
    )


async def status(bot: BotHarness, text: str = "") -> dict:
    result = await bot.emulator.send_command(command="/status", text=text, user_id="U0ALICE", channel_id="C0GENERAL")
    assert result.status == 200 and result.json is not None, result
    return result.json


@pytest.mark.parametrize("bot_config", [True], indirect=True)
async def test_status_marks_each_target_and_answers_despite_a_hanging_one(bot: BotHarness) -> None:
    answer = await status(bot)
    assert answer["response_type"] == "in_channel"
    blocks = html.unescape(json.dumps(answer["blocks"], ensure_ascii=False))
    assert "Status: 🔴 Down" in blocks
    assert ":large_green_circle: *web/staging* — 200 in" in blocks
    assert ":red_circle: *web/production* — expected 200, got 503" in blocks
    assert ":large_yellow_circle: *api* — slow:" in blocks
    assert ":red_circle: *search* — no answer within 1s800ms" in blocks
    assert ":white_circle: *worker/production* — no health check · no version deployed by chatops" in blocks
    assert "*Alerts firing:* none" in blocks and "*Incidents:* none" in blocks and "*On call:* no rotations" in blocks
    assert "status.refresh" in blocks


async def test_refresh_updates_the_message_in_place(bot: BotHarness, clock: FakeClock) -> None:
    await status(bot)
    posted = [m for m in bot.emulator.messages("C0GENERAL") if "Status:" in str(m.get("text"))]
    assert len(posted) == 1
    clock.advance(timedelta(minutes=5))
    result = await bot.emulator.send_block_action(
        channel="C0GENERAL", message_ts=posted[0]["ts"], action_id="status.refresh", user_id="U0BOB"
    )
    assert result.status == 200

    async def refreshed() -> bool:
        message = bot.emulator.find_message("C0GENERAL", posted[0]["ts"])
        return message is not None and "Checked 12:05:00 UTC" in json.dumps(message["blocks"])

    await eventually(refreshed, "the status message refreshed in place at 12:05:00")
    assert len([m for m in bot.emulator.messages("C0GENERAL") if "Status:" in str(m.get("text"))]) == 1


async def test_probe_job_stores_results_and_details_show_history(bot: BotHarness, clock: FakeClock) -> None:
    for _ in range(4):
        await bot.deps.status.probe_job()
        clock.advance(timedelta(seconds=30))
    details = html.unescape(json.dumps((await status(bot, "web staging"))["blocks"], ensure_ascii=False))
    assert "*web/staging*: 200 in" in details and "uptime 100.00% over 2m of data" in details
    assert "`···········█`" in details  # the last 5 minutes are all good, the rest of the hour has no data
    assert "no deploys yet" in details and "*Open alerts*" in details
    slo = html.unescape((await status(bot, "slo web"))["text"])
    assert "*web/staging*: 100.00% over 2m of data · budget 43.2 of 43.2 min left (100%)" in slo
    assert "*web/production*: no data yet (it has not answered right since probing began" in slo  # never up
    assert "fast burn" not in slo


async def test_bad_arguments_get_usage(bot: BotHarness) -> None:
    assert "There is no service or probe `nope`" in (await status(bot, "nope"))["text"]
    assert "`web` has no environment `qa`" in (await status(bot, "web qa"))["text"]
    assert "`slo` takes at most one service" in (await status(bot, "slo web api"))["text"]
    assert "Give a service and optionally an environment" in (await status(bot, "web prod extra"))["text"]


def test_slo_maths_against_a_hand_computed_series() -> None:
    # 30 days of one probe a minute: 43,200 probes, 30 of them bad; 6 bad in the last hour, 12 in the last 6 hours,
    # 1 in the last 5 minutes, 3 in the last 30.
    minute = timedelta(minutes=1)

    def measured(good: int, total: int, window: timedelta) -> Measured:
        return measure([Counts(good, total)], bucket=window, interval=minute, window=window)

    month = timedelta(days=30)
    recent = {
        60 * minute: measured(54, 60, 60 * minute),
        5 * minute: measured(4, 5, 5 * minute),
        360 * minute: measured(348, 360, 360 * minute),
        30 * minute: measured(27, 30, 30 * minute),
    }
    standing = budget(measured(43_170, 43_200, month), recent, target_percent=99.9, span=month)
    assert standing.allowed_minutes == pytest.approx(43.2)  # 0.1% of 43,200 minutes
    assert standing.spent_minutes == pytest.approx(30.0)
    assert standing.left_minutes == pytest.approx(13.2)
    assert standing.left_fraction == pytest.approx(13.2 / 43.2)
    assert standing.burn_1h == pytest.approx(100.0)  # 10% errors against 0.1% allowed
    assert standing.burn_6h == pytest.approx(12 / 360 / 0.001)
    assert standing.fast_burn
    assert burn_rate(Measured(timedelta(hours=1)), 99.9) is None
    healthy = {span: measured(int(span / minute), int(span / minute), span) for span in recent}
    assert not budget(measured(100, 100, month), healthy, target_percent=99.9, span=month).fast_burn
    assert sparkline([1.0, 0.0, None, 0.5]) == "█▁·▅"


async def test_probe_history_memory_is_bounded_over_a_month(bot: BotHarness) -> None:
    store = state(bot).probes
    sizes = []
    at = T0
    for day in range(31):
        for _ in range(288):  # every 5 minutes
            await store.record("web/staging", at, good=True, latency_ms=12, detail={})
            at += timedelta(minutes=5)
        if day in (6, 30):
            sizes.append(await store.memory("web/staging"))
    assert sizes[0] == sizes[1]  # a week or a month: the same footprint
    assert sizes[1] < 18 * 1024  # minutes, hours and the public page's days
    month = await store.hours("web/staging", at - timedelta(days=30), at)
    assert sum(b.counts.total for b in month) == 30 * 288 + 12 - 12  # 720 whole hours of 12 probes


async def test_open_incidents_show_in_status(bot: BotHarness) -> None:
    declared = await bot.emulator.send_command(
        command="/incident", text="declare sev3 Search is slow", user_id="U0DEMO", channel_id="C0GENERAL"
    )
    assert declared.status == 200
    await eventually(bot.deps.incidents.open_lines, "the incident to be open")
    blocks = html.unescape(json.dumps((await status(bot))["blocks"], ensure_ascii=False))
    incidents = blocks.split("*Incidents:* ", 1)[1].split("\\n*Alerts firing:*", 1)[0]
    assert "Search is slow" in incidents and "sev3" in incidents.lower()


async def test_the_home_tab_shows_the_overview(bot: BotHarness) -> None:
    result = await bot.emulator.send_event(
        {"type": "app_home_opened", "user": "U0CAROL", "channel": "D0CAROL", "tab": "home"}
    )
    assert result.status == 200
    await eventually(lambda: bot.emulator.state.home_views.get("U0CAROL"), "U0CAROL's home tab published")
    home = json.dumps(bot.emulator.state.home_views["U0CAROL"]["blocks"], ensure_ascii=False)
    assert "Status: 🔴 Down" in home and "web/staging" in home and "status.refresh" not in home
