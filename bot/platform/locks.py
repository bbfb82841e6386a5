"""Run locks and due-deadline queues in Redis, shared by every service that needs them (deploys, backups).

A run lock is a JSON `LockInfo` under one key, taken with `SET NX PX`; it carries an owner token, and only the
owner may renew or release it (Lua compare-and-act). A deadline queue is a sorted set of ids by due time; a due
id is claimed (removed) by exactly one caller.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.platform.store import Store

_RENEW = """
local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v)['token'] == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v)['token'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_CLAIM_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 50)
for _, id in ipairs(due) do redis.call('ZREM', KEYS[1], id) end
return due
"""


@dataclass(frozen=True)
class LockInfo:
    """Who holds a lock, why, since when, until when (None: while the run lasts), and which run (`deploy_id`,
    the stored name, holds a deploy's or a backup's id)."""

    token: str
    holder: str
    reason: str
    since: datetime
    until: datetime | None
    deploy_id: str | None = None

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps(
            {
                "token": self.token,
                "holder": self.holder,
                "reason": self.reason,
                "since": self.since.isoformat(),
                "until": self.until.isoformat() if self.until else None,
                "deploy_id": self.deploy_id,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> LockInfo:
        """Reads the stored form."""
        data = json.loads(text)
        return cls(
            token=data["token"],
            holder=data["holder"],
            reason=data.get("reason", ""),
            since=datetime.fromisoformat(data["since"]),
            until=datetime.fromisoformat(data["until"]) if data.get("until") else None,
            deploy_id=data.get("deploy_id"),
        )


class RunLocks:
    """Owner-token run locks and deadline queues on the chatops store; `what` names the metrics' operations."""

    def __init__(self, store: Store, what: str) -> None:
        self._store = store
        self._what = what
        self._renew = store.redis.register_script(_RENEW)
        self._release = store.redis.register_script(_RELEASE)
        self._claim = store.redis.register_script(_CLAIM_DUE)

    async def acquire(
        self,
        key: str,
        *,
        holder: str,
        reason: str,
        run_id: str,
        now: datetime,
        ttl: timedelta,
    ) -> tuple[LockInfo | None, LockInfo | None]:
        """Takes the lock: (ours, None) on success, (None, theirs) when someone holds it."""
        mine = LockInfo(secrets.token_hex(12), holder, reason, now, None, run_id)
        ok = await self._store.call(
            f"{self._what}_lock_acquire", self._store.redis.set(key, mine.to_json(), nx=True, px=_ms(ttl))
        )
        if ok:
            return mine, None
        return None, await self.holder(key)

    async def renew(self, key: str, token: str, ttl: timedelta) -> bool:
        """Extends our lock; False when it is no longer ours (expired, or taken by someone else)."""
        return bool(await self._store.call(f"{self._what}_lock_renew", self._renew(keys=[key], args=[token, _ms(ttl)])))

    async def release(self, key: str, token: str) -> bool:
        """Releases our lock (never someone else's)."""
        return bool(await self._store.call(f"{self._what}_lock_release", self._release(keys=[key], args=[token])))

    async def holder(self, key: str) -> LockInfo | None:
        """Who holds the lock now, if anyone."""
        raw = await self._store.get(f"{self._what}_lock_get", key)
        return LockInfo.from_json(raw) if raw else None

    async def claim_due(self, key: str, now: datetime) -> list[str]:
        """Ids in the deadline queue `key` due by `now`; each is returned to exactly one caller, once."""
        return [
            str(i)
            for i in await self._store.call(f"{self._what}_claim_due", self._claim(keys=[key], args=[now.timestamp()]))
        ]


def _ms(span: timedelta) -> int:
    return int(span.total_seconds() * 1000)
