"""The deploy-provider seam: what the deploy engine hands a provider (`DeployStep`), what it gets back
(`StepResult`), the `Deployer` Protocol every provider implements, and the small helpers they share.

A provider runs one step of a deploy (one canary weight, or everything at once) to completion and reports
whether it worked. Progress lines go to `emit`, which the engine posts in the deploy's Slack thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Protocol, runtime_checkable
from urllib.parse import quote

from pydantic import AfterValidator

from integrations.types import Duration, format_duration

log = logging.getLogger(__name__)

Emit = Callable[[str], Awaitable[None]]
"""Streams one line (or a batch of lines joined by newlines) of provider output to the deploy's Slack thread."""

MAX_LINE_CHARS = 500
"""Longest line a provider passes to `emit`; longer lines are clipped with an ellipsis."""


@dataclass(frozen=True)
class DeployStep:
    """One step of a deploy as the engine asks a provider to run it.

    `version` is always the version this step puts in place: for a rollback step (`rollback=True`) it is the
    version being returned to, and `previous_version` the one being replaced. So `{version}` in a template
    means "deploy this" in every step, and providers need not swap anything for a rollback."""

    deploy_id: str
    service: str
    environment: str
    version: str
    previous_version: str | None
    weight: int | None  # canary percent; None = everything at once
    rollback: bool
    requested_by: str
    # For a rollback: the provider's id of the run that last put `version` in place, as chatops recorded it
    # (a Vercel deployment id), so a provider that can switch back to a built artifact needs no search.
    target_external_id: str | None = None


@dataclass(frozen=True)
class StepResult:
    """How a step ended: `ok`, a one-line summary for Slack, and the provider's id and link for the run."""

    ok: bool
    summary: str
    external_id: str | None = None
    url: str | None = None
    # The commit the step deployed, when the provider knows it (GitHub Actions' head_sha, a Vercel git
    # deployment's sha), and its GitHub repository "owner/name": chatops measures lead time for changes from it.
    commit_sha: str | None = None
    commit_repo: str | None = None


@runtime_checkable
class Deployer(Protocol):
    """A deploy provider: runs steps, follows runs it started before a restart, and releases what it holds."""

    async def apply(self, step: DeployStep, emit: Emit) -> StepResult:
        """Runs one step to completion, failure or timeout."""
        ...

    async def resume(self, step: DeployStep, external_id: str, emit: Emit) -> StepResult | None:
        """Follows an already-started run to completion after a restart; None when this provider cannot."""
        ...

    async def aclose(self) -> None:
        """Releases clients and background work (never the shared HTTP session, which the caller owns)."""
        ...


OnRun = Callable[[str, str | None], Awaitable[None]]
"""Told a run's external id and link as soon as the provider knows them, before following the run."""


@runtime_checkable
class RunReportingDeployer(Deployer, Protocol):
    """A provider that names its run the moment it starts it, so chatops can record the id before waiting and a
    restarted process can `resume` the run (rather than only learning the id when the step ends)."""

    async def apply_reporting(self, step: DeployStep, emit: Emit, on_run: OnRun) -> StepResult:
        """`apply`, calling `on_run(external_id, url)` once the run exists."""
        ...


@runtime_checkable
class PromotingDeployer(Deployer, Protocol):
    """A provider that builds a step without serving it (a staged deploy) and serves it once the health gate
    has passed: blue-green."""

    def promotes(self, step: DeployStep) -> bool:
        """True when `step` is built staged and needs `promote` after its gate."""
        ...

    async def promote(self, step: DeployStep, built: StepResult, emit: Emit) -> StepResult:
        """Sends traffic to what `apply` built (`built.external_id`)."""
        ...


class DeployError(Exception):
    """A configuration or credentials problem; the message is safe to show users and never holds a secret."""


# -- templates ---------------------------------------------------------------------------------------------

TEMPLATE_FIELDS = ("service", "version", "environment", "weight", "deploy_id", "previous_version")
"""The placeholders every template may use."""

# `{{` and `}}` are literal braces; `{name}` is a placeholder; any other brace is an error. The template is the
# only text ever parsed: values are substituted in one pass and never scanned again.
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def template_fields(template: str, *, extra: tuple[str, ...] = ()) -> list[str]:
    """The placeholders `template` uses; DeployError for an unknown one or a stray brace."""
    allowed = set(TEMPLATE_FIELDS) | set(extra)
    names: list[str] = []
    for match in _TOKEN.finditer(template):
        token = match.group(0)
        if token in ("{{", "}}"):
            continue
        name = match.group(1)
        if name is None:
            raise DeployError(
                f"unbalanced {token!r} in template {template!r} (write {token}{token} for a literal brace)"
            )
        if name not in allowed:
            known = ", ".join("{" + field + "}" for field in (*TEMPLATE_FIELDS, *extra))
            raise DeployError(f"unknown placeholder {{{name}}} in template {template!r}; known: {known}")
        names.append(name)
    return names


