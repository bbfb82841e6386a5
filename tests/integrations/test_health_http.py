"""The HTTP probe and the health gate against a local aiohttp target that is up, failing, slow, flapping or
recovering, and against a port that refuses connections."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import aiohttp
import pytest
from aiohttp import web
from pydantic import ValidationError

from integrations.health import (
    GateResult,
    HttpHealthSettings,
    ProbeResult,
    health_gate,
    probe,
)


@dataclass
class Target:
    origin: str
    hits: dict[str, int]


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    hits: dict[str, int] = {}

    def counted(handler):
        async def wrapper(request: web.Request) -> web.StreamResponse:
            hits[request.path] = hits.get(request.path, 0) + 1
            return await handler(request, hits[request.path])

        return wrapper

    async def ok(request: web.Request, n: int) -> web.Response:
        return web.Response(text='{"status": "ok"}', content_type="application/json")

    async def broken(request: web.Request, n: int) -> web.Response:
        return web.Response(status=500, text="boom")

    async def slow(request: web.Request, n: int) -> web.Response:
        await asyncio.sleep(1.0)
        return web.Response(text="ok")

    async def flapping(request: web.Request, n: int) -> web.Response:
        return web.Response(status=200 if n % 2 else 503)

    async def recovering(request: web.Request, n: int) -> web.Response:
        return web.Response(status=200 if n > 2 else 502)

    async def redirect(request: web.Request, n: int) -> web.Response:
        raise web.HTTPFound("/login")

    app = web.Application()
    for path, handler in (
        ("/ok", ok),
        ("/broken", broken),
        ("/slow", slow),
        ("/flapping", flapping),
        ("/recovering", recovering),
        ("/redirect", redirect),
    ):
        app.router.add_get(path, counted(handler))
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield Target(origin=f"http://127.0.0.1:{runner.addresses[0][1]}", hits=hits)
    await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def health(url: str, **overrides: object) -> HttpHealthSettings:
    values: dict[str, object] = {"url": url, "timeout": "500ms", "checks": 3, "interval": "50ms"}
    values.update(overrides)
    return HttpHealthSettings.model_validate(values)


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    async def __call__(self, text: str) -> None:
        self.lines.append(text)


async def test_probe_up(target: Target, http: aiohttp.ClientSession) -> None:
    result = await probe(http, health(f"{target.origin}/ok", expect_body='"ok"'))
    assert result.ok and result.status == 200 and result.error is None and result.latency_ms >= 0


async def test_probe_failures_become_short_errors(target: Target, http: aiohttp.ClientSession) -> None:
    assert await probe(http, health(f"{target.origin}/broken")) == ProbeResult(
        ok=False, status=500, latency_ms=pytest.approx(0, abs=1000), error="expected 200, got 500"
    )
    assert (await probe(http, health(f"{target.origin}/broken", expect_status=500))).ok

    slow = await probe(http, health(f"{target.origin}/slow", timeout="200ms"))
    assert not slow.ok and slow.status is None and slow.error == "timed out after 200ms"
    assert 150 <= slow.latency_ms < 1000

    refused = await probe(http, health(f"http://127.0.0.1:{closed_port()}/healthz"))
    assert refused == ProbeResult(ok=False, status=None, latency_ms=refused.latency_ms, error="connection refused")

    body = await probe(http, health(f"{target.origin}/ok", expect_body="healthy"))
    assert not body.ok and body.status == 200 and body.error == "body does not contain 'healthy'"

    latency = await probe(http, health(f"{target.origin}/slow", timeout="2s", max_latency="100ms"))
    assert not latency.ok and latency.status == 200 and latency.error and latency.error.startswith("slow: ")

    redirect = await probe(http, health(f"{target.origin}/redirect"))
    assert not redirect.ok and redirect.status == 302  # a redirect to a login page is not healthy


async def test_probe_never_raises_on_a_name_that_does_not_resolve(http: aiohttp.ClientSession) -> None:
    result = await probe(http, health("http://chatops-health-test.invalid/healthz", timeout="2s"))
    assert not result.ok and result.status is None and result.error


async def test_gate_passes_after_n_consecutive_checks(target: Target, http: aiohttp.ClientSession) -> None:
    emit = Lines()
    result = await health_gate(http, health(f"{target.origin}/ok"), emit=emit)
    assert result.ok and result.passes == 3 and result.attempts == 3
    assert result.reason == "3/3 checks passed in a row"
    assert target.hits["/ok"] == 3
    assert len(emit.lines) == 3 and emit.lines[-1].startswith("health check 3: ✓ 200 in")


async def test_gate_gives_each_probe_to_on_probe_instead_of_a_line(target: Target, http: aiohttp.ClientSession) -> None:
    emit, probes = Lines(), []

    async def on_probe(result: ProbeResult) -> None:
        probes.append(result)

    result = await health_gate(http, health(f"{target.origin}/recovering"), emit=emit, on_probe=on_probe)
    assert result.ok and [p.ok for p in probes] == [False] * (result.attempts - 3) + [True] * 3
    assert emit.lines == []  # the caller shows the checks in place: no line per check


async def test_gate_waits_the_interval_between_checks(target: Target, http: aiohttp.ClientSession) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    result = await health_gate(http, health(f"{target.origin}/ok", checks=4, interval="2s"), emit=Lines(), sleep=sleep)
    assert result.ok and slept == [2.0, 2.0, 2.0]


async def test_gate_recovers_from_early_failures(target: Target, http: aiohttp.ClientSession) -> None:
    result = await health_gate(http, health(f"{target.origin}/recovering"), emit=Lines())
    assert result.ok and result.attempts == 5 and result.passes == 3


async def test_gate_fails_after_n_consecutive_failures(target: Target, http: aiohttp.ClientSession) -> None:
    result = await health_gate(http, health(f"{target.origin}/broken"), emit=Lines())
    assert not result.ok and result.attempts == 3 and result.passes == 0
    assert result.reason == "3 checks failed in a row: expected 200, got 500"
    assert result.last.status == 500

    refused = await health_gate(http, health(f"http://127.0.0.1:{closed_port()}/"), emit=Lines())
    assert not refused.ok and refused.reason == "3 checks failed in a row: connection refused"

    slow = await health_gate(http, health(f"{target.origin}/slow", timeout="100ms", checks=2), emit=Lines())
    assert not slow.ok and slow.reason == "2 checks failed in a row: timed out after 100ms"


async def test_gate_fails_at_its_deadline_when_checks_flap(target: Target, http: aiohttp.ClientSession) -> None:
    result = await health_gate(http, health(f"{target.origin}/flapping"), emit=Lines())
    assert not result.ok
    assert result.reason.startswith("deadline of 950ms passed")  # 3 × 50ms × 3 + 500ms
    assert 3 <= result.attempts <= 20


async def test_an_explicit_deadline_counts_injected_sleeps(target: Target, http: aiohttp.ClientSession) -> None:
    async def instant(seconds: float) -> None:
        return None

    result = await health_gate(
        http,
        health(f"{target.origin}/flapping", interval="10s"),
        emit=Lines(),
        sleep=instant,
        deadline=timedelta(seconds=35),
    )
    assert not result.ok and result.reason.startswith("deadline of 35s passed")
    assert result.attempts == 4  # checks at 0s, 10s, 20s, 30s; a fifth at 40s would be past the deadline


async def test_a_failing_emit_does_not_decide_the_gate(target: Target, http: aiohttp.ClientSession) -> None:
    async def broken(text: str) -> None:
        raise RuntimeError("slack is down")

    result: GateResult = await health_gate(http, health(f"{target.origin}/ok", checks=1), emit=broken)
    assert result.ok


def test_settings() -> None:
    s = HttpHealthSettings(
        url="http://127.0.0.1:8081/healthz", expect_status=200, timeout="2s", checks=3, interval="2s"
    )
    assert s.timeout == timedelta(seconds=2) and s.interval == timedelta(seconds=2) and s.checks == 3
    defaults = HttpHealthSettings(url="https://example.com/healthz")
    assert (defaults.expect_status, defaults.timeout, defaults.checks, defaults.interval) == (
        200,
        timedelta(seconds=2),
        3,
        timedelta(seconds=2),
    )
    with pytest.raises(ValidationError):
        HttpHealthSettings(url="http://x/", checks=0)
    with pytest.raises(ValidationError):
        HttpHealthSettings(url="ftp://x/")
    with pytest.raises(ValidationError):
        HttpHealthSettings(url="http://x/", timeout="0s")
    with pytest.raises(ValidationError):
        HttpHealthSettings(url="http://x/", surprise=True)
