"""Recording a change to an incident: the change and its timeline entries in one Redis transaction (the system of
record; Slack catches up afterwards), then the audit line. Every change to an incident goes through here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from bot.incidents.model import Incident, TimelineEntry, TimelineKind
from bot.incidents.store import IncidentStore
from bot.platform.audit import AuditLog
from bot.platform.errors import UserFacingError
from bot.platform.store import Pipe

SYSTEM = "chatops"  # who the changes chatops makes on its own are by


class ChangeRecorder:
    """Applies and audits changes to incidents; shared by everything that changes one."""

    def __init__(self, *, store: IncidentStore, audit: AuditLog, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock

    async def apply(
        self,
        incident: Incident,
        by: str,
        action: str,
        change: Callable[[Incident], Incident],
        entries: Callable[[Incident, Incident], Sequence[TimelineEntry]],
        *,
        detail: str = "",
        also: Callable[[Pipe, Incident], None] | None = None,
    ) -> Incident:
        """Applies `change` with the timeline entries `entries(before, after)` (and whatever `also` queues in the
        same transaction), audits it as `incident.<action>` and returns the incident after it."""
        try:
            _, after = await self._store.update(incident.id, change, entries=entries, also=also)
        except KeyError:
            raise UserFacingError(f"There is no incident `{incident.id}`.") from None
        await self._audit.record(
            actor=by,
            action=f"incident.{action}",
            result="ok",
            target=incident.id,
            channel=after.channel_id or "",
            detail=detail[:2000],
        )
        return after

    def entry(self, kind: TimelineKind, by: str, text: str, *, author: str = "", source_ts: str = "") -> TimelineEntry:
        """A timeline entry made now."""
        return TimelineEntry(at=self._clock(), kind=kind, by=by, text=text, author=author, source_ts=source_ts)
