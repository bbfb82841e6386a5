"""Alert ingest: how many alerts/s `chatops serve` accepts durably, against Prometheus Alertmanager's own ingest
measured in the same run with the same load generator; then how fast alerts reach Slack, and (optionally) a storm.

1. Ingest, side by side. For each batch size (10 and 50 alerts per request), 16 concurrent clients post for a fixed
   duration to
     a. `chatops serve` (a real process, a real Redis): Alertmanager v4 webhook bodies on `POST
        /alerts/alertmanager` with the bearer token; every 2xx means the alerts are in the Redis Stream (checked
        after the run: the stream holds one entry per 2xx, and as many alerts as were accepted);
     b. Prometheus Alertmanager (`/usr/bin/prometheus-alertmanager`, started here on a free loopback port, no
        cluster, its own storage directory, a receiver that sends nothing): the same alerts in its API v2 shape
        on its own `POST /api/v2/alerts`.
   Each side gets a fresh process (and chatops a fresh Redis) per batch size, and is SIGSTOPped while the other
   is measured, so neither's background work (our stream consumer, its dispatcher) eats into the other's figure.
   The load generator is `wrk` (C) when installed: a Python client on the same two cores measures itself.
   Prints alerts/s for both and the ratio. If the Alertmanager binary is missing, says so and prints ours alone.
2. Latency: single new alerts at a modest rate; time from the webhook POST to the emulator receiving the
   chat.postMessage (its message ts is its clock). Emulator without a rate limit. Prints p50/p99.
3. Storm (--storm): 10,000 alerts in 10 s over 50 groups with the emulator's 1 message/s/channel limit; waits until
   the stream is delivered and until Slack shows everything; prints messages posted, alerts stored, alerts lost
   (must be 0). Then the same 10,000 resolved as fast: the times again, the thread replies that told of them, and
   the storm alerts still firing (must be 0).

   chatops runs with 1 worker process and with one per core (`--workers`, `chatops serve --workers N`); each
   worker count gets its own row.

Run: python bench/alert_ingest.py [--seconds 5] [--clients 16] [--batches 10,50] [--workers 1,2]
     [--driver wrk|python] [--no-latency] [--storm] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import ResponseError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.emulator import SlackEmulator, Workspace
from bot.platform.embedded_redis import EmbeddedRedis, free_port

TOKEN = "bench-am-token"
BOT_TOKEN = "xoxb-bench-alerts"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
STREAM = "chatops:{alerts}:stream"
CONSUMER_GROUP = "delivery"
CONFIG = """
roles: {admins: [U0DEMO]}
alerts:
  default_channel: "#alerts"
  group_by: [alertname]
  group_wait: 0s
  sources:
    alertmanager: {token_env: BENCH_AM_TOKEN}
"""
# A receiver that sends nothing: Alertmanager still stores, dedups and groups every alert (its dispatcher runs).
ALERTMANAGER_CONFIG = """
route: {receiver: blackhole, group_by: [alertname], group_wait: 0s}
receivers: [{name: blackhole}]
"""
STARTS_AT = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
DISTINCT_BODIES = 200  # bodies per batch size, cycled: 40 alert names, so most alerts repeat (dedup) after a while


def alert_pairs(batch: int, n: int) -> list[tuple[str, str]]:
    """The (alertname, instance) pairs of request `n` of a run with `batch` alerts per request."""
    return [(f"Load{n % 40}", f"host-{(n // 40) * batch + i}") for i in range(batch)]


def body(alerts: list[tuple[str, str]], status: str = "firing") -> bytes:
    """An Alertmanager v4 webhook body (what Alertmanager sends chatops) for (alertname, instance) pairs."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return json.dumps(
        {
            "version": "4",
            "groupKey": "{}:{}",
            "status": status,
            "receiver": "chatops",
            "truncatedAlerts": 0,
            "groupLabels": {},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "http://am",
            "alerts": [
                {
                    "status": status,
                    "labels": {"alertname": name, "instance": instance, "severity": "warning"},
                    "annotations": {"summary": f"{name} on {instance}"},
                    "startsAt": now,
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "",
                    "fingerprint": f"{abs(hash((name, instance))):016x}",
                }
                for name, instance in alerts
            ],
        }
    ).encode()


