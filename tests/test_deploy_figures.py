"""The `/deploy history` figures from running daily counters: equal to `compute_figures` (the reference, which reads
every record of the window) over random deploy sequences, whether the deploys finished under this version (counted as
they finish) or an earlier one (counted by the retention job's bounded backfill); read without the records; the old
counters removed by retention. Real Redis (the tests' own server), fake clocks."""

from __future__ import annotations

import asyncio
import html
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.alerts.store import AlertStore
from bot.backups.store import BackupStore
from bot.deploys.figures import Figures, calendar_window, compute_figures
from bot.deploys.model import DeployRecord, DeployState
from bot.deploys.store import DeployStore
from bot.platform.audit import AuditLog
from bot.platform.embedded_redis import EmbeddedRedis
from bot.platform.keys import Keys
from bot.platform.metrics import Metrics
from bot.platform.retention import RetentionSection
from bot.platform.store import Store
from bot.shell.config import ChatopsConfig, parse_config
from bot.shell.pruning import Pruner
from bot.shell.web import STORE
from tests.conftest import BotHarness, FakeClock
from tests.state import state

NOW = datetime(2026, 6, 1, 15, 30, 12, 345678, tzinfo=UTC)
START = NOW - timedelta(days=45)  # the sequences begin before the window, so its first day's boundary matters
ENVS = ("staging", "production")
FINAL = [
    DeployState.SUCCEEDED,
    DeployState.FAILED,
    DeployState.ROLLED_BACK,
    DeployState.INTERRUPTED,
    DeployState.REJECTED,
    DeployState.CANCELLED,
    DeployState.EXPIRED,
]


@dataclass(frozen=True)
class Step:
    """One deploy of the sequence: where, what, how it ended, and its times relative to the one before."""

    environment: str
    kind: Literal["deploy", "rollback"]
    state: DeployState
    gap: timedelta  # since the previous deploy was requested
    waited: timedelta | None  # requested to started (None: never started)
    took: timedelta  # started (or requested) to finished
    commit_lag: timedelta | None  # committed before it was requested (None: commit unknown)


def spans(longest: timedelta) -> st.SearchStrategy[timedelta]:
    """Durations up to `longest`: whole minutes (so that two deploys often finish at the same instant) or any."""
    minutes = st.integers(0, int(longest / timedelta(minutes=1))).map(lambda n: timedelta(minutes=n))
    return minutes | st.timedeltas(min_value=timedelta(0), max_value=longest)


steps = st.builds(
    Step,
    environment=st.sampled_from(ENVS),
    kind=st.sampled_from(["deploy", "deploy", "deploy", "rollback"]),
    state=st.sampled_from(FINAL),
    gap=spans(timedelta(days=3)),
    waited=st.none() | spans(timedelta(days=2)),
    took=spans(timedelta(hours=5)),
    commit_lag=st.none() | st.timedeltas(min_value=timedelta(days=-1), max_value=timedelta(days=4)),
)


def records_of(sequence: list[Step]) -> list[DeployRecord]:
    """The finished records of a sequence, in the order they finished (ties as drawn), all finished by NOW."""
    records, at = [], START
    for n, step in enumerate(sequence):
        at += step.gap
        started = at + step.waited if step.waited is not None else None
        finished = min((started or at) + step.took, NOW)
        records.append(
            DeployRecord(
                id=f"d-{n:05d}",
                kind=step.kind,
                service="web",
                environment=step.environment,
                version=f"v{n}",
                previous_version=None,
                requested_by="U0BOB",
                state=step.state,
                created_at=min(at, finished),
                updated_at=finished,
                started_at=min(started, finished) if started else None,
                finished_at=finished,
                commit_at=at - step.commit_lag if step.commit_lag is not None else None,
            )
        )
    return sorted(records, key=lambda r: r.finished_at or NOW)


def reference(records: list[DeployRecord]) -> Figures:
    """`compute_figures` over the counters' window: the 30 UTC days ending today."""
    days, end = calendar_window(NOW)
    return compute_figures(records, end, timedelta(days=len(days)))


async def finish(deploys: DeployStore, record: DeployRecord) -> None:
    """Requested, then finished, as the engine records it (the final state in one transaction)."""
    await deploys.create(record.model_copy(update={"state": DeployState.RUNNING, "finished_at": None}))
    await deploys.update(record.id, lambda r: record)


async def finished_earlier(store: Store, record: DeployRecord) -> None:
    """A record as an earlier version left it: finished, in the history, not in any counter."""
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.set(store.keys.deploy("record", record.id), record.model_dump_json())
        pipe.zadd(
            store.keys.deploy("history", record.service, record.environment), {record.id: record.created_at.timestamp()}
        )
        await pipe.execute()


async def own_store(server: EmbeddedRedis) -> tuple[Store, aioredis.Redis]:
    """A store under a prefix of its own on the tests' Redis (one per example: nothing left from another)."""
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    return Store(client, Keys(f"fig{secrets.token_hex(6)}"), Metrics()), client


