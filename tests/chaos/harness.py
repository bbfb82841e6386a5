"""The chaos harness of issue 12 ("Accepted means delivered"): one Redis (append-only, restartable on its port),
the Slack emulator with its fault plan, N `chatops serve` replicas as subprocesses on one configuration with the
generic alert source, a storm driver that sends distinct alerts across the replicas and records which were accepted
(2xx), the disruptions a scenario injects while the storm runs, and the judgement made from what reached the
emulator. Nothing here knows the bot's internals: it sees HTTP answers, Slack messages and Web API calls, as an
outside observer would."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import aiohttp

from bot.emulator import SlackEmulator, Workspace
from bot.platform.embedded_redis import find_redis_server, free_port
from integrations.alerts.generic import signed_headers
from tests.conftest import BOT_TOKEN, serve_environment, start_site, wait_ready
from tests.redis_servers import SentinelDeployment
from tests.waiting import eventually, eventually_blocking

SECRET_ENV = "CHAOS_ALERTS_SECRET"
"""The environment variable the replicas read the generic source's HMAC secret from."""

SLACK_API_TIMEOUT = 2.0
"""The replicas' Slack API timeout (SLACK_API_TIMEOUT, seconds); `timeout` faults hold a request longer."""

TIMEOUT_HOLD = SLACK_API_TIMEOUT + 3
"""How long a `timeout` fault holds a Web API call. Until the bot reads SLACK_API_TIMEOUT (its Slack client waits
30 s today), a held call gets an empty 504 after this long rather than timing out: a failure with nothing applied."""

ALERTS_CHANNEL = "#alerts"
CRITICAL_CHANNEL = "#incidents"
STEP1_USER = "U0ALICE"
STEP2_USER = "U0CAROL"
STEP2_AFTER = "20s"

CONFIG = """\
roles: {{admins: [U0DEMO]}}
alerts:
  default_channel: "{alerts}"
  group_by: []
  group_wait: {group_wait}
  sources:
    generic: {{hmac_secret_env: {secret_env}}}
  routes:
    - {{match: {{severity: critical}}, channel: "{critical}", escalation: chaos}}
oncall:
  rotations:
    primary:   {{members: [{step1}], shift: 1d, handoff: "09:00", timezone: UTC, start: 2025-01-06}}
    secondary: {{members: [{step2}], shift: 1d, handoff: "09:00", timezone: UTC, start: 2025-01-06}}
  escalation_policies:
    chaos:
      steps:
        - {{notify: primary, after: 0m}}
        - {{notify: secondary, after: {step2_after}}}
scheduler: {{tick: 500ms, lease: 2s}}
"""


# On Sentinel, every write an answer depends on waits until a replica has it, so a failover loses nothing acknowledged.
REPLICATED = "redis: {min_replicas_acked: 1, wait_timeout: 500ms}\n"


def config_text(group_wait: str, *, replicated: bool = False) -> str:
    """The one configuration every replica runs: no group_by (one message per alert), criticals page by DM."""
    text = CONFIG.format(
        alerts=ALERTS_CHANNEL,
        critical=CRITICAL_CHANNEL,
        group_wait=group_wait,
        secret_env=SECRET_ENV,
        step1=STEP1_USER,
        step2=STEP2_USER,
        step2_after=STEP2_AFTER,
    )
    return text + (REPLICATED if replicated else "")


# -- Redis --------------------------------------------------------------------------------------------------------


class RedisUnderTest(Protocol):
    """What the harness needs of the Redis the replicas use (a Sentinel set-up can stand in for the one server)."""

    def environment(self) -> dict[str, str]:
        """The variables that point a replica at this Redis."""
        ...

    async def start(self) -> None:
        """Starts it (again) and waits until it answers."""
        ...

    async def stop(self) -> None:
        """Stops it."""
        ...


