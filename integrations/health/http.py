"""The HTTP health probe, the health gate a deploy passes through after each step, and the probe as a `HealthCheck`
(`kind: http`) for an `analysis:` section.

`probe` makes one GET and never raises: refused connections, DNS failures, timeouts, a wrong status, a missing
body text or a slow answer all become `ProbeResult(ok=False, error=...)` with a short reason. `health_gate`
asks for `checks` consecutive passing probes `interval` apart and gives up after `checks` consecutive failures
or when its deadline passes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Literal, TypeVar
from urllib.parse import urlsplit

import aiohttp
from pydantic import AfterValidator, Field, field_validator

from integrations.health.base import Measurement, MetricName
from integrations.types import Duration, StrictModel, format_duration

log = logging.getLogger(__name__)

_T = TypeVar("_T")

_BODY_LIMIT = 64 * 1024  # expect_body is looked for in the first 64 KiB


DEPLOYMENT_URL = "{deployment_url}"
"""The one placeholder a deploy's `health.url` may use: the host of the deployment the step built (the provider's
own URL for it, recorded on the deploy as `external_url`), so a staged deployment is checked before it serves."""

_BRACES = re.compile(r"\{[^{}]*\}|[{}]")
_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})(?::[0-9]{1,5})?$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")  # an HTTP token (RFC 9110 §5.1)


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def _check_headers_env(headers: dict[str, str]) -> dict[str, str]:
    for name, variable in headers.items():
        if not _HEADER_NAME.match(name):
            raise ValueError(
                f"{name[:64]!r} is not an HTTP header name (letters, digits and -, like x-vercel-protection-bypass)"
            )
        if not _ENV_NAME.match(variable):  # never echoed: it may be the secret pasted by mistake
            raise ValueError(
                f"{name}: must be the name of an environment variable holding the header's value, like "
                "VERCEL_AUTOMATION_BYPASS_SECRET (never the value itself)"
            )
    return headers


def _check_http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return url


def _no_placeholders(url: str) -> str:
    """Refuses braces: only a deploy's `health.url` knows a placeholder, and a literal brace is not valid in a URL."""
    found = _BRACES.search(url)
    if found is not None:
        raise ValueError(
            f"{found.group(0)} is not allowed here: only a deploy's health.url takes a placeholder "
            f"({DEPLOYMENT_URL}); write a literal brace as %7B or %7D"
        )
    return url


def _check_gate_url(url: str) -> str:
    """A deploy's `health.url`: an http(s) URL, optionally with `{deployment_url}` as its whole host."""
    for found in _BRACES.finditer(url):
        if found.group(0) in ("{", "}"):
            raise ValueError(f"a stray {found.group(0)!r} in {url!r}: write a literal brace as %7B or %7D")
        if found.group(0) != DEPLOYMENT_URL:
            raise ValueError(
                f"unknown placeholder {found.group(0)} in {url!r}; the only one known is "
                f"{DEPLOYMENT_URL} (the host of the deployment a step built)"
            )
    if DEPLOYMENT_URL in url:
        scheme, _, rest = url.partition("://")
        if (
            scheme not in ("http", "https")
            or not rest.startswith(DEPLOYMENT_URL)
            or (rest[len(DEPLOYMENT_URL) :][:1] not in ("", "/", "?"))
        ):
            raise ValueError(
                f"{DEPLOYMENT_URL} is the deployment's host (like site-abc123-acme.vercel.app): write it "
                f"as the whole host, like https://{DEPLOYMENT_URL}/healthz"
            )
        if url.count(DEPLOYMENT_URL) > 1:
            raise ValueError(f"use {DEPLOYMENT_URL} once, as the URL's host")
        return url
    return _check_http_url(url)


def deployment_host(url: str | None) -> str | None:
    """The host[:port] of a deployment URL as a provider reports it ("https://site-abc.vercel.app" or a bare
    "site-abc.vercel.app"); None when there is none or it is not a plain host (nothing else may enter the URL)."""
    if not url:
        return None
    host = urlsplit(url).netloc if "://" in url else url
    return host if _HOST.match(host) else None


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


class HttpHealthSettings(StrictModel):
    """`health: {url: ..., expect_status: 200, timeout: 2s, checks: 3, interval: 2s}`."""

    url: str
    expect_status: int = Field(200, ge=100, le=599)
    timeout: Annotated[Duration, AfterValidator(_positive)] = timedelta(seconds=2)
    checks: int = Field(3, ge=1, le=100)
    interval: Duration = timedelta(seconds=2)
    expect_body: str | None = Field(None, min_length=1, description="Text the body must contain.")
    max_latency: Annotated[Duration, AfterValidator(_positive)] | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        return _check_http_url(_no_placeholders(url))


