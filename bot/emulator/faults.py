"""Fault injection for the emulator's Web API: a plan the test process fills in-process to make Slack fail the way
it fails in production, so the bot's delivery promises can be tested (tests/chaos/).

    emu.faults.add("429", methods=["chat.postMessage"], seconds=5)       # rate limited for 5 s
    emu.faults.add("500", count=20, fraction=0.5)                        # every other call fails, 20 in all
    emu.faults.add("applied_then_500", methods=["chat.postMessage"], count=3)
    emu.faults.clear()

Modes (what the client sees; every call, faulted or not, stays in `emu.calls` with `fault` set to the mode):

- `"429"`: HTTP 429 `{"ok": false, "error": "ratelimited"}` with `Retry-After` (`retry_after` seconds), as Slack
  answers a call over its rate limit. Nothing is applied.
- `"500"`: HTTP 500 `{"ok": false, "error": "internal_error"}`. Slack documents `internal_error` as "likely due to a
  transient issue on our end. It's possible some aspect of the operation succeeded before the error was raised";
  in this mode nothing is applied (see `applied_then_500` for the other case).
- `"html502"`: HTTP 502 with a `text/html` body `<html><body><h1>502 Bad Gateway</h1></body></html>`, as a proxy in
  front of Slack answers when the API behind it is down: no JSON at all. Nothing is applied.
- `"timeout"`: the request is held `hold` seconds (default 35: longer than the client's timeout, which for the bot
  is its aiohttp session's 30 s: slack_sdk ignores its own `timeout` when it is handed a session), then answered
  504 with an empty body, which the client has stopped waiting for. Nothing is applied. Held requests are let go
  early by `clear()` and when the emulator shuts down.
- `"applied_then_500"`: the call IS applied (the message is stored and shows in the channel) but the answer is the
  `"500"` answer: the ambiguous case that forces an idempotent producer to look before it posts again. A call that
  fails on its own (e.g. `channel_not_found`) gets its real answer, as nothing was applied.

A fault applies to the Web API methods named in `methods` (default: every method) that pass authentication, from
the moment it is added, for `seconds` (a time window) and/or `count` faulted calls, whichever ends first; with
neither it lasts until `clear()`. `fraction` < 1 faults only that share of matching calls (a seeded random draw,
so a run can be repeated). When several faults match a call, the first added whose draw hits wins: faults
with fractions mix. No I/O here: the server asks
`pick(method)` for each call and carries the fault out.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

MODES = ("429", "500", "html502", "timeout", "applied_then_500")
"""The fault modes `FaultPlan.add` accepts."""

HTML_502 = "<html><body><h1>502 Bad Gateway</h1></body></html>"
"""The body of an `html502` answer: a proxy's error page, not Slack's JSON."""

INTERNAL_ERROR = {"ok": False, "error": "internal_error"}
"""The body of a `500` / `applied_then_500` answer."""

DEFAULT_HOLD_SECONDS = 35.0
"""How long a `timeout` fault holds a request: longer than the bot's Slack timeout (its HTTP session's 30 s)."""


@dataclass
class Fault:
    """One entry of the plan: a mode, which methods, and how long it lasts (see the module docstring)."""

    mode: str
    methods: frozenset[str] | None
    until: float | None
    remaining: int | None
    fraction: float
    retry_after: int
    hold: float
    hits: int = 0

    def live(self, now: float) -> bool:
        """Whether the fault still applies at `now` (its window open and its count not used up)."""
        if self.until is not None and now >= self.until:
            return False
        return self.remaining is None or self.remaining > 0

    def covers(self, method: str) -> bool:
        """Whether the fault applies to this Web API method."""
        return self.methods is None or method in self.methods


@dataclass
class FaultPlan:
    """The faults the emulator injects into Web API calls, in the order they were added."""

    clock: Callable[[], float] = time.monotonic
    seed: int | None = 0
    faults: list[Fault] = field(default_factory=list)
    # Bumped by clear(): a request held by a `timeout` fault of an older generation is let go.
    generation: int = 0
    # Set (then replaced) by clear() and at shutdown: requests a `timeout` fault holds wait on it.
    released: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def add(
        self,
        mode: str,
        *,
        methods: Iterable[str] | str | None = None,
        seconds: float | None = None,
        count: int | None = None,
        fraction: float = 1.0,
        retry_after: int = 1,
        hold: float = DEFAULT_HOLD_SECONDS,
    ) -> Fault:
        """Adds a fault from now on; ValueError naming the argument when one is out of range."""
        if mode not in MODES:
            raise ValueError(f"unknown fault mode {mode!r}; known: {', '.join(MODES)}")
        if isinstance(methods, str):
            methods = [methods]
        names = None if methods is None else frozenset(methods)
        if names is not None and (not names or not all(isinstance(n, str) and n for n in names)):
            raise ValueError("methods must be Web API method names like 'chat.postMessage', or None for all")
        if seconds is not None and not seconds > 0:
            raise ValueError(f"seconds must be more than 0 (got {seconds!r})")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise ValueError(f"count must be a whole number of calls, at least 1 (got {count!r})")
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be more than 0 and at most 1 (got {fraction!r})")
        if isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 0:
            raise ValueError(f"retry_after must be whole seconds, 0 or more (got {retry_after!r})")
        if not hold > 0:
            raise ValueError(f"hold must be more than 0 seconds (got {hold!r})")
        fault = Fault(
            mode=mode,
            methods=names,
            until=None if seconds is None else self.clock() + seconds,
            remaining=count,
            fraction=fraction,
            retry_after=retry_after,
            hold=hold,
        )
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        """Removes every fault and lets go of requests that `timeout` faults still hold."""
        self.faults.clear()
        self.generation += 1
        self.release_held()

    def release_held(self) -> None:
        """Lets go of the requests `timeout` faults hold now; requests held after this wait again."""
        self.released.set()
        self.released = asyncio.Event()

    def active(self) -> list[Fault]:
        """The faults that still apply now (spent ones are dropped)."""
        now = self.clock()
        self.faults = [fault for fault in self.faults if fault.live(now)]
        return list(self.faults)

    def pick(self, method: str) -> Fault | None:
        """The fault to inject into this call (counted as used), or None: answer it normally."""
        for fault in self.active():
            if not fault.covers(method):
                continue
            if fault.fraction < 1 and self._random.random() >= fault.fraction:
                continue  # drawn to pass this fault: the next one may still catch it (faults mix)
            fault.hits += 1
            if fault.remaining is not None:
                fault.remaining -= 1
            return fault
        return None
