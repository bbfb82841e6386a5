"""The status service: what to probe (each service environment's deploy health check, plus `status.probes`),
probing all of it concurrently within a time budget, the leader's periodic probe job that stores results and
raises an alert on a fast SLO burn, the figures `/status` shows, and (with `status_page:`) the public page's
data (`public.py`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp

from bot.alerts.pipeline import AlertPipeline
from bot.deploys.config import ServiceConfig
from bot.deploys.engine import DeployEngine
from bot.deploys.model import DeployRecord
from bot.status.config import StatusPageSection, StatusSection
from bot.status.public import PublicIncidents, PublicStatus, PublicTarget
from bot.status.slo import WINDOWS, Budget, Measured, budget, burn_summary, measure
from bot.status.store import Bucket, ProbeStore
from integrations.alerts.model import Alert, Status
from integrations.health.http import HttpHealthSettings, ProbeResult, probe
from integrations.types import format_duration

log = logging.getLogger(__name__)

# Inside the request deadline (commands/dispatch.py ACK_DEADLINE_SECONDS, 2.2 s), so /status answers in the ack.
ANSWER_BUDGET = timedelta(seconds=1.8)


@dataclass(frozen=True)
class Target:
    """Something probed: `web/production` (a service environment) or an extra probe's name."""

    name: str
    health: HttpHealthSettings
    service: str | None = None
    environment: str | None = None


@dataclass(frozen=True)
class Checked:
    """A target's probe now: `state` is up, slow, down or timeout (no answer within the budget)."""

    target: Target
    state: str
    result: ProbeResult | None

    @property
    def text(self) -> str:
        """`200 in 12ms`, `slow: 812ms > 500ms`, `connection refused`, `no answer within 1.8s`."""
        if self.result is None:
            return f"no answer within {format_duration(ANSWER_BUDGET)}"
        if self.result.ok:
            return f"{self.result.status} in {self.result.latency_ms:.0f}ms"
        return self.result.error or "failed"


def classify(result: ProbeResult | None) -> str:
    """up, slow (answered right but over max_latency), down, or timeout."""
    if result is None:
        return "timeout"
    if result.ok:
        return "up"
    if (result.error or "").startswith("slow:"):
        return "slow"
    if (result.error or "").startswith("timed out"):
        return "timeout"
    return "down"


