"""SLO arithmetic as pure functions over probe counts: availability, the time the probes stand for, the error
budget over the configured window, burn rates, the multiwindow page rules, and the figures written for people.

Time without probe data is neither uptime nor downtime: a probe stands for one `probe_interval` (at most its
bucket's length when probes came faster), so availability and the budget spent are over the time with data, and
a burn rate over a window is only computed once probes cover most of that window (`MIN_COVERAGE`).

The page rules are the multiwindow, multi-burn-rate alerts of the Google SRE workbook ("Alerting on SLOs", the
recommended parameters for a 30-day SLO): page when the burn rate is at least 14.4 over both the last hour and
the last 5 minutes (2% of the budget spent in an hour), or at least 6 over both the last 6 hours and the last 30
minutes (5% in 6 hours). The short window makes the alert resolve soon after the failures stop."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from bot.text.humanize import duration

# The share of a window probes must cover before a burn rate over it counts: with less, a few failed probes (a
# restart, the first minutes of a target) would read as a sustained burn.
MIN_COVERAGE = 0.9


@dataclass(frozen=True)
class Counts:
    """Good and total probes over some span."""

    good: int = 0
    total: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.good + other.good, self.total + other.total)

    @property
    def availability(self) -> float | None:
        """Good share in [0, 1], None without data."""
        return self.good / self.total if self.total else None


@dataclass(frozen=True)
class Measured:
    """Probe counts over a window, with the time the probes stand for (`covered`) and the part of it that failed."""

    window: timedelta
    counts: Counts = Counts()
    covered: timedelta = timedelta(0)
    down: timedelta = timedelta(0)

    @property
    def availability(self) -> float | None:
        """Good share of the probes in the window, None without data."""
        return self.counts.availability

    @property
    def enough(self) -> bool:
        """Probes cover enough of the window for a rate over it to mean something."""
        return self.covered >= self.window * MIN_COVERAGE


def measure(buckets: Iterable[Counts], *, bucket: timedelta, interval: timedelta, window: timedelta) -> Measured:
    """Sums the buckets of one window: each probe stands for `interval`, and a bucket for no more than its own length
    (or one interval, when probes are sparser than buckets)."""
    total = Counts()
    covered = down = timedelta(0)
    most = max(bucket, interval)
    for counts in buckets:
        if not counts.total:
            continue
        span = min(interval * counts.total, most)
        total += counts
        covered += span
        down += span * (counts.total - counts.good) / counts.total
    covered = min(covered, window)
    return Measured(window, total, covered, min(down, covered))


@dataclass(frozen=True)
class BurnRule:
    """One multiwindow page rule: the burn rate over both windows at least `threshold`."""

    long: timedelta
    short: timedelta
    threshold: float


PAGE_RULES = (
    BurnRule(timedelta(hours=1), timedelta(minutes=5), 14.4),
    BurnRule(timedelta(hours=6), timedelta(minutes=30), 6.0),
)
WINDOWS = tuple(sorted({w for rule in PAGE_RULES for w in (rule.long, rule.short)}))
"""Every window the page rules read."""


def burn_rate(measured: Measured, target_percent: float) -> float | None:
    """How many times faster than sustainable the budget burns (error rate / allowed error rate); None until probes
    cover enough of the window."""
    availability = measured.availability
    if availability is None or not measured.enough:
        return None
    return (1 - availability) / (1 - target_percent / 100)


@dataclass(frozen=True)
class Burn:
    """A page rule against the data: the burn rate over each of its windows (None: not enough data yet)."""

    rule: BurnRule
    long: Measured
    short: Measured
    long_rate: float | None
    short_rate: float | None

    @property
    def firing(self) -> bool:
        """Both windows have enough data and burn at least the threshold."""
        return (
            self.long_rate is not None
            and self.short_rate is not None
            and self.long_rate >= self.rule.threshold
            and self.short_rate >= self.rule.threshold
        )


@dataclass(frozen=True)
class Budget:
    """Where a target stands against its SLO over the configured window."""

    target_percent: float
    span: timedelta
    window: Measured
    burns: tuple[Burn, ...]

    @property
    def availability(self) -> float | None:
        """Good share of the probes over the window (over the time with data), None without data."""
        return self.window.availability

    @property
    def allowed_minutes(self) -> float:
        """Minutes of downtime the SLO allows over the configured window."""
        return (1 - self.target_percent / 100) * self.span.total_seconds() / 60

    @property
    def spent_minutes(self) -> float:
        """Minutes of downtime measured in the window (time without data is not downtime)."""
        return self.window.down.total_seconds() / 60

    @property
    def left_minutes(self) -> float:
        """Error budget minutes not yet spent, never below zero."""
        return max(self.allowed_minutes - self.spent_minutes, 0.0)

    @property
    def left_fraction(self) -> float:
        """The share of the budget left, in [0, 1]."""
        return min(self.left_minutes / self.allowed_minutes, 1.0) if self.allowed_minutes else 0.0

    @property
    def fast_burn(self) -> bool:
        """A page rule fires."""
        return any(burn.firing for burn in self.burns)

    def rate(self, window: timedelta) -> float | None:
        """The burn rate over one of the rules' long windows (None without enough data)."""
        return next((burn.long_rate for burn in self.burns if burn.rule.long == window), None)

    @property
    def burn_1h(self) -> float | None:
        """The burn rate over the last hour."""
        return self.rate(timedelta(hours=1))

    @property
    def burn_6h(self) -> float | None:
        """The burn rate over the last 6 hours."""
        return self.rate(timedelta(hours=6))


