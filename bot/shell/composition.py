"""The composition root: the one module that knows every layer. Builds the clients once (owned by aiohttp's
cleanup_ctx), the dependencies object, the Bolt app with every registered command, and the web app."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
from aiohttp import web
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.alerts.http import alert_webhook
from bot.alerts.pipeline import AlertPipeline
from bot.alerts.store import AlertStore
from bot.backups.service import BackupService
from bot.backups.store import BackupStore
from bot.deploys.engine import DeployEngine
from bot.deploys.store import DeployStore
from bot.incidents.paging import with_incident_policies
from bot.incidents.service import IncidentService
from bot.incidents.store import IncidentStore
from bot.oncall.pager import Pager
from bot.oncall.pagerduty import PagerDutyOutbox
from bot.oncall.pagerduty_webhook import PagerDutyWebhooks
from bot.oncall.service import OncallService
from bot.oncall.trigger import HandoffTrigger
from bot.platform.audit import AuditLog
from bot.platform.channels import ChannelDirectory
from bot.platform.keys import Keys
from bot.platform.metrics import Metrics
from bot.platform.people import PeopleDirectory
from bot.platform.permissions import Permissions, UsergroupDirectory
from bot.platform.redis_client import PoolOptions, RedisClient, build_redis_client, parse_redis_url
from bot.platform.replies import Replies
from bot.platform.request_guard import RequestGuard
from bot.platform.scheduler import LeaderScheduler, Missed
from bot.platform.slack_client import build_slack_client
from bot.platform.store import Durability, Store
from bot.platform.tasks import BackgroundTasks
from bot.shell.config import ChatopsConfig
from bot.shell.deps import Deps, utc_now
from bot.shell.heartbeats import Heartbeats, run_periodic
from bot.shell.pruning import Pruner
from bot.shell.settings import Settings
from bot.shell.web import BOLT, COMMANDS, CONFIG, HEARTBEATS, METRICS, STORE, add_routes
from bot.status.http import status_page_routes
from bot.status.page import RECENT, PublicIncident
from bot.status.service import StatusService
from bot.status.store import ProbeStore
from commands import dispatch
from commands.catalog import Catalog, describe, describe_shortcut
from commands.registry import build_catalog
from integrations.alerts.registry import build_sources
from integrations.alerts.settings import SourceConfigError
from integrations.alerts.source import AlertSource
from integrations.backups.base import BackupError
from integrations.backups.envelope import parse_key
from integrations.paging import pagerduty as pagerduty_vendor
from integrations.statuspage.statuspage import StatuspageConfigError, build_client

log = logging.getLogger(__name__)

REDIS = web.AppKey[RedisClient]("redis")  # a union is no `type`: the parameter says it instead
HTTP = web.AppKey("http", aiohttp.ClientSession)
DEPS = web.AppKey("deps", Deps)
SOURCES = web.AppKey[Mapping[str, AlertSource]]("alert_sources")
PD_WEBHOOKS = web.AppKey("pagerduty_webhooks", PagerDutyWebhooks)


@dataclass(frozen=True)
class Runtime:
    """What the web app is built from: settings, configuration and the catalog of commands."""

    settings: Settings
    config: ChatopsConfig
    catalog: Catalog
    clock: Callable[[], datetime] = utc_now


SHUTDOWN_GRACE_SECONDS = 5.0
DEPLOY_TICK_SECONDS = 2.0  # approval expiry and recovery of deploys a dead process left
LOOP_LIMITS = {"alert-delivery": 30.0, "alert-messages": 120.0, "deploy-ticks": 60.0, "scheduler": 60.0}


class StartupError(Exception):
    """The bot cannot start with these settings; the message says why (never a secret)."""


async def preflight(settings: Settings, config: ChatopsConfig) -> None:
    """Checks before anything starts what the configuration alone cannot: that every alert source's secret is
    in the environment, and (Socket Mode) that Slack accepts the app token; slack_sdk would retry a refused
    token forever."""
    async with aiohttp.ClientSession() as session:
        try:
            build_sources(config.alerts.sources, environ=os.environ, http=session)
            if config.integrations.pagerduty is not None:
                pagerduty_vendor.build(config.integrations.pagerduty, environ=os.environ, http=session)
        except SourceConfigError as error:
            raise StartupError(str(error)) from None
        if config.integrations.statuspage is not None:
            try:
                build_client(config.integrations.statuspage, environ=os.environ, http=session)
            except StatuspageConfigError as error:
                raise StartupError(str(error)) from None
        check_backup_keys(config, os.environ)
        if settings.slack_app_token is None:
            return
        client = AsyncWebClient(base_url=settings.slack_api_url, session=session)
        try:
            await client.apps_connections_open(app_token=settings.slack_app_token.get_secret_value())
        except SlackApiError as error:
            raise StartupError(
                f"Slack refused SLACK_APP_TOKEN for Socket Mode: {error.response.get('error')}"
            ) from None
        except aiohttp.ClientError as error:
            raise StartupError(f"cannot reach Slack at {settings.slack_api_url}: {type(error).__name__}") from None


def check_backup_keys(config: ChatopsConfig, environ: Mapping[str, str]) -> None:
    """StartupError when a backup storage's `encryption.key_env` is unset or not a 32-byte key (named, never
    shown), rather than at the first backup."""
    for name, storage in config.backups.storage.items():
        if storage.encryption is not None and storage.encryption.key_env is not None:
            try:
                parse_key(environ, storage.encryption.key_env)
            except BackupError as error:
                raise StartupError(f"backups.storage.{name}.encryption.key_env: {error}") from None


def command_catalog() -> Catalog:
    """The registry's commands (for the CLI's manifest and help)."""
    return build_catalog()


def manifest_commands() -> list[dict[str, str]]:
    """The slash commands as the Slack app manifest lists them."""
    return [describe(spec) for spec in build_catalog().specs]


def manifest_shortcuts() -> list[dict[str, str]]:
    """The shortcuts (message and global) as the Slack app manifest lists them."""
    return [describe_shortcut(shortcut) for spec in build_catalog().specs for shortcut in spec.shortcuts]


def create_web_app(
    settings: Settings,
    config: ChatopsConfig,
    *,
    mount: Callable[[web.Application], None] | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> web.Application:
    """The bot's aiohttp app; clients are created on startup and closed on cleanup, in order. `clock` is the
    one time source of every service (tests pass a controllable one)."""
    runtime = Runtime(settings=settings, config=config, catalog=build_catalog(), clock=clock)
    app = web.Application(client_max_size=5 * 1024 * 1024)  # the alert webhooks accept up to 5 MiB
    app[METRICS] = Metrics()
    app[HEARTBEATS] = Heartbeats(app[METRICS])
    app[CONFIG] = config
    app.cleanup_ctx.append(_redis_ctx(runtime))
    app.cleanup_ctx.append(_http_ctx)
    app.cleanup_ctx.append(_bot_ctx(runtime))
    app.on_startup.append(_freeze_startup_objects)
    add_routes(app, slack_http=not settings.socket_mode)
    app.router.add_post(
        "/alerts/{source}",
        alert_webhook(lambda: app[SOURCES], lambda: app[DEPS].alerts, lambda: app[HTTP], clock),
    )
    status_page_routes(app, lambda: app[DEPS].status.public if DEPS in app else None)

    async def pagerduty_webhook(request: web.Request) -> web.StreamResponse:
        return await app[PD_WEBHOOKS].handle(request)

    app.router.add_post("/integrations/pagerduty", pagerduty_webhook)
    if mount is not None:
        mount(app)
    return app


FREEZE_AFTER_SECONDS = 1.0


async def _freeze_startup_objects(app: web.Application) -> None:
    """Moves everything built at start-up out of the garbage collector's view: later collections scan only
    request-time objects, which keeps long pauses out of the acknowledgement latency's tail. Done a moment after
    start-up, once the server listens: the full collection takes a tenth of a second that /healthz need not wait."""

    def freeze() -> None:
        gc.collect()
        gc.freeze()

    asyncio.get_running_loop().call_later(FREEZE_AFTER_SECONDS, freeze)


class _ClientGivenNotice(logging.Filter):
    """Drops Bolt's start-up warning that the token is unused because a client was given: Bolt reads
    SLACK_BOT_TOKEN from the environment itself, so every `chatops serve` start printed it, though giving the client
    (with that very token) is what we mean."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


