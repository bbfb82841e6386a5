"""History that stays cheap to read and bounded in size: `/alerts stats` from daily counters (acks recorded by an
earlier version folded in by a bounded backfill), retention that removes only what is old and finished, in bounded
batches, `chatops audit export`, and the `retention:` section's validation. Real Redis, fake clocks."""

from __future__ import annotations

import asyncio
import html
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bot.alerts.model import AlertGroup, Member
from bot.alerts.store import AlertStore, RawEntry
from bot.backups.model import BackupRecord, BackupState
from bot.backups.store import BackupStore
from bot.deploys.model import DeployRecord, DeployState
from bot.deploys.store import DeployStore
from bot.platform.audit import EXPORT_FIELDS, AuditLog
from bot.platform.keys import Keys
from bot.platform.metrics import Metrics
from bot.platform.retention import RetentionSection
from bot.platform.store import Store
from bot.shell.config import ConfigError, parse_config
from bot.shell.pruning import Pruner
from tests.conftest import BotHarness, FakeClock
from tests.state import state as bot_state

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield Store(client, Keys("chatops"), Metrics())
    await client.aclose()


def ack_fields(at: datetime, seconds: float, group: str) -> dict[str, str]:
    """An ack entry as `AlertPipeline.acknowledge` writes it."""
    return {
        "group": group,
        "fingerprints": "fp",
        "user": "U0BOB",
        "at": at.isoformat(),
        "seconds_to_ack": f"{seconds:.3f}",
        "via": "button",
        "title": "t",
        "escalation": "",
        "step": "0",
        "round": "0",
        "pages": "0",
        "rotation": "",
        "paged": "",
        "severity": "warning",
    }


async def stats_text(bot: BotHarness) -> str:
    result = await bot.emulator.send_command(
        command="/alerts", text="stats 30d", user_id="U0BOB", channel_id="C0GENERAL"
    )
    assert result.status == 200 and result.json is not None, result
    return html.unescape(result.json["text"])


async def test_stats_from_daily_counters_equal_the_old_scan_including_acks_from_before(bot: BotHarness) -> None:
    store = bot_state(bot).alerts
    acks_key = store.k("acks")
    # Acks an earlier version wrote (no counters): inside the window, and older than it (never counted).
    for n, (days_ago, seconds) in enumerate([(0, 12.5), (3, 300.25), (3, 41.0), (29, 7.125), (45, 999.0), (200, 5.0)]):
        await store.redis.xadd(acks_key, ack_fields(NOW - timedelta(days=days_ago, hours=1), seconds, f"a-old{n}"))
    # Acks this version records (counted as they are written).
    for n, (days_ago, seconds) in enumerate([(1, 60.0), (10, 0.5), (40, 100.0)]):
        async with store.redis.pipeline(transaction=True) as pipe:
            store.queue_ack(pipe, ack_fields(NOW - timedelta(days=days_ago, hours=1), seconds, f"a-new{n}"))
            await pipe.execute()
    await store.count(NOW, "received", 7)
    await store.count(NOW - timedelta(days=2), "resolved", 2)

    old_scan = await stats_text(bot)  # counters not complete yet: the stream is read as before
    assert "6 acknowledgements" in old_scan, old_scan

    rounds = 0
    while not await store.backfill_ack_counters(batch=2):  # bounded: two entries a call
        rounds += 1
        assert rounds < 10, "the backfill never finished"
    assert rounds >= 3
    assert await store.backfill_ack_counters(batch=2)  # done stays done: nothing counted twice
    await store.redis.delete(acks_key)  # the answer now comes from the counters alone
    assert await stats_text(bot) == old_scan

    async with store.redis.pipeline(transaction=True) as pipe:  # a new ack after the backfill counts once
        store.queue_ack(pipe, ack_fields(NOW, 30.0, "a-later"))
        await pipe.execute()
    assert "7 acknowledgements" in await stats_text(bot)