async def drop(store: Store, client: aioredis.Redis) -> None:
    """Deletes the example's keys (its own prefix, on the tests' own server) and closes the client."""
    async for key in client.scan_iter(match=f"{store.keys.prefix}:*", count=1000):
        await client.delete(key)
    await client.aclose()


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(steps, max_size=40))
def test_counters_written_as_deploys_finish_give_the_reference_figures(
    redis_server: EmbeddedRedis,
    sequence: list[Step],
) -> None:
    async def run() -> None:
        store, client = await own_store(redis_server)
        try:
            deploys = DeployStore(store)
            assert await deploys.backfill_figures([("web", env) for env in ENVS], NOW)  # nothing from before
            records = records_of(sequence)
            for record in records:
                await finish(deploys, record)
            assert await deploys.figures("web", list(ENVS), NOW) == reference(records)
            for env in ENVS:  # one environment alone, as `/deploy history web production` asks
                mine = [r for r in records if r.environment == env]
                assert await deploys.figures("web", [env], NOW) == reference(mine)
        finally:
            await drop(store, client)

    asyncio.run(run())


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(steps, max_size=40), st.data())
def test_deploys_an_earlier_version_finished_are_backfilled_once_and_give_the_reference_figures(
    redis_server: EmbeddedRedis,
    sequence: list[Step],
    data: st.DataObject,
) -> None:
    records = records_of(sequence)
    upgraded = data.draw(st.integers(0, len(records)), label="finished before the upgrade")
    backfilled = data.draw(st.integers(upgraded, len(records)), label="finished before the backfill")
    batch = data.draw(st.sampled_from([1, 500]), label="batch")

    async def run() -> None:
        store, client = await own_store(redis_server)
        try:
            deploys = DeployStore(store)
            pairs = [("web", env) for env in ENVS]
            for record in records[:upgraded]:
                await finished_earlier(store, record)
            for record in records[upgraded:backfilled]:
                await finish(deploys, record)
            assert await deploys.figures("web", list(ENVS), NOW) is None  # not every deploy is counted yet
            while not await deploys.backfill_figures(pairs, NOW, batch):
                pass
            assert await deploys.backfill_figures(pairs, NOW, batch)  # again: nothing counted twice
            for record in records[backfilled:]:
                await finish(deploys, record)
            assert await deploys.figures("web", list(ENVS), NOW) == reference(records)
        finally:
            await drop(store, client)

    asyncio.run(run())


# -- through the bot and the retention job -------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def leads() -> bool:
    return False  # the retention job runs by hand, on the fake clock


@pytest.fixture
def bot_config() -> ChatopsConfig:
    services = "".join(f'      {env}:\n        deployer: {{kind: command, argv: ["true"]}}\n' for env in ENVS)
    return parse_config(
        'slack: {announce_channel: "#general"}\nroles:\n  admins: [U0DEMO]\n  deployers: [U0BOB]\n'
        f"services:\n  web:\n    environments:\n{services}",
        "figures.yaml",
    )


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield Store(client, Keys("chatops"), Metrics())
    await client.aclose()


def pruner(store: Store, clock: FakeClock, retention: RetentionSection | None = None) -> Pruner:
    return Pruner(
        retention=retention or RetentionSection(),
        alerts=AlertStore(store),
        deploys=DeployStore(store),
        backups=BackupStore(store),
        audit=AuditLog(store, clock),
        deploy_keys=lambda: [("web", env) for env in ENVS],
        backup_targets=lambda: [],
        clock=clock,
    )


def record(deploy_id: str, env: str, finished: datetime, state: DeployState) -> DeployRecord:
    return DeployRecord(
        id=deploy_id,
        kind="deploy",
        service="web",
        environment=env,
        version=deploy_id,
        previous_version=None,
        requested_by="U0BOB",
        state=state,
        created_at=finished - timedelta(minutes=5),
        updated_at=finished,
        started_at=finished - timedelta(minutes=4),
        finished_at=finished,
    )


async def test_the_retention_job_runs_with_no_service_configured(store: Store) -> None:
    job = Pruner(
        retention=RetentionSection(),
        alerts=AlertStore(store),
        deploys=DeployStore(store),
        backups=BackupStore(store),
        audit=AuditLog(store, FakeClock(NOW)),
        deploy_keys=lambda: [],
        backup_targets=lambda: [],
        clock=FakeClock(NOW),
    )
    await job.run()  # a config without services once made the deploy figures' backfill fail every run
    assert await DeployStore(store).backfill_figures([], NOW)


