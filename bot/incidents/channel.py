"""An incident's Slack side, set up once: its channel (a free name like the one chosen at declaration), the people
invited (declarer, who is on call for the severity, the configured responders, the commander), the topic, the
pinned summary, the announcement in the announce channel, the first page, and a note in the thread of each alert
it was declared from. Each step is recorded on the incident as it is done, so a set-up cut short by a restart is
finished later without doing a step twice."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.alerts.pipeline import AlertPipeline
from bot.incidents import naming, paging, render
from bot.incidents.config import IncidentsSection
from bot.incidents.model import Incident, add_people
from bot.incidents.pager import IncidentPager
from bot.incidents.store import IncidentStore
from bot.oncall.service import OncallService
from bot.platform.errors import UserFacingError
from bot.platform.people import PeopleDirectory
from bot.platform.permissions import UsergroupDirectory
from bot.platform.slack_post import post_message

log = logging.getLogger(__name__)

CHANNEL_ATTEMPTS = 20


class IncidentChannel:
    """Sets up an incident's channel and announcement, invites people to it and keeps its topic current."""

    def __init__(
        self,
        *,
        config: IncidentsSection,
        store: IncidentStore,
        slack: AsyncWebClient,
        alerts: AlertPipeline,
        oncall: OncallService,
        usergroups: UsergroupDirectory,
        pager: IncidentPager,
        clock: Callable[[], datetime],
    ) -> None:
        self._config = config
        self._store = store
        self._slack = slack
        self._alerts = alerts
        self._oncall = oncall
        self._usergroups = usergroups
        self._pager = pager
        self._clock = clock
        self._people = PeopleDirectory(slack)  # display names for the topic, which does not render mentions

    async def setup(self, incident: Incident) -> Incident:
        """Does the set-up steps not done yet (see the module docstring); the incident with `setup_done`."""
        if incident.channel_id is None:
            incident = await self._create_channel(incident)
        people = await self._invitees(incident)
        invited = [user for user in people if await self.invite(incident, user)]
        incident = await self._set(incident, participants=add_people(incident.participants, *people))
        if invited:
            log.info("invited %s to %s", ", ".join(invited), incident.channel_name)
        await self.topic(incident)
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
            posted = await post_message(self._slack, self._config.announce_channel, text=text, blocks=blocks)
            incident = await self._set(incident, announce_channel=posted["channel"], announce_ts=posted["ts"])
        if not incident.page_ids:
            await self._pager.page(incident, reason=f"{incident.severity.upper()} declared")
            incident = await self._store.get(incident.id) or incident
        for group_id in incident.alert_ids:
            await self._alert_thread(
                group_id,
                f":rotating_light: <@{incident.declared_by}> declared {incident.id} "
                f"from this alert: <#{incident.channel_id}>",
            )
        return await self._set(incident, setup_done=True)

    async def invite(self, incident: Incident, user: str) -> bool:
        """Invites `user` to the incident channel; False when Slack refused (already in it counts as refused)."""
        try:
            await self._slack.conversations_invite(channel=incident.channel_id or "", users=user)
            return True
        except SlackApiError as error:
            if error.response.get("error") not in ("already_in_channel", "cant_invite_self"):
                log.warning("could not invite %s to %s: %s", user, incident.channel_name, error.response.get("error"))
            return False

    async def topic(self, incident: Incident) -> Incident:
        """Sets the channel topic when it changed; the incident with the topic recorded."""
        name = await self._people.display_name(incident.commander) if incident.commander else None
        topic = render.topic(incident, name)
        if topic == incident.topic or not incident.channel_id:
            return incident
        try:
            await self._slack.conversations_setTopic(channel=incident.channel_id, topic=topic)
        except SlackApiError as error:
            log.warning("could not set the topic of %s: %s", incident.channel_name, error.response.get("error"))
            return incident
        return await self._set(incident, topic=topic)

    async def _set(self, incident: Incident, **fields: object) -> Incident:
        _, after = await self._store.update(incident.id, lambda i: i.model_copy(update=fields))
        return after

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
        people += sorted(await self._usergroups.expand(self._config.responders))
        if incident.commander:
            people.append(incident.commander)
        return list(dict.fromkeys(people))

    async def _on_call(self, severity: str) -> list[str]:
        """Who is on call now for the rotations the severity pages first."""
        target = self._config.severities[severity].page
        if target is None:
            return []
        policy = self._alerts.oncall.escalation_policies.get(
            paging.policy_name(self._config, self._alerts.oncall, severity) or ""
        )
        if isinstance(target, str) and target in self._oncall.config.rotations:
            rotations = [target]
        else:  # the policy it pages: the rotations its first steps page at once
            rotations = [
                step.notify
                for step in (policy.steps if policy else ())
                if isinstance(step.notify, str) and step.target_kind == "rotation" and step.after == timedelta(0)
            ]
        found = []
        for rotation in rotations:
            try:
                found.append((await self._oncall.now(rotation)).member)
            except UserFacingError as error:
                log.warning("nobody to invite from %s: %s", rotation, error.message)
        return found

    async def _alert_thread(self, group_id: str, text: str) -> None:
        group = await self._alerts.get(group_id)
        if group is None or group.message_ts is None:
            return
        try:
            await self._slack.chat_postMessage(
                channel=group.message_channel or group.channel, thread_ts=group.message_ts, text=text
            )
        except SlackApiError as error:
            log.warning("could not reply in the thread of alert %s: %s", group_id, error.response.get("error"))
