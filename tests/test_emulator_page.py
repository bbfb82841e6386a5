"""The emulator's dev page in headless Chromium, against a tiny signed-request bot: typing a slash command shows the
reply, clicking its button updates the message in place, ephemeral messages, threads and modals behave like Slack."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from aiohttp import web
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.emulator import SlackEmulator, Workspace

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "xoxb-page-test"
SECRET = "page-test-secret"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
    ),
]

playwright_api = pytest.importorskip("playwright.async_api", reason="needs the playwright package")

APPROVE_BLOCKS = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "*Deploy* `web` v2 to *production*?"}},
    {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Approve"},
                "action_id": "deploy.approve",
                "value": "web",
                "style": "primary",
            },
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Cancel"},
                "action_id": "deploy.cancel",
                "value": "web",
                "style": "danger",
            },
        ],
    },
]

MODAL = {
    "type": "modal",
    "callback_id": "why",
    "title": {"type": "plain_text", "text": "Roll back"},
    "submit": {"type": "plain_text", "text": "Roll back"},
    "blocks": [
        {
            "type": "input",
            "block_id": "reason",
            "label": {"type": "plain_text", "text": "Reason"},
            "element": {"type": "plain_text_input", "action_id": "text"},
        }
    ],
}


@dataclass
class TinyBot:
    """Answers /deploy with an approval message; a click on Approve edits it with chat.update."""

    client: AsyncWebClient
    verifier: SignatureVerifier
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    submissions: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.text()
        if not self.verifier.is_valid(
            body=body,
            timestamp=request.headers["X-Slack-Request-Timestamp"],
            signature=request.headers["X-Slack-Signature"],
        ):
            return web.Response(status=401)
        form = dict(parse_qsl(body, keep_blank_values=True))
        if form.get("command") == "/deploy":
            return web.json_response(
                {"response_type": "in_channel", "text": "Deploy web v2?", "blocks": APPROVE_BLOCKS}
            )
        if form.get("command") == "/chatops":
            return web.json_response({"text": f"Only for <@{form['user_id']}>: *help*"})
        if form.get("command") == "/rollback":
            self._spawn(self.client.views_open(trigger_id=form["trigger_id"], view=MODAL))
            return web.Response()
        payload = json.loads(form.get("payload", "{}"))
        if payload.get("type") == "block_actions":
            self._spawn(self._approve(payload))
        elif payload.get("type") == "view_submission":
            self.submissions.append(payload)
            reason = payload["view"]["state"]["values"]["reason"]["text"]["value"]
            if not reason:
                return web.json_response({"response_action": "errors", "errors": {"reason": "Say why you roll back"}})
        return web.Response()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _approve(self, payload: dict[str, Any]) -> None:
        container = payload["container"]
        await self.client.chat_update(
            channel=container["channel_id"],
            ts=container["message_ts"],
            text="Approved",
            blocks=[
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": f":white_check_mark: Approved by <@{payload['user']['id']}>"},
                }
            ],
        )
        await self.client.chat_postMessage(
            channel=container["channel_id"], thread_ts=container["message_ts"], text="Deploying `web` v2… :rocket:"
        )


@dataclass
class Harness:
    emu: SlackEmulator
    bot: TinyBot
    url: str


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    emu = SlackEmulator(signing_secret=SECRET, bot_token=TOKEN, workspace=Workspace.demo())
    emu_runner, origin = await _serve(emu.make_app(page=True))
    emu.origin = origin
    async with aiohttp.ClientSession() as session:
        bot = TinyBot(AsyncWebClient(token=TOKEN, base_url=emu.api_url, session=session), SignatureVerifier(SECRET))
        app = web.Application()
        app.router.add_post("/slack/events", bot.handle)
        bot_runner, bot_origin = await _serve(app)
        emu.app_url = f"{bot_origin}/slack/events"
        yield Harness(emu=emu, bot=bot, url=origin)
        await asyncio.gather(*bot.tasks, return_exceptions=True)
        await bot_runner.cleanup()
    await emu_runner.cleanup()


@pytest.fixture
async def page(harness: Harness) -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(harness.url + "/#C0DEPLOYS")
            await playwright_api.expect(page.get_by_test_id("channel-title")).to_have_text("# deploys")
            yield page
            assert errors == [], f"the page raised: {errors}"
        finally:
            await browser.close()


async def _type(page: Any, text: str) -> None:
    composer = page.get_by_test_id("composer")
    await composer.fill(text)
    await composer.press("Enter")


async def test_command_reply_and_button_updates_the_message_in_place(harness: Harness, page: Any) -> None:
    expect = playwright_api.expect
    await _type(page, "/deploy web v2 to production")
    reply = page.get_by_test_id("message").filter(has_text="to production?")
    await expect(reply).to_have_count(1)
    await expect(reply.locator("b").first).to_have_text("Deploy")
    ts = await reply.get_attribute("data-ts")
    assert ts and re.match(r"^\d+\.\d{6}$", ts)
    assert harness.emu.find_message("C0DEPLOYS", ts) is not None
    await expect(page.get_by_test_id("message").filter(has_text="/deploy web v2 to production")).to_have_count(1)

    await page.get_by_test_id("user-select").select_option("U0ALICE")  # a second person approves
    await page.locator('[data-action-id="deploy.approve"]').click()
    same = page.locator(f'[data-testid="message"][data-ts="{ts}"]')
    await expect(same).to_contain_text("Approved by @Alice Anders")
    await expect(same).to_have_count(1)
    await expect(same.get_by_test_id("edited")).to_have_text("(edited)")
    await expect(same.locator('[data-action-id="deploy.approve"]')).to_have_count(0)
    assert harness.emu.find_message("C0DEPLOYS", ts)["text"] == "Approved"

    await expect(same.get_by_test_id("replies")).to_contain_text("1 reply")
    await same.get_by_test_id("replies").click()
    thread = page.get_by_test_id("thread")
    await expect(thread).to_be_visible()
    await expect(thread.get_by_test_id("message")).to_have_count(2)
    await expect(thread).to_contain_text("Deploying web v2… 🚀")
    await thread.get_by_test_id("thread-composer").fill("thanks!")
    await thread.get_by_test_id("thread-composer").press("Enter")
    await expect(thread.get_by_test_id("message")).to_have_count(3)
    assert harness.emu.messages("C0DEPLOYS")[-1]["thread_ts"] == ts


async def test_ephemeral_is_only_shown_to_its_user(harness: Harness, page: Any) -> None:
    expect = playwright_api.expect
    await _type(page, "/chatops help")
    mine = page.get_by_test_id("message").filter(has_text="Only for")
    await expect(mine).to_have_count(1)
    await expect(mine.get_by_test_id("ephemeral")).to_have_text("Only visible to you")
    await expect(mine.locator(".mention")).to_have_text("@Demo User")
    await page.get_by_test_id("user-select").select_option("U0BOB")
    await expect(page.get_by_test_id("message").filter(has_text="Only for")).to_have_count(0)


async def test_failed_command_and_unread_dot(harness: Harness, page: Any) -> None:
    expect = playwright_api.expect
    harness.emu.app_url = "http://127.0.0.1:9/slack/events"
    await _type(page, "/deploy web")
    await expect(page.get_by_test_id("command-error")).to_contain_text(
        '/deploy failed with the error "dispatch_failed"'
    )
    async with aiohttp.ClientSession() as session:
        client = AsyncWebClient(token=TOKEN, base_url=harness.emu.api_url, session=session)
        await client.chat_postMessage(channel="#alerts", text=":rotating_light: disk full")
    alerts = page.locator('[data-testid="channel-link"][data-channel="C0ALERTS"]')
    await expect(alerts.get_by_test_id("unread")).to_have_count(1)
    await alerts.click()
    await expect(page.get_by_test_id("message")).to_contain_text("🚨 disk full")
    await expect(alerts.get_by_test_id("unread")).to_have_count(0)


async def test_modal_shows_errors_then_closes(harness: Harness, page: Any) -> None:
    expect = playwright_api.expect
    await _type(page, "/rollback web")
    modal = page.get_by_test_id("modal")
    await expect(modal).to_be_visible()
    await expect(page.get_by_test_id("modal-title")).to_have_text("Roll back")
    await page.get_by_test_id("modal-submit").click()
    await expect(page.get_by_test_id("input-error")).to_have_text("Say why you roll back")
    await modal.locator('[data-action-id="text"]').fill("bad deploy")
    await page.get_by_test_id("modal-submit").click()
    await expect(modal).to_be_hidden()
    assert harness.bot.submissions[-1]["view"]["state"]["values"]["reason"]["text"]["value"] == "bad deploy"
    assert harness.emu.open_views() == []


async def test_typed_markup_is_text_as_in_slack(harness: Harness, page: Any) -> None:
    expect = playwright_api.expect
    await _type(page, "<b>bold</b> & <@U0BOB>")
    mine = page.get_by_test_id("message").filter(has_text="bold")
    await expect(mine.locator(".msg-content")).to_have_text("<b>bold</b> & <@U0BOB>")
    await expect(mine.locator("a, .mention, b")).to_have_count(0)
    assert harness.emu.messages("C0DEPLOYS")[-1]["text"] == "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;@U0BOB&gt;"


async def test_thread_summary_of_a_continued_message_shows_its_avatars(harness: Harness, page: Any) -> None:
    expect = playwright_api.expect
    async with aiohttp.ClientSession() as session:
        client = AsyncWebClient(token=TOKEN, base_url=harness.emu.api_url, session=session)
        await client.chat_postMessage(channel="#deploys", text="first")
        second = await client.chat_postMessage(channel="#deploys", text="second")  # continues the first
        await client.chat_postMessage(channel="#deploys", text="step 1", thread_ts=second["ts"])
    harness.emu.post_as_user("C0DEPLOYS", "U0ALICE", "looking", thread_ts=second["ts"])
    summary = page.locator(f'[data-testid="message"][data-ts="{second["ts"]}"]').get_by_test_id("replies")
    await expect(summary).to_contain_text("2 replies")
    await expect(summary.locator(".avatar")).to_have_count(2)
    for avatar in await summary.locator(".avatar").all():
        await expect(avatar).to_be_visible()
        box = await avatar.bounding_box()
        assert box and box["height"] >= 16, f"the thread summary's avatar is squashed: {box}"


async def test_top_bar_does_not_overlap_at_800_px(harness: Harness, page: Any) -> None:
    await page.set_viewport_size({"width": 800, "height": 600})
    search = await page.locator(".topbar-search").bounding_box()
    whoami = await page.locator(".whoami").bounding_box()
    assert search and whoami
    assert search["x"] + search["width"] <= whoami["x"], f"the search box {search} runs under the user picker {whoami}"
    assert whoami["x"] + whoami["width"] <= 800, f"the user picker {whoami} is cut off"
