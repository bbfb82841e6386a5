"""Posting the way every service needs it: to a channel (joining a public channel the bot is not in yet), to a
person as a direct message, and, for what must appear exactly once (an alert's message, a page, a thread reply), as
an idempotent producer: the message carries a key in its Slack `metadata`, and a retry after a crash or an answer
that does not rule out success first looks for its own message in the channel's history (`conversations.history`
with `include_all_metadata`), or in the thread (`conversations.replies`), before posting again."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, Protocol

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.platform.slack_client import error_code

# How far around the earlier attempts a retry looks (Slack's clock and this host's differ a little, and a call may
# take up to the client's timeout), and how many history pages at most.
CLOCK_SKEW_SECONDS = 15
MAX_HISTORY_PAGES = 50


async def post_message(slack: AsyncWebClient, channel: str, **message: Any) -> dict[str, str]:
    """Posts and returns the message's channel id and ts; joins the channel first if Slack says `not_in_channel`."""
    try:
        response = await slack.chat_postMessage(channel=channel, **message)
    except SlackApiError as error:
        if error_code(error) != "not_in_channel":
            raise
        await slack.conversations_join(channel=channel)
        response = await slack.chat_postMessage(channel=channel, **message)
    return {"channel": str(response["channel"]), "ts": str(response["ts"])}


async def direct_message(slack: AsyncWebClient, user: str, **message: Any) -> dict[str, str]:
    """Opens (or finds) the bot's DM with `user`, posts there, and returns the message's channel id and ts."""
    opened = await slack.conversations_open(users=user)
    response = await slack.chat_postMessage(channel=opened["channel"]["id"], **message)
    return {"channel": str(response["channel"]), "ts": str(response["ts"])}


class Attempt(Protocol):
    """What a caller knows of earlier attempts at a post (bot/alerts/store.py `Attempt`)."""

    @property
    def first(self) -> bool: ...
    @property
    def earlier_from(self) -> datetime | None: ...
    @property
    def earlier_until(self) -> datetime | None: ...


class OncePoster:
    """Posts messages that must exist once: `post_once` and `direct_message_once` (see the module docstring).
    Keeps the channel ids it resolved (a retry must read history by id, and Slack accepts names only to post)."""

    def __init__(self, slack: AsyncWebClient, event_type: str = "chatops_message") -> None:
        self._slack = slack
        self._event_type = event_type
        self._channel_ids: dict[str, str] = {}

    async def post_once(self, channel: str, key: str, *, attempt: Attempt, **message: object) -> dict[str, str]:
        """Posts `message` tagged with `key`, unless an earlier attempt (see `attempt`) already posted it: then that
        message's channel and ts are returned."""
        if not attempt.first:
            found = await self.find(channel, key, attempt=attempt)
            if found is not None:
                return found
        metadata = {"event_type": self._event_type, "event_payload": {"key": key}}
        return await post_message(self._slack, channel, metadata=metadata, **message)

    async def direct_message_once(self, user: str, key: str, *, attempt: Attempt, **message: object) -> dict[str, str]:
        """`post_once` into the bot's DM with `user`."""
        opened = await self._slack.conversations_open(users=user)
        return await self.post_once(str(opened["channel"]["id"]), key, attempt=attempt, **message)

    async def reply_once(
        self, channel: str, thread_ts: str, key: str, *, attempt: Attempt, **message: Any
    ) -> dict[str, str]:
        """`post_once` as a reply in the thread of `thread_ts`: a later attempt first looks in that thread."""
        if not attempt.first:
            found = await self.find(channel, key, attempt=attempt, thread_ts=thread_ts)
            if found is not None:
                return found
        metadata = {"event_type": self._event_type, "event_payload": {"key": key}}
        response = await self._slack.chat_postMessage(
            channel=channel, thread_ts=thread_ts, metadata=metadata, **message
        )
        return {"channel": str(response["channel"]), "ts": str(response["ts"])}

    async def find(
        self, channel: str, key: str, *, attempt: Attempt, thread_ts: str | None = None
    ) -> dict[str, str] | None:
        """Our message tagged with `key` in `channel` (in the thread of `thread_ts` when given), posted while the
        earlier attempts ran, if there is one."""
        channel_id = await self._channel_id(channel)
        if channel_id is None:
            return None
        oldest: str | None = None  # None: not sent (as `cursor` on the first page)
        latest: str | None = None
        if attempt.earlier_from is not None:
            oldest = f"{attempt.earlier_from.timestamp() - CLOCK_SKEW_SECONDS:.6f}"
        if attempt.earlier_until is not None:
            reach = float(getattr(self._slack, "timeout", 30) or 30) + CLOCK_SKEW_SECONDS
            latest = f"{attempt.earlier_until.timestamp() + reach:.6f}"
        if thread_ts is None:
            read = functools.partial(self._slack.conversations_history, channel=channel_id)
        else:
            read = functools.partial(self._slack.conversations_replies, channel=channel_id, ts=thread_ts)
        cursor: str | None = None
        for _ in range(MAX_HISTORY_PAGES):
            try:
                page = await read(include_all_metadata=True, limit=200, cursor=cursor, oldest=oldest, latest=latest)
            except SlackApiError as error:
                if error_code(error) in ("not_in_channel", "channel_not_found", "thread_not_found"):
                    return None  # we never posted there
                raise
            for message in page.get("messages") or []:
                metadata = message.get("metadata") or {}
                payload = metadata.get("event_payload") or {}
                if metadata.get("event_type") == self._event_type and payload.get("key") == key:
                    return {"channel": channel_id, "ts": str(message["ts"])}
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if cursor is None:
                return None
        return None

    async def _channel_id(self, channel: str) -> str | None:
        """The id of a channel given as an id or as `#name` (history is read by id only)."""
        if not channel.startswith("#"):
            return channel
        name = channel[1:]
        if name in self._channel_ids:
            return self._channel_ids[name]
        cursor: str | None = None
        while True:
            page = await self._slack.conversations_list(
                types="public_channel,private_channel",
                exclude_archived=True,
                limit=1000,
                cursor=cursor,
            )
            for found in page.get("channels") or []:
                self._channel_ids[str(found["name"])] = str(found["id"])
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if name in self._channel_ids or cursor is None:
                return self._channel_ids.get(name)
