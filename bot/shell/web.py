"""The aiohttp routes: Slack's request endpoint, liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Protocol

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp

from bot.platform.errors import StoreUnavailable
from bot.platform.metrics import Metrics
from bot.platform.store import Store
from bot.shell.config import ChatopsConfig
from bot.shell.heartbeats import Heartbeats

METRICS = web.AppKey("metrics", Metrics)
CONFIG = web.AppKey("config", ChatopsConfig)
STORE = web.AppKey("store", Store)
BOLT = web.AppKey("bolt", AsyncApp)
HEARTBEATS = web.AppKey("heartbeats", Heartbeats)


class SlashCommands(Protocol):
    """Answers slash commands without Bolt (commands/dispatch.py's CommandEndpoint, set by the composition root)."""

    async def answer(self, raw: bytes, headers: Mapping[str, str]) -> tuple[int, bytes, str] | None:
        """(status, body, content type), or None for a request that is not a slash command."""


COMMANDS = web.AppKey("slash_commands", SlashCommands)
FORM = "application/x-www-form-urlencoded"

READINESS_TIMEOUT_SECONDS = 1.0
SLACK_PATHS = ("/slack/events", "/slack/interactive", "/slack/commands")


async def slack_events(request: web.Request) -> web.Response:
    """Answers a signed Slack request and times the answer: slash commands straight through `COMMANDS`, everything
    else through the Bolt app (both verify the signature and the request's age first)."""
    started = time.perf_counter()
    commands = request.app.get(COMMANDS)
    if commands is not None and request.content_type == FORM:
        answered = await commands.answer(await request.read(), request.headers)
        if answered is not None:
            status, body, content_type = answered
            request.app[METRICS].acked("command", time.perf_counter() - started)
            return web.Response(status=status, body=body, content_type=content_type)
    bolt_request = await to_bolt_request(request)
    response = await request.app[BOLT].async_dispatch(bolt_request)
    payload = bolt_request.body or {}
    kind = "command" if payload.get("command") else str(payload.get("type") or "unknown")
    request.app[METRICS].acked(kind, time.perf_counter() - started)
    return await to_aiohttp_response(response)


async def healthz(request: web.Request) -> web.Response:
    """The process is up and serving."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 only when the configuration is loaded, Redis answers and every background loop is making progress;
    503 with the reasons otherwise."""
    reasons: list[str] = []
    if CONFIG not in request.app:
        reasons.append("configuration not loaded")
    store = request.app.get(STORE)
    if store is None:
        reasons.append("redis: not connected yet")
    else:
        try:
            await asyncio.wait_for(store.ping(), READINESS_TIMEOUT_SECONDS)
        except StoreUnavailable as error:
            reasons.append(f"redis: {error.__cause__ or error}")
        except TimeoutError:
            reasons.append(f"redis: no answer within {READINESS_TIMEOUT_SECONDS:g}s")
    heartbeats = request.app.get(HEARTBEATS)
    if heartbeats is not None:
        reasons.extend(heartbeats.stalled())
    if reasons:
        return web.json_response({"status": "not ready", "reasons": reasons}, status=503)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of this process's metrics."""
    body, content_type = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": content_type})


def add_routes(app: web.Application, *, slack_http: bool) -> None:
    """Adds the health routes, and Slack's endpoint unless Socket Mode carries Slack's requests."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    if slack_http:
        for path in SLACK_PATHS:
            app.router.add_post(path, slack_events)
