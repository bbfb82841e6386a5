"""Probe results in Redis with bounded memory: per target, two fixed-size ring buffers in Redis strings, updated
with BITFIELD by one Lua script.

* minutes: 360 slots of (u32 minute number, u16 good, u16 total, u32 latency sum in ms): the last 6 hours at one
  minute (burn rates, the sparkline, latency), 4,320 bytes;
* hours: 744 slots of (u32 hour number, u16 good, u16 total): 31 days at one hour (availability over the SLO
  window), 5,952 bytes;
* days: 400 slots laid out like the minutes (u32 day number, u16 good, u16 total, u32 latency sum): the public
  status page's uptime bars (`status_page.history_days`, up to 400), 4,800 bytes. u16 counts hold a day of
  probes every 5 s (17,280) with room to spare.

A slot carries the minute (hour) it counts; a write to a slot holding an older one resets it first, so the rings
never grow, and reads ignore slots outside the window asked for. About 15 KB per target whatever the history.
The last result of each target is kept too (a hash), for `/status <service>`, and when each target was first seen
live (answering right, or deployed by chatops): results before that are kept as its last result only, so a target
never deployed does not count as down.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from bot.platform.store import Store
from bot.status.slo import Counts

MINUTE_SLOTS = 360
HOUR_SLOTS = 744
DAY_SLOTS = 400
MINUTE_BYTES = 12
HOUR_BYTES = 8

_RECORD = """
local function bump(key, slots, size, tag, good, latency)
  if redis.call('EXISTS', key) == 0 then
    redis.call('SETRANGE', key, slots * size - 1, '\0')  -- full size at once: the footprint never changes
  end
  local base = (tag % slots) * size * 8
  local held = redis.call('BITFIELD', key, 'GET', 'u32', base)[1]
  if held ~= tag then
    redis.call('BITFIELD', key, 'SET', 'u32', base, tag, 'SET', 'u16', base + 32, 0, 'SET', 'u16', base + 48, 0)
    if size == 12 then redis.call('BITFIELD', key, 'SET', 'u32', base + 64, 0) end
  end
  redis.call('BITFIELD', key, 'OVERFLOW', 'SAT', 'INCRBY', 'u16', base + 32, good, 'INCRBY', 'u16', base + 48, 1)
  if size == 12 then redis.call('BITFIELD', key, 'OVERFLOW', 'SAT', 'INCRBY', 'u32', base + 64, latency) end
