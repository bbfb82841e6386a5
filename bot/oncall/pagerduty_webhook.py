"""`POST /integrations/pagerduty`: PagerDuty v3 webhooks, so an acknowledgement or resolution made in PagerDuty
counts in chatops (Redis stays the one record of acknowledgements).

Answers, in order of checks: 404 when no webhook secret is configured; 401 when `X-PagerDuty-Signature` is
missing or no `v1=` signature in it matches the raw body; 400 when the body is not a v3 webhook; 204 for event
types other than `incident.acknowledged` / `incident.resolved` and for incidents that are not chatops' (their
`incident_key` names no alert group); 200 with what was done otherwise (`acknowledged`, `resolved`, `already`
when chatops had it already, `duplicate` for a webhook id seen before); 503 when Redis cannot be reached
(PagerDuty retries). Nothing is stored for a refused request. The webhook id (`X-Webhook-Id`, else `event.id`) is
recorded in the same transaction as the acknowledgement, so a replay is recorded once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from aiohttp import web

from bot.alerts.model import AlertGroup
from bot.alerts.pipeline import AlertPipeline
from bot.alerts.store import AlertStore
from bot.platform.errors import StoreUnavailable, UserFacingError, new_ref
from bot.platform.people import PeopleDirectory
from bot.platform.store import Pipe
from integrations.paging.pagerduty import (
    SIGNATURE_HEADER,
    WEBHOOK_ID_HEADER,
    IncidentEvent,
    PagerDuty,
    WebhookInvalid,
    parse_webhook,
    verify_signature,
)

log = logging.getLogger(__name__)

HANDLED = ("incident.acknowledged", "incident.resolved")
SEEN_DAYS = 7  # PagerDuty retries for about 20 minutes; a week covers any replay worth catching
MAX_BODY = 256 * 1024


class PagerDutyWebhooks:
    """Applies PagerDuty's incident acknowledgements and resolutions to chatops' alert groups."""

    def __init__(
        self,
        *,
        pagerduty: PagerDuty | None,
        alerts: AlertPipeline,
        store: AlertStore,
        people: PeopleDirectory,
        clock: Callable[[], datetime],
    ) -> None:
        self._pagerduty = pagerduty
        self._alerts = alerts
        self._store = store  # the alert groups' store: PagerDuty's actions are matched to groups
        self._people = people
        self._clock = clock

    async def handle(self, request: web.Request) -> web.Response:
        """The aiohttp handler."""
        secret = self._pagerduty.webhook_secret if self._pagerduty is not None else None
        if secret is None:
            return web.json_response(
                {"error": "PagerDuty webhooks are not configured (integrations.pagerduty.webhook_secret_env)"},
                status=404,
            )
        if request.content_length is not None and request.content_length > MAX_BODY:
            return web.json_response({"error": "body larger than 256 KB"}, status=413)
        body = await request.read()
        try:
            verify_signature(body, request.headers.get(SIGNATURE_HEADER), secret)
            event = parse_webhook(body, webhook_id=request.headers.get(WEBHOOK_ID_HEADER) or None)
        except WebhookInvalid as invalid:
            log.warning("PagerDuty webhook refused (%s): %s", invalid.status, invalid.reason)
            return web.json_response({"error": invalid.reason}, status=invalid.status)
        if event.event_type not in HANDLED or not event.incident_key:
            return web.Response(status=204)
        try:
            return await self._apply(event)
        except StoreUnavailable:
            ref = new_ref()
            log.error("PagerDuty webhook %s not applied: Redis unavailable (ref %s)", event.id, ref)
            return web.json_response({"error": f"could not record it; retry (ref {ref})"}, status=503)

    async def _apply(self, event: IncidentEvent) -> web.Response:
        assert event.incident_key is not None
        group = await self._store.get_group(event.incident_key)
        if group is None:
            return web.Response(status=204)  # not an alert chatops triggered
        seen_key = self._store.k("pd_webhook", event.id)
        if await self._store.redis.exists(seen_key):
            return web.json_response({"status": "duplicate", "group": group.id})
        user, name, email = await self._who(event)

        def mark_seen(pipe: Pipe, _group: AlertGroup) -> None:
            pipe.set(seen_key, self._clock().isoformat(), ex=SEEN_DAYS * 86400)

        acknowledged = event.event_type == "incident.acknowledged"
        try:
            if acknowledged:
                details = {
                    "pagerduty_user": event.agent_id or "",
                    "pagerduty_name": event.agent_name or "",
                    "pagerduty_email": email or "",
                    "pagerduty_incident": event.incident_id,
                    "pagerduty_event": event.id,
                }
                await self._alerts.acknowledge(
                    group.id, user, via="pagerduty", name=name, details=details, also=mark_seen
                )
            else:
                await self._alerts.resolve(group.id, user, via="pagerduty", name=name, also=mark_seen)
        except UserFacingError as already:  # acknowledged or resolved in chatops first: nothing to change
            await self._store.redis.set(seen_key, self._clock().isoformat(), ex=SEEN_DAYS * 86400)
            return web.json_response({"status": "already", "group": group.id, "detail": already.message})
        return web.json_response({"status": "acknowledged" if acknowledged else "resolved", "group": group.id})

    async def _who(self, event: IncidentEvent) -> tuple[str, str | None, str | None]:
        """(the Slack user, or `pagerduty:<id>`; the name to show when not a Slack user; the email) of the agent."""
        email = None
        if self._pagerduty is not None and event.agent_id:
            email = await self._pagerduty.users.email(event.agent_id)
        if email:
            slack_user = await self._people.by_email(email)
            if slack_user is not None:
                return slack_user, None, email
        name = event.agent_name or email or "someone"
        return f"pagerduty:{event.agent_id or 'unknown'}", name, email
