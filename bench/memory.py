"""Bounded Redis memory: bytes per stored record (MEMORY USAGE over a sample), and used memory under a steady alert
stream with retention applied, on a simulated clock (days of simulated time in seconds of wall time).

1. Per record: writes alert groups (resolved, with their index entries and 30% acks), deploys and audit entries
   through the real stores, then averages MEMORY USAGE over a sample of each kind's keys plus the index and stream
   bytes per record (MEMORY USAGE of the index or stream / its length).
2. Steady stream: every simulated day `--per-day` alert groups arrive, fire, are acknowledged and resolved; the
   retention job (bot.shell.pruning.Pruner, the defaults: alerts 90d, acknowledgements 400d) runs once a day. Prints
   used_memory every 30 days: it grows until the retention windows are full, then stays flat. The anchor is the
   same stream without retention, in the same run.

Run: python bench/memory.py [--days 450] [--per-day 40] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.alerts.model import AlertGroup, Member
from bot.alerts.store import AlertStore
from bot.backups.store import BackupStore
from bot.deploys.model import DeployRecord, DeployState
from bot.deploys.store import DeployStore
from bot.platform.audit import AuditLog
from bot.platform.embedded_redis import EmbeddedRedis
from bot.platform.keys import Keys
from bot.platform.metrics import Metrics
from bot.platform.retention import RetentionSection
from bot.platform.store import Store
from bot.shell.pruning import Pruner


class SimClock:
    """The simulated time every store and the retention job read."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def one_alert(store: AlertStore, n: int, created: datetime) -> None:
    """A group as the pipeline leaves it: created firing, acknowledged (30%), resolved, counted."""
    member = Member(
        fingerprint=f"fp{n}",
        title=f"HighLatency {n % 50}",
        severity="warning",
        status="firing",
        labels={"alertname": "HighLatency", "service": "web", "instance": f"web-{n % 12}:9100"},
        starts_at=created,
        last_seen=created,
    )
    group = AlertGroup(
        id=f"a-{n:08x}",
        group_key=f"k{n}",
        channel="#alerts",
        members={member.fingerprint: member},
        created_at=created,
        updated_at=created,
        message_channel="C0ALERTS",
        message_ts=f"{created.timestamp():.6f}",
    )
    await store.create_group(group, post_at=created)
    await store.drop_post(group.id)
    done = created + timedelta(minutes=12)
    acked = n % 10 < 3

    def resolve(g: AlertGroup) -> AlertGroup:
        members = {fp: m.model_copy(update={"status": "resolved", "ends_at": done}) for fp, m in g.members.items()}
        return g.model_copy(update={"members": members, "state": "resolved", "resolved_at": done, "updated_at": done})

    def ack(pipe: Any, g: AlertGroup) -> None:
        if acked:
            store.queue_ack(
                pipe,
                {
                    "group": g.id,
                    "fingerprints": ",".join(g.members),
                    "user": "U0DEMO",
                    "at": (created + timedelta(minutes=3)).isoformat(),
                    "seconds_to_ack": "180.000",
                    "via": "button",
                    "title": g.title,
                    "escalation": "",
                    "step": "0",
                    "round": "0",
                    "pages": "0",
                    "rotation": "",
                    "paged": "",
                    "severity": g.severity,
                },
            )

    await store.update_group(group.id, resolve, dirty=False, also=ack)
    await store.count(created, "received")
    await store.count(created, "posted")
    await store.count(done, "resolved")


