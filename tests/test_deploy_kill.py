"""A deploy's process killed -9 never leads to two deploy commands for the same service and environment at once:
`chatops serve` replicas on one Redis, the fake deploy script logging when each run starts and ends, the replica
running a slow deploy killed mid-command, and a run that loses its lock stopped with its command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bot.deploys.model import DeployRecord, DeployState, StepProcesses, recovery_action
from bot.deploys.store import DeployStore, LockInfo
from bot.emulator import SlackEmulator
from bot.platform.embedded_redis import free_port
from bot.platform.keys import Keys
from bot.platform.metrics import Metrics
from bot.platform.store import Store
from tests.conftest import fake_deploy_argv, serve_environment, wait_ready
from tests.deploy_messages import request_deploy
from tests.waiting import eventually

DEADLINE = 90.0  # seconds; generous, the machine is shared and loaded


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "chatops.yaml"
    env = f'{{DEPLOY_LOG: "{tmp_path / "deploy.log"}", STATE_DIR: "{tmp_path}", RUN_LOG: "{tmp_path / "runs.log"}"}}'
    path.write_text(f"""
roles: {{admins: [U0DEMO], deployers: [U0ALICE]}}
deploys: {{lock_ttl: 3s}}
services:
  web:
    channel: "#deploys"
    environments:
      staging:
        deployer: {{kind: command, argv: {fake_deploy_argv()}, kill_grace: 2s, env: {env}}}
""")
    return path


async def _serve(emulator: SlackEmulator, redis_url: str, config: Path) -> tuple[asyncio.subprocess.Process, str]:
    """A `chatops serve` replica, ready; its log in the config's folder as serve-<port>.log (shown on a failure)."""
    port = free_port()
    with (config.parent / f"serve-{port}.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "serve",
            env=serve_environment(emulator, redis_url, config, port) | {"LOG_FORMAT": "console"},
            stdout=log,
            stderr=log,
        )
    await wait_ready(f"http://127.0.0.1:{port}")
    return process, f"http://127.0.0.1:{port}/slack/events"


def _replica_logs(tmp_path: Path) -> str:
    """Every replica's log, each under its name (for a failure's message)."""
    return "\n".join(f"--- {log.name}\n{log.read_text()[-6000:]}" for log in sorted(tmp_path.glob("serve-*.log")))


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie counts as dead: it runs nothing)."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def runs(tmp_path: Path) -> dict[int, dict[str, dict[str, object]]]:
    """The fake script's runs by pid: {"start": {...}, "end": {...}} (no "end": it never ended by itself)."""
    found: dict[int, dict[str, dict[str, object]]] = {}
    log = tmp_path / "runs.log"
    for line in log.read_text().splitlines() if log.exists() else []:
        event = json.loads(line)
        found.setdefault(event["pid"], {})[event["event"]] = event
    return found


async def _request(emulator: SlackEmulator, app_url: str, text: str) -> str:
    emulator.app_url = app_url
    return await request_deploy(emulator, text)


async def _running_slow(deploys: DeployStore, tmp_path: Path, deploy_id: str) -> DeployRecord:
    async def started() -> DeployRecord | None:
        record = await deploys.get(deploy_id)
        ok = record and record.state == DeployState.RUNNING and (tmp_path / "slow.pid").exists()
        return record if ok else None

    return await eventually(started, f"{deploy_id} running its slow command")


@dataclass
class SlowDeploy:
    """A slow deploy running on the first of two replicas, its command's group on the record."""

    deploys: DeployStore
    first: asyncio.subprocess.Process
    second_url: str
    deploy_id: str
    record: DeployRecord
    slow_pid: int


@contextlib.asynccontextmanager
async def _slow_deploy_on_two_replicas(
    emulator: SlackEmulator, redis_url: str, tmp_path: Path
) -> AsyncIterator[SlowDeploy]:
    """Two `chatops serve` replicas, a slow deploy requested through the first and running its command, its process
    group recorded; afterwards the command killed if it still runs, the replicas stopped."""
    config = _config(tmp_path)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    deploys = DeployStore(Store(client, Keys("chatops"), Metrics()))
    replicas: list[asyncio.subprocess.Process] = []
    slow_pid = 0
    try:
        first, first_url = await _serve(emulator, redis_url, config)
        replicas.append(first)
        second, second_url = await _serve(emulator, redis_url, config)
        replicas.append(second)
        deploy_id = await _request(emulator, first_url, "web slow to staging")
        await _running_slow(deploys, tmp_path, deploy_id)
        slow_pid = int((tmp_path / "slow.pid").read_text())
        record = await eventually(
            lambda: _with_processes(deploys, deploy_id), "the command's processes recorded on the deploy"
        )
        assert record.processes is not None and record.processes.pgid == slow_pid
        yield SlowDeploy(deploys, first, second_url, deploy_id, record, slow_pid)
    finally:
        if slow_pid and alive(slow_pid):
            os.kill(slow_pid, signal.SIGKILL)
        for process in replicas:
            if process.returncode is None:
                process.terminate()
                await process.wait()
        await client.aclose()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("also_kill_supervisor", [False, True], ids=["replica", "replica-and-supervisor"])
