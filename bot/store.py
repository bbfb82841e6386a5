"""The Redis store: the small, atomic primitives every service builds on (claims, the audit stream, health)."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError, WatchError

from bot.batching import ClaimBatcher
from bot.errors import StoreUnavailable
from bot.keys import Keys
from bot.metrics import Metrics

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
        self, redis: aioredis.Redis | RedisCluster, keys: Keys, metrics: Metrics, durability: Durability = Durability(),
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
        self, key: str, change: Callable[[str | None, Pipeline], T], *, attempts: int = 50, what: str = "record"
    ) -> T:
        """Optimistic read-modify-write of `key`: `change(current_raw, pipe)` queues the writes (after MULTI) and
        returns a result; a concurrent write to `key` retries it. `change` may raise: then nothing is written.
        Every such change is one a user is answered about (an acknowledgement, an approval, a deploy's state),
        so it returns only once `redis.min_replicas_acked` replicas have it (see `replicated`)."""
        for _ in range(attempts):
            try:
                async with self.redis.pipeline(transaction=True) as pipe:
                    await pipe.watch(key)
                    current = await pipe.get(key)
                    pipe.multi()
                    result = change(current, pipe)
                    await pipe.execute()
                break
            except WatchError:
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
