"""A metric gate on a Prometheus query: `{name: error-rate, kind: prometheus, url_env: PROMETHEUS_URL,
query: 'sum(rate(...[1m])) / sum(rate(...[1m]))', max: 0.01}`.

Each check is one instant query, `GET /api/v1/query?query=...` (https://prometheus.io/docs/prometheus/latest/
querying/api/#instant-queries). The answer is the envelope `{"status": "success", "data": {"resultType":
"vector" | "scalar", "result": ...}}`; a vector holds `{"metric": {...}, "value": [<unix time>, "<number>"]}`
per series. The check passes when every series lies within `min`/`max`; the value shown is the worst one.

A query that returns no series, or only NaN (0/0: no traffic), is a FAILED check, never a pass: a gate must not
be passed by a metric that is absent. A query Prometheus refuses (400 `bad_data`, 422 `execution`) is reported
with Prometheus's own error text and is final: it fails the gate at its first use. 5xx (503 is a query timeout)
and 429 are retried within `timeout`; after that the check fails, and the next interval asks again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
from pydantic import Field, field_validator, model_validator

from integrations.health.base import (
    EnvVarName,
    Measurement,
    MetricName,
    PositiveDuration,
    Unreachable,
    clip,
    format_number,
    get_json,
)
from integrations.types import StrictModel


class PrometheusSettings(StrictModel):
    """`{name: error-rate, kind: prometheus, url_env: PROMETHEUS_URL, query: '...', max: 0.01}`."""

    kind: Literal["prometheus"]
    name: MetricName
    query: str = Field(min_length=1, max_length=10_000)
    url_env: EnvVarName | None = Field(None, description="Variable holding Prometheus's base URL.")
    url: str | None = Field(None, description="Prometheus's base URL, when it is not a secret.")
    max: float | None = Field(None, allow_inf_nan=False, description="Fails above this value.")
    min: float | None = Field(None, allow_inf_nan=False, description="Fails below this value.")
    bearer_token_env: EnvVarName | None = Field(None, description="Variable holding a Bearer token, if needed.")
    timeout: PositiveDuration = timedelta(seconds=10)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None:
            _check_url(url)
        return url

    @model_validator(mode="after")
    def _complete(self) -> PrometheusSettings:
        if self.url is None and self.url_env is None:
            raise ValueError(
                "url_env is missing: name the environment variable holding Prometheus's URL "
                "(e.g. url_env: PROMETHEUS_URL), or give url"
            )
        if self.url is not None and self.url_env is not None:
            raise ValueError("set url_env or url, not both")
        if self.max is None and self.min is None:
            raise ValueError("set max (fail above it) or min (fail below it), or both")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is above max ({self.max:g})")
        return self


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return url


def limit_text(settings: PrometheusSettings) -> str:
    """`max 0.01`, `min 0.99` or `0.5..0.9`."""
    if settings.min is not None and settings.max is not None:
        return f"{settings.min:g}..{settings.max:g}"
    if settings.max is not None:
        return f"max {settings.max:g}"
    return f"min {settings.min:g}"


def judge(settings: PrometheusSettings, data: Any) -> Measurement:
    """The verdict on a successful answer's `data` (pure): no series or NaN fails, else the worst series decides."""
    limit = limit_text(settings)
    if not isinstance(data, dict):
        return Measurement(ok=False, value="error", limit=limit, error="Prometheus answered without data")
    kind = data.get("resultType")
    result = data.get("result")
    samples: list[Any]
    if kind == "scalar":
        samples = [result]
    elif kind == "vector" and isinstance(result, list):
        samples = [series.get("value") if isinstance(series, dict) else None for series in result]
    else:
        return Measurement(
            ok=False,
            value="error",
            limit=limit,
            final=True,
            error=f"the query returns a {kind}; it must return an instant vector or a scalar",
        )
    values = [_number(sample) for sample in samples]
    numbers = [v for v in values if v is not None and not math.isnan(v)]
    if not numbers:
        why = "no data (the query returned no series)" if not samples else "no data (the query returned NaN)"
        return Measurement(ok=False, value="no data", limit=limit, error=why)
    too_high = [v for v in numbers if settings.max is not None and v > settings.max]
    too_low = [v for v in numbers if settings.min is not None and v < settings.min]
    if too_high or too_low:
        worst = max(too_high) if too_high else min(too_low)
    else:
        worst = max(numbers) if settings.max is not None else min(numbers)
    shown = format_number(worst) + (f" (worst of {len(numbers)} series)" if len(numbers) > 1 else "")
    return Measurement(ok=not (too_high or too_low), value=shown, limit=limit)