async def test_a_replica_killed_mid_command_never_lets_two_commands_overlap(
    emulator: SlackEmulator,
    redis_url: str,
    tmp_path: Path,
    also_kill_supervisor: bool,
) -> None:
    async with _slow_deploy_on_two_replicas(emulator, redis_url, tmp_path) as run:
        deploys, deploy_id, slow_pid = run.deploys, run.deploy_id, run.slow_pid
        supervisor = 0
        if also_kill_supervisor:
            # Its supervisor dies too (stopped first, so it cannot act on the bot's death): nothing on the first
            # replica's side stops the command; the second replica must.
            supervisor = run.record.processes.pid if run.record.processes else 0
            assert supervisor
            os.kill(supervisor, signal.SIGSTOP)
        run.first.kill()
        await run.first.wait()
        if supervisor:
            os.kill(supervisor, signal.SIGKILL)

        async def interrupted() -> DeployRecord | None:
            record = await deploys.get(deploy_id)
            return record if record and record.state == DeployState.INTERRUPTED else None

        # The second replica takes over only once the dead one's lease expires: the file's generous deadline.
        try:
            record = await eventually(
                interrupted, f"{deploy_id} recovered as interrupted by the second replica", deadline=DEADLINE
            )
        except AssertionError as error:
            raise AssertionError(f"{error}\n{_replica_logs(tmp_path)}\n{await deploys.get(deploy_id)}") from None
        # The lock was released only now that the first command is gone, so it must be gone already.
        assert not alive(slow_pid), f"the first deploy's command (pid {slow_pid}) still runs after recovery"
        assert "outcome is unknown" in record.detail
        again = await _request(emulator, run.second_url, "web v2 to staging")

        async def finished() -> DeployRecord | None:
            record = await deploys.get(again)
            return record if record and record.terminal else None

        record = await eventually(finished, f"{again} finished")
        assert record.state == DeployState.SUCCEEDED, record.detail

        by_pid = runs(tmp_path)
        slow, v2 = by_pid[slow_pid], next(r for r in by_pid.values() if r["start"]["version"] == "v2")
        assert "end" in slow, "the first command has no end: it was killed -9, or still ran after its deploy ended"
        assert float(slow["end"]["t"]) <= float(v2["start"]["t"]), (
            f"the commands overlapped by {float(slow['end']['t']) - float(v2['start']['t']):.1f}s"
        )
        first_record = await deploys.get(deploy_id)
        assert first_record is not None and first_record.channel is not None
        thread = [
            m["text"] for m in emulator.messages(first_record.channel) if m.get("thread_ts") == first_record.message_ts
        ]
        said = "was stopped" if also_kill_supervisor else "stopped"
        assert any(f"its command (pid {slow_pid})" in text and said in text for text in thread), thread


async def _with_processes(deploys: DeployStore, deploy_id: str) -> DeployRecord | None:
    record = await deploys.get(deploy_id)
    return record if record and record.processes and record.processes.pgid else None


