"""The Redis store: the small, atomic primitives every service builds on (claims, the audit stream, health)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, WatchError

from bot.batching import ClaimBatcher
from bot.errors import StoreUnavailable
from bot.keys import Keys
from bot.metrics import Metrics

log = logging.getLogger(__name__)
T = TypeVar("T")

IDEMPOTENCY_TTL_SECONDS = 24 * 3600
CLICK_GUARD_SECONDS = 3


class Store:
    """Typed access to Redis for chatops; every failure is counted and turned into StoreUnavailable."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, metrics: Metrics) -> None:
        self.redis = redis
        self.keys = keys
        self._metrics = metrics
        self._claims = ClaimBatcher(redis)

    async def call(self, operation: str, awaitable: Awaitable[T]) -> T:
        """Awaits one Redis operation, counting and wrapping its failure."""
        try:
            return await awaitable
        except (RedisError, OSError) as error:
            self._metrics.redis_errors.labels(operation=operation).inc()
            log.warning("redis %s failed: %s", operation, error)
            raise StoreUnavailable("chatops cannot reach its Redis store right now; nothing was changed.") from error

    async def update_watched(
        self, key: str, change: Callable[[str | None, Pipeline], T], *, attempts: int = 50, what: str = "record"
    ) -> T:
        """Optimistic read-modify-write of `key`: `change(current_raw, pipe)` queues the writes (after MULTI) and
        returns a result; a concurrent write to `key` retries it. `change` may raise: then nothing is written."""
        for _ in range(attempts):
            try:
                async with self.redis.pipeline(transaction=True) as pipe:
                    await pipe.watch(key)
                    current = await pipe.get(key)
                    pipe.multi()
                    result = change(current, pipe)
                    await pipe.execute()
                    return result
            except WatchError:
                continue
            except (RedisError, OSError) as error:
                self._metrics.redis_errors.labels(operation="update").inc()
                raise StoreUnavailable("chatops cannot reach its Redis store right now; nothing was changed.") from error
        raise StoreUnavailable(f"this {what} is being changed by someone else; try again")

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
