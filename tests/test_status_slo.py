"""The SLO figures and the fast-burn alert as a new user meets them: the demo configuration's shape (examples/
chatops.yaml, its health checks pointed at a local server whose environments are switched between not deployed, up
and down), time moved by a FakeClock and the leader's probe job run by hand, as the scheduler would every 30s."""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from bot.shell.config import ChatopsConfig, parse_config
from bot.status.slo import Counts, Measured, budget, budget_text, burn_summary, measure
from integrations.alerts.model import Alert
from tests.conftest import BotHarness, FakeClock, start_site
from tests.state import state

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
INTERVAL = timedelta(seconds=30)  # examples/chatops.yaml's status.probe_interval
DEMO = Path(__file__).resolve().parent.parent / "examples" / "chatops.yaml"


@dataclass
class DemoApps:
    """What answers each demo environment's /healthz: "absent" (nothing deployed: the connection is dropped, as
    when nothing listens), "up" (200) or "down" (503)."""

    origin: str = ""
    state: dict[str, str] = field(default_factory=lambda: {"staging": "absent", "production": "absent"})


@pytest.fixture
async def apps() -> AsyncIterator[DemoApps]:
    demo = DemoApps()

    async def healthz(request: web.Request) -> web.StreamResponse:
        state = demo.state[request.match_info["env"]]
        if state == "absent":
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        return web.Response(status=200 if state == "up" else 503, text=state)

    app = web.Application()
    app.router.add_get("/{env}/healthz", healthz)
    runner, demo.origin = await start_site(app)
    yield demo
    await runner.cleanup()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def leads() -> bool:
    # The tests run the probe job by hand, every 30 s of fake time. The leader would also run it every 30 s of real
    # time: on a loaded machine a test outlasts that, and the extra probes (at the same fake time) moved the moment
    # the page fired. Another process holds the lease instead.
    return False


@pytest.fixture
def bot_config(apps: DemoApps, monkeypatch: pytest.MonkeyPatch) -> ChatopsConfig:
    """examples/chatops.yaml as `chatops dev` loads it, its two health checks pointed at `apps`."""
    monkeypatch.setenv("CHATOPS_DEMO_ALERT_TOKEN", "demo-alert-token")  # as `chatops dev` sets it
    text = DEMO.read_text()
    for port, env in (("8081", "staging"), ("8082", "production")):
        assert f"http://127.0.0.1:{port}/healthz" in text, "the demo config's health URLs moved: update this test"
        text = text.replace(f"http://127.0.0.1:{port}/healthz", f"{apps.origin}/{env}/healthz")
    return parse_config(text, "chatops.yaml")


async def probe_for(bot: BotHarness, clock: FakeClock, span: timedelta) -> None:
    """Runs the probe job every 30 s of fake time over `span`."""
    for _ in range(int(span / INTERVAL)):
        await bot.deps.status.probe_job()
        clock.advance(INTERVAL)


async def ingested(bot: BotHarness) -> list[Alert]:
    """Every alert the bot has ingested (the alert stream is written before probe_job returns)."""
    store = state(bot).alerts
    entries = await store.redis.xrange(store.k("stream"))
    return [Alert.from_json(text) for _, fields in entries for text in json.loads(fields["alerts"])]


async def alerts_raised(bot: BotHarness) -> list[str]:
    """The titles of every alert ingested."""
    return [alert.title for alert in await ingested(bot)]


async def answer(bot: BotHarness, text: str) -> str:
    result = await bot.emulator.send_command(command="/status", text=text, user_id="U0DEMO", channel_id="C0GENERAL")
    assert result.status == 200 and result.json is not None, result
    return html.unescape(json.dumps(result.json, ensure_ascii=False))


async def test_an_idle_demo_raises_no_alert_and_reads_all_good_once_deployed(
    bot: BotHarness, clock: FakeClock, apps: DemoApps
) -> None:
    # Ten idle minutes of `chatops dev`: nothing deployed, both health checks refused at every probe.
    await probe_for(bot, clock, timedelta(minutes=10))
    assert await alerts_raised(bot) == [], "an alert was raised while nothing was deployed"
    posted = [m.get("text", "") for messages in bot.emulator.state.all_messages().values() for m in messages]
    assert not [text for text in posted if "fast burn" in text.lower()], posted
    slo = await answer(bot, "slo demo")
    assert "SLO 99.9% over 30 days" in slo and "*demo/production*: no data yet (it has not answered right" in slo
    # The demo services are deployed (both answer 200 from now on): /status reads all good, still no alert.
    apps.state.update(staging="up", production="up")
    await probe_for(bot, clock, timedelta(minutes=5))
    assert await alerts_raised(bot) == []
    overview = await answer(bot, "")
    assert "Status: 🟢 All good" in overview, overview
    details = await answer(bot, "demo production")
    assert "uptime 100.00% over 5m of data" in details, details


