"""Periodic jobs run by exactly one chatops process, under a leader lease in Redis.

Several replicas may run against one Redis, but a backup schedule or the escalation tick must run once. The
replicas compete for a lease (`Keys.scheduler("leader")`, `SET NX PX`); the holder renews it every third of its
TTL and is the only process with an APScheduler running. APScheduler 3 must never share a job store between
schedulers, so no job store lives in Redis: the leader builds a fresh `AsyncIOScheduler` with its own in-memory
store when it takes the lease, and throws it away (`shutdown(wait=False)`, which also cancels runs in flight)
the moment the lease is lost, a renewal fails, or Redis cannot be reached. A clean stop releases the lease so
another process takes over at its next try; a crash (or cancelling `run`) leaves the lease to expire.

What APScheduler cannot know is what happened while nobody led. Each completed run is recorded in a Redis hash
(`Keys.scheduler("runs")`: job name -> ISO time). On taking over, the new leader asks each job's trigger which
fire times passed since that record; if some are older than a short grace, the job runs once, right away, with a
`Missed` describing them (coalesced: a night without a leader means one catch-up, not a hundred). Fire times
inside the grace are simply due now: the job runs right away as a normal run.

The injected clock is the time of records and catch-up arithmetic; APScheduler keeps real time for timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger
from redis.exceptions import RedisError

from bot.platform.keys import Keys
from bot.platform.redis_client import RedisClient
from bot.platform.tasks import Passes

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger(__name__)

JobFunc = Callable[["Missed | None"], Awaitable[None]]

# Fire times older than this at take-over count as missed; younger ones are just due now.
MISSED_GRACE = timedelta(seconds=2)
# Counting missed fire times stops here (a per-second job after a month without a leader).
MAX_COUNTED = 10_000

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Redis unreachable, refused, or too slow: for a leader, all mean the lease can no longer be trusted.
_LEASE_ERRORS = (RedisError, OSError, TimeoutError)


def default_owner() -> str:
    """A unique lease owner: host and pid for people reading Redis, a random token for uniqueness."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"


class LeaderLease:
    """A lease in one Redis key: whoever set it (until it expires) leads; only the owner renews or releases it."""

    def __init__(self, redis: RedisClient, key: str, ttl: timedelta, owner: str | None = None) -> None:
        self.key = key
        self.ttl = ttl
        self.owner = owner or default_owner()
        self._redis = redis
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.ttl.total_seconds() * 1000))

    async def acquire(self) -> bool:
        """Takes the lease if nobody holds it."""
        return bool(await self._redis.set(self.key, self.owner, nx=True, px=self._ttl_ms))

    async def renew(self) -> bool:
        """Extends the lease by its TTL; False when it is no longer ours (expired, or taken over)."""
        return bool(await self._renew(keys=[self.key], args=[self.owner, self._ttl_ms]))

    async def release(self) -> None:
        """Gives the lease up, if it is still ours (never someone else's)."""
        await self._release(keys=[self.key], args=[self.owner])

    async def holder(self) -> str | None:
        """The owner holding the lease now, if anyone."""
        return _text(await self._redis.get(self.key))


@dataclass(frozen=True)
class Missed:
    """Fire times of a job that passed while no process led: the first, the last, and how many."""

    first: datetime
    last: datetime
    count: int
    capped: bool = False  # counting stopped at MAX_COUNTED; there were more

    @property
    def note(self) -> str:
        """One sentence for logs and Slack: what was missed, and that it runs once now."""
        first, last = self.first.astimezone(UTC), self.last.astimezone(UTC)
        with_date = first.date() != last.date()
        if self.count == 1:
            what = f"missed 1 run at {_clock_time(first, with_date=with_date)} UTC"
        else:
            many = f"at least {self.count:,}" if self.capped else f"{self.count:,}"
            what = (
                f"missed {many} runs between {_clock_time(first, with_date=with_date)}"
                f" and {_clock_time(last, with_date=with_date)} UTC"
            )
        return f"{what} while no chatops process was leading; running once now"


def _clock_time(moment: datetime, *, with_date: bool) -> str:
    time = moment.strftime("%H:%M:%S" if moment.second or moment.microsecond else "%H:%M")
    return f"{moment:%Y-%m-%d} {time}" if with_date else time