def template_values(step: DeployStep) -> dict[str, str]:
    """The values placeholders take for `step` (weight None renders as 100, previous_version None as "")."""
    values = {
        "service": step.service,
        "version": step.version,
        "environment": step.environment,
        "weight": str(100 if step.weight is None else step.weight),
        "deploy_id": step.deploy_id,
        "previous_version": step.previous_version or "",
    }
    for name, value in values.items():
        # A NUL can't be an argv element, an environment value or a header; refuse it by name, not by crash.
        if "\x00" in value:
            raise DeployError(f"{name} contains a NUL character")
    return values


def render_template(
    template: str,
    step: DeployStep,
    *,
    extra: Mapping[str, str] | None = None,
    escape: Callable[[str], str] | None = None,
) -> str:
    """Replaces {service} {version} {environment} {weight} {deploy_id} {previous_version} (and `extra`) in
    `template`; DeployError names an unknown placeholder. Values are substituted, never parsed; `escape`
    (e.g. `url_quote` for URLs) is applied to each value."""
    values = template_values(step)
    if extra:
        values.update(extra)
    if escape is not None:
        values = {name: escape(value) for name, value in values.items()}
    template_fields(template, extra=tuple(extra or ()))  # validate everything before substituting anything

    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        return values[match.group(1)]

    return _TOKEN.sub(substitute, template)


def url_quote(value: str) -> str:
    """Percent-encodes a value for a URL template, so "../x" or "a?b" stays inside its path segment."""
    return quote(value, safe="")


def check_template(template: str, *, extra: tuple[str, ...] = ()) -> str:
    """A pydantic validator body: returns `template` or raises ValueError (so config errors show at load)."""
    try:
        template_fields(template, extra=extra)
    except DeployError as error:
        raise ValueError(str(error)) from None
    return template


# -- small shared helpers ----------------------------------------------------------------------------------

__all__ = [
    "DeployError",
    "DeployStep",
    "Deployer",
    "Emit",
    "OnRun",
    "PositiveDuration",
    "PromotingDeployer",
    "RunReportingDeployer",
    "StepResult",
    "ThrottledEmit",
    "check_template",
    "clip",
    "format_duration",
    "render_template",
    "safe_emit",
    "template_fields",
    "template_values",
    "url_quote",
]


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
"""A Duration that must be longer than zero (timeouts, poll intervals)."""


def clip(text: str, limit: int = MAX_LINE_CHARS) -> str:
    """`text` cut to `limit` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def safe_emit(emit: Emit, line: str) -> None:
    """Calls `emit`, logging instead of raising: a Slack hiccup must not change a deploy's outcome."""
    try:
        await emit(line)
    except asyncio.CancelledError:
        raise
    except Exception:  # any failure of the chat side is logged, the deploy goes on
        log.warning("deploy progress line could not be posted", exc_info=True)


class ThrottledEmit:
    """Passes lines to `emit` at most `per_second` messages a second; lines that arrive faster are joined into
    one message (up to `max_chars`), so a chatty process cannot flood Slack. Only when the backlog would need
    more than `max_backlog` messages are the oldest waiting lines replaced by a count of them. `clock` and `sleep`
    are the time it keeps the rate by (tests drive both by hand, so the rate is checked without real waiting)."""

    def __init__(
        self,
        emit: Emit,
        *,
        per_second: float = 1.0,
        max_chars: int = 3000,
        max_backlog: int = 5,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._emit = emit
        self._gap = 1.0 / per_second if per_second > 0 and math.isfinite(per_second) else 0.0
        self._max_chars = max_chars
        self._max_pending_chars = max_chars * max_backlog
        self._pending_chars = 0
        self._clock = clock
        self._sleep = sleep
        self._pending: deque[str] = deque()
        self._omitted = 0
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._last_sent = -math.inf

    def add(self, line: str) -> None:
        """Queues one line (clipped to MAX_LINE_CHARS); never blocks."""
        line = clip(line)
        self._pending.append(line)
        self._pending_chars += len(line) + 1
        while self._pending_chars > self._max_pending_chars and len(self._pending) > 1:
            self._pending_chars -= len(self._pending.popleft()) + 1
            self._omitted += 1
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="deploy-output")
        self._wakeup.set()

    async def aclose(self) -> None:
        """Sends whatever is still queued (respecting the rate) and stops."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task

    async def cancel(self) -> None:
        """Stops without sending what is queued."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _batch(self) -> str:
        lines: list[str] = []
        if self._omitted:
            lines.append(f"… {self._omitted} lines not shown")
            self._omitted = 0
        size = sum(len(line) + 1 for line in lines)
        while self._pending and (not lines or size + len(self._pending[0]) + 1 <= self._max_chars):
            line = self._pending.popleft()
            self._pending_chars -= len(line) + 1
            lines.append(line)
            size += len(line) + 1
        return "\n".join(lines)

    async def _run(self) -> None:
        while True:
            if not self._pending and not self._omitted:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            wait = self._last_sent + self._gap - self._clock()
            if wait > 0:
                await self._sleep(wait)
            self._last_sent = self._clock()
            await safe_emit(self._emit, self._batch())