def _bolt_logger() -> logging.Logger:
    logger = logging.getLogger("slack_bolt")
    if not any(isinstance(existing, _ClientGivenNotice) for existing in logger.filters):
        logger.addFilter(_ClientGivenNotice())
    return logger


def _roles(config: ChatopsConfig) -> dict[str, tuple[str, ...]]:
    """The configured roles; `alerts.responders`, when set, is the `responders` role."""
    roles = dict(config.roles)
    if config.alerts.responders:
        roles["responders"] = config.alerts.responders
    return roles


def _schedule(
    scheduler: LeaderScheduler,
    config: ChatopsConfig,
    alerts: AlertPipeline,
    oncall: OncallService,
    pager: Pager,
    status: StatusService,
    backups: BackupService,
    incidents: IncidentService,
) -> None:
    """Registers the periodic jobs the leader runs: the escalation tick (alert pages, then incidents' "no
    commander" deadlines and Slack catch-up), silence expiry, the health probes, every rotation's hand-off (a
    missed one is posted once, late, with a note), the pruning of old overrides, and the backups' schedules,
    drills, RPO check and tick (restore expiry, interrupted runs)."""

    async def escalation_tick(_: Missed | None) -> None:
        await pager.tick()
        await incidents.tick()

    async def expire_silences(_: Missed | None) -> None:
        await alerts.tick()

    async def prune_overrides(_: Missed | None) -> None:
        await oncall.prune_overrides()

    scheduler.add_job(
        "escalation-tick",
        escalation_tick,
        IntervalTrigger(seconds=config.scheduler.tick.total_seconds()),
        catch_up=False,
    )
    scheduler.add_job("alert-silences", expire_silences, IntervalTrigger(seconds=5), catch_up=False)

    async def probe(_: Missed | None) -> None:
        await status.probe_job()

    if status.targets:
        scheduler.add_job(
            "status-probes",
            probe,
            IntervalTrigger(seconds=config.status.probe_interval.total_seconds()),
            catch_up=False,
        )

    async def backup_tick(_: Missed | None) -> None:
        await backups.tick()

    scheduler.add_job("backup-tick", backup_tick, IntervalTrigger(seconds=5), catch_up=False)
    for name, func, trigger in backups.jobs():
        scheduler.add_job(name, func, trigger)
    scheduler.add_job("oncall-prune", prune_overrides, CronTrigger(hour=3, minute=17, timezone=UTC))
    for name, spec in config.oncall.specs.items():

        async def handoff(missed: Missed | None, rotation: str = name) -> None:
            await oncall.handoff(rotation, note=missed.note if missed is not None else None)

        scheduler.add_job(f"handoff:{name}", handoff, HandoffTrigger(spec))