def api_v2_body(alerts: list[tuple[str, str]]) -> bytes:
    """The same alerts as Alertmanager's own `POST /api/v2/alerts` takes them (a list of postable alerts)."""
    return json.dumps(
        [
            {
                "labels": {"alertname": name, "instance": instance, "severity": "warning"},
                "annotations": {"summary": f"{name} on {instance}"},
                "startsAt": STARTS_AT,
                "generatorURL": "http://am/graph",
            }
            for name, instance in alerts
        ]
    ).encode()


# -- load generators ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """What one timed run did: requests answered 2xx, other answers (and socket errors), and its duration."""

    ok: int
    failed: int
    seconds: float


def wrk_script(path: Path, bodies: list[bytes], headers: dict[str, str]) -> None:
    """A wrk Lua script that POSTs `bodies` in turn (each thread from its own offset) with `headers`."""

    def quoted(data: bytes) -> str:
        return "[==[" + data.decode() + "]==]"

    lines = [
        "local bodies = {",
        *[f"  {quoted(b)}," for b in bodies],
        "}",
        "local headers = {" + ", ".join(f'["{k}"] = "{v}"' for k, v in headers.items()) + "}",
        "local counter = 0",
        "function setup(thread) counter = counter + 1; thread:set('offset', counter * 97) end",
        "function init(args) counter = offset or 0 end",
        "function request()",
        "  counter = counter + 1",
        "  return wrk.format('POST', nil, headers, bodies[(counter % #bodies) + 1])",
        "end",
    ]
    path.write_text("\n".join(lines) + "\n")


async def drive_wrk(
    url: str, bodies: list[bytes], headers: dict[str, str], *, clients: int, seconds: float, workdir: Path
) -> Load:
    """`clients` connections from wrk (two threads) for `seconds`."""
    script = workdir / "post.lua"
    wrk_script(script, bodies, headers)
    proc = await asyncio.create_subprocess_exec(
        "wrk",
        "-t2",
        f"-c{clients}",
        f"-d{max(1, round(seconds))}s",
        "-s",
        str(script),
        url,  # whole seconds
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out = (await proc.communicate())[0].decode()
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if total is None:
        raise RuntimeError(f"wrk printed no totals:\n{out}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[total.group(3)]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = (int(non_2xx.group(1)) if non_2xx else 0) + (sum(int(n) for n in socket.groups()) if socket else 0)
    requests = int(total.group(1))
    return Load(
        ok=requests - (int(non_2xx.group(1)) if non_2xx else 0), failed=failed, seconds=float(total.group(2)) * scale
    )


async def drive_python(url: str, bodies: list[bytes], headers: dict[str, str], *, clients: int, seconds: float) -> Load:
    """`clients` aiohttp clients posting `bodies` in turn for `seconds`."""
    ok = failed = 0
    counter = iter(range(10**12))
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal ok, failed
        while time.perf_counter() < deadline:
            data = bodies[next(counter) % len(bodies)]
            async with session.post(url, data=data, headers=headers) as response:
                await response.read()
                if response.status < 300:
                    ok += 1
                else:
                    failed += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        started = time.perf_counter()
        await asyncio.gather(*[worker(session) for _ in range(clients)])
        return Load(ok=ok, failed=failed, seconds=time.perf_counter() - started)


async def drive(
    args: argparse.Namespace, url: str, bodies: list[bytes], headers: dict[str, str], *, seconds: float, workdir: Path
) -> Load:
    """The configured load generator against `url`."""
    if args.driver == "wrk":
        return await drive_wrk(url, bodies, headers, clients=args.clients, seconds=seconds, workdir=workdir)
    return await drive_python(url, bodies, headers, clients=args.clients, seconds=seconds)


# -- the two servers ---------------------------------------------------------------------------------------------


async def wait_http(url: str, *, deadline: float = 30) -> None:
    """Returns once `url` answers 200 within `deadline` seconds; RuntimeError naming it otherwise."""
    give_up_at = time.monotonic() + deadline
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < give_up_at:
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not answer 200 within {deadline:.0f} s")


def alertmanager_missing() -> str | None:
    """Why the Alertmanager anchor cannot run here, or None."""
    if not os.access(ALERTMANAGER, os.X_OK):
        return f"{ALERTMANAGER} is not installed (apt-get install prometheus-alertmanager)"
    return None


@contextlib.asynccontextmanager
async def alertmanager(workdir: Path) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """Alertmanager on a free loopback port with its own storage and no cluster; yields (base URL, process)."""
    workdir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - setup before the server starts, nothing to block
    (workdir / "alertmanager.yml").write_text(ALERTMANAGER_CONFIG)
    port = free_port()
    log = (workdir / "alertmanager.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        ALERTMANAGER,
        f"--config.file={workdir / 'alertmanager.yml'}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
        stdout=log,
        stderr=log,
        start_new_session=True,  # its own process group, paused as one (see `paused`)
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_http(f"{base}/-/ready")
        yield base, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
        await proc.wait()
        log.close()


@contextlib.asynccontextmanager
async def chatops(
    workdir: Path, emulator: SlackEmulator, workers: int = 1
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process, aioredis.Redis]]:
    """A fresh Redis and `chatops serve` (`workers` processes on the port) with the Alertmanager source; yields
    (base URL, process, Redis client). The process leads its own group: its workers are paused with it."""
    redis = EmbeddedRedis(workdir / "redis").start()
    config = workdir / "chatops.yaml"
    config.write_text(CONFIG)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "REDIS_"))} | {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": "bench",
        "SLACK_API_URL": emulator.api_url,
        "REDIS_URL": redis.url,
        "CHATOPS_CONFIG": str(config),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
        "BENCH_AM_TOKEN": TOKEN,
        "WEB_CONCURRENCY": str(workers),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "serve", env=env, cwd=ROOT, start_new_session=True
    )
    client = aioredis.Redis.from_url(redis.url, decode_responses=True)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_http(f"{base}/readyz", deadline=60)
        await wait_listening(port, workers)
        yield base, proc, client
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGCONT)
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            print("chatops serve did not stop within 30 s of SIGTERM", file=sys.stderr)
            proc.kill()
            await proc.wait()
        await client.aclose()
        redis.stop()


