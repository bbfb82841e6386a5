"""`chatops serve --workers N` as an operator runs it: N worker processes listening on one port, metrics added up
over them, a worker killed with -9 started again with nothing accepted lost, a clean stop, the supervisor's death
taking its workers with it, and clear start-up errors."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from bot.emulator import SlackEmulator
from bot.platform.embedded_redis import free_port
from bot.shell.workers import MAX_RESTART_DELAY_SECONDS, restart_delay
from tests.conftest import serve_environment, wait_ready
from tests.slack_signing import command_body, signed_headers
from tests.waiting import eventually

CONFIG = """
roles: {admins: [U0DEMO]}
alerts:
  default_channel: "#alerts"
  group_by: [alertname]
  group_wait: 0s
  sources: {alertmanager: {token_env: CHATOPS_DEMO_ALERT_TOKEN}}
"""
ALERTS_CHANNEL = "C0ALERTS"


def _children(pid: int) -> set[int]:
    """The live child processes of `pid` (Linux /proc)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(part) for part in text.split()}


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on 127.0.0.1:`port` (state 0A in /proc/net/tcp)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and local == f"0100007F:{port:04X}":
            inodes.add(inode)
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:[") : -1])
    return inodes


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def _start(
    emulator: SlackEmulator, redis_url: str, tmp_path: Path, port: int, args: list[str], env: dict[str, str]
) -> asyncio.subprocess.Process:
    """`chatops serve ARGS` on `port` with CONFIG; its output goes to tmp_path/serve.log (read with `_log`), never
    to a pipe nobody drains."""
    config = tmp_path / "chatops.yaml"
    config.write_text(CONFIG)
    environment = serve_environment(emulator, redis_url, config, port) | {"LOG_LEVEL": "WARNING"} | env
    with (tmp_path / "serve.log").open("wb") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "serve", *args, env=environment, stdout=log, stderr=log
        )


def _log(tmp_path: Path) -> str:
    return (tmp_path / "serve.log").read_text()


@contextlib.asynccontextmanager
async def _serve(
    emulator: SlackEmulator, redis_url: str, tmp_path: Path, *, workers: int
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str, int]]:
    """`chatops serve --workers N`, ready; yields (supervisor process, origin, port). Stopped with SIGTERM after."""
    port = free_port()
    process = await _start(emulator, redis_url, tmp_path, port, ["--workers", str(workers)], {})
    origin = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(origin)
        await eventually(lambda: len(_children(process.pid)) == workers, f"{workers} workers running")
        yield process, origin, port
    finally:
        if process.returncode is None:
            process.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 60)


async def _command(session: aiohttp.ClientSession, origin: str, secret: str) -> int:
    body = command_body("/chatops", "help", user_id="U0DEMO")
    async with session.post(f"{origin}/slack/events", data=body, headers=signed_headers(secret, body)) as response:
        await response.read()
        return response.status


def _alert_body(name: str) -> dict[str, object]:
    return {
        "version": "4",
        "status": "firing",
        "receiver": "chatops",
        "groupLabels": {"alertname": name},
        "commonLabels": {"alertname": name},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager",
        "groupKey": f"{{}}:{{alertname={name!r}}}",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": name, "severity": "warning"},
                "annotations": {"summary": f"{name} is firing"},
                "startsAt": datetime.now(UTC).isoformat(),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": f"fp-{name}",
            }
        ],
    }


async def test_workers_each_listen_on_the_port_and_metrics_add_up_over_them(
    emulator: SlackEmulator, redis_url: str, tmp_path: Path
) -> None:
    async with _serve(emulator, redis_url, tmp_path, workers=2) as (supervisor, origin, port):
        workers = _children(supervisor.pid)
        listening = _listening_inodes(port)
        assert len(listening) == 2, "one listening socket per worker, none held by the supervisor"
        assert all(_socket_inodes(worker) & listening for worker in workers)
        assert not _socket_inodes(supervisor.pid) & listening
        # Every request on its own connection, so the kernel spreads them over both workers.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            statuses = [await _command(session, origin, emulator.signing_secret) for _ in range(30)]
            assert statuses == [200] * 30
            async with session.get(f"{origin}/metrics") as response:
                text = await response.text()
        answered = re.search(r'^chatops_ack_latency_seconds_count\{kind="command"\} (\S+)$', text, re.M)
        assert answered is not None and float(answered.group(1)) == 30, "whichever worker answers counts all"
        live = set(
            re.findall(r'chatops_loop_last_success_timestamp_seconds\{loop="alert-delivery",pid="(\d+)"\}', text)
        )
        assert live == {str(pid) for pid in workers}
    assert f"HTTP on 127.0.0.1:{port}, 2 workers; uvloop" in _log(tmp_path)  # each worker makes its own uvloop


