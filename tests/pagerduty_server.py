"""A local stand-in for PagerDuty, as its developer docs describe it (github.com/PagerDuty/developer-docs):

- `POST /v2/enqueue` (docs/events-API-v2/02-Trigger-Events.md, 01-Overview.md): validates an alert event
  (`routing_key` of 32 characters, `event_action` trigger / acknowledge / resolve, `dedup_key` <= 255, a trigger's
  `payload.summary` <= 1024, `payload.source`, `payload.severity` in critical / error / warning / info) and answers
  202 `{"status": "success", "message": "Event processed", "dedup_key": ...}`, or 400 `{"status": "invalid event",
  "message": "Event object is invalid", "errors": [...]}`. Accepted events open, acknowledge and resolve alerts by
  (routing key, dedup key): a trigger on an open alert adds to it, acknowledge / resolve of none is dropped.
- `GET /users/{id}` (REST API v2, `Authorization: Token token=<key>`): `{"user": {...}}` with the email.
- Faults, queued by a test: any status (500, 429 with Retry-After, a 400 with errors) for the next requests.

And the sender of v3 webhooks signed as docs/webhooks/04-Signatures.md says (`X-PagerDuty-Signature: v1=<hex>`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

FIXTURES = Path(__file__).parent / "fixtures" / "pagerduty"
SEVERITIES = ("critical", "error", "warning", "info")


@dataclass
class Fault:
    """One answer to give instead of the real one."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)
    retry_after: str | None = None


@dataclass
class PagerDutyServer:
    """The stand-in's state: what it accepted, every attempt, the alerts, its users and queued faults."""

    api_token: str = field(default_factory=lambda: secrets.token_hex(10))
    url: str = ""
    accepted: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    alerts: dict[tuple[str, str], str] = field(default_factory=dict)
    users: dict[str, dict[str, str]] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)

    def app(self) -> web.Application:
        """The aiohttp app."""
        app = web.Application()
        app.router.add_post("/v2/enqueue", self._enqueue)
        app.router.add_get("/users/{id}", self._user)
        return app

    def accepted_for(self, dedup_key: str, action: str | None = None) -> list[dict[str, Any]]:
        """Accepted events for one alert (of one action)."""
        return [
            e
            for e in self.accepted
            if e.get("dedup_key") == dedup_key and (action is None or e["event_action"] == action)
        ]

    async def _enqueue(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            event = json.loads(raw)
        except ValueError:
            event = None
        self.attempts.append(event if isinstance(event, dict) else {"raw": raw.decode(errors="replace")})
        if self.faults:
            fault = self.faults.pop(0)
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
            return web.json_response(
                fault.body or {"status": "error", "message": f"HTTP {fault.status}"},
                status=fault.status,
                headers=headers,
            )
        errors = _problems(event)
        if errors:
            answer = {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
            return web.json_response(answer, status=400)
        assert isinstance(event, dict)
        key = (event["routing_key"], event.get("dedup_key") or secrets.token_hex(16))
        state = self.alerts.get(key)
        action = event["event_action"]
        if action == "trigger" and state in (None, "resolved"):
            self.alerts[key] = "triggered"
        elif action == "acknowledge" and state == "triggered":
            self.alerts[key] = "acknowledged"
        elif action == "resolve" and state in ("triggered", "acknowledged"):
            self.alerts[key] = "resolved"
        self.accepted.append(event)
        return web.json_response({"status": "success", "message": "Event processed", "dedup_key": key[1]}, status=202)

    async def _user(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Token token={self.api_token}":
            return web.json_response({"error": {"message": "Unauthorized", "code": 2006}}, status=401)
        user = self.users.get(request.match_info["id"])
        if user is None:
            return web.json_response({"error": {"message": "Not Found", "code": 2100}}, status=404)
        return web.json_response({"user": {"id": request.match_info["id"], "type": "user", **user}})


def _problems(event: Any) -> list[str]:
    """What PagerDuty would refuse in an event, in its own words where the docs give them."""
    if not isinstance(event, dict):
        return ["Event object is not valid JSON"]
    errors = []
    if not isinstance(event.get("routing_key"), str) or len(event["routing_key"]) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        errors.append("'event_action' is invalid (must be one of the following: 'trigger', 'acknowledge' or 'resolve')")
    dedup = event.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
        errors.append("'dedup_key' must be a string of at most 255 characters")
    if action in ("acknowledge", "resolve") and not dedup:
        errors.append("'dedup_key' is missing or blank")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            errors.append("'payload' is missing or blank")
        else:
            summary = payload.get("summary")
            if not isinstance(summary, str) or not summary:
                errors.append("'payload.summary' is missing or blank")
            elif len(summary) > 1024:
                errors.append("'payload.summary' is too long (max 1024 characters)")
            if not isinstance(payload.get("source"), str) or not payload["source"]:
                errors.append("'payload.source' is missing or blank")
            if payload.get("severity") not in SEVERITIES:
                errors.append("'payload.severity' is invalid (must be one of: critical, error, warning, info)")
        for link in event.get("links") or []:
            if not isinstance(link, dict) or not isinstance(link.get("href"), str):
                errors.append("'links' entries need an 'href'")
    return errors


def webhook_body(kind: str, incident_key: str, *, event_id: str | None = None) -> bytes:
    """A v3 webhook body from tests/fixtures/pagerduty/<kind>.json for the incident with `incident_key`."""
    data = json.loads((FIXTURES / f"{kind}.json").read_text())
    data["event"]["data"]["incident_key"] = incident_key
    if event_id is not None:
        data["event"]["id"] = event_id
    return json.dumps(data).encode()


def sign(body: bytes, secret: str) -> str:
    """`v1=<hex HMAC-SHA256 of the body>`, as PagerDuty signs."""
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def send_webhook(
    url: str,
    body: bytes,
    *,
    signature: str | None,
    webhook_id: str | None = None,
) -> tuple[int, Any]:
    """POSTs a webhook as PagerDuty delivers it; returns (status, JSON body or None)."""
    headers = {"Content-Type": "application/json", "User-Agent": "PagerDuty-Webhook/V3.0"}
    if signature is not None:
        headers["X-PagerDuty-Signature"] = signature
    if webhook_id is not None:
        headers["X-Webhook-Id"] = webhook_id
        headers["X-Webhook-Subscription"] = "PSUB123"
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as response:
        text = await response.text()
        return response.status, (json.loads(text) if text else None)
