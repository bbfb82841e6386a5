"""Deploy records, history, approvals' deadlines, run locks, manual holds and the daily counters of the deploy
figures in Redis; every multi-key change is one MULTI (optimistic, WATCHed) or Lua script, under the `{deploys}` hash
tag."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from pydantic import ValidationError
from redis.exceptions import WatchError

from bot.deploys.figures import (
    COUNTERS,
    Figures,
    Tally,
    backfill_tallies,
    calendar_window,
    figures_from_days,
    micros,
    tally,
)
from bot.deploys.model import DeployRecord, DeployState
from bot.platform.errors import StoreUnavailable
from bot.platform.locks import LockInfo, RunLocks
from bot.platform.store import Pipe, Store, optional_text, text

__all__ = ["DeployStore", "LockInfo"]  # LockInfo lives in bot.platform.locks; imported from here too

# Adds a finished record to its day's counters (ARGV from `figures.tally`), in the transaction that records its final
# state. KEYS: the day's counters, the day's lead times, the environment's failures waiting for a success (member
# `<started_us>:<day>:<id>`, scored by when it finished), its newest successes (id by when it finished), its days with
# counters (day by yyyymmdd, for retention). ARGV: the
# COUNTERS' increments (6), lead time or '', the waiting failure's member or '', '1' for a success, finish time (us),
# the counters' key without its day. A success restores every waiting failure that finished before it, into that
# failure's day; a failure finds a success recorded before it that finished after it (two replicas, one lock-refused
# request) in the newest successes. Numbers travel as text: Lua's own formatting would turn 1.7e15 into exponents.
_FINISH = """
local names = {'deploys', 'succeeded', 'failed', 'rollbacks', 'restores', 'restore_us'}
for i = 1, 6 do
  if ARGV[i] ~= '0' then redis.call('HINCRBY', KEYS[1], names[i], ARGV[i]) end
end
if ARGV[7] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[7]) end
redis.call('ZADD', KEYS[5], ARGV[13], ARGV[13])
local finished = tonumber(ARGV[10])
local function restore(member, at)
  local started, day = string.match(member, '^(%d+):(%d+):')
  local key = ARGV[11] .. day
  redis.call('HINCRBY', key, 'restores', 1)
  redis.call('HINCRBY', key, 'restore_us', string.format('%.0f', at - tonumber(started)))
end
if ARGV[8] ~= '' then
  local later = redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. ARGV[10], '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if #later > 0 then restore(ARGV[8], tonumber(later[2])) else redis.call('ZADD', KEYS[3], ARGV[10], ARGV[8]) end
end
if ARGV[9] == '1' then
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[10])) do
    restore(member, finished)
    redis.call('ZREM', KEYS[3], member)
  end
  redis.call('ZADD', KEYS[4], ARGV[10], ARGV[12])
  redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -17)
end
return 1
"""
# Sums the window's daily counters server-side, in one command (a pipeline of 60 reads a service environment costs the
# client more than Redis). KEYS: the backfill's hash, then each day's counters and lead times in turn; ARGV: how many
# service environments, then their fields in the backfill's hash. Nil while one is not backfilled; else the five small
# counters summed, each day's restore_us as stored (summed in Python: exact past 2^53) and every lead time.
_READ = """
local n = tonumber(ARGV[1])
for i = 1, n do
  if not redis.call('HGET', KEYS[1], ARGV[1 + i]) then return false end
end
local totals, restore_us, leads = {0, 0, 0, 0, 0}, {}, {}
for k = 2, #KEYS, 2 do
  local v = redis.call('HMGET', KEYS[k], 'deploys', 'succeeded', 'failed', 'rollbacks', 'restores', 'restore_us')
  for i = 1, 5 do totals[i] = totals[i] + tonumber(v[i] or '0') end
  if v[6] then table.insert(restore_us, v[6]) end
  if v[2] then  -- only a day with a successful deploy can have lead times
    for _, lead in ipairs(redis.call('LRANGE', KEYS[k + 1], 0, -1)) do table.insert(leads, lead) end
  end
