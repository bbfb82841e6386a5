"""Shared fixtures: a real Redis server started here on a free port, the project's Slack emulator on a random
port, and the bot's real web app wired to both. Nothing is patched; requests are signed as Slack signs them."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from bot.emulator import SlackEmulator, Workspace
from bot.platform.embedded_redis import EmbeddedRedis, RedisNotFound
from bot.platform.keys import Keys
from bot.shell.composition import DEPS, create_web_app
from bot.shell.config import ChatopsConfig, parse_config
from bot.shell.deps import Deps
from bot.shell.settings import Settings
from tests.waiting import DEFAULT_DEADLINE_SECONDS, eventually, idle

# Fixtures that live next to the servers they start, shared by tests in several folders (health gates in
# tests/integrations/ and tests/test_deploy_gates.py): registered here rather than imported into each test module.
pytest_plugins = ["tests.health_servers"]

BOT_TOKEN = "xoxb-test-token-0123456789"

DEFAULT_CONFIG = """
slack: {announce_channel: "#general"}
roles:
  admins: [U0DEMO]
  deployers: ["@platform"]
  approvers: [U0ALICE, U0BOB]
"""


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """One redis-server for the session, on a free port, owned by the tests."""
    try:
        server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    except RedisNotFound as error:
        pytest.skip(str(error))
    yield server
    server.stop()


@pytest.fixture
async def redis_url(redis_server: EmbeddedRedis) -> AsyncIterator[str]:
    """The URL of the tests' own Redis, emptied before each test (it is ours, so flushing is safe)."""
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushdb()
    await client.aclose()
    yield redis_server.url


@pytest.fixture
def restore_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """The second Redis `chatops dev` starts, the one the demo backup target restores into."""
    server = EmbeddedRedis(tmp_path / "restore-redis").start()
    try:
        yield server
    finally:
        server.stop()