async def test_the_figures_are_read_from_the_counters_not_the_records(store: Store) -> None:
    deploys = DeployStore(store)
    await finished_earlier(store, record("d-old-fail", "production", NOW - timedelta(days=2), DeployState.FAILED))
    await finish(deploys, record("d-fix", "production", NOW - timedelta(days=1), DeployState.SUCCEEDED))
    await finish(deploys, record("d-stage", "staging", NOW - timedelta(hours=3), DeployState.SUCCEEDED))
    assert await deploys.figures("web", list(ENVS), NOW) is None  # d-old-fail is in no counter yet

    await pruner(store, FakeClock(NOW)).run()  # the retention job backfills it
    figures = await deploys.figures("web", list(ENVS), NOW)
    assert figures is not None and (figures.deploys, figures.change_failure_rate) == (3, 1 / 3)
    assert figures.mean_time_to_restore == timedelta(days=1, minutes=4)  # from d-old-fail's start to d-fix
    # The records are no longer read: without them, the same figures.
    await store.redis.delete(*[store.keys.deploy("record", i) for i in ("d-old-fail", "d-fix", "d-stage")])
    assert await deploys.figures("web", list(ENVS), NOW) == figures


async def test_a_failure_is_restored_by_the_first_success_finished_after_it_whatever_the_write_order(
    store: Store,
) -> None:
    # Two replicas: a request refused at the lock fails at 12:00:00.5 but is written after the running deploy's success
    # at 12:00:01. compute_figures goes by finish time, so the success restores the failure; so do the counters.
    deploys = DeployStore(store)
    assert await deploys.backfill_figures([("web", env) for env in ENVS], NOW)
    success = record("d-ok", "production", NOW - timedelta(hours=2), DeployState.SUCCEEDED)
    failure = record("d-refused", "production", NOW - timedelta(hours=2, milliseconds=500), DeployState.FAILED)
    # And one that finished at the very instant of a success is not restored by it ("after" is strictly after).
    same_failure = record("d-same-fail", "staging", NOW - timedelta(hours=1), DeployState.FAILED)
    same_success = record("d-same-ok", "staging", NOW - timedelta(hours=1), DeployState.SUCCEEDED)
    for finished in (success, failure, same_failure, same_success):
        await finish(deploys, finished)
    figures = await deploys.figures("web", list(ENVS), NOW)
    assert figures == reference([success, failure, same_failure, same_success])
    assert figures is not None and figures.mean_time_to_restore == timedelta(minutes=4, milliseconds=500)


async def test_retention_removes_old_counters_and_keeps_the_windows(store: Store) -> None:
    deploys = DeployStore(store)
    old, recent = NOW - timedelta(days=45), NOW - timedelta(days=20)
    await finish(deploys, record("d-old", "production", old, DeployState.FAILED))  # never restored
    await finish(deploys, record("d-recent", "production", recent, DeployState.SUCCEEDED))
    await finish(deploys, record("d-late", "production", NOW - timedelta(days=1), DeployState.FAILED))
    keys = {day: store.keys.deploy("figs", "web", "production", f"{day:%Y%m%d}") for day in (old, recent)}
    assert await store.redis.exists(*keys.values()) == 2
    unrestored = store.keys.deploy("unrestored", "web", "production")
    assert await store.redis.zcard(unrestored) == 1  # d-late waits; d-old was restored by d-recent

    await pruner(store, FakeClock(NOW), RetentionSection(deploys=timedelta(days=30))).run()
    assert not await store.redis.exists(keys[old]) and await store.redis.exists(keys[recent])
    assert await store.redis.zcard(unrestored) == 1
    later = NOW + timedelta(days=40)
    await pruner(store, FakeClock(later), RetentionSection(deploys=timedelta(days=30))).run()
    assert not await store.redis.exists(keys[recent])
    assert await store.redis.zcard(unrestored) == 0  # a failure older than retention no longer waits


async def test_history_shows_the_same_figures_before_and_after_the_backfill(bot: BotHarness, clock: FakeClock) -> None:
    deploys: DeployStore = state(bot).deploys
    store: Store = bot.app[STORE]
    # Finished 30 days less an hour ago: inside the old rolling window (now - 30 days) but on the day before the first
    # of the 30 UTC days, so neither the figures computed from the records nor the counters count it.
    a_month = NOW - timedelta(days=30, hours=-1)
    await finished_earlier(store, record("d-a", "production", a_month, DeployState.SUCCEEDED))
    await finished_earlier(store, record("d-b", "production", NOW - timedelta(days=3), DeployState.FAILED))
    await finish(deploys, record("d-c", "production", NOW - timedelta(days=2), DeployState.SUCCEEDED))
    await finish(deploys, record("d-d", "staging", NOW - timedelta(hours=1), DeployState.ROLLED_BACK))

    before = await history_text(bot)
    assert "3 finished deploys" in before, before
    await pruner(store, clock).run()
    assert await deploys.figures("web", list(ENVS), NOW) is not None
    assert await history_text(bot) == before


async def history_text(bot: BotHarness) -> str:
    result = await bot.emulator.send_command(
        command="/deploy", text="history web", user_id="U0BOB", channel_id="C0GENERAL"
    )
    assert result.status == 200 and result.json is not None, result
    return html.unescape(str(result.json.get("text", "")) + str(result.json.get("blocks", "")))
