"""The built-in public status page: the bot's real web app against a real Redis, probe history recorded through the
real probe store, a public incident made through the real incident service. Its JSON validates against the
published schema, it shows only what is configured as public (never a probe URL, a target, an internal title or
update, a person or a channel), /status shows the same component states, and it renders in headless Chromium
without JavaScript, on a phone, with no outside request (the screenshot is docs/status-page.png)."""

from __future__ import annotations

import html
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from aiohttp import web
from multidict import CIMultiDict

from bot.shell.config import ChatopsConfig, ConfigError, parse_config
from bot.status.page import PageView, status_lines
from tests.conftest import BotHarness, FakeClock, fake_deploy_argv, start_site
from tests.state import state
from tests.waiting import eventually

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
SECRET_PATH = "internal-health-7f3a9c"
INTERNAL = (
    "Primary DB failover botched by terraform",
    "bob ran the migration twice",
    "U0BOB",
    "inc-2026",
    "web/production",
    SECRET_PATH,
    "127.0.0.1:",
)
PUBLIC = "Checkout is failing for some customers. We are investigating."
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
async def targets() -> AsyncIterator[str]:
    """Health endpoints: web answers 200, api 503."""

    async def up(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def down(_: web.Request) -> web.Response:
        return web.Response(status=503)

    app = web.Application()
    app.router.add_get(f"/{SECRET_PATH}", up)
    app.router.add_get("/api-health", down)
    runner, origin = await start_site(app)
    yield origin
    await runner.cleanup()


def config_text(
    targets: str, components: str = '[{name: "Website", targets: ["web/production"]}, {name: "API", targets: ["api"]}]'
) -> str:
    return f"""
roles: {{admins: [U0DEMO], deployers: [U0DEMO]}}
services:
  web:
    environments:
      production:
        deployer: {{kind: command, argv: {fake_deploy_argv()}}}
        health: {{url: "{targets}/{SECRET_PATH}"}}
status:
  probes:
    - {{name: api, url: "{targets}/api-health"}}
status_page:
  title: "Acme status"
  components: {components}
  history_days: 90
  cache: 1s
scheduler: {{tick: 1m}}
"""


@pytest.fixture
def bot_config(targets: str) -> ChatopsConfig:
    return parse_config(config_text(targets), "status-page.yaml")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


async def history(bot: BotHarness) -> None:
    """90 days of probes: web had one bad day (20% failures, 30 days ago); api has no history before today."""
    store = state(bot).probes
    for back in range(90, 0, -1):
        day = T0 - timedelta(days=back)
        for n in range(10):
            await store.record(
                "web/production",
                day + timedelta(minutes=n),
                good=not (back == 30 and n < 2),
                latency_ms=10,
                detail={"at": day.isoformat(), "state": "up"},
            )
    await store.record(
        "web/production", T0, good=True, latency_ms=9, detail={"at": T0.isoformat(), "state": "up", "text": SECRET_PATH}
    )
    await store.record(
        "api", T0, good=False, latency_ms=9, detail={"at": T0.isoformat(), "state": "down", "text": "503"}
    )


async def public_incident(bot: BotHarness) -> None:
    incidents = bot.deps.incidents
    incident = await incidents.declare("sev2", INTERNAL[0], "U0DEMO", service="web")
    await incidents.changes.update(incident, INTERNAL[1], "U0BOB")
    await incidents.changes.set_role(incident, "scribe", "U0BOB", "U0DEMO")
    await incidents.changes.public(incident, PUBLIC, "U0DEMO")


async def fetch(bot: BotHarness, path: str) -> tuple[int, str, CIMultiDict[str]]:
    async with aiohttp.ClientSession() as session, session.get(bot.url + path) as response:
        return response.status, await response.text(), response.headers.copy()


async def page_when(bot: BotHarness, condition: Any, what: str) -> dict[str, Any]:
    """The JSON page once `condition(page)` holds (the cache lives a second)."""
    found: dict[str, Any] = {}

    async def check() -> bool:
        nonlocal found
        _, body, _ = await fetch(bot, "/status-page.json")
        found = json.loads(body)
        return bool(condition(found))

    await eventually(check, what)
    return found


async def test_the_page_shows_public_state_uptime_and_incidents_and_nothing_internal(bot: BotHarness) -> None:
    await history(bot)
    await public_incident(bot)
    page = await page_when(bot, lambda p: p["incidents"], "the public incident on the page")
    jsonschema.validate(page, PageView.model_json_schema())
    PageView.model_validate(page)
    website, api = page["components"]
    assert (website["name"], website["state"]) == ("Website", "partial_outage")  # the open sev2 naming web
    assert (api["name"], api["state"]) == ("API", "major_outage")  # its only probe is down
    assert page["state"] == "major_outage" and page["title"] == "Acme status"
    assert len(website["days"]) == 90 and website["days"][-1]["date"] == "2026-11-23"
    bad_day = next(d for d in website["days"] if d["date"] == "2026-10-24")
    assert (bad_day["uptime"], bad_day["state"]) == (80.0, "major_outage")
    assert website["days"][0]["state"] == "operational" and api["days"][0]["state"] == "no_data"
    assert api["days"][-1] == {"date": "2026-11-23", "uptime": 0.0, "state": "major_outage"}
    (incident,) = page["incidents"]
    assert incident["title"] == "Checkout is failing for some customers"
    assert incident["components"] == ["Website"] and incident["status"] == "investigating"
    assert [u["text"] for u in incident["updates"]] == [PUBLIC]

    status, body, headers = await fetch(bot, "/status-page")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "Checkout is failing for some customers" in html.unescape(body) and "Acme status" in body
    assert "<script" not in body and "http://" not in body.replace('href="status-page.json"', "")
    for secret in INTERNAL:
        assert secret not in body, secret
        assert secret not in json.dumps(page), secret

    # /status shows the very same component states.
    answer = await bot.emulator.send_command(command="/status", text="", user_id="U0DEMO", channel_id="C0GENERAL")
    assert answer.json is not None
    shown = html.unescape(json.dumps(answer.json.get("blocks"), ensure_ascii=False))
    expected = " · ".join(status_lines(PageView.model_validate(page)))
    assert f"*Public status page:* {expected}" in shown, shown

    # Resolving it: the page moves it to the last 7 days and Website goes back to what its probes say.
    incident_record = await state(bot).incidents.get("INC-1")
    assert incident_record is not None
    await bot.deps.incidents.changes.resolve(incident_record, INTERNAL[1], "U0DEMO")
    page = await page_when(bot, lambda p: not p["incidents"], "the resolved incident off the current list")
    assert page["components"][0]["state"] == "operational"
    assert page["recent_incidents"][0]["status"] == "resolved"
    assert page["recent_incidents"][0]["updates"][0]["text"] == "This incident has been resolved."
    assert INTERNAL[1] not in json.dumps(page)


async def test_an_incident_not_made_public_does_not_show(bot: BotHarness) -> None:
    await bot.deps.incidents.declare("sev1", INTERNAL[0], "U0DEMO", service="web")
    page = await page_when(bot, lambda p: True, "the page")
    assert page["incidents"] == [] and page["components"][0]["state"] == "operational"
    assert INTERNAL[0] not in json.dumps(page)


async def test_the_page_answers_304_for_its_etag_and_404_when_not_configured(bot: BotHarness, redis_url: str) -> None:
    status, body, headers = await fetch(bot, "/status-page")
    assert status == 200, body
    async with (
        aiohttp.ClientSession() as session,
        session.get(bot.url + "/status-page", headers={"If-None-Match": headers["ETag"]}) as r,
    ):
        assert r.status == 304
    assert "max-age=1" in headers["Cache-Control"]


def test_check_config_names_a_target_that_does_not_exist(targets: str) -> None:
    with pytest.raises(
        ConfigError,
        match=r"status_page.components\[0\].targets: 'web/prod' is not a /status target; "
        r"did you mean 'web/production'\?",
    ):
        parse_config(config_text(targets, '[{name: "Website", targets: ["web/prod"]}]'), "bad.yaml")


@pytest.mark.browser
@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
)
async def test_the_page_renders_in_chromium_without_javascript_on_a_phone(
    bot: BotHarness, repo_root: Path, tmp_path: Path
) -> None:
    playwright_api = pytest.importorskip("playwright.async_api", reason="needs the playwright package")
    await history(bot)
    await public_incident(bot)
    await page_when(bot, lambda p: p["incidents"], "the public incident on the page")
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            requests: list[str] = []
            phone = await browser.new_context(
                java_script_enabled=False, viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
            )
            page = await phone.new_page()
            page.on("request", lambda request: requests.append(request.url))
            await page.goto(bot.url + "/status-page")
            expect = playwright_api.expect
            await expect(page.get_by_role("heading", name="Acme status")).to_be_visible()
            await expect(page.get_by_role("status")).to_have_text("Major outage")
            await expect(page.get_by_text("Checkout is failing for some customers").first).to_be_visible()
            assert await page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
            assert requests == [bot.url + "/status-page"], requests  # self-contained: nothing else is fetched
            desktop = await browser.new_page(viewport={"width": 960, "height": 900})
            await desktop.goto(bot.url + "/status-page")
            # CHATOPS_UPDATE_SCREENSHOTS=1 refreshes the README's screenshot; otherwise it goes to a temporary folder.
            folder = repo_root / "docs" if os.environ.get("CHATOPS_UPDATE_SCREENSHOTS") else tmp_path
            await desktop.screenshot(path=str(folder / "status-page.png"), full_page=True)
            assert (folder / "status-page.png").stat().st_size > 10_000
        finally:
            await browser.close()
