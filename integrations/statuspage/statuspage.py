"""Atlassian Statuspage's REST API (https://developer.statuspage.io): create an incident on a page, post updates to
it, and set the status of its components on the way.

The shapes follow the vendor's reference: `POST /pages/{page_id}/incidents` with `{"incident": {"name", "status",
"body", "component_ids", "components": {"<id>": "<component status>"}, "metadata": {...}}}` answers 201 with the
incident; `PATCH /pages/{page_id}/incidents/{incident_id}` with the same keys answers 200; both carry
`incident_updates` (newest first). `GET /pages/{page_id}/incidents/unresolved` lists open incidents, which is how a
create whose answer was lost is found again (by the `metadata.chatops.incident` this client puts on it). Every call
authenticates with `Authorization: OAuth <api key>`. The page is rate limited (about one call a second): 420 and
429 are answered with Retry-After.

Failures come out as one of two exceptions: `StatuspageRejected` (a 4xx other than a rate limit: the request is
wrong and sending it again will not help; the message is Statuspage's own) and `StatuspageUnavailable` (429/420,
5xx, a timeout, no connection, an answer that is not the JSON promised: try again later, after `retry_after`).
The API key never appears in a message or a log line.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any, Literal

import aiohttp
from pydantic import Field, field_validator

from integrations.types import StrictModel

log = logging.getLogger(__name__)

ComponentStatus = Literal["operational", "degraded_performance", "partial_outage", "major_outage", "under_maintenance"]
IncidentStatus = Literal["investigating", "identified", "monitoring", "resolved"]
_TIMEOUT = aiohttp.ClientTimeout(total=15)
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ENV = re.compile(r"[A-Z_][A-Z0-9_]*")


def _default_severity_status() -> dict[str, ComponentStatus]:
    return {"sev1": "major_outage", "sev2": "partial_outage", "sev3": "degraded_performance"}


class StatuspageSettings(StrictModel):
    """`integrations.statuspage:` — the page, the env var holding the API key, and which chatops service is which
    Statuspage component (`components: {web: cmp_web}`); `severity_status` says what an incident does to them."""

    page_id: str
    api_key_env: str = "STATUSPAGE_API_KEY"
    api_url: str = "https://api.statuspage.io/v1"
    components: dict[str, str] = Field(default_factory=dict)
    severity_status: dict[str, ComponentStatus] = Field(default_factory=_default_severity_status)

    @field_validator("page_id")
    @classmethod
    def _page_id(cls, value: str) -> str:
        if not _ID.fullmatch(value):
            raise ValueError("page_id: the id from the page's URL in Statuspage (letters and digits), like 'abc123xyz'")
        return value

    @field_validator("api_key_env")
    @classmethod
    def _env(cls, value: str) -> str:
        if not _ENV.fullmatch(value):
            raise ValueError(
                f"api_key_env: the NAME of an environment variable, like STATUSPAGE_API_KEY (got {value[:40]!r})"
            )
        return value

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("api_url: an http(s) URL, like https://api.statuspage.io/v1")
        return value.rstrip("/")

    @field_validator("components")
    @classmethod
    def _components(cls, value: dict[str, str]) -> dict[str, str]:
        for service, component in value.items():
            if not _ID.fullmatch(component):
                raise ValueError(f"components.{service}: {component[:40]!r} is not a Statuspage component id")
        return value


class StatuspageRejected(Exception):
    """Statuspage refused the request (4xx): sending it again will not help. The message is Statuspage's."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Statuspage answered {status}: {message}")
        self.status = status
        self.message = message


