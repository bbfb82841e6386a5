"""The built-in public status page's data: read from Redis (probe results, day counts, the public incidents the
composition root hands over through a callback), never from Slack, so it stays up when Slack is down. The page
is computed at most once per `status_page.cache` whatever the number of readers, and kept rendered as HTML and
JSON bytes so a burst of requests costs a dictionary lookup each. Only the very first readers wait for it to be
computed: after that, the first reader past `cache` starts the next computation in the background and every
reader is answered from the last page meanwhile (stale-while-revalidate), so no request waits on Redis and the
rendering; while Redis is unreachable the last page stays up, its footer saying when it was computed. `/status`
reads the same `PageView`, so the two never disagree."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from bot.status.config import StatusPageSection
from bot.status.page import DayCount, PageView, PublicIncident, build_page, render_html
from bot.status.store import ProbeStore

log = logging.getLogger(__name__)

PublicIncidents = Callable[[datetime], Awaitable[Sequence[PublicIncident]]]
EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class Rendered:
    """One computed page: the view, its HTML and JSON bytes, and an ETag."""

    page: PageView
    html: bytes
    json: bytes
    etag: str


@dataclass(frozen=True)
class PublicTarget:
    """A probed target as the page needs it: its name (never shown) and the service an incident names it by."""

    name: str
    service: str


class PublicStatus:
    """The public page's data and its cache; one per process, built by the status service."""

    def __init__(
        self,
        *,
        section: StatusPageSection,
        store: ProbeStore,
        targets: Sequence[PublicTarget],
        probe_interval: timedelta,
        incidents: PublicIncidents | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.section = section
        self._store = store
        self._incidents = incidents
        self._clock = clock
        self._stale_after = max(3 * probe_interval, timedelta(minutes=2))
        self._members = {c.name: [t for t in targets if _covers(c.targets, t)] for c in section.components}
        self._cached: Rendered | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()
        self._refreshing: asyncio.Task[None] | None = None

    async def rendered(self) -> Rendered:
        """The page: the last one computed, and a new one computed in the background once it is `cache` old (see
        the module docstring); computed now only if there is none yet."""
        cached = self._cached
        if cached is not None:
            if time.monotonic() >= self._expires and self._refreshing is None:
                self._refreshing = asyncio.create_task(self._refresh(), name="status-page-refresh")
            return cached
        async with self._lock:
            if self._cached is None:
                await self._compute_and_keep()
            assert self._cached is not None
            return self._cached

    async def _compute_and_keep(self) -> None:
        """Computes the page and keeps it rendered for `cache` seconds."""
        page = await self.compute()
        body = page.model_dump_json().encode()
        self._cached = Rendered(page, render_html(page).encode(), body, hashlib.sha256(body).hexdigest()[:16])
        self._expires = time.monotonic() + self.section.cache.total_seconds()

    async def _refresh(self) -> None:
        """The background computation: on failure (Redis unreachable) the last page stays, and the next reader past
        `cache` seconds tries again."""
        try:
            async with self._lock:
                await self._compute_and_keep()
        except Exception as error:  # kept serving the last page; the reason is logged, never shown
            log.warning("the status page could not be refreshed (%s); serving the last one", type(error).__name__)
            self._expires = time.monotonic() + self.section.cache.total_seconds()
        finally:
            self._refreshing = None

    async def page(self) -> PageView:
        """The cached page view (what /status shows too)."""
        return (await self.rendered()).page

    async def compute(self) -> PageView:
        """The page from Redis now (no cache)."""
        now = self._clock()
        last = await self._store.last()
        since = now - timedelta(days=self.section.history_days - 1)
        probe_states: dict[str, list[str]] = {}
        days: dict[str, dict[date, DayCount]] = {}
        services: dict[str, frozenset[str]] = {}
        for name, members in self._members.items():
            services[name] = frozenset(t.service for t in members)
            probe_states[name] = [
                str(found["state"])
                for t in members
                if (found := last.get(t.name)) and self._fresh(found, now) and "state" in found
            ]
            counts: dict[date, DayCount] = {}
            for target in members:
                for bucket in await self._store.days(target.name, since, now):
                    day = EPOCH + timedelta(days=bucket.tag)
                    held = counts.get(day, DayCount(day, 0, 0))
                    counts[day] = DayCount(day, held.good + bucket.counts.good, held.total + bucket.counts.total)
            days[name] = counts
        incidents = list(await self._incidents(now)) if self._incidents is not None else []
        return build_page(
            self.section, now=now, probe_states=probe_states, services=services, days=days, incidents=incidents
        )

    def _fresh(self, found: dict[str, object], now: datetime) -> bool:
        try:
            return now - datetime.fromisoformat(str(found.get("at"))) <= self._stale_after
        except ValueError:
            return False


def _covers(names: Sequence[str], target: PublicTarget) -> bool:
    """A component's `targets` entry names a target exactly, or a service (all its environments)."""
    return any(target.name == name or target.name.startswith(f"{name}/") for name in names)
