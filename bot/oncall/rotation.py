"""On-call rotations: who is on call when, as pure functions of a rotation's spec and the clock.

A rotation hands off at a local wall-clock time (optionally on a weekday) in its IANA time zone, every `shift_days`
days from `start`; shift n begins at the local date `start + n * shift_days` at the hand-off time. Hand-offs stay at
the same local time across DST changes, so a shift spanning a change is an hour (or half an hour, on Lord Howe)
shorter or longer in UTC. Datetimes in must be timezone-aware (any zone); datetimes out are UTC.

Local times that do not map to exactly one instant:

* In a gap (the hand-off time is skipped that day, e.g. 02:30 when Berlin jumps from 02:00 to 03:00), the hand-off
  is the first valid instant after it: the transition itself (03:00 local). Note this is not the instant a bare
  PEP 495 ``fold=0`` UTC round trip gives (that reads 02:30 with the pre-transition offset, i.e. 03:30 local); we
  take that round trip, detect the gap because it does not come back to the same wall time, then search back to
  the transition.
* In an overlap (the hand-off time happens twice), the first occurrence is used (``fold=0``).

Shifts are whole days or weeks (``1d``, ``2d``, ``1w``, ...); hour-based shifts (``12h``) are rejected, so every
hand-off falls on a calendar date at the hand-off time. Finding the shift for an instant is O(1): the index is
estimated from elapsed UTC time, then corrected by a step or two.

Overrides put someone else on call for a while; the latest-created one covering an instant wins. Overrides of
other rotations are ignored.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEEKDAY_NUMBERS = {**{name: i for i, name in enumerate(WEEKDAYS)}, **{name[:3]: i for i, name in enumerate(WEEKDAYS)}}
_SHIFT = re.compile(r"(\d+)\s*([a-z]+)", re.IGNORECASE)
_TIME = re.compile(r"(\d{1,2}):(\d{2})")
_SECOND = timedelta(seconds=1)
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class RotationSpec:
    """A validated rotation: members in order, shift length, local hand-off time (and weekday), zone and start."""

    name: str
    members: tuple[str, ...]
    shift_days: int
    handoff_time: time
    handoff_weekday: int | None  # 0 = Monday
    timezone: str
    start: date


@dataclass(frozen=True)
class Shift:
    """One stretch of on-call duty, [starts, ends) in UTC; `index` counts shifts from the rotation's start."""

    rotation: str
    member: str
    index: int
    starts: datetime
    ends: datetime


@dataclass(frozen=True)
class Override:
    """Someone put on call for a rotation over [starts, ends), whoever the schedule says."""

    id: str
    rotation: str
    member: str
    starts: datetime
    ends: datetime

    def __post_init__(self) -> None:
        starts, ends = _utc(self.starts, "override starts"), _utc(self.ends, "override ends")
        if ends <= starts:
            raise ValueError(f"override {self.id!r} ends ({ends.isoformat()}) before it starts ({starts.isoformat()})")
        object.__setattr__(self, "starts", starts)
        object.__setattr__(self, "ends", ends)


# --- parsing ---------------------------------------------------------------------------------------------------