@dataclass
class ChaosRedis:
    """A redis-server on a port it keeps across restarts, append-only (fsync always) so a restart keeps every
    acknowledged write; `wipe()` throws its data away for the "Redis back empty" scenario."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The redis:// URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def environment(self) -> dict[str, str]:
        """REDIS_URL for the replicas."""
        return {"REDIS_URL": self.url}

    async def start(self) -> None:
        """Starts the server on its port with its data and waits until it answers PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            find_redis_server(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--protected-mode",
            "yes",
            "--logfile",
            str(self.data_dir / "redis.log"),
        ]
        for _ in range(50):  # the port may still be held for a moment after a stop
            # A plain Popen, as the rest of the harness uses (poll, signals, wait): spawning returns at once.
            self.process = subprocess.Popen(  # noqa: ASYNC220
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
            )
            if await asyncio.to_thread(self._wait_ready):
                return
            self._end(signal.SIGKILL)
            await asyncio.sleep(0.2)  # pacing between start attempts while the old port is released, not a wait
        raise AssertionError(f"redis-server did not start on port {self.port}; see {self.data_dir / 'redis.log'}")

    def _wait_ready(self) -> bool:
        """Whether the server came up answering PING (False: it exited, as on a port still held, or never answered)."""
        try:
            eventually_blocking(self._exited_or_ready, f"redis-server on port {self.port} to answer PING or exit")
        except AssertionError:
            return False
        return self.process is not None and self.process.poll() is None

    def _exited_or_ready(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            return True
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    async def stop(self) -> None:
        """Stops the server cleanly (SIGTERM: the append-only file is complete)."""
        await asyncio.to_thread(self._end, signal.SIGTERM)

    async def wipe(self) -> None:
        """Deletes the stopped server's data files, so it starts empty."""
        for path in self.data_dir.iterdir():
            if path.name != "redis.log":
                shutil.rmtree(path) if path.is_dir() else path.unlink()

    def _end(self, how: signal.Signals) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(how)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@dataclass
class SentinelRedis:
    """A primary, two replicas and three Sentinels (tests/redis_servers.py); the replicas reach it through the
    Sentinels, and `fail_primary()` kills the primary -9 and waits for the promotion."""

    root: Path
    deployment: SentinelDeployment | None = None

    @property
    def url(self) -> str:
        """The redis+sentinel:// URL of the deployment."""
        assert self.deployment is not None
        return self.deployment.url

    def environment(self) -> dict[str, str]:
        """REDIS_URL for the replicas."""
        return {"REDIS_URL": self.url}

    async def start(self) -> None:
        """Starts the deployment and waits until the Sentinels agree on it."""
        self.deployment = await asyncio.to_thread(SentinelDeployment(self.root, replicas=2).start)

    async def stop(self) -> None:
        """Stops every process of the deployment."""
        if self.deployment is not None:
            await asyncio.to_thread(self.deployment.stop)

    async def fail_primary(self) -> None:
        """kill -9 of the primary, then waits until a replica is promoted."""
        assert self.deployment is not None
        await asyncio.to_thread(self.deployment.fail_primary)


# -- replicas -----------------------------------------------------------------------------------------------------


@dataclass
class Replica:
    """One `chatops serve` subprocess on its own port (kept across restarts), its stderr in a log file."""

    index: int
    port: int
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    starts: int = 0
    kills: int = 0

    @property
    def origin(self) -> str:
        """http://127.0.0.1:<port>."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self, env_for: Callable[[Replica], dict[str, str]]) -> None:
        """Starts the process (with the environment `env_for` gives it) and waits until /readyz answers 200. On its
        first start a replica whose port was taken meanwhile (by a concurrent run) moves to another free port."""
        first = self.starts == 0
        for attempt in range(3):
            await self._spawn(env_for(self))
            assert self.process is not None
            ready = asyncio.create_task(wait_ready(self.origin, deadline=240))  # minutes on a loaded machine
            exited = asyncio.create_task(self.process.wait())
            await asyncio.wait({ready, exited}, return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                exited.cancel()
                await ready  # ready, or its AssertionError naming the last answer
                return
            ready.cancel()
            await asyncio.gather(ready, return_exceptions=True)
            log = self.log_path.read_text(errors="replace")
            if not first or "address already in use" not in log.rsplit("--- start", 1)[-1] or attempt == 2:
                raise AssertionError(
                    f"replica {self.index} exited with status {self.process.returncode} on start; see {self.log_path}"
                )
            self.port = free_port()

    async def _spawn(self, env: dict[str, str]) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"\n--- start {self.starts + 1} at {time.strftime('%H:%M:%S')} ---\n".encode())
            log.flush()
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "serve",
                env=env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        self.starts += 1

    async def kill(self) -> None:
        """kill -9, as a crash or the OOM killer would."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
            self.kills += 1

    async def stop(self) -> None:
        """SIGTERM and wait (SIGKILL after 20 s)."""
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), 20)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

    @property
    def died(self) -> bool:
        """Whether the process ended without the harness ending it."""
        return self.process is not None and self.process.returncode is not None


