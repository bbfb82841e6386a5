"""The Redis store's primitives against a real Redis: once-only claims (batched), click guards, audit."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bot.platform.audit import AuditLog
from bot.platform.keys import Keys
from bot.platform.metrics import Metrics
from bot.platform.store import Store


async def test_concurrent_claims_of_one_request_have_one_winner(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    store = Store(client, Keys("t1"), Metrics())
    try:
        results = await asyncio.gather(*[store.claim_once("command", f"trigger-{i % 10}") for i in range(500)])
        assert sum(results) == 10
        assert await store.claim_once("command", "trigger-new")
        assert not await store.claim_once("command", "trigger-new")
        assert await client.ttl(Keys("t1").idempotency("command", "trigger-new")) > 3600
        assert await store.claim_click("U1", "C1:1.0", "a", "v") and not await store.claim_click(
            "U1", "C1:1.0", "a", "v"
        )
        assert await store.claim_click("U2", "C1:1.0", "a", "v")
    finally:
        await client.aclose()


async def test_audit_records_are_read_back_newest_first(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    store = Store(client, Keys("t2"), Metrics())
    audit = AuditLog(store, lambda: datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    try:
        for n in range(3):
            await audit.record(actor="U1", action=f"act{n}", result="ok", target="web")
        await client.xadd(Keys("t2").audit_stream(), {"garbage": "1"})
        records = await audit.recent(10)
        assert [r.action for r in records] == ["act2", "act1", "act0"]
    finally:
        await client.aclose()


def test_embedded_redis_accepts_a_relative_data_dir(tmp_path, monkeypatch) -> None:
    from bot.platform.embedded_redis import EmbeddedRedis

    monkeypatch.chdir(tmp_path)
    server = EmbeddedRedis(Path(".chatops-dev") / "redis", persist=True).start()
    try:
        assert (tmp_path / ".chatops-dev" / "redis" / "redis.log").exists()
    finally:
        server.stop()


async def test_a_write_that_lost_a_race_is_retried_and_counted(redis_url: str) -> None:
    """`update_watched` retries when another writer changed the record between its read and its write, and counts
    each retry in `chatops_redis_write_conflicts_total{what}` (contention between replicas shows there)."""
    import redis as sync_redis

    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    other = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    metrics = Metrics()
    store = Store(client, Keys("t-race"), metrics)
    seen: list[str | None] = []

    def change(current: str | None, pipe: Any) -> str:
        seen.append(current)
        if len(seen) == 1:
            other.set("t-race:record", "theirs")  # another replica wins the race
        pipe.set("t-race:record", f"ours after {current}")
        return "done"

    try:
        assert await store.update_watched("t-race:record", change, what="alert a-1") == "done"
        assert seen == [None, "theirs"], "read again after the other write"
        assert await client.get("t-race:record") == "ours after theirs"
        assert metrics.registry.get_sample_value("chatops_redis_write_conflicts_total", {"what": "alert"}) == 1
    finally:
        other.close()
        await client.aclose()
