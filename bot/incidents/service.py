"""The incident service, built by the composition root: declares incidents, finds them, checks who may change them,
reads them back (lists, timeline, the postmortem draft), and runs the tick. What happens to an incident after it
is declared lives next to it:

- `changes.py`: the changes people make (updates, notes, roles, status, severity, resolving), through
  `recorder.py`, which writes each change and its timeline entries in one Redis transaction and audits it;
- `sync.py`: bringing Slack up to date with Redis (the set-up in `channel.py`, then the timeline entries);
- `pager.py`: pages through the alert machinery, and the "no commander yet" deadline.

The tick (on the leader) handles due "no commander" deadlines, sends due public updates to Statuspage, and syncs every
open incident whose Slack side lags, so whatever a dead process left behind is finished.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.alerts.pipeline import AlertPipeline
from bot.deploys.engine import DeployEngine
from bot.incidents import naming, render
from bot.incidents.changes import IncidentChanges, checked_severity
from bot.incidents.channel import IncidentChannel
from bot.incidents.config import IncidentsSection
from bot.incidents.model import Incident, SeverityChange, TimelineEntry, incident_id
from bot.incidents.pager import IncidentPager
from bot.incidents.postmortem import postmortem_markdown
from bot.incidents.public import PublicUpdates
from bot.incidents.recorder import SYSTEM, ChangeRecorder
from bot.incidents.store import IncidentStore
from bot.incidents.sync import SlackSync
from bot.oncall.service import OncallService
from bot.platform.audit import AuditLog
from bot.platform.errors import PermissionDenied, UserFacingError
from bot.platform.permissions import Permissions, UsergroupDirectory
from bot.text.blocks import external_text
from integrations.statuspage.statuspage import StatuspageClient

log = logging.getLogger(__name__)

CLAIM_LEASE_SECONDS = 60
MAX_TITLE = 150


class IncidentService:
    """Incidents; one per process, built by the composition root. `changes` changes them."""

    def __init__(
        self,
        *,
        config: IncidentsSection,
        store: IncidentStore,
        slack: AsyncWebClient,
        audit: AuditLog,
        alerts: AlertPipeline,
        oncall: OncallService,
        deploys: DeployEngine,
        permissions: Permissions,
        usergroups: UsergroupDirectory,
        clock: Callable[[], datetime],
        statuspage: StatuspageClient | None = None,
    ) -> None:
        self.config = config
        self._store = store
        self._slack = slack
        self._audit = audit
        self._alerts = alerts
        self._deploys = deploys
        self._permissions = permissions
        self._usergroups = usergroups
        self._clock = clock
        recorder = ChangeRecorder(store=store, audit=audit, clock=clock)
        self._pager = IncidentPager(config=self.config, store=store, alerts=alerts, recorder=recorder, clock=clock)
        channel = IncidentChannel(
            config=self.config,
            store=store,
            slack=slack,
            alerts=alerts,
            oncall=oncall,
            usergroups=usergroups,
            pager=self._pager,
            clock=clock,
        )
        self._slack_sync = SlackSync(store=store, slack=slack, channel=channel, clock=clock)
        self.public = PublicUpdates(store=store, client=statuspage, clock=clock) if statuspage is not None else None
        self.changes = IncidentChanges(
            config=self.config,
            store=store,
            recorder=recorder,
            pager=self._pager,
            channel=channel,
            alerts=alerts,
            clock=clock,
            public=self.public,
        )

    # -- finding and checking -----------------------------------------------------------------------------

    async def get(self, ref: str) -> Incident:
        """An incident by id (`INC-7`, `7`) or channel (`<#C…|name>`, `#inc-…`, `inc-…`, `C…`); UserFacingError if
        none."""
        key = ref.strip()
        found: str | None = None
        if key.startswith("<#") and key.endswith(">"):
            key = key[2:-1].split("|", 1)[0]
        if key.upper().startswith("INC-") and key[4:].isdecimal() and key[4:].isascii():
            found = incident_id(int(key[4:]))
        elif key.isdecimal() and key.isascii():
            found = incident_id(int(key))
        elif key.startswith(("C", "G")) and key.isupper():
            found = await self._store.by_channel(key)
        else:
            found = await self._store.by_name(key.lstrip("#"))
        incident = await self._store.get(found) if found else None
        if incident is None:
            raise UserFacingError(f"There is no incident `{external_text(ref)}`. See `/incident list`.")
        return incident

    async def in_channel(self, channel_id: str) -> Incident | None:
        """The incident whose channel this is, if any."""
        found = await self._store.by_channel(channel_id)
        return await self._store.get(found) if found else None

    async def may_change(self, incident: Incident, user: str) -> bool:
        """Its declarer, commander, role holders and responders, the configured responders, and admins."""
        if incident.may_change(user) or await self._permissions.holds(user, "admins"):
            return True
        return user in await self._usergroups.expand(self.config.responders)

    async def require_change(self, incident: Incident, user: str, *, action: str) -> None:
        """PermissionDenied (audited) unless `user` may change `incident`."""
        if await self.may_change(incident, user):
            return
        await self._audit.record(
            actor=user,
            action=f"incident.{action}",
            result="denied",
            target=incident.id,
            channel=incident.channel_id or "",
            detail="not one of the incident's people",
        )
        raise PermissionDenied(
            f"Only {incident.id}'s declarer, commander, role holders and responders (or admins) may {action} it."
            f" Ask <@{incident.commander or incident.declared_by}> to add you with `/incident role <name> @you`.",
            action=action,
            role=None,
        )

    def severity(self, name: str) -> str:
        """A configured severity name (case-insensitive); UserFacingError listing them otherwise."""
        return checked_severity(self.config, name)

    # -- declaring ----------------------------------------------------------------------------------------

    async def declare(
        self, severity: str, title: str, by: str, *, service: str = "", alert_ids: Sequence[str] = ()
    ) -> Incident:
        """Records a new incident (Slack set-up follows in `sync`)."""
        severity = self.severity(severity)
        title = " ".join(title.split())
        if not title:
            raise UserFacingError("An incident needs a title: what is broken, for whom.")
        if len(title) > MAX_TITLE:
            raise UserFacingError(f"The title is {len(title)} characters; keep it within {MAX_TITLE}.")
        now = self._clock()
        number = await self._store.next_number()
        inc_id = incident_id(number)
        deadline = f"commander|{inc_id}|1"
        incident = Incident(
            id=inc_id,
            number=number,
            title=title,
            severity=severity,
            service=service.strip()[:60],
            declared_by=by,
            declared_at=now,
            channel_name=naming.channel_name(self.config.channel_prefix, now, title),
            alert_ids=tuple(dict.fromkeys(alert_ids)),
            severity_history=(SeverityChange(at=now, severity=severity, by=by),),
            deadline=deadline,
            epoch=1,
        )
        entry = TimelineEntry(at=now, kind="declared", by=by, text=f"Declared {severity.upper()}: {title}")
        await self._store.create(incident, entry, deadline_at=now + self.config.severities[severity].respond_within)
        await self._audit.record(
            actor=by,
            action="incident.declare",
            result="ok",
            target=inc_id,
            detail=f"{severity}: {title}" + (f" (alerts {', '.join(alert_ids)})" if alert_ids else ""),
        )
        return incident

    # -- Slack and the tick -------------------------------------------------------------------------------

    async def sync(self, inc_id: str) -> None:
        """Brings Slack up to date with Redis for one incident (see `sync.py`)."""
        await self._slack_sync.sync(inc_id)

    async def tick(self) -> int:
        """Handles due "no commander" deadlines and syncs incidents whose Slack side lags; returns deadlines handled."""
        handled = 0
        for member in await self._store.claim_deadlines(self._clock(), lease_seconds=CLAIM_LEASE_SECONDS):
            try:
                escalated = await self._pager.no_commander(member)
                if escalated is not None:
                    await self.sync(escalated.id)
                handled += 1
            except Exception:
                log.exception("incident deadline %s failed; it comes due again in %ss", member, CLAIM_LEASE_SECONDS)
        if self.public is not None:
            await self.public.tick()
        for incident in await self._store.many(await self._store.open_ids()):
            try:
                if await self._slack_sync.lagging(incident):
                    await self.sync(incident.id)
            except Exception:
                log.exception("could not sync incident %s; the next tick tries again", incident.id)
        return handled

    # -- reading ------------------------------------------------------------------------------------------

    async def listing(self, *, open_only: bool, limit: int = 30) -> list[Incident]:
        """Open incidents (oldest first), or the newest `limit` of all."""
        if open_only:
            found = await self._store.many(await self._store.open_ids())
            return sorted(found, key=lambda i: i.declared_at)
        return await self._store.many(await self._store.recent_ids(limit))

    async def open_lines(self) -> list[str]:
        """One line per open incident (for the on-call hand-off)."""
        now = self._clock()
        return [render.list_line(incident, now) for incident in await self.listing(open_only=True)]

    async def public_history(self, since: datetime, limit: int = 200) -> list[tuple[Incident, list[TimelineEntry]]]:
        """Incidents made public that are open or were resolved since `since`, each with its public updates only."""
        found = {i.id: i for i in await self._store.many(await self._store.open_ids())}
        found.update(
            {
                i.id: i
                for i in await self._store.many(await self._store.recent_ids(limit))
                if i.resolved_at and i.resolved_at >= since
            }
        )
        history = []
        for incident in found.values():
            if incident.public:
                entries = [e for e in await self._store.timeline(incident.id) if e.kind == "public"]
                history.append((incident, entries))
        return history

    async def timeline(self, incident: Incident) -> list[TimelineEntry]:
        """The whole timeline, in order."""
        return await self._store.timeline(incident.id)

    async def postmortem(self, incident: Incident, by: str) -> str:
        """Writes the postmortem draft and uploads it to the incident channel; returns the file id."""
        now = self._clock()
        entries = await self._store.timeline(incident.id)
        groups = await self._alerts.groups([*incident.alert_ids, *incident.page_ids])
        ids = {group.id for group in groups}
        acks = [ack for ack in await self._alerts.acks() if ack.get("group") in ids]
        since = min([incident.declared_at, *(g.created_at for g in groups)])
        deploys = await self._deploys.between(since, incident.resolved_at or now)
        users = {
            incident.declared_by,
            incident.commander,
            incident.resolved_by,
            *incident.roles.values(),
            *(e.by for e in entries),
            *(e.author for e in entries),
            *(a.get("user", "") for a in acks),
            *(d.requested_by for d in deploys),
        }
        names = await self._names(u for u in users if u and u != SYSTEM)
        markdown = postmortem_markdown(
            incident, entries, alerts=groups, acks=acks, deploys=deploys, now=now, names=names, since=since
        )
        channel = incident.channel_id
        if channel is None:
            raise UserFacingError(f"{incident.id} has no channel yet; try again in a moment.")
        response = await self._slack.files_upload_v2(
            channel=channel,
            content=markdown,
            filename=f"postmortem-{incident.id.lower()}.md",
            title=f"Postmortem draft: {incident.id} {incident.title}",
            initial_comment=f":memo: Postmortem draft for {incident.id}, requested by <@{by}>.",
        )
        uploaded: dict[str, Any] = response.get("file") or {}
        file_id = str((response.get("files") or [{}])[0].get("id") or uploaded.get("id", ""))
        await self._audit.record(
            actor=by, action="incident.postmortem", result="ok", target=incident.id, channel=channel, detail=file_id
        )
        return file_id

    async def _names(self, users: Iterable[str]) -> dict[str, str]:
        """Handles by user id; a user Slack cannot name (an error, no answer, a reply without a name) keeps the id,
        so one lookup never costs the whole draft."""
        names: dict[str, str] = {}
        for user in users:
            try:
                info = (await self._slack.users_info(user=user))["user"]
                names[user] = str(info.get("name") or user)
            except (SlackApiError, aiohttp.ClientError, TimeoutError, KeyError, TypeError, AttributeError) as error:
                log.warning("users.info failed for %s (%s); the postmortem shows the id", user, type(error).__name__)
                names[user] = user
        return names
