"""Which Slack channel a configured name (`#deploys`) is: one cached name -> ID lookup, so that every message
naming a channel can link it (`<#C…>`, which Slack shows as the channel's current name, clickable).

The whole list is read with `conversations.list` (paginated) and kept for `CACHE_SECONDS`; IDs learnt from posting
(`remember`) are kept too. A channel Slack cannot resolve, or any failure to ask, gives the plain `#name` text:
naming a channel never fails a message."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.text.blocks import channel_link

log = logging.getLogger(__name__)

CACHE_SECONDS = 300.0
MAX_PAGES = 50  # 50 pages of 1,000 channels: far more than any workspace this bot serves


class ChannelDirectory:
    """Channel IDs by name, read from Slack at most once per `ttl` seconds."""

    def __init__(
        self, slack: AsyncWebClient, *, ttl: float = CACHE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._slack = slack
        self._ttl = ttl
        self._clock = clock
        self._ids: dict[str, str] = {}
        self._read_at: float | None = None
        self._lock = asyncio.Lock()

    def remember(self, name: str, channel_id: str) -> None:
        """Keeps an ID learnt elsewhere (the answer to a post to `#name`)."""
        if name.startswith("#") and channel_id[:1] in ("C", "G"):
            self._ids[name[1:].lower()] = channel_id

    async def id_of(self, channel: str) -> str | None:
        """The ID of `#name` (or of an ID, itself); None when Slack does not know it or cannot be asked."""
        if not channel.startswith("#"):
            return channel or None
        name = channel[1:].lower()
        if name in self._ids and self._fresh():
            return self._ids[name]
        async with self._lock:  # one listing at a time, however many messages wait for it
            if not self._fresh():
                await self._read()
        return self._ids.get(name)

    async def link(self, channel: str) -> str:
        """`channel` as a message should name it: `<#C…>` when its ID is known, else the plain `#name`."""
        return channel_link(channel, await self.id_of(channel))

    def _fresh(self) -> bool:
        return self._read_at is not None and self._clock() - self._read_at < self._ttl

    async def _read(self) -> None:
        """Reads every channel Slack lists; on failure keeps what was known and tries again after `ttl`."""
        found: dict[str, str] = {}
        cursor: str | None = None
        try:
            for _ in range(MAX_PAGES):
                page = await self._slack.conversations_list(
                    types="public_channel,private_channel",
                    exclude_archived=True,
                    limit=1000,
                    cursor=cursor,
                )
                for channel in page.get("channels") or []:
                    found[str(channel["name"]).lower()] = str(channel["id"])
                cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
                if cursor is None:
                    break
        except (SlackApiError, aiohttp.ClientError, TimeoutError, KeyError, TypeError) as error:
            log.warning("could not list channels to link them (%s); naming them as plain text", type(error).__name__)
            found = {}
        self._ids.update(found)
        self._read_at = self._clock()
