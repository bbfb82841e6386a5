"""Verification of backups: a backup is read back and its sha256 checked, and (PostgreSQL) restored into a scratch
database; an RDS snapshot is checked by AWS. The outcome is recorded on the backup, audited and alerted on. Runs
when an operator asks (`/backup verify`) and as the scheduled drill (`verify_schedule`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from slack_sdk.web.async_client import AsyncWebClient

from bot.backups.alerts import BackupAlerts
from bot.backups.model import BackupRecord, Verification
from bot.backups.runs import SCHEDULE, lock_held, quietly
from bot.backups.targets import BackupTargets
from bot.platform.audit import AuditLog
from bot.platform.errors import UserFacingError
from bot.platform.slack_post import post_message
from integrations.backups.base import BackupError, VerifyFacts


class Verifier:
    """Verifies backups, on request or as the scheduled drill; one per `BackupService`."""

    def __init__(
        self,
        *,
        targets: BackupTargets,
        alerts: BackupAlerts,
        slack: AsyncWebClient,
        audit: AuditLog,
        clock: Callable[[], datetime],
    ) -> None:
        self._targets = targets
        self._records = targets.records
        self._alerts = alerts
        self._slack = slack
        self._audit = audit
        self._clock = clock
        self._ttl = targets.section.lock_ttl

    async def pick(self, target: str, backup_id: str | None) -> BackupRecord:
        """The backup to verify: the one named (of that target, complete), or the newest good one."""
        self._targets.target(target)
        if backup_id is not None:
            record = await self._targets.backup(backup_id, target=target)
            if not record.good:
                raise UserFacingError(f"`{record.id}` is {record.state.value}: only a complete backup can be verified.")
            return record
        for record in await self._records.history(target, 200):
            if record.good:
                return record
        raise UserFacingError(f"`{target}` has no complete backup to verify yet. Make one with `/backup run {target}`.")

    async def verify(self, record: BackupRecord, *, user: str) -> Verification:
        """Downloads the backup, checks its sha256 and (PostgreSQL) restores it into a scratch database; the
        outcome is recorded on the backup, audited, and a failure alerts."""
        started = time.monotonic()
        try:
            if record.kind == "rds_snapshot":
                facts = await self._targets.snapshotter(record.target).verify(record.id)
            else:
                facts = await self._verify_object(record)
            verification = Verification(
                at=self._clock(),
                ok=True,
                detail=f"sha256 matches; {facts.detail} ({time.monotonic() - started:.1f}s)",
                by=user,
                tables=facts.tables,
                rows=sum(facts.rows.values()) if facts.rows else None,
            )
        except BackupError as error:
            verification = Verification(at=self._clock(), ok=False, detail=str(error), by=user)
        updated = await self._records.update(
            record.id, lambda r: r.model_copy(update={"verifications": (*r.verifications, verification)[-20:]})
        )
        await quietly(self._targets.write_metadata(updated))
        await self._audit.record(
            actor=user,
            action="backup.verify",
            result="ok" if verification.ok else "failed",
            target=record.id,
            detail=verification.detail,
        )
        if verification.ok:
            await self._alerts.resolve(record.target, "verify", f"Backup {record.id} of {record.target} verified.")
        else:
            await self._alerts.fire(
                record.target,
                "verify",
                f"Verification of {record.target} failed",
                f"{record.id}: {verification.detail}",
            )
        return verification

    async def _verify_object(self, record: BackupRecord) -> VerifyFacts:
        stored = self._targets.read_back(record)
        if not await self._targets.store_for(record.target).exists(stored.key):
            raise BackupError(f"the object {self._targets.store_for(record.target).location(stored.key)} is missing")
        # One pass: the engine restores into scratch what `plaintext` yields; the checksum (and, encrypted, the
        # last frame) is checked when the stream ends, so it is read to the end even when the engine stopped early.
        chunks = stored.plaintext()
        try:
            facts = await self._targets.engine(record.target).verify(chunks)
            failure = None
        except BackupError as error:
            facts, failure = None, error
        async for _ in chunks:
            pass
        if failure is not None:
            raise failure
        assert facts is not None
        return facts

    async def verify_in_background(self, record: BackupRecord, *, user: str, channel: str) -> None:
        """Runs `verify` after the command was answered and posts the outcome."""
        verification = await self.verify(record, user=user)
        where = self._targets.channel(record.target, channel)
        mark = ":white_check_mark:" if verification.ok else ":x:"
        text = f"{mark} Verification of `{record.id}` ({record.target}) by <@{user}>: {verification.detail}"
        if where:
            await quietly(post_message(self._slack, where, text=text))

    async def run_drill(self, target: str) -> Verification | None:
        """The scheduled drill: verifies the newest good backup (skipped when the target is busy)."""
        lock, _ = await self._records.acquire_lock(
            f"{target}.verify",
            holder=SCHEDULE,
            reason=f"verification drill of {target}",
            run_id="",
            now=self._clock(),
            ttl=self._ttl,
        )
        if lock is None:
            return None
        async with lock_held(self._records, f"{target}.verify", lock, self._ttl):
            try:
                record = await self.pick(target, None)
            except UserFacingError as refusal:
                await self._alerts.fire(
                    target, "verify", f"Verification drill of {target} found nothing to verify", refusal.message
                )
                return None
            verification = await self.verify(record, user=SCHEDULE)
            await self._post_drill(record, verification)
            return verification

    async def _post_drill(self, record: BackupRecord, verification: Verification) -> None:
        """Posts a drill's outcome to the target's channel."""
        where = self._targets.channel(record.target, None)
        if where:
            mark = ":white_check_mark:" if verification.ok else ":x:"
            await quietly(
                post_message(
                    self._slack,
                    where,
                    text=f"{mark} Verification drill of `{record.id}` ({record.target}): {verification.detail}",
                )
            )
