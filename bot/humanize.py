"""Durations and counts written for people (pure functions): "51s", "12 ms", "4h 5m", "3 days", "1 acknowledgement".

A minimal stand-in for the ux-text branch's module of the same name and API (keep that one when merging)."""

from __future__ import annotations

from datetime import timedelta

_MINUTE = 60
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR


def duration(td: timedelta) -> str:
    """A duration as a person would say it, to its largest two units: "12 ms", "51s", "4m 5s", "4h 5m", "3 days"."""
    seconds = max(td.total_seconds(), 0.0)
    if seconds == 0:
        return "0s"
    if seconds < 0.9995:
        millis = round(seconds * 1000)
        return f"{millis} ms" if millis else "under 1 ms"
    whole = round(seconds)
    if whole < _MINUTE:
        return f"{whole}s"
    if whole < _HOUR:
        minutes, rest = divmod(whole, _MINUTE)
        return f"{minutes}m {rest}s" if rest else f"{minutes}m"
    minutes_total = round(seconds / _MINUTE)
    if minutes_total < _DAY // _MINUTE:
        hours, rest = divmod(minutes_total, 60)
        return f"{hours}h {rest}m" if rest else f"{hours}h"
    days, hours = divmod(round(seconds / _HOUR), 24)
    text = plural(days, "day")
    return f"{text} {hours}h" if hours and days < 7 else text


def plural(n: int, word: str, words: str | None = None) -> str:
    """A count with its noun agreeing: "1 table", "2 tables"; `words` for irregular plurals."""
    return f"{n} {word if n == 1 else (words if words is not None else word + 's')}"
