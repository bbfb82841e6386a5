"""PagerDuty: the Events API v2 client (trigger / acknowledge / resolve an alert by `dedup_key`), the v3 webhook
signature check and parser, and the REST lookup of a user's email.

Shapes follow PagerDuty's developer docs (github.com/PagerDuty/developer-docs):
- docs/events-API-v2/02-Trigger-Events.md: `POST /v2/enqueue` with `routing_key` (the 32-character integration
  key), `event_action` (trigger, acknowledge, resolve), `dedup_key` (<= 255 chars), and for a trigger `payload`
  with `summary` (<= 1024 chars), `source`, `severity` (critical, error, warning, info), optional `timestamp`,
  `component`, `group`, `class`, `custom_details`; `links` (`href`, `text`) and `client` / `client_url`.
- docs/events-API-v2/01-Overview.md: 202 accepted (no retry); 400 invalid event (no retry; the body's `errors`
  say why); 429 too many (retry later); 5xx and network errors (retry later).
- docs/webhooks/04-Signatures.md: `X-PagerDuty-Signature` carries one or more comma-separated `v1=<hex>`, each an
  HMAC-SHA256 of the raw body with one signing secret; a delivery is authentic if any matches.
- docs/webhooks/01-Overview.md: a v3 webhook body is `{"event": {id, event_type, resource_type, occurred_at,
  agent, client, data}}`; for incident events `data` is the incident, whose `incident_key` is our `dedup_key`.
- docs/webhooks/02-Behavior.md: deliveries are at least once; `X-Webhook-Id` is repeated on every retry.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import aiohttp
from pydantic import Field, model_validator

from integrations.alerts.settings import EnvVarName, SourceConfigError, read_secret
from integrations.types import Duration, StrictModel

log = logging.getLogger(__name__)

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
API_URL = "https://api.pagerduty.com"
SUMMARY_MAX = 1024
DEDUP_KEY_MAX = 255
SEVERITIES = ("critical", "error", "warning", "info")
ACTIONS = ("trigger", "acknowledge", "resolve")
SIGNATURE_HEADER = "X-PagerDuty-Signature"
WEBHOOK_ID_HEADER = "X-Webhook-Id"
MAX_WEBHOOK_BYTES = 256 * 1024  # PagerDuty drops webhooks larger than 256 KB (02-Behavior.md)
_ROUTING_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_ERROR_TEXT_MAX = 300

Action = Literal["trigger", "acknowledge", "resolve"]


class PagerDutySettings(StrictModel):
    """`integrations: {pagerduty: {...}}`: integration keys by name, the Events API URL, the webhook secret."""

    routing_keys: dict[str, EnvVarName] = Field(min_length=1)
    events_url: str = EVENTS_URL
    webhook_secret_env: EnvVarName | None = None
    api_url: str = API_URL
    api_token_env: EnvVarName | None = None  # optional: a REST API key, to find the email of who acknowledged
    timeout: Duration = timedelta(seconds=10)

    @model_validator(mode="after")
    def _check(self) -> PagerDutySettings:
        for name in self.routing_keys:
            if not _ROUTING_NAME.fullmatch(name):
                raise ValueError(
                    f"routing_keys: {name!r} is not a valid name: lowercase letters, digits, - and _,"
                    " starting with a letter"
                )
        for key, url in (("events_url", self.events_url), ("api_url", self.api_url)):
            if not url.startswith(("https://", "http://")):
                raise ValueError(f"{key}: must be an http(s) URL (got {url[:40]!r})")
        if not 1 <= self.timeout.total_seconds() <= 60:
            raise ValueError("timeout: must be from 1s to 60s")
        return self


# -- outbound events ------------------------------------------------------------------------------------------


def trigger_body(
    *,
    dedup_key: str,
    summary: str,
    source: str,
    severity: str,
    timestamp: datetime | None = None,
    component: str | None = None,
    group: str | None = None,
    custom_details: Mapping[str, Any] | None = None,
    links: list[tuple[str, str]] | None = None,
    client: str = "chatops",
    client_url: str | None = None,
) -> dict[str, Any]:
    """A trigger event without its routing key (added only when sending: the key is a secret): the summary cut to
    1024 characters, an unknown severity read as `error`, only http(s) links."""
    payload: dict[str, Any] = {
        "summary": _cut(summary.strip() or dedup_key, SUMMARY_MAX),
        "source": _cut(source.strip() or "chatops", 255),
        "severity": severity if severity in SEVERITIES else "error",
    }
    if timestamp is not None:
        payload["timestamp"] = timestamp.isoformat()
    if component:
        payload["component"] = _cut(component, 255)
    if group:
        payload["group"] = _cut(group, 255)
    if custom_details:
        payload["custom_details"] = dict(custom_details)
    body: dict[str, Any] = {
        "event_action": "trigger",
        "dedup_key": _cut(dedup_key, DEDUP_KEY_MAX),
        "payload": payload,
        "client": client,
    }
    if client_url and client_url.startswith(("https://", "http://")):
        body["client_url"] = client_url
    kept = [
        {"href": href, "text": _cut(text, 255)}
        for text, href in links or []
        if href.startswith(("https://", "http://"))
    ]
    if kept:
        body["links"] = kept
    return body


def follow_up_body(action: Action, dedup_key: str) -> dict[str, Any]:
    """An acknowledge or resolve event for the alert opened with `dedup_key` (no routing key yet)."""
    return {"event_action": action, "dedup_key": _cut(dedup_key, DEDUP_KEY_MAX)}


@dataclass(frozen=True)
class SendResult:
    """What PagerDuty made of one event: `accepted` (202), `rejected` (400: never retried; `message` has PagerDuty's
    errors) or `retry` (429, 5xx, unreachable; `retry_after` seconds when PagerDuty said)."""

    outcome: Literal["accepted", "rejected", "retry"]
    message: str = ""
    retry_after: float | None = None


class PagerDutyEvents:
    """Sends events to the Events API v2 with the integration keys read from the environment at start-up."""

    def __init__(
        self,
        settings: PagerDutySettings,
        *,
        routing_keys: Mapping[str, str],
        http: aiohttp.ClientSession,
    ) -> None:
        self.settings = settings
        self._keys = dict(routing_keys)
        self._http = http

    def knows(self, routing: str) -> bool:
        """Whether `routing` names a configured integration key."""
        return routing in self._keys

    async def send(self, routing: str, body: Mapping[str, Any]) -> SendResult:
        """POSTs one event (`body` plus the integration key of `routing`); never raises for PagerDuty's answers or
        for the network, and never puts the key in a message."""
        key = self._keys.get(routing)
        if key is None:
            return SendResult("rejected", f"no integration key named {routing!r} is configured")
        event = {"routing_key": key, **body}
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout.total_seconds())
        try:
            async with self._http.post(self.settings.events_url, json=event, timeout=timeout) as response:
                text = await response.text()
                status = response.status
                retry_after = _retry_after(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            return SendResult("retry", f"PagerDuty unreachable ({type(error).__name__})")
        return classify(status, text, retry_after)


def classify(status: int, text: str, retry_after: float | None = None) -> SendResult:
    """The outcome of an Events API answer (status and body), as PagerDuty's overview documents them."""
    if status == 202:
        return SendResult("accepted")
    if status == 429:
        return SendResult("retry", "PagerDuty rate limit (429)", retry_after)
    if status >= 500 or status in (408, 0):
        return SendResult("retry", f"PagerDuty answered HTTP {status}", retry_after)
    return SendResult("rejected", f"HTTP {status}: {_error_text(text)}")


