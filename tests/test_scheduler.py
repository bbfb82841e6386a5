"""The leader-leased scheduler against the tests' real Redis: lease semantics, one leader at a time, hand-over on
a crash (after the TTL) and on a clean stop (at once), deposition, catch-up of missed runs, failing jobs."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.platform.keys import Keys
from bot.platform.scheduler import (
    MAX_COUNTED,
    LeaderLease,
    LeaderScheduler,
    Missed,
    plan_catch_up,
)
from tests.waiting import eventually, within

KEYS = Keys("test")
SHORT_TTL = timedelta(seconds=0.6)
STEP_DEADLINE = 15.0  # seconds for one step of a test, well inside pytest's 60 s for the whole test


def real_clock() -> datetime:
    return datetime.now(UTC)


async def equals(read: Callable[[], Awaitable[object]], expected: object) -> bool:
    """Whether `read()` (a value read from Redis) is `expected` now."""
    return await read() == expected


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@dataclass
class Process:
    """One simulated chatops process: its scheduler, its own Redis client (a crash leaves whatever it was in the
    middle of on its own connections, as a real process's would be), its run task and its stop event."""

    scheduler: LeaderScheduler
    client: aioredis.Redis
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.scheduler.run(self.stop))

    async def stop_cleanly(self) -> None:
        assert self.task is not None
        self.stop.set()
        await self.task

    async def crash(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def processes() -> AsyncIterator[list[Process]]:
    """Processes a test starts; any still running at the end is stopped cleanly."""
    started: list[Process] = []
    yield started
    for process in started:
        if process.task is not None and not process.task.done():
            await process.stop_cleanly()
        await process.client.aclose()


def process(
    processes: list[Process],
    redis: aioredis.Redis,
    owner: str,
    *,
    ttl: timedelta = SHORT_TTL,
    clock: Callable[[], datetime] = real_clock,
) -> Process:
    where = redis.connection_pool.connection_kwargs
    own = aioredis.Redis(host=where["host"], port=where["port"], db=where.get("db", 0), decode_responses=True)
    proc = Process(LeaderScheduler(redis=own, keys=KEYS, lease_ttl=ttl, clock=clock, owner=owner), own)
    processes.append(proc)
    return proc


def appender(ran: list[str], name: str) -> Callable[[Missed | None], Awaitable[None]]:
    async def job(missed: Missed | None) -> None:
        ran.append(name)

    return job


async def test_lease_acquire_renew_release(redis: aioredis.Redis) -> None:
    key = KEYS.scheduler("leader")
    first = LeaderLease(redis, key, timedelta(seconds=0.3), owner="first")
    second = LeaderLease(redis, key, timedelta(seconds=0.3), owner="second")

    assert await first.acquire()
    assert not await second.acquire()
    assert not await second.renew()
    await second.release()
    assert await first.holder() == "first"
    assert await first.renew()

    await eventually(lambda: equals(first.holder, None), "the lease expires")
    assert not await first.renew()
    assert await second.acquire()
    await first.release()
    assert await second.holder() == "second"
    await second.release()
    assert await second.holder() is None


async def test_default_owner_is_unique_and_readable(redis: aioredis.Redis) -> None:
    key = KEYS.scheduler("leader")
    one, two = LeaderLease(redis, key, SHORT_TTL), LeaderLease(redis, key, SHORT_TTL)
    assert one.owner != two.owner
    assert f":{os.getpid()}:" in one.owner
    assert socket.gethostname() in one.owner


async def test_only_the_leader_runs_jobs_and_a_crash_hands_over_after_the_ttl(
    redis: aioredis.Redis, processes: list[Process]
) -> None:
    ran: list[str] = []
    a, b = process(processes, redis, "a"), process(processes, redis, "b")
    a.scheduler.add_job("tick", appender(ran, "a"), IntervalTrigger(seconds=0.1))
    b.scheduler.add_job("tick", appender(ran, "b"), IntervalTrigger(seconds=0.1))
    a.start()
    # Each wait well inside the test's timeout, so a stall names the step it happened in.
    await within(a.scheduler.leading.wait(), "a leading", deadline=STEP_DEADLINE)
    b.start()
    await eventually(lambda: ran.count("a") >= 10, "a's job runs ten times", deadline=STEP_DEADLINE)
    assert "b" not in ran
    assert not b.scheduler.is_leader

    await within(a.crash(), "a's crash (its run task cancelled)", deadline=STEP_DEADLINE)
    assert not a.scheduler.is_leader
    # A crash releases nothing: the lease is still a's until it expires.
    assert await a.scheduler.lease.holder() == "a"
    runs_by_a = ran.count("a")

    await within(b.scheduler.leading.wait(), "b leading", deadline=STEP_DEADLINE)
    await eventually(lambda: ran.count("b") >= 3, "b's job runs", deadline=STEP_DEADLINE)
    assert ran.count("a") == runs_by_a
    assert await b.scheduler.lease.holder() == "b"


async def test_a_clean_stop_releases_the_lease_and_the_other_takes_over(
    redis: aioredis.Redis, processes: list[Process]
) -> None:
    ran: list[str] = []
    a, b = process(processes, redis, "a"), process(processes, redis, "b")
    a.scheduler.add_job("tick", appender(ran, "a"), IntervalTrigger(seconds=0.1))
    b.scheduler.add_job("tick", appender(ran, "b"), IntervalTrigger(seconds=0.1))
    a.start()
    await within(a.scheduler.leading.wait(), "a leading")
    b.start()
    await eventually(lambda: "a" in ran, "a's job runs")

    await a.stop_cleanly()
    assert not a.scheduler.is_leader
    assert await redis.get(KEYS.scheduler("leader")) != "a"  # released, not left to expire
    await within(b.scheduler.leading.wait(), "b leading")
    await eventually(lambda: "b" in ran, "b's job runs")


async def test_a_deposed_leader_stops_running_jobs(redis: aioredis.Redis, processes: list[Process]) -> None:
    ran: list[str] = []
    a = process(processes, redis, "a")
    a.scheduler.add_job("tick", appender(ran, "a"), IntervalTrigger(seconds=0.05))
    a.start()
    await eventually(lambda: len(ran) >= 3, "a's job runs")

    await redis.set(KEYS.scheduler("leader"), "intruder", px=60_000)
    await eventually(lambda: not a.scheduler.is_leader, "a notices it lost the lease")
    assert not a.scheduler.leading.is_set()
    await asyncio.sleep(0)  # APScheduler's shutdown runs on the loop's next turn
    runs_when_deposed = len(ran)
    # Two whole lease ticks (0.2 s each, four intervals of the job) begun after it stood down: none may run the job.
    for tick in (1, 2):
        await within(a.scheduler.ticks.quiet(), f"a's lease tick {tick} after it stood down")
    assert len(ran) == runs_when_deposed
    assert await a.scheduler.lease.holder() == "intruder"


async def test_missed_runs_are_caught_up_once_with_a_note(redis: aioredis.Redis, processes: list[Process]) -> None:
    now = datetime(2025, 3, 4, 12, 30, tzinfo=UTC)
    three_hours_ago = now - timedelta(hours=3)
    await redis.hset(
        KEYS.scheduler("runs"), mapping={"hourly": three_hours_ago.isoformat(), "quiet": three_hours_ago.isoformat()}
    )
    calls: dict[str, list[Missed | None]] = {"hourly": [], "quiet": [], "fresh": []}

    def recorder(name: str) -> Callable[[Missed | None], Awaitable[None]]:
        async def job(missed: Missed | None) -> None:
            calls[name].append(missed)

        return job

    proc = process(processes, redis, "a", clock=lambda: now)
    proc.scheduler.add_job("hourly", recorder("hourly"), CronTrigger(minute=0, timezone=UTC))
    proc.scheduler.add_job("quiet", recorder("quiet"), CronTrigger(minute=0, timezone=UTC), catch_up=False)
    proc.scheduler.add_job("fresh", recorder("fresh"), CronTrigger(minute=0, timezone=UTC))
    proc.start()
    await eventually(lambda: any(calls["hourly"]), "the hourly job is caught up")

    caught_up = [m for m in calls["hourly"] if m is not None]
    assert caught_up == [
        Missed(first=datetime(2025, 3, 4, 10, tzinfo=UTC), last=datetime(2025, 3, 4, 12, tzinfo=UTC), count=3)
    ]
    assert caught_up[0].note == (
        "missed 3 runs between 10:00 and 12:00 UTC while no chatops process was leading; running once now"
    )
    await eventually(
        lambda: equals(lambda: redis.hget(KEYS.scheduler("runs"), "hourly"), now.isoformat()),
        "the catch-up is recorded",
    )
    # A job that never ran starts counting from now; a catch_up=False job is never caught up.
    assert await redis.hget(KEYS.scheduler("runs"), "fresh") == now.isoformat()
    await proc.stop_cleanly()
    assert all(m is None for m in calls["quiet"] + calls["fresh"])


async def test_a_failing_job_does_not_stop_later_runs(
    redis: aioredis.Redis, processes: list[Process], caplog: pytest.LogCaptureFixture
) -> None:
    attempts: list[int] = []

    async def flaky(missed: Missed | None) -> None:
        attempts.append(len(attempts))
        if len(attempts) <= 2:
            raise RuntimeError("boom")

    proc = process(processes, redis, "a")
    proc.scheduler.add_job("flaky", flaky, IntervalTrigger(seconds=0.05))
    with caplog.at_level(logging.ERROR, logger="bot.platform.scheduler"):
        proc.start()
        await eventually(lambda: len(attempts) >= 5, "the job keeps running after failing")
    assert proc.scheduler.is_leader
    failures = [r for r in caplog.records if r.name == "bot.platform.scheduler" and r.levelno == logging.ERROR]
    assert len(failures) == 2
    assert all(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in failures)


async def test_run_now_runs_and_records_a_job(redis: aioredis.Redis) -> None:
    now = datetime(2025, 3, 4, 12, 30, tzinfo=UTC)
    seen: list[Missed | None] = []

    async def job(missed: Missed | None) -> None:
        seen.append(missed)

    scheduler = LeaderScheduler(redis=redis, keys=KEYS, clock=lambda: now, owner="a")
    scheduler.add_job("nudged", job, CronTrigger(minute=0, timezone=UTC))
    assert await scheduler.run_now("nudged")
    assert seen == [None]
    assert await redis.hget(KEYS.scheduler("runs"), "nudged") == now.isoformat()
    with pytest.raises(KeyError):
        await scheduler.run_now("unknown")
    with pytest.raises(ValueError, match="already registered"):
        scheduler.add_job("nudged", job, CronTrigger(minute=0, timezone=UTC))


async def test_unreachable_redis_is_no_lease_and_the_loop_keeps_going(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = aioredis.Redis(port=port, socket_connect_timeout=0.2, decode_responses=True)
    scheduler = LeaderScheduler(redis=client, keys=KEYS, lease_ttl=timedelta(seconds=0.3), clock=real_clock, owner="a")
    stop = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="bot.platform.scheduler"):
        task = asyncio.get_running_loop().create_task(scheduler.run(stop))
        await eventually(
            lambda: sum("lease acquire failed" in r.getMessage() for r in caplog.records) >= 2, "two failed attempts"
        )
        stop.set()
        await task
    assert not scheduler.is_leader
    await client.aclose()


def test_plan_catch_up_counts_missed_fire_times() -> None:
    trigger = CronTrigger(minute=0, timezone=UTC)
    last = datetime(2025, 3, 4, 9, 0, tzinfo=UTC)

    nothing = plan_catch_up(trigger, last, datetime(2025, 3, 4, 9, 59, tzinfo=UTC))
    assert not nothing.run_now
    assert nothing.missed is None

    due = plan_catch_up(trigger, last, datetime(2025, 3, 4, 10, 0, 1, tzinfo=UTC))
    assert due.run_now  # due during the hand-over: a normal run, now
    assert due.missed is None

    late = plan_catch_up(trigger, last, datetime(2025, 3, 5, 9, 30, tzinfo=UTC))
    assert late.missed == Missed(datetime(2025, 3, 4, 10, tzinfo=UTC), datetime(2025, 3, 5, 9, tzinfo=UTC), 24)
    assert late.missed.note.startswith("missed 24 runs between 2025-03-04 10:00 and 2025-03-05 09:00 UTC")

    one = plan_catch_up(trigger, last, datetime(2025, 3, 4, 10, 30, tzinfo=UTC)).missed
    assert one is not None
    assert one.note == "missed 1 run at 10:00 UTC while no chatops process was leading; running once now"

    every_second = IntervalTrigger(seconds=1, start_date=last)
    capped = plan_catch_up(every_second, last, last + timedelta(days=1)).missed
    assert capped is not None
    assert capped.count == MAX_COUNTED
    assert capped.capped
    assert "at least 10,000 runs" in capped.note


def test_one_shot_triggers_are_refused(redis: aioredis.Redis) -> None:
    scheduler = LeaderScheduler(redis=redis, keys=KEYS, clock=real_clock)

    async def job(missed: Missed | None) -> None:
        return None

    with pytest.raises(TypeError, match="one-shot"):
        scheduler.add_job("once", job, DateTrigger(run_date=datetime(2025, 3, 4, tzinfo=UTC)))