async def per_record(store: Store, count: int) -> dict[str, float]:
    """Average bytes per alert group, deploy and audit entry (record + its share of indexes / streams)."""
    alerts, deploys = AlertStore(store), DeployStore(store)
    now = datetime.now(UTC)
    redis = store.redis
    for n in range(count):
        await one_alert(alerts, n, now - timedelta(minutes=count - n))
    for n in range(count):
        at = now - timedelta(hours=count - n)
        record = DeployRecord(
            id=f"d-{n:07d}",
            kind="deploy",
            service="web",
            environment="production",
            version=f"v1.{n}.0",
            previous_version=f"v1.{n - 1}.0",
            requested_by="U0DEMO",
            state=DeployState.RUNNING,
            created_at=at,
            updated_at=at,
            started_at=at,
            channel="C0DEPLOYS",
            message_ts="1.0",
        )
        await deploys.create(record)
        await deploys.update(
            record.id, lambda r, at=at: r.model_copy(update={"state": DeployState.SUCCEEDED, "finished_at": at})
        )
    audit = AuditLog(store, lambda: now)
    for n in range(count):
        await audit.record(
            actor="U0DEMO",
            action="deploy.request",
            result="ok",
            target=f"web v1.{n}.0",
            channel="C0GENERAL",
            detail="to production",
        )

    async def usage(key: str) -> int:
        return int(await redis.memory_usage(key, samples=0) or 0)

    sample = range(0, count, max(1, count // 200))
    group_bytes = sum([await usage(alerts.k("group", f"a-{n:08x}")) for n in sample]) / len(sample)
    group_index = (await usage(alerts.k("groups"))) / count
    ack_bytes = (await usage(alerts.k("acks"))) / max(1, await redis.xlen(alerts.k("acks")))
    deploy_bytes = sum([await usage(store.keys.deploy("record", f"d-{n:07d}")) for n in sample]) / len(sample)
    deploy_index = (await usage(store.keys.deploy("history", "web", "production"))) / count
    audit_bytes = (await usage(store.keys.audit_stream())) / count
    return {
        "alert group (record + index + its acks' share)": group_bytes + group_index + ack_bytes * 0.3,
        "deploy (record + history index)": deploy_bytes + deploy_index,
        "audit entry (stream)": audit_bytes,
        "acknowledgement (stream entry)": ack_bytes,
    }


async def steady(url: str, prefix: str, days: int, per_day: int, retention: bool) -> list[tuple[int, int]]:
    """used_memory every 30 simulated days of a steady alert stream, with or without the retention job."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    store = Store(client, Keys(prefix), Metrics())
    clock = SimClock(datetime.now(UTC))
    alerts = AlertStore(store)
    pruner = Pruner(
        retention=RetentionSection(),
        alerts=alerts,
        deploys=DeployStore(store),
        backups=BackupStore(store),
        audit=AuditLog(store, clock),
        deploy_keys=lambda: [],
        backup_targets=lambda: [],
        clock=clock,
    )
    points = []
    n = 0
    try:
        for day in range(days):
            for i in range(per_day):
                await one_alert(alerts, n, clock.now + timedelta(seconds=86400 * i / per_day))
                n += 1
            clock.now += timedelta(days=1)
            if retention:
                await pruner.run()
            if day % 30 == 29 or day == days - 1:
                points.append((day + 1, int((await client.info("memory"))["used_memory"])))
    finally:
        await client.aclose()
    return points


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sample", type=int, default=2000, help="records per kind for the per-record figures")
    parser.add_argument("--days", type=int, default=450, help="simulated days of steady alerts (default 450)")
    parser.add_argument("--per-day", type=int, default=40, help="alert groups a simulated day (default 40)")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON list on the last line")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="chatops-memory-"))
    servers = {name: EmbeddedRedis(tmp / name).start() for name in ("records", "retention", "no-retention")}
    rows: list[dict[str, Any]] = []
    try:
        client = aioredis.Redis.from_url(servers["records"].url, decode_responses=True)
        try:
            sizes = await per_record(Store(client, Keys("chatops"), Metrics()), args.sample)
        finally:
            await client.aclose()
        print(f"Bytes of Redis memory per stored record (MEMORY USAGE, {args.sample} of each)")
        for label, value in sizes.items():
            print(f"  {label:50} {value:8.0f} B")
            rows.append(
                {
                    "figure": f"memory per {label}",
                    "ours": round(value),
                    "anchor": None,
                    "ratio": None,
                    "unit": "B",
                    "target": "(info)",
                    "met": None,
                }
            )
        with_r, without = await asyncio.gather(
            steady(servers["retention"].url, "chatops", args.days, args.per_day, True),
            steady(servers["no-retention"].url, "chatops", args.days, args.per_day, False),
        )
    finally:
        for server in servers.values():
            server.stop()
    print(f"\nSteady alert stream, {args.per_day} groups a simulated day: used_memory (MiB)")
    print(f"{'day':>5} {'no retention':>13} {'retention':>10}")
    for (day, mem_r), (_, mem_n) in zip(with_r, without, strict=True):
        print(f"{day:5d} {mem_n / 2**20:13.2f} {mem_r / 2**20:10.2f}")
    # Flat: from the alert window (90d) on, what the acks (400d) still add is small; compare the last two points
    # after day 400 when there are some, else the growth of the last 60 days against the first 90's.
    late = [mem for day, mem in with_r if day >= 420]
    growth = (late[-1] - late[0]) / late[0] if len(late) >= 2 else None
    final_r, final_n = with_r[-1][1], without[-1][1]
    ratio = final_r / final_n if final_n else None
    print(
        f"final: {final_r / 2**20:.2f} MiB with retention, {final_n / 2**20:.2f} MiB without ({ratio:.2f}x);"
        f" growth after day 420: {'n/a' if growth is None else f'{growth:+.1%}'}"
    )
    rows.append(
        {
            "figure": f"memory after {args.days} simulated days, steady alerts",
            "ours": round(final_r / 2**20, 2),
            "anchor": round(final_n / 2**20, 2),
            "ratio": round(ratio, 3) if ratio else None,
            "unit": "MiB",
            "target": "flat once retention applies (growth after day 420 <= 5%)",
            "met": None if growth is None else growth <= 0.05,
        }
    )
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    asyncio.run(main())