@dataclass
class Cluster:
    """Redis, the emulator and the replicas of one scenario run."""

    root: Path
    replicas_wanted: int
    group_wait: str
    sentinel: bool = False
    redis: ChaosRedis | SentinelRedis = field(init=False)
    emulator: SlackEmulator = field(init=False)
    replicas: list[Replica] = field(default_factory=list)
    secret: str = field(default_factory=lambda: secrets.token_hex(16))
    _runner: object = None

    async def __aenter__(self) -> Cluster:
        self.redis = SentinelRedis(self.root / "sentinel") if self.sentinel else ChaosRedis(self.root / "redis")
        await self.redis.start()
        self.emulator = SlackEmulator(
            signing_secret=secrets.token_hex(16), bot_token=BOT_TOKEN, workspace=Workspace.demo()
        )
        self._runner, origin = await start_site(self.emulator.make_app(page=False))
        self.emulator.origin = origin
        (self.root / "chatops.yaml").write_text(config_text(self.group_wait, replicated=self.sentinel))
        self.replicas = [Replica(i, free_port(), self.root / f"replica-{i}.log") for i in range(self.replicas_wanted)]
        await asyncio.gather(*(replica.start(self.env) for replica in self.replicas))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.emulator.faults.clear()
        await asyncio.gather(*(replica.stop() for replica in self.replicas), return_exceptions=True)
        await self.redis.stop()
        if self._runner is not None:
            await self._runner.cleanup()

    def env(self, replica: Replica) -> dict[str, str]:
        """A replica's environment: the tests' serve environment, this Redis, the HMAC secret, a short timeout."""
        env = serve_environment(self.emulator, self.redis.url, self.root / "chatops.yaml", replica.port)
        return (
            env
            | self.redis.environment()
            | {
                SECRET_ENV: self.secret,
                "SLACK_API_TIMEOUT": str(SLACK_API_TIMEOUT),
                "LOG_FORMAT": "console",
            }
        )

    async def restart(self, replica: Replica) -> None:
        """Starts a replica again on its port."""
        await replica.start(self.env)


# -- the storm ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StormAlert:
    """One distinct alert of the storm."""

    title: str
    critical: bool

    @property
    def channel(self) -> str:
        """Where its message belongs."""
        return CRITICAL_CHANNEL if self.critical else ALERTS_CHANNEL

    def body(self) -> dict[str, object]:
        """The generic webhook's JSON for it."""
        return {
            "title": self.title,
            "dedup_key": self.title,
            "severity": "critical" if self.critical else "warning",
            "service": "chaos",
            "summary": f"chaos storm alert {self.title}",
        }


@dataclass
class Batch:
    """Alerts sent in one request, retried until accepted; `sent_at` is when the accepted attempt was sent."""

    number: int
    alerts: tuple[StormAlert, ...]
    accepted: bool = False
    attempts: int = 0
    sent_at: float | None = None
    answers: Counter[str] = field(default_factory=Counter)