async def test_stats_keep_the_older_days_totals_and_still_see_every_change(store: Store) -> None:
    alerts = AlertStore(store)
    window = [NOW - timedelta(days=n) for n in range(30)]
    for n, day in enumerate(window):  # what each day's writers counted on their day
        await alerts.count(day, "received", n + 1)
    expected = sum(range(1, 31))
    assert (await alerts.stats(window))["received"] == expected
    older = [key async for key in store.redis.scan_iter(match=alerts.k("stats_older") + ":*")]
    assert len(older) == 1 and await store.redis.ttl(older[0]) > 86_400  # the older days' totals, kept a while
    await store.redis.delete(*[alerts.k("stats", f"{day:%Y%m%d}") for day in window[2:]])
    assert (await alerts.stats(window))["received"] == expected, "the older days are read from their totals"

    await alerts.count(NOW, "received", 100)  # today and yesterday are read live
    await alerts.count(NOW - timedelta(days=1), "resolved", 5)
    totals = await alerts.stats(window)
    assert (totals["received"], totals["resolved"]) == (expected + 100, 5)

    # A write into an older day raises the generation: a dead letter of an entry received 10 days ago.
    await alerts.count(NOW - timedelta(days=10), "received", 7)  # the entry's day, as it was counted then
    entry = RawEntry(source="alertmanager", body="{}", received_at=NOW - timedelta(days=10), count=7)
    await alerts.dead_letter_raw("1-0", entry, "unreadable")
    totals = await alerts.stats(window)
    assert totals["dead_lettered"] == 7
    assert totals["received"] == 1 + 2 + 7 + 100, "summed afresh: the days deleted above are gone now"

    # Retention removes older days: they leave the totals too.
    await alerts.prune_days(NOW - timedelta(days=1), batch=1000)
    totals = await alerts.stats(window)
    assert (totals["received"], totals.get("dead_lettered", 0)) == (1 + 2 + 100, 0)

    # The same days asked for again by a bot whose clock moved on: the window's own totals.
    assert (await alerts.stats(window[1:]))["received"] == 2 + 0  # yesterday's 2, the day before pruned
    assert await alerts.stats([]) == {}


def group(group_id: str, created: datetime, *, resolved: datetime | None) -> AlertGroup:
    member = Member(
        fingerprint="fp",
        title="DiskFull",
        severity="warning",
        status="resolved" if resolved else "firing",
        starts_at=created,
        last_seen=created,
    )
    return AlertGroup(
        id=group_id,
        group_key=group_id,
        channel="#alerts",
        members={"fp": member},
        created_at=created,
        updated_at=resolved or created,
        state="resolved" if resolved else "firing",
        resolved_at=resolved,
    )


def deploy(deploy_id: str, created: datetime, state: DeployState, version: str = "v1") -> DeployRecord:
    return DeployRecord(
        id=deploy_id,
        kind="deploy",
        service="web",
        environment="production",
        version=version,
        previous_version=None,
        requested_by="U0BOB",
        state=state,
        created_at=created,
        updated_at=created,
        finished_at=created if state in (DeployState.SUCCEEDED, DeployState.FAILED) else None,
    )


def backup(backup_id: str, created: datetime, state: BackupState) -> BackupRecord:
    return BackupRecord(
        id=backup_id, target="appdb", kind="postgres", state=state, requested_by="U0BOB", created_at=created
    )


