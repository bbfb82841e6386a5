"""SLO arithmetic as pure functions over probe counts: availability, the error budget left, burn rates, and the
multi-window fast-burn test (Google SRE workbook: 2% of a 30-day budget in an hour)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

FAST_BURN_1H = 14.4
FAST_BURN_6H = 6.0


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
class Budget:
    """Where a target stands against its SLO over the window."""

    availability: float | None
    allowed_minutes: float
    spent_minutes: float
    burn_1h: float | None
    burn_6h: float | None

    @property
    def left_minutes(self) -> float:
        """Error budget minutes not yet spent (negative when overspent)."""
        return self.allowed_minutes - self.spent_minutes

    @property
    def left_fraction(self) -> float:
        """The share of the budget left (negative when overspent)."""
        return self.left_minutes / self.allowed_minutes if self.allowed_minutes else 0.0

    @property
    def fast_burn(self) -> bool:
        """Both windows burn fast: page-worthy."""
        return (self.burn_1h or 0) >= FAST_BURN_1H and (self.burn_6h or 0) >= FAST_BURN_6H


def burn_rate(counts: Counts, target_percent: float) -> float | None:
    """How many times faster than sustainable the budget burns: error rate / allowed error rate."""
    availability = counts.availability
    if availability is None:
        return None
    return (1 - availability) / (1 - target_percent / 100)


def budget(window: Counts, last_hour: Counts, last_6h: Counts, *, target_percent: float, span: timedelta) -> Budget:
    """The error budget over `span`: allowed minutes = (1 - target) x span; spent = bad share x span (probes are
    evenly spaced, so the bad share of probes is the bad share of time)."""
    allowed = (1 - target_percent / 100) * span.total_seconds() / 60
    availability = window.availability
    spent = (1 - availability) * span.total_seconds() / 60 if availability is not None else 0.0
    return Budget(availability, allowed, spent, burn_rate(last_hour, target_percent), burn_rate(last_6h, target_percent))


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
