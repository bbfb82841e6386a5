"""Posting to a channel the way every service needs it: join a public channel the bot is not in yet, then post."""

from __future__ import annotations

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient


async def post_message(slack: AsyncWebClient, channel: str, **message: object) -> dict[str, str]:
    """Posts and returns the message's channel id and ts; joins the channel first if Slack says `not_in_channel`."""
    try:
        response = await slack.chat_postMessage(channel=channel, **message)  # type: ignore[arg-type]
    except SlackApiError as error:
        if error.response.get("error") != "not_in_channel":
            raise
        await slack.conversations_join(channel=channel)
        response = await slack.chat_postMessage(channel=channel, **message)  # type: ignore[arg-type]
    return {"channel": str(response["channel"]), "ts": str(response["ts"])}
