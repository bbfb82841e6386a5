"""What a command handler may send to Slack: replies through a request's response_url, an ephemeral message or a
DM to the person who asked, a modal opened from a click, the App Home view. Handlers get this object, never the
Slack client or the HTTP session (domain services post their own messages)."""

from __future__ import annotations

from typing import Any

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook import WebhookResponse
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.platform.slack_post import direct_message

RESPONSE_URL_TIMEOUT_SECONDS = 10


class Replies:
    """Answers to the person behind a Slack request; built once by the composition root."""

    def __init__(self, slack: AsyncWebClient, http: aiohttp.ClientSession) -> None:
        self._slack = slack
        self._http = http

    async def to_response_url(
        self,
        response_url: str,
        *,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        response_type: str = "ephemeral",
        replace_original: bool = False,
        delete_original: bool = False,
    ) -> WebhookResponse:
        """Sends a reply through a request's response_url (works for ephemeral messages too); Slack's answer."""
        client = AsyncWebhookClient(response_url, session=self._http, timeout=RESPONSE_URL_TIMEOUT_SECONDS)
        return await client.send(
            text=text,
            blocks=blocks,
            response_type=response_type,
            replace_original=replace_original,
            delete_original=delete_original,
        )

    async def ephemeral(
        self,
        channel: str,
        user: str,
        *,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
    ) -> None:
        """A message in `channel` only `user` sees."""
        await self._slack.chat_postEphemeral(channel=channel, user=user, text=text, blocks=blocks)

    async def direct_message(self, user: str, *, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        """A message in the bot's DM with `user`."""
        await direct_message(self._slack, user, text=text, blocks=blocks)

    async def open_view(self, trigger_id: str, view: dict[str, Any]) -> None:
        """Opens a modal in answer to the click or command that gave `trigger_id`."""
        await self._slack.views_open(trigger_id=trigger_id, view=view)

    async def publish_home(self, user_id: str, view: dict[str, Any]) -> None:
        """Publishes `user_id`'s App Home tab."""
        await self._slack.views_publish(user_id=user_id, view=view)
