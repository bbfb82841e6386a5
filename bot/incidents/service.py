"""The incident service: declare, change and resolve incidents, page through the alert machinery, and keep Slack
in step with Redis.

Every change is one Redis transaction on the incident and its timeline stream (the system of record), audited,
then `sync` brings Slack up to date: it finishes the set-up (channel, invites, topic, pinned summary, announcement,
page) and posts the timeline entries not posted yet, in order, to the incident channel and the announce thread,
then refreshes the pinned summary and the announcement. One process syncs an incident at a time (a lock with an
expiry), and the leader's tick syncs whatever a dead process left behind, so a restart loses nothing: the next
update goes to the same channel and thread because both are in Redis.

The "no commander yet" deadline is a member of a Redis sorted set claimed atomically by the tick: unanswered when
`respond_within` passes, it pages the severity's target again (or, for a severity that pages nobody, calls for a
commander with @here in the announce thread).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from redis.asyncio.client import Pipeline
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.alerts.model import AlertGroup
from bot.alerts.pipeline import AlertPipeline
from bot.audit import AuditLog
from bot.blocks import escape
from bot.config import ChatopsConfig
from bot.deploys.engine import DeployEngine
from bot.deploys.model import DeployRecord
from bot.deploys.render import human_duration
from bot.errors import PermissionDenied, UserFacingError
from bot.incidents import naming, paging, render
from bot.incidents.config import STATUSES
from bot.incidents.model import (
    Incident,
    SeverityChange,
    Status,
    TimelineEntry,
    incident_id,
)
from bot.incidents.postmortem import postmortem_markdown
from bot.incidents.store import IncidentStore
from bot.oncall import escalation
from bot.oncall.service import OncallService
from bot.permissions import Permissions, UsergroupDirectory
from bot.slack_post import post_message

log = logging.getLogger(__name__)

CHANNEL_ATTEMPTS = 20
CLAIM_LEASE_SECONDS = 60
SYNC_WAITS = 100
SYNC_WAIT_SECONDS = 0.1
MAX_TITLE = 150
MAX_TEXT = 3000
CHANNEL_POSTS = frozenset({"update", "status", "severity", "commander", "role", "escalation", "resolved", "alert"})
THREAD_POSTS = frozenset({"update", "status", "severity", "commander", "escalation", "resolved"})
SYSTEM = "chatops"


class IncidentService:
    """Incidents; one per process, built by the composition root."""

    def __init__(
        self, *, config: ChatopsConfig, store: IncidentStore, slack: AsyncWebClient, audit: AuditLog,
        alerts: AlertPipeline, oncall: OncallService, deploys: DeployEngine, permissions: Permissions,
        usergroups: UsergroupDirectory, clock: Callable[[], datetime],
    ) -> None:
        self.config = config.incidents
        self._services = config.services
        self.store = store
        self._slack = slack
        self._audit = audit
        self._alerts = alerts
        self._oncall = oncall
        self._deploys = deploys
        self._permissions = permissions
        self._usergroups = usergroups
        self._clock = clock

    # -- finding and checking -----------------------------------------------------------------------------

    async def get(self, ref: str) -> Incident:
        """An incident by id (`INC-7`, `7`) or channel (`<#C…|name>`, `#inc-…`, `inc-…`, `C…`); UserFacingError if none."""
        key = ref.strip()
        found: str | None = None
        if key.startswith("<#") and key.endswith(">"):
            key = key[2:-1].split("|", 1)[0]
        if key.upper().startswith("INC-") and key[4:].isdecimal() and key[4:].isascii():
            found = incident_id(int(key[4:]))
        elif key.isdecimal() and key.isascii():
            found = incident_id(int(key))
        elif key.startswith(("C", "G")) and key.isupper():
            found = await self.store.by_channel(key)
        else:
            found = await self.store.by_name(key.lstrip("#"))
        incident = await self.store.get(found) if found else None
        if incident is None:
            raise UserFacingError(f"There is no incident `{escape(ref)}`. See `/incident list`.")
        return incident

    async def in_channel(self, channel_id: str) -> Incident | None:
        """The incident whose channel this is, if any."""
        found = await self.store.by_channel(channel_id)
        return await self.store.get(found) if found else None

    async def may_change(self, incident: Incident, user: str) -> bool:
        """Its declarer, commander, role holders and responders, the configured responders, and admins."""
        if incident.may_change(user) or await self._permissions.holds(user, "admins"):
            return True
        return user in await self._expand(self.config.responders)

    async def require_change(self, incident: Incident, user: str, *, action: str) -> None:
        """PermissionDenied (audited) unless `user` may change `incident`."""
        if await self.may_change(incident, user):
            return
        await self._audit.record(actor=user, action=f"incident.{action}", result="denied", target=incident.id,
                                 channel=incident.channel_id or "", detail="not one of the incident's people")
        raise PermissionDenied(
            f"Only {incident.id}'s declarer, commander, role holders and responders (or admins) may {action} it."
            f" Ask <@{incident.commander or incident.declared_by}> to add you with `/incident role <name> @you`.",
            action=action, role=None,
        )

    def severity(self, name: str) -> str:
        """A configured severity name (case-insensitive); UserFacingError listing them otherwise."""
        key = name.lower()
        if key not in self.config.severities:
            known = ", ".join(f"`{s}` ({escape(spec.description)})" for s, spec in self.config.severities.items())
            raise UserFacingError(f"`{escape(name)}` is not a severity. Use one of: {known}.")
        return key

    # -- declaring ----------------------------------------------------------------------------------------

    async def declare(self, severity: str, title: str, by: str, *, service: str = "", alert_ids: Sequence[str] = ()) -> Incident:
        """Records a new incident (Slack set-up follows in `sync`)."""
        severity = self.severity(severity)
        title = " ".join(title.split())
        if not title:
            raise UserFacingError("An incident needs a title: what is broken, for whom.")
        if len(title) > MAX_TITLE:
            raise UserFacingError(f"The title is {len(title)} characters; keep it within {MAX_TITLE}.")
        now = self._clock()
        number = await self.store.next_number()
        inc_id = incident_id(number)
        deadline = f"commander|{inc_id}|1"
        incident = Incident(
            id=inc_id, number=number, title=title, severity=severity, service=service.strip()[:60], declared_by=by,
            declared_at=now, channel_name=naming.channel_name(self.config.channel_prefix, now, title),
            alert_ids=tuple(dict.fromkeys(alert_ids)), severity_history=(SeverityChange(at=now, severity=severity, by=by),),
            deadline=deadline, epoch=1,
        )
        entry = TimelineEntry(at=now, kind="declared", by=by, text=f"Declared {severity.upper()}: {title}")
        await self.store.create(incident, entry, deadline_at=now + self.config.severities[severity].respond_within)
        await self._audit.record(actor=by, action="incident.declare", result="ok", target=inc_id,
                                 detail=f"{severity}: {title}" + (f" (alerts {', '.join(alert_ids)})" if alert_ids else ""))
        return incident

    # -- changing -----------------------------------------------------------------------------------------

    async def _change(
        self, incident: Incident, by: str, action: str, change: Callable[[Incident], Incident],
        entries: Callable[[Incident, Incident], Sequence[TimelineEntry]], *, detail: str = "",
        also: Callable[[Pipeline, Incident], None] | None = None,
    ) -> Incident:
        try:
            _, after = await self.store.update(incident.id, change, entries=entries, also=also)
        except KeyError:
            raise UserFacingError(f"There is no incident `{incident.id}`.") from None
        await self._audit.record(actor=by, action=f"incident.{action}", result="ok", target=incident.id,
                                 channel=after.channel_id or "", detail=detail[:2000])
        return after

    def _entry(self, kind: str, by: str, text: str, **extra: str) -> TimelineEntry:
        return TimelineEntry(at=self._clock(), kind=kind, by=by, text=text, **extra)  # type: ignore[arg-type]

    @staticmethod
    def _open(incident: Incident) -> Incident:
        if not incident.open:
            raise UserFacingError(f"{incident.id} is resolved; declare a new incident if it is back.")
        return incident

    async def update(self, incident: Incident, text: str, by: str) -> Incident:
        """A status update: timeline, incident channel, announce thread, summary."""
        text = _text(text, "update")
        return await self._change(
            incident, by, "update", lambda i: self._open(i).model_copy(update={"last_update": text}),
            lambda _b, _a: [self._entry("update", by, text)], detail=text,
        )

    async def note(self, incident: Incident, text: str, by: str, *, author: str = "", source_ts: str = "") -> Incident:
        """A note on the timeline only (also what the "Add to timeline" shortcut adds)."""
        text = _text(text, "note")
        return await self._change(
            incident, by, "note", lambda i: i, lambda _b, _a: [self._entry("note", by, text, author=author, source_ts=source_ts)],
            detail=text,
        )

    async def set_commander(self, incident: Incident, user: str, by: str) -> Incident:
        """Names the incident commander; the first one stops the "no commander" deadline."""
        now = self._clock()

        def change(i: Incident) -> Incident:
            self._open(i)
            if i.commander == user:
                raise UserFacingError(f"<@{user}> is already {i.id}'s commander.")
            return i.model_copy(update={"commander": user, "commander_at": i.commander_at or now, "deadline": None,
                                        "participants": _add(i.participants, user)})

        def entries(before: Incident, after: Incident) -> list[TimelineEntry]:
            took = f" ({human_duration(now - before.declared_at)} after the declaration)" if before.commander_at is None else ""
            was = f", taking over from <@{before.commander}>" if before.commander else ""
            return [self._entry("commander", by, f"<@{user}> is the incident commander{was}{took}")]

        after = await self._change(incident, by, "commander", change, entries, detail=user)
        if after.channel_id:
            await self._invite(after, user)
        return after

    async def set_role(self, incident: Incident, role: str, user: str, by: str) -> Incident:
        """Gives `user` a named role (scribe, comms, ops…)."""
        def change(i: Incident) -> Incident:
            self._open(i)
            return i.model_copy(update={"roles": {**i.roles, role: user}, "participants": _add(i.participants, user)})

        after = await self._change(incident, by, "role", change,
                                   lambda _b, _a: [self._entry("role", by, f"<@{user}> is {role}")], detail=f"{role}: {user}")
        if after.channel_id:
            await self._invite(after, user)
        return after

    async def set_status(self, incident: Incident, status: str, by: str) -> Incident:
        """Moves the status (resolving goes through `resolve`)."""
        if status not in STATUSES:
            raise UserFacingError(f"`{escape(status)}` is not a status. Use one of: {', '.join(STATUSES)}.")
        if status == "resolved":
            return await self.resolve(incident, "", by)

        def change(i: Incident) -> Incident:
            self._open(i)
            if i.status == status:
                raise UserFacingError(f"{i.id} is already {status}.")
            return i.model_copy(update={"status": status})

        return await self._change(incident, by, "status", change,
                                  lambda b, _a: [self._entry("status", by, f"Status {b.status} → {status}")], detail=status)

    async def set_severity(self, incident: Incident, severity: str, by: str) -> Incident:
        """Changes the severity; raising it to one that pages pages per the new severity."""
        severity = self.severity(severity)
        now = self._clock()

        def change(i: Incident) -> Incident:
            self._open(i)
            if i.severity == severity:
                raise UserFacingError(f"{i.id} is already {severity.upper()}.")
            history = (*i.severity_history, SeverityChange(at=now, severity=severity, by=by))
            return i.model_copy(update={"severity": severity, "severity_history": history})

        def entries(before: Incident, _after: Incident) -> list[TimelineEntry]:
            way = "raised" if self.config.rank(severity) < self.config.rank(before.severity) else "lowered"
            return [self._entry("severity", by, f"Severity {way}: {before.severity.upper()} → {severity.upper()}")]

        after = await self._change(incident, by, "severity", change, entries, detail=f"{incident.severity} -> {severity}")
        if self.config.rank(severity) < self.config.rank(incident.severity) and after.channel_id:
            await self.page(after, reason=f"severity raised to {severity.upper()}")
        return after

    async def resolve(self, incident: Incident, summary: str, by: str) -> Incident:
        """Resolves: records the figures, stops the deadline and the pages, announces."""
        summary = " ".join(summary.split())[:MAX_TEXT]
        now = self._clock()

        def change(i: Incident) -> Incident:
            self._open(i)
            return i.model_copy(update={"status": "resolved", "resolved_at": now, "resolved_by": by,
                                        "resolution": summary, "deadline": None})

        def entries(before: Incident, _after: Incident) -> list[TimelineEntry]:
            took = human_duration(now - before.declared_at)
            return [self._entry("resolved", by, f"Resolved after {took}" + (f": {summary}" if summary else ""))]

        def figures(pipe: Pipeline, after: Incident) -> None:
            self.store.queue_figures(pipe, _figures(after))

        after = await self._change(incident, by, "resolve", change, entries, detail=summary, also=figures)
        for group_id in after.page_ids:
            try:
                await self._alerts.resolve(group_id, by, via="incident")
            except UserFacingError:
                pass  # already resolved
        return after

    # -- paging -------------------------------------------------------------------------------------------

    async def page(self, incident: Incident, *, reason: str) -> str | None:
        """Pages the severity's target through an alert group posted in the incident channel; its id, or None
        when this severity pages nobody."""
        name = paging.policy_name(self.config, self._alerts.oncall, incident.severity)
        policy = self._alerts.oncall.escalation_policies.get(name or "")
        if name is None or policy is None or incident.channel_id is None:
            return None
        now = self._clock()
        group = escalation.start(paging.page_group(self.config, incident, channel=incident.channel_id, policy=name, reason=reason, now=now),
                                 policy, now)
        await self._alerts.store.create_group(group, post_at=None)
        await self._alerts.post(group.id)
        await self._change(
            incident, SYSTEM, "page", lambda i: i.model_copy(update={"page_ids": (*i.page_ids, group.id)}),
            lambda _b, _a: [self._entry("page", SYSTEM, f"Paging `{name}` ({reason}): alert `{group.id}`")], detail=group.id,
        )
        return group.id

    async def tick(self) -> int:
        """Handles due "no commander" deadlines and syncs incidents whose Slack side lags; returns deadlines handled."""
        handled = 0
        for member in await self.store.claim_deadlines(self._clock(), lease_seconds=CLAIM_LEASE_SECONDS):
            try:
                await self._no_commander(member)
                handled += 1
            except Exception:
                log.exception("incident deadline %s failed; it comes due again in %ss", member, CLAIM_LEASE_SECONDS)
        for incident in await self.store.many(await self.store.open_ids()):
            try:
                if await self._lagging(incident):
                    await self.sync(incident.id)
            except Exception:
                log.exception("could not sync incident %s; the next tick tries again", incident.id)
        return handled

    async def _no_commander(self, member: str) -> None:
        _, inc_id, _epoch = (member.split("|") + ["", ""])[:3]
        incident = await self.store.get(inc_id)
        if incident is None or not incident.open or incident.commander or incident.deadline != member:
            await self.store.drop_deadline(member)
            return
        within = self.config.severities[incident.severity].respond_within

        def change(i: Incident) -> Incident:
            if i.deadline != member:
                raise UserFacingError("stale")
            return i.model_copy(update={"deadline": None})

        try:
            after = await self._change(
                incident, SYSTEM, "escalate", change,
                lambda _b, _a: [self._entry("escalation", SYSTEM, f"<!here> No commander {human_duration(within)} after the declaration"
                                                                  f" ({incident.severity.upper()} needs one within {human_duration(within)}): escalating."
                                                                  " Take it with `/incident commander @you`.")],
            )
        except UserFacingError:
            await self.store.drop_deadline(member)
            return
        await self.page(after, reason=f"no commander after {human_duration(within)}")
        await self.sync(after.id)

    # -- Slack --------------------------------------------------------------------------------------------

    async def sync(self, inc_id: str) -> None:
        """Brings Slack up to date with Redis for one incident (see the module docstring). Whoever holds the
        lock posts; a caller that finds it held waits its turn, and the holder looks again after letting go, so
        an entry appended meanwhile is never left for the tick."""
        for _ in range(SYNC_WAITS):
            token = await self.store.lock_publisher(inc_id)
            if token is None:
                await asyncio.sleep(SYNC_WAIT_SECONDS)
                continue
            try:
                incident = await self.store.get(inc_id)
                if incident is None:
                    return
                await self._sync_locked(incident)
            finally:
                await self.store.unlock_publisher(inc_id, token)
            incident = await self.store.get(inc_id)
            if incident is None or not await self._lagging(incident):
                return
        log.warning("incident %s is still being synced by another process; the tick finishes it", inc_id)

    async def _sync_locked(self, incident: Incident) -> None:
        if not incident.setup_done:
            incident = await self._setup(incident)
        changed = False
        while await self._publish(incident):
            changed = True
            incident = await self.store.get(incident.id) or incident
        if changed:
            await self._refresh(incident)

    async def _lagging(self, incident: Incident) -> bool:
        if not incident.setup_done:
            return True
        last = await self.store.redis.xrevrange(self.store.k("timeline", incident.id), count=1)
        return bool(last) and str(last[0][0]) != await self.store.published(incident.id)

    async def _set(self, incident: Incident, **fields: object) -> Incident:
        _, after = await self.store.update(incident.id, lambda i: i.model_copy(update=fields))
        return after

    async def _setup(self, incident: Incident) -> Incident:
        if incident.channel_id is None:
            incident = await self._create_channel(incident)
        people = await self._invitees(incident)
        invited = [user for user in people if await self._invite(incident, user)]
        incident = await self._set(incident, participants=_add(incident.participants, *people))
        if invited:
            log.info("invited %s to %s", ", ".join(invited), incident.channel_name)
        await self._topic(incident)
        now = self._clock()
        if incident.summary_ts is None:
            text, blocks = render.summary_message(incident, now=now)
            posted = await post_message(self._slack, incident.channel_id or "", text=text, blocks=blocks)
            try:
                await self._slack.pins_add(channel=posted["channel"], timestamp=posted["ts"])
            except SlackApiError as error:
                log.warning("could not pin the summary of %s: %s", incident.id, error.response.get("error"))
            incident = await self._set(incident, summary_ts=posted["ts"])
        if incident.announce_ts is None:
            text, blocks = render.announce_message(incident, now=now)
            posted = await post_message(self._slack, self.config.announce_channel, text=text, blocks=blocks)
            incident = await self._set(incident, announce_channel=posted["channel"], announce_ts=posted["ts"])
        if not incident.page_ids:
            await self.page(incident, reason=f"{incident.severity.upper()} declared")
            incident = await self.store.get(incident.id) or incident
        for group_id in incident.alert_ids:
            await self._alert_thread(group_id, f":rotating_light: <@{incident.declared_by}> declared {incident.id} from this alert: <#{incident.channel_id}>")
        return await self._set(incident, setup_done=True)

    async def _create_channel(self, incident: Incident) -> Incident:
        base = incident.channel_name
        for attempt in range(CHANNEL_ATTEMPTS):
            name = naming.candidate(base, attempt)
            try:
                created = await self._slack.conversations_create(name=name)
            except SlackApiError as error:
                if error.response.get("error") == "name_taken":
                    continue
                raise
            channel = created["channel"]
            return await self._set(incident, channel_id=str(channel["id"]), channel_name=str(channel["name"]))
        raise UserFacingError(f"Slack refused {CHANNEL_ATTEMPTS} channel names like `{base}`; rename old ones.")

    async def _invitees(self, incident: Incident) -> list[str]:
        people = [incident.declared_by]
        people += await self._on_call(incident.severity)
        people += sorted(await self._expand(self.config.responders))
        if incident.commander:
            people.append(incident.commander)
        return list(dict.fromkeys(people))

    async def _on_call(self, severity: str) -> list[str]:
        """Who is on call now for the rotations the severity pages first."""
        target = self.config.severities[severity].page
        if target is None:
            return []
        policy = self._alerts.oncall.escalation_policies.get(paging.policy_name(self.config, self._alerts.oncall, severity) or "")
        rotations = [target] if target in self._oncall.config.rotations else [
            step.notify for step in (policy.steps if policy else ()) if step.target_kind == "rotation" and step.after == timedelta(0)
        ]
        found = []
        for rotation in rotations:
            try:
                found.append((await self._oncall.now(rotation)).member)
            except UserFacingError as error:
                log.warning("nobody to invite from %s: %s", rotation, error.message)
        return found

    async def _expand(self, members: Sequence[str]) -> set[str]:
        users: set[str] = set()
        for member in members:
            if member.startswith(("@", "S")):
                users |= await self._usergroups.members(member)
            else:
                users.add(member)
        return users

    async def _invite(self, incident: Incident, user: str) -> bool:
        try:
            await self._slack.conversations_invite(channel=incident.channel_id or "", users=user)
            return True
        except SlackApiError as error:
            if error.response.get("error") not in ("already_in_channel", "cant_invite_self"):
                log.warning("could not invite %s to %s: %s", user, incident.channel_name, error.response.get("error"))
            return False

    async def _topic(self, incident: Incident) -> Incident:
        topic = render.topic(incident)
        if topic == incident.topic or not incident.channel_id:
            return incident
        try:
            await self._slack.conversations_setTopic(channel=incident.channel_id, topic=topic)
        except SlackApiError as error:
            log.warning("could not set the topic of %s: %s", incident.channel_name, error.response.get("error"))
            return incident
        return await self._set(incident, topic=topic)

    async def _publish(self, incident: Incident) -> bool:
        """Posts the entries after the published cursor, in order; True if there were any."""
        entries = await self.store.timeline(incident.id, after=await self.store.published(incident.id))
        for entry in entries:
            line = render.entry_line(entry)
            if entry.kind in CHANNEL_POSTS and incident.channel_id:
                await post_message(self._slack, incident.channel_id, text=line)
            if entry.kind in THREAD_POSTS and incident.announce_ts and incident.announce_channel:
                await self._slack.chat_postMessage(channel=incident.announce_channel, thread_ts=incident.announce_ts,
                                                   text=f"*{incident.id}* {line}")
            await self.store.mark_published(incident.id, entry.id)
        return bool(entries)

    async def _refresh(self, incident: Incident) -> None:
        now = self._clock()
        incident = await self._topic(incident)
        if incident.channel_id and incident.summary_ts:
            text, blocks = render.summary_message(incident, now=now)
            await self._update(incident.channel_id, incident.summary_ts, text, blocks)
        if incident.announce_channel and incident.announce_ts:
            text, blocks = render.announce_message(incident, now=now)
            await self._update(incident.announce_channel, incident.announce_ts, text, blocks)

    async def _update(self, channel: str, ts: str, text: str, blocks: list[dict[str, object]]) -> None:
        try:
            await self._slack.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
        except SlackApiError as error:
            log.warning("could not update %s %s: %s", channel, ts, error.response.get("error"))

    async def _alert_thread(self, group_id: str, text: str) -> None:
        group = await self._alerts.store.get_group(group_id)
        if group is None or group.message_ts is None:
            return
        try:
            await self._slack.chat_postMessage(channel=group.message_channel or group.channel, thread_ts=group.message_ts, text=text)
        except SlackApiError as error:
            log.warning("could not reply in the thread of alert %s: %s", group_id, error.response.get("error"))

    # -- reading ------------------------------------------------------------------------------------------

    async def listing(self, *, open_only: bool, limit: int = 30) -> list[Incident]:
        """Open incidents (oldest first), or the newest `limit` of all."""
        if open_only:
            found = await self.store.many(await self.store.open_ids())
            return sorted(found, key=lambda i: i.declared_at)
        return await self.store.many(await self.store.recent_ids(limit))

    async def open_lines(self) -> list[str]:
        """One line per open incident (for the on-call hand-off)."""
        now = self._clock()
        return [render.list_line(incident, now) for incident in await self.listing(open_only=True)]

    async def timeline(self, incident: Incident) -> list[TimelineEntry]:
        """The whole timeline, in order."""
        return await self.store.timeline(incident.id)

    async def postmortem(self, incident: Incident, by: str) -> str:
        """Writes the postmortem draft and uploads it to the incident channel; returns the file id."""
        now = self._clock()
        entries = await self.store.timeline(incident.id)
        groups = await self._alerts.store.groups([*incident.alert_ids, *incident.page_ids])
        ids = {group.id for group in groups}
        acks = [ack for ack in await self._alerts.store.acks() if ack.get("group") in ids]
        since = min([incident.declared_at, *(g.created_at for g in groups)])
        deploys = await self._deploys_between(since, incident.resolved_at or now)
        users = {incident.declared_by, incident.commander, incident.resolved_by, *incident.roles.values(),
                 *(e.by for e in entries), *(e.author for e in entries), *(a.get("user", "") for a in acks),
                 *(d.requested_by for d in deploys)}
        names = await self._names(u for u in users if u and u != SYSTEM)
        markdown = postmortem_markdown(incident, entries, alerts=groups, acks=acks, deploys=deploys, now=now,
                                       names=names, since=since)
        channel = incident.channel_id
        if channel is None:
            raise UserFacingError(f"{incident.id} has no channel yet; try again in a moment.")
        response = await self._slack.files_upload_v2(
            channel=channel, content=markdown, filename=f"postmortem-{incident.id.lower()}.md",
            title=f"Postmortem draft: {incident.id} {incident.title}",
            initial_comment=f":memo: Postmortem draft for {incident.id}, requested by <@{by}>.",
        )
        file_id = str((response.get("files") or [{}])[0].get("id") or response.get("file", {}).get("id", ""))
        await self._audit.record(actor=by, action="incident.postmortem", result="ok", target=incident.id, channel=channel, detail=file_id)
        return file_id

    async def _deploys_between(self, start: datetime, end: datetime) -> list[DeployRecord]:
        found: list[DeployRecord] = []
        for name, service in self._services.items():
            records = await self._deploys.store.history(name, None, list(service.environments), 200)
            found += [r for r in records if start <= r.created_at <= end]
        return found

    async def _names(self, users: object) -> dict[str, str]:
        names: dict[str, str] = {}
        for user in users:  # type: ignore[attr-defined]
            try:
                info = (await self._slack.users_info(user=user))["user"]
                names[user] = str(info.get("name") or user)
            except (SlackApiError, KeyError, TypeError):
                names[user] = user
        return names


def _add(people: tuple[str, ...], *users: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*people, *users)))


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
    return {"incident": incident.id, "severity": incident.severity, "declared_at": incident.declared_at.isoformat(),
            "seconds_to_commander": seconds(incident.commander_at), "seconds_to_resolve": seconds(incident.resolved_at),
            "commander": incident.commander or "", "resolved_by": incident.resolved_by or ""}


def durations(incident: Incident) -> str:
    """"commander after 4m, resolved after 1h 2m" for the resolve reply."""
    parts = []
    if incident.commander_at:
        parts.append(f"commander after {human_duration(incident.commander_at - incident.declared_at)}")
    else:
        parts.append("no commander was named")
    if incident.resolved_at:
        parts.append(f"resolved after {human_duration(incident.resolved_at - incident.declared_at)}")
    return ", ".join(parts)


def page_acks(groups: Sequence[AlertGroup]) -> str:
    """Who acknowledged the incident's pages, for replies."""
    return ", ".join(f"`{g.id}` by <@{g.acked_by}>" for g in groups if g.acked_by) or "not acknowledged"


__all__ = ["IncidentService", "Status", "durations", "page_acks"]