def _redis_ctx(runtime: Runtime) -> Callable[[web.Application], AsyncIterator[None]]:
    async def redis_client(app: web.Application) -> AsyncIterator[None]:
        assert runtime.settings.redis_url is not None
        section = runtime.config.redis
        client = build_redis_client(
            parse_redis_url(runtime.settings.redis_url),
            PoolOptions(max_connections=section.max_connections, timeout=section.pool_timeout.total_seconds()),
        )
        durability = Durability(section.min_replicas_acked, int(section.wait_timeout.total_seconds() * 1000))
        app[REDIS] = client
        app[STORE] = Store(client, Keys(section.key_prefix), app[METRICS], durability)
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
        # Before any client is opened: a missing secret stops start-up naming its variable, leaking nothing.
        pd_settings = runtime.config.integrations.pagerduty
        pagerduty = pagerduty_vendor.build(pd_settings, environ=os.environ, http=app[HTTP]) if pd_settings else None
        # Slack gets its own session: slack_sdk applies its timeout only to sessions it owns, and a slow Slack must
        # fail a call in SLACK_API_TIMEOUT (to be retried), not hold it for the shared session's 30 s.
        slack_session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=settings.slack_api_timeout))
        slack = build_slack_client(
            token=settings.slack_bot_token.get_secret_value(),
            base_url=settings.slack_api_url,
            metrics=app[METRICS],
            session=slack_session,
            timeout=settings.slack_api_timeout,
        )
        store = app[STORE]
        tasks = BackgroundTasks()
        clock = runtime.clock
        audit = AuditLog(store, clock)
        deploy_store = DeployStore(
            store
        )  # the engine's own; the root hands it only to retention (bot/shell/pruning.py)
        deploys = DeployEngine(
            runtime.config.services,
            runtime.config.deploys,
            announce_channel=runtime.config.slack.announce_channel,
            store=deploy_store,
            slack=slack,
            http=app[HTTP],
            audit=audit,
            tasks=tasks,
            clock=clock,
        )
        # Incident pages walk escalation policies like alerts; severities that page a rotation get one synthesized.
        # The alert groups' store: the pipeline's own; the root hands it also to what pages and follows those groups
        # (escalation, the PagerDuty outbox and webhooks) and to retention.
        alert_store = AlertStore(store)
        alerts = AlertPipeline(
            config=runtime.config.alerts,
            store=alert_store,
            slack=slack,
            audit=audit,
            clock=clock,
            oncall=with_incident_policies(runtime.config.incidents, runtime.config.oncall),
            heartbeat=app[HEARTBEATS].beat,
        )
        incident_store = IncidentStore(store)

        async def open_incidents() -> list[str]:
            return await incidents.open_lines()

        oncall = OncallService(
            config=runtime.config.oncall,
            store=store,
            firing_alerts=alerts.firing,
            slack=slack,
            audit=audit,
            clock=clock,
            open_incidents=open_incidents,
        )
        # PagerDuty: events owed to it are queued with the group change that calls for them (an observer of every
        # change) and sent by their own loop until PagerDuty takes them.
        outbox = PagerDutyOutbox(pagerduty=pagerduty, alerts=alerts, store=alert_store, clock=clock)
        alert_store.observers.append(outbox.follow_up)
        pager = Pager(
            oncall=oncall,
            alerts=alerts,
            store=alert_store,
            slack=slack,
            audit=audit,
            clock=clock,
            claim_lease=runtime.config.scheduler.lease,
            outbox=outbox,
        )
        usergroups = UsergroupDirectory(slack)
        permissions = Permissions(_roles(runtime.config), usergroups)
        statuspage = None
        if runtime.config.integrations.statuspage is not None:
            statuspage = build_client(runtime.config.integrations.statuspage, environ=os.environ, http=app[HTTP])
        incidents = IncidentService(
            config=runtime.config.incidents,
            store=incident_store,
            slack=slack,
            audit=audit,
            alerts=alerts,
            oncall=oncall,
            deploys=deploys,
            permissions=permissions,
            usergroups=usergroups,
            clock=clock,
            statuspage=statuspage,
        )

        async def public_incidents(now: datetime) -> list[PublicIncident]:
            # The status domain sees incidents only as the public page may: public title and public texts.
            return [
                PublicIncident(
                    title=i.public_title,
                    severity=i.severity,
                    status=i.status,
                    service=i.service,
                    declared_at=i.declared_at,
                    resolved_at=i.resolved_at,
                    updates=tuple((e.at, e.text) for e in entries),
                )
                for i, entries in await incidents.public_history(now - RECENT)
            ]

        people = PeopleDirectory(slack)
        app[PD_WEBHOOKS] = PagerDutyWebhooks(
            pagerduty=pagerduty, alerts=alerts, store=alert_store, people=people, clock=clock
        )
        scheduler = LeaderScheduler(
            redis=store.redis,
            keys=store.keys,
            lease_ttl=runtime.config.scheduler.lease,
            clock=clock,
            heartbeat=lambda: app[HEARTBEATS].beat("scheduler"),
        )
        status = StatusService(
            runtime.config.status,
            services=runtime.config.services,
            status_page=runtime.config.status_page,
            store=ProbeStore(store),
            deploys=deploys,
            alerts=alerts,
            http=app[HTTP],
            clock=clock,
            public_incidents=public_incidents,
        )
        backup_store = BackupStore(store, history_keep=runtime.config.backups.history_keep)  # the service's own
        backups = BackupService(
            runtime.config.backups,
            announce_channel=runtime.config.slack.announce_channel,
            records=backup_store,
            slack=slack,
            audit=audit,
            alerts=alerts,
            tasks=tasks,
            clock=clock,
        )
        _schedule(scheduler, runtime.config, alerts, oncall, pager, status, backups, incidents)
        pruner = Pruner(  # retention: the leader removes old history in bounded batches (bot/shell/pruning.py)
            retention=runtime.config.retention,
            alerts=alert_store,
            deploys=deploy_store,
            backups=backup_store,
            audit=audit,
            clock=clock,
            backup_targets=lambda: list(runtime.config.backups.targets),
            deploy_keys=lambda: [(s, e) for s, svc in runtime.config.services.items() for e in svc.environments],
        )
        scheduler.add_job(
            "retention",
            pruner.job,
            IntervalTrigger(seconds=runtime.config.retention.every.total_seconds()),
            catch_up=False,
        )
        app[SOURCES] = build_sources(runtime.config.alerts.sources, environ=os.environ, http=app[HTTP])
        alerts.use_sources(app[SOURCES], app[METRICS])  # the consumer normalises what their raw intake stored
        deps = Deps(
            config=runtime.config,
            audit=audit,
            permissions=permissions,
            replies=Replies(slack, app[HTTP]),
            metrics=app[METRICS],
            tasks=tasks,
            deploys=deploys,
            alerts=alerts,
            backups=backups,
            oncall=oncall,
            pager=pager,
            incidents=incidents,
            open_incidents=open_incidents,
            scheduler=scheduler,
            people=people,
            channels=ChannelDirectory(slack),
            status=status,
            clock=clock,
        )
        app[DEPS] = deps
        bolt = AsyncApp(
            client=slack,
            signing_secret=settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None,
            request_verification_enabled=not settings.socket_mode,
            process_before_response=True,
            logger=_bolt_logger(),
            name="chatops",  # unnamed, Bolt names the app after its caller's file, walking the whole stack to find it
        )
        guard = RequestGuard(store)  # the dispatcher's own way into Redis: request and click idempotency
        dispatch.install(bolt, deps, runtime.catalog, guard)
        app[BOLT] = bolt
        if settings.slack_signing_secret is not None and not settings.socket_mode:
            app[COMMANDS] = dispatch.CommandEndpoint(
                deps, runtime.catalog, settings.slack_signing_secret.get_secret_value(), guard
            )
        socket_handler = None
        if settings.socket_mode:
            from slack_bolt.adapter.socket_mode.async_handler import (
                AsyncSocketModeHandler,
            )

            assert settings.slack_app_token is not None
            app_token = settings.slack_app_token.get_secret_value()
            socket_handler = AsyncSocketModeHandler(bolt, app_token, web_client=slack)
            try:
                await socket_handler.connect_async()
            except BaseException:
                await socket_handler.close_async()
                raise
            log.info("connected to Slack in Socket Mode")
        stop_ticks = asyncio.Event()
        loop = asyncio.get_running_loop()
        heartbeats = app[HEARTBEATS]
        # A loop that completes no iteration for this long makes /readyz answer 503 (Slack failures are retried
        # inside an iteration; only Redis failing, or a loop stuck, stops the beats).
        for name, within in LOOP_LIMITS.items():
            heartbeats.expect(name, within)
        workers = [
            loop.create_task(
                run_periodic(
                    "deploy-ticks", deploys.tick, every=DEPLOY_TICK_SECONDS, stop=stop_ticks, heartbeats=heartbeats
                ),
                name="deploy-ticks",
            ),
            loop.create_task(alerts.run_consumer(stop_ticks), name="alert-delivery"),
            loop.create_task(alerts.run_flusher(stop_ticks), name="alert-messages"),
            loop.create_task(scheduler.run(stop_ticks), name="scheduler"),
        ]
        if pagerduty is not None:
            heartbeats.expect("pagerduty-outbox", LOOP_LIMITS["alert-messages"])
            workers.append(loop.create_task(outbox.run(stop_ticks, heartbeats.beat), name="pagerduty-outbox"))
        yield
        stop_ticks.set()
        # Workers stop at their next check; one stuck in a rate-limited Slack call is cancelled after a grace
        # period (what it did not finish stays in Redis: pending stream entries, dirty messages).
        _, unfinished = await asyncio.wait(workers, timeout=SHUTDOWN_GRACE_SECONDS)
        for worker in unfinished:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        if socket_handler is not None:
            await socket_handler.close_async()
        await tasks.drain()
        await deploys.aclose()
        await backups.aclose()
        await slack_session.close()

    return bot