@dataclass
class Storm:
    """Sends `count` distinct alerts in batches, paced over `seconds`, across the replicas round-robin with
    `clients` concurrent senders; a batch is retried (next replica) on non-2xx or a connection error, as
    Alertmanager does, until `give_up_after` seconds from the start."""

    run: str
    count: int
    batch_size: int
    seconds: float
    clients: int = 16
    critical_every: int = 10
    give_up_after: float = 300.0
    batches: list[Batch] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0

    def __post_init__(self) -> None:
        alerts = [StormAlert(f"chaos-{self.run}-{n}", critical=n % self.critical_every == 0) for n in range(self.count)]
        self.batches = [
            Batch(i, tuple(alerts[at : at + self.batch_size]))
            for i, at in enumerate(range(0, len(alerts), self.batch_size))
        ]

    @property
    def progress(self) -> float:
        """The share of batches accepted so far."""
        return sum(b.accepted for b in self.batches) / max(1, len(self.batches))

    async def progressed(self, share: float) -> None:
        """Returns once `share` of the batches are accepted, or the storm ended."""
        # Not the default deadline: the storm itself gives up `give_up_after` seconds from its start, so only past
        # that (and its last requests' 30 s timeout) is a wait for it over-long.
        await eventually(
            lambda: self.progress >= share or self.finished,
            f"{share:.0%} of the storm's batches to be accepted, or the storm to end",
            deadline=self.give_up_after + 60,
        )

    async def run_against(self, cluster: Cluster) -> None:
        """Sends every batch; returns when each is accepted or given up."""
        self.started = time.monotonic()
        queue: asyncio.Queue[Batch] = asyncio.Queue()
        for batch in self.batches:
            queue.put_nowait(batch)
        interval = self.seconds / max(1, len(self.batches))
        secret = cluster.secret.encode()
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def sender() -> None:
                while not queue.empty():
                    batch = queue.get_nowait()
                    # Pacing: each batch leaves at its place in the storm (not a wait for an outcome).
                    await asyncio.sleep(max(0.0, self.started + batch.number * interval - time.monotonic()))
                    await self._send(session, cluster, batch, secret)

            try:
                await asyncio.gather(*(sender() for _ in range(self.clients)))
            finally:
                self.finished = time.monotonic()

    async def _send(self, session: aiohttp.ClientSession, cluster: Cluster, batch: Batch, secret: bytes) -> None:
        body = json.dumps({"alerts": [alert.body() for alert in batch.alerts]}).encode()
        for attempt in itertools.count():
            if time.monotonic() - self.started > self.give_up_after:
                return
            replica = cluster.replicas[(batch.number + attempt) % len(cluster.replicas)]
            headers = signed_headers(secret, body, timestamp=int(time.time())) | {"Content-Type": "application/json"}
            sent = time.monotonic()
            batch.attempts += 1
            try:
                async with session.post(f"{replica.origin}/alerts/generic", data=body, headers=headers) as response:
                    await response.read()
                    batch.answers[str(response.status)] += 1
                    if 200 <= response.status < 300:
                        batch.accepted, batch.sent_at = True, sent
                        return
            except (aiohttp.ClientError, TimeoutError) as error:
                batch.answers[type(error).__name__] += 1
            await asyncio.sleep(min(2.0, 0.1 * 2 ** min(attempt, 5)))  # a sender's backoff, as Alertmanager's


# -- disruptions --------------------------------------------------------------------------------------------------


class Disruption(Protocol):
    """Something a scenario does to the cluster while the storm runs; leaves the cluster whole when it returns."""

    name: str
    kills_replicas: bool

    async def run(self, cluster: Cluster, storm: Storm, log: DisruptionLog) -> None:
        """Injects the fault once the storm is under way, then undoes it."""
        ...


@dataclass
class DisruptionLog:
    """When disruptions happened (monotonic seconds), for the judgement and the report."""

    events: list[tuple[float, str]] = field(default_factory=list)
    redis_wiped_at: float | None = None  # when the empty Redis was up again: batches sent later must be delivered
    replica_deaths: int = 0  # replicas found dead that the harness had not killed

    def note(self, what: str) -> None:
        """Records an event now."""
        self.events.append((time.monotonic(), what))


@dataclass(frozen=True)
class KillReplica:
    """kill -9 of a replica at `at` of the storm; started again `down_for` of the storm later."""

    index: int = 0
    at: float = 0.25
    down_for: float = 0.25
    name: str = "kill -9 replica"
    kills_replicas: bool = True

    async def run(self, cluster: Cluster, storm: Storm, log: DisruptionLog) -> None:
        await storm.progressed(self.at)
        replica = cluster.replicas[self.index % len(cluster.replicas)]
        await replica.kill()
        log.note(f"killed replica {replica.index}")
        await storm.progressed(self.at + self.down_for)
        await cluster.restart(replica)
        log.note(f"replica {replica.index} ready again")


@dataclass(frozen=True)
class RestartRedis:
    """Redis stopped at `at` of the storm and started again on its port `down_seconds` later, with its data, or
    empty with `wipe` (then alerts accepted before cannot be delivered by anyone: only those sent after count)."""

    wipe: bool = False
    at: float = 0.35
    down_seconds: float = 2.0
    name: str = "Redis restart"
    kills_replicas: bool = False

    async def run(self, cluster: Cluster, storm: Storm, log: DisruptionLog) -> None:
        await storm.progressed(self.at)
        await cluster.redis.stop()
        log.note("Redis stopped")
        if self.wipe:
            await cluster.redis.wipe()
        await asyncio.sleep(self.down_seconds)  # downtime while the storm goes on: not a wait for an outcome
        await cluster.redis.start()
        if self.wipe:
            log.redis_wiped_at = time.monotonic()
        log.note("Redis started again" + (" empty" if self.wipe else " with its data"))


