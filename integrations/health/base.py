"""The seam every health check sits behind: the `HealthCheck` Protocol (one measurement of one named metric, never
raising), the `Measurement` it returns, the settings every metric shares, and the HTTP helper the vendor checks
use to read a JSON API (429 honours Retry-After, 5xx and dropped connections are retried with backoff, all within
the check's timeout; 4xx answers come back to the caller, which words them in the vendor's own terms)."""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Annotated, Any, Protocol, runtime_checkable

import aiohttp
from pydantic import AfterValidator

from integrations.types import Duration, describe_value

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_ERROR_CHARS = 300
_FIRST_BACKOFF_SECONDS = 0.25
_MAX_BACKOFF_SECONDS = 5.0


def _check_metric_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(
            f"{describe_value(name)} is not a metric name: use lower-case letters, digits, '.', '_' or '-'"
        )
    return name


def _check_env_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        raise ValueError(f"{describe_value(value)} is not an environment variable name")
    return value


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


MetricName = Annotated[str, AfterValidator(_check_metric_name)]
"""What a metric is called in the deploy message and in a failing gate's reason: `error-rate`, `p99-latency`."""

EnvVarName = Annotated[str, AfterValidator(_check_env_name)]
"""The name of an environment variable holding a URL or a secret (never the value itself)."""

PositiveDuration = Annotated[Duration, AfterValidator(_positive)]


@dataclass(frozen=True)
class Measurement:
    """One check of one metric. `value` is what was seen and `limit` what it must be, both short and for people;
    `error` says why there is no value (unreachable, refused, no data). `final` marks a check that cannot pass
    as configured (a query Prometheus rejects, a monitor that does not exist): asking again will not help."""

    ok: bool
    value: str
    limit: str
    error: str | None = None
    final: bool = False


@runtime_checkable
class HealthCheck(Protocol):
    """A named health check: the HTTP probe, a Prometheus query, CloudWatch alarms, Datadog monitors."""

    name: str

    async def measure(self) -> Measurement:
        """Takes one measurement; never raises (a failure is a Measurement with ok=False)."""
        ...

    async def aclose(self) -> None:
        """Releases the clients this check built (never the shared HTTP session)."""
        ...


class Unreachable(Exception):
    """The API gave no usable answer within the check's timeout (connection errors, 5xx, 429 to the end)."""


def clip(text: str, limit: int = _MAX_ERROR_CHARS) -> str:
    """`text` on one line, at most `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def format_number(value: float) -> str:
    """A metric value for people: 4 significant digits, `NaN`, `+Inf`."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.4g}"


def retry_after_seconds(headers: Mapping[str, str], default: float) -> float:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), else `default`."""
    raw = headers.get("Retry-After")
    if raw is None:
        return default
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return default


def _connection_reason(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, aiohttp.ClientConnectorError):
        os_error = error.os_error
        if isinstance(os_error, ConnectionRefusedError):
            return "connection refused"
        return f"cannot connect ({os_error.strerror or type(os_error).__name__})"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    return type(error).__name__


async def get_json(
    http: aiohttp.ClientSession,
    url: str,
    *,
    vendor: str,
    timeout: timedelta,  # noqa: ASYNC109 - see below
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, Any]:
    """GETs `url` and returns (status, parsed JSON body or None) for a 2xx or 4xx other than 429. 429 waits for
    Retry-After, 5xx and connection errors are retried with backoff; Unreachable when `timeout` runs out first.
    Error text names `vendor` and never the URL (it may carry a secret) or the headers.

    `timeout` is a budget the retries share, not a cancellation: running out is an Unreachable that says why the
    last attempt failed, and each attempt's own timeout is what is left of it, so asyncio.timeout would not do."""
    deadline = time.monotonic() + timeout.total_seconds()
    backoff = _FIRST_BACKOFF_SECONDS
    reason = "no answer"
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Unreachable(f"{vendor} did not answer in time ({reason})")
        wait = backoff
        try:
            async with http.get(
                url, params=params, headers=headers, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=left)
            ) as response:
                status = response.status
                text = await response.text(errors="replace")
                if status == 429:
                    reason = "429 Too Many Requests"
                    wait = retry_after_seconds(response.headers, backoff)
                elif status >= 500:
                    reason = f"{status} {clip(error_text(text) or response.reason or '', 120)}".strip()
                else:
                    return status, _parse(text)
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            reason = _connection_reason(error)
        if time.monotonic() + wait >= deadline:
            raise Unreachable(f"{vendor} did not answer in time ({reason})")
        await asyncio.sleep(wait)
        backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def error_text(text: str) -> str:
    """The `error` (Prometheus) or `errors` (Datadog) of an error body, else the body's start."""
    body = _parse(text)
    if isinstance(body, dict):
        if isinstance(body.get("error"), str):
            return str(body["error"])
        if isinstance(body.get("errors"), list):
            return "; ".join(str(item) for item in body["errors"])
    return text[:120]
