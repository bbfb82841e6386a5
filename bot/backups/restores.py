"""Restores of backups: a request is recorded and posted for approval, approved (the approval that
completes the count starts it, exactly once), rejected, cancelled or expired; an approved restore runs under the
target's lock and its message follows every step. The whole object is checked first (sha256 and, when encrypted,
every authenticated frame: `readback.py`) and only then streamed into the engine. PostgreSQL restores into a new
database and swaps it for the target on success: a damaged backup or a failed restore leaves the target as it was.
Redis and ElastiCache RDBs are replayed key by key with RESTORE … REPLACE into the target's live server or one
named by `into` (refused with the reason where the server does not allow it); an RDS snapshot is restored as a
new instance named by `as`, never over an existing one.

Each decision is one change of the restore record in Redis (checked inside the change, so two clicks cannot both
start it); expiry is claimed from a Redis sorted set by the backup tick, safe on every replica."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from datetime import datetime

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.backups.config import (
    ElastiCacheTarget,
    PostgresTarget,
    RdsTarget,
    RedisTarget,
    TargetConfig,
)
from bot.backups.model import RestoreRecord, RestoreState, new_restore_id
from bot.backups.render import restore_destination, restore_message
from bot.backups.runs import lock_held, quietly
from bot.backups.targets import BackupTargets
from bot.platform.approvals import Approvable, Decision, check_approval
from bot.platform.audit import AuditLog
from bot.platform.errors import UserFacingError, new_ref
from bot.platform.slack_post import post_message
from bot.platform.tasks import BackgroundTasks
from integrations.backups.base import BackupError
from integrations.backups.rdb import RdbError, read_rdb
from integrations.backups.rds import INSTANCE_ID
from integrations.backups.redis_rdb import replay_into

log = logging.getLogger(__name__)


class _Unchanged(Exception):
    """A click that changes nothing (a second approval by the same person)."""


class RestoreService:
    """Restore requests and the restores they start; one per `BackupService`."""

    def __init__(
        self,
        *,
        targets: BackupTargets,
        slack: AsyncWebClient,
        audit: AuditLog,
        tasks: BackgroundTasks,
        clock: Callable[[], datetime],
    ) -> None:
        self._targets = targets
        self._records = targets.records
        self._section = targets.section
        self._slack = slack
        self._audit = audit
        self._tasks = tasks
        self._clock = clock
        self._ttl = targets.section.lock_ttl

    # -- asking and deciding ------------------------------------------------------------------------------

    async def request(
        self,
        target: str,
        backup_id: str,
        *,
        into_env: str | None,
        user: str,
        channel: str,
        reason: str = "",
        as_instance: str | None = None,
    ) -> RestoreRecord:
        """Records a restore request and posts it for approval; nothing runs until it is approved."""
        config = self._targets.target(target)
        own = await self._check_destination(target, config, into_env, as_instance)
        if into_env is not None and into_env != own and into_env not in config.restore_into:
            allowed = ", ".join(f"`{name}`" for name in (own, *config.restore_into) if name)
            raise UserFacingError(
                f"`{target}` cannot be restored into `{into_env}`. Allowed: {allowed} "
                f"(add more under `backups.targets.{target}.restore_into`)."
            )
        if into_env is not None and not self._targets.environ.get(into_env):
            raise UserFacingError(f"The environment variable `{into_env}` is not set where chatops runs.")
        backup = await self._targets.backup(backup_id, target=target)
        if not backup.good:
            raise UserFacingError(f"`{backup.id}` is {backup.state.value}: only a complete backup can be restored.")
        approval = self._section.restore_approval
        now = self._clock()
        record = RestoreRecord(
            id=new_restore_id(),
            target=target,
            backup_id=backup.id,
            into_env=into_env if into_env != own else None,
            as_instance=as_instance,
            state=RestoreState.AWAITING_APPROVAL,
            requested_by=user,
            reason=reason,
            created_at=now,
            updated_at=now,
            required_approvals=approval.required,
            approvers_role=approval.approvers,
            allow_self_approval=approval.allow_self_approval,
            expires_at=now + approval.expires_after,
        )
        await self._records.create_restore(record)
        await self._audit.record(
            actor=user,
            action="backup.restore.request",
            result="ok",
            channel=channel,
            target=f"{target} {backup.id}",
            detail=f"{record.id} into {as_instance or into_env or own} {reason}".strip(),
        )
        where = self._targets.channel(target, channel) or channel
        try:
            text, blocks = restore_message(record, now=now, where=self._where(record))
            posted = await post_message(self._slack, where, text=text, blocks=blocks)
            record = await self._records.update_restore(
                record.id, lambda r: r.model_copy(update={"channel": posted["channel"], "message_ts": posted["ts"]})
            )
        except SlackApiError as error:
            log.warning("could not post restore %s: %s", record.id, error.response.get("error"))
        return record

    async def _check_destination(
        self, target: str, config: TargetConfig, into_env: str | None, as_instance: str | None
    ) -> str | None:
        """Where each engine may restore to; the target's own variable (None: it has none). Refusals say why."""
        if isinstance(config, RdsTarget):
            if into_env is not None or as_instance is None:
                raise UserFacingError(
                    f"`{target}` is an RDS snapshot: it is restored as a NEW instance, never "
                    f"over one. Name it: `/backup restore {target} <id> as <new-instance-name>`."
                )
            if (
                not re.match(INSTANCE_ID, as_instance)
                or len(as_instance) > 63
                or "--" in as_instance
                or as_instance.endswith("-")
            ):
                raise UserFacingError(
                    f"`{as_instance}` is not a valid DB instance identifier (1-63 letters, digits "
                    "and single hyphens, starting with a letter)."
                )
            try:
                exists = await self._targets.snapshotter(target).instance_exists(as_instance)
            except BackupError as error:
                raise UserFacingError(f"Could not check whether `{as_instance}` exists: {error}") from None
            if exists:
                raise UserFacingError(
                    f"The DB instance `{as_instance}` already exists; a restore never overwrites an "
                    "instance. Name a new one."
                )
            return None
        if as_instance is not None:
            raise UserFacingError(f"`as <instance>` is for RDS targets; `{target}` is restored with `into <ENV_VAR>`.")
        if isinstance(config, PostgresTarget):
            return config.dsn_env
        if isinstance(config, RedisTarget):
            return config.url_env
        assert isinstance(config, ElastiCacheTarget)
        if into_env is None and config.url_env is None:
            raise UserFacingError(
                f"`{target}` has no `url_env`, so chatops cannot reach the cluster to replay keys. "
                f"Restore into a Redis named under `backups.targets.{target}.restore_into` "
                "(`into <ENV_VAR>`), or set `url_env`."
            )
        return config.url_env

    async def approve(self, restore_id: str, user: str, *, is_approver: bool) -> RestoreRecord:
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
            decided = record.model_copy(
                update={
                    "decisions": (*record.decisions, Decision(user=user, at=now, decision="approve")),
                    "updated_at": now,
                }
            )
            return decided.model_copy(update={"state": RestoreState.RUNNING}) if check.enough else decided

        record = await self._decide(restore_id, change)
        await self._audit.record(
            actor=user, action="backup.restore.approve", result="ok", target=restore_id, channel=record.channel or ""
        )
        await self._refresh(record)
        if record.state == RestoreState.RUNNING:
            self._tasks.spawn(self._run(restore_id), name=f"restore:{restore_id}")
        return record

    async def reject(self, restore_id: str, user: str, *, is_approver: bool) -> RestoreRecord:
        """Rejects a waiting request (approvers only)."""
        now = self._clock()

        def change(record: RestoreRecord) -> RestoreRecord:
            if record.state != RestoreState.AWAITING_APPROVAL:
                raise UserFacingError(f"This request is already {record.state.value.replace('_', ' ')}.")
            if not is_approver:
                raise UserFacingError(f"Only members of `{record.approvers_role}` can reject this restore.")
            return record.model_copy(
                update={
                    "decisions": (*record.decisions, Decision(user=user, at=now, decision="reject")),
                    "state": RestoreState.REJECTED,
                    "updated_at": now,
                    "finished_at": now,
                    "detail": f"Rejected by <@{user}>.",
                }
            )

        record = await self._decide(restore_id, change)
        await self._audit.record(
            actor=user, action="backup.restore.reject", result="ok", target=restore_id, channel=record.channel or ""
        )
        await self._refresh(record)
        return record

    async def cancel(self, restore_id: str, user: str, *, is_admin: bool) -> RestoreRecord:
        """Cancels a waiting request (its requester or an admin)."""
        now = self._clock()

        def change(record: RestoreRecord) -> RestoreRecord:
            if record.requested_by != user and not is_admin:
                raise UserFacingError(
                    f"Only <@{record.requested_by}> (who asked) or an admin can cancel `{record.id}`."
                )
            if record.state != RestoreState.AWAITING_APPROVAL:
                raise UserFacingError(
                    f"`{record.id}` is {record.state.value.replace('_', ' ')}; only a waiting request can be cancelled."
                )
            return record.model_copy(
                update={
                    "state": RestoreState.CANCELLED,
                    "updated_at": now,
                    "finished_at": now,
                    "detail": f"Cancelled by <@{user}>.",
                }
            )

        record = await self._decide(restore_id, change)
        await self._audit.record(
            actor=user, action="backup.restore.cancel", result="ok", target=restore_id, channel=record.channel or ""
        )
        await self._refresh(record)
        return record

    async def expire_due(self) -> None:
        """Expires the requests past their deadline that nobody decided (claimed once, safe on every replica)."""
        now = self._clock()
        for restore_id in await self._records.claim_due(now):
            try:
                record = await self._records.update_restore(
                    restore_id,
                    lambda r: (
                        r
                        if r.state != RestoreState.AWAITING_APPROVAL
                        else r.model_copy(
                            update={
                                "state": RestoreState.EXPIRED,
                                "updated_at": now,
                                "finished_at": now,
                                "detail": "Nobody approved it in time.",
                            }
                        )
                    ),
                )
            except KeyError:
                continue
            await self._refresh(record)
            await self._audit.record(actor="chatops", action="backup.restore.expire", result="ok", target=restore_id)

    async def _decide(self, restore_id: str, change: Callable[[RestoreRecord], RestoreRecord]) -> RestoreRecord:
        try:
            return await self._records.update_restore(restore_id, change)
        except KeyError:
            raise UserFacingError(f"There is no restore request `{restore_id}`.") from None
        except _Unchanged:
            record = await self._records.get_restore(restore_id)
            assert record is not None
            return record

    # -- running ------------------------------------------------------------------------------------------

    async def _run(self, restore_id: str) -> None:
        """Runs an approved restore under the target's lock, streaming the object into pg_restore."""
        record = await self._records.get_restore(restore_id)
        if record is None or record.state != RestoreState.RUNNING:
            return
        lock, holder = await self._records.acquire_lock(
            record.target,
            holder=record.requested_by,
            reason=f"restore {record.id}",
            run_id=record.id,
            now=self._clock(),
            ttl=self._ttl,
        )
        if lock is None:
            what = holder.reason if holder else "another run"
            await self._finish(
                record.id,
                RestoreState.FAILED,
                f"Not started: `{record.target}` is busy ({what}). Ask again when it is done.",
            )
            return
        async with lock_held(self._records, record.target, lock, self._ttl):
            if not isinstance(self._targets.target(record.target), PostgresTarget):
                await self._run_engine(record)
                return
            started = time.monotonic()
            try:
                backup = await self._targets.backup(record.backup_id)
                stored = self._targets.read_back(backup)
                try:
                    checked = await stored.check()
                except BackupError as error:
                    raise BackupError(f"Refused before anything was written: {error}") from None
                summary = await self._targets.engine(record.target).restore(stored.plaintext(), record.into_env)
                took = time.monotonic() - started
                await self._finish(
                    record.id, RestoreState.SUCCEEDED, f"{summary} from `{backup.id}` in {took:.1f}s ({checked})."
                )
            except (BackupError, UserFacingError) as error:
                await self._finish(record.id, RestoreState.FAILED, str(error))
            except asyncio.CancelledError:
                await asyncio.shield(
                    self._finish(
                        record.id,
                        RestoreState.INTERRUPTED,
                        "chatops stopped during the restore; the destination is unchanged "
                        "unless the final swap had completed.",
                    )
                )
                raise
            except Exception:
                ref = new_ref()
                log.exception("restore %s failed inside chatops (ref %s)", restore_id, ref)
                await self._finish(record.id, RestoreState.FAILED, f"chatops failed while restoring (ref {ref}).")

    async def _run_engine(self, record: RestoreRecord) -> None:
        """A Redis/ElastiCache replay or an RDS restore as a new instance (the target's lock is held)."""
        started = time.monotonic()
        try:
            backup = await self._targets.backup(record.backup_id)
            config = self._targets.target(record.target)
            if isinstance(config, RdsTarget):
                assert record.as_instance is not None
                endpoint = await self._targets.snapshotter(record.target).restore(backup.id, record.as_instance)
                summary = f"restored as the new instance `{record.as_instance}` ({endpoint})"
            else:
                stored = self._targets.read_back(backup)
                # Verify first, write after: the whole object is read, authenticated, checked against its sha256 and
                # parsed to its last key (an unsupported type refuses the restore) before the first RESTORE.
                try:
                    async for _ in read_rdb(stored.plaintext()):
                        pass
                except RdbError as error:
                    raise BackupError(f"the backup cannot be replayed: {error}; nothing was restored") from None
                variable = record.into_env or getattr(config, "url_env", None)
                assert variable is not None
                url = self._targets.environ.get(variable)
                if not url:
                    raise BackupError(f"the environment variable {variable} is not set where chatops runs")
                summary = await replay_into(stored.plaintext(), url, variable=variable)
            took = time.monotonic() - started
            await self._finish(
                record.id,
                RestoreState.SUCCEEDED,
                f"{summary[:1].upper()}{summary[1:]} from `{backup.id}` in {took:.1f}s.",
            )
        except (BackupError, UserFacingError) as error:
            await self._finish(record.id, RestoreState.FAILED, str(error))
        except asyncio.CancelledError:
            await asyncio.shield(
                self._finish(
                    record.id, RestoreState.INTERRUPTED, "chatops stopped during the restore; it may be partly done."
                )
            )
            raise
        except Exception:
            ref = new_ref()
            log.exception("restore %s failed inside chatops (ref %s)", record.id, ref)
            await self._finish(record.id, RestoreState.FAILED, f"chatops failed while restoring (ref {ref}).")

    async def _finish(self, restore_id: str, state: RestoreState, detail: str) -> RestoreRecord:
        now = self._clock()
        record = await self._records.update_restore(
            restore_id,
            lambda r: r.model_copy(update={"state": state, "finished_at": now, "updated_at": now, "detail": detail}),
        )
        await quietly(self._refresh(record))
        await quietly(
            self._audit.record(
                actor=record.requested_by,
                action="backup.restore.finish",
                result="ok" if state == RestoreState.SUCCEEDED else "failed",
                target=f"{record.id} {record.backup_id}",
                channel=record.channel or "",
                detail=detail,
            )
        )
        if record.channel and record.message_ts:
            mark = ":white_check_mark:" if state == RestoreState.SUCCEEDED else ":x:"
            await quietly(
                self._slack.chat_postMessage(
                    channel=record.channel,
                    thread_ts=record.message_ts,
                    text=f"{mark} <@{record.requested_by}> {detail}",
                )
            )
        return record

    def _where(self, record: RestoreRecord) -> str:
        """Where the restore writes, for its message (the database or server its variable names)."""
        config = self._targets.target(record.target)
        own = getattr(config, "dsn_env", None) or getattr(config, "url_env", None)
        return restore_destination(record, own_variable=own, environ=self._targets.environ)

    async def _refresh(self, record: RestoreRecord) -> None:
        if not record.channel or not record.message_ts:
            return
        text, blocks = restore_message(record, now=self._clock(), where=self._where(record))
        try:
            await self._slack.chat_update(channel=record.channel, ts=record.message_ts, text=text, blocks=blocks)
        except SlackApiError as error:
            log.warning("could not update the message of restore %s: %s", record.id, error.response.get("error"))


def _approvable(record: RestoreRecord) -> Approvable:
    return Approvable(
        noun="restore",
        waiting=record.state == RestoreState.AWAITING_APPROVAL,
        state_label=record.state.value.replace("_", " "),
        requested_by=record.requested_by,
        approvers_role=record.approvers_role,
        allow_self_approval=record.allow_self_approval,
        required_approvals=record.required_approvals,
        approved_by=record.approved_by,
    )