@dataclass(frozen=True)
class FailoverPrimary:
    """On the Sentinel set-up: kill -9 of the Redis primary at `at` of the storm; the Sentinels promote a replica
    and the replicas follow. With `min_replicas_acked: 1`, nothing answered 2xx before the kill is lost."""

    at: float = 0.35
    name: str = "Sentinel failover"
    kills_replicas: bool = False

    async def run(self, cluster: Cluster, storm: Storm, log: DisruptionLog) -> None:
        await storm.progressed(self.at)
        assert isinstance(cluster.redis, SentinelRedis), "a failover needs the Sentinel set-up"
        log.note("killed the Redis primary (kill -9)")
        await cluster.redis.fail_primary()
        log.note("the Sentinels promoted a replica")


@dataclass(frozen=True)
class SlackFault:
    """The emulator fails Web API calls in `mode` (bot/emulator/faults.py) for a window of `seconds`, from `at`
    of the storm, for `fraction` of the calls."""

    mode: str
    at: float = 0.2
    seconds: float = 4.0
    fraction: float = 0.5
    methods: tuple[str, ...] | None = None
    name: str = ""
    kills_replicas: bool = False

    async def run(self, cluster: Cluster, storm: Storm, log: DisruptionLog) -> None:
        await storm.progressed(self.at)
        cluster.emulator.faults.add(
            self.mode,
            methods=self.methods,
            seconds=self.seconds,
            fraction=self.fraction,
            retry_after=1,
            hold=TIMEOUT_HOLD,
        )
        log.note(f"Slack {self.mode} for {self.seconds:g}s ({self.fraction:.0%} of calls)")


# -- scenarios ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One run: a fresh cluster, a storm, the disruptions injected during it."""

    name: str
    disruptions: tuple[Disruption, ...]
    group_wait: str = "0s"
    sentinel: bool = False  # Redis behind Sentinels (a primary, two replicas) instead of one server

    @property
    def kills_replicas(self) -> bool:
        """Whether a replica is killed (pages may then repeat: a page is sent at least once)."""
        return any(d.kills_replicas for d in self.disruptions)


SLACK_MODES = ("429", "500", "html502", "timeout", "applied_then_500")


def single_fault_scenarios() -> list[Scenario]:
    """Every fault on its own, each with group_wait 0s and 1s (the direct post and the flusher's post)."""
    faults: list[tuple[str, Disruption]] = [
        ("kill-replica", KillReplica()),
        ("redis-restart", RestartRedis()),
        ("redis-empty", RestartRedis(wipe=True)),
        *((f"slack-{mode}", SlackFault(mode, seconds=8.0)) for mode in SLACK_MODES),
    ]
    singles = [
        Scenario(f"{name}-gw{wait}", (fault,), group_wait=f"{wait}s") for name, fault in faults for wait in (0, 1)
    ]
    failovers = [
        Scenario(f"sentinel-failover-gw{wait}", (FailoverPrimary(),), group_wait=f"{wait}s", sentinel=True)
        for wait in (0, 1)
    ]
    return singles + failovers


def everything(group_wait: str, *, slack_seconds: float = 8.0) -> Scenario:
    """Every fault at once (but the wipe, which loses data by design): a replica killed, Redis restarted, and each
    Slack failure mixed into the same window."""
    slack = tuple(SlackFault(mode, at=0.15, seconds=slack_seconds, fraction=0.15) for mode in SLACK_MODES)
    return Scenario(
        f"everything-gw{group_wait.removesuffix('s')}",
        (KillReplica(at=0.2), RestartRedis(at=0.45), *slack),
        group_wait=group_wait,
    )


def everything_on_sentinel(group_wait: str, *, slack_seconds: float = 8.0) -> Scenario:
    """Every fault at once on the Sentinel set-up: a replica killed, the Redis primary killed (failover), and each
    Slack failure mixed into the same window."""
    slack = tuple(SlackFault(mode, at=0.15, seconds=slack_seconds, fraction=0.15) for mode in SLACK_MODES)
    return Scenario(
        f"everything-sentinel-gw{group_wait.removesuffix('s')}",
        (KillReplica(at=0.2), FailoverPrimary(at=0.45), *slack),
        group_wait=group_wait,
        sentinel=True,
    )


