"""Alerts in Redis: the ingest stream and its consumer group, alert groups and their indexes, acknowledgements,
silences and daily counters. Multi-key changes are MULTI/EXEC under the `{alerts}` hash tag."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from pydantic import ValidationError
from redis.exceptions import ResponseError, WatchError
from redis.typing import EncodableT

from bot.alerts.model import AlertGroup
from bot.platform.errors import StoreUnavailable
from bot.platform.store import (
    IDEMPOTENCY_TTL_SECONDS,
    UNAVAILABLE,
    Pipe,
    Store,
    StreamFields,
    optional_text,
    stream_entries,
    stream_fields,
    text,
)
from integrations.alerts.model import Alert

CONSUMER_GROUP = "delivery"

# Creates a group and every index of it in one step, only if no group is open for its key: a process killed half
# way can never leave an `open` pointer to a group that does not exist (KEYS: open, group, firing, groups, post_due,
# deadlines; ARGV: id, json, created score, post score, deadline member, deadline score).
_CREATE_GROUP = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[1])
if ARGV[5] ~= '' then redis.call('ZADD', KEYS[6], ARGV[6], ARGV[5]) end
return 1
"""

# The open group of a key, if its record exists; a pointer to a missing record (left by an older version, or by a
# Redis that lost part of its data) is removed, so the next alert opens a new group instead of failing forever.
_OPEN_GROUP = """
local id = redis.call('GET', KEYS[1])
if not id then return false end
if redis.call('EXISTS', KEYS[2] .. id) == 1 then return id end
redis.call('DEL', KEYS[1])
return false
"""

# Leases one member if it is due (its score not past ARGV[2]): 1 for the caller that got it, else 0.
_CLAIM_ONE = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""

# Records an attempt as "<first>|<latest>" (ISO times) and returns what was recorded before it (nil the first time).
_NOTE_ATTEMPT = """
local before = redis.call('HGET', KEYS[1], ARGV[1])
local first = before and string.match(before, '^([^|]*)') or ARGV[2]
redis.call('HSET', KEYS[1], ARGV[1], first .. '|' .. ARGV[2])
return before
"""

# Forgets a claimed member only if nobody queued it again since the claim (its score is still the lease).
_DONE_IF_UNCHANGED = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
"""

# Claims due deadlines by pushing their score `lease` seconds ahead: each due deadline goes to one caller, and one
# whose caller dies before finishing comes due again when the lease runs out (at least once, never lost).
_CLAIM_DEADLINES = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[2], member)
end
return due
"""

# Appends one webhook's alerts unless its delivery id was seen (KEYS: request marker, stream, stats; ARGV: marker
# ttl, alerts json, count): the marker and the entry are written together, so a redelivery after a 5xx is stored
# and one after a 2xx is not, whatever fails in between.
_APPEND_ONCE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then return false end
local id = redis.call('XADD', KEYS[2], '*', 'alerts', ARGV[2])
redis.call('HINCRBY', KEYS[3], 'received', tonumber(ARGV[3]))
return id
"""


# Removes alert groups that are still resolved (KEYS: group keys, then groups, post_due, update_due, posting,
# firing; ARGV: their ids): a group that fires again between the read and this script is left alone.
_DROP_RESOLVED = """
local n = #ARGV
local removed = 0
for i = 1, n do
  local raw = redis.call('GET', KEYS[i])
  local ok, group = pcall(cjson.decode, raw or '')
  if not raw or (ok and type(group) == 'table' and group['state'] == 'resolved') then
    redis.call('DEL', KEYS[i])
    redis.call('ZREM', KEYS[n + 1], ARGV[i])
    redis.call('ZREM', KEYS[n + 2], ARGV[i])
    redis.call('ZREM', KEYS[n + 3], ARGV[i])
    redis.call('HDEL', KEYS[n + 4], ARGV[i])
    redis.call('SREM', KEYS[n + 5], ARGV[i])
    removed = removed + 1
  end
end
return removed
"""

# After a group's queued thread replies were sent (KEYS: its replies list, replies_due, replying; ARGV: how many
# were sent, group id): drops them and the attempt's note, and keeps the group due while replies queued since the
# claim remain.
_REPLIES_SENT = """
redis.call('LTRIM', KEYS[1], tonumber(ARGV[1]), -1)
redis.call('HDEL', KEYS[3], ARGV[2])
if redis.call('LLEN', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[2])
else
  redis.call('ZADD', KEYS[2], 0, ARGV[2])
end
return 1
"""

# Notes an attempt at sending a group's queued replies as one thread reply (KEYS: replying; ARGV: group id, now,
# how many queued replies the reply uses). A first attempt records when it began and how many it uses; a later one
# (the earlier may have reached Slack before the process died or the answer was lost) gets that record back, with
# its time extended: it must send the same replies under the same key, after looking for them in the thread.
_BEGIN_REPLY = """
local before = redis.call('HGET', KEYS[1], ARGV[1])
if not before then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. ARGV[2] .. '|' .. ARGV[3])
  return false
end
local first, used = string.match(before, '^([^|]*)|[^|]*|(.*)$')
if not first then
  first, used = ARGV[2], ARGV[3]
