"""Deploys by running a local command, e.g. `./scripts/deploy.sh {service} {version} {environment} {weight}`.

The configured argv is rendered element by element and started with `create_subprocess_exec`: never a shell, so
a version like `; rm -rf /` arrives as one literal argument. The step's values are also passed as environment
variables (SERVICE, VERSION, ENVIRONMENT, WEIGHT, DEPLOY_ID, PREVIOUS_VERSION, ROLLBACK, REQUESTED_BY), and
CHATOPS_DEPLOY_RUN marks every process of the step (see `run_groups`). Output
(stdout and stderr together) streams to Slack line by line, rate-limited and batched; the exit code decides the outcome.

The command runs under `supervise.py` (next to this file), in a process group of its own: a timeout, a cancelled
deploy, or the bot's death (even by SIGKILL) stops the whole group, SIGTERM then SIGKILL after `kill_grace`. So
a step's processes are gone by its start + timeout + kill_grace (`work_limit`), which a replica recovering the
deploy relies on; `apply(..., on_start=...)` reports the processes' ids so a replica on the same host can stop
them itself. What the command leaves running detached (its output redirected, like a service it starts) is its
business and outlives the step, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import aiohttp
from pydantic import Field, field_validator

from integrations.deploy.base import (
    DeployStep,
    Emit,
    PositiveDuration,
    StepResult,
    ThrottledEmit,
    check_template,
    clip,
    format_duration,
    render_template,
    template_values,
)
from integrations.deploy.supervise import group_alive
from integrations.types import Duration, StrictModel

log = logging.getLogger(__name__)

_SUPERVISOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "supervise.py")
_SUPERVISOR_SLACK = timedelta(seconds=5)  # the supervisor's polling, reaping and reporting, on a loaded machine
_READ_CHUNK = 65536
_MAX_LINE_BYTES = 4 * 500  # a line longer than this (no newline yet) is cut; its rest is skipped
_DRAIN_SECONDS = 2.0  # after the command exits, how long its leftovers may keep the output pipe open
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class CommandDeployerSettings(StrictModel):
    """`deployer: {kind: command, argv: [...], timeout: 10m, env: {...}, cwd: ...}`."""

    kind: Literal["command"]
    argv: list[str] = Field(min_length=1, description="Program and arguments; each element may use placeholders.")
    timeout: PositiveDuration = timedelta(minutes=10)
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment; values may use placeholders.")
    cwd: str | None = None
    output_per_second: float = Field(1.0, gt=0, description="At most this many Slack messages of output a second.")
    kill_grace: Duration = Field(timedelta(seconds=5), description="SIGTERM, then SIGKILL after this long.")

    @field_validator("argv")
    @classmethod
    def _argv_templates(cls, argv: list[str]) -> list[str]:
        if not argv[0]:
            raise ValueError("argv[0], the program, must not be empty")
        for element in argv:
            if "\x00" in element:
                raise ValueError("argv elements cannot contain a NUL character")
            check_template(element)
        return argv

    @field_validator("env")
    @classmethod
    def _env_templates(cls, env: dict[str, str]) -> dict[str, str]:
        for name, value in env.items():
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
            if "\x00" in value:
                raise ValueError(f"the value of {name} contains a NUL character")
            check_template(value)
        return env


def step_environment(step: DeployStep) -> dict[str, str]:
    """The variables every command gets: SERVICE, VERSION, ENVIRONMENT, WEIGHT, DEPLOY_ID, PREVIOUS_VERSION,
    plus ROLLBACK ("true"/"false") and REQUESTED_BY (the Slack user id)."""
    env = {name.upper(): value for name, value in template_values(step).items()}
    env["ROLLBACK"] = "true" if step.rollback else "false"
    if "\x00" not in step.requested_by:
        env["REQUESTED_BY"] = step.requested_by
    return env


class CommandDeployer:
    """Runs the configured command once per step; see the module docstring."""

    def __init__(self, settings: CommandDeployerSettings, *, environ: Mapping[str, str]) -> None:
        self._settings = settings
        self._environ = dict(environ)
        self._running: set[_Run] = set()

    @property
    def kill_grace(self) -> timedelta:
        """How long a stopped command gets between SIGTERM and SIGKILL."""
        return self._settings.kill_grace

    @property
    def work_limit(self) -> timedelta:
        """A step's processes are gone by its start plus this long, whatever happens to the bot (the supervisor)."""
        return self._settings.timeout + self._settings.kill_grace + _SUPERVISOR_SLACK

    async def apply(self, step: DeployStep, emit: Emit, *, on_start: OnStart | None = None) -> StepResult:
        """Runs the command for `step`; ok iff it exits 0 within the timeout. `on_start` hears the processes'
        ids as soon as they exist (before the command can do anything worth recovering)."""
        settings = self._settings
        argv = [render_template(element, step) for element in settings.argv]
        env = {
            **self._environ,
            **step_environment(step),
            **{name: render_template(value, step) for name, value in settings.env.items()},
            RUN_MARKER: step.deploy_id,  # last: what a recovering replica looks for (`run_groups`)
        }
        if settings.cwd is not None and not await asyncio.to_thread(os.path.isdir, settings.cwd):
            return StepResult(ok=False, summary=f"working directory not found: {settings.cwd}")
        timeout, grace = settings.timeout.total_seconds(), settings.kill_grace.total_seconds()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",
                _SUPERVISOR,
                "--parent",
                str(os.getpid()),
                "--timeout",
                str(timeout),
                "--grace",
                str(grace),
                "--",
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=settings.cwd,
                start_new_session=True,
            )
        except OSError as error:
            return StepResult(ok=False, summary=f"could not start {argv[0]}: {error.strerror or type(error).__name__}")

        run = _Run(proc)
        self._running.add(run)
        out = ThrottledEmit(emit, per_second=settings.output_per_second)
        tail: list[str] = []
        pump = asyncio.create_task(self._pump(proc, out, tail), name=f"deploy-output-{step.deploy_id}")
        status = asyncio.create_task(run.read_status(), name=f"deploy-status-{step.deploy_id}")
        started = time.monotonic()
        try:
            await run.wait_started()
            if run.started is not None and on_start is not None:
                await on_start(run.started)
            # The supervisor enforces the timeout; this is only a backstop should it hang.
            returncode = await _wait_exit(proc, timeout + grace + _SUPERVISOR_SLACK.total_seconds())
            if returncode is None:
                await self._stop(run)
            await _finish_output(proc, pump, out)
            await asyncio.wait([status], timeout=_DRAIN_SECONDS)
            status.cancel()  # a no-op once the supervisor's stderr closed, as it does when it exits
        except BaseException:
            # Cancelled (the deploy was aborted, lost its lock, or the bot is stopping) or failed while reporting
            # the start: nothing this step started may outlive it.
            await asyncio.shield(self._abort(run, pump, status, out))
            raise
        finally:
            self._running.discard(run)
        await out.aclose()

        elapsed = format_duration(timedelta(seconds=round(time.monotonic() - started)))
        final = run.final
        if run.error is not None:
            kind, detail = run.error.get("kind"), run.error.get("detail") or ""
            if kind == "not_found":
                return StepResult(ok=False, summary=f"command not found: {argv[0]}")
            if kind == "not_executable":
                return StepResult(ok=False, summary=f"command not executable: {argv[0]}")
            return StepResult(ok=False, summary=f"could not start {argv[0]}: {detail or 'unknown error'}")
        if final is None or returncode is None:
            return StepResult(ok=False, summary=f"the command's supervisor stopped unexpectedly after {elapsed}")
        if final.get("timed_out"):
            return StepResult(ok=False, summary=f"timed out after {format_duration(settings.timeout)}")
        code = final.get("returncode")
        if not isinstance(code, int):
            return StepResult(ok=False, summary=f"the command's supervisor stopped unexpectedly after {elapsed}")
        last = f": {clip(tail[-1], 200)}" if tail else ""
        if code == 0:
            return StepResult(ok=True, summary=f"command succeeded in {elapsed}")
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return StepResult(ok=False, summary=f"command killed by {name} after {elapsed}{last}")
        return StepResult(ok=False, summary=f"command failed with exit code {code}{last}")

    async def resume(self, step: DeployStep, external_id: str, emit: Emit) -> StepResult | None:
        """A command cannot be followed after a restart: None."""
        return None

    async def aclose(self) -> None:
        """Stops any command still running (with the grace period)."""
        await asyncio.gather(*(self._stop(run) for run in list(self._running)))

    @staticmethod
    async def _pump(proc: asyncio.subprocess.Process, out: ThrottledEmit, tail: list[str]) -> None:
        """Reads the merged output in chunks (a line without a newline can't grow without bound) into `out`."""
        assert proc.stdout is not None
        pending = b""
        skipping = False  # inside an over-long line whose start was already sent

        def line(raw: bytes) -> None:
            text = _ANSI.sub("", raw.decode("utf-8", "replace")).rstrip("\r")
            text = text.rsplit("\r", 1)[-1]  # progress bars redraw with \r: keep what was last drawn
            if text.strip():
                out.add(text)
                tail[:] = [text]

        while chunk := await proc.stdout.read(_READ_CHUNK):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                if skipping:
                    skipping = False
                    continue
                line(raw)
            if len(pending) > _MAX_LINE_BYTES:
                if not skipping:
                    line(pending[:_MAX_LINE_BYTES])
                skipping = True
                pending = b""
        if pending and not skipping:
            line(pending)

    async def _stop(self, run: _Run) -> None:
        """SIGTERM to the supervisor, which stops the command's group (SIGTERM, SIGKILL after the grace period);
        should the supervisor not be done in time, SIGKILL to both groups."""
        grace = self._settings.kill_grace.total_seconds()
        _signal_group(run.proc.pid, signal.SIGTERM)
        await _wait_exit(run.proc, grace + _SUPERVISOR_SLACK.total_seconds())
        if run.started is not None:
            _signal_group(run.started.pgid, signal.SIGKILL)
        _signal_group(run.proc.pid, signal.SIGKILL)
        await _wait_exit(run.proc, 5.0)

    async def _abort(self, run: _Run, pump: asyncio.Task[None], status: asyncio.Task[None], out: ThrottledEmit) -> None:
        if run.proc.returncode is None:
            await self._stop(run)
        await _finish_output(run.proc, pump, out)
        status.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await status
        await out.cancel()