class StatuspageUnavailable(Exception):
    """Statuspage did not take the request now (rate limit, 5xx, timeout, no connection); try again later."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class StatuspageClient:
    """The calls chatops makes to one Statuspage page; built once by the composition root."""

    def __init__(self, settings: StatuspageSettings, *, api_key: str, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        self._key = api_key
        self._http = http

    def _url(self, *parts: str) -> str:
        return "/".join([self.settings.api_url, "pages", self.settings.page_id, *parts])

    async def create_incident(
        self,
        *,
        name: str,
        status: IncidentStatus,
        body: str,
        components: Mapping[str, ComponentStatus],
        chatops_id: str,
    ) -> dict[str, Any]:
        """Creates an incident (201); returns it as Statuspage answered."""
        incident: dict[str, Any] = {
            "name": name,
            "status": status,
            "body": body,
            "deliver_notifications": True,
            "component_ids": list(components),
            "components": dict(components),
            "metadata": {"chatops": {"incident": chatops_id}},
        }
        return await self._call("POST", self._url("incidents"), {"incident": incident})

    async def update_incident(
        self,
        incident_id: str,
        *,
        status: IncidentStatus,
        body: str,
        components: Mapping[str, ComponentStatus],
    ) -> dict[str, Any]:
        """Adds an update to an incident (its status, an optional body, component statuses); returns the incident."""
        incident: dict[str, Any] = {"status": status, "deliver_notifications": True}
        if body:
            incident["body"] = body
        if components:
            incident["component_ids"] = list(components)
            incident["components"] = dict(components)
        return await self._call("PATCH", self._url("incidents", incident_id), {"incident": incident})

    async def get_incident(self, incident_id: str) -> dict[str, Any]:
        """One incident with its updates."""
        return await self._call("GET", self._url("incidents", incident_id), None)

    async def find_incident(self, chatops_id: str) -> dict[str, Any] | None:
        """The unresolved incident created for `chatops_id` (by its metadata), if there is one."""
        found = await self._call("GET", self._url("incidents", "unresolved"), None)
        for incident in found if isinstance(found, list) else []:
            metadata = incident.get("metadata") if isinstance(incident, dict) else None
            if isinstance(metadata, dict) and (metadata.get("chatops") or {}).get("incident") == chatops_id:
                return incident
        return None

    async def _call(self, method: str, url: str, body: dict[str, Any] | None) -> Any:
        headers = {"Authorization": f"OAuth {self._key}", "Accept": "application/json"}
        try:
            async with self._http.request(method, url, json=body, headers=headers, timeout=_TIMEOUT) as response:
                text = await response.text()
                status = response.status
                retry_after = _retry_after(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as error:
            raise StatuspageUnavailable(f"cannot reach Statuspage: {type(error).__name__}") from None
        if status in (420, 429):
            raise StatuspageUnavailable(f"Statuspage is rate limiting ({status})", retry_after)
        if status >= 500:
            raise StatuspageUnavailable(f"Statuspage answered {status}", retry_after)
        if status >= 400:
            raise StatuspageRejected(status, _error_message(text))
        try:
            return json.loads(text)
        except ValueError:
            raise StatuspageUnavailable(f"Statuspage answered {status} without JSON") from None


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _error_message(text: str) -> str:
    """Statuspage's own words: `{"error": "..."}` or `{"error": ["...", ...]}` (or `message`), else the text."""
    try:
        parsed = json.loads(text)
    except ValueError:
        return text.strip()[:300] or "no message"
    found = parsed.get("error") or parsed.get("message") if isinstance(parsed, dict) else None
    if isinstance(found, list):
        found = "; ".join(str(item) for item in found)
    return str(found or text)[:300]


class StatuspageConfigError(Exception):
    """The API key's environment variable is not set (the message names it, never a value)."""


def build_client(
    settings: StatuspageSettings,
    *,
    environ: Mapping[str, str],
    http: aiohttp.ClientSession,
) -> StatuspageClient:
    """The client, with its key from the environment variable the settings name."""
    key = environ.get(settings.api_key_env, "").strip()
    if not key:
        raise StatuspageConfigError(
            f"integrations.statuspage: the environment variable {settings.api_key_env} is not "
            "set (the Statuspage API key: Statuspage > your avatar > API info)"
        )
    return StatuspageClient(settings, api_key=key, http=http)
