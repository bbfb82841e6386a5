"""Keeping Slack in step with Redis for an incident.

Every change is first one Redis transaction on the incident and its timeline stream (the system of record); then
`sync` brings Slack up to date: it finishes the set-up (`channel.py`) and posts the timeline entries not posted
yet, in order, to the incident channel and the announce thread, then refreshes the topic, the pinned summary and
the announcement. One process syncs an incident at a time (a lock with an expiry), and the leader's tick syncs
whatever a dead process left behind, so a restart loses nothing: the next update goes to the same channel and
thread because both are in Redis.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.incidents import render
from bot.incidents.channel import IncidentChannel
from bot.incidents.model import Incident
from bot.incidents.store import IncidentStore
from bot.platform.slack_post import post_message
from bot.platform.store import stream_entries

log = logging.getLogger(__name__)

SYNC_WAITS = 100
SYNC_WAIT_SECONDS = 0.1
CHANNEL_POSTS = frozenset(
    {"update", "status", "severity", "commander", "role", "escalation", "resolved", "alert", "public", "statuspage"}
)
THREAD_POSTS = frozenset({"update", "status", "severity", "commander", "escalation", "resolved"})


class SlackSync:
    """Posts what Redis holds and Slack does not show yet, one incident at a time."""

    def __init__(
        self,
        *,
        store: IncidentStore,
        slack: AsyncWebClient,
        channel: IncidentChannel,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._slack = slack
        self._channel = channel
        self._clock = clock

    async def sync(self, inc_id: str) -> None:
        """Brings Slack up to date with Redis for one incident (see the module docstring). Whoever holds the
        lock posts; a caller that finds it held waits its turn, and the holder looks again after letting go, so
        an entry appended meanwhile is never left for the tick."""
        for _ in range(SYNC_WAITS):
            token = await self._store.lock_publisher(inc_id)
            if token is None:
                await asyncio.sleep(SYNC_WAIT_SECONDS)
                continue
            try:
                incident = await self._store.get(inc_id)
                if incident is None:
                    return
                await self._sync_locked(incident)
            finally:
                await self._store.unlock_publisher(inc_id, token)
            incident = await self._store.get(inc_id)
            if incident is None or not await self.lagging(incident):
                return
        log.warning("incident %s is still being synced by another process; the tick finishes it", inc_id)

    async def lagging(self, incident: Incident) -> bool:
        """Whether Slack is behind: the set-up is unfinished or a timeline entry is not posted yet."""
        if not incident.setup_done:
            return True
        last = stream_entries(await self._store.redis.xrevrange(self._store.k("timeline", incident.id), count=1))
        return bool(last) and last[0][0] != await self._store.published(incident.id)

    async def _sync_locked(self, incident: Incident) -> None:
        if not incident.setup_done:
            incident = await self._channel.setup(incident)
        changed = False
        while await self._publish(incident):
            changed = True
            incident = await self._store.get(incident.id) or incident
        if changed:
            await self._refresh(incident)

    async def _publish(self, incident: Incident) -> bool:
        """Posts the entries after the published cursor, in order; True if there were any."""
        entries = await self._store.timeline(incident.id, after=await self._store.published(incident.id))
        for entry in entries:
            line = render.entry_line(entry)
            if entry.kind in CHANNEL_POSTS and incident.channel_id:
                await post_message(self._slack, incident.channel_id, text=line)
            if entry.kind in THREAD_POSTS and incident.announce_ts and incident.announce_channel:
                await self._slack.chat_postMessage(
                    channel=incident.announce_channel, thread_ts=incident.announce_ts, text=f"*{incident.id}* {line}"
                )
            await self._store.mark_published(incident.id, entry.id)
        return bool(entries)

    async def _refresh(self, incident: Incident) -> None:
        now = self._clock()
        incident = await self._channel.topic(incident)
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
