"""The event loop `chatops serve` runs on: uvloop where it is installed (transports, timers and callbacks in C, which
took 10–15% less CPU per alert webhook under load, bench/README.md), asyncio's own where it is not (Windows, PyPy)
or when CHATOPS_EVENT_LOOP=asyncio asks for it."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

EventLoopChoice = Literal["auto", "uvloop", "asyncio"]


class EventLoopUnavailable(Exception):
    """The event loop asked for cannot be used here; the message says why and what to do."""


@dataclass(frozen=True)
class EventLoop:
    """The loop chosen: its name (for the start-up line) and how to make one."""

    name: Literal["uvloop", "asyncio"]
    new: Callable[[], asyncio.AbstractEventLoop]


def uvloop_installed() -> bool:
    """Whether uvloop can be imported here (found without importing it)."""
    return importlib.util.find_spec("uvloop") is not None


def choose_event_loop(choice: EventLoopChoice, *, uvloop_available: bool) -> Literal["uvloop", "asyncio"]:
    """The loop to run for a setting: `auto` takes uvloop when available; `uvloop` insists on it."""
    if choice == "asyncio" or (choice == "auto" and not uvloop_available):
        return "asyncio"
    if not uvloop_available:
        raise EventLoopUnavailable(
            "CHATOPS_EVENT_LOOP=uvloop, but uvloop is not installed here "
            "(pip install uvloop, or set CHATOPS_EVENT_LOOP=auto or asyncio)"
        )
    return "uvloop"


def event_loop(choice: EventLoopChoice) -> EventLoop:
    """The event loop for `choice` (CHATOPS_EVENT_LOOP); raises EventLoopUnavailable for uvloop where it is not."""
    name = choose_event_loop(choice, uvloop_available=uvloop_installed())
    if name == "asyncio":
        return EventLoop("asyncio", asyncio.new_event_loop)
    import uvloop

    return EventLoop("uvloop", uvloop.new_event_loop)
