"""`chatops dev` as a new user meets it: the real command started in a child process, driven in headless Chromium.
Type `/chatops help` and see the reply; click a button and see the message change in place; deploy the demo
service and watch its message turn green."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.platform.embedded_redis import free_port
from tests.conftest import wait_ready

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
    ),
]
playwright_api = pytest.importorskip("playwright.async_api", reason="needs the playwright package")


@pytest.fixture
async def dev_url(tmp_path: Path, repo_root: Path) -> AsyncIterator[str]:
    port = free_port()
    # The demo configuration with its service on a free port, not the default 8081: two suites at once on this
    # machine (tests/soak.sh) would otherwise health-check each other's demo app.
    demo_port = free_port()
    default = "http://127.0.0.1:8081/healthz"
    text = (repo_root / "examples" / "chatops.yaml").read_text()
    assert default in text, "the demo config's staging health URL moved: update this fixture"
    config = tmp_path / "chatops.yaml"
    config.write_text(text.replace(default, f"http://127.0.0.1:{demo_port}/healthz"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "REDIS_", "CHATOPS_", "DEMO_"))}
    env |= {"DEMO_STATE_DIR": str(tmp_path / "demo"), "DEMO_PORT": str(demo_port)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "dev",
        "--config",
        str(config),
        "--port",
        str(port),
        "--data-dir",
        str(tmp_path / "dev"),
        cwd=repo_root,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_ready(f"http://127.0.0.1:{port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        _, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert "chatops dev: stopping" in stderr.decode()


@pytest.fixture
async def page(dev_url: str) -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(dev_url + "/#C0GENERAL")
            yield page
            assert errors == [], f"the page raised: {errors}"
        finally:
            await browser.close()


async def _type(page: Any, text: str) -> None:
    composer = page.get_by_test_id("composer")
    await composer.fill(text)
    await composer.press("Enter")


async def test_help_then_a_button_updates_the_message(page: Any) -> None:
    expect = playwright_api.expect
    await _type(page, "/chatops help")
    reply = page.get_by_test_id("message").filter(has_text="chatops: what you can ask")
    await expect(reply).to_have_count(1)
    await expect(reply.get_by_test_id("ephemeral")).to_be_visible()
    ts = await reply.get_attribute("data-ts")
    await reply.locator('[data-action-id="chatops.help.show"]').first.click()
    same = page.locator(f'[data-testid="message"][data-ts="{ts}"]')
    await expect(same).to_contain_text("/deploy <service> <version> to <env>")
    await expect(same).not_to_contain_text("chatops: what you can ask")
    await same.locator('[data-action-id="chatops.help.overview"]').click()
    await expect(same).to_contain_text("chatops: what you can ask")


async def test_deploying_the_demo_service(page: Any) -> None:
    expect = playwright_api.expect
    await _type(page, "/deploy demo v1 to staging")
    await expect(page.get_by_test_id("message").filter(has_text="starting now")).to_have_count(1)
    await page.goto(page.url.split("#")[0] + "#C0DEPLOYS")
    deploy = page.get_by_test_id("message").filter(has_text="Deploy demo v1 to staging")
    await expect(deploy).to_contain_text("Succeeded", timeout=20_000)
