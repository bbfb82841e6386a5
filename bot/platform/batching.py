"""Automatic pipelining of Redis SET NX claims: claims issued by concurrent requests in the same event-loop
turn go to Redis as one pipeline (one write, one read) instead of one round trip each, as ioredis's
auto-pipelining does. Each caller still gets its own answer."""

from __future__ import annotations

import asyncio

from bot.platform.redis_client import RedisClient


class ClaimBatcher:
    """Batches `SET key 1 NX EX ttl` calls made in the same loop turn into one pipeline."""

    def __init__(self, redis: RedisClient, max_batch: int = 256) -> None:
        self._redis = redis
        self._max_batch = max_batch
        self._pending: list[tuple[str, int, asyncio.Future[bool]]] = []
        self._scheduled = False

    async def claim(self, key: str, ttl: int) -> bool:
        """True when this call set the key (it did not exist)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._pending.append((key, ttl, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            asyncio.get_running_loop().create_task(self._send(batch))

    async def _send(self, batch: list[tuple[str, int, asyncio.Future[bool]]]) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, ttl, _ in batch:
                    pipe.set(key, "1", nx=True, ex=ttl)
                results = await pipe.execute()
        except BaseException as error:  # every waiter must hear about it, or it would hang
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(error if isinstance(error, Exception) else RuntimeError("cancelled"))
            if not isinstance(error, Exception):
                raise
            return
        for (_, _, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(bool(result))
