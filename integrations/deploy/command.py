"""Deploys by running a local command, e.g. `./scripts/deploy.sh {service} {version} {environment} {weight}`.

The configured argv is rendered element by element and started with `create_subprocess_exec`: never a shell, so
a version like `; rm -rf /` arrives as one literal argument. The step's values are also passed as environment
variables (SERVICE, VERSION, ENVIRONMENT, WEIGHT, DEPLOY_ID, PREVIOUS_VERSION, ROLLBACK, REQUESTED_BY). Output (stdout and stderr
together) streams to Slack line by line, rate-limited and batched; the exit code decides the outcome. The
command runs in its own session, so a timeout or a cancelled deploy kills everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Literal

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
from integrations.types import Duration, StrictModel

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
        self._running: set[asyncio.subprocess.Process] = set()

    async def apply(self, step: DeployStep, emit: Emit) -> StepResult:
        """Runs the command for `step`; ok iff it exits 0 within the timeout."""
        settings = self._settings
        argv = [render_template(element, step) for element in settings.argv]
        env = {**self._environ, **step_environment(step),
               **{name: render_template(value, step) for name, value in settings.env.items()}}
        if settings.cwd is not None and not os.path.isdir(settings.cwd):
            return StepResult(ok=False, summary=f"working directory not found: {settings.cwd}")
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env=env, cwd=settings.cwd, start_new_session=True,
            )
        except FileNotFoundError:
            return StepResult(ok=False, summary=f"command not found: {argv[0]}")
        except PermissionError:
            return StepResult(ok=False, summary=f"command not executable: {argv[0]}")
        except OSError as error:
            return StepResult(ok=False, summary=f"could not start {argv[0]}: {error.strerror or type(error).__name__}")

        self._running.add(proc)
        out = ThrottledEmit(emit, per_second=settings.output_per_second)
        tail: list[str] = []
        pump = asyncio.create_task(self._pump(proc, out, tail), name=f"deploy-output-{step.deploy_id}")
        started = time.monotonic()
        try:
            returncode = await _wait_exit(proc, settings.timeout.total_seconds())
            timed_out = returncode is None
            if timed_out:
                await self._kill_group(proc, grace=settings.kill_grace.total_seconds())
            await _finish_output(proc, pump, out)
        except asyncio.CancelledError:
            # The deploy was aborted or the bot is stopping: nothing this step started may outlive it.
            await asyncio.shield(self._abort(proc, pump, out))
            raise
        finally:
            self._running.discard(proc)
        await out.aclose()

        elapsed = format_duration(timedelta(seconds=round(time.monotonic() - started)))
        if timed_out:
            return StepResult(ok=False, summary=f"timed out after {format_duration(settings.timeout)}")
        assert proc.returncode is not None
        last = f": {clip(tail[-1], 200)}" if tail else ""
        if proc.returncode == 0:
            return StepResult(ok=True, summary=f"command succeeded in {elapsed}")
        if proc.returncode < 0:
            try:
                name = signal.Signals(-proc.returncode).name
            except ValueError:
                name = f"signal {-proc.returncode}"
            return StepResult(ok=False, summary=f"command killed by {name} after {elapsed}{last}")
        return StepResult(ok=False, summary=f"command failed with exit code {proc.returncode}{last}")

    async def resume(self, step: DeployStep, external_id: str, emit: Emit) -> StepResult | None:
        """A command cannot be followed after a restart: None."""
        return None

    async def aclose(self) -> None:
        """Kills any command still running (with the grace period)."""
        procs = list(self._running)
        await asyncio.gather(*(self._kill_group(proc, grace=self._settings.kill_grace.total_seconds())
                               for proc in procs))

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

    async def _kill_group(self, proc: asyncio.subprocess.Process, *, grace: float) -> None:
        """SIGTERM to the command's whole process group, SIGKILL to what is left after `grace` seconds."""
        _signal_group(proc, signal.SIGTERM)
        await _wait_exit(proc, grace)
        _signal_group(proc, signal.SIGKILL)  # whatever is left of the group, the command itself or not
        await _wait_exit(proc, grace + 5)

    async def _abort(self, proc: asyncio.subprocess.Process, pump: asyncio.Task[None], out: ThrottledEmit) -> None:
        if proc.returncode is None:
            await self._kill_group(proc, grace=self._settings.kill_grace.total_seconds())
        else:
            _signal_group(proc, signal.SIGKILL)
        await _finish_output(proc, pump, out)
        await out.cancel()


def _signal_group(proc: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    # start_new_session made the command the leader of its own group, whose id is its pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


async def _wait_exit(proc: asyncio.subprocess.Process, timeout: float) -> int | None:
    """The exit code, or None if the command is still running after `timeout` seconds.

    `Process.wait()` also waits for the output pipe to close, which leftover background processes can hold
    open; the return code is known as soon as the command itself exits, so poll that as well."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
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
    """Reads what the command wrote before exiting; processes it left behind holding the output pipe are killed
    (a step is over when its command exits), and as a last resort the pipe is closed."""
    done, _ = await asyncio.wait([pump], timeout=_DRAIN_SECONDS)
    if not done:
        _signal_group(proc, signal.SIGKILL)
        out.add("(killed processes the command left running with its output open)")
        done, _ = await asyncio.wait([pump], timeout=_DRAIN_SECONDS)
    if not done:
        pump.cancel()
        transport = getattr(proc, "_transport", None)  # a leftover in another session still holds the pipe
        if transport is not None:
            transport.close()
    with contextlib.suppress(asyncio.CancelledError):
        await pump
    await _wait_exit(proc, 1.0)


def build(settings: CommandDeployerSettings, *, environ: Mapping[str, str], http: aiohttp.ClientSession) -> CommandDeployer:
    """The command deployer for `settings` (it needs no HTTP session)."""
    return CommandDeployer(settings, environ=environ)