@pytest.mark.timeout(180)
async def test_a_run_that_loses_its_lock_stops_its_command_and_does_not_succeed(
    emulator: SlackEmulator,
    redis_url: str,
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    deploys = DeployStore(Store(client, Keys("chatops"), Metrics()))
    replica = None
    slow_pid = 0
    try:
        replica, url = await _serve(emulator, redis_url, config)
        deploy_id = await _request(emulator, url, "web slow to staging")
        await _running_slow(deploys, tmp_path, deploy_id)
        slow_pid = int((tmp_path / "slow.pid").read_text())
        # Someone else now holds the lock (as after an expiry and another replica's take-over).
        theirs = LockInfo("someone-elses-token", "U0OTHER", "another run", datetime.now(UTC), None, "d-other")
        await client.set(Keys("chatops").deploy("lock", "web", "staging"), theirs.to_json(), px=120_000)

        await eventually(lambda: not alive(slow_pid), f"the command (pid {slow_pid}) stopped")

        async def finished() -> DeployRecord | None:
            record = await deploys.get(deploy_id)
            return record if record and record.terminal else None

        record = await eventually(finished, f"{deploy_id} finished")
        assert record.state == DeployState.INTERRUPTED, record
        assert "lock" in record.detail and "outcome is unknown" in record.detail
        holder = await deploys.lock_holder("web", "staging")
        assert holder is not None and holder.token == "someone-elses-token", "released a lock no longer ours"
        slow = runs(tmp_path)[slow_pid]
        assert slow.get("end", {}).get("how") == "SIGTERM"
    finally:
        if slow_pid and alive(slow_pid):
            os.kill(slow_pid, signal.SIGKILL)
        if replica is not None and replica.returncode is None:
            replica.terminate()
            await replica.wait()
        await client.aclose()


@pytest.mark.timeout(180)
async def test_a_run_whose_lock_cannot_be_renewed_for_a_whole_ttl_stops_its_command(
    emulator: SlackEmulator,
    redis_url: str,
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    deploys = DeployStore(Store(client, Keys("chatops"), Metrics()))
    replica = None
    slow_pid = 0
    try:
        replica, url = await _serve(emulator, redis_url, config)
        deploy_id = await _request(emulator, url, "web slow to staging")
        await _running_slow(deploys, tmp_path, deploy_id)
        slow_pid = int((tmp_path / "slow.pid").read_text())
        # Our own Redis stops taking writes (renewals hang, then time out) for far longer than the 3s TTL.
        await client.execute_command("CLIENT", "PAUSE", "120000", "WRITE")
        try:
            await eventually(
                lambda: not alive(slow_pid),
                f"the command (pid {slow_pid}) stopped while its lock could not be renewed",
                deadline=45,
            )  # well before it would end by itself: it sleeps 60s
        finally:
            await client.execute_command("CLIENT", "UNPAUSE")

        async def finished() -> DeployRecord | None:
            record = await deploys.get(deploy_id)
            return record if record and record.terminal else None

        record = await eventually(finished, f"{deploy_id} finished")
        assert record.state == DeployState.INTERRUPTED, record
        assert "could not be renewed" in record.detail
    finally:
        if slow_pid and alive(slow_pid):
            os.kill(slow_pid, signal.SIGKILL)
        if replica is not None and replica.returncode is None:
            replica.terminate()
            await replica.wait()
        await client.aclose()


@pytest.mark.timeout(300)
async def test_a_replica_killed_before_it_recorded_its_command_group_is_recovered_by_the_marker(
    emulator: SlackEmulator,
    redis_url: str,
    tmp_path: Path,
) -> None:
    """The moment the soak found: the command started, its group not yet on the record, the replica killed (and
    its supervisor with it). The other replica finds the step's processes by CHATOPS_DEPLOY_RUN in their
    environment and stops them, rather than waiting out the step's timeout (minutes)."""
    async with _slow_deploy_on_two_replicas(emulator, redis_url, tmp_path) as run:
        deploys, deploy_id, slow_pid = run.deploys, run.deploy_id, run.slow_pid
        supervisor = run.record.processes.pid if run.record.processes else 0
        assert supervisor
        os.kill(supervisor, signal.SIGSTOP)  # it must not stop the command when the bot dies
        run.first.kill()
        await run.first.wait()
        # As if it died a moment earlier: the group not on the record yet.
        await deploys.update(
            deploy_id,
            lambda r: r.model_copy(update={"processes": r.processes.model_copy(update={"pid": None, "pgid": None})}),
        )
        os.kill(supervisor, signal.SIGKILL)
        assert alive(slow_pid)

        async def interrupted() -> DeployRecord | None:
            record = await deploys.get(deploy_id)
            return record if record and record.state == DeployState.INTERRUPTED else None

        try:  # the step's timeout is the default 10 minutes: only the marker makes this quick
            record = await eventually(interrupted, f"{deploy_id} recovered by the second replica", deadline=DEADLINE)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{_replica_logs(tmp_path)}") from None
        assert not alive(slow_pid), "the command still runs after recovery"
        assert "Nothing its command started was still running" in record.detail
        assert runs(tmp_path)[slow_pid].get("end", {}).get("how") == "SIGTERM"


def test_recovery_waits_for_what_it_cannot_see_and_stops_what_it_can() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    here = StepProcesses(
        host="a",
        host_id="a/boot/ns",
        pid=10,
        pgid=11,
        started_at=now,
        ends_by=now + timedelta(minutes=10),
        kill_grace_seconds=5,
    )
    assert recovery_action(None, host_id="a/boot/ns", now=now) == "interrupt"
    assert recovery_action(here, host_id="a/boot/ns", now=now) == "stop_group"
    assert recovery_action(here, host_id="b/boot/ns", now=now) == "wait"
    assert recovery_action(here.model_copy(update={"pgid": None}), host_id="a/boot/ns", now=now) == "wait"
    assert recovery_action(here, host_id="b/boot/ns", now=now + timedelta(minutes=10)) == "interrupt"
