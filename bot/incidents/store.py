"""Incidents in Redis: the record, its timeline stream, the indexes (open, all, by channel) and the "no commander
yet" deadlines. A change to an incident and the timeline entries it adds are written in one MULTI/EXEC under the
`{incidents}` hash tag, so the record and its timeline never disagree."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar

from pydantic import ValidationError

from bot.incidents.model import Incident, TimelineEntry
from bot.platform.store import Pipe, Store, stream_fields

PUBLISH_LEASE_MS = 30_000
T = TypeVar("T")

# Same lease-claim as the alert deadlines: each due member goes to one caller, and comes due again if it dies.
_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[2], member)
end
return due
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class IncidentStore:
    """Typed Redis access for incidents."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.redis = store.redis
        self._keys = store.keys
        self._claim = store.redis.register_script(_CLAIM)
        self._release = store.redis.register_script(_RELEASE)

    async def call(self, operation: str, awaitable: Awaitable[T]) -> T:
        """Awaits one Redis operation through the store (counted; a failure is StoreUnavailable)."""
        return await self._store.call(operation, awaitable)

    def k(self, part: str, *names: str) -> str:
        """An incidents key."""
        return self._keys.incidents(part, *names)

    async def next_number(self) -> int:
        """A new incident number (1, 2, 3…), never handed out twice."""
        return int(await self._store.call("incident_seq", self.redis.incr(self.k("seq"))))

    async def create(self, incident: Incident, entry: TimelineEntry, *, deadline_at: datetime | None) -> None:
        """Stores a new incident, its first timeline entry, its indexes and its deadline, in one transaction."""

        async def write() -> None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(self.k("record", incident.id), incident.model_dump_json())
                pipe.sadd(self.k("open"), incident.id)
                pipe.zadd(self.k("all"), {incident.id: incident.declared_at.timestamp()})
                pipe.xadd(self.k("timeline", incident.id), stream_fields(entry.fields()))
                if incident.deadline is not None and deadline_at is not None:
                    pipe.zadd(self.k("deadlines"), {incident.deadline: deadline_at.timestamp()})
                await pipe.execute()

        await self._store.call("incident_create", write())

    async def get(self, incident_id: str) -> Incident | None:
        """An incident by id (`INC-7`)."""
        return _parse(await self._store.get("incident_get", self.k("record", incident_id)))

    async def many(self, ids: Sequence[str]) -> list[Incident]:
        """Several incidents by id, in that order (missing ones left out)."""
        if not ids:
            return []
        raws = await self._store.mget("incident_mget", [self.k("record", i) for i in ids])
        return [incident for incident in (_parse(raw) for raw in raws) if incident is not None]

    async def by_channel(self, channel_id: str) -> str | None:
        """The incident whose channel this is."""
        return await self._store.hget("incident_channel", self.k("channels"), channel_id)

    async def by_name(self, name: str) -> str | None:
        """The incident whose channel has this name."""
        return await self._store.hget("incident_name", self.k("names"), name)

    async def update(
        self,
        incident_id: str,
        change: Callable[[Incident], Incident],
        *,
        entries: Callable[[Incident, Incident], Sequence[TimelineEntry]] = lambda _b, _a: (),
        deadline_at: datetime | None = None,
        also: Callable[[Pipe, Incident], None] | None = None,
    ) -> tuple[Incident, Incident]:
        """Applies `change` atomically with the timeline entries `entries(before, after)` returns; keeps the
        indexes and the deadline set right. `change` may raise: then nothing is written."""

        def write(raw: str | None, pipe: Pipe) -> tuple[Incident, Incident]:
            before = _parse(raw)
            if before is None:
                raise KeyError(incident_id)
            after = change(before)
            pipe.set(self.k("record", incident_id), after.model_dump_json())
            for entry in entries(before, after):
                pipe.xadd(self.k("timeline", incident_id), stream_fields(entry.fields()))
            if before.open and not after.open:
                pipe.srem(self.k("open"), incident_id)
            if after.channel_id and after.channel_id != before.channel_id:
                pipe.hset(self.k("channels"), after.channel_id, incident_id)
                pipe.hset(self.k("names"), after.channel_name, incident_id)
            if before.deadline is not None and before.deadline != after.deadline:
                pipe.zrem(self.k("deadlines"), before.deadline)
            if after.deadline is not None and after.deadline != before.deadline and deadline_at is not None:
                pipe.zadd(self.k("deadlines"), {after.deadline: deadline_at.timestamp()})
            if also is not None:
                also(pipe, after)
            return before, after

        return await self._store.update_watched(self.k("record", incident_id), write, what=f"incident {incident_id}")

    async def timeline(self, incident_id: str, *, after: str = "-") -> list[TimelineEntry]:
        """The timeline in order (only entries after stream id `after`, if given)."""
        start = f"({after}" if after != "-" else "-"
        entries = await self._store.xrange("incident_timeline", self.k("timeline", incident_id), start, "+")
        found = []
        for entry_id, fields in entries:
            try:
                found.append(TimelineEntry.model_validate({**fields, "id": entry_id}))
            except ValidationError:
                continue
        return found

    async def open_ids(self) -> list[str]:
        """Ids of incidents not resolved."""
        return sorted(await self._store.smembers("incident_open", self.k("open")))

    async def recent_ids(self, limit: int) -> list[str]:
        """The newest `limit` incident ids, newest first."""
        return await self._store.zrange("incident_all", self.k("all"), 0, limit - 1, desc=True)

    # -- publishing the timeline to Slack --------------------------------------------------------------------

    async def published(self, incident_id: str) -> str:
        """The id of the last timeline entry posted to Slack ("-" for none)."""
        return await self._store.hget("incident_published", self.k("published"), incident_id) or "-"

    async def mark_published(self, incident_id: str, entry_id: str) -> None:
        """Moves the published cursor forward."""
        await self._store.call("incident_mark", self.redis.hset(self.k("published"), incident_id, entry_id))

    async def lock_publisher(self, incident_id: str) -> str | None:
        """A token if this caller may post the incident's timeline now (one poster at a time, in order)."""
        token = secrets.token_hex(8)
        got = await self._store.call(
            "incident_lock", self.redis.set(self.k("publish", incident_id), token, nx=True, px=PUBLISH_LEASE_MS)
        )
        return token if got else None

    async def unlock_publisher(self, incident_id: str, token: str) -> None:
        """Releases the lock if this caller still holds it."""
        await self._store.call("incident_unlock", self._release(keys=[self.k("publish", incident_id)], args=[token]))

    # -- deadlines and figures ------------------------------------------------------------------------------

    async def claim_deadlines(self, now: datetime, *, lease_seconds: float = 60, count: int = 100) -> list[str]:
        """Deadlines due by `now`, each leased to this caller for `lease_seconds`."""
        members = await self._store.call(
            "incident_claim",
            self._claim(
                keys=[self.k("deadlines")],
                args=[now.timestamp(), now.timestamp() + lease_seconds, count],
            ),
        )
        return [str(member) for member in members]

    async def drop_deadline(self, member: str) -> None:
        """Forgets a deadline that is done or stale."""
        await self._store.call("incident_drop", self.redis.zrem(self.k("deadlines"), member))

    async def deadline_at(self, member: str) -> float | None:
        """When a deadline is due (epoch seconds), if it is pending."""
        return await self._store.call("incident_deadline", self.redis.zscore(self.k("deadlines"), member))

    def queue_figures(self, pipe: Pipe, fields: dict[str, str]) -> None:
        """Queues one resolved incident's figures in the transaction that resolves it."""
        pipe.xadd(self.k("figures"), stream_fields(fields))

    async def figures(self, count: int = 1000) -> list[dict[str, str]]:
        """Recorded figures, newest first."""
        entries = await self._store.xrevrange("incident_figures", self.k("figures"), count=count)
        return [fields for _, fields in entries]


def _parse(raw: str | None) -> Incident | None:
    if raw is None:
        return None
    try:
        return Incident.model_validate_json(raw)
    except ValidationError:
        return None