async def test_a_failing_target_pages_only_once_the_hour_and_five_minutes_have_data(
    bot: BotHarness, clock: FakeClock, apps: DemoApps
) -> None:
    apps.state.update(staging="up", production="up")
    await bot.deps.status.probe_job()  # production is live from here
    clock.advance(INTERVAL)
    apps.state["production"] = "down"
    probes = 1
    # 90% of the hour (the burn rate's minimum coverage) is 108 probes of 30 s: until then, no page.
    while probes < 107:
        await bot.deps.status.probe_job()
        clock.advance(INTERVAL)
        probes += 1
        assert await alerts_raised(bot) == [], f"paged after {probes} probes ({probes * INTERVAL} of data)"
    while probes < 125 and not await alerts_raised(bot):
        await bot.deps.status.probe_job()
        clock.advance(INTERVAL)
        probes += 1
    assert await alerts_raised(bot) == ["SLO fast burn: demo/production"], f"no page after {probes} probes"
    slo = await answer(bot, "slo demo")
    line = next(line for line in slo.split("\\n") if "*demo/production*" in line)
    spent = r"budget all 43\.2 min spent \(5\d\.\d min of downtime\)"  # a 54-minute outage: over the month's 43.2
    assert re.search(r"\*demo/production\*: 0\.\d\d% over 5\dm( \d+s)? of data · " + spent, line), line
    assert re.search(r"burn 1h \d+\.\dx · 6h not enough data yet :fire: \*fast burn\*", line), line
    assert not re.search(r"-\d", slo), slo  # never a negative figure
    # Recovery: the 5-minute window clears within 5 minutes, and the alert resolves.
    apps.state["production"] = "up"
    await probe_for(bot, clock, timedelta(minutes=6))
    assert [alert.status for alert in await ingested(bot)] == ["firing", "resolved"]


async def test_uptime_says_how_much_data_it_rests_on(bot: BotHarness, clock: FakeClock) -> None:
    store = state(bot).probes
    start = T0 - timedelta(hours=3)
    for i in range(360):  # 3 hours every 30 s, two of them failed
        await store.record("demo/staging", start + i * INTERVAL, good=i not in (100, 200), latency_ms=5, detail={})
    details = await answer(bot, "demo staging")
    assert "uptime 99.44% over 3h of data" in details, details  # 358 of 360, rounded down
    slo = await answer(bot, "slo demo")
    assert "*demo/staging*: 99.44% over 3h of data · budget 42.2 of 43.2 min left (97%)" in slo, slo


def test_figures_are_never_negative_and_time_without_data_is_not_downtime() -> None:
    window = timedelta(days=30)
    # One hour of data, all failed, in a 30-day window: 60 minutes spent, not 30 days' worth.
    hour = measure([Counts(0, 2)] * 60, bucket=timedelta(minutes=1), interval=INTERVAL, window=timedelta(hours=1))
    month = measure([Counts(0, 120)], bucket=timedelta(hours=1), interval=INTERVAL, window=window)
    assert month.covered == timedelta(hours=1) and month.down == timedelta(hours=1)
    standing = budget(month, {timedelta(hours=1): hour}, target_percent=99.9, span=window)
    assert standing.spent_minutes == pytest.approx(60) and standing.left_minutes == 0 and standing.left_fraction == 0
    assert budget_text(standing) == "all 43.2 min spent (60.0 min of downtime)"
    assert standing.burn_1h == pytest.approx(1000) and standing.burn_6h is None  # 6h: one hour of six
    assert not standing.fast_burn  # the 5-minute window has no data: the hour alone does not page
    five = measure([Counts(0, 2)] * 5, bucket=timedelta(minutes=1), interval=INTERVAL, window=timedelta(minutes=5))
    firing = budget(month, {timedelta(hours=1): hour, timedelta(minutes=5): five}, target_percent=99.9, span=window)
    assert firing.fast_burn
    summary = burn_summary(firing)
    assert summary.startswith("100.00% of probes failed over the last 1h and 100.00% over the last 5m")
    assert "Error budget over 30 days: all 43.2 min spent" in summary and not re.search(r"-\d", summary)
    # A few minutes of data: no burn rate at all, the budget barely touched.
    few = measure([Counts(0, 2)] * 3, bucket=timedelta(minutes=1), interval=INTERVAL, window=timedelta(hours=1))
    recent = {timedelta(hours=1): few, timedelta(minutes=5): few}
    early = budget(Measured(window, few.counts, few.covered, few.down), recent, target_percent=99.9, span=window)
    assert early.burn_1h is None and not early.fast_burn
    assert budget_text(early) == "40.2 of 43.2 min left (93%)"
