"""The retention job: applies `retention:` (bot/platform/retention.py) to every domain's history, on the leader, in
bounded batches. Each batch is one short Redis call over at most `batch` records, found through an index (the
time-ordered sorted sets, stream ids, known day keys): never a scan of the keyspace, never a blocking command."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from bot.alerts.store import AlertStore
from bot.backups.store import BackupStore
from bot.deploys.store import DeployStore
from bot.platform.audit import AuditLog
from bot.platform.retention import RetentionSection

log = logging.getLogger(__name__)

# Batches per kind and run: a backlog (retention just switched on) drains over a few runs, each run stays short.
MAX_BATCHES = 20


@dataclass
class Removed:
    """What one run removed, per kind (for the log and the tests)."""

    alert_groups: int = 0
    alert_days: int = 0
    stream_entries: int = 0
    deploys: int = 0
    backups: int = 0
    audit_entries: int = 0
    acks_backfilled: bool = False
    batches: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Pruner:
    """Removes what `retention` says is old; run by the leader every `retention.every`."""

    retention: RetentionSection
    alerts: AlertStore
    deploys: DeployStore
    backups: BackupStore
    audit: AuditLog
    deploy_keys: Callable[[], list[tuple[str, str]]]
    backup_targets: Callable[[], list[str]]
    clock: Callable[[], datetime]

    async def job(self, missed: object | None = None) -> None:
        """The scheduled job (a missed run is simply the next one)."""
        await self.run()

    async def run(self) -> Removed:
        """One pass over every kind; each stops early when nothing old is left."""
        r, now, done = self.retention, self.clock(), Removed()
        done.acks_backfilled = await self.alerts.backfill_ack_counters(r.batch)  # before the ack stream is trimmed
        skip = 0
        for number in range(MAX_BATCHES):
            pruned = await self.alerts.prune_groups(now - r.alerts, r.batch, skip=skip)
            done.alert_groups += pruned.groups
            skip += pruned.kept
            done.batches["alert_groups"] = number + 1
            if not pruned.more:
                break
        done.alert_days = await self.alerts.prune_days(now - r.alerts, r.batch)
        done.stream_entries = await self.alerts.trim_streams(now - r.alerts, now - r.acknowledgements, r.batch)
        await self.deploys.backfill_figures(self.deploy_keys(), now, r.batch)  # deploys finished by earlier versions
        for service, environment in self.deploy_keys():
            await self.deploys.prune_figures(service, environment, now - r.deploys, r.batch)

            def deploys_batch(b: int, s: int, svc: str = service, env: str = environment) -> Awaitable[tuple[int, int]]:
                return self.deploys.prune(svc, env, now - r.deploys, b, skip=s)

            done.deploys += await _drain(deploys_batch, r.batch)
        for target in self.backup_targets():

            def backups_batch(b: int, s: int, t: str = target) -> Awaitable[tuple[int, int]]:
                return self.backups.prune(t, now - r.backups, b, skip=s)

            done.backups += await _drain(backups_batch, r.batch)
        for _ in range(MAX_BATCHES):
            trimmed = await self.audit.trim(now - r.audit, r.batch)
            done.audit_entries += trimmed
            if trimmed == 0:
                break
        if any((done.alert_groups, done.deploys, done.backups, done.audit_entries, done.stream_entries)):
            log.info(
                "retention removed %d alert groups, %d stream entries, %d deploys, %d backups, %d audit entries",
                done.alert_groups,
                done.stream_entries,
                done.deploys,
                done.backups,
                done.audit_entries,
            )
        return done


async def _drain(batch_of: Callable[[int, int], Awaitable[tuple[int, int]]], batch: int) -> int:
    """Runs `batch_of(batch, skip)` (a prune returning (removed, kept)) until a short batch, at most MAX_BATCHES."""
    removed = skip = 0
    for _ in range(MAX_BATCHES):
        gone, kept = await batch_of(batch, skip)
        removed += gone
        skip += kept
        if gone + kept < batch:
            break
    return removed