@dataclass(frozen=True)
class CatchUp:
    """What a new leader does first for one job: run it now or not, and with which `Missed`."""

    run_now: bool
    missed: Missed | None = None


def plan_catch_up(trigger: BaseTrigger, last_run: datetime, now: datetime, grace: timedelta = MISSED_GRACE) -> CatchUp:
    """The fire times `trigger` had after `last_run` up to `now`: those older than `grace` are missed."""
    missed: list[datetime] = []
    due_now = False
    previous = last_run
    for _ in range(MAX_COUNTED + 1):
        fire = trigger.get_next_fire_time(previous, previous)
        if fire is None or fire <= previous or fire > now:
            break
        if fire > now - grace:
            due_now = True
            break
        missed.append(fire)
        previous = fire
    if not missed:
        return CatchUp(run_now=due_now)
    capped = len(missed) > MAX_COUNTED
    missed = missed[:MAX_COUNTED]
    return CatchUp(run_now=True, missed=Missed(first=missed[0], last=missed[-1], count=len(missed), capped=capped))


@dataclass
class _Job:
    name: str
    func: JobFunc
    trigger: BaseTrigger
    catch_up: bool
    # Serialises this process's runs of the job (a `run_now` nudge waits for a scheduled run, and vice versa).
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class LeaderScheduler:
    """Runs registered jobs on APScheduler in whichever process holds the leader lease, and only there.

    Setting `stop` ends `run` cleanly: the scheduler stops and the lease is released at once. Cancelling the
    task running `run` is a crash: the scheduler stops but the lease stays until its TTL runs out.
    """

    def __init__(
        self,
        *,
        redis: RedisClient,
        keys: Keys,
        lease_ttl: timedelta = timedelta(seconds=15),
        clock: Callable[[], datetime],
        owner: str | None = None,
        heartbeat: Callable[[], None] | None = None,
    ) -> None:
        self.lease = LeaderLease(redis, keys.scheduler("leader"), lease_ttl, owner)
        self._heartbeat = heartbeat or (lambda: None)
        self.leading = asyncio.Event()  # set while this process leads
        self._redis = redis
        self._runs_key = keys.scheduler("runs")
        self._clock = clock
        self._period = lease_ttl / 3
        self._jobs: dict[str, _Job] = {}
        self._scheduler: AsyncIOScheduler | None = None
        self._term = 0  # bumped on every take-over and stand-down: runs planned in an older term are dropped
        self._pending_missed: dict[str, Missed] = {}
        self.ticks = Passes()  # the lease loop's ticks (acquire or renew), for callers that wait for one to pass
        self.runs: dict[str, Passes] = {}  # each job's completed runs in this process, likewise

    @property
    def is_leader(self) -> bool:
        """True while this process holds the lease and runs the jobs."""
        return self._scheduler is not None

    def add_job(self, name: str, func: JobFunc, trigger: BaseTrigger, *, catch_up: bool = True) -> None:
        """Registers a periodic job (before `run`): `func(None)` on a normal run, `func(Missed(...))` on a catch-up."""
        if isinstance(trigger, DateTrigger):
            # Every new leader would run it again; one-shot deadlines belong in a Redis sorted set, claimed once.
            raise TypeError(f"scheduled job {name!r}: a one-shot DateTrigger cannot run under a changing leader")
        if name in self._jobs:
            raise ValueError(f"a scheduled job named {name!r} is already registered")
        self._jobs[name] = _Job(name, func, trigger, catch_up)
        self.runs[name] = Passes()

    async def run_now(self, name: str) -> bool:
        """Runs a registered job here and now, whether or not this process leads; False when it raised."""
        return await self._execute(self._jobs[name], None)

    async def run(self, stop: asyncio.Event) -> None:
        """Competes for the lease and runs the jobs while leading, until `stop` is set."""
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                tick = self.ticks.begin()
                await self._tick(loop)
                self.ticks.end(tick, worked=False)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._period.total_seconds()):
                        await stop.wait()
        finally:
            # Runs on a crash (cancellation) too: this process must stop running jobs either way.
            self._stand_down("stopping", level=logging.INFO)
        with contextlib.suppress(*_LEASE_ERRORS):
            async with asyncio.timeout(self._period.total_seconds()):
                await self.lease.release()

    async def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self.is_leader:
            if await self._lease_call("acquire", self.lease.acquire):
                await self._take_over(loop)
        elif not await self._lease_call("renew", self.lease.renew):
            self._stand_down("lost the leader lease")

    async def _lease_call(self, what: str, call: Callable[[], Awaitable[bool]]) -> bool:
        """One lease operation, bounded by the renewal period; any failure reads as "not ours"."""
        try:
            async with asyncio.timeout(self._period.total_seconds()):
                ours = await call()
            self._heartbeat()  # Redis answered: the loop makes progress, leading or not
            return ours
        except _LEASE_ERRORS as error:
            log.warning("scheduler lease %s failed (%s: %s); not leading", what, type(error).__name__, error)
            return False

    async def _take_over(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            plans = await self._plan_catch_ups()
        except _LEASE_ERRORS as error:
            log.warning("scheduler could not read its run records (%s); not leading", error)
            return
        self._term += 1
        self._pending_missed = {name: plan.missed for name, plan in plans.items() if plan.missed is not None}
        # Imported on first leadership, not at start-up: APScheduler's scheduler module scans every installed
        # package's entry points when it loads.
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        scheduler = AsyncIOScheduler(
            event_loop=loop,
            timezone=UTC,
            # A run late in this process runs once (not skipped, not repeated); never two of one job at once.
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        for job in self._jobs.values():
            plan = plans.get(job.name)
            # Brought forward to now: a catch-up, or a run that fell due during the hand-over.
            options = {"next_run_time": datetime.now(UTC)} if plan is not None and plan.run_now else {}
            scheduler.add_job(
                functools.partial(self._scheduled_run, job, self._term),
                job.trigger,
                id=job.name,
                name=job.name,
                **options,
            )
        scheduler.start()
        self._scheduler = scheduler
        self.leading.set()
        log.info("scheduler leading as %s with %d job(s)", self.lease.owner, len(self._jobs))

    async def _plan_catch_ups(self) -> dict[str, CatchUp]:
        now = self._clock()
        records = await self._redis.hgetall(self._runs_key)
        recorded = {_text(name): _text(value) for name, value in records.items()}
        plans: dict[str, CatchUp] = {}
        for job in self._jobs.values():
            if not job.catch_up:
                continue
            last_run = _parse_time(recorded.get(job.name))
            if last_run is None:
                # Never run (or an unreadable record): nothing was missed; count from now on.
                await self._redis.hset(self._runs_key, job.name, now.isoformat())
                continue
            plan = plan_catch_up(job.trigger, last_run, now)
            if plan.missed is not None:
                log.warning("scheduled job %s %s", job.name, plan.missed.note)
            plans[job.name] = plan
        return plans

    def _stand_down(self, why: str, *, level: int = logging.WARNING) -> None:
        self._term += 1
        self._pending_missed = {}
        scheduler, self._scheduler = self._scheduler, None
        self.leading.clear()
        if scheduler is not None:
            scheduler.shutdown(wait=False)
            log.log(level, "scheduler no longer leading (%s); its jobs stopped", why)

    async def _scheduled_run(self, job: _Job, term: int) -> None:
        if term != self._term:
            return  # planned while this process led, but it no longer does
        await self._execute(job, self._pending_missed.pop(job.name, None))

    async def _execute(self, job: _Job, missed: Missed | None) -> bool:
        """Runs a job, logging (never raising) its failure, and records the run: a run that raised still ran."""
        async with job.lock:
            run = self.runs[job.name].begin()
            try:
                await job.func(missed)
            except Exception:
                log.exception("scheduled job %s failed", job.name)
                succeeded = False
            else:
                succeeded = True
            try:
                await self._redis.hset(self._runs_key, job.name, self._clock().isoformat())
            except (RedisError, OSError) as error:
                log.warning("could not record the run of scheduled job %s: %s", job.name, error)
            self.runs[job.name].end(run, worked=False)
            return succeeded


def _text(value: str | bytes | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        log.warning("unreadable scheduler run record %r; treating the job as never run", value)
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