async def test_retention_removes_only_old_finished_history_in_bounded_batches(store: Store) -> None:
    clock = FakeClock(NOW)
    alerts, deploys, backups = AlertStore(store), DeployStore(store), BackupStore(store)
    audit = AuditLog(store, clock)
    long_ago = NOW - timedelta(days=150)
    for n in range(250):  # old and resolved: all go, at most one batch a call
        old = group(f"a-old{n:05d}", long_ago + timedelta(minutes=n), resolved=long_ago + timedelta(minutes=n + 5))
        await alerts.create_group(old, post_at=old.created_at)
        await alerts.update_group(old.id, lambda g, old=old: old, dirty=False)
    firing = group("a-firing01", long_ago, resolved=None)
    recent = group("a-recent01", NOW - timedelta(days=10), resolved=NOW - timedelta(days=9))
    late = group("a-latefix1", long_ago, resolved=NOW - timedelta(days=5))  # old, but resolved only days ago
    for kept in (firing, recent, late):
        await alerts.create_group(kept, post_at=kept.created_at)
    await alerts.update_group(late.id, lambda g: late, dirty=False)
    await alerts.update_group(recent.id, lambda g: recent, dirty=False)

    first = await alerts.prune_groups(NOW - timedelta(days=90), batch=100)
    assert first.groups <= 100 and first.more

    # Deploys: old finished ones go; an old one still running, and the one that put the running version, stay.
    old_day = NOW - timedelta(days=500)

    async def deployed(record: DeployRecord) -> None:  # requested, then finished, as the engine does it
        await deploys.create(record.model_copy(update={"state": DeployState.RUNNING}))
        if record.state != DeployState.RUNNING:
            await deploys.update(record.id, lambda r: record)

    await deployed(deploy("d-running", old_day, DeployState.RUNNING))
    await deployed(deploy("d-current", old_day, DeployState.SUCCEEDED, version="v7"))
    for n in range(5):
        await deployed(deploy(f"d-old{n}", old_day + timedelta(minutes=n), DeployState.FAILED))
    await deployed(deploy("d-recent", NOW - timedelta(days=3), DeployState.FAILED))
    # Backups: old ones without an object go; old succeeded (its object may be restored) and running stay.
    for name, state in (
        ("b-failed", BackupState.FAILED),
        ("b-pruned", BackupState.PRUNED),
        ("b-good", BackupState.SUCCEEDED),
        ("b-running", BackupState.RUNNING),
    ):
        await backups.create(backup(name, old_day, state))
    await backups.create(backup("b-recent", NOW - timedelta(days=2), BackupState.FAILED))
    # Audit: entries appended long ago (explicit old stream ids, as the real clock gave them then) and today's.
    old_ms = int((NOW - timedelta(days=500)).timestamp() * 1000)
    for n in range(300):
        await store.redis.xadd(
            store.keys.audit_stream(),
            {"at": old_day.isoformat(), "actor": "U0BOB", "action": "x", "result": "ok"},
            id=f"{old_ms}-{n + 1}",
        )
    fresh = [await audit.record(actor="U0BOB", action=f"today{n}", result="ok") for n in range(3)]

    pruner = Pruner(
        retention=RetentionSection(batch=100),
        alerts=alerts,
        deploys=deploys,
        backups=backups,
        audit=audit,
        deploy_keys=lambda: [("web", "production")],
        backup_targets=lambda: ["appdb"],
        clock=clock,
    )
    done = await pruner.run()
    assert done.batches["alert_groups"] >= 2  # more than one bounded batch was needed

    left = set(await store.redis.zrange(alerts.k("groups"), 0, -1))
    assert left == {firing.id, recent.id, late.id}
    assert await alerts.get_group(firing.id) is not None and await alerts.get_group("a-old00000") is None
    assert await store.redis.sismember(alerts.k("firing"), firing.id)
    assert set(await store.redis.zrange(store.keys.deploy("history", "web", "production"), 0, -1)) == {
        "d-running",
        "d-current",
        "d-recent",
    }
    assert await deploys.get("d-old0") is None and await deploys.get("d-current") is not None
    assert (await deploys.running_record("web", "production"))[1] is not None
    assert set(await store.redis.zrange(store.keys.backups("history", "appdb"), 0, -1)) == {
        "b-good",
        "b-running",
        "b-recent",
    }
    remaining = [entry_id for entry_id, _ in await store.redis.xrange(store.keys.audit_stream())]
    assert set(fresh) <= set(remaining) and len(remaining) < 303  # today's kept; old ones trimmed by whole nodes

    clock.advance(timedelta(days=100))  # later, the recent ones are old too; the firing group still stays
    await pruner.run()
    assert set(await store.redis.zrange(alerts.k("groups"), 0, -1)) == {firing.id}


