"""Real servers for the metric-gate tests: Debian's `prometheus` binary started on a free port with a temporary
storage directory, scraping (every second) a small aiohttp exporter whose 5xx rate each test sets per service; and
a local stand-in for Datadog's monitor API.

The exporter runs on its own thread and event loop, because Prometheus scrapes it all the time, across the tests
of a module and their separate event loops. Import the fixtures into a test module to use them."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import start_site
from tests.waiting import eventually_blocking

PROMETHEUS = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
REQUESTS_PER_SCRAPE = 100


class Exporter:
    """Serves `http_requests_total{service, code}` counters: every scrape adds REQUESTS_PER_SCRAPE requests per
    service, of which the service's error ratio answered 500 (the rest 200)."""

    def __init__(self) -> None:
        self._ratios: dict[str, float] = {}
        self._counts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-exporter", daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""

    def set_error_ratio(self, service: str, ratio: float) -> None:
        """From the next scrape on, this share of `service`'s requests are 5xx."""
        with self._lock:
            self._ratios[service] = ratio

    async def _metrics(self, request: web.Request) -> web.Response:
        lines = ["# HELP http_requests_total Requests served.", "# TYPE http_requests_total counter"]
        with self._lock:
            for service, ratio in sorted(self._ratios.items()):
                errors = round(REQUESTS_PER_SCRAPE * ratio)
                for code, added in (("200", REQUESTS_PER_SCRAPE - errors), ("500", errors)):
                    total = self._counts.get((service, code), 0) + added
                    self._counts[(service, code)] = total
                    lines.append(f'http_requests_total{{service="{service}",code="{code}"}} {total}')
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    async def _start(self) -> str:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner, origin = await start_site(app)
        return origin

    def start(self) -> None:
        """Starts the exporter's thread and server."""
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)

    def stop(self) -> None:
        """Stops the server and its thread."""
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()


def error_rate_query(service: str, window: str = "3s") -> str:
    """The share of a service's requests that were 5xx, over `window` (the issue's error-rate query)."""
    return (
        f'sum(rate(http_requests_total{{job="web",service="{service}",code=~"5.."}}[{window}])) / '
        f'sum(rate(http_requests_total{{job="web",service="{service}"}}[{window}]))'
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PrometheusServer:
    """A running Prometheus: its base URL, process and log."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    _stopped: bool = field(default=False)

    def query(self, promql: str) -> dict[str, Any]:
        """One instant query, synchronously (for fixtures)."""
        address = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(address, timeout=10) as answer:
            return dict(json.loads(answer.read()))

    def wait_for_series(self, promql: str, deadline: float = 60) -> None:
        """Returns once `promql` has at least one series (the exporter has been scraped enough)."""

        def has_data() -> bool:
            result = self.query(promql)["data"]["result"]
            return bool(result and result[0]["value"][1] != "NaN")

        eventually_blocking(has_data, f"Prometheus to have data for {promql}", deadline=deadline, every=0.2)

    def stop(self) -> None:
        """Stops Prometheus (terminate, then kill)."""
        if self._stopped:
            return
        self._stopped = True
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)


def _ready_or_exited(process: subprocess.Popen[bytes], url: str) -> bool:
    """Whether Prometheus has exited, or says at `url` that it is ready (a connection error counts as not yet)."""
    if process.poll() is not None:
        return True
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def start_prometheus(directory: Path, target: str) -> PrometheusServer:
    """Starts Prometheus scraping `target` (host:port) every second as job "web"; waits until it is ready."""
    assert PROMETHEUS is not None
    config = directory / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - {{job_name: web, static_configs: [{{targets: ['{target}']}}]}}\n"
    )
    last_log = ""
    for attempt in range(3):  # a free port may be taken by someone else before Prometheus binds it
        port = _free_port()
        log = directory / f"prometheus-{attempt}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={directory / f'data-{attempt}'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        server = PrometheusServer(url=f"http://127.0.0.1:{port}", process=process, log=log)
        # An exit (the port was taken) ends the wait at once; so does readiness. Not ready in time: try again too.
        with suppress(AssertionError):
            eventually_blocking(partial(_ready_or_exited, process, server.url), "Prometheus to be ready or exit")
            if process.poll() is None:
                return server
        server.stop()
        last_log = log.read_text(errors="replace")[-2000:]
    raise AssertionError(f"Prometheus did not start; its log ends with:\n{last_log}")


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    """The exporter Prometheus scrapes; tests set error ratios per service name."""
    server = Exporter()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def prometheus(exporter: Exporter, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A real Prometheus scraping `exporter` every second (skipped when the binary is missing)."""
    if PROMETHEUS is None:
        pytest.skip("the prometheus binary is not installed (Debian: apt-get install -y prometheus)")
    target = urllib.parse.urlsplit(exporter.url).netloc
    server = start_prometheus(tmp_path_factory.mktemp("prometheus"), target)
    yield server
    server.stop()


# -- Datadog's monitor API ----------------------------------------------------------------------------------------


@dataclass
class DatadogApi:
    """A local stand-in for `GET /api/v1/monitor/{monitor_id}`
    (https://docs.datadoghq.com/api/latest/monitors/get-a-monitors-details/): the monitor JSON with its
    `overall_state`, 403 `{"errors": ["Forbidden"]}` for wrong keys and 404 `{"errors": [...]}` for an unknown
    id, as Datadog answers; `faults` are answers given before the real one (429 with Retry-After, 500)."""

    api_key: str = "dd-api-key-secret"
    app_key: str = "dd-app-key-secret"
    monitors: dict[int, dict[str, Any]] = field(default_factory=dict)
    faults: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    requests: list[tuple[float, str, dict[str, str]]] = field(default_factory=list)
    url: str = ""

    def add(self, monitor_id: int, name: str, state: str) -> None:
        """A monitor shaped as Datadog's example answer (the fields we read, and a few around them)."""
        self.monitors[monitor_id] = {
            "id": monitor_id,
            "name": name,
            "type": "metric alert",
            "overall_state": state,
            "query": "avg(last_5m):sum:trace.http.request.errors{service:web} > 5",
            "message": "@slack-ops",
            "tags": ["service:web"],
            "options": {"thresholds": {"critical": 5}},
            "priority": None,
            "created": "2026-01-01T00:00:00.000000+00:00",
            "modified": "2026-01-01T00:00:00.000000+00:00",
        }

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((time.monotonic(), request.path, dict(request.headers)))
        if self.faults:
            status, headers = self.faults.pop(0)
            return web.json_response(
                {"errors": ["Rate limit exceeded" if status == 429 else "Internal Server Error"]},
                status=status,
                headers=headers,
            )
        if (
            request.headers.get("DD-API-KEY") != self.api_key
            or request.headers.get("DD-APPLICATION-KEY") != self.app_key
        ):
            return web.json_response({"errors": ["Forbidden"]}, status=403)
        try:
            monitor = self.monitors[int(request.match_info["monitor_id"])]
        except (KeyError, ValueError):
            return web.json_response({"errors": ["Monitor not found"]}, status=404)
        return web.json_response(monitor)


@pytest.fixture
async def datadog_api() -> AsyncIterator[DatadogApi]:
    """The Datadog monitor API on a free port."""
    api = DatadogApi()
    app = web.Application()
    app.router.add_get("/api/v1/monitor/{monitor_id}", api.handle)
    runner, api.url = await start_site(app)
    yield api
    await runner.cleanup()
