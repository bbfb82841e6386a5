"""Times in webhook bodies: RFC 3339 (nanoseconds and `+0000` offsets too) read as UTC, with Go's zero time
`0001-01-01T00:00:00Z` meaning "not given"; `valid_time` answers the same question without building the time, for
the raw intake's hot path.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from integrations.alerts.source import WebhookRejected

__all__ = ["parse_time", "valid_time"]


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,12}))?([Zz]|[+-]\d{2}:?\d{2})", re.ASCII
)


def parse_time(value: Any, path: str) -> datetime | None:
    """An RFC 3339 time (nanoseconds and `+0000` offsets too) as UTC; None for Go's zero time `0001-01-01T00:00:00Z`
    (which Alertmanager and Grafana send for "not ended"); 400 naming `path` for anything else."""
    moment = _time_or_bad(value)
    if moment is _BAD_TIME:
        raise WebhookRejected(400, f"{path} must be an RFC 3339 time like 2024-05-01T12:00:00Z")
    return moment


# valid_time's answers for the strings it saw last: a group's alerts share their times, and every notification of a
# group repeats them, so most lookups hit. Cleared when full (a bound, not an LRU); only strings as short as an
# RFC 3339 time can be (with nanoseconds and an offset) are kept, so a sender cannot make it hold much.
_VALID_TIMES: dict[str, bool] = {}
_VALID_TIMES_MAX = 4096
_LONGEST_TIME = 40


def valid_time(value: Any) -> bool:
    """Whether `parse_time` accepts `value`, answered without building the time for the usual UTC ones (a webhook
    body holds two per alert, so this is on the hot path of every request)."""
    if type(value) is not str:
        return False
    known = _VALID_TIMES.get(value)
    if known is None:
        known = _checked_time(value)
        if len(value) <= _LONGEST_TIME:
            if len(_VALID_TIMES) >= _VALID_TIMES_MAX:
                _VALID_TIMES.clear()
            _VALID_TIMES[value] = known
    return known


def _checked_time(value: str) -> bool:
    """`valid_time` for a string, worked out."""
    text = value.strip()
    match = _RFC3339.fullmatch(text)
    if match is None:
        return False
    if match.group(8) in ("Z", "z"):  # UTC: valid when the date and time of day exist (or Go's zero date)
        if text.startswith("0001-01-01"):
            return True
        try:
            datetime.fromisoformat(text[:19])
        except ValueError:
            return False
        return True
    return _time_or_bad(value) is not _BAD_TIME


_BAD_TIME = datetime.min.replace(tzinfo=UTC)


def _time_or_bad(value: Any) -> datetime | None:
    """`parse_time`'s answer, or _BAD_TIME where it raises."""
    if not isinstance(value, str):
        return _BAD_TIME
    match = _RFC3339.fullmatch(value.strip())
    if not match:
        return _BAD_TIME
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    if year == "0001" and month == "01" and day == "01":
        return None
    try:
        if offset in ("Z", "z"):
            tz = UTC
        else:
            sign = -1 if offset[0] == "-" else 1
            digits = offset[1:].replace(":", "")
            tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
        micros = int((fraction or "0")[:6].ljust(6, "0"))
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tzinfo=tz)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return _BAD_TIME
