"""Backup and restore records, the per-target run lock and the alert bookkeeping in Redis; every multi-key change
is one MULTI (WATCHed when it reads first) or Lua script under the `{backups}` hash tag."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from bot.backups.model import BackupRecord, BackupState, DrillRecord, RestoreRecord
from bot.platform.locks import LockInfo, RunLocks
from bot.platform.store import Pipe, Store

M = TypeVar("M", bound=BaseModel)
# Finished backups whose object is gone or never was: their records are history only (retention removes them).
_WITHOUT_OBJECT = frozenset({BackupState.FAILED, BackupState.INTERRUPTED, BackupState.PRUNED})


class BackupStore:
    """Typed Redis access for backups (the Redis side; `integrations.backups` holds the objects)."""

    def __init__(self, store: Store, *, history_keep: int = 1000) -> None:
        self._store = store
        self._redis = store.redis
        self._keys = store.keys
        self._keep = history_keep
        self._locks = RunLocks(store, "backup")

    def _k(self, part: str, *names: str) -> str:
        return self._keys.backups(part, *names)

    # -- backups ------------------------------------------------------------------------------------------

    async def create(self, record: BackupRecord) -> None:
        """Stores a new (running) record and indexes it."""

        async def write() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self._k("record", record.id), record.model_dump_json())
                pipe.zadd(self._k("history", record.target), {record.id: record.created_at.timestamp()})
                pipe.sadd(self._k("running"), record.id)
                await pipe.execute()

        await self._store.call("backup_create", write())

    async def get(self, backup_id: str) -> BackupRecord | None:
        """The record, or None."""
        return _parse(BackupRecord, await self._store.get("backup_get", self._k("record", backup_id)))

    async def update(self, backup_id: str, change: Callable[[BackupRecord], BackupRecord]) -> BackupRecord:
        """Applies `change` atomically; indexes follow the new state (running set, last good time)."""

        def write(raw: str | None, pipe: Pipe) -> BackupRecord:
            current = _parse(BackupRecord, raw)
            if current is None:
                raise KeyError(backup_id)
            updated = change(current)
            pipe.set(self._k("record", backup_id), updated.model_dump_json())
            if updated.state != BackupState.RUNNING:
                pipe.srem(self._k("running"), backup_id)
            if updated.state == BackupState.SUCCEEDED and current.state != BackupState.SUCCEEDED:
                pipe.set(self._k("last_good", updated.target), (updated.finished_at or updated.created_at).isoformat())
            return updated

        return await self._store.update_watched(self._k("record", backup_id), write, what=f"backup {backup_id}")

    async def history(self, target: str, limit: int) -> list[BackupRecord]:
        """The newest `limit` records of a target, newest first."""
        ids = await self._store.zrange("backup_history", self._k("history", target), 0, limit - 1, desc=True)
        return await self._many(ids)

    async def running(self) -> list[BackupRecord]:
        """Every backup recorded as running (some may belong to a dead process)."""
        ids = await self._store.smembers("backup_running", self._k("running"))
        return await self._many(sorted(ids))

    async def last_good(self, target: str) -> datetime | None:
        """When the target's newest successful backup finished."""
        raw = await self._store.get("backup_last_good", self._k("last_good", target))
        return datetime.fromisoformat(raw) if raw else None

    async def standing(self, targets: Sequence[str]) -> dict[str, tuple[datetime | None, DrillRecord | None]]:
        """Each target's newest good backup time (`last_good`) and newest drill (`drills(t, 1)`), all in one round
        trip: what `/status` shows for every target."""

        async def read() -> list[str | list[str] | None]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for target in targets:
                    pipe.get(self._k("last_good", target))
                    pipe.zrevrange(self._k("drills", target), 0, 0)
                return list(await pipe.execute())

        found = await self._store.call("backup_standing", read()) if targets else []
        result: dict[str, tuple[datetime | None, DrillRecord | None]] = {}
        for target, last, drills in zip(targets, found[0::2], found[1::2], strict=True):
            newest = [r for r in (_parse(DrillRecord, raw) for raw in drills or []) if r is not None]
            result[target] = (datetime.fromisoformat(str(last)) if last else None, newest[0] if newest else None)
        return result

    async def first_seen(self, target: str, now: datetime) -> datetime:
        """When the RPO check first saw this target (set now if never)."""
        key = self._k("first_seen", target)
        await self._store.call("backup_seen", self._redis.set(key, now.isoformat(), nx=True))
        raw = await self._store.get("backup_seen", key)
        return datetime.fromisoformat(raw) if raw else now

    async def trim(self, target: str) -> None:
        """Forgets records beyond `history_keep` (the oldest; their objects are gone by then)."""
        key = self._k("history", target)
        old = await self._store.zrange("backup_trim", key, 0, -self._keep - 1)
        if old:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zrem(key, *old)
                pipe.delete(*[self._k("record", i) for i in old])
                await self._store.call("backup_trim", pipe.execute())

    async def prune(self, target: str, cutoff: datetime, batch: int, *, skip: int = 0) -> tuple[int, int]:
        """Removes up to `batch` records of a target created before `cutoff` that hold no backup object (failed,
        interrupted, pruned); a running or succeeded backup's record stays (its object may be restored). Returns
        (removed, kept): kept ones stay first in the index, so the next batch passes `skip` += kept."""
        key = self._k("history", target)
        ids = [
            str(i)
            for i in await self._store.call(
                "backup_prune", self._redis.zrangebyscore(key, "-inf", f"({cutoff.timestamp()}", start=skip, num=batch)
            )
        ]
        if not ids:
            return 0, 0
        raws = await self._store.mget("backup_prune", [self._k("record", i) for i in ids])
        old = []
        for backup_id, raw in zip(ids, raws, strict=True):
            record = _parse(BackupRecord, raw)
            if raw is None or (record is not None and record.state in _WITHOUT_OBJECT):
                old.append(backup_id)
        if old:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zrem(key, *old)
                pipe.delete(*[self._k("record", i) for i in old])
                await self._store.call("backup_prune", pipe.execute())
        return len(old), len(ids) - len(old)

    async def _many(self, ids: list[str]) -> list[BackupRecord]:
        if not ids:
            return []
        raws = await self._store.mget("backup_mget", [self._k("record", i) for i in ids])
        return [r for r in (_parse(BackupRecord, raw) for raw in raws) if r is not None]

    # -- the run lock -------------------------------------------------------------------------------------

    async def acquire_lock(
        self, target: str, *, holder: str, reason: str, run_id: str, now: datetime, ttl: timedelta
    ) -> tuple[LockInfo | None, LockInfo | None]:
        """(ours, None) when taken; (None, theirs) when someone holds it."""
        return await self._locks.acquire(
            self._k("lock", target), holder=holder, reason=reason, run_id=run_id, now=now, ttl=ttl
        )

    async def renew_lock(self, target: str, token: str, ttl: timedelta) -> bool:
        """Extends our lock; False when it is no longer ours."""
        return await self._locks.renew(self._k("lock", target), token, ttl)

    async def release_lock(self, target: str, token: str) -> bool:
        """Releases our lock (never someone else's)."""
        return await self._locks.release(self._k("lock", target), token)

    async def lock_holder(self, target: str) -> LockInfo | None:
        """Who holds the target's lock now."""
        return await self._locks.holder(self._k("lock", target))

    # -- alerts bookkeeping -------------------------------------------------------------------------------

    async def mark_firing(self, member: str) -> bool:
        """Remembers that an alert `<target>:<kind>` was raised; True when it was not raised before."""
        return bool(await self._store.call("backup_firing", self._redis.sadd(self._k("firing"), member)))

    async def clear_firing(self, member: str) -> bool:
        """Forgets it; True when it was raised (so a resolved alert is due)."""
        return bool(await self._store.call("backup_firing", self._redis.srem(self._k("firing"), member)))

    # -- drills -------------------------------------------------------------------------------------------

    async def add_drill(self, record: DrillRecord, keep: int = 200) -> None:
        """Records a finished drill (the newest `keep` per target are kept)."""
        key = self._k("drills", record.target)

        async def write() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zadd(key, {record.model_dump_json(): record.started_at.timestamp()})
                pipe.zremrangebyrank(key, 0, -keep - 1)
                await pipe.execute()

        await self._store.call("drill_add", write())

    async def drills(self, target: str, limit: int) -> list[DrillRecord]:
        """The newest `limit` drills of a target, newest first."""
        raws = await self._store.zrange("drill_list", self._k("drills", target), 0, limit - 1, desc=True)
        return [r for r in (_parse(DrillRecord, raw) for raw in raws) if r is not None]

    # -- restores -----------------------------------------------------------------------------------------

    async def create_restore(self, record: RestoreRecord) -> None:
        """Stores a restore request and its approval deadline."""

        async def write() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self._k("restore", record.id), record.model_dump_json())
                pipe.zadd(self._k("restores"), {record.id: record.created_at.timestamp()})
                pipe.zadd(self._k("deadlines"), {record.id: record.expires_at.timestamp()})
                await pipe.execute()

        await self._store.call("restore_create", write())

    async def get_restore(self, restore_id: str) -> RestoreRecord | None:
        """The restore request, or None."""
        return _parse(RestoreRecord, await self._store.get("restore_get", self._k("restore", restore_id)))

    async def update_restore(self, restore_id: str, change: Callable[[RestoreRecord], RestoreRecord]) -> RestoreRecord:
        """Applies `change` atomically; a finished request leaves the deadlines."""

        def write(raw: str | None, pipe: Pipe) -> RestoreRecord:
            current = _parse(RestoreRecord, raw)
            if current is None:
                raise KeyError(restore_id)
            updated = change(current)
            pipe.set(self._k("restore", restore_id), updated.model_dump_json())
            if updated.state.value != "awaiting_approval":
                pipe.zrem(self._k("deadlines"), restore_id)
            return updated

        return await self._store.update_watched(self._k("restore", restore_id), write, what=f"restore {restore_id}")

    async def claim_due(self, now: datetime) -> list[str]:
        """Restore ids whose approval deadline passed; each returned to exactly one caller."""
        return await self._locks.claim_due(self._k("deadlines"), now)

    async def recent_restores(self, limit: int) -> list[RestoreRecord]:
        """The newest restore requests, newest first."""
        ids = await self._store.zrange("restore_recent", self._k("restores"), 0, limit - 1, desc=True)
        if not ids:
            return []
        raws = await self._store.mget("restore_mget", [self._k("restore", i) for i in ids])
        return [r for r in (_parse(RestoreRecord, raw) for raw in raws) if r is not None]


def _parse(model: type[M], raw: str | None) -> M | None:
    if raw is None:
        return None
    try:
        return model.model_validate_json(raw)
    except ValidationError:
        return None
