"""The delivery figures teams track, computed from deploy history: deploy frequency, success rate,
change-failure rate, mean time to restore and lead time for changes (pure functions).

`compute_figures` is the reference: it reads every record of the window. `/deploy history` reads the same figures
from running daily counters instead (bot/deploys/store.py): `tally` says what one finished record adds to them,
`backfill_tallies` does the same for records an earlier version finished, and `figures_from_days` turns the window's
counters back into `Figures`. Equal to `compute_figures` over the window of `calendar_window`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bot.deploys.model import DeployRecord, DeployState
from bot.text.humanize import duration, plural

FAILED_STATES = frozenset({DeployState.FAILED, DeployState.ROLLED_BACK, DeployState.INTERRUPTED})
WINDOW_DAYS = 30
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The counters of one day: finished deploys (kind deploy, succeeded or failed), succeeded, failed, rollbacks (rollback
# runs and rolled-back deploys), restores (failures of that day since restored) and their total time in microseconds.
COUNTERS = ("deploys", "succeeded", "failed", "rollbacks", "restores", "restore_us")


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
            + (
                f", lead time {duration(self.lead_time)} (median of {self.lead_time_deploys})"
                if self.lead_time is not None
                else ""
            )
        )


def compute_figures(records: Sequence[DeployRecord], now: datetime, window: timedelta = timedelta(days=30)) -> Figures:
    """Figures over `window` from finished deploys (any order)."""
    since = now - window
    finished = sorted(
        (r for r in records if r.finished_at and r.finished_at >= since), key=lambda r: r.finished_at or now
    )
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
            r
            for r in finished
            if r.environment == failure.environment
            and r.state == DeployState.SUCCEEDED
            and r.finished_at
            and failure.finished_at
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


# -- the running aggregate ---------------------------------------------------------------------------------------


def micros(at: datetime) -> int:
    """`at` as whole microseconds since the epoch (exact: what the counters and scores hold)."""
    return (at - EPOCH) // timedelta(microseconds=1)


def day_key(at: datetime) -> str:
    """The UTC day of `at` as the counters name it (`yyyymmdd`)."""
    return f"{at.astimezone(UTC):%Y%m%d}"


def calendar_window(now: datetime, days: int = WINDOW_DAYS) -> tuple[list[str], datetime]:
    """The UTC days the figures cover (today and the `days - 1` before it, oldest first) and the midnight that ends
    them: `compute_figures(records, end, timedelta(days=days))` is the reference over the same window."""
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    end = datetime.combine(today + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    return [f"{first + timedelta(days=n):%Y%m%d}" for n in range(days)], end


@dataclass(frozen=True)
class Waiting:
    """A failure not yet restored: when it started (the restore time counts from there) and its day's counters."""

    started_us: int
    deploy_id: str
    day: str

    def member(self) -> str:
        """Its member in the sorted set of failures waiting for a success (scored by when it finished)."""
        return f"{self.started_us}:{self.day}:{self.deploy_id}"


@dataclass(frozen=True)
class Tally:
    """What one finished record adds to the counters of the day it finished (see COUNTERS)."""

    day: str
    finished_us: int
    counts: Mapping[str, int]
    lead_us: int | None = None  # a succeeded deploy whose commit time is known
    waiting: Waiting | None = None  # a failure that waits for a later success of its environment
    restores: bool = False  # a success: restores the failures of its environment that finished before it


def tally(record: DeployRecord) -> Tally | None:
    """What `record` adds to the counters once it finished, exactly as `compute_figures` counts it; None when it
    has no finish time (compute_figures ignores it too)."""
    if record.finished_at is None:
        return None
    counts = dict.fromkeys(COUNTERS, 0)
    day, finished = day_key(record.finished_at), micros(record.finished_at)
    is_deploy = record.kind == "deploy" and record.state in FAILED_STATES | {DeployState.SUCCEEDED}
    failed = is_deploy and record.state in FAILED_STATES
    counts["deploys"] = int(is_deploy)
    counts["succeeded"] = int(is_deploy and record.state == DeployState.SUCCEEDED)
    counts["failed"] = int(failed)
    counts["rollbacks"] = int(record.kind == "rollback" or record.state == DeployState.ROLLED_BACK)
    started = micros(record.started_at or record.created_at)
    waiting = None
    if failed and record.state == DeployState.ROLLED_BACK:  # its own rollback restored it
        counts["restores"], counts["restore_us"] = 1, finished - started
    elif failed:
        waiting = Waiting(started, record.id, day)
    lead = None
    if counts["succeeded"] and record.commit_at is not None:
        lead = max(finished - micros(record.commit_at), 0)
    return Tally(
        day=day,
        finished_us=finished,
        counts=counts,
        lead_us=lead,
        waiting=waiting,
        restores=record.state == DeployState.SUCCEEDED,
    )


@dataclass
class Backfill:
    """What records finished by an earlier version (not yet counted) add: counters and lead times per day, and the
    failures still waiting for a success."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    leads: dict[str, list[int]] = field(default_factory=dict)
    waiting: list[tuple[int, Waiting]] = field(default_factory=list)  # (finished_us, failure)

    def add(self, day: str, counter: str, amount: int) -> None:
        """Adds to one day's counter."""
        if amount:
            day_counts = self.counts.setdefault(day, dict.fromkeys(COUNTERS, 0))
            day_counts[counter] += amount


def backfill_tallies(records: Iterable[DeployRecord], counted: Iterable[str]) -> Backfill:
    """The counters that the records of one service environment not in `counted` (counted when they finished) add;
    a failure among them is restored by the first success of all `records` that finished after it, as in
    `compute_figures`, or else waits for one."""
    done = set(counted)
    tallies = [(record, t) for record in records if (t := tally(record)) is not None]
    successes = sorted(t.finished_us for _, t in tallies if t.restores)
    result = Backfill()
    for record, t in tallies:
        if record.id in done:
            continue
        for counter, amount in t.counts.items():
            result.add(t.day, counter, amount)
        if t.lead_us is not None:
            result.leads.setdefault(t.day, []).append(t.lead_us)
        if t.waiting is not None:
            later = next((s for s in successes if s > t.finished_us), None)
            if later is None:
                result.waiting.append((t.finished_us, t.waiting))
            else:
                result.add(t.day, "restores", 1)
                result.add(t.day, "restore_us", later - t.waiting.started_us)
    return result


def figures_from_days(
    days: Iterable[Mapping[str, str]],
    leads: Iterable[str],
    window_days: int = WINDOW_DAYS,
) -> Figures:
    """The figures from the window's daily counters (as Redis answers them) and lead times in microseconds."""
    totals = dict.fromkeys(COUNTERS, 0)
    for counters in days:
        for name in COUNTERS:
            totals[name] += int(counters.get(name, 0))
    deploys = totals["deploys"]
    spans = sorted(timedelta(microseconds=int(lead)) for lead in leads)
    return Figures(
        window_days=window_days,
        deploys=deploys,
        per_day=deploys / window_days,
        success_rate=totals["succeeded"] / deploys if deploys else None,
        change_failure_rate=totals["failed"] / deploys if deploys else None,
        mean_time_to_restore=(
            timedelta(microseconds=totals["restore_us"]) / totals["restores"] if totals["restores"] else None
        ),
        rollbacks=totals["rollbacks"],
        lead_time=_median(spans),
        lead_time_deploys=len(spans),
    )
