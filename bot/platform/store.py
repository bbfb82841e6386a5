"""The Redis store: the small, atomic primitives every service builds on (claims, the audit stream, health), and
typed reads: the client decodes replies (`decode_responses`, bot/platform/redis_client.py), so what Redis answers is
text, and the reads here say so (`str`, not redis-py's `bytes | str`): domain stores use them rather than casting."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import RedisClusterException, RedisError, WatchError
from redis.typing import EncodableT

from bot.platform.batching import ClaimBatcher
from bot.platform.errors import StoreUnavailable
from bot.platform.keys import Keys
from bot.platform.metrics import Metrics
from bot.platform.redis_client import RedisClient

log = logging.getLogger(__name__)
T = TypeVar("T")

IDEMPOTENCY_TTL_SECONDS = 24 * 3600
CLICK_GUARD_SECONDS = 3
UNAVAILABLE = "chatops cannot reach its Redis store right now; nothing was changed."
NOT_REPLICATED = (
    "chatops could not confirm that its store kept this change (too few Redis replicas answered in time); "
    "check whether it took effect before trying again."
)
_HASH_TAG = re.compile(r"\{[^{}]+\}")

Pipe: TypeAlias = Pipeline | ClusterPipeline
"""A pipeline of a RedisClient: what transaction callbacks queue their writes on."""
StreamEntry: TypeAlias = tuple[str, dict[str, str]]
"""One entry of a Redis Stream: its id and its fields."""
StreamFields: TypeAlias = dict[EncodableT, EncodableT]
"""The fields XADD takes (see stream_fields)."""


def text(value: bytes | str) -> str:
    """A Redis reply as text. The client decodes replies, so this is the value itself; a client built without
    `decode_responses` (a test's own) answers bytes, which are decoded rather than passed on as `b'...'`."""
    return value.decode() if isinstance(value, bytes) else value


def optional_text(value: bytes | str | None) -> str | None:
    """A Redis reply that may be nil (GET, HGET, ...) as text or None."""
    return None if value is None else text(value)


def texts(values: Iterable[bytes | str]) -> list[str]:
    """A Redis multi-bulk reply (SMEMBERS, ZRANGE, LRANGE, ...) as text, in its order."""
    return [text(value) for value in values]


def text_map(mapping: Mapping[bytes | str, bytes | str] | None) -> dict[str, str]:
    """A Redis hash or stream entry's fields as text (nil: empty)."""
    return {text(name): text(value) for name, value in (mapping or {}).items()}


def stream_entries(
    reply: Iterable[tuple[bytes | str | None, Mapping[bytes | str, bytes | str] | None]] | None,
) -> list[StreamEntry]:
    """An XRANGE / XREVRANGE / XREADGROUP stream's entries as (id, fields) text; an entry deleted while it was
    pending (XREADGROUP answers its id with nil fields) keeps its id with no fields."""
    return [(text(entry_id or ""), text_map(fields)) for entry_id, fields in reply or ()]


def stream_fields(fields: Mapping[str, str]) -> StreamFields:
    """Text fields as XADD takes them (redis-py types them as any encodable value, and dicts are invariant)."""
    return {name: value for name, value in fields.items()}


@dataclass(frozen=True)
class Durability:
    """How many replicas must confirm a write before chatops answers that it is done (0: do not wait)."""

    min_replicas_acked: int = 0
    wait_timeout_ms: int = 500


class NotReplicated(StoreUnavailable):
    """A write reached the primary but too few replicas confirmed it in time: a failover now could lose it."""


class Store:
    """Typed access to Redis for chatops; every failure is counted and turned into StoreUnavailable."""

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        metrics: Metrics,
        durability: Durability = Durability(),
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.durability = durability
        self._metrics = metrics
        self._claims = ClaimBatcher(redis)

    async def call(self, operation: str, awaitable: Awaitable[T]) -> T:
        """Awaits one Redis operation, counting and wrapping its failure."""
        try:
            return await awaitable
        except (RedisError, OSError) as error:
            self._metrics.redis_errors.labels(operation=operation).inc()
            log.warning("redis %s failed: %s", operation, error)
            raise StoreUnavailable(UNAVAILABLE) from error

    # -- typed reads: each is `call` on one command, its reply as text ---------------------------------------------

    async def get(self, operation: str, key: str) -> str | None:
        """GET `key` (None: no such key)."""
        return optional_text(await self.call(operation, self.redis.get(key)))

    async def mget(self, operation: str, keys: Sequence[str]) -> list[str | None]:
        """MGET `keys`, in their order (None for a missing key)."""
        if not keys:
            return []
        return [optional_text(value) for value in await self.call(operation, self.redis.mget(list(keys)))]

    async def hget(self, operation: str, key: str, field: str) -> str | None:
        """HGET `key` `field` (None: no such field)."""
        return optional_text(await self.call(operation, self.redis.hget(key, field)))

    async def hgetall(self, operation: str, key: str) -> dict[str, str]:
        """HGETALL `key` (empty: no such key)."""
        return text_map(await self.call(operation, self.redis.hgetall(key)))

    async def smembers(self, operation: str, key: str) -> set[str]:
        """SMEMBERS `key`."""
        return {text(member) for member in await self.call(operation, self.redis.smembers(key))}

    async def zrange(self, operation: str, key: str, start: int, end: int, *, desc: bool = False) -> list[str]:
        """ZRANGE `key` `start` `end` (REV with `desc`): the members, without scores."""
        reply = await self.call(operation, self.redis.zrange(key, start, end, desc=desc))
        # redis-py types every form of the reply; without WITHSCORES it is the members alone.
        return [text(member) for member in reply if isinstance(member, bytes | str)]

    async def lrange(self, operation: str, key: str, start: int, end: int) -> list[str]:
        """LRANGE `key` `start` `end`."""
        return texts(await self.call(operation, self.redis.lrange(key, start, end)))

    async def xrange(
        self, operation: str, key: str, start: str = "-", end: str = "+", count: int | None = None
    ) -> list[StreamEntry]:
        """XRANGE `key` `start` `end` [COUNT `count`]: entries oldest first."""
        return stream_entries(await self.call(operation, self.redis.xrange(key, start, end, count=count)))

    async def xrevrange(
        self, operation: str, key: str, end: str = "+", start: str = "-", count: int | None = None
    ) -> list[StreamEntry]:
        """XREVRANGE `key` `end` `start` [COUNT `count`]: entries newest first."""
        return stream_entries(await self.call(operation, self.redis.xrevrange(key, end, start, count=count)))

    async def script(self, operation: str, script: AsyncScript, keys: Sequence[str], args: Sequence[EncodableT]) -> Any:
        """Runs a registered Lua script (`redis.register_script`); its reply is whatever the script returns."""
        return await self.call(operation, script(keys=list(keys), args=list(args)))

    async def replicated(self, key: str) -> None:
        """Returns once `redis.min_replicas_acked` replicas hold every write made so far to `key`'s node, or raises
        NotReplicated; does nothing when no replica is required.

        WAIT counts the replication offset of its own connection's last write, and with a pool the write we
        care about may have gone out on another connection. So a marker write under `key`'s hash tag (same
        node, even on a cluster) and WAIT go out together on one connection: the marker's offset is past every
        write already answered, and replication is in order, so its acknowledgement covers ours."""
        wanted = self.durability.min_replicas_acked
        if wanted <= 0:
            return
        tag = _HASH_TAG.search(key)
        marker = f"{self.keys.prefix}:{tag.group(0) if tag else '{wait}'}:replicated"
        timeout_ms = self.durability.wait_timeout_ms
        try:
            acked = await self._wait_replicas(marker, wanted, timeout_ms)
        except (RedisError, OSError) as error:
            self._metrics.redis_errors.labels(operation="wait").inc()
            log.warning("redis WAIT failed: %s", error)
            raise NotReplicated(NOT_REPLICATED) from error
        if acked < wanted:
            self._metrics.redis_errors.labels(operation="wait").inc()
            log.warning("only %d of %d Redis replicas confirmed a write within %d ms", acked, wanted, timeout_ms)
            raise NotReplicated(NOT_REPLICATED)

    async def _wait_replicas(self, marker: str, wanted: int, timeout_ms: int) -> int:
        """Sends `SET marker` then `WAIT wanted timeout_ms` on one connection; returns the replicas that confirmed."""
        if isinstance(self.redis, RedisCluster):
            # A cluster pipeline routes the keyless WAIT to a node of its own choosing: use the marker's node directly.
            node = self.redis.get_node_from_key(marker)
            if node is None:  # the cluster's slot map has no node for it (yet): as if the node did not answer
                raise RedisClusterException(f"no cluster node serves the slot of {marker}")
            connection = node.acquire_connection()
            try:
                await connection.send_packed_command(
                    connection.pack_commands([("SET", marker, "1", "PX", "60000"), ("WAIT", wanted, timeout_ms)])
                )
                await connection.read_response()
                return int(await connection.read_response())
            except BaseException:
                await connection.disconnect()  # a reply may still be on the wire: never hand this socket out again
                raise
            finally:
                node.release(connection)
        async with self.redis.pipeline(transaction=False) as pipe:  # one pooled connection for both commands
            pipe.set(marker, "1", px=60_000)
            pipe.execute_command("WAIT", wanted, timeout_ms)
            _, acked = await pipe.execute()
        return int(acked)

    async def update_watched(
        self, key: str, change: Callable[[str | None, Pipe], T], *, attempts: int = 50, what: str = "record"
    ) -> T:
        """Optimistic read-modify-write of `key`: `change(current_raw, pipe)` queues the writes (after MULTI) and
        returns a result; a concurrent write to `key` retries it. `change` may raise: then nothing is written.
        Every such change is one a user is answered about (an acknowledgement, an approval, a deploy's state),
        so it returns only once `redis.min_replicas_acked` replicas have it (see `replicated`)."""
        for _ in range(attempts):
            try:
                async with self.redis.pipeline(transaction=True) as pipe:
                    await pipe.watch(key)
                    current = optional_text(await pipe.get(key))
                    pipe.multi()
                    result = change(current, pipe)
                    await pipe.execute()
                break
            except WatchError:
                self._metrics.redis_write_conflicts.labels(what=what.split(" ", 1)[0]).inc()
                continue
            except (RedisError, OSError) as error:
                self._metrics.redis_errors.labels(operation="update").inc()
                raise StoreUnavailable(UNAVAILABLE) from error
        else:
            raise StoreUnavailable(f"this {what} is being changed by someone else; try again")
        await self.replicated(key)
        return result

    async def ping(self) -> None:
        """Raises StoreUnavailable unless Redis answers."""
        await self.call("ping", self.redis.ping())

    async def claim_once(self, kind: str, request_id: str, ttl: int = IDEMPOTENCY_TTL_SECONDS) -> bool:
        """True for the first caller with this request id; False for every retry or replay after it."""
        key = self.keys.idempotency(kind, request_id)
        return await self.call("claim", self._claims.claim(key, ttl))

    async def claim_click(self, user_id: str, message_ref: str, action_id: str, value: str) -> bool:
        """True unless this user pressed the same button on the same message a moment ago."""
        key = self.keys.click(user_id, message_ref, action_id, value)
        return bool(await self.call("claim_click", self.redis.set(key, "1", nx=True, ex=CLICK_GUARD_SECONDS)))
