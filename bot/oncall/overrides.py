"""On-call overrides as stored in Redis: one JSON record per override in a hash, kept after it ends or is
cancelled (so `/oncall overrides` and the audit trail can show them) until pruned a month later."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, ValidationError

from bot.oncall.rotation import Override
from bot.platform.store import Store

KEEP_ENDED = timedelta(days=30)


class OverrideRecord(BaseModel):
    """Someone covering a rotation over [starts, ends), who set it up and why; cancelled ones stay recorded."""

    model_config = ConfigDict(frozen=True)

    id: str
    rotation: str
    member: str
    starts: datetime
    ends: datetime
    reason: str = ""
    created_by: str
    created_at: datetime
    cancelled_by: str | None = None
    cancelled_at: datetime | None = None

    @property
    def active(self) -> bool:
        """Not cancelled (it may still be in the future or over)."""
        return self.cancelled_at is None

    def as_override(self) -> Override:
        """The schedule maths' view of it."""
        return Override(self.id, self.rotation, self.member, self.starts, self.ends)


def new_override_id() -> str:
    """A short id people can type: `o-` and 6 characters."""
    alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
    return "o-" + "".join(secrets.choice(alphabet) for _ in range(6))


class OverrideStore:
    """Typed Redis access to overrides."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._key = store.keys.oncall("overrides")

    async def all(self) -> list[OverrideRecord]:
        """Every stored override, oldest first (creation order decides which of two overlapping ones wins)."""
        raw = await self._store.call("overrides_get", self._store.redis.hgetall(self._key))
        records = []
        for text in raw.values():
            try:
                records.append(OverrideRecord.model_validate_json(text))
            except ValidationError:
                continue
        return sorted(records, key=lambda record: (record.created_at, record.id))

    async def get(self, override_id: str) -> OverrideRecord | None:
        """One override by id."""
        text = await self._store.call("override_get", self._store.redis.hget(self._key, override_id))
        return OverrideRecord.model_validate_json(text) if text else None

    async def save(self, record: OverrideRecord) -> None:
        """Stores (or replaces) an override."""
        await self._store.call("override_set", self._store.redis.hset(self._key, record.id, record.model_dump_json()))

    async def prune(self, now: datetime) -> int:
        """Forgets overrides that ended (or were cancelled) more than a month ago; returns how many."""
        stale = [r.id for r in await self.all() if (r.cancelled_at or r.ends) < now - KEEP_ENDED]
        if stale:
            await self._store.call("override_prune", self._store.redis.hdel(self._key, *stale))
        return len(stale)