def _error_text(text: str) -> str:
    """PagerDuty's own words from a 4xx body: `message` and `errors`, else the start of the body."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        parts = [str(data.get("message") or data.get("status") or "").strip()]
        errors = data.get("errors")
        if isinstance(errors, list):
            parts += [str(e) for e in errors[:5]]
        found = "; ".join(p for p in parts if p)
        if found:
            return _cut(found, _ERROR_TEXT_MAX)
    return _cut(" ".join(text.split()) or "no body", _ERROR_TEXT_MAX)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds <= 3600 else None


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- inbound webhooks -----------------------------------------------------------------------------------------


class WebhookInvalid(Exception):
    """A webhook that cannot be taken: `status` 401 (unsigned or forged) or 400 (malformed), and why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def signature(body: bytes, secret: str) -> str:
    """The `v1=<hex>` PagerDuty puts in `X-PagerDuty-Signature` for `body` signed with `secret`."""
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, secret: str) -> None:
    """Raises WebhookInvalid(401) unless one of the header's `v1=` signatures is `body`'s (constant time)."""
    if not header or not header.strip():
        raise WebhookInvalid(401, f"missing {SIGNATURE_HEADER} header")
    expected = signature(body, secret).encode()
    given = [part.strip() for part in header.split(",") if part.strip().startswith("v1=")]
    if not given:
        raise WebhookInvalid(401, f"{SIGNATURE_HEADER} has no v1= signature")
    matched = False
    for candidate in given:  # compare with every one (no early exit), each in constant time
        matched |= hmac.compare_digest(candidate.encode("utf-8", "surrogatepass"), expected)
    if not matched:
        raise WebhookInvalid(401, "bad signature")


@dataclass(frozen=True)
class IncidentEvent:
    """The parts of a v3 incident webhook chatops uses."""

    id: str
    event_type: str
    occurred_at: datetime | None
    incident_key: str | None
    incident_id: str
    incident_url: str
    agent_id: str | None
    agent_name: str | None


