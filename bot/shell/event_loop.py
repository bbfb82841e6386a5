"""The event loop `chatops serve` runs on. uvloop (libuv, its transports and polling in C) where it is installed,
which it is with chatops on Linux and macOS: the webhook and Slack request paths spend a quarter of their time in
asyncio's socket writes and `epoll` (bench/README.md), which uvloop does in C. `CHATOPS_EVENT_LOOP=asyncio` runs on
asyncio's own loop instead; `uvloop` insists on it (start-up fails if it is missing)."""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Literal

EventLoopChoice = Literal["auto", "uvloop", "asyncio"]

_MISSING = "CHATOPS_EVENT_LOOP=uvloop, but uvloop is not installed (pip install uvloop, or unset it)"


class EventLoopUnavailable(Exception):
    """`CHATOPS_EVENT_LOOP=uvloop` on a machine without uvloop."""


def new_event_loop(choice: EventLoopChoice) -> asyncio.AbstractEventLoop:
    """A new event loop of the chosen kind ("auto": uvloop if it imports, else asyncio's)."""
    if choice == "asyncio":
        return asyncio.new_event_loop()
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise EventLoopUnavailable(_MISSING) from None
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def chosen_loop(choice: EventLoopChoice) -> str:
    """ "uvloop" or "asyncio": the kind `new_event_loop(choice)` makes, checked before anything starts (raises
    EventLoopUnavailable for an unmet `uvloop`)."""
    if choice == "asyncio":
        return "asyncio"
    if importlib.util.find_spec("uvloop") is not None:
        return "uvloop"
    if choice == "uvloop":
        raise EventLoopUnavailable(_MISSING)
    return "asyncio"