class GateHealthSettings(HttpHealthSettings):
    """A deploy environment's `health:`: the same probe, whose `url` may name the deployment a step built as
    `https://{deployment_url}/healthz`, rendered when the gate runs (`for_deployment`)."""

    headers_env: Annotated[dict[str, str], AfterValidator(_check_headers_env)] = Field(
        default_factory=dict,
        description="Request headers whose values are read from these environment variables "
        "when the gate runs, e.g. {x-vercel-protection-bypass: VERCEL_AUTOMATION_BYPASS_SECRET}.",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        return _check_gate_url(url)

    @property
    def gate_only(self) -> bool:
        """True when only a deploy can run this check (it needs the step's deployment URL or headers with secrets),
        so `/status` does not probe it on its own."""
        return self.needs_deployment_url or bool(self.headers_env)

    def headers(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The `headers_env` headers with their values; ValueError naming (only) the variable that is not set."""
        values = {}
        for name, variable in self.headers_env.items():
            value = environ.get(variable)
            if not value:
                raise ValueError(f"environment variable {variable} (the health check's {name} header) is not set")
            values[name] = value
        return values

    @property
    def needs_deployment_url(self) -> bool:
        """True when `url` uses {deployment_url}: only a provider that reports a deployment URL can fill it."""
        return DEPLOYMENT_URL in self.url

    def for_deployment(self, deployment_url: str | None) -> HttpHealthSettings:
        """The probe of the deployment at `deployment_url` (the step's URL); ValueError saying why there is none."""
        if not self.needs_deployment_url:
            return self
        host = deployment_host(deployment_url)
        if host is None:
            raise ValueError(
                f"health.url needs {DEPLOYMENT_URL}, but the provider reported "
                + (
                    f"no usable deployment URL ({deployment_url[:80]!r})"
                    if deployment_url
                    else "no deployment URL for this step"
                )
            )
        # The host matched _HOST, so the rendered URL is as valid as the template (no revalidation needed).
        return self.model_copy(update={"url": self.url.replace(DEPLOYMENT_URL, host)})


@dataclass(frozen=True)
class ProbeResult:
    """One check: whether it passed, the HTTP status (None when there was no answer), latency and why it failed."""

    ok: bool
    status: int | None
    latency_ms: float
    error: str | None = None


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict: ok, consecutive passes at the end, probes made, the last probe and a one-line reason."""

    ok: bool
    passes: int
    attempts: int
    last: ProbeResult
    reason: str


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _short_error(error: BaseException, settings: HttpHealthSettings) -> str:
    """A short, URL-free reason for a failed request."""
    if isinstance(error, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return f"timed out after {format_duration(settings.timeout)}"
    if isinstance(error, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return "TLS error"
    if isinstance(error, aiohttp.ClientConnectorError):
        os_error = error.os_error
        if isinstance(os_error, socket.gaierror):
            return "DNS lookup failed"
        if isinstance(os_error, ConnectionRefusedError):
            return "connection refused"
        return f"cannot connect: {os_error.strerror or type(os_error).__name__}"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(error, aiohttp.InvalidURL):
        return "invalid URL"
    if isinstance(error, aiohttp.ClientError | OSError):
        return type(error).__name__
    return f"probe failed: {type(error).__name__}"


async def probe(
    session: aiohttp.ClientSession, settings: HttpHealthSettings, *, headers: Mapping[str, str] | None = None
) -> ProbeResult:
    """One GET of `settings.url` (with `headers` too); never raises (failures are ProbeResult(ok=False, error=...))."""
    started = time.perf_counter()
    timeout = aiohttp.ClientTimeout(total=settings.timeout.total_seconds())
    sent = {"User-Agent": "chatops-health/1", "Cache-Control": "no-cache", **(headers or {})}
    try:
        async with session.get(settings.url, timeout=timeout, allow_redirects=False, headers=sent) as response:
            status = response.status
            body = await response.content.read(_BODY_LIMIT) if settings.expect_body is not None else b""
    except asyncio.CancelledError:
        raise
    except Exception as error:  # a probe reports, it never raises
        return ProbeResult(
            ok=False, status=None, latency_ms=_ms(time.perf_counter() - started), error=_short_error(error, settings)
        )
    elapsed = time.perf_counter() - started
    latency_ms = _ms(elapsed)
    if status != settings.expect_status:
        return ProbeResult(
            ok=False, status=status, latency_ms=latency_ms, error=f"expected {settings.expect_status}, got {status}"
        )
    if settings.expect_body is not None and settings.expect_body not in body.decode("utf-8", "replace"):
        shown = settings.expect_body if len(settings.expect_body) <= 40 else settings.expect_body[:39] + "…"
        return ProbeResult(ok=False, status=status, latency_ms=latency_ms, error=f"body does not contain {shown!r}")
    if settings.max_latency is not None and elapsed > settings.max_latency.total_seconds():
        return ProbeResult(
            ok=False,
            status=status,
            latency_ms=latency_ms,
            error=f"slow: {latency_ms:.0f}ms > {format_duration(settings.max_latency)}",
        )
    return ProbeResult(ok=True, status=status, latency_ms=latency_ms)


def default_deadline(settings: HttpHealthSettings) -> timedelta:
    """How long the gate may take by default: checks × interval × 3 + timeout."""
    return settings.checks * settings.interval * 3 + settings.timeout


def describe(result: ProbeResult) -> str:
    """One line for Slack: "200 in 12ms" or "connection refused"."""
    if result.ok:
        return f"{result.status} in {result.latency_ms:.0f}ms"
    return result.error or "failed"


async def health_gate(
    session: aiohttp.ClientSession,
    settings: HttpHealthSettings,
    *,
    emit: Callable[[str], Awaitable[None]],
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    deadline: timedelta | None = None,
    headers: Mapping[str, str] | None = None,
    on_probe: Callable[[ProbeResult], Awaitable[None]] | None = None,
) -> GateResult:
    """Passes after `checks` consecutive passing probes `interval` apart; fails after `checks` consecutive
    failures, or when `deadline` (default checks × interval × 3 + timeout) has passed. `headers` go with each
    probe (secrets among them never appear in what the gate reports). Each probe is a line to `emit`, or goes to
    `on_probe` instead when given (a caller that shows the checks in place rather than as lines)."""
    limit = (deadline if deadline is not None else default_deadline(settings)).total_seconds()
    interval = settings.interval.total_seconds()
    started = time.monotonic()
    # An injected `sleep` may return at once (tests): count the time it was asked to sleep, so the deadline
    # means the same with any `sleep`.
    unslept = 0.0

    def elapsed() -> float:
        return time.monotonic() - started + unslept

    passes = fails = attempts = 0
    last: ProbeResult | None = None
    while True:
        attempts += 1
        last = await probe(session, settings, headers=headers)
        if last.ok:
            passes, fails = passes + 1, 0
        else:
            passes, fails = 0, fails + 1
        if on_probe is not None:
            await _say(on_probe, last)
        else:
            await _say(
                emit,
                f"health check {attempts}: {'✓' if last.ok else '✗'} {describe(last)}"
                + (f" ({passes}/{settings.checks})" if last.ok else ""),
            )
        if passes >= settings.checks:
            return GateResult(
                ok=True,
                passes=passes,
                attempts=attempts,
                last=last,
                reason=f"{passes}/{settings.checks} checks passed in a row",
            )
        if fails >= settings.checks:
            return GateResult(
                ok=False,
                passes=0,
                attempts=attempts,
                last=last,
                reason=f"{fails} checks failed in a row: {describe(last)}",
            )
        if elapsed() + interval > limit:
            # Sleeping would take us past the deadline: there is no time for another check.
            return GateResult(
                ok=False,
                passes=passes,
                attempts=attempts,
                last=last,
                reason=f"deadline of {format_duration(timedelta(seconds=limit))} passed with "
                f"{passes}/{settings.checks} passes in a row (last: {describe(last)})",
            )
        before = time.monotonic()
        await sleep(interval)
        unslept += max(0.0, interval - (time.monotonic() - before))


async def _say(emit: Callable[[_T], Awaitable[None]], line: _T) -> None:
    try:
        await emit(line)
    except asyncio.CancelledError:
        raise
    except Exception:  # a chat hiccup must not decide a health gate
        log.warning("health progress line could not be posted", exc_info=True)


class HttpCheckSettings(StrictModel):
    """`{name: healthz, kind: http, url: ..., expect_status: 200}` as one metric of an `analysis:` section."""

    kind: Literal["http"]
    name: MetricName
    url: str
    expect_status: int = Field(200, ge=100, le=599)
    timeout: Annotated[Duration, AfterValidator(_positive)] = timedelta(seconds=2)
    expect_body: str | None = Field(None, min_length=1, description="Text the body must contain.")
    max_latency: Annotated[Duration, AfterValidator(_positive)] | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        return _check_http_url(_no_placeholders(url))

    def probe_settings(self) -> HttpHealthSettings:
        """The same probe as a `health:` section would make."""
        return HttpHealthSettings(
            url=self.url,
            expect_status=self.expect_status,
            timeout=self.timeout,
            expect_body=self.expect_body,
            max_latency=self.max_latency,
        )


class HttpCheck:
    """The HTTP probe behind the `HealthCheck` Protocol: one GET per check."""

    def __init__(self, settings: HttpCheckSettings, *, http: aiohttp.ClientSession) -> None:
        self.name = settings.name
        self._probe = settings.probe_settings()
        self._http = http

    async def measure(self) -> Measurement:
        """One probe; never raises."""
        result = await probe(self._http, self._probe)
        return Measurement(
            ok=result.ok,
            value=describe(result),
            limit=f"HTTP {self._probe.expect_status}",
            error=None if result.ok else result.error,
        )

    async def aclose(self) -> None:
        """Nothing to release: the HTTP session is shared."""


def build(settings: HttpCheckSettings, *, environ: Mapping[str, str], http: aiohttp.ClientSession) -> HttpCheck:
    """The check for validated settings."""
    return HttpCheck(settings, http=http)