@dataclass(frozen=True)
class LocalRun:
    """A running step's processes: the supervisor's pid and the command's process group."""

    pid: int
    pgid: int


OnStart = Callable[[LocalRun], Awaitable[None]]
"""Told a step's processes as soon as they exist, e.g. to record them for a replica that may recover the deploy."""


class _Run:
    """One supervised command: the supervisor process and what its status lines said."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.started: LocalRun | None = None
        self.error: dict[str, object] | None = None
        self.final: dict[str, object] | None = None
        self._first = asyncio.Event()

    async def read_status(self) -> None:
        """Reads the supervisor's JSON status lines until it exits; anything else there is logged."""
        assert self.proc.stderr is not None
        try:
            while raw := await self.proc.stderr.readline():
                try:
                    event = json.loads(raw)
                except ValueError:
                    event = None
                if not isinstance(event, dict):
                    log.warning("deploy command supervisor: %s", raw.decode("utf-8", "replace").rstrip()[:500])
                    continue
                if event.get("event") == "started" and isinstance(event.get("pgid"), int):
                    self.started = LocalRun(pid=self.proc.pid, pgid=event["pgid"])
                elif event.get("event") == "error":
                    self.error = event
                elif event.get("event") == "exit":
                    self.final = event
                self._first.set()
        finally:
            self._first.set()

    async def wait_started(self) -> None:
        """Returns once the command started, could not start, or the supervisor is gone."""
        await self._first.wait()


