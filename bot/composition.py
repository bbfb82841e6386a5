"""The composition root: the one module that knows every layer. Builds the clients once (owned by aiohttp's
cleanup_ctx), the dependencies object, the Bolt app with every registered command, and the web app."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from slack_bolt.async_app import AsyncApp

from bot.audit import AuditLog
from bot.config import ChatopsConfig
from bot.deploys.engine import DeployEngine
from bot.deploys.store import DeployStore
from bot.deps import Deps, utc_now
from bot.keys import Keys
from bot.metrics import Metrics
from bot.permissions import Permissions, UsergroupDirectory
from bot.settings import Settings
from bot.slack_client import build_slack_client
from bot.store import Store
from bot.tasks import BackgroundTasks
from bot.web import BOLT, CONFIG, METRICS, STORE, add_routes
from commands import dispatch
from commands.catalog import Catalog, describe
from commands.registry import build_catalog

log = logging.getLogger(__name__)

REDIS = web.AppKey("redis", aioredis.Redis)
HTTP = web.AppKey("http", aiohttp.ClientSession)
DEPS = web.AppKey("deps", Deps)


@dataclass(frozen=True)
class Runtime:
    """What the web app is built from: settings, configuration and the catalog of commands."""

    settings: Settings
    config: ChatopsConfig
    catalog: Catalog


def command_catalog() -> Catalog:
    """The registry's commands (for the CLI's manifest and help)."""
    return build_catalog()


def manifest_commands() -> list[dict[str, str]]:
    """The slash commands as the Slack app manifest lists them."""
    return [describe(spec) for spec in build_catalog().specs]


def create_web_app(
    settings: Settings, config: ChatopsConfig, *, mount: Callable[[web.Application], None] | None = None
) -> web.Application:
    """The bot's aiohttp app; clients are created on startup and closed on cleanup, in order."""
    runtime = Runtime(settings=settings, config=config, catalog=build_catalog())
    app = web.Application(client_max_size=1024 * 1024)
    app[METRICS] = Metrics()
    app[CONFIG] = config
    app.cleanup_ctx.append(_redis_ctx(runtime))
    app.cleanup_ctx.append(_http_ctx)
    app.cleanup_ctx.append(_bot_ctx(runtime))
    app.on_startup.append(_freeze_startup_objects)
    add_routes(app, slack_http=not settings.socket_mode)
    if mount is not None:
        mount(app)
    return app


async def _freeze_startup_objects(app: web.Application) -> None:
    """Moves everything built at start-up out of the garbage collector's view: later collections scan only
    request-time objects, which keeps long pauses out of the acknowledgement latency's tail."""
    gc.collect()
    gc.freeze()


def _redis_ctx(runtime: Runtime) -> Callable[[web.Application], AsyncIterator[None]]:
    async def redis_client(app: web.Application) -> AsyncIterator[None]:
        assert runtime.settings.redis_url is not None
        client = aioredis.Redis.from_url(
            runtime.settings.redis_url, decode_responses=True, socket_connect_timeout=2, socket_timeout=5,
            health_check_interval=30,
        )
        app[REDIS] = client
        app[STORE] = Store(client, Keys(runtime.config.redis.key_prefix), app[METRICS])
        yield
        await client.aclose()

    return redis_client


async def _http_ctx(app: web.Application) -> AsyncIterator[None]:
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    app[HTTP] = session
    yield
    await session.close()


def _bot_ctx(runtime: Runtime) -> Callable[[web.Application], AsyncIterator[None]]:
    async def bot(app: web.Application) -> AsyncIterator[None]:
        settings = runtime.settings
        slack = build_slack_client(
            token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url, metrics=app[METRICS], session=app[HTTP]
        )
        store = app[STORE]
        tasks = BackgroundTasks()
        audit = AuditLog(store, utc_now)
        deploys = DeployEngine(
            config=runtime.config, store=DeployStore(store), slack=slack, http=app[HTTP], audit=audit, tasks=tasks,
            clock=utc_now,
        )
        deps = Deps(
            config=runtime.config,
            store=store,
            audit=audit,
            permissions=Permissions(runtime.config.roles, UsergroupDirectory(slack)),
            slack=slack,
            http=app[HTTP],
            metrics=app[METRICS],
            tasks=tasks,
            deploys=deploys,
        )
        app[DEPS] = deps
        bolt = AsyncApp(
            client=slack,
            signing_secret=settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None,
            request_verification_enabled=not settings.socket_mode,
            process_before_response=True,
            logger=logging.getLogger("slack_bolt"),
        )
        dispatch.install(bolt, deps, runtime.catalog)
        app[BOLT] = bolt
        socket_handler = None
        if settings.socket_mode:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            assert settings.slack_app_token is not None
            socket_handler = AsyncSocketModeHandler(bolt, settings.slack_app_token.get_secret_value(), web_client=slack)
            await socket_handler.connect_async()
            log.info("connected to Slack in Socket Mode")
        stop_ticks = asyncio.Event()
        ticks = asyncio.get_running_loop().create_task(deploys.run_ticks(stop_ticks), name="deploy-ticks")
        yield
        stop_ticks.set()
        await ticks
        if socket_handler is not None:
            await socket_handler.close_async()
        await tasks.drain()
        await deploys.aclose()

    return bot
