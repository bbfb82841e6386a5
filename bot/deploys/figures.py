"""The delivery figures teams track, computed from deploy history: deploy frequency, success rate,
change-failure rate, mean time to restore and lead time for changes (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.deploys.model import DeployRecord, DeployState
from bot.text.humanize import duration, plural

FAILED_STATES = frozenset({DeployState.FAILED, DeployState.ROLLED_BACK, DeployState.INTERRUPTED})


@dataclass(frozen=True)
class Figures:
    """Figures over a window of days."""

    window_days: int
    deploys: int
    per_day: float
    success_rate: float | None
    change_failure_rate: float | None
    mean_time_to_restore: timedelta | None
    rollbacks: int
    lead_time: timedelta | None = None  # median, commit to successful deploy, where the commit is known
    lead_time_deploys: int = 0

    def describe(self) -> str:
        """One line for people."""
        def pct(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.0%}"

        mttr = duration(self.mean_time_to_restore) if self.mean_time_to_restore is not None else "n/a"
        # Says which deploys count: a listing beside it also shows rollbacks, rejected and unfinished ones.
        return (
            f"Last {plural(self.window_days, 'day')}: {plural(self.deploys, 'finished deploy')}"
            f" (not counting rollback runs, rejected or unfinished requests; {self.per_day:.1f}/day),"
            f" success {pct(self.success_rate)}, "
            f"change failure {pct(self.change_failure_rate)}, rollbacks {self.rollbacks}, MTTR {mttr}"
            + (f", lead time {duration(self.lead_time)} (median of {self.lead_time_deploys})"
               if self.lead_time is not None else "")
        )


def compute_figures(records: Sequence[DeployRecord], now: datetime, window: timedelta = timedelta(days=30)) -> Figures:
    """Figures over `window` from finished deploys (any order)."""
    since = now - window
    finished = sorted((r for r in records if r.finished_at and r.finished_at >= since), key=lambda r: r.finished_at or now)
    deploys = [r for r in finished if r.kind == "deploy" and r.state in FAILED_STATES | {DeployState.SUCCEEDED}]
    succeeded = [r for r in deploys if r.state == DeployState.SUCCEEDED]
    failed = [r for r in deploys if r.state in FAILED_STATES]
    restores: list[timedelta] = []
    for failure in failed:
        start = failure.started_at or failure.created_at
        if failure.state == DeployState.ROLLED_BACK and failure.finished_at:
            restores.append(failure.finished_at - start)
            continue
        later = [
            r for r in finished
            if r.environment == failure.environment and r.state == DeployState.SUCCEEDED and r.finished_at and failure.finished_at
            and r.finished_at > failure.finished_at
        ]
        if later and later[0].finished_at:
            restores.append(later[0].finished_at - start)
    leads = sorted(
        max(r.finished_at - r.commit_at, timedelta(0)) for r in succeeded if r.commit_at is not None and r.finished_at
    )
    days = max(window.days, 1)
    return Figures(
        window_days=days,
        deploys=len(deploys),
        per_day=len(deploys) / days,
        success_rate=len(succeeded) / len(deploys) if deploys else None,
        change_failure_rate=len(failed) / len(deploys) if deploys else None,
        mean_time_to_restore=sum(restores, timedelta()) / len(restores) if restores else None,
        rollbacks=len([r for r in finished if r.kind == "rollback" or r.state == DeployState.ROLLED_BACK]),
        lead_time=_median(leads),
        lead_time_deploys=len(leads),
    )


def _median(spans: Sequence[timedelta]) -> timedelta | None:
    """The median of sorted `spans` (the mean of the middle two for an even count); None for none."""
    if not spans:
        return None
    middle = len(spans) // 2
    return spans[middle] if len(spans) % 2 else (spans[middle - 1] + spans[middle]) / 2