@runtime_checkable
class SupervisedDeployer(Protocol):
    """A provider whose steps run as local processes under the supervisor: it says how long they can last and
    reports their ids as they start."""

    @property
    def kill_grace(self) -> timedelta:
        """SIGTERM to SIGKILL."""
        ...

    @property
    def work_limit(self) -> timedelta:
        """A step's processes are gone by its start plus this long."""
        ...

    async def apply(self, step: DeployStep, emit: Emit, *, on_start: OnStart | None = None) -> StepResult:
        """Runs one step, reporting its processes to `on_start`."""
        ...


RUN_MARKER = "CHATOPS_DEPLOY_RUN"


def run_groups(deploy_id: str) -> set[int] | None:
    """The process groups on this host that hold processes of `deploy_id`'s command steps (the supervisor's and the
    command's: both carry RUN_MARKER in their environment, and so does whatever the command starts); None where
    /proc is not there to tell. For a replica recovering a deploy whose process died before it recorded its
    command's group: what to stop, and whether anything is left."""
    marker = f"{RUN_MARKER}={deploy_id}".encode()
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return None
    groups = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                variables = environ.read().split(b"\0")
            if marker in variables:
                groups.add(os.getpgid(pid))
        except (OSError, ProcessLookupError):
            continue  # gone meanwhile, a zombie, or not ours to read
    return groups