def parse_rotation(
    name: str, *, members: Sequence[str], shift: str, handoff: str, timezone: str, start: date | str
) -> RotationSpec:
    """Validates a rotation's settings into a RotationSpec; ValueError saying precisely what is wrong."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("rotation name must not be empty")
    member_ids = _parse_members(members)
    shift_days, in_weeks = _parse_shift(shift)
    handoff_weekday, handoff_time = _parse_handoff(handoff)
    zone_name = _parse_timezone(timezone)
    start_date = _parse_start(start)
    if handoff_weekday is None and in_weeks:
        example = f"{WEEKDAYS[start_date.weekday()]} {handoff_time:%H:%M}"
        raise ValueError(f"shift {shift!r} needs a weekday in handoff, e.g. {example!r}")
    if handoff_weekday is not None:
        if shift_days % 7:
            raise ValueError(
                f"handoff {handoff!r} names a weekday but shift {shift!r} is not a whole number of weeks;"
                f" give only the time, e.g. '{handoff_time:%H:%M}'"
            )
        if start_date.weekday() != handoff_weekday:
            raise ValueError(
                f"start {start_date.isoformat()} is a {WEEKDAYS[start_date.weekday()].capitalize()}"
                f" but handoff is on {WEEKDAYS[handoff_weekday].capitalize()}"
            )
    return RotationSpec(name, member_ids, shift_days, handoff_time, handoff_weekday, zone_name, start_date)


def _parse_members(members: Sequence[str]) -> tuple[str, ...]:
    if isinstance(members, str):
        raise ValueError(
            f"members must be a list of Slack user ids, not the string {members!r}"
        )  # one error type for the config layer
    result = tuple(members)
    if not result:
        raise ValueError("members must not be empty")
    seen: set[str] = set()
    for member in result:
        if not isinstance(member, str) or not member.strip():
            raise ValueError(f"members must be Slack user ids, got {member!r}")
        if member in seen:
            raise ValueError(f"members: {member!r} is listed more than once")
        seen.add(member)
    return result


def _parse_shift(shift: str) -> tuple[int, bool]:
    """(days, whether it was given in weeks)."""
    match = _SHIFT.fullmatch(shift.strip()) if isinstance(shift, str) else None
    unit = match.group(2).lower() if match else ""
    if match and unit in ("h", "m", "min", "s"):
        raise ValueError(
            f"shift {shift!r}: shifts are whole days or weeks (hand-offs happen once a day at most), e.g. '1d' or '1w'"
        )
    if not match or unit not in ("d", "w"):
        raise ValueError(f"shift {shift!r}: expected a whole number of days or weeks, e.g. '1d', '2d', '1w', '2w'")
    count = int(match.group(1))
    if count < 1:
        raise ValueError(f"shift {shift!r}: must be at least one day")
    return (count * 7, True) if unit == "w" else (count, False)


def _parse_handoff(handoff: str) -> tuple[int | None, time]:
    parts = handoff.split() if isinstance(handoff, str) else []
    if len(parts) not in (1, 2):
        raise ValueError(
            f"handoff {handoff!r}: expected a time, optionally after a weekday, e.g. '09:00' or 'monday 09:00'"
        )
    weekday = None
    if len(parts) == 2:
        word = parts[0].lower()
        if word not in _WEEKDAY_NUMBERS:
            close = _closest_weekday(word)
            hint = f"did you mean {close!r}?" if close else "expected monday to sunday"
            raise ValueError(f"handoff {handoff!r}: unknown weekday {parts[0]!r}; {hint}")
        weekday = _WEEKDAY_NUMBERS[word]
    match = _TIME.fullmatch(parts[-1])
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError(f"handoff {handoff!r}: {parts[-1]!r} is not a 24-hour time (HH:MM)")
    return weekday, time(int(match.group(1)), int(match.group(2)))


def _closest_weekday(word: str) -> str | None:
    """The weekday `word` most looks like (ties go to the one sharing its first letter: 'munday' is 'monday')."""
    scored = [(difflib.SequenceMatcher(None, word, name).ratio(), name[0] == word[:1], name) for name in WEEKDAYS]
    ratio, _, name = max(scored, key=lambda score: score[:2])
    return name if ratio >= 0.6 else None


def _parse_timezone(name: str) -> str:
    try:
        if not isinstance(name, str) or not name:
            raise ValueError(name)
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"timezone {name!r} is not an IANA time zone") from None
    return name


def _parse_start(start: date | str) -> date:
    if isinstance(start, datetime):
        raise ValueError(
            f"start must be a date (YYYY-MM-DD), not a date and time: {start.isoformat()}"
        )  # one error type for the config layer
    if isinstance(start, date):
        return start
    try:
        return date.fromisoformat(start)
    except (TypeError, ValueError):
        raise ValueError(f"start {start!r} is not a date (YYYY-MM-DD)") from None


# --- the schedule ----------------------------------------------------------------------------------------------


def shift_at(spec: RotationSpec, at: datetime) -> Shift | None:
    """The shift covering `at`, or None before the first shift starts."""
    index = _index_at(spec, _utc(at, "at"))
    return None if index < 0 else _shift(spec, index)


def shifts_between(spec: RotationSpec, since: datetime, until: datetime) -> list[Shift]:
    """Every shift overlapping [since, until), in order."""
    since, until = _utc(since, "since"), _utc(until, "until")
    shifts: list[Shift] = []
    index = max(_index_at(spec, since), 0)
    while since < until and (starts := _handoff(spec, index)) < until:
        shift = Shift(spec.name, spec.members[index % len(spec.members)], index, starts, _handoff(spec, index + 1))
        shifts.append(shift)
        index += 1
    return shifts


def next_handoff(spec: RotationSpec, after: datetime) -> datetime:
    """The first hand-off strictly after `after`."""
    return _handoff(spec, _index_at(spec, _utc(after, "after")) + 1)


def on_call(spec: RotationSpec, at: datetime, overrides: Sequence[Override]) -> tuple[str, datetime, str | None]:
    """(who is on call at `at`, until when that person stays on call, the id of the override putting them there)."""
    at = _utc(at, "at")
    relevant = _relevant(spec, overrides)
    covering = _covering(relevant, at)
    pieces = upcoming(spec, at, at + _TICK, relevant)
    if not pieces:
        raise ValueError(
            f"nobody is on call for {spec.name!r} at {at.isoformat()}: its first shift starts"
            f" {_handoff(spec, 0).isoformat()}"
        )
    return pieces[0].member, pieces[0].ends, covering.id if covering else None


def upcoming(spec: RotationSpec, since: datetime, until: datetime, overrides: Sequence[Override]) -> list[Shift]:
    """The schedule over [since, until) with overrides cut in.

    Shifts are split where an override starts or ends; adjacent pieces of the same person are merged where an
    override starts or ends (a plain hand-off between two scheduled shifts stays a boundary even if, in a one-member
    rotation, it is the same person). Each piece keeps the index of the scheduled shift it starts in (-1 for an
    override before the rotation starts). Pieces are whole: the first may start before `since`, the last end after
    `until`."""
    since, until = _utc(since, "since"), _utc(until, "until")
    if until <= since:
        return []
    relevant = _relevant(spec, overrides)
    result: list[Shift] = []
    current: list = []  # [starts, ends, member, index] of the piece being merged
    last_overridden = False
    for starts, ends, member, overridden, index in _pieces(spec, _merge_start(spec, since, relevant), relevant):
        if current and member is not None and member == current[2] and (overridden or last_overridden):
            current[1] = ends
        else:
            if current and current[2] is not None and current[1] > since:
                result.append(Shift(spec.name, current[2], current[3], current[0], current[1]))
            if starts >= until:
                break
            current = [starts, ends, member, index]
        last_overridden = overridden
    return result


# --- internals -------------------------------------------------------------------------------------------------


def _utc(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def _handoff(spec: RotationSpec, index: int) -> datetime:
    """The UTC instant shift `index` starts: its local hand-off wall time, or the first valid instant after it."""
    wall = datetime.combine(spec.start + timedelta(days=index * spec.shift_days), spec.handoff_time)
    return wall_to_utc(wall, ZoneInfo(spec.timezone))


def wall_to_utc(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of a naive local wall time in `zone`: the first occurrence in an overlap, the moment of the
    jump in a gap (see the module docstring)."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)  # the first occurrence if the time happens twice
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # A gap: fold=0 read the wall time with the offset before the jump, landing after the transition; fold=1 read
    # it with the offset after, landing before. The transition (the first instant whose local time is >= wall)
    # lies in between: binary search on whole seconds (transitions fall on whole seconds).
    low, high = wall.replace(tzinfo=zone, fold=1).astimezone(UTC), first
    if low >= high:  # not a gap zoneinfo models as two offsets; keep PEP 495's answer
        return first
    steps = int((high - low) / _SECOND)
    lo, hi = 0, steps  # local(low + lo s) < wall <= local(low + hi s)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (low + mid * _SECOND).astimezone(zone).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid
    return low + hi * _SECOND


def _index_at(spec: RotationSpec, at: datetime) -> int:
    """The index of the shift covering `at` (UTC), or -1 before the first; O(1)."""
    first = _handoff(spec, 0)
    if at < first:
        return -1
    index = int((at - first) / timedelta(days=spec.shift_days))
    while index > 0 and _handoff(spec, index) > at:
        index -= 1
    while _handoff(spec, index + 1) <= at:
        index += 1
    return index


def _shift(spec: RotationSpec, index: int) -> Shift:
    member = spec.members[index % len(spec.members)]
    return Shift(spec.name, member, index, _handoff(spec, index), _handoff(spec, index + 1))


def _relevant(spec: RotationSpec, overrides: Sequence[Override]) -> list[Override]:
    return [override for override in overrides if override.rotation == spec.name]


def _covering(overrides: Sequence[Override], at: datetime) -> Override | None:
    """The latest-created override covering `at` (overrides are in creation order)."""
    for override in reversed(overrides):
        if override.starts <= at < override.ends:
            return override
    return None


def _merge_start(spec: RotationSpec, since: datetime, overrides: Sequence[Override]) -> datetime:
    """An instant at or before `since` where a piece boundary certainly stays (so merging can start there)."""
    index = _index_at(spec, since)
    while index >= 0:
        handoff = _handoff(spec, index)
        touching = [o.starts for o in overrides if o.starts <= handoff <= o.ends]
        if not touching:
            return handoff  # a plain hand-off: no override on either side of it
        index = _index_at(spec, min(min(touching), handoff - _TICK))
    earlier = [o.starts for o in overrides if o.starts < since]
    return min([since, *earlier])


def _pieces(
    spec: RotationSpec, starts: datetime, overrides: Sequence[Override]
) -> Iterator[tuple[datetime, datetime, str | None, bool, int]]:
    """Contiguous (starts, ends, member or None, overridden, shift index) pieces from `starts` on, forever."""
    edges = sorted({edge for o in overrides for edge in (o.starts, o.ends)})
    while True:
        index = _index_at(spec, starts)
        ends = _handoff(spec, index + 1)
        ends = min([ends, *(edge for edge in edges if edge > starts)])
        override = _covering(overrides, starts)
        if override is not None:
            yield starts, ends, override.member, True, index
        else:
            yield starts, ends, spec.members[index % len(spec.members)] if index >= 0 else None, False, index
        starts = ends