end
redis.call('HSET', KEYS[1], ARGV[1], first .. '|' .. ARGV[2] .. '|' .. used)
return before
"""

# After every page DM of a group was shown an outcome (KEYS: page_outcomes, pages_due; ARGV: group id, the outcome
# shown): done, unless a newer outcome was queued meanwhile (then it stays due, to show that one).
_PAGES_CLOSED = """
local queued = redis.call('HGET', KEYS[1], ARGV[1])
if queued and queued ~= ARGV[2] then
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# Appends a batch of stream entries and counts their alerts as received, as one command (`StreamAppender`). KEYS: the
# stream, then the daily counters of each day in the batch; ARGV: the number of entries, then per entry its number
# of fields followed by its fields and values, then each day's count of alerts. Returns the entries' ids in order.
_APPEND_ENTRIES = """
local at = 2
local ids = {}
for _ = 1, tonumber(ARGV[1]) do
  local fields = tonumber(ARGV[at])
  ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', unpack(ARGV, at + 1, at + 2 * fields))
  at = at + 1 + 2 * fields
end
for day = 2, #KEYS do
  redis.call('HINCRBY', KEYS[day], 'received', ARGV[at])
  at = at + 1
end
return ids
"""

# The daily counters summed over the days asked for, as a flat list of field and total: one small reply however
# many days hold counters. KEYS[1] holds the totals of the older days (the ARGV[1] day keys after KEYS[2]; the rest,
# yesterday and today, are read live) as they were at generation KEYS[2], which every write into an older day raises
# (`older_days_changed`); while the generations match those totals are read instead of the older days themselves,
# so the answer costs the same whether a month of days holds counters or none does. ARGV[2]: seconds the totals are
# kept (the window moves on daily).
_SUM_COUNTERS = """
local older = tonumber(ARGV[1])
local generation = redis.call('GET', KEYS[2]) or '0'
local totals, fields = {}, {}
local function add(into, names, pairs_)
  for i = 1, #pairs_, 2 do
    local field = pairs_[i]
    if field ~= '\0generation' then
      if into[field] == nil then
        into[field] = 0
        names[#names + 1] = field
      end
      into[field] = into[field] + tonumber(pairs_[i + 1])
    end
  end
end
local cached = redis.call('HGETALL', KEYS[1])
local current = false
for i = 1, #cached, 2 do
  if cached[i] == '\0generation' and cached[i + 1] == generation then current = true end
end
if current then
  add(totals, fields, cached)
else
  for k = 3, 2 + older do add(totals, fields, redis.call('HGETALL', KEYS[k])) end
  local flat = {'\0generation', generation}
  for _, field in ipairs(fields) do
    flat[#flat + 1] = field
    flat[#flat + 1] = string.format('%.0f', totals[field])
  end
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], unpack(flat))
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
end
for k = 3 + older, #KEYS do add(totals, fields, redis.call('HGETALL', KEYS[k])) end
local flat = {}
for _, field in ipairs(fields) do
  flat[#flat + 1] = field
  flat[#flat + 1] = string.format('%.0f', totals[field])
end
return flat
"""
# Days read live by `/alerts stats` (today and yesterday: the days whose counters the running bot still writes, a
# clock a little behind included); and how long the older days' totals are kept.
LIVE_STAT_DAYS = 2
OLDER_TOTALS_SECONDS = 2 * 86_400

ACK_COUNTERS_READY = "ready"

# The first character of a queued thread reply: a line that may be counted instead of shown, or one always shown.
COUNTABLE = "c"
NOTE = "n"


@dataclass(frozen=True)
class Pruned:
    """What one retention batch removed from the alerts' history."""

    groups: int = 0
    kept: int = 0
    days: int = 0
    more: bool = False


@dataclass(frozen=True)
class RawEntry:
    """A stream entry holding a webhook's body as its source sent it (`RawIntake`), still to be normalised."""

    source: str
    body: str
    received_at: datetime
    count: int