end
return {totals, restore_us, leads}
"""
BACKFILL_LIMIT = 1000  # records per service environment, as the figures read before the counters (`recent`)
FIGURES_LOOKBACK = timedelta(days=7)  # before the window: a deploy that waited for approval may finish inside it


class DeployStore:
    """Typed Redis access for deploys."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._redis = store.redis
        self._keys = store.keys
        self._locks = RunLocks(store, "deploy")
        self._read_figures = store.redis.register_script(_READ)

    def _k(self, part: str, *names: str) -> str:
        return self._keys.deploy(part, *names)

    async def create(self, record: DeployRecord) -> None:
        """Stores a new record and indexes it (history, active, approval deadline)."""

        async def write() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self._k("record", record.id), record.model_dump_json())
                pipe.zadd(
                    self._k("history", record.service, record.environment), {record.id: record.created_at.timestamp()}
                )
                pipe.sadd(self._k("active"), record.id)
                if record.expires_at is not None:
                    pipe.zadd(self._k("deadlines"), {record.id: record.expires_at.timestamp()})
                await pipe.execute()

        await self._store.call("deploy_create", write())

    async def get(self, deploy_id: str) -> DeployRecord | None:
        """The record, or None when there is no such deploy."""
        raw = await self._store.get("deploy_get", self._k("record", deploy_id))
        return _parse(raw)

    async def update(self, deploy_id: str, change: Callable[[DeployRecord], DeployRecord]) -> DeployRecord:
        """Applies `change` to the current record atomically (retrying on a concurrent write) and returns the result.
        `change` may raise (IllegalTransition, a user-facing refusal): then nothing is written."""

        def write(raw: str | None, pipe: Pipe) -> DeployRecord:
            current = _parse(raw)
            if current is None:
                raise KeyError(deploy_id)
            updated = change(current)
            if updated.terminal and not current.terminal and not updated.counted:
                counted = tally(updated)
                if counted is not None:
                    self._queue_finish(pipe, updated, counted)
                    updated = updated.model_copy(update={"counted": True})
            pipe.set(self._k("record", deploy_id), updated.model_dump_json())
            if updated.terminal:
                pipe.srem(self._k("active"), deploy_id)
                pipe.zrem(self._k("deadlines"), deploy_id)
            if updated.state == DeployState.SUCCEEDED and current.state != DeployState.SUCCEEDED:
                pipe.set(self._k("current", updated.service, updated.environment), updated.version)
                # The deploy that put it there: `/status` reads it instead of looking through the history. A
                # rollback of a failed deploy puts back the version this still points to, so it stays.
                pipe.set(self._k("current_id", updated.service, updated.environment), updated.id)
            if (
                updated.state == DeployState.ROLLED_BACK
                and updated.previous_version
                and current.state != DeployState.ROLLED_BACK
            ):
                pipe.set(self._k("current", updated.service, updated.environment), updated.previous_version)
            return updated

        return await self._store.update_watched(self._k("record", deploy_id), write, what=f"deploy {deploy_id}")

    def _queue_finish(self, pipe: Pipe, record: DeployRecord, counted: Tally) -> None:
        """Queues `_FINISH` for a record reaching its final state (EVAL, not EVALSHA: it runs inside MULTI, where a
        missing script could not be loaded first; a deploy finishing is rare, the script short)."""
        service, environment = record.service, record.environment
        keys = [
            self._k("figs", service, environment, counted.day),
            self._k("leads", service, environment, counted.day),
            self._k("unrestored", service, environment),
            self._k("successes", service, environment),
            self._k("figs_days", service, environment),
        ]
        args = [str(counted.counts[name]) for name in COUNTERS] + [
            "" if counted.lead_us is None else str(counted.lead_us),
            "" if counted.waiting is None else counted.waiting.member(),
            "1" if counted.restores else "0",
            str(counted.finished_us),
            self._k("figs", service, environment) + ":",
            record.id,
            counted.day,
        ]
        pipe.eval(_FINISH, len(keys), *keys, *args)

    async def figures(self, service: str, environments: list[str], now: datetime) -> Figures | None:
        """The figures over the 30 UTC days ending today from the daily counters, in one command whatever the
        history's size; None while an environment's deploys finished by an earlier version are not in them yet
        (`backfill_figures`): then the caller computes them from the records, as before."""
        days, _ = calendar_window(now)
        keys = [self._k("figs_backfill")]
        for env in environments:  # each name's prefix built once (days are digits): 120 keys cost no more than 4
            figs, leads_ = self._k("figs", service, env) + ":", self._k("leads", service, env) + ":"
            keys.extend(key for day in days for key in (figs + day, leads_ + day))
        args = [str(len(environments)), *(_pair(service, env) for env in environments)]
        found = await self._store.script("deploy_figures", self._read_figures, keys, args)
        if not found:
            return None
        totals, restore_us, leads = found
        counters = dict(zip(COUNTERS[:5], (str(int(total)) for total in totals), strict=True))
        counters["restore_us"] = str(sum(int(value) for value in restore_us))
        return figures_from_days([counters], [str(lead) for lead in leads])

    async def backfill_figures(self, pairs: Sequence[tuple[str, str]], now: datetime, batch: int = 500) -> bool:
        """Adds the deploys of the figures' window (and the week before it) that an earlier version finished (not
        counted when they finished) to the daily counters, one service environment at a time (at most BACKFILL_LIMIT
        records each) until about `batch` records were read; True once every pair is done. The records, the counters
        and the pair's done mark move in one WATCHed MULTI, so a deploy finishing meanwhile, a crash or a second
        leader never count one twice."""
        if not pairs:  # no service configured: nothing to backfill (and HMGET takes at least one field)
            return True
        done_key = self._k("figs_backfill")
        days, end = calendar_window(now)
        since = end - timedelta(days=len(days)) - FIGURES_LOOKBACK
        marks = await self._store.call("deploy_backfill", self._redis.hmget(done_key, [_pair(s, e) for s, e in pairs]))
        read = 0
        for (service, environment), mark in zip(pairs, marks, strict=True):
            if mark:
                continue
            if read >= batch:
                return False
            read += await self._backfill_pair(service, environment, since)
        return True

    async def _backfill_pair(self, service: str, environment: str, since: datetime) -> int:
        """Counts one service environment's records created since `since` that are not counted yet; returns how
        many records it read."""
        done_key = self._k("figs_backfill")
        watched = [done_key, self._k("unrestored", service, environment), self._k("successes", service, environment)]
        for _ in range(20):
            try:
                async with self._redis.pipeline(transaction=True) as pipe:
                    await pipe.watch(*watched)
                    if await pipe.hget(done_key, _pair(service, environment)):
                        return 0
                    history = self._k("history", service, environment)
                    ids = [
                        str(i)
                        for i in await pipe.zrevrangebyscore(
                            history, "+inf", since.timestamp(), start=0, num=BACKFILL_LIMIT
                        )
                    ]
                    keys = [self._k("record", i) for i in ids]
                    if keys:
                        await pipe.watch(*keys)  # a deploy finishing now is counted by its own transaction
                    raws = [optional_text(raw) for raw in await pipe.mget(keys)] if keys else []
                    records = [r for r in (_parse(raw) for raw in raws) if r is not None]
                    plan = backfill_tallies(records, [r.id for r in records if r.counted])
                    pipe.multi()
                    days_with = set(plan.counts) | set(plan.leads)
                    if days_with:
                        pipe.zadd(self._k("figs_days", service, environment), {day: int(day) for day in days_with})
                    for day, counts in plan.counts.items():
                        for name, amount in counts.items():
                            if amount:
                                pipe.hincrby(self._k("figs", service, environment, day), name, amount)
                    for day, leads in plan.leads.items():
                        pipe.rpush(self._k("leads", service, environment, day), *leads)
                    for finished_us, waiting in plan.waiting:
                        pipe.zadd(self._k("unrestored", service, environment), {waiting.member(): finished_us})
                    pipe.hset(done_key, _pair(service, environment), "1")
                    await pipe.execute()
                return len(ids)
            except WatchError:
                continue
        raise StoreUnavailable(f"the deploys of {service} in {environment} kept changing; counting them again later")

    async def prune_figures(self, service: str, environment: str, cutoff: datetime, batch: int) -> int:
        """Deletes the daily counters and lead times of up to `batch` days before `cutoff`'s (found through the index
        of days with counters: nothing is looked for), and forgets failures before `cutoff` still waiting for a
        success, in one MULTI. Returns how many days it deleted."""
        index = self._k("figs_days", service, environment)
        days = [
            str(day)
            for day in await self._store.call(
                "deploy_prune", self._redis.zrangebyscore(index, "-inf", f"({cutoff:%Y%m%d}", start=0, num=batch)
            )
        ]
        async with self._redis.pipeline(transaction=True) as pipe:
            if days:
                pipe.delete(*[self._k(part, service, environment, day) for day in days for part in ("figs", "leads")])
                pipe.zrem(index, *days)
            pipe.zremrangebyscore(self._k("unrestored", service, environment), "-inf", f"({micros(cutoff)}")
            await self._store.call("deploy_prune", pipe.execute())
        return len(days)

    async def current_version(self, service: str, environment: str) -> str | None:
        """The version running now (from the last successful deploy or rollback)."""
        return await self._store.get("deploy_current", self._k("current", service, environment))

    async def history(
        self, service: str, environment: str | None, environments: list[str], limit: int
    ) -> list[DeployRecord]:
        """The newest `limit` records of a service (one environment or all), newest first."""
        envs = [environment] if environment else environments
        ids: list[tuple[str, float]] = []
        for env in envs:
            found = await self._store.call(
                "deploy_history", self._redis.zrevrange(self._k("history", service, env), 0, limit - 1, withscores=True)
            )
            # WITHSCORES: the reply is (member, score) pairs (redis-py types every form of ZRANGE's reply).
            ids.extend((text(i), float(s)) for i, s in (pair for pair in found if not isinstance(pair, bytes | str)))
        ids.sort(key=lambda pair: pair[1], reverse=True)
        return await self._many([i for i, _ in ids[:limit]])

    async def recent(
        self, service: str, environments: list[str], since: datetime, limit: int = 1000
    ) -> list[DeployRecord]:
        """Records of a service created since `since` (at most `limit` per environment, the newest): what the
        figures over a window need, however long the history."""

        async def read() -> list[list[str]]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for env in environments:
                    pipe.zrevrangebyscore(
                        self._k("history", service, env), "+inf", since.timestamp(), start=0, num=limit
                    )
                return list(await pipe.execute())

        found = await self._store.call("deploy_recent", read())
        return await self._many([str(i) for ids in found for i in ids])

    async def running_record(self, service: str, environment: str) -> tuple[str | None, DeployRecord | None]:
        """The version running in an environment and the deploy that put it there (its succeeded record), in two
        round trips. Records written before the `current_id` pointer existed are found in the newest 20, as before."""
        return (await self.running_records([(service, environment)]))[(service, environment)]

    async def running_records(
        self,
        pairs: Sequence[tuple[str, str]],
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

    async def prune(
        self, service: str, environment: str, cutoff: datetime, batch: int, *, skip: int = 0
    ) -> tuple[int, int]:
        """Removes up to `batch` finished records of one service environment created before `cutoff`; never one
        still active, nor the deploy that put the running version in place. Returns (removed, kept): kept ones stay
        first in the index, so the next batch passes `skip` += kept."""
        history = self._k("history", service, environment)
        ids = [
            str(i)
            for i in await self._store.call(
                "deploy_prune",
                self._redis.zrangebyscore(history, "-inf", f"({cutoff.timestamp()}", start=skip, num=batch),
            )
        ]
        if not ids:
            return 0, 0
        pointer = await self._store.get("deploy_prune", self._k("current_id", service, environment))
        active = await self._store.call("deploy_prune", self._redis.smismember(self._k("active"), ids))
        records = dict(
            zip(
                ids,
                await self._store.mget("deploy_prune", [self._k("record", i) for i in ids]),
                strict=True,
            )
        )
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
        ids = await self._store.smembers("deploy_active", self._k("active"))
        return await self._many(sorted(ids))

    async def _many(self, ids: list[str]) -> list[DeployRecord]:
        return [record for record in (_parse(raw) for raw in await self._many_raw(ids)) if record is not None]

    async def _many_raw(self, ids: list[str]) -> list[str | None]:
        return await self._store.mget("deploy_mget", [self._k("record", i) for i in ids])

    async def claim_due(self, now: datetime) -> list[str]:
        """Ids whose approval deadline has passed; each is returned to exactly one caller, once."""
        return await self._locks.claim_due(self._k("deadlines"), now)

    async def acquire_lock(
        self, service: str, environment: str, *, holder: str, reason: str, deploy_id: str, now: datetime, ttl: timedelta
    ) -> tuple[LockInfo | None, LockInfo | None]:
        """Takes the run lock: (ours, None) on success, (None, theirs) when someone holds it."""
        return await self._locks.acquire(
            self._k("lock", service, environment), holder=holder, reason=reason, run_id=deploy_id, now=now, ttl=ttl
        )

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
        await self._store.call(
            "hold_set", self._redis.hset(self._k("holds"), f"{environment}:{service or '*'}", hold.to_json())
        )

    async def remove_hold(self, environment: str, service: str | None) -> LockInfo | None:
        """Removes a manual lock; returns it, or None if there was none."""
        field = f"{environment}:{service or '*'}"
        raw = await self._store.hget("hold_get", self._k("holds"), field)
        if raw is None:
            return None
        await self._store.call("hold_del", self._redis.hdel(self._k("holds"), field))
        return LockInfo.from_json(raw)

    async def holds(self, now: datetime) -> dict[str, LockInfo]:
        """Manual locks still in force, by `<env>:<service or *>`; expired ones are removed."""
        raw = await self._store.hgetall("holds_get", self._k("holds"))
        live: dict[str, LockInfo] = {}
        for field, value in raw.items():
            hold = LockInfo.from_json(value)
            if hold.until is not None and hold.until <= now:
                await self._store.call("hold_del", self._redis.hdel(self._k("holds"), field))
            else:
                live[field] = hold
        return live


def _pair(service: str, environment: str) -> str:
    """A service environment as a field of the backfill's hash (JSON: names may hold any separator)."""
    return json.dumps([service, environment])


def _parse(raw: str | None) -> DeployRecord | None:
    if raw is None:
        return None
    try:
        return DeployRecord.model_validate_json(raw)
    except ValidationError:
        return None
