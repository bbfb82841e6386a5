"""Paging for incidents, and the "no commander yet" deadline.

A page is an alert group posted in the incident channel and walking the severity's escalation policy (see
`paging.py` for which policy and the group), recorded on the incident's timeline. The deadline is a member of a
Redis sorted set claimed atomically by the tick: unanswered when `respond_within` passes, it pages the severity's
target again (or, for a severity that pages nobody, calls for a commander with @here in the announce thread).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bot.alerts import escalation
from bot.alerts.pipeline import AlertPipeline
from bot.incidents import paging
from bot.incidents.config import IncidentsSection
from bot.incidents.model import Incident
from bot.incidents.recorder import SYSTEM, ChangeRecorder
from bot.incidents.store import IncidentStore
from bot.platform.errors import UserFacingError
from bot.text.humanize import duration as human_duration


class IncidentPager:
    """Pages the people an incident's severity calls for, and escalates when nobody takes command in time."""

    def __init__(
        self,
        *,
        config: IncidentsSection,
        store: IncidentStore,
        alerts: AlertPipeline,
        recorder: ChangeRecorder,
        clock: Callable[[], datetime],
    ) -> None:
        self._config = config
        self._store = store
        self._alerts = alerts
        self._recorder = recorder
        self._clock = clock

    async def page(self, incident: Incident, *, reason: str) -> str | None:
        """Pages the severity's target through an alert group posted in the incident channel; its id, or None
        when this severity pages nobody."""
        name = paging.policy_name(self._config, self._alerts.oncall, incident.severity)
        policy = self._alerts.oncall.escalation_policies.get(name or "")
        if name is None or policy is None or incident.channel_id is None:
            return None
        now = self._clock()
        group = escalation.start(
            paging.page_group(self._config, incident, channel=incident.channel_id, policy=name, reason=reason, now=now),
            policy,
            now,
        )
        await self._alerts.open_page(group, post_at=now)
        await self._alerts.post(group.id)  # at once; if Slack fails, the alert flusher posts it when Slack is back
        await self._recorder.apply(
            incident,
            SYSTEM,
            "page",
            lambda i: i.model_copy(update={"page_ids": (*i.page_ids, group.id)}),
            lambda _b, _a: [self._recorder.entry("page", SYSTEM, f"Paging `{name}` ({reason}): alert `{group.id}`")],
            detail=group.id,
        )
        return group.id

    async def no_commander(self, member: str) -> Incident | None:
        """Handles a claimed "no commander" deadline: escalates (timeline entry with @here, then a page) and
        returns the incident for Slack to catch up; None when the deadline is stale (dropped)."""
        _, inc_id, _epoch = [*member.split("|"), "", ""][:3]
        incident = await self._store.get(inc_id)
        if incident is None or not incident.open or incident.commander or incident.deadline != member:
            await self._store.drop_deadline(member)
            return None
        within = self._config.severities[incident.severity].respond_within

        def change(i: Incident) -> Incident:
            if i.deadline != member:
                raise UserFacingError("stale")
            return i.model_copy(update={"deadline": None})

        try:
            after = await self._recorder.apply(
                incident,
                SYSTEM,
                "escalate",
                change,
                lambda _b, _a: [
                    self._recorder.entry(
                        "escalation",
                        SYSTEM,
                        f"<!here> No commander {human_duration(within)} after the declaration"
                        f" ({incident.severity.upper()} needs one within {human_duration(within)}): escalating."
                        " Take it with `/incident commander @you`.",
                    )
                ],
            )
        except UserFacingError:
            await self._store.drop_deadline(member)
            return None
        await self.page(after, reason=f"no commander after {human_duration(within)}")
        return after
