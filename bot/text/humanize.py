"""Durations and counts written for people (pure functions): the one place messages get "51s", "12 ms", "4h 5m",
"3 days", "1 acknowledgement" and "2 acknowledgements" from. Configuration keeps its own compact, parseable
format (`integrations.types.format_duration`): these texts are for reading, not for parsing back."""

from __future__ import annotations

from datetime import timedelta

_MINUTE = 60
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
_WEEK_OF_DAYS = 7  # from a week on, hours no longer matter to a reader


def duration(td: timedelta) -> str:
    """A duration as a person would say it, to its largest two units: "12 ms", "51s", "4m 5s", "4h 5m", "1 day 3h",
    "3 days", "12 weeks". Negative spans (clock skew) read as "0s"."""
    seconds = max(td.total_seconds(), 0.0)
    if seconds == 0:
        return "0s"
    if seconds < 0.9995:  # rounds below one second
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
    hours_total = round(seconds / _HOUR)
    days, hours = divmod(hours_total, 24)
    if days >= 2 * 7 and days % 7 == 0 and not hours:
        return plural(days // 7, "week")  # "12 weeks" as configured, where "84 days" would make people count
    text = plural(days, "day")
    return f"{text} {hours}h" if hours and days < _WEEK_OF_DAYS else text


def plural(n: int, word: str, words: str | None = None) -> str:
    """A count with its noun agreeing: "1 table", "2 tables", "0 tables"; `words` for irregular plurals
    (`plural(n, "entry", "entries")`)."""
    return f"{n} {word if n == 1 else (words if words is not None else word + 's')}"
