"""Times people type and read, in their own time zone: `until 18:00`, `tomorrow 09:00`, `friday`,
`2026-12-24 08:00` in; `Mon 24 Nov 09:00 CET` out. Pure functions of the text, the current instant and a zone."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.oncall.rotation import WEEKDAYS, wall_to_utc

_TIME = re.compile(r"(\d{1,2})(?::(\d{2}))?\s*(am|pm)?", re.IGNORECASE)
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
EXAMPLES = "`18:00`, `tomorrow 09:00`, `friday 17:30` or `2026-12-24 08:00`"


def parse_when(text: str, now: datetime, zone: ZoneInfo) -> datetime:
    """The next instant (UTC) matching `text` read in `zone`, after `now`; ValueError saying what is accepted."""
    words = (
        text.strip().lower().replace("t", " ", 1).split() if _DATE.match(text.strip()) else text.strip().lower().split()
    )
    if not words or len(words) > 2:
        raise ValueError(f"`{text}` is not a time: use {EXAMPLES}")
    local_now = now.astimezone(zone)
    day_word, time_word = (words[0], words[1]) if len(words) == 2 else _split_single(words[0])
    at = _time(time_word) if time_word is not None else time(9, 0) if day_word else None
    if at is None:
        raise ValueError(f"`{text}` is not a time: use {EXAMPLES}")
    if day_word is None:
        candidate = wall_to_utc(datetime.combine(local_now.date(), at), zone)
        if candidate <= now:
            candidate = wall_to_utc(datetime.combine(local_now.date() + timedelta(days=1), at), zone)
        return candidate
    day = _day(day_word, local_now.date(), at, now, zone)
    if day is None:
        raise ValueError(f"`{text}` is not a time: use {EXAMPLES}")
    result = wall_to_utc(datetime.combine(day, at), zone)
    if result <= now:
        raise ValueError(f"`{text}` ({format_local(result, zone)}) is in the past")
    return result


def _split_single(word: str) -> tuple[str | None, str | None]:
    """One word is a time (`18:00`, `6pm`) or a day (`tomorrow`, `friday`, `2026-12-24`, meaning 09:00)."""
    if _time(word) is not None:
        return None, word
    return word, None


def _time(word: str) -> time | None:
    match = _TIME.fullmatch(word)
    if match is None:
        return None
    hour, minute = int(match.group(1)), int(match.group(2) or 0)
    if match.group(3):
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if match.group(3) == "pm" else 0)
    elif match.group(2) is None:
        return None  # a bare number is ambiguous ("until 5": hours? 05:00?)
    if hour > 23 or minute > 59:
        return None
    return time(hour, minute)


def _day(word: str, today: date, at: time, now: datetime, zone: ZoneInfo) -> date | None:
    if word == "today":
        return today
    if word == "tomorrow":
        return today + timedelta(days=1)
    match = _DATE.fullmatch(word)
    if match:
        try:
            return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        except ValueError:
            return None
    names = {name: i for i, name in enumerate(WEEKDAYS)} | {name[:3]: i for i, name in enumerate(WEEKDAYS)}
    if word not in names:
        return None
    ahead = (names[word] - today.weekday()) % 7
    day = today + timedelta(days=ahead)
    if wall_to_utc(datetime.combine(day, at), zone) <= now:
        day += timedelta(days=7)
    return day


def format_local(at: datetime, zone: ZoneInfo) -> str:
    """`Mon 24 Nov 09:00 CET`: an instant as the reader's clock shows it."""
    local = at.astimezone(zone)
    return f"{local:%a %d %b %H:%M} {local.tzname() or zone.key}"


def zone_or_utc(name: str | None) -> ZoneInfo:
    """The IANA zone `name`, or UTC when it is missing or unknown."""
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ValueError, KeyError):
        return ZoneInfo("UTC")


def utc(value: datetime) -> datetime:
    """`value` in UTC."""
    return value.astimezone(UTC)
