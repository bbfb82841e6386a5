"""`POST /alerts/{source}`: authenticate and parse with the source, append to the stream, then answer.
2xx only once the alerts are stored; 5xx only when chatops could not store them (so senders retry);
401/400/403/413 with the precise reason otherwise, and nothing stored.

A source with the raw intake (`RawIntake`, e.g. Alertmanager) first gets `admit`: a body it finds certainly valid is
stored as it came in one Redis write (normalised later by the consumer), which is most of the cost of a webhook
saved; any other body takes the full `receive` path, so its answer is exactly what it always was."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

import aiohttp
from aiohttp import web

from bot.alerts.pipeline import AlertPipeline
from bot.platform.errors import StoreUnavailable, new_ref
from integrations.alerts.source import Accepted, AlertSource, Confirmation, RawIntake, WebhookRejected, WebhookRequest

log = logging.getLogger(__name__)

MAX_BODY = 5 * 1024 * 1024


def alert_webhook(
    sources: Callable[[], Mapping[str, AlertSource]],
    pipeline: Callable[[], AlertPipeline],
    http: Callable[[], aiohttp.ClientSession],
    clock: Callable[[], datetime],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The aiohttp handler, reading its collaborators from the app at request time."""
    # Whether each source has the raw intake, looked up once: a Protocol isinstance check costs microseconds.
    intakes: dict[str, tuple[AlertSource, RawIntake | None]] = {}

    async def handle(request: web.Request) -> web.Response:
        name = request.match_info["source"]
        source = sources().get(name)
        if source is None:
            known = ", ".join(sorted(sources())) or "none are configured"
            return web.json_response({"error": f"unknown alert source {name!r}; configured: {known}"}, status=404)
        if request.content_length is not None and request.content_length > MAX_BODY:
            return web.json_response({"error": f"body larger than {MAX_BODY} bytes"}, status=413)
        body = await request.read()
        webhook = WebhookRequest(headers=request.headers, body=body, remote=request.remote, now=clock())
        cached = intakes.get(name)
        if cached is None or cached[0] is not source:
            cached = intakes[name] = (source, source if isinstance(source, RawIntake) else None)
        intake = cached[1]
        if intake is not None:
            try:
                admitted = intake.admit(webhook)
            except WebhookRejected as rejected:
                return web.json_response({"error": rejected.reason}, status=rejected.status)
            except Exception:  # a bug in `admit`: the full path answers (and logs) as it always did
                admitted = None
            if admitted is not None:
                try:
                    await pipeline().ingest_raw(name, body, admitted.count, webhook.now)
                except StoreUnavailable:
                    return _unavailable(name, admitted.count)
                # The same text json_response writes, without encoding a dict on every webhook.
                return web.Response(
                    text=f'{{"accepted": {admitted.count}, "truncated": {admitted.truncated}}}',
                    content_type="application/json",
                )
        try:
            result = await source.receive(webhook)
        except WebhookRejected as rejected:
            return web.json_response({"error": rejected.reason}, status=rejected.status)
        if isinstance(result, Confirmation):
            try:
                async with http().get(result.url, timeout=aiohttp.ClientTimeout(total=10)) as response:
                    if response.status >= 300:
                        return web.json_response(
                            {"error": f"confirming the subscription got HTTP {response.status}"}, status=502
                        )
            except aiohttp.ClientError as error:
                return web.json_response(
                    {"error": f"could not confirm the subscription: {type(error).__name__}"}, status=502
                )
            return web.json_response({"confirmed": True})
        assert isinstance(result, Accepted)
        if result.ignored:  # authentic, but nothing to alert on (e.g. a Sentry installation webhook)
            log.info("alert source %s: ignored a request: %s", name, result.reply)
            return web.Response(status=204)
        once = None if result.idempotency_key is None else f"{name}:{result.idempotency_key}"
        try:
            entry = await pipeline().ingest(result.alerts, once=once)
        except StoreUnavailable:
            return _unavailable(name, len(result.alerts))
        if once is not None and result.alerts and entry is None:  # a redelivery: stored the first time
            return web.json_response({"accepted": 0, "truncated": 0, "duplicate": True})
        return web.json_response({"accepted": len(result.alerts), "truncated": result.truncated})

    return handle


def _unavailable(source: str, count: int) -> web.Response:
    """503 with a reference that is also logged: the sender retries, nothing was acknowledged."""
    ref = new_ref()
    log.error("could not store %d alerts from %s (ref %s)", count, source, ref)
    return web.json_response({"error": f"could not store the alerts; retry (ref {ref})"}, status=503)
