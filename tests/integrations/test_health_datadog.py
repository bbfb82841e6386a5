"""The Datadog monitor check against a local stand-in for Datadog's monitor API: OK passes, every other state
fails with the monitor named, wrong keys and unknown monitors fail at once in Datadog's words, 429 waits for
Retry-After, 5xx is retried, and the keys travel only in Datadog's headers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from pydantic import ValidationError

from integrations.health.base import Measurement
from integrations.health.datadog_monitor import DatadogMonitorSettings, build
from tests.health_servers import DatadogApi


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def check(
    api: DatadogApi,
    http: aiohttp.ClientSession,
    *ids: int,
    environ: dict[str, str] | None = None,
):
    settings = DatadogMonitorSettings.model_validate(
        {
            "kind": "datadog_monitor",
            "name": "monitors",
            "monitor_ids": list(ids or (123,)),
            "api_key_env": "DD_API_KEY",
            "app_key_env": "DD_APP_KEY",
            "api_url": api.url,
            "timeout": "5s",
        }
    )
    keys = {"DD_API_KEY": api.api_key, "DD_APP_KEY": api.app_key} if environ is None else environ
    return build(settings, environ=keys, http=http)


async def test_ok_monitors_pass_and_the_keys_go_in_datadogs_headers(
    datadog_api: DatadogApi, http: aiohttp.ClientSession
) -> None:
    datadog_api.add(123, "web 5xx", "OK")
    datadog_api.add(456, "web latency", "OK")
    assert await check(datadog_api, http, 123, 456).measure() == Measurement(ok=True, value="2 OK", limit="all OK")
    paths = sorted(path for _, path, _ in datadog_api.requests)
    assert paths == ["/api/v1/monitor/123", "/api/v1/monitor/456"]
    headers = datadog_api.requests[0][2]
    assert headers["DD-API-KEY"] == datadog_api.api_key and headers["DD-APPLICATION-KEY"] == datadog_api.app_key


@pytest.mark.parametrize("state", ["Alert", "Warn", "No Data", "Unknown"])
async def test_any_state_but_ok_fails_naming_the_monitor(
    datadog_api: DatadogApi, http: aiohttp.ClientSession, state: str
) -> None:
    datadog_api.add(123, "web 5xx", "OK")
    datadog_api.add(456, "web latency", state)
    result = await check(datadog_api, http, 123, 456).measure()
    assert result == Measurement(ok=False, value=f"#456 {state} (web latency)", limit="all OK")


async def test_wrong_keys_fail_at_once_in_datadogs_words_without_the_keys(
    datadog_api: DatadogApi, http: aiohttp.ClientSession
) -> None:
    datadog_api.add(123, "web 5xx", "OK")
    result = await check(datadog_api, http, environ={"DD_API_KEY": "wrong-key-value", "DD_APP_KEY": "x"}).measure()
    assert result.final and not result.ok
    assert result.error == (
        "Datadog refused the keys in DD_API_KEY / DD_APP_KEY (403 Forbidden); they need the monitors_read permission"
    )
    assert "wrong-key-value" not in str(result)


async def test_an_unknown_monitor_fails_at_once(datadog_api: DatadogApi, http: aiohttp.ClientSession) -> None:
    result = await check(datadog_api, http, 999).measure()
    assert result.final and result.error == "Datadog has no monitor 999 (Monitor not found)"


async def test_an_unset_key_variable_is_named(datadog_api: DatadogApi, http: aiohttp.ClientSession) -> None:
    result = await check(datadog_api, http, environ={"DD_APP_KEY": "x"}).measure()
    assert result.final and result.error == "environment variable DD_API_KEY (the Datadog API key) is not set"
    assert datadog_api.requests == []


async def test_429_waits_for_retry_after_and_5xx_is_retried(
    datadog_api: DatadogApi, http: aiohttp.ClientSession
) -> None:
    datadog_api.add(123, "web 5xx", "Alert")
    datadog_api.faults = [(429, {"Retry-After": "1"}), (500, {})]
    result = await check(datadog_api, http).measure()
    assert result == Measurement(ok=False, value="#123 Alert (web 5xx)", limit="all OK")
    times = [at for at, _, _ in datadog_api.requests]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.9  # Retry-After: 1 was waited for (a lower bound only)


def test_settings_name_what_is_missing() -> None:
    with pytest.raises(ValidationError, match="app_key_env"):
        DatadogMonitorSettings.model_validate(
            {"kind": "datadog_monitor", "name": "m", "monitor_ids": [1], "api_key_env": "DD_API_KEY"}
        )
    with pytest.raises(ValidationError, match="lists a monitor twice"):
        DatadogMonitorSettings.model_validate(
            {"kind": "datadog_monitor", "name": "m", "monitor_ids": [1, 1], "api_key_env": "A", "app_key_env": "B"}
        )
