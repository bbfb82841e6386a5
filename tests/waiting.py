"""Waiting in tests without timing assumptions: poll a condition until it holds, with a deadline generous enough
for a loaded 2-core machine, and fail saying what was awaited and what was last seen (never a fixed sleep before an
assertion). "Nothing happened" is asserted after `idle`: the bot itself reports that it has no work in hand."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from bot.shell.deps import Deps

DEFAULT_DEADLINE_SECONDS = 60.0

T = TypeVar("T")


async def eventually(
    condition: Callable[[], T | Awaitable[T]],
    what: str,
    *,
    deadline: float = DEFAULT_DEADLINE_SECONDS,
    every: float = 0.05,
) -> T:
    """Returns the first truthy value of `condition()` (sync or async), polled every `every` seconds; after
    `deadline` raises AssertionError naming `what` and the last value seen."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        result = condition()
        value = await result if inspect.isawaitable(result) else result
        if value:
            return value  # T, once awaited
        if loop.time() > end:
            raise AssertionError(f"gave up after {deadline:.0f}s waiting for: {what} (last seen: {value!r})")
        await asyncio.sleep(every)


def eventually_blocking(
    condition: Callable[[], T],
    what: str,
    *,
    deadline: float = DEFAULT_DEADLINE_SECONDS,
    every: float = 0.05,
) -> T:
    """`eventually` for synchronous code (fixtures starting servers, threads): blocks between polls."""
    end = time.monotonic() + deadline
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"gave up after {deadline:.0f}s waiting for: {what} (last seen: {value!r})")
        time.sleep(every)


async def within(awaitable: Awaitable[T], what: str, *, deadline: float = DEFAULT_DEADLINE_SECONDS) -> T:
    """Awaits an event-like `awaitable` (an Event's wait(), a task), failing after `deadline` naming `what`."""
    try:
        async with asyncio.timeout(deadline):
            return await awaitable
    except TimeoutError:
        raise AssertionError(f"gave up after {deadline:.0f}s waiting for: {what}") from None


async def idle(deps: Deps, *, deadline: float = DEFAULT_DEADLINE_SECONDS) -> None:
    """Returns once the bot has nothing in hand, all at once: no background task running (command follow-ups,
    incident syncs), every accepted alert delivered, and a whole pass of the alert flusher found nothing due.
    Assert "nothing happened" after this, never after a sleep."""

    waiting_for = "background tasks to finish"

    async def settle() -> None:
        nonlocal waiting_for
        while True:
            waiting_for = "background tasks to finish"
            await deps.tasks.idle()
            waiting_for = "the alert consumer to deliver every accepted alert"
            if await deps.alerts.caught_up():
                waiting_for = "a pass of the alert flusher with nothing due"
                await deps.alerts.flush_passes.quiet()
                # That pass may have followed work that spawned tasks or accepted alerts: all must hold at once.
                if deps.tasks.running == 0 and await deps.alerts.caught_up():
                    return
            await asyncio.sleep(0.05)

    try:
        async with asyncio.timeout(deadline):
            await settle()
    except TimeoutError:
        raise AssertionError(
            f"gave up after {deadline:.0f}s waiting for the bot to be idle: still waiting for {waiting_for}"
        ) from None


async def ticks(deps: Deps, count: int = 2, *, deadline: float = DEFAULT_DEADLINE_SECONDS) -> None:
    """Returns after `count` whole ticks of the scheduler's lease loop that began after this call."""
    for n in range(count):
        await within(deps.scheduler.ticks.quiet(), f"scheduler tick {n + 1} of {count}", deadline=deadline)


async def job_runs(deps: Deps, job: str, count: int = 1, *, deadline: float = DEFAULT_DEADLINE_SECONDS) -> None:
    """Returns after `count` whole runs of scheduled `job` (in this process) that began after this call."""
    for n in range(count):
        await within(
            deps.scheduler.runs[job].quiet(), f"run {n + 1} of {count} of scheduled job {job}", deadline=deadline
        )