SHORT_SCENARIOS = [
    # Today (before the issue 12 fixes) both fail: see the report in RELIABILITY-chaos.md and the branch's notes.
    Scenario(
        "short-kill-429-500-applied-gw0",
        (
            KillReplica(at=0.2),
            SlackFault("429", at=0.1, seconds=3, fraction=0.3),
            SlackFault("500", at=0.1, seconds=3, fraction=0.3),
            SlackFault("applied_then_500", at=0.5, seconds=3, fraction=0.3),
        ),
        group_wait="0s",
    ),
    Scenario(
        "short-redis-html502-timeout-gw1",
        (
            RestartRedis(at=0.3),
            SlackFault("html502", at=0.1, seconds=3, fraction=0.3),
            SlackFault("timeout", at=0.5, seconds=3, fraction=0.3),
        ),
        group_wait="1s",
    ),
    Scenario(
        "short-sentinel-failover-500-gw0",
        (FailoverPrimary(at=0.3), SlackFault("500", at=0.1, seconds=3, fraction=0.3)),
        group_wait="0s",
        sentinel=True,
    ),
]
"""The run in the normal suite: two replicas, a few faults combined per scenario, both group_wait paths."""

LONG_SCENARIOS = [
    *single_fault_scenarios(),
    everything("0s"),
    everything("1s"),
    everything_on_sentinel("0s"),
    everything_on_sentinel("1s"),
]
"""`CHATOPS_CHAOS=long`: every fault separately, then all together."""


@dataclass(frozen=True)
class Size:
    """How big a run is."""

    alerts: int
    batch_size: int
    storm_seconds: float
    replicas: int
    drain_deadline: float
    quiet_seconds: float


SHORT = Size(alerts=600, batch_size=20, storm_seconds=10, replicas=2, drain_deadline=150, quiet_seconds=70)
LONG = Size(alerts=5000, batch_size=50, storm_seconds=40, replicas=3, drain_deadline=900, quiet_seconds=90)


# -- judgement ----------------------------------------------------------------------------------------------------

TOP_LEVEL = re.compile(r"^(?:CRITICAL|WARNING|INFO|RESOLVED): (chaos-\S+)$")
PAGE = re.compile(r"Paged: \w+ (chaos-\S+) \(")


def top_level_titles(emulator: SlackEmulator, channel: str) -> Counter[str]:
    """How many top-level messages each storm alert has in `channel`."""
    found: Counter[str] = Counter()
    for message in emulator.messages(channel):
        if message.get("thread_ts") not in (None, message.get("ts")) or message.get("ephemeral_to"):
            continue
        match = TOP_LEVEL.match(str(message.get("text", "")))
        if match:
            found[match.group(1)] += 1
    return found


def pages_to(emulator: SlackEmulator, user: str) -> Counter[str]:
    """How many page DMs each storm alert sent to `user`."""
    channel = emulator.workspace.im_with(user, create=False)
    found: Counter[str] = Counter()
    for message in emulator.messages(channel.id) if channel else []:
        match = PAGE.search(str(message.get("text", "")))
        if match:
            found[match.group(1)] += 1
    return found


def thread_reply_keys(emulator: SlackEmulator, channel: str) -> Counter[str]:
    """How many thread replies in `channel` carry each metadata key: the flusher tags every reply it sends with the
    key of its attempt, so a key seen twice is one queued reply sent twice."""
    found: Counter[str] = Counter()
    for message in emulator.messages(channel):
        if message.get("thread_ts") in (None, message.get("ts")):
            continue
        key = ((message.get("metadata") or {}).get("event_payload") or {}).get("key")
        if key:
            found[str(key)] += 1
    return found