class StatusService:
    """Probes and their history; one per process, built by the composition root."""

    def __init__(
        self,
        section: StatusSection,
        *,
        services: Mapping[str, ServiceConfig],
        status_page: StatusPageSection | None,
        store: ProbeStore,
        deploys: DeployEngine,
        alerts: AlertPipeline,
        http: aiohttp.ClientSession,
        clock: Callable[[], datetime],
        public_incidents: PublicIncidents | None = None,
    ) -> None:
        self.section = section
        self._store = store
        self._deploys = deploys
        self._alerts = alerts
        self._http = http
        self._clock = clock
        self.targets = _targets(services, section)
        self.public = (
            None
            if status_page is None
            else PublicStatus(
                section=status_page,
                store=store,
                probe_interval=section.probe_interval,
                incidents=public_incidents,
                targets=[PublicTarget(t.name, t.service or t.name) for t in self.targets],
                clock=clock,
            )
        )

    def find(self, service: str, environment: str | None = None) -> list[Target]:
        """The targets of a service (one environment, or all), or a probe by name."""
        return [
            t
            for t in self.targets
            if (t.service == service and environment in (None, t.environment))
            or (t.service is None and t.name == service and environment is None)
        ]

    async def check(
        self, targets: Sequence[Target] | None = None, budget_left: timedelta = ANSWER_BUDGET
    ) -> list[Checked]:
        """Probes `targets` (all by default) concurrently; whatever has not answered when the budget runs out is
        `timeout` (each probe also has its own timeout)."""
        chosen = list(self.targets if targets is None else targets)
        if not chosen:
            return []
        tasks = {asyncio.ensure_future(probe(self._http, _capped(t.health, budget_left))): t for t in chosen}
        done, pending = await asyncio.wait(tasks, timeout=budget_left.total_seconds())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        results = []
        for task, target in tasks.items():
            result = task.result() if task in done and not task.cancelled() else None
            results.append(Checked(target, classify(result), result))
        return results

    async def probe_job(self) -> None:
        """The leader's periodic probe: every target, stored, then the fast-burn check. A target counts from the
        first time it is live (answers right, or chatops has deployed it): until then a failure is not downtime."""
        now = self._clock()
        checked = (
            await self.check(budget_left=max(t.health.timeout for t in self.targets) + timedelta(seconds=1))
            if self.targets
            else []
        )
        live = await self._store.live_since()
        for item in checked:
            result = item.result
            detail: dict[str, object] = {"at": now.isoformat(), "state": item.state, "text": item.text}
            if item.target.name not in live and await self._goes_live(item):
                await self._store.mark_live(item.target.name, now)
                live[item.target.name] = now
            if item.target.name not in live:
                await self._store.remember(item.target.name, detail)
                continue
            await self._store.record(
                item.target.name,
                now,
                good=item.state == "up",
                latency_ms=result.latency_ms if result else 0.0,
                detail=detail,
            )
        for item in checked:
            if item.target.name in live:
                await self._burn_alert(item.target, now)

    async def live(self, target: Target) -> bool:
        """Whether `target` has been live (its probes count toward uptime and the SLO)."""
        return target.name in await self._store.live_since()

    async def _goes_live(self, item: Checked) -> bool:
        if item.state in ("up", "slow"):  # answered with the expected status
            return True
        if item.target.service is None or item.target.environment is None:
            return False
        return await self._deploys.current_version(item.target.service, item.target.environment) is not None

    async def budget(self, target: Target, now: datetime | None = None) -> Budget:
        """The SLO standing of `target` over the configured window, and the page rules' burn rates."""
        now = now or self._clock()
        slo = self.section.slo
        window = await self.uptime(target, slo.window, now, hourly=True)
        minutes = await self._store.minutes(target.name, now - max(WINDOWS), now)
        # One minute more than each window: the current minute is only partly probed, so a window of whole minutes
        # would lose coverage at every minute boundary and a burn would flap (the measure caps coverage at the window).
        minute = timedelta(minutes=1)
        recent = {span: self._measure(minutes, minute, span + minute, now, span) for span in WINDOWS}
        return budget(window, recent, target_percent=slo.target, span=slo.window)

    async def uptime(
        self, target: Target, span: timedelta, now: datetime | None = None, *, hourly: bool = False
    ) -> Measured:
        """`target`'s probes over the last `span`, with the time they cover (hour resolution beyond 6 hours)."""
        now = now or self._clock()
        if span <= timedelta(hours=6) and not hourly:
            return self._measure(
                await self._store.minutes(target.name, now - span + timedelta(minutes=1), now),
                timedelta(minutes=1),
                span,
                now,
            )
        return self._measure(
            await self._store.hours(target.name, now - span + timedelta(hours=1), now), timedelta(hours=1), span, now
        )

    def _measure(
        self, buckets: list[Bucket], size: timedelta, span: timedelta, now: datetime, window: timedelta | None = None
    ) -> Measured:
        """The buckets (of `size` each) inside the last `span` measured as a `window` (`span` by default)."""
        newest = int(now.timestamp()) // int(size.total_seconds())
        oldest = newest - max(int(span / size), 1) + 1
        inside = [bucket.counts for bucket in buckets if oldest <= bucket.tag <= newest]
        return measure(inside, bucket=size, interval=self.section.probe_interval, window=window or span)

    async def recent_minutes(self, target: Target, minutes: int = 60) -> list[Bucket]:
        """The last `minutes` minute buckets of `target`."""
        now = self._clock()
        return await self._store.minutes(target.name, now - timedelta(minutes=minutes - 1), now)

    async def running(self, service: str, environment: str) -> tuple[str | None, DeployRecord | None]:
        """The version running in an environment and the deploy that put it there."""
        return await self._deploys.running_record(service, environment)

    async def running_all(
        self,
        pairs: Sequence[tuple[str, str]],
    ) -> dict[tuple[str, str], tuple[str | None, DeployRecord | None]]:
        """`running` for many (service, environment) pairs, read together (the overview shows every one)."""
        return await self._deploys.running_records(pairs)

    async def _burn_alert(self, target: Target, now: datetime) -> None:
        standing = await self.budget(target, now)
        if not await self._store.set_burning(target.name, standing.fast_burn):
            return
        status: Status = "firing" if standing.fast_burn else "resolved"
        labels = {
            "alertname": "SLOFastBurn",
            "target": target.name,
            **({"service": target.service} if target.service else {}),
        }
        alert = Alert(
            source="chatops",
            fingerprint=f"slo-burn-{target.name.replace('/', '-')}"[:128],
            status=status,
            title=f"SLO fast burn: {target.name}",
            severity="critical",
            labels=labels,
            annotations={},
            summary=burn_summary(standing),
            starts_at=now,
            ends_at=now if status == "resolved" else None,
            links={},
        )
        await self._alerts.ingest([alert])


def _targets(services: Mapping[str, ServiceConfig], section: StatusSection) -> list[Target]:
    targets = [
        Target(f"{service}/{environment}", env.health, service, environment)
        for service, svc in services.items()
        for environment, env in svc.environments.items()
        # A gate naming {deployment_url} or sending secret headers is the deploy's own: /status has neither.
        if env.health is not None and not env.health.gate_only
    ]
    targets += [
        Target(p.name, HttpHealthSettings.model_validate(p.model_dump(exclude={"name"}))) for p in section.probes
    ]
    return targets


def _capped(health: HttpHealthSettings, budget_left: timedelta) -> HttpHealthSettings:
    """The check with its timeout no longer than the time left."""
    if health.timeout <= budget_left:
        return health
    return health.model_copy(update={"timeout": budget_left})