def parse_webhook(body: bytes, *, webhook_id: str | None = None) -> IncidentEvent:
    """A v3 webhook body as an IncidentEvent (`event_type` may be any; only incident events carry a key);
    WebhookInvalid(400) saying what is wrong otherwise."""
    if len(body) > MAX_WEBHOOK_BYTES:
        raise WebhookInvalid(400, "body larger than 256 KB")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise WebhookInvalid(400, "body is not JSON") from None
    event = data.get("event") if isinstance(data, dict) else None
    if not isinstance(event, dict):
        raise WebhookInvalid(400, "no `event` object")
    event_type = event.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        raise WebhookInvalid(400, "`event.event_type` is missing")
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise WebhookInvalid(400, "`event.id` is missing")
    occurred = None
    if isinstance(event.get("occurred_at"), str):
        try:
            occurred = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
        except ValueError:
            raise WebhookInvalid(400, "`event.occurred_at` is not an ISO 8601 time") from None
    incident_key = None
    incident_id = incident_url = ""
    if event.get("resource_type") == "incident" and event_type.startswith("incident."):
        data_obj = event.get("data")
        if not isinstance(data_obj, dict):
            raise WebhookInvalid(400, "`event.data` is not an object")
        key = data_obj.get("incident_key")
        if key is not None and not isinstance(key, str):
            raise WebhookInvalid(400, "`event.data.incident_key` is not a string")
        incident_key = key
        incident_id = str(data_obj.get("id") or "")
        incident_url = str(data_obj.get("html_url") or "")
    agent = event.get("agent")
    agent_id = agent_name = None
    if isinstance(agent, dict):
        agent_id = str(agent["id"]) if isinstance(agent.get("id"), str) else None
        agent_name = str(agent["summary"]) if isinstance(agent.get("summary"), str) else None
    return IncidentEvent(
        id=webhook_id or event_id,
        event_type=event_type,
        occurred_at=occurred,
        incident_key=incident_key,
        incident_id=incident_id,
        incident_url=incident_url,
        agent_id=agent_id,
        agent_name=agent_name,
    )


# -- REST: who acknowledged -----------------------------------------------------------------------------------


class PagerDutyUsers:
    """Finds a PagerDuty user's email with the REST API (`GET /users/{id}`), when an API key is configured."""

    def __init__(self, settings: PagerDutySettings, *, token: str | None, http: aiohttp.ClientSession) -> None:
        self._settings = settings
        self._token = token
        self._http = http

    async def email(self, user_id: str) -> str | None:
        """The user's email, or None (no API key, unknown user, PagerDuty failing: logged, never raised)."""
        if self._token is None or not re.fullmatch(r"[A-Z0-9]{1,32}", user_id):
            return None
        headers = {"Authorization": f"Token token={self._token}", "Accept": "application/vnd.pagerduty+json;version=2"}
        timeout = aiohttp.ClientTimeout(total=self._settings.timeout.total_seconds())
        try:
            async with self._http.get(
                f"{self._settings.api_url.rstrip('/')}/users/{user_id}", headers=headers, timeout=timeout
            ) as response:
                if response.status != 200:
                    log.warning("PagerDuty user %s: HTTP %s", user_id, response.status)
                    return None
                data = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as error:
            log.warning("PagerDuty user %s: %s", user_id, type(error).__name__)
            return None
        user = data.get("user") if isinstance(data, dict) else None
        email = user.get("email") if isinstance(user, dict) else None
        return email if isinstance(email, str) and "@" in email else None


@dataclass(frozen=True)
class PagerDuty:
    """Everything chatops needs of PagerDuty, built once at start-up."""

    events: PagerDutyEvents
    users: PagerDutyUsers
    webhook_secret: str | None


def build(settings: PagerDutySettings, *, environ: Mapping[str, str], http: aiohttp.ClientSession) -> PagerDuty:
    """PagerDuty from its settings; SourceConfigError naming a missing environment variable (never a value)."""
    keys = {
        name: read_secret(environ, variable, f"the PagerDuty integration key {name!r}", strip=True)
        for name, variable in settings.routing_keys.items()
    }
    secret = (
        read_secret(environ, settings.webhook_secret_env, "the PagerDuty webhook signing secret", strip=True)
        if settings.webhook_secret_env
        else None
    )
    token = (
        read_secret(environ, settings.api_token_env, "the PagerDuty REST API key", strip=True)
        if settings.api_token_env
        else None
    )
    return PagerDuty(
        events=PagerDutyEvents(settings, routing_keys=keys, http=http),
        users=PagerDutyUsers(settings, token=token, http=http),
        webhook_secret=secret,
    )


__all__ = [
    "PagerDuty",
    "PagerDutyEvents",
    "PagerDutySettings",
    "PagerDutyUsers",
    "SendResult",
    "SourceConfigError",
    "WebhookInvalid",
    "build",
    "classify",
    "follow_up_body",
    "parse_webhook",
    "signature",
    "trigger_body",
    "verify_signature",
]