@dataclass
class Figures:
    """What a scenario run measured; `problems` is empty when the promises held."""

    scenario: str
    sent: int
    accepted: int
    required: int
    delivered: int
    lost: list[str]
    duplicated: dict[str, int]
    pages_expected: int
    pages_sent: int
    pages_missing: list[str]
    pages_repeated: dict[str, int]
    replies: int
    replies_doubled: dict[str, int]
    drain_seconds: float
    drained: bool
    calls: int
    faulted_calls: Counter[str]
    replica_deaths: int
    events: list[str]

    def line(self) -> str:
        """One line of figures for the report."""
        faulted = ",".join(f"{k}={v}" for k, v in sorted(self.faulted_calls.items())) or "none"
        return (
            f"chaos {self.scenario}: sent={self.sent} accepted={self.accepted} required={self.required} "
            f"delivered={self.delivered} lost={len(self.lost)} duplicated={len(self.duplicated)} "
            f"pages expected={self.pages_expected} sent={self.pages_sent} missing={len(self.pages_missing)} "
            f"repeated={len(self.pages_repeated)} thread_replies={self.replies} "
            f"replies_doubled={len(self.replies_doubled)} drain={self.drain_seconds:.1f}s"
            f"{'' if self.drained else ' (not drained)'} slack_calls={self.calls} faulted={faulted} "
            f"replica_deaths={self.replica_deaths}"
        )

    def problems(self, *, strict_pages: bool) -> list[str]:
        """What broke the promises, with examples."""
        found = []
        if self.lost:
            found.append(f"{len(self.lost)} accepted alerts never posted (e.g. {', '.join(sorted(self.lost)[:5])})")
        if self.duplicated:
            examples = ", ".join(f"{t}×{n}" for t, n in sorted(self.duplicated.items())[:5])
            found.append(f"{len(self.duplicated)} alerts posted more than once ({examples})")
        if self.pages_missing:
            found.append(
                f"{len(self.pages_missing)} unacknowledged critical alerts never paged "
                f"(e.g. {', '.join(sorted(self.pages_missing)[:5])})"
            )
        if self.replies_doubled:
            examples = ", ".join(f"{k}×{n}" for k, n in sorted(self.replies_doubled.items())[:5])
            found.append(f"{len(self.replies_doubled)} thread replies sent more than once ({examples})")
        if strict_pages and self.pages_repeated:
            examples = ", ".join(f"{t}×{n}" for t, n in sorted(self.pages_repeated.items())[:5])
            found.append(
                f"{len(self.pages_repeated)} pages sent more than once per step with no replica killed ({examples})"
            )
        return found


def required_alerts(storm: Storm, log: DisruptionLog) -> list[StormAlert]:
    """The accepted alerts that must reach Slack: all of them, or after a wipe those whose accepted request was
    sent once the empty Redis was up (earlier ones were in the data that was thrown away)."""
    required = []
    for batch in storm.batches:
        if not batch.accepted:
            continue
        if log.redis_wiped_at is not None and (batch.sent_at or 0) < log.redis_wiped_at:
            continue
        required.extend(batch.alerts)
    return required


def judge(
    name: str, cluster: Cluster, storm: Storm, log: DisruptionLog, *, drain_seconds: float, drained: bool
) -> Figures:
    """The figures of a run, from what the emulator holds."""
    emulator = cluster.emulator
    required = required_alerts(storm, log)
    posted = {
        ALERTS_CHANNEL: top_level_titles(emulator, ALERTS_CHANNEL),
        CRITICAL_CHANNEL: top_level_titles(emulator, CRITICAL_CHANNEL),
    }
    everywhere = posted[ALERTS_CHANNEL] + posted[CRITICAL_CHANNEL]
    lost = [a.title for a in required if posted[a.channel][a.title] == 0]
    duplicated = {title: n for title, n in everywhere.items() if n > 1}
    step1, step2 = pages_to(emulator, STEP1_USER), pages_to(emulator, STEP2_USER)
    critical = [a.title for a in required if a.critical]
    repeated = {t: n for t, n in (step1 | step2).items() if step1[t] > 1 or step2[t] > 1}
    accepted = [a for b in storm.batches if b.accepted for a in b.alerts]
    replies = thread_reply_keys(emulator, ALERTS_CHANNEL) + thread_reply_keys(emulator, CRITICAL_CHANNEL)
    return Figures(
        scenario=name,
        sent=storm.count,
        accepted=len(accepted),
        required=len(required),
        delivered=sum(1 for a in required if posted[a.channel][a.title] > 0),
        lost=lost,
        duplicated=duplicated,
        pages_expected=len(critical),
        pages_sent=sum(1 for t in critical if step1[t] > 0),
        pages_missing=[t for t in critical if step1[t] == 0],
        pages_repeated=repeated,
        replies=sum(replies.values()),
        replies_doubled={key: n for key, n in replies.items() if n > 1},
        drain_seconds=drain_seconds,
        drained=drained,
        calls=len(emulator.calls),
        faulted_calls=Counter(c.fault for c in emulator.calls if c.fault),
        replica_deaths=log.replica_deaths + sum(r.died for r in cluster.replicas),
        events=[f"+{at - storm.started:.1f}s {what}" for at, what in log.events],
    )


def delivered_everything(cluster: Cluster, storm: Storm, log: DisruptionLog) -> bool:
    """Whether every required alert is posted and every required critical one paged (step 1)."""
    emulator = cluster.emulator
    required = required_alerts(storm, log)
    posted = {
        ALERTS_CHANNEL: top_level_titles(emulator, ALERTS_CHANNEL),
        CRITICAL_CHANNEL: top_level_titles(emulator, CRITICAL_CHANNEL),
    }
    if any(posted[a.channel][a.title] == 0 for a in required):
        return False
    step1 = pages_to(emulator, STEP1_USER)
    return all(step1[a.title] > 0 for a in required if a.critical)


