"""Background loops and their heartbeats: each long-running loop (alert delivery, alert messages, the scheduler,
deploy ticks) notes every iteration that completed, `/readyz` answers 503 naming a loop that has not completed one
for too long (Redis or Slack failing, or the loop stuck), and `/metrics` exports the time of each loop's last
success, so an operator sees a loop that stopped making progress even while the process answers HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from bot.platform.metrics import Metrics

log = logging.getLogger(__name__)


class Heartbeats:
    """When each expected loop last completed an iteration (monotonic time), and how long it may go without."""

    def __init__(self, metrics: Metrics, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._metrics = metrics
        self._monotonic = monotonic
        self._started = monotonic()
        self._last: dict[str, float] = {}
        self._within: dict[str, float] = {}

    def expect(self, loop: str, within: float) -> None:
        """Registers a loop that must complete an iteration at least every `within` seconds."""
        self._within[loop] = within

    def beat(self, loop: str) -> None:
        """Notes that `loop` completed an iteration now."""
        self._last[loop] = self._monotonic()
        self._metrics.loop_last_success.labels(loop=loop).set(time.time())

    def stalled(self) -> list[str]:
        """Why each expected loop that has gone quiet for too long is late, for /readyz."""
        now = self._monotonic()
        late = []
        for loop, within in sorted(self._within.items()):
            last = self._last.get(loop, self._started)
            if now - last > within:
                never = "" if loop in self._last else " since start-up"
                late.append(f"{loop}: no successful iteration for {now - last:.0f}s{never} (limit {within:.0f}s)")
        return late


async def run_periodic(
    name: str,
    iteration: Callable[[], Awaitable[object]],
    *,
    every: float,
    stop: asyncio.Event,
    heartbeats: Heartbeats,
) -> None:
    """Runs `iteration` every `every` seconds until `stop`; a failing iteration is logged and the next one runs."""
    while not stop.is_set():
        try:
            await iteration()
            heartbeats.beat(name)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; trying again in %ss", name, every)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