def budget(window: Measured, recent: Mapping[timedelta, Measured], *, target_percent: float, span: timedelta) -> Budget:
    """The standing over `span` (the configured SLO window) from its measurement and those of every `WINDOWS` one."""
    burns = []
    for rule in PAGE_RULES:
        long, short = recent.get(rule.long, Measured(rule.long)), recent.get(rule.short, Measured(rule.short))
        burns.append(Burn(rule, long, short, burn_rate(long, target_percent), burn_rate(short, target_percent)))
    return Budget(target_percent, span, window, tuple(burns))


# --- the figures written for people ----------------------------------------------------------------------------


def percent(share: float) -> str:
    """A share as a percentage to two decimals, rounded down so that anything short of perfect never reads 100%."""
    return f"{math.floor(min(max(share, 0.0), 1.0) * 10_000 + 1e-6) / 100:.2f}%"  # 1e-6: float noise


def availability_text(measured: Measured) -> str:
    """ "99.95% over 3h of data", or "no data yet"."""
    if measured.availability is None:
        return "no data yet"
    return f"{percent(measured.availability)} over {duration(measured.covered)} of data"


def budget_text(standing: Budget) -> str:
    """ "12.5 of 43.2 min left (29%)" or "all 43.2 min spent (52.1 min of downtime)": never negative."""
    if standing.spent_minutes >= standing.allowed_minutes and standing.spent_minutes > 0:
        return f"all {standing.allowed_minutes:.1f} min spent ({standing.spent_minutes:.1f} min of downtime)"
    return (
        f"{standing.left_minutes:.1f} of {standing.allowed_minutes:.1f} min left "
        f"({math.floor(standing.left_fraction * 100)}%)"
    )


def burn_text(standing: Budget) -> str:
    """ "burn 1h 0.5x · 6h not enough data yet"."""
    parts = []
    for burn in standing.burns:
        rate = burn.long_rate
        parts.append(f"{duration(burn.rule.long)} {f'{rate:.1f}x' if rate is not None else 'not enough data yet'}")
    return "burn " + " · ".join(parts)


def burn_summary(standing: Budget) -> str:
    """The fast-burn alert's text: which rule fires, in failed-probe shares and the burn rate, and the budget left."""
    firing = next((burn for burn in standing.burns if burn.firing), None)
    budget_line = f"Error budget over {duration(standing.span)}: {budget_text(standing)}."
    if firing is None:
        return f"No longer burning the error budget fast. {budget_line}"
    failed_long = 1 - (firing.long.availability or 0.0)
    failed_short = 1 - (firing.short.availability or 0.0)
    return (
        f"{percent(failed_long)} of probes failed over the last {duration(firing.rule.long)} and "
        f"{percent(failed_short)} over the last {duration(firing.rule.short)}: the error budget burns "
        f"{firing.long_rate or 0:.0f}x as fast as the {standing.target_percent:g}% SLO allows "
        f"(this alert fires at {firing.rule.threshold:g}x over both). {budget_line}"
    )


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float | None]) -> str:
    """Availability per bucket as blocks (█ = 100%, ▁ = 0 %…), `·` where there is no data."""
    out = []
    for value in values:
        if value is None:
            out.append("·")
        else:
            out.append(SPARK[min(int(value * (len(SPARK) - 1) + 0.5), len(SPARK) - 1)])
    return "".join(out)