@contextlib.contextmanager
def paused(proc: asyncio.subprocess.Process | None) -> Iterator[None]:
    """`proc` and its process group (chatops's workers) stopped (SIGSTOP) for the duration, so their background
    work takes no CPU from what is measured."""
    if proc is not None and proc.returncode is None:
        os.killpg(proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        if proc is not None and proc.returncode is None:
            os.killpg(proc.pid, signal.SIGCONT)


async def wait_listening(port: int, sockets: int, *, deadline: float = 60) -> None:
    """Returns once `sockets` sockets listen on 127.0.0.1:`port` (every worker's; Linux /proc/net/tcp)."""
    give_up_at = time.monotonic() + deadline
    while time.monotonic() < give_up_at:
        listening = listening_sockets(port)
        if listening is None or listening >= sockets:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{sockets} workers were not listening on port {port} within {deadline:.0f} s")


def listening_sockets(port: int) -> int | None:
    """How many sockets listen on 127.0.0.1:`port`; None where /proc/net/tcp is missing."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    address = f"0100007F:{port:04X}"
    return sum(1 for line in lines if line.split()[1] == address and line.split()[3] == "0A")


def children(pid: int) -> list[int]:
    """The child processes of `pid` (chatops's workers; Linux /proc, empty elsewhere)."""
    try:
        return [int(part) for part in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


async def stream_alerts(client: aioredis.Redis) -> tuple[int, int, int]:
    """(entries, alerts, alerts delivered) in the ingest stream: what was stored durably, and how many of those
    alerts the bot's consumer has put into their groups (entries its group has read and acknowledged)."""
    last_delivered = "0-0"
    for group in await client.xinfo_groups(STREAM) if await client.exists(STREAM) else []:
        if _text(group["name"]) == CONSUMER_GROUP:
            last_delivered = _text(group["last-delivered-id"])
    pending = {_text(p["message_id"]) for p in await _pending(client)}
    entries = alerts = delivered = 0
    last = "-"
    while True:
        page = await client.xrange(STREAM, min=last, count=1000)
        if last != "-":
            page = page[1:]
        if not page:
            return entries, alerts, delivered
        for entry_id, fields in page:
            entries += 1
            count = _count_alerts(fields)
            alerts += count
            if _stream_id(_text(entry_id)) <= _stream_id(last_delivered) and _text(entry_id) not in pending:
                delivered += count
        last = page[-1][0]


async def _pending(client: aioredis.Redis) -> list[dict[str, object]]:
    """The entries the consumer group has read but not acknowledged (a few at most: it reads 100 at a time)."""
    try:
        return list(await client.xpending_range(STREAM, CONSUMER_GROUP, min="-", max="+", count=10_000))
    except aioredis.ResponseError:  # no group yet
        return []


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _stream_id(value: str) -> tuple[int, int]:
    milliseconds, _, sequence = value.partition("-")
    return int(milliseconds), int(sequence or 0)


def _count_alerts(fields: dict[str, str]) -> int:
    """How many alerts one stream entry holds, whichever way it stores them (normalised, or the sender's body)."""
    if "alerts" in fields:
        return len(json.loads(fields["alerts"]))
    if "count" in fields:
        return int(fields["count"])
    return len(json.loads(fields["body"]).get("alerts", []))


def cpu_seconds(*pids: int) -> float:
    """User plus system CPU time used so far by these processes (Linux /proc; 0 elsewhere)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


@dataclass
class Side:
    """One server's load over the rounds: requests answered 2xx and not, seconds under load, CPU seconds used."""

    ok: int = 0
    failed: int = 0
    seconds: float = 0.0
    cpu: float = 0.0

    def add(self, load: Load, cpu: float) -> None:
        """Counts one timed run."""
        self.ok += load.ok
        self.failed += load.failed
        self.seconds += load.seconds
        self.cpu += cpu


@dataclass(frozen=True)
class IngestResult:
    """One batch size's side-by-side figures."""

    batch: int
    workers: int
    ours: float
    anchor: float | None
    stored_ok: bool
    note: str


async def ingest(
    args: argparse.Namespace, batch: int, workers: int, tmp: Path, emulator: SlackEmulator
) -> IngestResult:
    """Ours and Alertmanager's alerts/s at `batch` alerts per request, each measured while the other is paused, in
    rounds of alternating order (ours first, then theirs first) so that a change in the machine's load between
    runs weighs on both."""
    pairs = [alert_pairs(batch, n) for n in range(DISTINCT_BODIES)]
    ours_bodies = [body(p) for p in pairs]
    am_bodies = [api_v2_body(p) for p in pairs]
    ours_headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    am_headers = {"Content-Type": "application/json"}
    missing = alertmanager_missing()
    workdir = tmp / f"batch{batch}-workers{workers}"
    workdir.mkdir()
    ours, theirs = Side(), Side()
    async with contextlib.AsyncExitStack() as stack:
        base, bot, client = await stack.enter_async_context(chatops(workdir / "chatops", emulator, workers))
        assert bot.pid is not None
        redis_pid = int((await client.info("server"))["process_id"])
        ours_pids = [bot.pid, *children(bot.pid), redis_pid]
        am_base = am_proc = None
        if missing is None:
            am_base, am_proc = await stack.enter_async_context(alertmanager(workdir / "alertmanager"))
        url = f"{base}/alerts/alertmanager"
        before = await stream_alerts(client)

        async def run_ours(seconds: float) -> tuple[Load, float]:
            with paused(am_proc):
                used = cpu_seconds(*ours_pids)
                load = await drive(args, url, ours_bodies, ours_headers, seconds=seconds, workdir=workdir)
                return load, cpu_seconds(*ours_pids) - used

        async def run_theirs(seconds: float) -> tuple[Load, float]:
            assert am_base is not None and am_proc is not None and am_proc.pid is not None
            with paused(bot):
                used = cpu_seconds(am_proc.pid)
                load = await drive(
                    args, f"{am_base}/api/v2/alerts", am_bodies, am_headers, seconds=seconds, workdir=workdir
                )
                return load, cpu_seconds(am_proc.pid) - used

        warm = (await run_ours(1))[0].ok  # warm-ups: stored too, not counted
        if am_base is not None:
            await run_theirs(1)
        for round_ in range(args.rounds):
            order = [run_ours, run_theirs] if round_ % 2 == 0 else [run_theirs, run_ours]
            for run in order:
                if run is run_theirs and am_base is None:
                    continue
                load, cpu = await run(args.seconds)
                (ours if run is run_ours else theirs).add(load, cpu)
        with paused(bot):  # the consumer stops with the runs: what it delivered was delivered while ours ran
            after = await stream_alerts(client)
    # wrk stops counting at its deadline: a request it sent just before may be stored and answered after it; so
    # the stream holds every 2xx, plus at most one request per connection per run.
    entries, alerts = after[0] - before[0], after[1] - before[1]
    slack = args.clients * (args.rounds + 1)
    stored_ok = ours.ok + warm <= entries <= ours.ok + warm + slack and alerts == entries * batch
    rate = ours.ok * batch / ours.seconds
    note = (
        f"chatops ({workers} worker{'s' if workers > 1 else ''}): {ours.ok:,} requests 2xx ({ours.failed} not) "
        f"in {ours.seconds:.1f} s, "
        f"{1e6 * ours.cpu / max(1, ours.ok * batch):.0f} CPU ms per 1,000 alerts (bot and Redis); the stream "
        f"holds {entries:,} entries of {alerts:,} alerts ({'every 2xx' if stored_ok else 'MISMATCH'}), of which the "
        f"consumer, in the same process, had delivered {after[2] - before[2]:,} "
        f"({100 * (after[2] - before[2]) / max(1, alerts):.0f}%) into their groups"
    )
    anchor = None
    if am_base is not None:
        anchor = theirs.ok * batch / theirs.seconds
        note += (
            f"\n  Alertmanager: {theirs.ok:,} requests 2xx ({theirs.failed} not) in {theirs.seconds:.1f} s, "
            f"{1e6 * theirs.cpu / max(1, theirs.ok * batch):.0f} CPU ms per 1,000 alerts"
        )
    return IngestResult(batch=batch, workers=workers, ours=rate, anchor=anchor, stored_ok=stored_ok, note=note)


# -- latency and storm (one chatops serve, as before) -----------------------------------------------------------


async def wait_delivered(client: aioredis.Redis, stream: str, deadline: float) -> bool:
    """Whether the consumer group has read and acknowledged every entry within `deadline` seconds."""
    give_up_at = time.monotonic() + deadline
    while time.monotonic() < give_up_at:
        try:
            groups = await client.xinfo_groups(stream)
        except ResponseError:  # the group does not exist yet
            groups = []
        last = (await client.xinfo_stream(stream))["last-generated-id"]
        if groups and groups[0]["pending"] == 0 and groups[0]["last-delivered-id"] == last:
            return True
        await asyncio.sleep(0.2)
    return False


async def wait_shown(client: aioredis.Redis, deadline: float) -> bool:
    """Whether, within `deadline` seconds, no alert message is left to post or update, nor thread reply to send."""
    give_up_at = time.monotonic() + deadline
    while time.monotonic() < give_up_at:
        due = [await client.zcard(f"chatops:{{alerts}}:{part}") for part in ("post_due", "update_due", "replies_due")]
        if not any(due):
            return True
        await asyncio.sleep(0.2)
    return False


async def post_many(url: str, bodies: list[bytes], concurrency: int) -> tuple[float, int]:
    """Posts the bodies with `concurrency` in flight; returns (seconds, non-2xx count)."""
    queue = list(reversed(bodies))
    failures = 0
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while queue:
            data = queue.pop()
            async with session.post(url, data=data, headers=headers) as response:
                await response.read()
                failures += response.status >= 300

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        started = time.perf_counter()
        await asyncio.gather(*[worker(session) for _ in range(concurrency)])
        return time.perf_counter() - started, failures


async def latency(url: str, emulator: SlackEmulator) -> tuple[float, float]:
    """p50 and p99 (ms) from a webhook POST to the emulator receiving its chat.postMessage."""
    latencies = []
    async with aiohttp.ClientSession() as session:
        for n in range(200):
            name = f"Latency{n}"
            sent = time.time()
            async with session.post(
                url, data=body([(name, "h")]), headers={"Authorization": f"Bearer {TOKEN}"}
            ) as response:
                await response.read()
            for _ in range(400):
                posts = [
                    c
                    for c in emulator.calls_to("chat.postMessage")
                    if c.ok and name == str(c.args.get("text", "")).split(": ", 1)[-1]
                ]
                if posts:
                    latencies.append(float(posts[0].response["ts"]) - sent)
                    break
                await asyncio.sleep(0.002)
            await asyncio.sleep(0.02)
    latencies.sort()
    return statistics.median(latencies) * 1000, latencies[int(len(latencies) * 0.99) - 1] * 1000


async def storm(url: str, emulator: SlackEmulator, client: aioredis.Redis) -> tuple[int, int]:
    """10,000 alerts in 10 s over 50 groups with Slack's 1 message/s/channel limit, then the same alerts resolved
    as fast; prints both and returns (alerts lost, storm alerts still firing after their resolves)."""
    emulator.set_rate_limit(1.0)
    pairs = [[(f"Storm{(n * 20 + i) % 50}", f"s{n}-{i}") for i in range(20)] for n in range(500)]
    before_posts = len([c for c in emulator.calls_to("chat.postMessage") if c.ok])
    before_len = await client.xlen(STREAM)
    sent_in, took, shown_after, shown = await storm_phase(url, client, [body(alerts) for alerts in pairs])
    stored = 20 * (await client.xlen(STREAM) - before_len)
    await asyncio.sleep(3)
    posts = len([c for c in emulator.calls_to("chat.postMessage") if c.ok]) - before_posts
    limited = len(
        [c for c in emulator.calls_to("chat.postMessage") + emulator.calls_to("chat.update") if c.status == 429]
    )
    members, _ = await storm_members(client)
    print(
        f"storm: 10,000 alerts sent in {sent_in:.1f} s, {stored} stored (every alert in its group {took:.1f} s after "
        f"the first was sent), Slack showing the last change after {shown_after:.1f} s (shown={shown}), {posts} "
        f"messages posted, {limited} answers were 429, {members} storm alerts in groups, lost {10_000 - members}"
    )
    calls_before = len(emulator.calls)
    sent_in, took, shown_after, shown = await storm_phase(url, client, [body(alerts, "resolved") for alerts in pairs])
    await asyncio.sleep(3)
    replies = [c for c in emulator.calls[calls_before:] if c.method == "chat.postMessage" and c.args.get("thread_ts")]
    _, firing = await storm_members(client)
    print(
        f"resolve storm: the 10,000 resolved in {sent_in:.1f} s; every resolve in its group {took:.1f} s after the "
        f"first was sent, Slack showing the last change after {shown_after:.1f} s (shown={shown}); "
        f"{len([c for c in replies if c.ok])} thread replies told of the resolves; {firing} storm alerts still firing"
    )
    return 10_000 - members, firing


async def storm_phase(url: str, client: aioredis.Redis, bodies: list[bytes]) -> tuple[float, float, float, bool]:
    """Sends the 500 bodies over 10 s, waits until the stream is delivered and until Slack shows everything;
    returns (seconds sending, seconds to delivered, seconds to shown, shown in time)."""
    started = time.perf_counter()
    for chunk in range(10):  # 10,000 alerts over 10 s
        await post_many(url, bodies[chunk * 50 : (chunk + 1) * 50], 8)
        await asyncio.sleep(max(0.0, (chunk + 1) - (time.perf_counter() - started)))
    sent_in = time.perf_counter() - started
    await wait_delivered(client, STREAM, 300)
    took = time.perf_counter() - started
    shown = await wait_shown(client, 400)
    return sent_in, took, time.perf_counter() - started, shown


async def storm_members(client: aioredis.Redis) -> tuple[int, int]:
    """Storm alerts in groups (any state), and those still firing, across the storm's groups."""
    members = firing = 0
    for group_id in await client.zrange("chatops:{alerts}:groups", 0, -1):
        raw = await client.get(f"chatops:{{alerts}}:group:{group_id}")
        if not raw:
            continue
        stored = [m for m in json.loads(raw)["members"].values() if m["labels"]["alertname"].startswith("Storm")]
        members += len(stored)
        firing += len([m for m in stored if m["status"] == "firing"])
    return members, firing


# -- main --------------------------------------------------------------------------------------------------------


def row(figure: str, ours: float, anchor: float | None, unit: str, target: str, met: bool | None) -> dict[str, object]:
    """One row of the --json list."""
    return {
        "figure": figure,
        "ours": round(ours, 2),
        "anchor": None if anchor is None else round(anchor, 2),
        "ratio": None if not anchor else round(ours / anchor, 3),
        "unit": unit,
        "target": target,
        "met": met,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4, help="how long each side is loaded per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per batch size, in alternating order")
    parser.add_argument("--clients", type=int, default=16, help="concurrent connections")
    parser.add_argument("--batches", default="10,50", help="alerts per request, comma-separated")
    parser.add_argument(
        "--workers",
        default=f"1,{os.cpu_count() or 1}",
        help="`chatops serve` worker processes, comma-separated (default: 1 and this machine's cores)",
    )
    parser.add_argument(
        "--driver",
        choices=["wrk", "python"],
        default="wrk" if shutil.which("wrk") else "python",
        help="the load generator (wrk when installed: apt-get install wrk)",
    )
    parser.add_argument("--no-latency", action="store_true", help="skip the webhook-to-Slack latency part")
    parser.add_argument("--storm", action="store_true", help="also run the 10,000-alert storm (about a minute)")
    parser.add_argument("--json", action="store_true", help="print the figures as a JSON list as the last line")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="chatops-alert-bench-"))
    emulator = SlackEmulator(signing_secret="bench", bot_token=BOT_TOKEN, workspace=Workspace.demo())
    runner = web.AppRunner(emulator.make_app(page=False), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    emulator.origin = f"http://127.0.0.1:{runner.addresses[0][1]}"
    rows: list[dict[str, object]] = []
    try:
        missing = alertmanager_missing()
        driver = "wrk (2 threads)" if args.driver == "wrk" else "a Python aiohttp client"
        print(
            f"ingest: {args.clients} clients from {driver}, {args.rounds} x {args.seconds:g} s per side and batch size"
        )
        if missing is not None:
            print(f"ingest: no Alertmanager anchor: {missing}")
        worker_counts = sorted({int(w) for w in args.workers.split(",")})
        for batch in [int(b) for b in args.batches.split(",")]:
            for workers in worker_counts:
                result = await ingest(args, batch, workers, tmp, emulator)
                anchor = "n/a" if result.anchor is None else f"{result.anchor:,.0f}"
                ratio = "n/a" if result.anchor is None else f"{result.ours / result.anchor:.2f}x"
                processes = f"{workers} worker{'s' if workers > 1 else ''}"
                print(
                    f"ingest, batches of {batch}, {processes}: chatops {result.ours:,.0f} alerts/s durably; "
                    f"Alertmanager {anchor} alerts/s; ratio {ratio}"
                )
                print(f"  {result.note}")
                met = None if result.anchor is None else result.ours >= result.anchor and result.stored_ok
                rows.append(
                    row(
                        f"alert ingest, batches of {batch}, {processes}",
                        result.ours,
                        result.anchor,
                        "alerts/s",
                        ">= 1.0x Alertmanager",
                        met,
                    )
                )
        if not args.no_latency or args.storm:
            async with chatops(tmp / "delivery", emulator) as (base, _, client):
                url = f"{base}/alerts/alertmanager"
                if not args.no_latency:
                    p50, p99 = await latency(url, emulator)
                    print(f"webhook → Slack post: n=200 p50 {p50:.1f} ms, p99 {p99:.1f} ms")
                    rows.append(row("alert webhook to Slack post p50", p50, None, "ms", "", None))
                    rows.append(row("alert webhook to Slack post p99", p99, None, "ms", "", None))
                if args.storm:
                    lost, still_firing = await storm(url, emulator, client)
                    rows.append(row("alert storm: alerts lost of 10,000", lost, None, "alerts", "0", lost == 0))
                    rows.append(
                        row(
                            "alert storm: still firing after resolve",
                            still_firing,
                            None,
                            "alerts",
                            "0",
                            not still_firing,
                        )
                    )
    finally:
        await runner.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    asyncio.run(main())
