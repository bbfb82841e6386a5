"""Timed DR drills: the newest good backup of a target is restored into a scratch target (a scratch database on
the same PostgreSQL server, a scratch `redis-server` on the RDB, a temporary RDS instance deleted afterwards), the
target's `checks` run on the copy, and the time to restore is compared with the target's `rto`; the RPO at that
moment is the age of the backup used. Each drill is recorded (`/backup drills`), noted on the backup as a
verification, and posted; a failed drill raises the target's `drill` alert and an RTO overrun its `rto` alert,
both resolved by the next good drill. Runs from `verify_schedule` and `/backup drill <target>`."""

from __future__ import annotations

import functools
import logging
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import redis.asyncio as aioredis
from slack_sdk.web.async_client import AsyncWebClient

from bot.backups.alerts import BackupAlerts
from bot.backups.config import (
    DrillCheck,
    ElastiCacheTarget,
    PostgresTarget,
    RdsTarget,
    RedisTarget,
    TargetConfig,
)
from bot.backups.model import (
    BackupRecord,
    DrillCheckResult,
    DrillRecord,
    Verification,
    new_drill_id,
)
from bot.backups.render import drill_text
from bot.backups.runs import SCHEDULE, lock_held, quietly
from bot.backups.targets import BackupTargets
from bot.backups.verify import Verifier
from bot.platform.audit import AuditLog
from bot.platform.errors import UserFacingError, new_ref
from bot.platform.slack_post import post_message
from bot.text.humanize import duration
from integrations.backups.base import BackupError
from integrations.backups.postgres import PostgresEngine
from integrations.backups.redis_rdb import scratch_server

log = logging.getLogger(__name__)


def judge(check: DrillCheck, value: int | None) -> DrillCheckResult:
    """Whether a check's value is within its bounds."""
    if value is None:
        return DrillCheckResult(label=check.label, value=None, ok=False, detail="no number came back")
    ok = (check.min is None or value >= check.min) and (check.max is None or value <= check.max)
    return DrillCheckResult(label=check.label, value=value, ok=ok)


def _number(text: str) -> int | None:
    try:
        return int(float(text))
    except ValueError:
        return None