async def start_site(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serves `app` on 127.0.0.1 and a free port; returns the runner and the origin URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


@dataclass
class BotHarness:
    """The bot under test: its URL, its deps, the emulator it talks to, and its signing secret."""

    url: str
    app: web.Application
    emulator: SlackEmulator
    signing_secret: str

    @property
    def deps(self) -> Deps:
        return self.app[DEPS]

    async def idle(self) -> None:
        """Returns once the bot reports it has nothing in hand (see tests/waiting.py `idle`)."""
        await idle(self.deps)


@pytest.fixture
async def emulator() -> AsyncIterator[SlackEmulator]:
    """The Slack emulator on a random port with the demo workspace."""
    emu = SlackEmulator(signing_secret=secrets.token_hex(16), bot_token=BOT_TOKEN, workspace=Workspace.demo())
    runner, origin = await start_site(emu.make_app(page=False))
    emu.origin = origin
    yield emu
    await runner.cleanup()


def make_settings(*, api_url: str, redis_url: str, signing_secret: str, **extra: str) -> Settings:
    """Settings as `chatops serve` would read them from the environment."""
    return Settings.model_validate(
        {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": signing_secret,
            "SLACK_API_URL": api_url,
            "REDIS_URL": redis_url,
            "LOG_FORMAT": "console",
            **extra,
        }
    )


class FakeClock:
    """A clock tests move by hand: every service of a bot built with it reads this time."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


async def start_bot(
    emulator: SlackEmulator,
    redis_url: str,
    config: ChatopsConfig,
    *,
    clock: Callable[[], datetime] | None = None,
) -> tuple[BotHarness, web.AppRunner]:
    """Starts the bot's real web app against the emulator and Redis (with `clock` as its time, if given)."""
    settings = make_settings(api_url=emulator.api_url, redis_url=redis_url, signing_secret=emulator.signing_secret)
    app = create_web_app(settings, config, **({"clock": clock} if clock is not None else {}))
    runner, origin = await start_site(app)
    emulator.app_url = f"{origin}/slack/events"
    return BotHarness(url=origin, app=app, emulator=emulator, signing_secret=emulator.signing_secret), runner


@pytest.fixture
def bot_config() -> ChatopsConfig:
    """The configuration the `bot` fixture runs with; override in a test module to change it."""
    return parse_config(DEFAULT_CONFIG, "test.yaml")


@pytest.fixture
def clock() -> FakeClock | None:
    """The time the `bot` fixture's services read: the real clock unless a test module gives a FakeClock."""
    return None


@pytest.fixture
def leads() -> bool:
    """Whether the `bot` fixture's scheduler may lead (run its periodic jobs on real time). A module whose tests run
    the leader's jobs by hand, on a FakeClock, sets this False: then "another process" holds the leader lease for
    the whole test, so no job runs behind the test's back however slowly the machine goes."""
    return True


async def hold_leader_lease(redis_url: str, config: ChatopsConfig, owner: str = "tests:another-process") -> None:
    """Takes the scheduler's leader lease, with no expiry, before a bot starts: that bot never leads."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.set(Keys(config.redis.key_prefix).scheduler("leader"), owner)
    finally:
        await client.aclose()


@pytest.fixture
async def bot(
    emulator: SlackEmulator,
    redis_url: str,
    bot_config: ChatopsConfig,
    clock: FakeClock | None,
    leads: bool,
) -> AsyncIterator[BotHarness]:
    """The bot, running, wired to the emulator and the tests' Redis (and to `clock`, when a module sets one)."""
    if not leads:
        await hold_leader_lease(redis_url, bot_config)
    harness, runner = await start_bot(emulator, redis_url, bot_config, clock=clock)
    yield harness
    await runner.cleanup()


FAKE_DEPLOY = Path(__file__).parent / "fixtures" / "fake_deploy.py"


def fake_deploy_argv() -> str:
    """The YAML argv that runs tests/fixtures/fake_deploy.py for the command provider."""
    return f'["{sys.executable}", "{FAKE_DEPLOY}", "{{service}}", "{{version}}", "{{environment}}", "{{weight}}"]'


@dataclass
class Target:
    """The fake service: its deploy log and the health endpoint that reads the deployed version."""

    log: Path
    state: Path
    url: str

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[Target]:
    """The fake service deploys act on (tests/test_deploys.py and the modules that reuse its scenarios)."""
    state = tmp_path / "state"
    state.mkdir()

    async def healthz(request: web.Request) -> web.Response:
        version_file = state / f"{request.match_info['env']}.version"
        version = version_file.read_text() if version_file.exists() else "none"
        return web.json_response({"version": version}, status=500 if version.startswith("bad") else 200)

    app = web.Application()
    app.router.add_get("/healthz/{env}", healthz)
    runner, origin = await start_site(app)
    yield Target(log=tmp_path / "deploy.log", state=state, url=origin)
    await runner.cleanup()


def serve_environment(emulator: SlackEmulator, redis_url: str, config: Path | str, port: int) -> dict[str, str]:
    """The environment `chatops serve` runs with in tests: this process's, minus any Slack/Redis settings."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "REDIS_", "CHATOPS_"))}
    return inherited | {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": emulator.signing_secret,
        "SLACK_API_URL": emulator.api_url,
        "REDIS_URL": redis_url,
        "CHATOPS_CONFIG": str(config),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "CHATOPS_DEMO_ALERT_TOKEN": "demo-alert-token",  # examples/chatops.yaml's alert source
    }


async def wait_ready(origin: str, *, deadline: float = DEFAULT_DEADLINE_SECONDS) -> None:
    """Waits until `origin`/readyz answers 200 (failing with the last answer seen)."""
    last = "no answer yet"
    async with aiohttp.ClientSession() as session:

        async def ready() -> bool:
            nonlocal last
            try:
                async with session.get(f"{origin}/readyz") as response:
                    last = f"HTTP {response.status}"
                    return response.status == 200
            except aiohttp.ClientConnectionError as error:
                last = type(error).__name__
                return False

        try:
            await eventually(ready, f"{origin}/readyz to answer 200", deadline=deadline)
        except AssertionError as error:
            raise AssertionError(f"{error}; its last answer: {last}") from None


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
