"""Background work that continues after Slack got its answer, tracked so shutdown can wait for it; and `Passes`,
how a worker loop tells a caller (tests, mostly) that it has been idle: a whole pass found nothing to do."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from bot.platform.errors import new_ref

log = logging.getLogger(__name__)


class BackgroundTasks:
    """Runs coroutines after the HTTP answer; logs failures with a ref; drains on shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Starts `coro` now and keeps a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("background task %s failed (ref %s)", task.get_name(), new_ref(), exc_info=error)

    @property
    def running(self) -> int:
        """How many tasks are still running."""
        return len(self._tasks)

    async def idle(self) -> None:
        """Returns once no task is running, including tasks spawned meanwhile by the ones it waited for."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def drain(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109  # cancels the tasks, not drain itself
        """Waits up to `timeout` seconds for running tasks, then cancels what is left."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


class Passes:
    """The passes of one worker loop, counted so a caller can wait for a quiet one: a whole pass that began after
    the caller asked and found nothing to do. That is "idle" without a sleep: work due before the question was
    either done by an earlier pass or would have made this one busy."""

    def __init__(self) -> None:
        self._begun = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def begin(self) -> int:
        """Marks the start of a pass; returns its number, for `end`."""
        self._begun += 1
        return self._begun

    def end(self, number: int, *, worked: bool) -> None:
        """Marks pass `number` done; a pass without work releases the callers that asked before it began."""
        if worked:
            return
        waiting = []
        for asked_at, waiter in self._waiters:
            if number > asked_at:
                if not waiter.done():  # a caller that gave up (cancelled) is simply dropped
                    waiter.set_result(None)
            else:
                waiting.append((asked_at, waiter))
        self._waiters = waiting

    async def quiet(self) -> None:
        """Returns after a pass that began after this call ended without work (waits as long as the loop is busy)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self._begun, waiter))
        await waiter