def _number(sample: Any) -> float | None:
    if isinstance(sample, list | tuple) and len(sample) == 2:
        try:
            return float(sample[1])
        except (TypeError, ValueError):
            return None
    return None


class PrometheusCheck:
    """Runs one instant query per check against the Prometheus the settings name."""

    def __init__(
        self, settings: PrometheusSettings, *, environ: Mapping[str, str], http: aiohttp.ClientSession
    ) -> None:
        self.name = settings.name
        self._settings = settings
        self._environ = environ
        self._http = http

    async def measure(self) -> Measurement:
        """One instant query; never raises."""
        settings = self._settings
        limit = limit_text(settings)
        try:
            base = self._base_url()
            headers = {"Accept": "application/json", "User-Agent": "chatops-health/1"}
            if settings.bearer_token_env:
                token = self._environ.get(settings.bearer_token_env)
                if not token:
                    raise _Misconfigured(
                        f"environment variable {settings.bearer_token_env} (the Prometheus token) is not set"
                    )
                headers["Authorization"] = f"Bearer {token}"
        except _Misconfigured as problem:
            return Measurement(ok=False, value="error", limit=limit, error=str(problem), final=True)
        try:
            status, body = await get_json(
                self._http,
                base + "/api/v1/query",
                vendor="Prometheus",
                timeout=settings.timeout,
                params={"query": settings.query},
                headers=headers,
            )
        except Unreachable as error:
            return Measurement(ok=False, value="error", limit=limit, error=str(error))
        if status == 200 and isinstance(body, dict) and body.get("status") == "success":
            return judge(settings, body.get("data"))
        refusal = body.get("error") if isinstance(body, dict) else None
        if status in (400, 422) and refusal:
            return Measurement(
                ok=False,
                value="error",
                limit=limit,
                final=True,
                error=f"Prometheus rejected the query: {clip(str(refusal))}",
            )
        if status in (401, 403):
            return Measurement(
                ok=False,
                value="error",
                limit=limit,
                final=True,
                error=f"Prometheus refused the request ({status}): check bearer_token_env",
            )
        if status == 404:
            return Measurement(
                ok=False,
                value="error",
                limit=limit,
                final=True,
                error="Prometheus answered 404: is the URL the server's base URL (no /api/v1)?",
            )
        return Measurement(
            ok=False,
            value="error",
            limit=limit,
            error=f"Prometheus answered {status}" + (f": {clip(str(refusal))}" if refusal else ""),
        )

    def _base_url(self) -> str:
        settings = self._settings
        if settings.url is not None:
            return settings.url.rstrip("/")
        assert settings.url_env is not None
        url = self._environ.get(settings.url_env)
        if not url:
            raise _Misconfigured(f"environment variable {settings.url_env} (the Prometheus URL) is not set")
        try:
            return _check_url(url).rstrip("/")
        except ValueError:
            raise _Misconfigured(f"environment variable {settings.url_env} does not hold an http(s) URL") from None

    async def aclose(self) -> None:
        """Nothing to release: the HTTP session is shared."""


class _Misconfigured(Exception):
    """A problem with the environment that no retry fixes."""


def build(settings: PrometheusSettings, *, environ: Mapping[str, str], http: aiohttp.ClientSession) -> PrometheusCheck:
    """The check for validated settings."""
    return PrometheusCheck(settings, environ=environ, http=http)