async def drain(cluster: Cluster, storm: Storm, log: DisruptionLog, size: Size) -> tuple[float, bool]:
    """Waits until everything required is delivered (True), or the bot has made no Slack call for
    `size.quiet_seconds` (longer than any retry or lease of the bot) or the deadline passed (False). Returns the
    seconds it took from the end of the storm and whether it drained."""
    start = time.monotonic()
    quiet_since, seen = start, len(cluster.emulator.calls)

    def outcome() -> tuple[float, bool] | None:
        nonlocal quiet_since, seen
        if delivered_everything(cluster, storm, log):
            return time.monotonic() - start, True
        now = time.monotonic()
        if len(cluster.emulator.calls) != seen:
            quiet_since, seen = now, len(cluster.emulator.calls)
        if now - quiet_since > size.quiet_seconds or now - start > size.drain_deadline:
            return now - start, False  # the judgement reports this as "did not drain", with what is missing
        return None

    # The drain deadline is the scenario's own, checked in outcome(); eventually's is only a backstop beyond it.
    return await eventually(
        outcome,
        "everything required to be delivered, or the bot to fall quiet",
        deadline=size.drain_deadline + 60,
        every=0.5,
    )


async def settle(cluster: Cluster, *, quiet_seconds: float = 4.0, at_most: float = 60.0) -> None:
    """Waits (at most `at_most` seconds) until the bot has made no Slack call for `quiet_seconds`: the thread replies
    the flusher sends after the messages (the pager's notes) are then in Slack, to be judged."""
    start = quiet_since = time.monotonic()
    seen = len(cluster.emulator.calls)

    def quiet() -> bool:
        nonlocal quiet_since, seen
        now = time.monotonic()
        if len(cluster.emulator.calls) != seen:
            quiet_since, seen = now, len(cluster.emulator.calls)
        return now - quiet_since >= quiet_seconds or now - start >= at_most

    await eventually(quiet, "the bot's Slack calls to fall quiet", deadline=at_most + 30, every=0.5)


async def run_scenario(scenario: Scenario, size: Size, root: Path, report: Path | None = None) -> Figures:
    """Runs one scenario end to end and returns its figures (also printed, and appended to `report`)."""
    run = f"{scenario.name}-{secrets.token_hex(2)}"
    storm = Storm(
        run=run,
        count=size.alerts,
        batch_size=size.batch_size,
        seconds=size.storm_seconds,
        give_up_after=size.storm_seconds + 300,
    )
    log = DisruptionLog()
    async with Cluster(root, size.replicas, scenario.group_wait, sentinel=scenario.sentinel) as cluster:
        storming = asyncio.create_task(storm.run_against(cluster))
        chaos = [asyncio.create_task(d.run(cluster, storm, log)) for d in scenario.disruptions]
        try:
            await storming
            await asyncio.gather(*chaos)  # every disruption undone: replicas up, Redis up
        finally:
            for task in chaos:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*chaos, return_exceptions=True)
        cluster.emulator.faults.clear()  # Slack is healthy again; delivery must catch up
        log.note("storm over, Slack healthy")
        for replica in cluster.replicas:  # a replica that died by itself is restarted: the run goes on
            if replica.died:
                log.replica_deaths += 1
                log.note(f"replica {replica.index} had died by itself (see {replica.log_path.name}); restarted")
                await cluster.restart(replica)
        drain_seconds, drained = await drain(cluster, storm, log, size)
        await settle(cluster)
        figures = judge(scenario.name, cluster, storm, log, drain_seconds=drain_seconds, drained=drained)
    text = figures.line() + "\n" + "".join(f"    {event}\n" for event in figures.events)
    print("\n" + text, end="", flush=True)
    if report is not None:
        with report.open("a") as out:
            out.write(text)
    return figures


def selected(scenarios: Sequence[Scenario]) -> list[Scenario]:
    """The scenarios CHATOPS_CHAOS_ONLY (a comma-separated list of name parts) picks, or all."""
    only = [part for part in os.environ.get("CHATOPS_CHAOS_ONLY", "").split(",") if part]
    return [s for s in scenarios if not only or any(part in s.name for part in only)]
