"""The backup service: runs backups (one per target at a time, under a Redis lock with an owner token, renewed
while it runs), streams them into storage, reports progress in one Slack message updated at most once a second,
prunes by retention after each success, and raises (and resolves) alerts for failures and RPO breaches. It owns
the verifier (`verify.py`) and the restores (`restores.py`), which share its targets (`targets.py`). Scheduled
work is exposed by `jobs()` for the leader scheduler to register; `tick()` expires restore requests and marks
dead runs interrupted.

A run killed mid-upload leaves its record `running` and its upload incomplete: the next run of the target (which
holds the lock, so no other run is live) or the tick (which sees the lock is not held by the record's token)
marks it interrupted and aborts the upload. Only a completed object is ever recorded as a backup."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.alerts.pipeline import AlertPipeline
from bot.backups.alerts import BackupAlerts
from bot.backups.config import (
    BackupsSection,
    ElastiCacheTarget,
    RdsTarget,
    TargetConfig,
    cron_trigger,
)
from bot.backups.drills import DrillRunner
from bot.backups.model import BackupRecord, BackupState, DrillRecord, Encryption, RestoreRecord, new_backup_id
from bot.backups.render import backup_message, dr_status_lines, progress_text
from bot.backups.restores import RestoreService
from bot.backups.retention import Candidate, pruned
from bot.backups.runs import SCHEDULE, lock_held, quietly
from bot.backups.store import BackupStore as BackupRecords
from bot.backups.targets import BackupTargets
from bot.backups.verify import Verifier
from bot.platform.audit import AuditLog
from bot.platform.errors import UserFacingError, new_ref
from bot.platform.locks import LockInfo
from bot.platform.slack_post import post_message
from bot.platform.tasks import BackgroundTasks
from bot.text.humanize import duration
from integrations.backups.base import BackupError, BackupStore, Progress, stream_upload
from integrations.backups.envelope import SCHEME, seal

log = logging.getLogger(__name__)

Job = Callable[[object | None], Awaitable[None]]
PROGRESS_EVERY = 1.0


class BackupService:
    """Backups of the configured targets, and (through `verifier` and `restores`) their verifications and
    restores; one per process."""

    def __init__(
        self,
        section: BackupsSection,
        *,
        announce_channel: str | None,
        records: BackupRecords,
        slack: AsyncWebClient,
        audit: AuditLog,
        alerts: AlertPipeline,
        tasks: BackgroundTasks,
        clock: Callable[[], datetime],
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.section = section
        self._records = records
        self._slack = slack
        self._audit = audit
        self._tasks = tasks
        self._clock = clock
        self._environ = dict(os.environ if environ is None else environ)
        self._ttl = self.section.lock_ttl
        self._targets = BackupTargets(
            section, announce_channel=announce_channel, records=records, environ=self._environ
        )
        self._alerts = BackupAlerts(records=records, pipeline=alerts, clock=clock)
        self.verifier = Verifier(targets=self._targets, alerts=self._alerts, slack=slack, audit=audit, clock=clock)
        self.restores = RestoreService(targets=self._targets, slack=slack, audit=audit, tasks=tasks, clock=clock)
        self.drills = DrillRunner(
            targets=self._targets, verifier=self.verifier, alerts=self._alerts, slack=slack, audit=audit, clock=clock
        )

    # -- lookups ------------------------------------------------------------------------------------------

    def target(self, name: str) -> TargetConfig:
        """A target's configuration; a refusal naming the known ones otherwise."""
        return self._targets.target(name)

    async def backup(self, backup_id: str, *, target: str | None = None) -> BackupRecord:
        """A recorded backup (of `target`, when given); a refusal otherwise."""
        return await self._targets.backup(backup_id, target=target)

    # -- running ------------------------------------------------------------------------------------------

    async def get(self, backup_id: str) -> BackupRecord | None:
        """A recorded backup, or None when there is no such backup."""
        return await self._records.get(backup_id)

    async def history(self, target: str, limit: int) -> list[BackupRecord]:
        """A target's newest backups, newest first."""
        return await self._records.history(target, limit)

    async def drill_history(self, target: str, limit: int) -> list[DrillRecord]:
        """A target's newest restore drills, newest first."""
        return await self._records.drills(target, limit)

    async def get_restore(self, restore_id: str) -> RestoreRecord | None:
        """A restore request, or None when there is no such restore."""
        return await self._records.get_restore(restore_id)

    async def recent_restores(self, limit: int) -> list[RestoreRecord]:
        """The newest restore requests, newest first."""
        return await self._records.recent_restores(limit)

    async def start(self, target: str, *, user: str, reason: str = "", channel: str | None = None) -> BackupRecord:
        """Takes the target's lock and starts a backup in the background; a refusal if one is running."""
        self.target(target)
        lock = await self._lock(target, user, f"backup of {target}", raise_if_held=True)
        assert lock is not None
        try:
            record = await self._begin(target, user=user, reason=reason, lock=lock, channel=channel)
        except BaseException:
            await self._records.release_lock(target, lock.token)
            raise
        self._tasks.spawn(self._execute(record, lock), name=f"backup:{record.id}")
        return record

    async def run_scheduled(self, target: str) -> BackupRecord | None:
        """A scheduled backup, run to the end; None when another process holds the target (it runs it)."""
        lock = await self._lock(target, SCHEDULE, f"scheduled backup of {target}", raise_if_held=False)
        if lock is None:
            log.info("scheduled backup of %s skipped: another process holds its lock", target)
            return None
        try:
            record = await self._begin(target, user=SCHEDULE, reason="scheduled", lock=lock, channel=None)
        except BaseException:
            await self._records.release_lock(target, lock.token)
            raise
        return await self._execute(record, lock)

    async def _lock(self, target: str, user: str, reason: str, *, raise_if_held: bool) -> LockInfo | None:
        lock, holder = await self._records.acquire_lock(
            target,
            holder=user,
            reason=reason,
            run_id="",
            now=self._clock(),
            ttl=self._ttl,
        )
        if lock is None and raise_if_held:
            who = (
                f"<@{holder.holder}>"
                if holder and holder.holder.startswith("U")
                else (holder.holder if holder else "someone")
            )
            since = f" since {holder.since:%H:%M:%S}Z" if holder else ""
            what = holder.reason if holder else "a backup"
            raise UserFacingError(
                f"`{target}` is busy: {what} by {who}{since}. One backup or restore per target at a time."
            )
        return lock

    async def _begin(self, target: str, *, user: str, reason: str, lock: LockInfo, channel: str | None) -> BackupRecord:
        """With the lock held: clears what dead runs left, records the new run and posts its message."""
        await self.recover(target)
        config = self.target(target)
        now = self._clock()
        backup_id = new_backup_id(target, now)
        storage = getattr(config, "storage", None)
        record = BackupRecord(
            id=backup_id,
            target=target,
            kind=config.kind,
            state=BackupState.RUNNING,
            requested_by=user,
            reason=reason,
            created_at=now,
            storage=storage,
            lock_token=lock.token,
        )
        await self._records.create(record)
        await self._audit.record(
            actor=user,
            action="backup.run",
            result="ok",
            target=f"{target} {backup_id}",
            channel=channel or "",
            detail=reason,
        )
        where = self._targets.channel(target, channel)
        if where:
            try:
                text, blocks = backup_message(record, progress="starting")
                posted = await post_message(self._slack, where, text=text, blocks=blocks)
                record = await self._records.update(
                    record.id, lambda r: r.model_copy(update={"channel": posted["channel"], "message_ts": posted["ts"]})
                )
            except SlackApiError as error:
                log.warning("could not post backup %s to %s: %s", record.id, where, error.response.get("error"))
        return record

    async def _execute(self, record: BackupRecord, lock: LockInfo) -> BackupRecord:
        """Streams (or snapshots) the backup, finishes the record, alerts, prunes; always releases the lock."""
        async with lock_held(self._records, record.target, lock, self._ttl):
            return await self._stream(record)

    async def _stream(self, record: BackupRecord) -> BackupRecord:
        target = record.target
        config = self.target(target)
        throttle = _Throttle(self, record)
        try:
            if isinstance(config, RdsTarget):
                location, size = await self._targets.snapshotter(target).snapshot(record.id, throttle.update)
                key, sha256, seconds = None, None, time.monotonic() - throttle.started
                record = await self._off_box(record, config, location)
                retain_until = None
            elif isinstance(config, ElastiCacheTarget):
                record, location, size, sha256, retain_until = await self._export_cache(record, config, throttle)
                key, seconds = record.key, time.monotonic() - throttle.started
            else:
                store = self._targets.store_for(target)
                engine = self._targets.engine(target)
                key = f"{target}/{record.id}.{engine.extension}"
                record, stored = await self._store(record, store, key, engine.dump(store.part_size), throttle)
                location, size, sha256, seconds, retain_until = stored
            now = self._clock()
            record = await self._records.update(
                record.id,
                lambda r: r.model_copy(
                    update={
                        "state": BackupState.SUCCEEDED,
                        "finished_at": now,
                        "size": size,
                        "sha256": sha256,
                        "seconds": round(seconds, 3),
                        "location": location,
                        "upload_id": None,
                        "retain_until": retain_until,
                    }
                ),
            )
        except asyncio.CancelledError:
            await asyncio.shield(
                self._finish_badly(
                    record.id,
                    BackupState.INTERRUPTED,
                    "The run was stopped (chatops shut down or the task was cancelled); nothing was stored.",
                )
            )
            raise
        except BackupError as error:
            return await self._finish_badly(record.id, BackupState.FAILED, str(error))
        except Exception:
            ref = new_ref()
            log.exception("backup %s failed inside chatops (ref %s)", record.id, ref)
            return await self._finish_badly(
                record.id, BackupState.FAILED, f"chatops failed while running it (ref {ref})."
            )
        await self._targets.write_metadata(record)
        await self._refresh(record)
        await self._audit.record(
            actor=record.requested_by,
            action="backup.finish",
            result="ok",
            target=record.id,
            detail=f"{record.size} bytes sha256 {record.sha256}",
        )
        await self._alerts.resolve(target, "failed", f"Backup of {target} succeeded again ({record.id}).")
        await self._alerts.resolve(target, "rpo", f"{target} has a fresh backup ({record.id}).")
        try:
            await self.prune(target)
        except Exception:
            log.exception("pruning %s failed", target)
        return record

    async def _off_box(self, record: BackupRecord, config: RdsTarget, arn: str) -> BackupRecord:
        """The RDS snapshot's copy in another region and its export to S3, each recorded when complete. A failure
        keeps the snapshot (it restores) but raises the target's `offbox` alert; the next success resolves it."""
        snapshotter = self._targets.snapshotter(record.target)
        update: dict[str, Any] = {}
        problems = []
        if config.copy_to is not None:
            try:
                update["copy_location"] = await snapshotter.copy(record.id, arn)
            except BackupError as error:
                problems.append(f"copy to {config.copy_to.region} failed: {error}")
        if config.export_to is not None:
            store = self._targets.s3_store(config.export_to.storage)
            try:
                update["export_location"] = await snapshotter.export(
                    record.id, arn, bucket=store.bucket, prefix=store.full(f"{record.target}/exports")
                )
            except BackupError as error:
                problems.append(f"export to S3 failed: {error}")
        if problems:
            update["detail"] = "The snapshot is kept, but " + "; ".join(problems)
            await self._alerts.fire(
                record.target,
                "offbox",
                f"Off-box copy of {record.target} failed",
                f"{record.id}: " + "; ".join(problems),
            )
        elif update:
            await self._alerts.resolve(record.target, "offbox", f"{record.id} of {record.target} is copied off-box.")
        return await self._records.update(record.id, lambda r: r.model_copy(update=update)) if update else record

    async def _export_cache(
        self, record: BackupRecord, config: ElastiCacheTarget, throttle: _Throttle
    ) -> tuple[BackupRecord, str, int, str, datetime | None]:
        """ElastiCache: snapshot, export into the target's S3 storage, then stream the RDB under our layout as every
        other backup is stored (encrypted and locked when the storage says so; size and sha256 of the stored bytes),
        and delete the export: (record, location, size, sha256, locked until)."""
        snapshotter = self._targets.cache_snapshotter(record.target)
        store = self._targets.s3_store(config.storage)
        await snapshotter.snapshot(record.id, throttle.update)
        record = await self._records.update(record.id, lambda r: r.model_copy(update={"snapshot": r.id}))
        exported = await snapshotter.export(record.id, store.bucket)
        deadline = time.monotonic() + snapshotter.timeout
        while not (found := [k for k in await store.keys_under(exported) if k.endswith(".rdb")]):
            if time.monotonic() > deadline:
                raise BackupError(
                    f"ElastiCache did not write the export {exported}*.rdb into {store.bucket} before "
                    "the timeout (does the bucket grant ElastiCache access?)"
                )
            await throttle.update(Progress(0, time.monotonic() - throttle.started), "exporting to S3")
            await asyncio.sleep(snapshotter.poll_interval)
        if len(found) > 1:
            await store.delete_prefix(exported)
            raise BackupError(
                f"the export wrote {len(found)} RDB files (one per shard of a cluster-mode group); "
                "chatops backs up single-shard groups and cache clusters"
            )
        key = f"{record.target}/{record.id}.rdb"
        record, (location, size, sha256, _, retain_until) = await self._store(
            record, store, key, store.read_absolute(found[0]), throttle
        )
        await store.delete_absolute(found[0])  # the export, now stored under our layout
        return record, location, size, sha256, retain_until

    async def _store(
        self,
        record: BackupRecord,
        store: BackupStore,
        key: str,
        dump: AsyncIterator[bytes],
        throttle: _Throttle,
    ) -> tuple[BackupRecord, tuple[str, int, str, float, datetime | None]]:
        """Streams `dump` into `key` (sealed when the storage encrypts; the upload aborted if anything fails) and
        returns the record that names the object, and (location, size, sha256 of the stored bytes, seconds, locked
        until)."""
        chunks, encryption = await self._sealed(record.target, key, dump)
        upload = await store.begin(key)
        record = await self._records.update(
            record.id,
            lambda r: r.model_copy(update={"key": key, "upload_id": upload.upload_id, "encryption": encryption}),
        )
        try:
            streamed = await stream_upload(chunks, upload, throttle.progress)
            location = await upload.complete()
        except BaseException:
            await asyncio.shield(quietly(upload.abort()))
            raise
        return record, (location, streamed.size, streamed.sha256, streamed.seconds, upload.retain_until)

    async def _sealed(
        self,
        target: str,
        key: str,
        dump: AsyncIterator[bytes],
    ) -> tuple[AsyncIterator[bytes | bytearray], Encryption | None]:
        """The dump as it is stored: encrypted under a fresh data key when the storage says so (the record keeps the
        wrapped key; the sha256 recorded is then of the encrypted bytes, what the storage holds)."""
        envelope = self._targets.envelope_for(target)
        if envelope is None:
            return dump, None
        data_key = await envelope.new_key(key)
        encryption = Encryption(
            scheme=SCHEME, key_ref=data_key.key_ref, wrapped_key=base64.b64encode(data_key.wrapped).decode()
        )
        return seal(dump, data_key, key), encryption

    async def _finish_badly(self, backup_id: str, state: BackupState, detail: str) -> BackupRecord:
        now = self._clock()
        record = await self._records.update(
            backup_id,
            lambda r: (
                r
                if r.state != BackupState.RUNNING
                else r.model_copy(update={"state": state, "finished_at": now, "detail": detail})
            ),
        )
        await quietly(self._refresh(record))
        await quietly(
            self._audit.record(
                actor=record.requested_by, action="backup.finish", result="failed", target=record.id, detail=detail
            )
        )
        await quietly(
            self._alerts.fire(
                record.target, "failed", f"Backup of {record.target} {state.value}", f"{record.id}: {detail}"
            )
        )
        return record

    # -- recovery -----------------------------------------------------------------------------------------

    async def recover(self, target: str | None = None) -> list[str]:
        """Marks runs whose process died as interrupted and aborts their uploads (and any stray incomplete upload
        of the target when its lock is ours). Safe on every replica: a live run's lock carries its token."""
        found = []
        for record in await self._records.running():
            if target is not None and record.target != target:
                continue
            holder = await self._records.lock_holder(record.target)
            if holder is not None and holder.token == record.lock_token:
                continue
            found.append(record.id)
            detail = "chatops stopped while this backup ran; its incomplete upload was discarded and nothing is stored."
            if record.key and record.upload_id:
                await quietly(self._targets.store_for(record.target).abort_incomplete(record.key, record.upload_id))
            await self._finish_badly(record.id, BackupState.INTERRUPTED, detail)
        if target is not None and getattr(self.target(target), "storage", None):
            store = self._targets.store_for(target)
            for key, upload_id in await store.incomplete(f"{target}/"):
                log.warning("aborting an incomplete upload of %s left behind: %s", target, key)
                await quietly(store.abort_incomplete(key, upload_id))
        return found

    # -- retention ----------------------------------------------------------------------------------------

    async def prune(self, target: str) -> list[str]:
        """Deletes the good backups the target's retention lets go (never the newest good one). A backup whose
        object S3 Object Lock still holds is not touched: it is kept, and its record says until when."""
        config = self.target(target)
        records = await self._records.history(target, self.section.history_keep)
        good = {r.id: r for r in records if r.good}
        now = self._clock()
        gone = []
        for backup_id in pruned([Candidate(r.id, r.created_at) for r in good.values()], config.retention, now):
            record = good[backup_id]
            if record.retain_until is not None and record.retain_until > now:
                await self._keep_locked(record)
                continue
            try:
                if isinstance(config, RdsTarget):
                    snapshotter = self._targets.snapshotter(target)
                    await snapshotter.delete(record.id)
                    if record.copy_location:
                        await snapshotter.delete_copy(record.id)
                    if record.export_location and config.export_to is not None:
                        store = self._targets.s3_store(config.export_to.storage)
                        await store.delete_prefix(record.export_location.split("/", 3)[3])
                if isinstance(config, ElastiCacheTarget) and record.snapshot:
                    await self._targets.cache_snapshotter(target).delete(record.snapshot)
                if not isinstance(config, RdsTarget) and record.key:
                    await self._targets.store_for(target).delete([record.key, record.key.rsplit(".", 1)[0] + ".json"])
            except BackupError as error:
                log.warning("retention could not delete %s: %s", backup_id, error)
                await self._audit.record(
                    actor="chatops", action="backup.prune", result="failed", target=backup_id, detail=str(error)
                )
                continue
            await self._records.update(
                backup_id,
                lambda r: r.model_copy(update={"state": BackupState.PRUNED, "detail": "Deleted by retention."}),
            )
            await self._audit.record(actor="chatops", action="backup.prune", result="ok", target=backup_id)
            gone.append(backup_id)
        await self._records.trim(target)
        return gone

    async def _keep_locked(self, record: BackupRecord) -> None:
        """Says (once per backup, in its record, the audit log and the log) that retention waits for the lock."""
        assert record.retain_until is not None
        until = f"{record.retain_until:%Y-%m-%d %H:%M}Z"
        detail = (
            f"Retention would delete it, but S3 Object Lock keeps it until {until}; it is deleted at the first "
            "pruning after that."
        )
        if record.detail == detail:
            return
        log.info("retention keeps %s: object lock until %s", record.id, record.retain_until.isoformat())
        await self._records.update(record.id, lambda r: r.model_copy(update={"detail": detail}))
        await self._audit.record(
            actor="chatops", action="backup.prune.locked", result="ok", target=record.id, detail=detail
        )

    # -- ticks, RPO and alerts ----------------------------------------------------------------------------

    async def tick(self) -> None:
        """Expires restore requests past their deadline and marks dead runs interrupted (safe on every replica)."""
        await self.restores.expire_due()
        await self.recover()

    async def check_rpo(self) -> list[str]:
        """Raises an alert for each target without a successful backup within its `rpo` (once, until it
        resolves); resolves it when a fresh backup exists. Returns the targets in breach."""
        now = self._clock()
        breached = []
        for name, config in self.section.targets.items():
            if config.rpo is None:
                continue
            last = await self._records.last_good(name)
            since = last or await self._records.first_seen(name, now)
            if now - since > config.rpo:
                breached.append(name)
                what = (
                    f"the newest successful backup is from {last:%Y-%m-%d %H:%M}Z"
                    if last
                    else "there is no successful backup yet"
                )
                await self._alerts.fire(
                    name,
                    "rpo",
                    f"Backup RPO breached for {name}",
                    f"{what}; the RPO is {_span(config.rpo)}.",
                    once=True,
                )
            else:
                await self._alerts.resolve(name, "rpo", f"{name} is within its RPO again.")
        return breached

    async def dr_status(self, now: datetime) -> list[str]:
        """`/status` lines: each target's last good backup age against its RPO and last drill against its RTO."""
        standing = await self._records.standing(list(self.section.targets))
        rows = [
            (name, standing[name][0], config.rpo, standing[name][1], config.rto)
            for name, config in self.section.targets.items()
        ]
        return dr_status_lines(rows, now)

    # -- the scheduler's jobs -----------------------------------------------------------------------------

    def jobs(self) -> list[tuple[str, Job, BaseTrigger]]:
        """What the leader scheduler runs: `(name, func(missed), trigger)` per scheduled backup and verification
        drill, and the RPO check. Each func takes the lock first, so two processes running it still back up once."""
        found: list[tuple[str, Job, BaseTrigger]] = []
        for name, config in self.section.targets.items():
            if config.schedule:
                found.append((f"backup:{name}", self._job(self.run_scheduled, name), cron_trigger(config.schedule)))
            if config.verify_schedule:
                drill = self._job(self.drills.run_scheduled, name)  # a timed DR drill (restore, checks, RTO)
                found.append((f"backup-verify:{name}", drill, cron_trigger(config.verify_schedule)))
        if any(config.rpo for config in self.section.targets.values()):

            async def rpo(missed: object | None = None) -> None:
                await self.check_rpo()

            found.append(
                (
                    "backup-rpo-check",
                    rpo,
                    IntervalTrigger(seconds=self.section.rpo_check_every.total_seconds(), timezone="UTC"),
                )
            )
        return found

    @staticmethod
    def _job(func: Callable[[str], Awaitable[Any]], target: str) -> Job:
        async def job(missed: object | None = None) -> None:
            await func(target)  # a missed firing runs once, now: a late backup beats none

        job.__qualname__ = f"{func.__name__}[{target}]"
        return job

    # -- Slack --------------------------------------------------------------------------------------------

    async def _refresh(self, record: BackupRecord, progress: str | None = None) -> None:
        if not record.channel or not record.message_ts:
            return
        text, blocks = backup_message(record, progress=progress)
        try:
            await self._slack.chat_update(channel=record.channel, ts=record.message_ts, text=text, blocks=blocks)
        except SlackApiError as error:
            log.warning("could not update the message of backup %s: %s", record.id, error.response.get("error"))

    async def aclose(self) -> None:
        """Releases storage and AWS clients."""
        await self._targets.aclose()


class _Throttle:
    """Updates a run's message with its progress at most once a second."""

    def __init__(self, service: BackupService, record: BackupRecord) -> None:
        self._service = service
        self._record = record
        self.started = time.monotonic()
        self._last = 0.0

    async def progress(self, progress: Progress) -> None:
        await self.update(progress, "")

    async def update(self, progress: Progress, note: str) -> None:
        now = time.monotonic()
        if now - self._last < PROGRESS_EVERY:
            return
        self._last = now
        await self._service._refresh(self._record, progress_text(progress.bytes, progress.elapsed, note))


def _span(span: timedelta) -> str:
    return duration(span)