def this_host() -> tuple[str, str]:
    """(host name, identity): two processes with the same identity see the same pids (same boot, same pid
    namespace), so one can check and stop the other's process groups."""
    name = socket.gethostname()
    parts = [name]
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    with contextlib.suppress(OSError):
        parts.append(os.readlink("/proc/self/ns/pid"))
    return name, "/".join(parts)


async def stop_group(pgid: int, *, grace: float, gone_within: float = 15.0) -> bool:
    """Stops a process group another (dead) process started: SIGTERM, SIGKILL after `grace`, then waits until no
    process of it is left; False if some still are after `gone_within` more seconds."""
    _signal_group(pgid, signal.SIGTERM)
    await _group_gone(pgid, within=grace)
    _signal_group(pgid, signal.SIGKILL)
    return await _group_gone(pgid, within=gone_within)


async def _group_gone(pgid: int, *, within: float) -> bool:
    """Whether no process of group `pgid` is left, now or within `within` seconds. Polled: the group is not our
    child, so nothing tells us when it ends."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while group_alive(pgid):
        if loop.time() >= end:
            return False
        await asyncio.sleep(0.05)
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _wait_exit(proc: asyncio.subprocess.Process, within: float) -> int | None:
    """The exit code, or None if the command is still running after `within` seconds.

    `Process.wait()` also waits for the output pipe to close, which leftover background processes can hold
    open; the return code is known as soon as the command itself exits, so poll that as well."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    waiter = asyncio.ensure_future(proc.wait())
    try:
        while proc.returncode is None:
            left = end - loop.time()
            if left <= 0:
                return None
            await asyncio.wait([waiter], timeout=min(left, 0.2))
        return proc.returncode
    finally:
        if not waiter.done():
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter


async def _finish_output(proc: asyncio.subprocess.Process, pump: asyncio.Task[None], out: ThrottledEmit) -> None:
    """Reads what the command wrote before its supervisor exited (the supervisor itself deals with leftovers
    holding the command's output); as a last resort the pipe is closed."""
    done, _ = await asyncio.wait([pump], timeout=_DRAIN_SECONDS)
    if not done:
        pump.cancel()
        transport = getattr(proc, "_transport", None)
        if transport is not None:
            transport.close()
    with contextlib.suppress(asyncio.CancelledError):
        await pump
    await _wait_exit(proc, 1.0)


def build(
    settings: CommandDeployerSettings, *, environ: Mapping[str, str], http: aiohttp.ClientSession
) -> CommandDeployer:
    """The command deployer for `settings` (it needs no HTTP session)."""
    return CommandDeployer(settings, environ=environ)