async def test_trimming_never_drops_alerts_not_yet_delivered(store: Store) -> None:
    alerts = AlertStore(store)
    await alerts.ensure_consumer_group()
    for _ in range(250):
        await store.redis.xadd(alerts.k("stream"), {"alerts": "[]"})
    await alerts.trim_streams(NOW + timedelta(days=3650), NOW + timedelta(days=3650), batch=1000)
    assert await store.redis.xlen(alerts.k("stream")) == 250


async def run_cli(*args: str, redis_url: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "CHATOPS_", "SLACK_"))} | {
        "REDIS_URL": redis_url
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_audit_export_writes_one_json_line_per_record_between_the_dates(store: Store, redis_url: str) -> None:
    times = iter(
        [
            datetime(2026, 1, 31, 23, 59, tzinfo=UTC),
            datetime(2026, 2, 1, 0, 0, tzinfo=UTC),
            datetime(2026, 2, 14, 9, 30, tzinfo=UTC),
            datetime(2026, 3, 1, 0, 0, tzinfo=UTC),
        ]
    )
    audit = AuditLog(store, lambda: next(times))
    ids = [
        await audit.record(
            actor="U0BOB",
            action=f"deploy.{n}",
            result="ok",
            target="web",
            channel="C0GENERAL",
            detail='say "hi"\nthere',
        )
        for n in range(4)
    ]

    code, out, err = await run_cli(
        "audit", "export", "--since", "2026-02-01", "--until", "2026-03-01", redis_url=redis_url
    )
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [list(row) for row in rows] == [list(EXPORT_FIELDS)] * 2
    assert [row["id"] for row in rows] == ids[1:3]
    assert rows[0] == {
        "id": ids[1],
        "at": "2026-02-01T00:00:00+00:00",
        "actor": "U0BOB",
        "action": "deploy.1",
        "target": "web",
        "channel": "C0GENERAL",
        "result": "ok",
        "detail": 'say "hi"\nthere',
    }

    code, out, _ = await run_cli("audit", "export", "--since", "2026-02-14T09:30:00Z", redis_url=redis_url)
    assert code == 0 and [json.loads(line)["id"] for line in out.splitlines()] == ids[2:]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "2026-13-01"], "--since: '2026-13-01' is not a date; write YYYY-MM-DD"),
        (["--since", "yesterday"], "--since: 'yesterday' is not a date"),
        (["--since", "2026-02-01", "--until", "soon"], "--until: 'soon' is not a date"),
        (["--since", "2026-02-01", "--until", "2026-01-01"], "--until (2026-01-01) must be after --since (2026-02-01)"),
    ],
)
async def test_audit_export_rejects_bad_dates_with_exit_code_2(redis_url: str, args: list[str], message: str) -> None:
    code, out, err = await run_cli("audit", "export", *args, redis_url=redis_url)
    assert code == 2 and out == "" and message in err, (code, err)
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        (
            "retention:\n  alerts: 30d\n",
            "retention.alerts: must be at least 90d, the longest `/alerts stats` window (got 30d)",
        ),
        ("retention:\n  audit: 0s\n", "retention.audit: must be at least 1d, the shortest retention (got 0s)"),
        ("retention:\n  acknowledgements: 90d\n", "retention.acknowledgements: must be at least 365d"),
        (
            "retention:\n  deploys: 1w\n",
            "retention.deploys: must be at least 30d, the window of the `/deploy history` figures (got 7d)",
        ),
        ("retention:\n  every: 2d\n", "retention.every: must be from 1m to 1d (got 2d)"),
        ("retention:\n  batch: 10\n", "retention.batch: must be ≥ 100"),
        ("retention:\n  alert: 90d\n", "retention.alert"),
    ],
)
def test_check_config_names_bad_retention_values(yaml: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml, "chatops.yaml")
    problems = [str(problem) for problem in caught.value.problems]
    assert len(problems) == 1 and message in problems[0], problems


def test_retention_defaults() -> None:
    section = parse_config("", "chatops.yaml").retention
    assert (section.alerts, section.audit, section.acknowledgements) == (
        timedelta(days=90),
        timedelta(days=400),
        timedelta(days=400),
    )
