"""A gate on Datadog monitors: `{name: monitors, kind: datadog_monitor, monitor_ids: [123], api_key_env: DD_API_KEY,
app_key_env: DD_APP_KEY}`. The check passes only while every listed monitor's `overall_state` is `OK`.

Each check reads every monitor with Datadog's "Get a monitor's details", `GET /api/v1/monitor/{monitor_id}` with
the `DD-API-KEY` and `DD-APPLICATION-KEY` headers (https://docs.datadoghq.com/api/latest/monitors/
get-a-monitors-details/); the key needs the `monitors_read` permission. `overall_state` is one of `Alert`,
`Ignored`, `No Data`, `OK`, `Skipped`, `Unknown`, `Warn`: anything but `OK` fails, `No Data` included. Errors come
as `{"errors": ["..."]}`: 403 (a bad key) and 404 (no such monitor) fail the gate at once with Datadog's words;
429 honours Retry-After and 5xx are retried within `timeout`. `api_url` picks the Datadog site
(`https://api.datadoghq.eu`, `https://api.us5.datadoghq.com`, ...); the keys never appear in logs or Slack.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
from pydantic import Field, field_validator

from integrations.health.base import (
    EnvVarName,
    Measurement,
    MetricName,
    PositiveDuration,
    Unreachable,
    clip,
    get_json,
)
from integrations.types import StrictModel

LIMIT = "all OK"


class DatadogMonitorSettings(StrictModel):
    """`{name: monitors, kind: datadog_monitor, monitor_ids: [123], api_key_env: DD_API_KEY, app_key_env: ...}`."""

    kind: Literal["datadog_monitor"]
    name: MetricName
    monitor_ids: tuple[int, ...] = Field(min_length=1, max_length=50)
    api_key_env: EnvVarName = Field(description="Variable holding the Datadog API key.")
    app_key_env: EnvVarName = Field(description="Variable holding the Datadog application key.")
    api_url: str = "https://api.datadoghq.com"
    timeout: PositiveDuration = timedelta(seconds=10)

    @field_validator("monitor_ids")
    @classmethod
    def _ids(cls, ids: tuple[int, ...]) -> tuple[int, ...]:
        if any(i <= 0 for i in ids):
            raise ValueError("monitor ids are positive numbers (the number at the end of the monitor's URL)")
        if len(set(ids)) != len(ids):
            raise ValueError("lists a monitor twice")
        return ids

    @field_validator("api_url")
    @classmethod
    def _url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host, like https://api.datadoghq.eu")
        return url.rstrip("/")


class _Final(Exception):
    """A problem no retry fixes (missing key, refused key, unknown monitor)."""


class DatadogMonitorCheck:
    """Reads the listed monitors' states on every check."""

    def __init__(
        self, settings: DatadogMonitorSettings, *, environ: Mapping[str, str], http: aiohttp.ClientSession
    ) -> None:
        self.name = settings.name
        self._settings = settings
        self._environ = environ
        self._http = http

    async def measure(self) -> Measurement:
        """Every monitor's overall state; never raises."""
        try:
            headers = self._headers()
            states = await asyncio.gather(*(self._state(monitor, headers) for monitor in self._settings.monitor_ids))
        except _Final as problem:
            return Measurement(ok=False, value="error", limit=LIMIT, error=str(problem), final=True)
        except Unreachable as error:
            return Measurement(ok=False, value="error", limit=LIMIT, error=str(error))
        bad = [
            (monitor, state, name)
            for monitor, (state, name) in zip(self._settings.monitor_ids, states, strict=True)
            if state != "OK"
        ]
        if not bad:
            return Measurement(ok=True, value="OK" if len(states) == 1 else f"{len(states)} OK", limit=LIMIT)
        shown = ", ".join(
            f"#{monitor} {state}" + (f" ({clip(name, 60)})" if name else "") for monitor, state, name in bad
        )
        return Measurement(ok=False, value=shown, limit=LIMIT)

    def _headers(self) -> dict[str, str]:
        settings = self._settings
        api_key = self._environ.get(settings.api_key_env)
        app_key = self._environ.get(settings.app_key_env)
        if not api_key:
            raise _Final(f"environment variable {settings.api_key_env} (the Datadog API key) is not set")
        if not app_key:
            raise _Final(f"environment variable {settings.app_key_env} (the Datadog application key) is not set")
        return {
            "DD-API-KEY": api_key,
            "DD-APPLICATION-KEY": app_key,
            "Accept": "application/json",
            "User-Agent": "chatops-health/1",
        }

    async def _state(self, monitor: int, headers: Mapping[str, str]) -> tuple[str, str]:
        status, body = await get_json(
            self._http,
            f"{self._settings.api_url}/api/v1/monitor/{monitor}",
            vendor="Datadog",
            timeout=self._settings.timeout,
            headers=headers,
        )
        if status == 200 and isinstance(body, dict):
            return str(body.get("overall_state") or "Unknown"), str(body.get("name") or "")
        said = _errors(body)
        if status in (401, 403):
            raise _Final(
                f"Datadog refused the keys in {self._settings.api_key_env} / {self._settings.app_key_env} "
                f"({status} {said or 'Forbidden'}); they need the monitors_read permission"
            )
        if status == 404:
            raise _Final(f"Datadog has no monitor {monitor} ({said or 'Not Found'})")
        raise _Final(f"Datadog answered {status} for monitor {monitor}" + (f": {said}" if said else ""))

    async def aclose(self) -> None:
        """Nothing to release: the HTTP session is shared."""


def _errors(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        return clip("; ".join(str(item) for item in body["errors"]))
    return ""


def build(
    settings: DatadogMonitorSettings, *, environ: Mapping[str, str], http: aiohttp.ClientSession
) -> DatadogMonitorCheck:
    """The check for validated settings."""
    return DatadogMonitorCheck(settings, environ=environ, http=http)
