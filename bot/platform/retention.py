"""The `retention:` section: how long history is kept in Redis, so its memory stays bounded.

The leader applies it every `every`, at most `batch` records per kind and run (see bot/shell/pruning.py): resolved alert
groups, their ingest-stream entries and daily counters older than `alerts`; acknowledgements older than
`acknowledgements`; finished deploy records older than `deploys` (never a running one, never the deploy that put a
running version in place) and the deploy figures' daily counters of days before it; finished backup records
older than `backups` that hold no backup object (failed, interrupted, pruned: a succeeded backup's record lives as
long as its object); audit entries older than `audit`
(export them first with `chatops audit export --since DATE`). Each minimum is the longest window a command reads,
so no figure ever covers data that was removed.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, field_validator

from integrations.types import Duration, StrictModel, format_duration

# The longest window each kind of history is read over: `/alerts stats` (90d), `/oncall acks` (365d), the deploy
# figures of `/deploy history` (30d). Retention shorter than these would make the figures silently wrong.
ALERT_STATS_WINDOW = timedelta(days=90)
ACK_STATS_WINDOW = timedelta(days=365)
DEPLOY_FIGURES_WINDOW = timedelta(days=30)
SHORTEST = timedelta(days=1)


class RetentionSection(StrictModel):
    """`retention:` — how long each kind of history is kept, and how the leader applies it."""

    alerts: Duration = timedelta(days=90)
    acknowledgements: Duration = timedelta(days=400)
    deploys: Duration = timedelta(days=400)
    backups: Duration = timedelta(days=400)
    audit: Duration = timedelta(days=400)
    every: Duration = timedelta(minutes=10)
    batch: int = Field(500, ge=100, le=10_000)  # >= a stream node (100 entries): smaller trims nothing

    @field_validator("alerts")
    @classmethod
    def _alerts(cls, value: timedelta) -> timedelta:
        """Covers the longest `/alerts stats` window."""
        return _at_least(value, ALERT_STATS_WINDOW, "the longest `/alerts stats` window")

    @field_validator("acknowledgements")
    @classmethod
    def _acknowledgements(cls, value: timedelta) -> timedelta:
        """Covers the longest `/oncall acks` window."""
        return _at_least(value, ACK_STATS_WINDOW, "the longest `/oncall acks` window")

    @field_validator("deploys")
    @classmethod
    def _deploys(cls, value: timedelta) -> timedelta:
        """Covers the window of the deploy figures."""
        return _at_least(value, DEPLOY_FIGURES_WINDOW, "the window of the `/deploy history` figures")

    @field_validator("backups", "audit")
    @classmethod
    def _some(cls, value: timedelta) -> timedelta:
        """At least a day: 0 would remove records as they are written."""
        return _at_least(value, SHORTEST, "the shortest retention")

    @field_validator("every")
    @classmethod
    def _every(cls, value: timedelta) -> timedelta:
        """Often enough to keep up, rarely enough to cost nothing."""
        if not timedelta(minutes=1) <= value <= timedelta(days=1):
            raise ValueError(f"must be from 1m to 1d (got {format_duration(value)})")
        return value


def _at_least(value: timedelta, minimum: timedelta, why: str) -> timedelta:
    """`value`, or a ValueError saying the minimum and why when it is shorter."""
    if value < minimum:
        raise ValueError(f"must be at least {_days(minimum)}, {why} (got {_days(value)})")
    return value


def _days(value: timedelta) -> str:
    """A retention as people write it: whole days as "90d" (not "12w6d"), anything else canonically."""
    return f"{value.days}d" if value and value == timedelta(days=value.days) else format_duration(value)
