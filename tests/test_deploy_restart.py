"""Restart safety: `chatops serve` killed mid-deploy and started again leaves no stuck lock, and says so; also when
the command's supervisor is stuck and its command a zombie nobody reaps."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bot.deploys.model import DeployRecord, DeployState
from bot.deploys.store import DeployStore
from bot.emulator import SlackEmulator
from bot.platform.embedded_redis import free_port
from bot.platform.keys import Keys
from bot.platform.metrics import Metrics
from bot.platform.store import Store
from integrations.deploy.supervise import group_alive
from tests.conftest import fake_deploy_argv, serve_environment, wait_ready
from tests.deploy_messages import request_deploy, shown_message
from tests.waiting import eventually


def _config(tmp_path: Path) -> Path:
    argv = fake_deploy_argv()
    path = tmp_path / "chatops.yaml"
    path.write_text(f"""
roles: {{admins: [U0DEMO], deployers: [U0ALICE]}}
deploys: {{lock_ttl: 3s}}
services:
  web:
    channel: "#deploys"
    environments:
      staging:
        deployer: {{kind: command, argv: {argv}, kill_grace: 1s, \
                    env: {{DEPLOY_LOG: "{tmp_path / "deploy.log"}", STATE_DIR: "{tmp_path}"}}}}
""")
    return path


async def _serve(emulator: SlackEmulator, redis_url: str, config: Path) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "serve",
        env=serve_environment(emulator, redis_url, config, port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await wait_ready(f"http://127.0.0.1:{port}")
    emulator.app_url = f"http://127.0.0.1:{port}/slack/events"
    return process, port


async def _slow_deploy_running(emulator: SlackEmulator, deploys: DeployStore, tmp_path: Path) -> DeployRecord:
    """Starts `/deploy web slow to staging`; returns its record once its command's process group is recorded."""
    deploy_id = await request_deploy(emulator, "web slow to staging")

    async def running() -> DeployRecord | None:
        # Its command's process group recorded, so the restarted bot can stop it (test_deploy_kill.py).
        record = await deploys.get(deploy_id)
        started = record and record.state == DeployState.RUNNING and (tmp_path / "slow.pid").exists()
        return record if started and record and record.processes and record.processes.pgid else None

    record = await eventually(running, f"deploy {deploy_id} to be running its command")
    assert await deploys.lock_holder("web", "staging") is not None
    return record


async def test_killed_mid_deploy_then_restarted_leaves_no_stuck_lock(
    emulator: SlackEmulator, redis_url: str, tmp_path: Path
) -> None:
    config = _config(tmp_path)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    deploys = DeployStore(Store(client, Keys("chatops"), Metrics()))
    first, _ = await _serve(emulator, redis_url, config)
    second = None
    try:
        deploy_id = (await _slow_deploy_running(emulator, deploys, tmp_path)).id
        first.kill()
        await first.wait()
        second, _ = await _serve(emulator, redis_url, config)

        async def interrupted_and_unlocked() -> DeployRecord | None:
            record = await deploys.get(deploy_id)
            unlocked = await deploys.lock_holder("web", "staging") is None
            return record if record and record.state == DeployState.INTERRUPTED and unlocked else None

        record = await eventually(
            interrupted_and_unlocked, f"the restarted bot to mark deploy {deploy_id} interrupted and free its lock"
        )
        assert record.state == DeployState.INTERRUPTED
        assert "outcome is unknown" in record.detail
        assert await deploys.lock_holder("web", "staging") is None
        message = await shown_message(emulator, record)
        assert "Interrupted" in str(message["blocks"])
        again = await emulator.send_command(
            command="/deploy", text="web v2 to staging", user_id="U0ALICE", channel_id="C0GENERAL"
        )
        assert again.json is not None and "starting now" in again.json["text"]
    finally:
        pid_file = tmp_path / "slow.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
        for process in (first, second):
            if process is not None and process.returncode is None:
                process.terminate()
                await process.wait()
        await client.aclose()


@pytest.mark.timeout(180)  # past the wait's 60 s, so a failure names what was awaited
async def test_a_stuck_supervisor_and_its_zombie_command_do_not_keep_the_lock(
    emulator: SlackEmulator, redis_url: str, tmp_path: Path
) -> None:
    """The supervisor stopped (SIGSTOP: as stuck as the one CI once found deadlocked in its signal handler), then the
    bot killed. The restarted bot stops the command, which stays a zombie its stuck parent never reaps, so the
    command's group never looks gone. Before, recovery then waited for the step's 10-minute timeout holding the lock;
    now it stops the deploy's supervisor too, init reaps both, and the lock is free in seconds."""
    config = _config(tmp_path)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    deploys = DeployStore(Store(client, Keys("chatops"), Metrics()))
    first, _ = await _serve(emulator, redis_url, config)
    second = None
    supervisor = None
    try:
        record = await _slow_deploy_running(emulator, deploys, tmp_path)
        assert record.processes is not None
        supervisor = record.processes.pid
        assert supervisor is not None
        os.kill(supervisor, signal.SIGSTOP)
        first.kill()
        await first.wait()
        second, _ = await _serve(emulator, redis_url, config)

        async def interrupted_and_unlocked() -> DeployRecord | None:
            now = await deploys.get(record.id)
            unlocked = await deploys.lock_holder("web", "staging") is None
            return now if now and now.state == DeployState.INTERRUPTED and unlocked else None

        done = await eventually(interrupted_and_unlocked, f"deploy {record.id} interrupted and its lock free")
        assert "its supervisor were stopped" in done.detail, done.detail
        assert not group_alive(record.processes.pgid or 0), "the command's group is still there"
    finally:
        if supervisor is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(supervisor, signal.SIGKILL)
        for process in (first, second):
            if process is not None and process.returncode is None:
                process.terminate()
                await process.wait()
        await client.aclose()
