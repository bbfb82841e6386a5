"""A five-field crontab matcher (minute hour day-of-month month day-of-week), as cron(8) reads it.

Used for freeze windows: a minute is "in" a window when the expression matches it. Day of week 0 and 7 are
Sunday, as in crontab (APScheduler 3's from_crontab counts from Monday, which would shift every window a day)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

_NAMES = {
    3: {
        n: i
        for i, n in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)
    },
    4: {n: i for i, n in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
}
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")


@dataclass(frozen=True)
class Cron:
    """A parsed crontab expression."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool

    @classmethod
    def parse(cls, expression: str) -> Cron:
        """Parses `expression`; ValueError naming the field that is wrong."""
        parts = expression.split()
        if len(parts) != 5:
            raise ValueError(f"a cron expression has 5 fields (minute hour day month weekday), got {len(parts)}")
        sets = [_parse_field(part, index) for index, part in enumerate(parts)]
        weekdays = frozenset(0 if d == 7 else d for d in sets[4])
        return cls(expression, sets[0], sets[1], sets[2], sets[3], weekdays, parts[2] != "*", parts[4] != "*")

    def matches(self, moment: datetime) -> bool:
        """True when the minute containing `moment` matches."""
        if moment.minute not in self.minutes or moment.hour not in self.hours or moment.month not in self.months:
            return False
        day_ok = moment.day in self.days
        weekday_ok = (moment.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return day_ok or weekday_ok
        return day_ok and weekday_ok

    def end_of_match(self, moment: datetime, horizon: timedelta = timedelta(days=31)) -> datetime | None:
        """The first minute after `moment` that does not match (when a window ends); None beyond `horizon`."""
        current = moment.replace(second=0, microsecond=0)
        limit = current + horizon
        while current < limit:
            current += timedelta(minutes=1)
            if not self.matches(current):
                return current
        return None


def _parse_field(text: str, index: int) -> frozenset[int]:
    low, high = _RANGES[index]
    values: set[int] = set()
    for item in text.lower().split(","):
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not (step_text.isascii() and step_text.isdigit()) or int(step_text) == 0:
                raise ValueError(f"cron {_FIELD_NAMES[index]}: bad step {step_text!r}")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _value(first, index), _value(last, index)
        else:
            start = _value(base, index)
            end = high if step_text else start
        if start > end:
            raise ValueError(f"cron {_FIELD_NAMES[index]}: range {base!r} runs backwards")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _value(text: str, index: int) -> int:
    low, high = _RANGES[index]
    names = _NAMES.get(index, {})
    if text in names:
        return names[text]
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise ValueError(f"cron {_FIELD_NAMES[index]}: {text!r} is not a number from {low} to {high}")
    return int(text)