end
bump(KEYS[1], tonumber(ARGV[1]), 12, tonumber(ARGV[3]), tonumber(ARGV[5]), tonumber(ARGV[6]))
bump(KEYS[2], tonumber(ARGV[2]), 8, tonumber(ARGV[4]), tonumber(ARGV[5]), 0)
bump(KEYS[3], tonumber(ARGV[7]), 12, tonumber(ARGV[8]), tonumber(ARGV[5]), tonumber(ARGV[6]))
return 1
"""

# Returns (tag, good, total, latency) of every slot whose tag is in [ARGV[3], ARGV[4]], flattened.
_READ = """
local slots, size, low, high = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
if redis.call('EXISTS', KEYS[1]) == 0 then return out end
for slot = 0, slots - 1 do
  local base = slot * size * 8
  local fields
  if size == 12 then
    fields = redis.call('BITFIELD', KEYS[1], 'GET', 'u32', base, 'GET', 'u16', base + 32, 'GET', 'u16', base + 48,
                        'GET', 'u32', base + 64)
  else
    fields = redis.call('BITFIELD', KEYS[1], 'GET', 'u32', base, 'GET', 'u16', base + 32, 'GET', 'u16', base + 48)
    fields[4] = 0
  end
  if fields[1] >= low and fields[1] <= high and fields[3] > 0 then
    for _, value in ipairs(fields) do out[#out + 1] = value end
  end
end
return out
"""


@dataclass(frozen=True)
class Bucket:
    """One slot read back: its minute (or hour) number, counts and summed latency."""

    tag: int
    counts: Counts
    latency_ms_sum: int

    @property
    def mean_latency_ms(self) -> float | None:
        """Mean latency of the probes counted here."""
        return self.latency_ms_sum / self.counts.total if self.counts.total else None


class ProbeStore:
    """Typed Redis access to probe history."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._keys = store.keys
        self._record = store.redis.register_script(_RECORD)
        self._read = store.redis.register_script(_READ)

    def _ring(self, target: str, resolution: str) -> str:
        return self._keys.status("ring", target, resolution)

    async def record(
        self, target: str, at: datetime, *, good: bool, latency_ms: float, detail: dict[str, object]
    ) -> None:
        """Counts one probe result of `target` at `at`, and keeps it as the target's last result."""
        seconds = int(at.timestamp())
        await self._store.call(
            "probe_record",
            self._record(
                keys=[self._ring(target, "m"), self._ring(target, "h"), self._ring(target, "d")],
                args=[
                    MINUTE_SLOTS,
                    HOUR_SLOTS,
                    seconds // 60,
                    seconds // 3600,
                    int(good),
                    max(int(latency_ms), 0),
                    DAY_SLOTS,
                    seconds // 86400,
                ],
            ),
        )
        await self.remember(target, detail)

    async def remember(self, target: str, detail: dict[str, object]) -> None:
        """Keeps `detail` as the target's last result without counting it (a target not live yet)."""
        await self._store.call(
            "probe_last", self._store.redis.hset(self._keys.status("last"), target, json.dumps(detail, default=str))
        )

    async def live_since(self) -> dict[str, datetime]:
        """When each target was first seen live."""
        raw = await self._store.hgetall("probe_live_get", self._keys.status("live"))
        return {target: datetime.fromisoformat(text) for target, text in raw.items()}

    async def mark_live(self, target: str, at: datetime) -> None:
        """Records that `target` is live from `at` on (the first mark stays)."""
        key = self._keys.status("live")
        await self._store.call("probe_live", self._store.redis.hsetnx(key, target, at.isoformat()))

    async def minutes(self, target: str, since: datetime, until: datetime) -> list[Bucket]:
        """Minute buckets of `target` in [since, until] (the last 6 hours at most), oldest first."""
        return await self._buckets(
            target, "m", MINUTE_SLOTS, MINUTE_BYTES, int(since.timestamp()) // 60, int(until.timestamp()) // 60
        )

    async def hours(self, target: str, since: datetime, until: datetime) -> list[Bucket]:
        """Hour buckets of `target` in [since, until] (the last 31 days at most), oldest first."""
        return await self._buckets(
            target, "h", HOUR_SLOTS, HOUR_BYTES, int(since.timestamp()) // 3600, int(until.timestamp()) // 3600
        )

    async def days(self, target: str, since: datetime, until: datetime) -> list[Bucket]:
        """Day buckets (UTC days) of `target` in [since, until] (the last 400 days at most), oldest first."""
        return await self._buckets(
            target, "d", DAY_SLOTS, MINUTE_BYTES, int(since.timestamp()) // 86400, int(until.timestamp()) // 86400
        )

    async def _buckets(self, target: str, resolution: str, slots: int, size: int, low: int, high: int) -> list[Bucket]:
        flat = await self._store.call(
            "probe_read", self._read(keys=[self._ring(target, resolution)], args=[slots, size, low, high])
        )
        buckets = [
            Bucket(int(flat[i]), Counts(int(flat[i + 1]), int(flat[i + 2])), int(flat[i + 3]))
            for i in range(0, len(flat), 4)
        ]
        return sorted(buckets, key=lambda bucket: bucket.tag)

    async def last(self) -> dict[str, dict[str, object]]:
        """The last result of every target."""
        raw = await self._store.hgetall("probe_last_get", self._keys.status("last"))
        return {target: json.loads(text) for target, text in raw.items()}

    async def memory(self, target: str) -> int:
        """Bytes Redis uses for `target`'s history (MEMORY USAGE of both rings)."""
        total = 0
        for resolution in ("m", "h", "d"):
            total += int(await self._store.redis.memory_usage(self._ring(target, resolution)) or 0)
        return total

    async def set_burning(self, target: str, burning: bool) -> bool:
        """Records whether `target` is in fast burn; True when that changed."""
        key = self._keys.status("burning")
        if burning:
            return bool(await self._store.call("burn_set", self._store.redis.hsetnx(key, target, "1")))
        return bool(await self._store.call("burn_del", self._store.redis.hdel(key, target)))


def counts(buckets: list[Bucket]) -> Counts:
    """The buckets' counts summed."""
    total = Counts()
    for bucket in buckets:
        total = total + bucket.counts
    return total
