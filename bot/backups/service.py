"""The backup service: runs backups (one per target at a time, under a Redis lock with an owner token, renewed
while it runs), streams them into storage, reports progress in one Slack message updated at most once a second,
prunes by retention after each success, verifies, restores after approval, and raises (and resolves) alerts for
failures and RPO breaches. Scheduled work is exposed by `jobs()` for the leader scheduler to register.

A run killed mid-upload leaves its record `running` and its upload incomplete: the next run of the target (which
holds the lock, so no other run is live) or the tick (which sees the lock is not held by the record's token)
marks it interrupted and aborts the upload. Only a completed object is ever recorded as a backup."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.alerts.pipeline import AlertPipeline
from bot.approvals import Approvable, Decision, check_approval
from bot.audit import AuditLog
from bot.backups.config import (
    BackupsSection,
    PostgresTarget,
    RdsTarget,
    TargetConfig,
    cron_trigger,
)
from bot.backups.model import (
    BackupRecord,
    BackupState,
    RestoreRecord,
    RestoreState,
    Verification,
    new_backup_id,
    new_restore_id,
)
from bot.backups.render import backup_message, progress_text, restore_message
from bot.backups.retention import Candidate, pruned
from bot.backups.store import BackupStore as BackupRecords
from bot.config import ChatopsConfig
from bot.deploys.store import LockInfo
from bot.errors import UserFacingError, new_ref
from bot.slack_post import post_message
from bot.tasks import BackgroundTasks
from integrations.alerts.base import Alert
from integrations.backups.base import (
    BackupEngine,
    BackupError,
    BackupStore,
    Hashed,
    Progress,
    VerifyFacts,
    stream_upload,
)
from integrations.backups.rds import RdsSnapshotEngine
from integrations.backups.registry import build_engine, build_snapshotter, build_store
from integrations.types import format_duration

log = logging.getLogger(__name__)

Job = Callable[[object | None], Awaitable[None]]
PROGRESS_EVERY = 1.0
SCHEDULE = "schedule"


class _Unchanged(Exception):
    """A click that changes nothing (a second approval by the same person)."""


class BackupService:
    """Backups, verifications and restores of the configured targets; one per process."""

    def __init__(
        self, *, config: ChatopsConfig, records: BackupRecords, slack: AsyncWebClient, audit: AuditLog,
        alerts: AlertPipeline, tasks: BackgroundTasks, clock: Callable[[], datetime],
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.section: BackupsSection = config.backups
        self.records = records
        self._slack = slack
        self._audit = audit
        self._alerts = alerts
        self._tasks = tasks
        self._clock = clock
        self._environ = dict(os.environ if environ is None else environ)
        self._stores: dict[str, BackupStore] = {}
        self._engines: dict[str, BackupEngine] = {}
        self._snapshotters: dict[str, RdsSnapshotEngine] = {}
        self._ttl = self.section.lock_ttl

    # -- lookups ------------------------------------------------------------------------------------------

    def target(self, name: str) -> TargetConfig:
        """A target's configuration; a refusal naming the known ones otherwise."""
        target = self.section.targets.get(name)
        if target is None:
            known = ", ".join(f"`{t}`" for t in self.section.targets) or "none are configured (add them under `backups.targets`)"
            raise UserFacingError(f"There is no backup target `{name}`. Targets: {known}.")
        return target

    async def backup(self, backup_id: str, *, target: str | None = None) -> BackupRecord:
        """A recorded backup (of `target`, when given); a refusal otherwise."""
        record = await self.records.get(backup_id)
        if record is None or (target is not None and record.target != target):
            where = f" of `{target}`" if target else ""
            hint = f" See `/backup list {target}`." if target else " See `/backup list <target>`."
            raise UserFacingError(f"There is no backup `{backup_id}`{where}.{hint}")
        return record

    def store_for(self, target: str) -> BackupStore:
        """The storage a target writes to (built once)."""
        config = self.target(target)
        name = getattr(config, "storage", None)
        assert name is not None
        if name not in self._stores:
            self._stores[name] = build_store(self.section.storage[name], environ=self._environ)
        return self._stores[name]

    def _engine(self, target: str) -> BackupEngine:
        config = self.target(target)
        if target not in self._engines:
            assert not isinstance(config, RdsTarget)
            self._engines[target] = build_engine(config, environ=self._environ)
        return self._engines[target]

    def _snapshotter(self, target: str) -> RdsSnapshotEngine:
        config = self.target(target)
        assert isinstance(config, RdsTarget)
        if target not in self._snapshotters:
            self._snapshotters[target] = build_snapshotter(config, environ=self._environ)
        return self._snapshotters[target]

    def _channel(self, target: str, fallback: str | None) -> str | None:
        config = self.target(target)
        return config.channel or self.section.channel or self.config.slack.announce_channel or fallback

    # -- running ------------------------------------------------------------------------------------------

    async def start(self, target: str, *, user: str, reason: str = "", channel: str | None = None) -> BackupRecord:
        """Takes the target's lock and starts a backup in the background; a refusal if one is running."""
        self.target(target)
        lock = await self._lock(target, user, f"backup of {target}", raise_if_held=True)
        assert lock is not None
        try:
            record = await self._begin(target, user=user, reason=reason, lock=lock, channel=channel)
        except BaseException:
            await self.records.release_lock(target, lock.token)
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
            await self.records.release_lock(target, lock.token)
            raise
        return await self._execute(record, lock)

    async def _lock(self, target: str, user: str, reason: str, *, raise_if_held: bool) -> LockInfo | None:
        lock, holder = await self.records.acquire_lock(
            target, holder=user, reason=reason, run_id="", now=self._clock(), ttl=self._ttl,
        )
        if lock is None and raise_if_held:
            who = f"<@{holder.holder}>" if holder and holder.holder.startswith("U") else (holder.holder if holder else "someone")
            since = f" since {holder.since:%H:%M:%S}Z" if holder else ""
            what = holder.reason if holder else "a backup"
            raise UserFacingError(f"`{target}` is busy: {what} by {who}{since}. One backup or restore per target at a time.")
        return lock

    async def _begin(self, target: str, *, user: str, reason: str, lock: LockInfo, channel: str | None) -> BackupRecord:
        """With the lock held: clears what dead runs left, records the new run and posts its message."""
        await self.recover(target)
        config = self.target(target)
        now = self._clock()
        backup_id = new_backup_id(target, now)
        storage = getattr(config, "storage", None)
        record = BackupRecord(
            id=backup_id, target=target, kind=config.kind, state=BackupState.RUNNING, requested_by=user, reason=reason,
            created_at=now, storage=storage, lock_token=lock.token,
        )
        await self.records.create(record)
        await self._audit.record(actor=user, action="backup.run", result="ok", target=f"{target} {backup_id}",
                                 channel=channel or "", detail=reason)
        where = self._channel(target, channel)
        if where:
            try:
                text, blocks = backup_message(record, progress="starting")
                posted = await post_message(self._slack, where, text=text, blocks=blocks)
                record = await self.records.update(record.id, lambda r: r.model_copy(update={"channel": posted["channel"], "message_ts": posted["ts"]}))
            except SlackApiError as error:
                log.warning("could not post backup %s to %s: %s", record.id, where, error.response.get("error"))
        return record

    async def _execute(self, record: BackupRecord, lock: LockInfo) -> BackupRecord:
        """Streams (or snapshots) the backup, finishes the record, alerts, prunes; always releases the lock."""
        renewer = asyncio.get_running_loop().create_task(self._renew(record.target, lock))
        try:
            return await self._stream(record)
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            await self.records.release_lock(record.target, lock.token)

    async def _stream(self, record: BackupRecord) -> BackupRecord:
        target = record.target
        config = self.target(target)
        throttle = _Throttle(self, record)
        try:
            if isinstance(config, RdsTarget):
                location, size = await self._snapshotter(target).snapshot(record.id, throttle.update)
                key, sha256, seconds = None, None, time.monotonic() - throttle.started
            else:
                store = self.store_for(target)
                engine = self._engine(target)
                key = f"{target}/{record.id}.{engine.extension}"
                upload = await store.begin(key)
                record = await self.records.update(record.id, lambda r: r.model_copy(update={"key": key, "upload_id": upload.upload_id}))
                try:
                    streamed = await stream_upload(engine.dump(store.part_size), upload, throttle.progress)
                    location = await upload.complete()
                except BaseException:
                    await asyncio.shield(_quietly(upload.abort()))
                    raise
                size, sha256, seconds = streamed.size, streamed.sha256, streamed.seconds
            now = self._clock()
            record = await self.records.update(record.id, lambda r: r.model_copy(update={
                "state": BackupState.SUCCEEDED, "finished_at": now, "size": size, "sha256": sha256,
                "seconds": round(seconds, 3), "location": location, "upload_id": None,
            }))
        except asyncio.CancelledError:
            await asyncio.shield(self._finish_badly(record.id, BackupState.INTERRUPTED, "The run was stopped (chatops shut down or the task was cancelled); nothing was stored."))
            raise
        except BackupError as error:
            return await self._finish_badly(record.id, BackupState.FAILED, str(error))
        except Exception:
            ref = new_ref()
            log.exception("backup %s failed inside chatops (ref %s)", record.id, ref)
            return await self._finish_badly(record.id, BackupState.FAILED, f"chatops failed while running it (ref {ref}).")
        await self._write_metadata(record)
        await self._refresh(record)
        await self._audit.record(actor=record.requested_by, action="backup.finish", result="ok", target=record.id,
                                 detail=f"{record.size} bytes sha256 {record.sha256}")
        await self._resolve(target, "failed", f"Backup of {target} succeeded again ({record.id}).")
        await self._resolve(target, "rpo", f"{target} has a fresh backup ({record.id}).")
        try:
            await self.prune(target)
        except Exception:
            log.exception("pruning %s failed", target)
        return record

    async def _finish_badly(self, backup_id: str, state: BackupState, detail: str) -> BackupRecord:
        now = self._clock()
        record = await self.records.update(backup_id, lambda r: r if r.state != BackupState.RUNNING else r.model_copy(update={
            "state": state, "finished_at": now, "detail": detail}))
        await _quietly(self._refresh(record))
        await _quietly(self._audit.record(actor=record.requested_by, action="backup.finish", result="failed", target=record.id, detail=detail))
        await _quietly(self._fire(record.target, "failed", f"Backup of {record.target} {state.value}", f"{record.id}: {detail}"))
        return record

    async def _renew(self, target: str, lock: LockInfo) -> None:
        while True:
            await asyncio.sleep(self._ttl.total_seconds() / 3)
            try:
                if not await self.records.renew_lock(target, lock.token, self._ttl):
                    log.error("the backup lock of %s was lost", target)
            except Exception:  # a Redis blip must not kill the run; the next renewal tries again
                log.warning("could not renew the backup lock of %s", target, exc_info=True)

    async def _write_metadata(self, record: BackupRecord) -> None:
        """The JSON next to the backup object (PostgreSQL and Redis targets)."""
        if record.key is None or record.storage is None:
            return
        data = record.model_dump(mode="json", exclude={"lock_token", "channel", "message_ts", "upload_id"})
        data["outcome"] = record.state.value
        await self.store_for(record.target).put_small(record.key.rsplit(".", 1)[0] + ".json", json.dumps(data, indent=2).encode())

    # -- recovery -----------------------------------------------------------------------------------------

    async def recover(self, target: str | None = None) -> list[str]:
        """Marks runs whose process died as interrupted and aborts their uploads (and any stray incomplete upload
        of the target when its lock is ours). Safe on every replica: a live run's lock carries its token."""
        found = []
        for record in await self.records.running():
            if target is not None and record.target != target:
                continue
            holder = await self.records.lock_holder(record.target)
            if holder is not None and holder.token == record.lock_token:
                continue
            found.append(record.id)
            detail = "chatops stopped while this backup ran; its incomplete upload was discarded and nothing is stored."
            if record.key and record.upload_id:
                await _quietly(self.store_for(record.target).abort_incomplete(record.key, record.upload_id))
            await self._finish_badly(record.id, BackupState.INTERRUPTED, detail)
        if target is not None and getattr(self.target(target), "storage", None):
            store = self.store_for(target)
            for key, upload_id in await store.incomplete(f"{target}/"):
                log.warning("aborting an incomplete upload of %s left behind: %s", target, key)
                await _quietly(store.abort_incomplete(key, upload_id))
        return found

    # -- retention ----------------------------------------------------------------------------------------

    async def prune(self, target: str) -> list[str]:
        """Deletes the good backups the target's retention lets go (never the newest good one)."""
        config = self.target(target)
        records = await self.records.history(target, self.section.history_keep)
        good = {r.id: r for r in records if r.good}
        gone = pruned([Candidate(r.id, r.created_at) for r in good.values()], config.retention, self._clock())
        for backup_id in gone:
            record = good[backup_id]
            if isinstance(config, RdsTarget):
                await self._snapshotter(target).delete(record.id)
            elif record.key:
                await self.store_for(target).delete([record.key, record.key.rsplit(".", 1)[0] + ".json"])
            await self.records.update(backup_id, lambda r: r.model_copy(update={"state": BackupState.PRUNED, "detail": "Deleted by retention."}))
            await self._audit.record(actor="chatops", action="backup.prune", result="ok", target=backup_id)
        await self.records.trim(target)
        return gone

    # -- verification -------------------------------------------------------------------------------------

    async def pick_for_verify(self, target: str, backup_id: str | None) -> BackupRecord:
        """The backup to verify: the one named (of that target, complete), or the newest good one."""
        self.target(target)
        if backup_id is not None:
            record = await self.backup(backup_id, target=target)
            if not record.good:
                raise UserFacingError(f"`{record.id}` is {record.state.value}: only a complete backup can be verified.")
            return record
        for record in await self.records.history(target, 200):
            if record.good:
                return record
        raise UserFacingError(f"`{target}` has no complete backup to verify yet. Make one with `/backup run {target}`.")

    async def verify(self, record: BackupRecord, *, user: str) -> Verification:
        """Downloads the backup, checks its sha256 and (PostgreSQL) restores it into a scratch database; the
        outcome is recorded on the backup, audited, and a failure alerts."""
        started = time.monotonic()
        try:
            if record.kind == "rds_snapshot":
                facts = await self._snapshotter(record.target).verify(record.id)
            else:
                facts = await self._verify_object(record)
            verification = Verification(at=self._clock(), ok=True, detail=f"sha256 matches; {facts.detail} ({time.monotonic() - started:.1f}s)",
                                        by=user, tables=facts.tables, rows=sum(facts.rows.values()) if facts.rows else None)
        except BackupError as error:
            verification = Verification(at=self._clock(), ok=False, detail=str(error), by=user)
        updated = await self.records.update(record.id, lambda r: r.model_copy(update={"verifications": (*r.verifications, verification)[-20:]}))
        await _quietly(self._write_metadata(updated))
        await self._audit.record(actor=user, action="backup.verify", result="ok" if verification.ok else "failed",
                                 target=record.id, detail=verification.detail)
        if verification.ok:
            await self._resolve(record.target, "verify", f"Backup {record.id} of {record.target} verified.")
        else:
            await self._fire(record.target, "verify", f"Verification of {record.target} failed", f"{record.id}: {verification.detail}")
        return verification

    async def _verify_object(self, record: BackupRecord) -> VerifyFacts:
        assert record.key is not None
        store = self.store_for(record.target)
        if not await store.exists(record.key):
            raise BackupError(f"the object {store.location(record.key)} is missing")
        hashed = Hashed(store.read(record.key))
        chunks = hashed.chunks()
        try:
            facts = await self._engine(record.target).verify(chunks)
            failure = None
        except BackupError as error:
            facts, failure = None, error
        async for _ in chunks:  # the engine may stop reading early; the checksum needs every byte
            pass
        if hashed.sha256 != record.sha256 or hashed.size != record.size:
            raise BackupError(f"checksum mismatch: the stored object has sha256 {hashed.sha256} ({hashed.size} bytes), "
                              f"the backup recorded {record.sha256} ({record.size} bytes)")
        if failure is not None:
            raise failure
        assert facts is not None
        return facts

    async def verify_in_background(self, record: BackupRecord, *, user: str, channel: str) -> None:
        """Runs `verify` after the command was answered and posts the outcome."""
        verification = await self.verify(record, user=user)
        where = self._channel(record.target, channel)
        mark = ":white_check_mark:" if verification.ok else ":x:"
        text = f"{mark} Verification of `{record.id}` ({record.target}) by <@{user}>: {verification.detail}"
        if where:
            await _quietly(post_message(self._slack, where, text=text))

    async def run_verify_drill(self, target: str) -> Verification | None:
        """The scheduled drill: verifies the newest good backup (skipped when the target is busy)."""
        lock, _ = await self.records.acquire_lock(f"{target}.verify", holder=SCHEDULE, reason=f"verification drill of {target}",
                                                  run_id="", now=self._clock(), ttl=self._ttl)
        if lock is None:
            return None
        renewer = asyncio.get_running_loop().create_task(self._renew(f"{target}.verify", lock))
        try:
            try:
                record = await self.pick_for_verify(target, None)
            except UserFacingError as refusal:
                await self._fire(target, "verify", f"Verification drill of {target} found nothing to verify", refusal.message)
                return None
            verification = await self.verify(record, user=SCHEDULE)
            await self.verify_in_background_post(record, verification)
            return verification
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            await self.records.release_lock(f"{target}.verify", lock.token)

    async def verify_in_background_post(self, record: BackupRecord, verification: Verification) -> None:
        """Posts a drill's outcome to the target's channel."""
        where = self._channel(record.target, None)
        if where:
            mark = ":white_check_mark:" if verification.ok else ":x:"
            await _quietly(post_message(self._slack, where, text=f"{mark} Verification drill of `{record.id}` ({record.target}): {verification.detail}"))

    # -- restores -----------------------------------------------------------------------------------------

    async def request_restore(self, target: str, backup_id: str, *, into_env: str | None, user: str, channel: str,
                              reason: str = "") -> RestoreRecord:
        """Records a restore request and posts it for approval; nothing runs until it is approved."""
        config = self.target(target)
        if not isinstance(config, PostgresTarget):
            kind = "an RDS snapshot" if isinstance(config, RdsTarget) else "a Redis RDB file"
            raise UserFacingError(f"`{target}` is backed up as {kind}, which chatops does not restore from Slack; "
                                  "only PostgreSQL targets can be restored.")
        if into_env is not None and into_env != config.dsn_env and into_env not in config.restore_into:
            allowed = ", ".join(f"`{name}`" for name in (config.dsn_env, *config.restore_into))
            raise UserFacingError(f"`{target}` cannot be restored into `{into_env}`. Allowed: {allowed} "
                                  f"(add more under `backups.targets.{target}.restore_into`).")
        if into_env is not None and not self._environ.get(into_env):
            raise UserFacingError(f"The environment variable `{into_env}` is not set where chatops runs.")
        backup = await self.backup(backup_id, target=target)
        if not backup.good:
            raise UserFacingError(f"`{backup.id}` is {backup.state.value}: only a complete backup can be restored.")
        approval = self.section.restore_approval
        now = self._clock()
        record = RestoreRecord(
            id=new_restore_id(), target=target, backup_id=backup.id, into_env=into_env if into_env != config.dsn_env else None,
            state=RestoreState.AWAITING_APPROVAL, requested_by=user, reason=reason, created_at=now, updated_at=now,
            required_approvals=approval.required, approvers_role=approval.approvers,
            allow_self_approval=approval.allow_self_approval, expires_at=now + approval.expires_after,
        )
        await self.records.create_restore(record)
        await self._audit.record(actor=user, action="backup.restore.request", result="ok", channel=channel,
                                 target=f"{target} {backup.id}", detail=f"{record.id} into {into_env or config.dsn_env} {reason}".strip())
        where = self._channel(target, channel) or channel
        try:
            text, blocks = restore_message(record, now=now)
            posted = await post_message(self._slack, where, text=text, blocks=blocks)
            record = await self.records.update_restore(record.id, lambda r: r.model_copy(update={"channel": posted["channel"], "message_ts": posted["ts"]}))
        except SlackApiError as error:
            log.warning("could not post restore %s: %s", record.id, error.response.get("error"))
        return record

    async def approve_restore(self, restore_id: str, user: str, *, is_approver: bool) -> RestoreRecord:
        """Counts an approval; the one that completes the count starts the restore (exactly once)."""
        now = self._clock()

        def change(record: RestoreRecord) -> RestoreRecord:
            check = check_approval(_approvable(record), user, is_approver=is_approver)
            if check.refusal:
                raise UserFacingError(check.refusal)
            if check.duplicate:
                raise _Unchanged
            if record.expires_at <= now:
                raise UserFacingError("This restore request has expired; ask again.")
            decided = record.model_copy(update={"decisions": (*record.decisions, Decision(user=user, at=now, decision="approve")), "updated_at": now})
            return decided.model_copy(update={"state": RestoreState.RUNNING}) if check.enough else decided

        record = await self._decide(restore_id, change)
        await self._audit.record(actor=user, action="backup.restore.approve", result="ok", target=restore_id, channel=record.channel or "")
        await self._refresh_restore(record)
        if record.state == RestoreState.RUNNING:
            self._tasks.spawn(self._restore(restore_id), name=f"restore:{restore_id}")
        return record

    async def reject_restore(self, restore_id: str, user: str, *, is_approver: bool) -> RestoreRecord:
        """Rejects a waiting request (approvers only)."""
        now = self._clock()

        def change(record: RestoreRecord) -> RestoreRecord:
            if record.state != RestoreState.AWAITING_APPROVAL:
                raise UserFacingError(f"This request is already {record.state.value.replace('_', ' ')}.")
            if not is_approver:
                raise UserFacingError(f"Only members of `{record.approvers_role}` can reject this restore.")
            return record.model_copy(update={
                "decisions": (*record.decisions, Decision(user=user, at=now, decision="reject")),
                "state": RestoreState.REJECTED, "updated_at": now, "finished_at": now, "detail": f"Rejected by <@{user}>."})

        record = await self._decide(restore_id, change)
        await self._audit.record(actor=user, action="backup.restore.reject", result="ok", target=restore_id, channel=record.channel or "")
        await self._refresh_restore(record)
        return record

    async def cancel_restore(self, restore_id: str, user: str, *, is_admin: bool) -> RestoreRecord:
        """Cancels a waiting request (its requester or an admin)."""
        now = self._clock()

        def change(record: RestoreRecord) -> RestoreRecord:
            if record.requested_by != user and not is_admin:
                raise UserFacingError(f"Only <@{record.requested_by}> (who asked) or an admin can cancel `{record.id}`.")
            if record.state != RestoreState.AWAITING_APPROVAL:
                raise UserFacingError(f"`{record.id}` is {record.state.value.replace('_', ' ')}; only a waiting request can be cancelled.")
            return record.model_copy(update={"state": RestoreState.CANCELLED, "updated_at": now, "finished_at": now,
                                             "detail": f"Cancelled by <@{user}>."})

        record = await self._decide(restore_id, change)
        await self._audit.record(actor=user, action="backup.restore.cancel", result="ok", target=restore_id, channel=record.channel or "")
        await self._refresh_restore(record)
        return record

    async def _decide(self, restore_id: str, change: Callable[[RestoreRecord], RestoreRecord]) -> RestoreRecord:
        try:
            return await self.records.update_restore(restore_id, change)
        except KeyError:
            raise UserFacingError(f"There is no restore request `{restore_id}`.") from None
        except _Unchanged:
            record = await self.records.get_restore(restore_id)
            assert record is not None
            return record

    async def _restore(self, restore_id: str) -> None:
        """Runs an approved restore under the target's lock, streaming the object into pg_restore."""
        record = await self.records.get_restore(restore_id)
        if record is None or record.state != RestoreState.RUNNING:
            return
        lock, holder = await self.records.acquire_lock(record.target, holder=record.requested_by, reason=f"restore {record.id}",
                                                       run_id=record.id, now=self._clock(), ttl=self._ttl)
        if lock is None:
            what = holder.reason if holder else "another run"
            await self._finish_restore(record.id, RestoreState.FAILED, f"Not started: `{record.target}` is busy ({what}). Ask again when it is done.")
            return
        renewer = asyncio.get_running_loop().create_task(self._renew(record.target, lock))
        started = time.monotonic()
        try:
            backup = await self.backup(record.backup_id)
            assert backup.key is not None
            hashed = Hashed(self.store_for(record.target).read(backup.key))
            summary = await self._engine(record.target).restore(hashed.chunks(), record.into_env)
            if hashed.sha256 != backup.sha256:
                raise BackupError(f"the object read back has sha256 {hashed.sha256}, not the recorded {backup.sha256}: "
                                  "the destination may hold a damaged restore")
            took = time.monotonic() - started
            await self._finish_restore(record.id, RestoreState.SUCCEEDED, f"{summary} from `{backup.id}` in {took:.1f}s (sha256 checked).")
        except (BackupError, UserFacingError) as error:
            await self._finish_restore(record.id, RestoreState.FAILED, str(error))
        except asyncio.CancelledError:
            await asyncio.shield(self._finish_restore(record.id, RestoreState.INTERRUPTED, "chatops stopped during the restore; the destination may be partly restored."))
            raise
        except Exception:
            ref = new_ref()
            log.exception("restore %s failed inside chatops (ref %s)", restore_id, ref)
            await self._finish_restore(record.id, RestoreState.FAILED, f"chatops failed while restoring (ref {ref}).")
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            await self.records.release_lock(record.target, lock.token)

    async def _finish_restore(self, restore_id: str, state: RestoreState, detail: str) -> RestoreRecord:
        now = self._clock()
        record = await self.records.update_restore(restore_id, lambda r: r.model_copy(update={
            "state": state, "finished_at": now, "updated_at": now, "detail": detail}))
        await _quietly(self._refresh_restore(record))
        await _quietly(self._audit.record(actor=record.requested_by, action="backup.restore.finish",
                                          result="ok" if state == RestoreState.SUCCEEDED else "failed",
                                          target=f"{record.id} {record.backup_id}", channel=record.channel or "", detail=detail))
        if record.channel and record.message_ts:
            mark = ":white_check_mark:" if state == RestoreState.SUCCEEDED else ":x:"
            await _quietly(self._slack.chat_postMessage(channel=record.channel, thread_ts=record.message_ts,
                                                        text=f"{mark} <@{record.requested_by}> {detail}"))
        return record

    # -- ticks, RPO and alerts ----------------------------------------------------------------------------

    async def tick(self) -> None:
        """Expires restore requests past their deadline and marks dead runs interrupted (safe on every replica)."""
        now = self._clock()
        for restore_id in await self.records.claim_due(now):
            try:
                record = await self.records.update_restore(restore_id, lambda r: r if r.state != RestoreState.AWAITING_APPROVAL else r.model_copy(update={
                    "state": RestoreState.EXPIRED, "updated_at": now, "finished_at": now, "detail": "Nobody approved it in time."}))
            except KeyError:
                continue
            await self._refresh_restore(record)
            await self._audit.record(actor="chatops", action="backup.restore.expire", result="ok", target=restore_id)
        await self.recover()

    async def check_rpo(self) -> list[str]:
        """Raises an alert for each target without a successful backup within its `rpo` (once, until it
        resolves); resolves it when a fresh backup exists. Returns the targets in breach."""
        now = self._clock()
        breached = []
        for name, config in self.section.targets.items():
            if config.rpo is None:
                continue
            last = await self.records.last_good(name)
            since = last or await self.records.first_seen(name, now)
            if now - since > config.rpo:
                breached.append(name)
                what = f"the newest successful backup is from {last:%Y-%m-%d %H:%M}Z" if last else "there is no successful backup yet"
                await self._fire(name, "rpo", f"Backup RPO breached for {name}", f"{what}; the RPO is {_span(config.rpo)}.", once=True)
            else:
                await self._resolve(name, "rpo", f"{name} is within its RPO again.")
        return breached

    async def _fire(self, target: str, kind: str, title: str, summary: str, *, once: bool = False) -> None:
        new = await self.records.mark_firing(f"{target}:{kind}")
        if once and not new:
            return
        await self._ingest(target, kind, "firing", title, summary)

    async def _resolve(self, target: str, kind: str, summary: str) -> None:
        if await self.records.clear_firing(f"{target}:{kind}"):
            await self._ingest(target, kind, "resolved", f"Backup {kind} alert for {target} resolved", summary)

    async def _ingest(self, target: str, kind: str, status: Literal["firing", "resolved"], title: str, summary: str) -> None:
        now = self._clock()
        names = {"failed": "BackupFailed", "rpo": "BackupRPOBreached", "verify": "BackupVerificationFailed"}
        alert = Alert(
            source="chatops", fingerprint=f"chatops:backup:{target}:{kind}", status=status, title=title[:200],
            severity="critical" if kind != "verify" else "warning",
            labels={"alertname": names.get(kind, "Backup"), "target": target, "component": "backups"},
            annotations={}, summary=summary[:1000], starts_at=now, ends_at=now if status == "resolved" else None, links={},
        )
        try:
            await self._alerts.ingest([alert])
        except Exception:
            log.exception("could not raise the %s alert of %s", kind, target)

    # -- the scheduler's jobs -----------------------------------------------------------------------------

    def jobs(self) -> list[tuple[str, Job, BaseTrigger]]:
        """What the leader scheduler runs: `(name, func(missed), trigger)` per scheduled backup and verification
        drill, and the RPO check. Each func takes the lock first, so two processes running it still back up once."""
        found: list[tuple[str, Job, BaseTrigger]] = []
        for name, config in self.section.targets.items():
            if config.schedule:
                found.append((f"backup:{name}", self._job(self.run_scheduled, name), cron_trigger(config.schedule)))
            if config.verify_schedule:
                found.append((f"backup-verify:{name}", self._job(self.run_verify_drill, name), cron_trigger(config.verify_schedule)))
        if any(config.rpo for config in self.section.targets.values()):
            async def rpo(missed: object | None = None) -> None:
                await self.check_rpo()
            found.append(("backup-rpo-check", rpo, IntervalTrigger(seconds=self.section.rpo_check_every.total_seconds(), timezone="UTC")))
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

    async def _refresh_restore(self, record: RestoreRecord) -> None:
        if not record.channel or not record.message_ts:
            return
        text, blocks = restore_message(record, now=self._clock())
        try:
            await self._slack.chat_update(channel=record.channel, ts=record.message_ts, text=text, blocks=blocks)
        except SlackApiError as error:
            log.warning("could not update the message of restore %s: %s", record.id, error.response.get("error"))

    async def aclose(self) -> None:
        """Releases storage and AWS clients."""
        for store in self._stores.values():
            await _quietly(store.aclose())
        for snapshotter in self._snapshotters.values():
            await _quietly(snapshotter.aclose())


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


def _approvable(record: RestoreRecord) -> Approvable:
    return Approvable(
        noun="restore", waiting=record.state == RestoreState.AWAITING_APPROVAL,
        state_label=record.state.value.replace("_", " "), requested_by=record.requested_by,
        approvers_role=record.approvers_role, allow_self_approval=record.allow_self_approval,
        required_approvals=record.required_approvals, approved_by=record.approved_by,
    )


def _span(span: timedelta) -> str:
    return format_duration(span)


async def _quietly(awaitable: Awaitable[Any]) -> None:
    """Best-effort clean-up and reporting: a failure is logged, never raised over the real outcome."""
    try:
        await awaitable
    except Exception:
        log.warning("backup clean-up step failed", exc_info=True)
