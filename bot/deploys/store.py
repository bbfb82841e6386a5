"""Deploy records, history, approvals' deadlines, run locks and manual holds in Redis; every multi-key change
is one MULTI (optimistic, WATCHed) or Lua script, under the `{deploys}` hash tag."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from pydantic import ValidationError
from redis.asyncio.client import Pipeline

from bot.deploys.model import DeployRecord, DeployState
from bot.platform.locks import LockInfo, RunLocks
from bot.platform.store import Store

__all__ = ["DeployStore", "LockInfo"]  # LockInfo lives in bot.platform.locks; imported from here too

class DeployStore:
    """Typed Redis access for deploys."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._redis = store.redis
        self._keys = store.keys
        self._locks = RunLocks(store, "deploy")

    def _k(self, part: str, *names: str) -> str:
        return self._keys.deploy(part, *names)

    async def create(self, record: DeployRecord) -> None:
        """Stores a new record and indexes it (history, active, approval deadline)."""
        async def write() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self._k("record", record.id), record.model_dump_json())
                pipe.zadd(self._k("history", record.service, record.environment), {record.id: record.created_at.timestamp()})
                pipe.sadd(self._k("active"), record.id)
                if record.expires_at is not None:
                    pipe.zadd(self._k("deadlines"), {record.id: record.expires_at.timestamp()})
                await pipe.execute()
        await self._store.call("deploy_create", write())

    async def get(self, deploy_id: str) -> DeployRecord | None:
        """The record, or None when there is no such deploy."""
        raw = await self._store.call("deploy_get", self._redis.get(self._k("record", deploy_id)))
        return _parse(raw)

    async def update(self, deploy_id: str, change: Callable[[DeployRecord], DeployRecord]) -> DeployRecord:
        """Applies `change` to the current record atomically (retrying on a concurrent write) and returns the result.
        `change` may raise (IllegalTransition, a user-facing refusal): then nothing is written."""

        def write(raw: str | None, pipe: Pipeline) -> DeployRecord:
            current = _parse(raw)
            if current is None:
                raise KeyError(deploy_id)
            updated = change(current)
            pipe.set(self._k("record", deploy_id), updated.model_dump_json())
            if updated.terminal:
                pipe.srem(self._k("active"), deploy_id)
                pipe.zrem(self._k("deadlines"), deploy_id)
            if updated.state == DeployState.SUCCEEDED and current.state != DeployState.SUCCEEDED:
                pipe.set(self._k("current", updated.service, updated.environment), updated.version)
                # The deploy that put it there: `/status` reads it instead of looking through the history. A
                # rollback of a failed deploy puts back the version this still points to, so it stays.
                pipe.set(self._k("current_id", updated.service, updated.environment), updated.id)
            if updated.state == DeployState.ROLLED_BACK and updated.previous_version and current.state != DeployState.ROLLED_BACK:
                pipe.set(self._k("current", updated.service, updated.environment), updated.previous_version)
            return updated

        return await self._store.update_watched(self._k("record", deploy_id), write, what=f"deploy {deploy_id}")

    async def current_version(self, service: str, environment: str) -> str | None:
        """The version running now (from the last successful deploy or rollback)."""
        return await self._store.call("deploy_current", self._redis.get(self._k("current", service, environment)))

    async def history(self, service: str, environment: str | None, environments: list[str], limit: int) -> list[DeployRecord]:
        """The newest `limit` records of a service (one environment or all), newest first."""
        envs = [environment] if environment else environments
        ids: list[tuple[str, float]] = []
        for env in envs:
            found = await self._store.call(
                "deploy_history", self._redis.zrevrange(self._k("history", service, env), 0, limit - 1, withscores=True)
            )
            ids.extend((str(i), float(s)) for i, s in found)
        ids.sort(key=lambda pair: pair[1], reverse=True)
        return await self._many([i for i, _ in ids[:limit]])

    async def recent(self, service: str, environments: list[str], since: datetime, limit: int = 1000) -> list[DeployRecord]:
        """Records of a service created since `since` (at most `limit` per environment, the newest): what the
        figures over a window need, however long the history."""
        async def read() -> list[list[str]]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for env in environments:
                    pipe.zrevrangebyscore(self._k("history", service, env), "+inf", since.timestamp(), start=0, num=limit)
                return list(await pipe.execute())

        found = await self._store.call("deploy_recent", read())
        return await self._many([str(i) for ids in found for i in ids])

    async def running_record(self, service: str, environment: str) -> tuple[str | None, DeployRecord | None]:
        """The version running in an environment and the deploy that put it there (its succeeded record), in two
        round trips. Records written before the `current_id` pointer existed are found in the newest 20, as before."""
        return (await self.running_records([(service, environment)]))[(service, environment)]

    async def running_records(
        self, pairs: Sequence[tuple[str, str]],
    ) -> dict[tuple[str, str], tuple[str | None, DeployRecord | None]]:
        """`running_record` for many (service, environment) pairs in two round trips however many there are (a
        third only for records older than the `current_id` pointer): what `/status` shows for every environment."""
        if not pairs:
            return {}

        async def pointers() -> list[str | None]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for service, environment in pairs:
                    pipe.get(self._k("current", service, environment))
                    pipe.get(self._k("current_id", service, environment))
                return list(await pipe.execute())

        found = await self._store.call("deploy_current", pointers())
        versions, ids = found[0::2], found[1::2]
        pointed = dict(zip([i for i in ids if i], await self._many_raw([i for i in ids if i]), strict=True))
        result: dict[tuple[str, str], tuple[str | None, DeployRecord | None]] = {}
        missing: list[tuple[tuple[str, str], str]] = []
        for pair, version, pointer in zip(pairs, versions, ids, strict=True):
            record = _parse(pointed.get(pointer)) if pointer else None
            if record is not None and record.state == DeployState.SUCCEEDED and record.version == version:
                result[pair] = (version, record)
            elif version is None:  # nothing running: no record can have put it there
                result[pair] = (None, None)
            else:
                missing.append((pair, version))
        if missing:
            async def newest() -> list[list[str]]:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for (service, environment), _ in missing:
                        pipe.zrevrange(self._k("history", service, environment), 0, 19)
                    return list(await pipe.execute())

            recent = await self._store.call("deploy_history", newest())
            records = {r.id: r for r in await self._many([str(i) for ids_ in recent for i in ids_])}
            for (pair, version), newest_ids in zip(missing, recent, strict=True):
                history = [records[str(i)] for i in newest_ids if str(i) in records]
                put = next((r for r in history if r.state == DeployState.SUCCEEDED and r.version == version), None)
                result[pair] = (version, put)
        return result

    async def prune(self, service: str, environment: str, cutoff: datetime, batch: int, *, skip: int = 0) -> tuple[int, int]:
        """Removes up to `batch` finished records of one service environment created before `cutoff`; never one
        still active, nor the deploy that put the running version in place. Returns (removed, kept): kept ones stay
        first in the index, so the next batch passes `skip` += kept."""
        history = self._k("history", service, environment)
        ids = [str(i) for i in await self._store.call("deploy_prune", self._redis.zrangebyscore(
            history, "-inf", f"({cutoff.timestamp()}", start=skip, num=batch))]
        if not ids:
            return 0, 0
        pointer = await self._store.call("deploy_prune", self._redis.get(self._k("current_id", service, environment)))
        active = await self._store.call("deploy_prune", self._redis.smismember(self._k("active"), ids))
        records = dict(zip(ids, await self._store.call("deploy_prune", self._redis.mget([self._k("record", i) for i in ids])),
                           strict=True))
        old = []
        for (deploy_id, raw), busy in zip(records.items(), active, strict=True):
            record = _parse(raw)
            if raw is None or (record is not None and record.terminal and not busy and deploy_id != pointer):
                old.append(deploy_id)
        if old:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zrem(history, *old)
                pipe.delete(*[self._k("record", i) for i in old])
                await self._store.call("deploy_prune", pipe.execute())
        return len(old), len(ids) - len(old)

    async def active(self) -> list[DeployRecord]:
        """Every deploy not yet finished."""
        ids = await self._store.call("deploy_active", self._redis.smembers(self._k("active")))
        return await self._many(sorted(ids))

    async def _many(self, ids: list[str]) -> list[DeployRecord]:
        return [record for record in (_parse(raw) for raw in await self._many_raw(ids)) if record is not None]

    async def _many_raw(self, ids: list[str]) -> list[str | None]:
        if not ids:
            return []
        return list(await self._store.call("deploy_mget", self._redis.mget([self._k("record", i) for i in ids])))

    async def claim_due(self, now: datetime) -> list[str]:
        """Ids whose approval deadline has passed; each is returned to exactly one caller, once."""
        return await self._locks.claim_due(self._k("deadlines"), now)

    async def acquire_lock(
        self, service: str, environment: str, *, holder: str, reason: str, deploy_id: str, now: datetime, ttl: timedelta
    ) -> tuple[LockInfo | None, LockInfo | None]:
        """Takes the run lock: (ours, None) on success, (None, theirs) when someone holds it."""
        return await self._locks.acquire(self._k("lock", service, environment), holder=holder, reason=reason,
                                         run_id=deploy_id, now=now, ttl=ttl)

    async def renew_lock(self, service: str, environment: str, token: str, ttl: timedelta) -> bool:
        """Extends our lock; False when it is no longer ours (expired, or taken by someone else)."""
        return await self._locks.renew(self._k("lock", service, environment), token, ttl)

    async def release_lock(self, service: str, environment: str, token: str) -> bool:
        """Releases our lock (never someone else's)."""
        return await self._locks.release(self._k("lock", service, environment), token)

    async def lock_holder(self, service: str, environment: str) -> LockInfo | None:
        """Who holds the run lock now, if anyone."""
        return await self._locks.holder(self._k("lock", service, environment))

    async def set_hold(self, environment: str, service: str | None, hold: LockInfo) -> None:
        """Adds or replaces a manual lock on an environment (or one service in it)."""
        await self._store.call("hold_set", self._redis.hset(self._k("holds"), f"{environment}:{service or '*'}", hold.to_json()))

    async def remove_hold(self, environment: str, service: str | None) -> LockInfo | None:
        """Removes a manual lock; returns it, or None if there was none."""
        field = f"{environment}:{service or '*'}"
        raw = await self._store.call("hold_get", self._redis.hget(self._k("holds"), field))
        if raw is None:
            return None
        await self._store.call("hold_del", self._redis.hdel(self._k("holds"), field))
        return LockInfo.from_json(raw)

    async def holds(self, now: datetime) -> dict[str, LockInfo]:
        """Manual locks still in force, by `<env>:<service or *>`; expired ones are removed."""
        raw = await self._store.call("holds_get", self._redis.hgetall(self._k("holds")))
        live: dict[str, LockInfo] = {}
        for field, value in raw.items():
            hold = LockInfo.from_json(value)
            if hold.until is not None and hold.until <= now:
                await self._store.call("hold_del", self._redis.hdel(self._k("holds"), field))
            else:
                live[field] = hold
        return live


def _parse(raw: str | None) -> DeployRecord | None:
    if raw is None:
        return None
    try:
        return DeployRecord.model_validate_json(raw)
    except ValidationError:
        return None
