"""Waiting in tests without timing assumptions: poll a condition until it holds, with a deadline generous enough
for a loaded 2-core machine, and fail saying what was awaited (never a fixed sleep before an assertion)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

DEFAULT_DEADLINE_SECONDS = 60.0


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], what: str, *, deadline: float = DEFAULT_DEADLINE_SECONDS,
    every: float = 0.05,
) -> None:
    """Returns once `condition()` (sync or async) is true; raises AssertionError naming `what` after `deadline`."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > end:
            raise AssertionError(f"gave up after {deadline:.0f}s waiting for: {what}")
        await asyncio.sleep(every)