class StreamAppender:
    """Group commit for the ingest stream: the entries of concurrent webhooks go to Redis in one command (a script
    that appends them all and counts them: one write, one read, and a third of a pipeline's client CPU per entry)
    while the previous one is in flight, and each caller returns once its entry is stored (and replicated, see
    `Store.replicated`), or raises StoreUnavailable. A batch Redis refuses part-way (out of memory) is refused to
    every caller in it, so an entry may be stored twice when its sender retries: the consumer finds the second
    copy's alerts already in their group."""

    def __init__(self, store: Store, stream: str, stats: Callable[[str], str]) -> None:
        self._store = store
        self._append_entries = store.redis.register_script(_APPEND_ENTRIES)
        self._stream = stream
        self._stats = stats  # the daily counters' key for a day like 20261202
        self._pending: list[tuple[StreamFields, int, str, asyncio.Future[str]]] = []
        self._flushing: asyncio.Task[None] | None = None  # held: the loop keeps only weak references to tasks
        self._day: tuple[date, str] | None = None  # the last day appended to, and its key part (strftime is slow)

    async def append(self, fields: StreamFields, count: int, now: datetime) -> str:
        """Stores one entry of `count` alerts received at `now`; its stream id once Redis holds it."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        day = now.date()
        if self._day is None or self._day[0] != day:
            self._day = (day, f"{now:%Y%m%d}")
        self._pending.append((fields, count, self._day[1], future))
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush(), name="alert-append")
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._write(batch)
        finally:
            self._flushing = None

    async def _write(self, batch: list[tuple[StreamFields, int, str, asyncio.Future[str]]]) -> None:
        received: dict[str, int] = {}
        args: list[EncodableT] = [len(batch)]
        for fields, count, day, _ in batch:
            received[day] = received.get(day, 0) + count
            args.append(len(fields))
            for name, value in fields.items():
                args += (name, value)
        args.extend(received.values())
        keys = [self._stream, *(self._stats(day) for day in received)]
        try:
            ids = await self._store.call("alert_append", self._append_entries(keys=keys, args=args))
            await self._store.replicated(self._stream)  # 2xx only once enough replicas hold it (min_replicas_acked)
        except BaseException as error:  # every waiter must hear about it, or it would hang
            for *_, future in batch:
                if not future.done():
                    future.set_exception(error if isinstance(error, Exception) else StoreUnavailable(UNAVAILABLE))
            if not isinstance(error, Exception):
                raise
            return
        for (*_, future), entry_id in zip(batch, ids, strict=False):
            if not future.done():
                future.set_result(str(entry_id))


@dataclass(frozen=True)
class Attempt:
    """Whether this is the first attempt at a post, and if not, from when until when earlier attempts started."""

    first: bool
    earlier_from: datetime | None = None
    earlier_until: datetime | None = None


@dataclass(frozen=True)
class ReplyAttempt:
    """An attempt at sending a group's queued thread replies as one reply (see `_BEGIN_REPLY`): an `Attempt`, plus
    how many queued replies it sends (a later attempt sends exactly the first one's) and the key its message
    carries in its metadata (the same for every attempt at the same reply)."""

    first: bool
    used: int
    key: str
    earlier_from: datetime | None = None
    earlier_until: datetime | None = None


class AlertStore:
    """Typed Redis access for the alert pipeline."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.redis = store.redis
        self._keys = store.keys
        self._claim_deadlines = store.redis.register_script(_CLAIM_DEADLINES)
        self._create_group = store.redis.register_script(_CREATE_GROUP)
        self._open_group = store.redis.register_script(_OPEN_GROUP)
        self._done_if_unchanged = store.redis.register_script(_DONE_IF_UNCHANGED)
        self._claim_one = store.redis.register_script(_CLAIM_ONE)
        self._note_attempt = store.redis.register_script(_NOTE_ATTEMPT)
        self._append_once = store.redis.register_script(_APPEND_ONCE)
        self._drop_resolved = store.redis.register_script(_DROP_RESOLVED)
        self._replies_sent = store.redis.register_script(_REPLIES_SENT)
        self._begin_reply = store.redis.register_script(_BEGIN_REPLY)
        self._pages_closed = store.redis.register_script(_PAGES_CLOSED)
        self._sum_counters = store.redis.register_script(_SUM_COUNTERS)
        self._appender = StreamAppender(store, self.k("stream"), lambda day: self.k("stats", day))
        # Called with (pipe, before, after) inside every group change's transaction: what must follow a change
        # durably (PagerDuty's acknowledge / resolve) is queued in the same MULTI as the change itself.
        self.observers: list[Callable[[Pipe, AlertGroup, AlertGroup], None]] = []

    def k(self, part: str, *names: str) -> str:
        """An alerts key."""
        return self._keys.alerts(part, *names)

    # -- the stream ---------------------------------------------------------------------------------------

    async def append(self, alerts: Sequence[Alert], now: datetime) -> str:
        """Appends one webhook's alerts to the stream as one entry, in order (durable once this returns), and
        counts them as received. One entry per webhook, not per alert, and the entries of concurrent webhooks
        written together (`StreamAppender`)."""
        return await self._appender.append(
            stream_fields({"alerts": json.dumps([alert.to_json() for alert in alerts])}), len(alerts), now
        )

    async def append_raw(self, source: str, body: bytes, count: int, now: datetime) -> str:
        """Appends a webhook's body as its source sent it (admitted by `RawIntake.admit`: `count` alerts), to be
        normalised by the consumer; durable once this returns, as `append`."""
        fields: StreamFields = {"source": source, "body": body, "at": now.isoformat(), "count": str(count)}
        return await self._appender.append(fields, count, now)

    async def append_once(self, alerts: Sequence[Alert], now: datetime, request: str) -> str | None:
        """Like `append`, unless `request` (a sender's delivery id, e.g. `sentry:<Request-ID>`) was appended in the
        last IDEMPOTENCY_TTL_SECONDS: then nothing is written and None is returned."""
        marker = self.k("request", request)
        payload = json.dumps([alert.to_json() for alert in alerts])
        stats = self.k("stats", f"{now:%Y%m%d}")
        entry_id = await self._store.call(
            "alert_append",
            self._append_once(
                keys=[marker, self.k("stream"), stats], args=[IDEMPOTENCY_TTL_SECONDS, payload, len(alerts)]
            ),
        )
        await self._store.replicated(self.k("stream"))  # 2xx only once enough replicas hold it, as in `append`
        return None if entry_id is None else str(entry_id)

    async def ensure_consumer_group(self) -> None:
        """Creates the delivery consumer group (from the start of the stream) unless it exists: at start-up, and
        again whenever Redis answers NOGROUP (it restarted empty, or someone deleted the stream)."""
        try:
            await self.redis.xgroup_create(self.k("stream"), CONSUMER_GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def read(
        self, consumer: str, *, pending: bool, count: int = 100, block_ms: int = 1000
    ) -> list[tuple[str, list[Alert] | RawEntry]]:
        """New entries for this consumer, or (pending=True) the ones it read but has not acknowledged; each entry
        is the alerts of one webhook, in the order received (unreadable ones left out), or its body still to be
        normalised (`RawEntry`)."""
        reply = await self.redis.xreadgroup(
            CONSUMER_GROUP,
            consumer,
            {self.k("stream"): "0" if pending else ">"},
            count=count,
            block=None if pending else block_ms,
        )
        # The client speaks RESP2 (bot/platform/redis_client.py): the reply is a list of [stream, entries].
        streams = reply if isinstance(reply, list) else []
        return [
            (entry_id, _raw(fields) or _alerts(fields))
            for _, entries in streams
            for entry_id, fields in stream_entries(entries)
        ]

    async def claim_abandoned(self, consumer: str, min_idle_ms: int) -> int:
        """Takes over entries another consumer read but never acknowledged (it died); returns how many."""
        _, claimed, *_ = await self.redis.xautoclaim(
            self.k("stream"), CONSUMER_GROUP, consumer, min_idle_ms, "0-0", count=100
        )
        return len(claimed)

    async def ack(self, entry_ids: Sequence[str]) -> None:
        """Marks stream entries delivered."""
        if entry_ids:
            await self.redis.xack(self.k("stream"), CONSUMER_GROUP, *entry_ids)

    async def backlog(self) -> int:
        """Entries read but not yet delivered, across consumers."""
        try:
            info = await self.redis.xpending(self.k("stream"), CONSUMER_GROUP)
        except ResponseError:
            return 0
        return int(info.get("pending", 0)) if isinstance(info, dict) else 0

    # -- groups -------------------------------------------------------------------------------------------

    async def open_group(self, channel: str, key: str) -> str | None:
        """The id of the group still firing for this key in this channel (a pointer to a lost record is dropped)."""
        found = await self._open_group(keys=[self.k("open", channel, key), self.k("group", "")])
        return str(found) if found else None

    async def create_group(self, group: AlertGroup, *, post_at: datetime) -> bool:
        """Stores a new group as the open one for its key, due to be posted at `post_at`, all in one atomic step;
        False if another consumer opened one first."""
        deadline = group.pending if group.pending is not None and group.pending_at is not None else ""
        created = await self._create_group(
            keys=[
                self.k("open", group.channel, group.group_key),
                self.k("group", group.id),
                self.k("firing"),
                self.k("groups"),
                self.k("post_due"),
                self.k("deadlines"),
            ],
            args=[
                group.id,
                group.model_dump_json(),
                group.created_at.timestamp(),
                post_at.timestamp(),
                deadline,
                group.pending_at.timestamp() if deadline and group.pending_at else 0,
            ],
        )
        return bool(created)

    async def get_group(self, group_id: str) -> AlertGroup | None:
        """A group by id."""
        raw = await self._store.get("alert_group_get", self.k("group", group_id))
        return _group(raw)

    async def groups(self, ids: Sequence[str]) -> list[AlertGroup]:
        """Several groups by id (missing ones left out)."""
        if not ids:
            return []
        raws = await self._store.mget("alert_groups_get", [self.k("group", i) for i in ids])
        return [g for g in (_group(raw) for raw in raws) if g is not None]

    async def update_group(
        self,
        group_id: str,
        change: Callable[[AlertGroup], AlertGroup],
        *,
        dirty: bool = True,
        also: Callable[[Pipe, AlertGroup], None] | None = None,
    ) -> tuple[AlertGroup, AlertGroup]:
        """Applies `change` atomically, with whatever `also` queues in the same transaction (an ack record);
        keeps the open/firing indexes and the group's escalation deadline right; returns (before, after)."""

        def write(raw: str | None, pipe: Pipe) -> tuple[AlertGroup, AlertGroup]:
            before = _group(raw)
            if before is None:
                raise KeyError(group_id)
            after = change(before)
            if after.state == "resolved" and after.pending is not None:  # a resolved alert pages and reminds no one
                after = after.model_copy(
                    update={
                        "pending": None,
                        "pending_at": None,
                        "escalation_epoch": after.escalation_epoch + 1,
                        "escalation_state": "stopped"
                        if after.escalation_state in ("paging", "acknowledged")
                        else after.escalation_state,
                    }
                )
            if before.pending is not None and before.pending != after.pending:
                pipe.zrem(self.k("deadlines"), before.pending)
            if (
                after.pending is not None
                and after.pending_at is not None
                and (before.pending, before.pending_at) != (after.pending, after.pending_at)
            ):
                pipe.zadd(self.k("deadlines"), {after.pending: after.pending_at.timestamp()})
            pipe.set(self.k("group", group_id), after.model_dump_json())
            if after.state == "resolved" and before.state == "firing":
                pipe.delete(self.k("open", after.channel, after.group_key))
                pipe.srem(self.k("firing"), group_id)
            if dirty:
                pipe.zadd(self.k("update_due"), {group_id: 0})
            if also is not None:
                also(pipe, after)
            for observer in self.observers:
                observer(pipe, before, after)
            return before, after

        return await self._store.update_watched(self.k("group", group_id), write, what=f"alert {group_id}")

    async def firing_ids(self) -> list[str]:
        """Ids of groups with firing members."""
        return sorted(await self._store.smembers("alert_firing", self.k("firing")))

    async def recent_ids(self, since: datetime) -> list[str]:
        """Ids of groups created since `since`."""
        reply = await self._store.call(
            "alert_recent", self.redis.zrangebyscore(self.k("groups"), since.timestamp(), "+inf")
        )
        # redis-py types every form of the reply; without WITHSCORES it is the members alone.
        return [text(member) for member in reply if isinstance(member, bytes | str)]

    async def claim_updates(self, now: datetime, *, lease_seconds: float, count: int = 50) -> tuple[list[str], float]:
        """Groups whose message needs an update, each leased to this caller (see `_CLAIM_DEADLINES`): one that is
        not confirmed done in time comes due again. Returns the ids and the lease score to confirm with."""
        lease = round(now.timestamp() + lease_seconds, 3)
        claimed = await self._claim_deadlines(keys=[self.k("update_due")], args=[now.timestamp(), lease, count])
        return [str(member) for member in claimed], lease

    async def update_done(self, group_id: str, lease: float) -> None:
        """The message of `group_id` shows the state it was claimed for; forgotten unless it changed again since."""
        await self._done_if_unchanged(keys=[self.k("update_due")], args=[group_id, lease])

    async def mark_dirty(self, group_ids: Sequence[str]) -> None:
        """Asks for these groups' messages to be updated (now)."""
        if group_ids:
            await self.redis.zadd(self.k("update_due"), dict.fromkeys(group_ids, 0))

    async def retry_update_at(self, group_id: str, when: datetime) -> None:
        """Tries the update of `group_id` again at `when` (after a failure that a later attempt can get past)."""
        await self.redis.zadd(self.k("update_due"), {group_id: when.timestamp()})

    async def claim_leased(self, part: str, now: datetime, *, lease_seconds: float, count: int = 50) -> list[str]:
        """Members of the sorted set `part` due by `now`, each leased to this caller (see `_CLAIM_DEADLINES`)."""
        claimed = await self._store.call(
            f"{part}_claim",
            self._claim_deadlines(
                keys=[self.k(part)],
                args=[now.timestamp(), now.timestamp() + lease_seconds, count],
            ),
        )
        return [str(member) for member in claimed]

    async def claim_due_posts(self, now: datetime, *, lease_seconds: float, count: int = 50) -> list[str]:
        """Groups whose group_wait has ended, each leased to this caller: a post that is not recorded (the process
        died, Slack failed) comes due again when the lease runs out; nothing is removed before it is posted."""
        claimed = await self._claim_deadlines(
            keys=[self.k("post_due")],
            args=[now.timestamp(), now.timestamp() + lease_seconds, count],
        )
        return [str(member) for member in claimed]

    async def claim_post(self, group_id: str, now: datetime, *, lease_seconds: float) -> bool:
        """Leases one due group's post to this caller (as `claim_due_posts` does), if nobody else holds it."""
        claimed = await self._claim_one(
            keys=[self.k("post_due")],
            args=[group_id, now.timestamp(), now.timestamp() + lease_seconds],
        )
        return bool(claimed)

    async def retry_post_at(self, group_id: str, when: datetime) -> None:
        """Tries the post of `group_id` again at `when`."""
        await self.redis.zadd(self.k("post_due"), {group_id: when.timestamp()})

    # -- thread replies the flusher sends ----------------------------------------------------------------

    def queue_reply(self, pipe: Pipe, group_id: str, text: str, *, countable: bool = False) -> None:
        """Queues on `pipe` (the change's own transaction where there is one) a reply in the thread of the group's
        message; the flusher sends it (with what else is queued, as one reply) once the message is posted. A
        `countable` line (an alert resolved) may be counted rather than shown when many are queued; any other line is
        always shown."""
        pipe.rpush(self.k("replies", group_id), (COUNTABLE if countable else NOTE) + text)
        pipe.zadd(self.k("replies_due"), {group_id: 0}, nx=True)

    async def claim_replies(self, now: datetime, *, lease_seconds: float, count: int = 50) -> list[str]:
        """Groups with thread replies to send, each leased to this caller (see `_CLAIM_DEADLINES`)."""
        claimed = await self._claim_deadlines(
            keys=[self.k("replies_due")], args=[now.timestamp(), now.timestamp() + lease_seconds, count]
        )
        return [str(member) for member in claimed]

    async def queued_replies(self, group_id: str, count: int) -> list[str]:
        """The first `count` queued thread replies of a group, oldest first."""
        return [str(text) for text in await self.redis.lrange(self.k("replies", group_id), 0, count - 1)]

    async def replies_sent(self, group_id: str, count: int) -> None:
        """The first `count` queued replies of a group are in Slack (or can never be: the group or its channel is
        gone): they are dropped, and the group stays due if more were queued meanwhile."""
        await self._replies_sent(
            keys=[self.k("replies", group_id), self.k("replies_due"), self.k("replying")], args=[count, group_id]
        )

    async def begin_reply(self, group_id: str, used: int) -> ReplyAttempt:
        """Notes that the first `used` queued replies of a group are about to be sent as one thread reply. A later
        attempt (an earlier one may have reached Slack) is told how many the first one sent, its key, and when the
        earlier attempts ran. Wall-clock times, as `begin_attempt`."""
        now = datetime.now(UTC).isoformat()
        earlier = await self._begin_reply(keys=[self.k("replying")], args=[group_id, now, used])
        await self._store.replicated(self.k("replying"))  # as in `begin_attempt`: on a replica before Slack is asked
        if not earlier:
            return ReplyAttempt(first=True, used=used, key=f"{group_id}:reply:{now}")
        first, _, rest = str(earlier).partition("|")
        last, _, earlier_used = rest.partition("|")
        try:
            return ReplyAttempt(
                first=False,
                used=int(earlier_used),
                key=f"{group_id}:reply:{first}",
                earlier_from=datetime.fromisoformat(first),
                earlier_until=datetime.fromisoformat(last),
            )
        except ValueError:  # not written by this code: send what is queued now, after looking back as far as need be
            return ReplyAttempt(first=False, used=used, key=f"{group_id}:reply:{first}", earlier_until=None)

    # -- page DMs the flusher closes ---------------------------------------------------------------------

    def queue_pages_closed(self, pipe: Pipe, group_id: str, outcome: str) -> None:
        """Queues on `pipe` (the change's own transaction) the closing of the group's page DMs: the flusher replaces
        their buttons with `outcome` (mrkdwn we built). A later outcome replaces one not shown yet."""
        pipe.hset(self.k("page_outcomes"), group_id, outcome)
        pipe.zadd(self.k("pages_due"), {group_id: 0})

    async def claim_page_closings(self, now: datetime, *, lease_seconds: float, count: int = 50) -> list[str]:
        """Groups whose page DMs are to be closed, each leased to this caller (see `_CLAIM_DEADLINES`)."""
        return await self.claim_leased("pages_due", now, lease_seconds=lease_seconds, count=count)

    async def page_outcome(self, group_id: str) -> str | None:
        """The outcome queued for the group's page DMs, if any."""
        outcome = await self.redis.hget(self.k("page_outcomes"), group_id)
        return None if outcome is None else text(outcome)

    async def pages_closed(self, group_id: str, outcome: str) -> None:
        """Every page DM of the group shows `outcome` (or never can): done, unless a newer one was queued since."""
        await self._pages_closed(keys=[self.k("page_outcomes"), self.k("pages_due")], args=[group_id, outcome])

    async def retry_page_closing_at(self, group_id: str, when: datetime) -> None:
        """Closes the group's page DMs at `when` (Slack failed, or asked to wait)."""
        await self.redis.zadd(self.k("pages_due"), {group_id: when.timestamp()})

    async def forget_reply_attempt(self, group_id: str) -> None:
        """Forgets a first reply attempt that Slack certainly did not carry out (it answered 429), as
        `forget_attempt`."""
        await self.redis.hdel(self.k("replying"), group_id)

    async def post_pending(self, group_id: str) -> bool:
        """Whether the group's message is still to be posted (due, or being posted)."""
        return await self.redis.zscore(self.k("post_due"), group_id) is not None

    async def retry_replies_at(self, group_id: str, when: datetime) -> None:
        """Sends the queued replies of `group_id` at `when` (Slack failed, or asked to wait)."""
        await self.redis.zadd(self.k("replies_due"), {group_id: when.timestamp()})

    async def postpone_post(self, group_id: str, until: datetime) -> None:
        """Makes a group's post due no sooner than `until`, unless it is no longer due or is claimed (a claim's
        lease is later than any wait for Slack's rate limit, and is the claimer's to settle)."""
        await self.redis.zadd(self.k("post_due"), {group_id: until.timestamp()}, xx=True, gt=True)

    async def begin_attempt(self, kind: str, name: str) -> Attempt:
        """Notes that Slack is about to be asked for something that must happen once (kind `posting`: a group's
        message; `paging`: a page). For a later attempt, the result says when the earlier ones ran: what they may
        have posted must be looked for (in that window of the channel's history) before posting again. The times
        are the wall clock's, not the services' clock: they are compared with the `ts` Slack gives messages."""
        now = datetime.now(UTC)
        earlier = await self._note_attempt(keys=[self.k(kind)], args=[name, now.isoformat()])
        # With redis.min_replicas_acked, the note must be on a replica before Slack is asked: a failover that lost
        # it would make the next attempt look like the first, and post a second message without looking.
        await self._store.replicated(self.k(kind))
        if not earlier:
            return Attempt(first=True)
        first, _, last = str(earlier).partition("|")
        try:
            return Attempt(
                first=False, earlier_from=datetime.fromisoformat(first), earlier_until=datetime.fromisoformat(last)
            )
        except ValueError:
            return Attempt(first=False, earlier_from=None, earlier_until=now)

    def queue_attempt_done(self, pipe: Pipe, kind: str, name: str) -> None:
        """Queues, in the transaction that records the outcome, the end of an attempt begun with `begin_attempt`."""
        pipe.hdel(self.k(kind), name)

    async def forget_attempt(self, kind: str, name: str) -> None:
        """Forgets a first attempt that Slack certainly did not carry out (it answered 429): the next attempt is a
        first one again, and need not search the channel's history for what this one cannot have posted."""
        await self.redis.hdel(self.k(kind), name)

    async def begin_post(self, group_id: str) -> Attempt:
        """`begin_attempt` for a group's message."""
        return await self.begin_attempt("posting", group_id)

    def queue_posted(self, pipe: Pipe, group_id: str) -> None:
        """Queues, in the transaction that records a group's message, the end of its post (no longer due)."""
        pipe.zrem(self.k("post_due"), group_id)
        self.queue_attempt_done(pipe, "posting", group_id)

    async def drop_post(self, group_id: str) -> None:
        """Gives up posting a group (it is gone, or Slack refused it for good): no longer due."""
        async with self.redis.pipeline(transaction=True) as pipe:
            self.queue_posted(pipe, group_id)
            await pipe.execute()

    # -- escalation deadlines -----------------------------------------------------------------------------

    async def claim_deadlines(self, now: datetime, *, lease_seconds: float = 60, count: int = 100) -> list[str]:
        """Deadlines due by `now`, each leased to this caller for `lease_seconds` (see `_CLAIM_DEADLINES`)."""
        members = await self._store.call(
            "deadline_claim",
            self._claim_deadlines(
                keys=[self.k("deadlines")],
                args=[now.timestamp(), now.timestamp() + lease_seconds, count],
            ),
        )
        return [str(member) for member in members]

    async def drop_deadline(self, member: str) -> None:
        """Forgets a deadline that is stale (its group moved on) or unreadable."""
        await self._store.call("deadline_drop", self.redis.zrem(self.k("deadlines"), member))

    async def deadline_at(self, member: str) -> float | None:
        """When a deadline is due (epoch seconds), or None if there is none by that name."""
        return await self._store.call("deadline_get", self.redis.zscore(self.k("deadlines"), member))

    # -- acks, silences, stats ----------------------------------------------------------------------------

    def queue_ack(self, pipe: Pipe, fields: dict[str, str]) -> None:
        """Queues an acknowledgement for the ack stream in a transaction that also changes its group, and adds it to
        its day's counters (`acks`, `ack_ms`): `/alerts stats` reads those, not the stream. The entry says it was
        counted, so the backfill of acks written by earlier versions (`backfill_ack_counters`) skips it."""
        counted = _ack_day(fields)
        if counted is not None:
            day, millis = counted
            pipe.hincrby(self.k("stats", day), "acks", 1)
            pipe.hincrby(self.k("stats", day), "ack_ms", millis)
            fields = {**fields, "counted": "1"}
        pipe.xadd(self.k("acks"), stream_fields(fields))

    async def dead_letter(self, entry_id: str, alerts: Sequence[Alert], error: str) -> None:
        """Moves a stream entry that keeps failing to the dead-letter stream, then acknowledges it: kept, not lost,
        and no longer holding up the alerts behind it."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                self.k("dead"),
                {"entry": entry_id, "error": error[:500], "alerts": json.dumps([a.to_json() for a in alerts])},
            )
            pipe.xack(self.k("stream"), CONSUMER_GROUP, entry_id)
            await pipe.execute()

    async def dead_letter_raw(self, entry_id: str, entry: RawEntry, error: str) -> None:
        """Moves a stored body its source cannot normalise to the dead-letter stream (with the body, so it can be
        read and sent again), then acknowledges it."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                self.k("dead"),
                {
                    "entry": entry_id,
                    "error": error[:500],
                    "source": entry.source,
                    "body": entry.body,
                    "at": entry.received_at.isoformat(),
                },
            )
            pipe.xack(self.k("stream"), CONSUMER_GROUP, entry_id)
            pipe.hincrby(self.k("stats", f"{entry.received_at:%Y%m%d}"), "dead_lettered", entry.count)
            self.older_days_changed(pipe)  # the entry may have been received days ago
            await pipe.execute()

    async def acks(self, count: int = 10_000) -> list[dict[str, str]]:
        """Acknowledgements, newest first."""
        entries = await self._store.xrevrange("alert_acks", self.k("acks"), count=count)
        return [fields for _, fields in entries]

    async def count(self, now: datetime, field: str, amount: int = 1) -> None:
        """Adds to today's counter."""
        await self.redis.hincrby(self.k("stats", f"{now:%Y%m%d}"), field, amount)

    async def stats(self, days: Sequence[datetime]) -> dict[str, int]:
        """Counters summed over these days, by Redis: one round trip and one small reply, and the same cost whether
        the older days hold counters or not (their totals are kept until a write into one of them; see
        `_SUM_COUNTERS`)."""
        dates = sorted({day.date() for day in days})
        if not dates:
            return {}
        live_from = dates[-1] - timedelta(days=LIVE_STAT_DAYS - 1)
        older = [d for d in dates if d < live_from]
        live = [d for d in dates if d >= live_from]
        span = f"{older[0]:%Y%m%d}-{older[-1]:%Y%m%d}:{len(older)}" if older else "none"
        keys = [
            self.k("stats_older", span),
            self.k("stats_generation"),
            *(self.k("stats", f"{d:%Y%m%d}") for d in [*older, *live]),
        ]
        flat = await self._store.call(
            "alert_stats",
            self._sum_counters(keys=keys, args=[len(older), OLDER_TOTALS_SECONDS]),
        )
        return {text(field): int(value) for field, value in zip(flat[::2], flat[1::2], strict=True)}

    def older_days_changed(self, pipe: Pipe) -> None:
        """Queued with any write into a day's counters other than the writer's today (a dead letter of an entry
        received days ago, the ack backfill, retention): `/alerts stats` then sums the older days afresh."""
        pipe.incr(self.k("stats_generation"))

    async def ack_counters_ready(self) -> bool:
        """Whether every acknowledgement is in the daily counters (those recorded before the counters existed have
        been folded in by `backfill_ack_counters`); until then `/alerts stats` reads the ack stream as it used to."""
        marker = await self._store.call("alert_ack_counters", self.redis.get(self.k("ack_counters")))
        return marker == ACK_COUNTERS_READY

    async def backfill_ack_counters(self, batch: int = 500) -> bool:
        """Folds up to `batch` acknowledgements that an earlier version recorded without counters into their days'
        counters; True once the whole stream is done. The cursor and the counts move in one WATCHed MULTI, so a
        crash or a second leader never counts an entry twice."""
        if await self.ack_counters_ready():
            return True
        cursor_key, ready_key = self.k("ack_backfill"), self.k("ack_counters")
        for _ in range(20):
            try:
                async with self.redis.pipeline(transaction=True) as pipe:
                    await pipe.watch(cursor_key)
                    cursor = optional_text(await pipe.get(cursor_key))
                    start = f"({cursor}" if cursor else "-"
                    entries = stream_entries(await pipe.xrange(self.k("acks"), min=start, count=batch))
                    pipe.multi()
                    for _, fields in entries:
                        counted = None if fields.get("counted") == "1" else _ack_day(fields)
                        if counted is not None:
                            pipe.hincrby(self.k("stats", counted[0]), "acks", 1)
                            pipe.hincrby(self.k("stats", counted[0]), "ack_ms", counted[1])
                    if entries:
                        pipe.set(cursor_key, entries[-1][0])
                        self.older_days_changed(pipe)
                    done = len(entries) < batch
                    if done:
                        pipe.set(ready_key, ACK_COUNTERS_READY)
                    await pipe.execute()
                return done
            except WatchError:
                continue
        return False

    # -- retention ----------------------------------------------------------------------------------------

    async def prune_groups(self, cutoff: datetime, batch: int, *, skip: int = 0) -> Pruned:
        """Removes up to `batch` groups created before `cutoff` that are resolved and quiet since `cutoff`, with
        their index entries; firing groups (and ones still changing) are kept, never touched. `skip` is how many
        kept ones an earlier batch of this run already looked at (they stay first in the index)."""
        ids = [
            str(i)
            for i in await self._store.call(
                "alert_prune",
                self.redis.zrangebyscore(self.k("groups"), "-inf", f"({cutoff.timestamp()}", start=skip, num=batch),
            )
        ]
        if not ids:
            return Pruned()
        groups = dict(
            zip(
                ids,
                await self._store.mget("alert_prune", [self.k("group", i) for i in ids]),
                strict=True,
            )
        )
        old = []
        for group_id, raw in groups.items():
            group = _group(raw)
            last = (group.resolved_at or group.updated_at) if group is not None else None
            if raw is None or (group is not None and group.state == "resolved" and last is not None and last < cutoff):
                old.append(group_id)
        removed = 0
        if old:
            keys = [self.k("group", i) for i in old] + [
                self.k("groups"),
                self.k("post_due"),
                self.k("update_due"),
                self.k("posting"),
                self.k("firing"),
            ]
            removed = int(await self._store.call("alert_prune", self._drop_resolved(keys=keys, args=old)))
        return Pruned(groups=removed, kept=len(ids) - removed, more=len(ids) == batch)

    async def trim_streams(self, cutoff: datetime, ack_cutoff: datetime, batch: int) -> int:
        """Trims, by at most about `batch` entries each, the ingest stream (never past an entry the consumer group
        has not delivered), the dead-letter stream before `cutoff` and the ack stream before `ack_cutoff` (only once
        the daily counters hold every ack). Approximate (`MINID ~ … LIMIT`): whole stream nodes, never a long block.
        Stream ids are Redis's clock; the cutoffs are ours, which match in production."""
        floor = _stream_id(cutoff)
        try:
            for group in await self.redis.xinfo_groups(self.k("stream")):
                floor = min(floor, _id_tuple(str(group.get("last-delivered-id", "0-0"))))
                pending = await self.redis.xpending(self.k("stream"), str(group["name"]))
                if pending and pending.get("min"):
                    floor = min(floor, _id_tuple(str(pending["min"])))
        except ResponseError:  # no stream yet
            pass
        trimmed = 0
        trimmed += await self._trim(self.k("stream"), floor, batch)
        trimmed += await self._trim(self.k("dead"), _stream_id(cutoff), batch)
        if await self.ack_counters_ready():
            trimmed += await self._trim(self.k("acks"), _stream_id(ack_cutoff), batch)
        return trimmed

    async def _trim(self, key: str, floor: tuple[int, int], batch: int) -> int:
        minid = f"{floor[0]}-{floor[1]}"
        return int(
            await self._store.call("alert_trim", self.redis.xtrim(key, minid=minid, approximate=True, limit=batch))
        )

    async def prune_days(self, cutoff: datetime, batch: int) -> int:
        """Deletes daily counters of days before `cutoff`'s, at most `batch` days a call, walking forward from where
        the last call stopped (so it never looks for keys: each day's key is known)."""
        cursor_key = self.k("stats_pruned")
        raw = await self._store.get("alert_prune", cursor_key)
        last_day = (cutoff - timedelta(days=1)).date()
        first = datetime.strptime(raw, "%Y%m%d").date() + timedelta(days=1) if raw else last_day - timedelta(days=800)
        days = [first + timedelta(days=n) for n in range(min(batch, (last_day - first).days + 1))]
        if not days:
            return 0
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(*[self.k("stats", f"{day:%Y%m%d}") for day in days])
            pipe.set(cursor_key, f"{days[-1]:%Y%m%d}")
            self.older_days_changed(pipe)
            deleted, *_ = await self._store.call("alert_prune", pipe.execute())
        return int(deleted)

    async def save_silence(self, silence_id: str, silence: dict[str, object]) -> None:
        """Stores a silence."""
        await self._store.call(
            "silence_set", self.redis.hset(self.k("silences"), silence_id, json.dumps(silence, default=str))
        )

    async def silences(self) -> dict[str, dict[str, object]]:
        """Every stored silence by id."""
        raw = await self._store.hgetall("silences_get", self.k("silences"))
        return {key: json.loads(value) for key, value in raw.items()}

    async def delete_silence(self, silence_id: str) -> bool:
        """Removes a silence; False if there was none."""
        return bool(await self._store.call("silence_del", self.redis.hdel(self.k("silences"), silence_id)))


def _raw(fields: dict[str, str] | None) -> RawEntry | None:
    """The raw body an entry holds, or None for an entry of normalised alerts (or an unreadable one)."""
    if not fields or "body" not in fields:
        return None
    try:
        received_at = datetime.fromisoformat(fields.get("at", ""))
        count = int(fields.get("count", "0"))
    except ValueError:  # not written by `append_raw`: kept as it is, for the consumer to dead-letter
        received_at, count = datetime.fromtimestamp(0, UTC), 0
    return RawEntry(source=fields.get("source", ""), body=fields["body"], received_at=received_at, count=count)


def _alerts(fields: dict[str, str] | None) -> list[Alert]:
    try:
        encoded = json.loads(fields["alerts"]) if fields else []
    except (KeyError, ValueError, TypeError):
        return []
    alerts = []
    for one in encoded if isinstance(encoded, list) else []:
        try:
            alerts.append(Alert.from_json(one))
        except (ValueError, TypeError):
            continue
    return alerts


def _ack_day(fields: dict[str, str]) -> tuple[str, int] | None:
    """An ack's day (`yyyymmdd`, UTC) and its time to acknowledge in milliseconds; None when unreadable (the old
    scan skipped those too)."""
    try:
        at = datetime.fromisoformat(fields["at"])
        millis = round(float(fields["seconds_to_ack"]) * 1000)
    except (KeyError, ValueError, TypeError):
        return None
    return f"{at.astimezone(UTC):%Y%m%d}", millis


def _stream_id(when: datetime) -> tuple[int, int]:
    """The first stream id at or after `when`."""
    return (max(int(when.timestamp() * 1000), 0), 0)


def _id_tuple(entry_id: str) -> tuple[int, int]:
    millis, _, seq = entry_id.partition("-")
    return int(millis), int(seq or 0)


def _group(raw: str | None) -> AlertGroup | None:
    if raw is None:
        return None
    try:
        return AlertGroup.model_validate_json(raw)
    except ValidationError:
        return None