async def test_a_worker_killed_mid_storm_is_started_again_and_every_accepted_alert_is_posted(
    emulator: SlackEmulator, redis_url: str, tmp_path: Path
) -> None:
    accepted: list[str] = []
    async with _serve(emulator, redis_url, tmp_path, workers=2) as (supervisor, origin, _):
        victim = min(_children(supervisor.pid))
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def send(name: str) -> None:
                # As Alertmanager does: a refused or failed request is sent again.
                for _ in range(50):
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.post(
                            f"{origin}/alerts/alertmanager",
                            json=_alert_body(name),
                            headers={"Authorization": "Bearer demo-alert-token"},
                        ) as response:
                            if response.status == 200:
                                accepted.append(name)
                                return
                    await asyncio.sleep(0.1)
                raise AssertionError(f"{name} was never accepted")

            names = [f"Storm{n:03d}" for n in range(120)]
            first, second = names[:60], names[60:]
            await asyncio.gather(*(send(name) for name in first))
            os.kill(victim, signal.SIGKILL)
            await asyncio.gather(*(send(name) for name in second))
        await eventually(
            lambda: len(_children(supervisor.pid)) == 2 and victim not in _children(supervisor.pid),
            "the killed worker replaced by a new one",
        )

        def posted() -> set[str]:
            found = set()
            for message in emulator.messages(ALERTS_CHANNEL):
                found.update(re.findall(r"Storm\d{3}", str(message.get("text", ""))))
            return found

        await eventually(lambda: posted() >= set(accepted), "every accepted alert posted", deadline=120)
        assert sorted(accepted) == sorted(names)
        counts: dict[str, int] = {}
        for message in emulator.messages(ALERTS_CHANNEL):
            for name in set(re.findall(r"Storm\d{3}", str(message.get("text", "")))):
                counts[name] = counts.get(name, 0) + 1
        assert {name for name, n in counts.items() if n > 1} == set(), "no alert posted twice"
    assert f"(pid {victim}) ended (signal 9)" in _log(tmp_path)
    assert supervisor.returncode == 0


async def test_sigterm_stops_every_worker_and_the_supervisor_exits_0(
    emulator: SlackEmulator, redis_url: str, tmp_path: Path
) -> None:
    async with _serve(emulator, redis_url, tmp_path, workers=3) as (supervisor, _, port):
        workers = _children(supervisor.pid)
        supervisor.terminate()
        await asyncio.wait_for(supervisor.wait(), 60)
    assert supervisor.returncode == 0
    assert not any(_alive(pid) for pid in workers)
    with socket.socket() as probe:  # the port is free again
        probe.bind(("127.0.0.1", port))


async def test_workers_stop_when_their_supervisor_is_killed(
    emulator: SlackEmulator, redis_url: str, tmp_path: Path
) -> None:
    async with _serve(emulator, redis_url, tmp_path, workers=2) as (supervisor, _, _):
        workers = _children(supervisor.pid)
        supervisor.kill()
        await supervisor.wait()
        await eventually(lambda: not any(_alive(pid) for pid in workers), "the orphaned workers stopped")


async def test_a_port_in_use_is_a_clear_start_up_error(emulator: SlackEmulator, redis_url: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await _start(emulator, redis_url, tmp_path, port, ["--workers", "2"], {})
        await asyncio.wait_for(process.wait(), 60)
    assert process.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in _log(tmp_path)


@pytest.mark.parametrize(("value", "problem"), [("0", "between 1 and 64"), ("many", "WEB_CONCURRENCY")])
async def test_a_bad_worker_count_is_refused(
    emulator: SlackEmulator, redis_url: str, tmp_path: Path, value: str, problem: str
) -> None:
    args = ["--workers", value] if value.isdigit() else []
    process = await _start(emulator, redis_url, tmp_path, free_port(), args, {"WEB_CONCURRENCY": value})
    await asyncio.wait_for(process.wait(), 60)
    assert process.returncode == 2
    assert problem in _log(tmp_path)


def test_a_worker_that_keeps_dying_is_started_again_ever_more_slowly() -> None:
    assert restart_delay(0) == 0
    delays = [restart_delay(n) for n in range(1, 12)]
    assert delays == sorted(delays) and delays[0] > 0
    assert delays[-1] == MAX_RESTART_DELAY_SECONDS