class DrillRunner:
    """Runs and records the drills of every target; one per `BackupService`."""

    def __init__(
        self,
        *,
        targets: BackupTargets,
        verifier: Verifier,
        alerts: BackupAlerts,
        slack: AsyncWebClient,
        audit: AuditLog,
        clock: Callable[[], datetime],
    ) -> None:
        self._targets = targets
        self._records = targets.records
        self._verifier = verifier
        self._alerts = alerts
        self._slack = slack
        self._audit = audit
        self._clock = clock
        self._ttl = targets.section.lock_ttl

    async def run_scheduled(self, target: str) -> DrillRecord | None:
        """The `verify_schedule` job: a drill, or None when one of the target is already running."""
        return await self.run(target, user=SCHEDULE)

    async def run(
        self, target: str, *, user: str, channel: str | None = None, raise_if_busy: bool = False
    ) -> DrillRecord | None:
        """Runs one drill under the target's drill lock, records it, alerts, and posts it."""
        self._targets.target(target)
        name = f"{target}.verify"
        lock, holder = await self._records.acquire_lock(
            name, holder=user, reason=f"DR drill of {target}", run_id="", now=self._clock(), ttl=self._ttl
        )
        if lock is None:
            if raise_if_busy:
                raise UserFacingError(
                    f"A drill or verification of `{target}` is running "
                    f"({holder.reason if holder else 'busy'}); try again when it is done."
                )
            return None
        async with lock_held(self._records, name, lock, self._ttl):
            record = await self._drill(target, user)
        await self._records.add_drill(record)
        await self._audit.record(
            actor=user,
            action="backup.drill",
            result="ok" if record.good else "failed",
            target=f"{target} {record.backup_id or '-'}",
            channel=channel or "",
            detail=record.detail,
        )
        await self._raise_or_resolve(record)
        where = self._targets.channel(target, channel)
        if where:
            await quietly(post_message(self._slack, where, text=drill_text(record)))
        return record

    async def _drill(self, target: str, user: str) -> DrillRecord:
        config = self._targets.target(target)
        started_at = self._clock()
        rto = config.rto.total_seconds() if config.rto else None
        drill = functools.partial(
            DrillRecord,
            id=new_drill_id(target, started_at),
            target=target,
            kind=config.kind,
            requested_by=user,
            started_at=started_at,
            rto_seconds=rto,
        )
        try:
            backup = await self._verifier.pick(target, None)
        except UserFacingError as refusal:
            return drill(
                backup_id=None,
                finished_at=self._clock(),
                restore_seconds=None,
                backup_age_seconds=None,
                ok=False,
                within_rto=None,
                detail=refusal.message,
            )
        age = (started_at - (backup.finished_at or backup.created_at)).total_seconds()
        try:
            seconds, checks, scratch = await self._restore(config, backup)
            failed = [c for c in checks if not c.ok]
            ok = not failed
            detail = (
                "restored and checked"
                if ok
                else "restored, but " + "; ".join(f"{c.label} found {c.value}" for c in failed)
            )
        except BackupError as error:
            seconds, checks, scratch, ok, detail = None, [], "", False, f"the restore failed: {error}"
        except Exception:
            ref = new_ref()
            log.exception("drill of %s failed inside chatops (ref %s)", target, ref)
            seconds, checks, scratch, ok, detail = None, [], "", False, f"chatops failed during the drill (ref {ref})"
        within = None if rto is None or seconds is None else seconds <= rto
        record = drill(
            backup_id=backup.id,
            finished_at=self._clock(),
            restore_seconds=seconds,
            backup_age_seconds=age,
            ok=ok,
            within_rto=within,
            checks=tuple(checks),
            scratch=scratch,
            detail=detail,
        )
        verification = Verification(
            at=record.finished_at,
            ok=ok,
            by=user,
            detail=f"DR drill {record.id}: {detail}" + (f" (restore {seconds:.1f}s)" if seconds is not None else ""),
        )
        updated = await self._records.update(
            backup.id, lambda r: r.model_copy(update={"verifications": (*r.verifications, verification)[-20:]})
        )
        await quietly(self._targets.write_metadata(updated))
        return record

    async def _restore(self, config: TargetConfig, backup: BackupRecord) -> tuple[float, list[DrillCheckResult], str]:
        """(seconds to restore, check results, where the scratch copy was) for each engine."""
        if isinstance(config, RdsTarget):
            return await self._restore_rds(config, backup)
        # Decrypted when the backup is encrypted; the stream fails at the end if the bytes differ from the record.
        stored = self._targets.read_back(backup)
        started = time.monotonic()
        if isinstance(config, PostgresTarget):
            engine = self._targets.engine(backup.target)
            queries = [c.sql or "" for c in config.checks]
            assert isinstance(engine, PostgresEngine)  # the engine of a PostgresTarget
            facts = await engine.drill(stored.plaintext(), queries)
            results = [judge(c, _number(v)) for c, v in zip(config.checks, facts.values, strict=True)]
            return facts.seconds, results, facts.scratch
        assert isinstance(config, (RedisTarget, ElastiCacheTarget))
        counts: list[int] = []

        async def probe(client: aioredis.Redis) -> None:
            for check in config.checks:
                counts.append(await _count_keys(client, check.keys or "*"))

        loaded = await scratch_server(stored.plaintext(), config.redis_server, probe)
        seconds = time.monotonic() - started
        results = [judge(c, n) for c, n in zip(config.checks, counts, strict=True)]
        if not config.checks:  # nothing to judge: say how many keys came back
            results = [DrillCheckResult(label="keys loaded", value=loaded.total, ok=True)]
        return seconds, results, f"scratch redis-server {loaded.server} ({loaded.total} keys, stopped)"

    async def _restore_rds(self, config: RdsTarget, backup: BackupRecord) -> tuple[float, list[DrillCheckResult], str]:
        """A temporary instance restored from the snapshot, timed until available, then deleted."""
        snapshotter = self._targets.snapshotter(backup.target)
        instance = f"{config.instance[:40]}-drill-{secrets.token_hex(3)}"
        started = time.monotonic()
        try:
            endpoint = await snapshotter.restore(backup.id, instance)
            seconds = time.monotonic() - started
        finally:
            await quietly(snapshotter.delete_instance(instance))
        return (
            seconds,
            [DrillCheckResult(label="instance available", value=None, ok=True, detail=endpoint)],
            f"temporary instance {instance} (deleted)",
        )

    async def _raise_or_resolve(self, record: DrillRecord) -> None:
        target = record.target
        if not record.ok:
            await self._alerts.fire(target, "drill", f"DR drill of {target} failed", f"{record.id}: {record.detail}")
            return
        await self._alerts.resolve(target, "drill", f"DR drill {record.id} of {target} passed.")
        if record.within_rto is False:
            assert record.restore_seconds is not None and record.rto_seconds is not None
            await self._alerts.fire(
                target,
                "rto",
                f"DR drill of {target} exceeded its RTO",
                f"{record.id}: restoring took {_span(record.restore_seconds)}, "
                f"over the RTO of {_span(record.rto_seconds)}",
            )
        else:
            await self._alerts.resolve(target, "rto", f"DR drill {record.id} of {target} restored within its RTO.")


async def _count_keys(client: aioredis.Redis, pattern: str) -> int:
    """Keys matching `pattern` in the scratch server's database 0 (DBSIZE for `*`)."""
    if pattern == "*":
        return int(await client.dbsize())
    count = 0
    async for _ in client.scan_iter(match=pattern, count=1000):
        count += 1
    return count


def _span(seconds: float) -> str:
    return duration(timedelta(seconds=seconds))
