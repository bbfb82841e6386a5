"""Changes people make to an open incident: status updates and notes, the commander and other roles, the status,
the severity, and resolving it. Each is checked, then recorded (with its timeline entries) in one Redis
transaction and audited; Slack catches up in `sync`. A public update, and any status, severity or resolution of
an incident made public, also queues its Statuspage update in that transaction (`public.py`).
Raising the severity to one that pages pages again, and resolving stops the "no commander" deadline, resolves the
incident's pages and records its figures."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime

from bot.alerts.pipeline import AlertPipeline
from bot.incidents.channel import IncidentChannel
from bot.incidents.config import STATUSES, IncidentsSection
from bot.incidents.model import Incident, SeverityChange, TimelineEntry, TimelineKind, add_people
from bot.incidents.pager import IncidentPager
from bot.incidents.public import PublicUpdates, public_title
from bot.incidents.recorder import ChangeRecorder
from bot.incidents.store import IncidentStore
from bot.platform.errors import UserFacingError
from bot.platform.store import Pipe
from bot.text.blocks import external_text
from bot.text.humanize import duration as human_duration

MAX_TEXT = 3000


class IncidentChanges:
    """The changes `/incident` and the "Add to timeline" shortcut make; one per `IncidentService`."""

    def __init__(
        self,
        *,
        config: IncidentsSection,
        store: IncidentStore,
        recorder: ChangeRecorder,
        pager: IncidentPager,
        channel: IncidentChannel,
        alerts: AlertPipeline,
        clock: Callable[[], datetime],
        public: PublicUpdates | None = None,
    ) -> None:
        self._config = config
        self._store = store
        self._recorder = recorder
        self._pager = pager
        self._channel = channel
        self._alerts = alerts
        self._clock = clock
        self._public = public

    def _queue_public(self, pipe: Pipe, after: Incident, body: str = "") -> None:
        """Queues the Statuspage update of an incident made public (nothing without Statuspage or if not public)."""
        if self._public is not None:
            self._public.queue(pipe, after, body)

    def _entry(self, kind: TimelineKind, by: str, text: str, *, author: str = "", source_ts: str = "") -> TimelineEntry:
        return self._recorder.entry(kind, by, text, author=author, source_ts=source_ts)

    async def update(self, incident: Incident, text: str, by: str) -> Incident:
        """A status update: timeline, incident channel, announce thread, summary."""
        text = _text(text, "update")
        return await self._recorder.apply(
            incident,
            by,
            "update",
            lambda i: _open(i).model_copy(update={"last_update": text}),
            lambda _b, _a: [self._entry("update", by, text)],
            detail=text,
        )

    async def note(self, incident: Incident, text: str, by: str, *, author: str = "", source_ts: str = "") -> Incident:
        """A note on the timeline only (also what the "Add to timeline" shortcut adds)."""
        text = _text(text, "note")
        return await self._recorder.apply(
            incident,
            by,
            "note",
            lambda i: i,
            lambda _b, _a: [self._entry("note", by, text, author=author, source_ts=source_ts)],
            detail=text,
        )

    async def public(self, incident: Incident, text: str, by: str) -> Incident:
        """A public update: the only text that leaves chatops (Statuspage, the public status page). The first one
        makes the incident public; its first sentence becomes the public title."""
        text = _text(text, "public update")

        def change(i: Incident) -> Incident:
            _open(i)
            return i if i.public_title else i.model_copy(update={"public_title": public_title(text)})

        return await self._recorder.apply(
            incident,
            by,
            "public",
            change,
            lambda _b, _a: [self._entry("public", by, text)],
            detail=text,
            also=lambda pipe, after: self._queue_public(pipe, after, text),
        )

    async def set_commander(self, incident: Incident, user: str, by: str) -> Incident:
        """Names the incident commander; the first one stops the "no commander" deadline."""
        now = self._clock()

        def change(i: Incident) -> Incident:
            _open(i)
            if i.commander == user:
                raise UserFacingError(f"<@{user}> is already {i.id}'s commander.")
            return i.model_copy(
                update={
                    "commander": user,
                    "commander_at": i.commander_at or now,
                    "deadline": None,
                    "participants": add_people(i.participants, user),
                }
            )

        def entries(before: Incident, after: Incident) -> list[TimelineEntry]:
            took = (
                f" ({human_duration(now - before.declared_at)} after the declaration)"
                if before.commander_at is None
                else ""
            )
            was = f", taking over from <@{before.commander}>" if before.commander else ""
            return [self._entry("commander", by, f"<@{user}> is the incident commander{was}{took}")]

        after = await self._recorder.apply(incident, by, "commander", change, entries, detail=user)
        if after.channel_id:
            await self._channel.invite(after, user)
        return after

    async def set_role(self, incident: Incident, role: str, user: str, by: str) -> Incident:
        """Gives `user` a named role (scribe, comms, ops…)."""

        def change(i: Incident) -> Incident:
            _open(i)
            return i.model_copy(
                update={"roles": {**i.roles, role: user}, "participants": add_people(i.participants, user)}
            )

        after = await self._recorder.apply(
            incident,
            by,
            "role",
            change,
            lambda _b, _a: [self._entry("role", by, f"<@{user}> is {role}")],
            detail=f"{role}: {user}",
        )
        if after.channel_id:
            await self._channel.invite(after, user)
        return after

    async def set_status(self, incident: Incident, status: str, by: str) -> Incident:
        """Moves the status (resolving goes through `resolve`)."""
        if status not in STATUSES:
            raise UserFacingError(f"`{external_text(status)}` is not a status. Use one of: {', '.join(STATUSES)}.")
        if status == "resolved":
            return await self.resolve(incident, "", by)

        def change(i: Incident) -> Incident:
            _open(i)
            if i.status == status:
                raise UserFacingError(f"{i.id} is already {status}.")
            return i.model_copy(update={"status": status})

        return await self._recorder.apply(
            incident,
            by,
            "status",
            change,
            lambda b, _a: [self._entry("status", by, f"Status {b.status} → {status}")],
            detail=status,
            also=self._queue_public,
        )

    async def set_severity(self, incident: Incident, severity: str, by: str) -> Incident:
        """Changes the severity; raising it to one that pages pages per the new severity."""
        severity = checked_severity(self._config, severity)
        now = self._clock()

        def change(i: Incident) -> Incident:
            _open(i)
            if i.severity == severity:
                raise UserFacingError(f"{i.id} is already {severity.upper()}.")
            history = (*i.severity_history, SeverityChange(at=now, severity=severity, by=by))
            return i.model_copy(update={"severity": severity, "severity_history": history})

        def entries(before: Incident, _after: Incident) -> list[TimelineEntry]:
            way = "raised" if self._config.rank(severity) < self._config.rank(before.severity) else "lowered"
            return [self._entry("severity", by, f"Severity {way}: {before.severity.upper()} → {severity.upper()}")]

        after = await self._recorder.apply(
            incident,
            by,
            "severity",
            change,
            entries,
            detail=f"{incident.severity} -> {severity}",
            also=self._queue_public,
        )
        if self._config.rank(severity) < self._config.rank(incident.severity) and after.channel_id:
            await self._pager.page(after, reason=f"severity raised to {severity.upper()}")
        return after

    async def resolve(self, incident: Incident, summary: str, by: str) -> Incident:
        """Resolves: records the figures, stops the deadline and the pages, announces."""
        summary = " ".join(summary.split())[:MAX_TEXT]
        now = self._clock()

        def change(i: Incident) -> Incident:
            _open(i)
            return i.model_copy(
                update={
                    "status": "resolved",
                    "resolved_at": now,
                    "resolved_by": by,
                    "resolution": summary,
                    "deadline": None,
                }
            )

        def entries(before: Incident, _after: Incident) -> list[TimelineEntry]:
            took = human_duration(now - before.declared_at)
            return [self._entry("resolved", by, f"Resolved after {took}" + (f": {summary}" if summary else ""))]

        def figures(pipe: Pipe, after: Incident) -> None:
            self._store.queue_figures(pipe, _figures(after))
            self._queue_public(pipe, after)  # resolved: components back to operational

        after = await self._recorder.apply(incident, by, "resolve", change, entries, detail=summary, also=figures)
        for group_id in after.page_ids:
            with contextlib.suppress(UserFacingError):  # already resolved
                await self._alerts.resolve(group_id, by, via="incident")
        return after


def checked_severity(config: IncidentsSection, name: str) -> str:
    """A configured severity name (case-insensitive); UserFacingError listing them otherwise."""
    key = name.lower()
    if key not in config.severities:
        known = ", ".join(f"`{s}` ({external_text(spec.description)})" for s, spec in config.severities.items())
        raise UserFacingError(f"`{external_text(name)}` is not a severity. Use one of: {known}.")
    return key


def _open(incident: Incident) -> Incident:
    if not incident.open:
        raise UserFacingError(f"{incident.id} is resolved; declare a new incident if it is back.")
    return incident


def _text(text: str, what: str) -> str:
    text = text.strip()
    if not text:
        raise UserFacingError(f"The {what} is empty: say what happened.")
    if len(text) > MAX_TEXT:
        raise UserFacingError(f"The {what} is {len(text)} characters; keep it within {MAX_TEXT}.")
    return text


def _figures(incident: Incident) -> dict[str, str]:
    def seconds(since: datetime | None) -> str:
        return f"{(since - incident.declared_at).total_seconds():.3f}" if since else ""

    return {
        "incident": incident.id,
        "severity": incident.severity,
        "declared_at": incident.declared_at.isoformat(),
        "seconds_to_commander": seconds(incident.commander_at),
        "seconds_to_resolve": seconds(incident.resolved_at),
        "commander": incident.commander or "",
        "resolved_by": incident.resolved_by or "",
    }
