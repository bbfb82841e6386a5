"""Acknowledgement figures, as pure functions over ack records: count, mean and p90 time to acknowledge per
person and per rotation."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import fmean


@dataclass(frozen=True)
class AckFigures:
    """How fast one person (or rotation) acknowledged: `count` acks, their mean and 90th percentile."""

    who: str
    count: int
    mean: timedelta
    p90: timedelta


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (`fraction` in (0, 1]) of non-empty `values`: a value that really occurred."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(math.ceil(fraction * len(ordered)), 1)
    return ordered[rank - 1]


def figures_by(acks: Iterable[Mapping[str, str]], field: str) -> list[AckFigures]:
    """Figures grouped by `field` ("user" or "rotation"), records without it left out, slowest p90 first."""
    seconds: dict[str, list[float]] = {}
    for ack in acks:
        key = ack.get(field, "")
        try:
            value = float(ack["seconds_to_ack"])
        except (KeyError, ValueError):
            continue
        if key and math.isfinite(value) and value >= 0:
            seconds.setdefault(key, []).append(value)
    figures = [
        AckFigures(key, len(values), timedelta(seconds=fmean(values)), timedelta(seconds=percentile(values, 0.9)))
        for key, values in seconds.items()
    ]
    return sorted(figures, key=lambda f: (-f.p90, f.who))


def within(acks: Iterable[Mapping[str, str]], since: datetime, user: str | None = None) -> list[Mapping[str, str]]:
    """Ack records at or after `since` (and by `user`, when given); unreadable ones left out."""
    kept = []
    for ack in acks:
        try:
            at = datetime.fromisoformat(ack["at"])
        except (KeyError, ValueError):
            continue
        if at >= since and (user is None or ack.get("user") == user):
            kept.append(ack)
    return kept
