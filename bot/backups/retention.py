"""Retention as a pure function: which good backups a policy keeps, and so which it prunes.

Grandfather-father-son as borg and restic count it: `daily: 7` keeps the newest backup of each of the 7 newest
days that have a backup (likewise ISO weeks and months); the buckets overlap, so one backup may count for all
three. `max_age` keeps backups younger than it; with counts too, a backup is kept only if both keep it. The
newest good backup is always kept, whatever the policy says. Only good backups are considered."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.backups.config import RetentionConfig


@dataclass(frozen=True)
class Candidate:
    """A good backup as retention sees it."""

    id: str
    at: datetime


def _newest_per(candidates: Sequence[Candidate], bucket: Callable[[datetime], tuple[int, ...]], count: int) -> set[str]:
    keep: set[str] = set()
    seen: set[tuple[int, ...]] = set()
    for candidate in candidates:  # newest first
        key = bucket(candidate.at)
        if key in seen:
            continue
        if len(seen) == count:
            break
        seen.add(key)
        keep.add(candidate.id)
    return keep


def kept(candidates: Sequence[Candidate], policy: RetentionConfig, now: datetime) -> set[str]:
    """The ids of the backups `policy` keeps at `now`."""
    ordered = sorted(candidates, key=lambda c: (c.at, c.id), reverse=True)
    if not ordered:
        return set()
    counted = policy.daily is not None or policy.weekly is not None or policy.monthly is not None
    keep = {c.id for c in ordered}
    if counted:
        keep = set()
        if policy.daily:
            keep |= _newest_per(ordered, lambda t: (t.year, t.month, t.day), policy.daily)
        if policy.weekly:
            keep |= _newest_per(ordered, lambda t: tuple(t.isocalendar()[:2]), policy.weekly)
        if policy.monthly:
            keep |= _newest_per(ordered, lambda t: (t.year, t.month), policy.monthly)
    if policy.max_age is not None:
        limit: timedelta = policy.max_age
        keep = {c.id for c in ordered if c.id in keep and now - c.at <= limit}
    keep.add(ordered[0].id)
    return keep


def pruned(candidates: Sequence[Candidate], policy: RetentionConfig, now: datetime) -> list[str]:
    """The ids `policy` lets go, oldest first."""
    keep = kept(candidates, policy, now)
    return [c.id for c in sorted(candidates, key=lambda c: (c.at, c.id)) if c.id not in keep]
