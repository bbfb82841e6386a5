"""Posting the way every service needs it: to a channel (joining a public channel the bot is not in yet), or to a
person as a direct message."""

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


async def direct_message(slack: AsyncWebClient, user: str, **message: object) -> dict[str, str]:
    """Opens (or finds) the bot's DM with `user`, posts there, and returns the message's channel id and ts."""
    opened = await slack.conversations_open(users=user)
    response = await slack.chat_postMessage(channel=opened["channel"]["id"], **message)  # type: ignore[arg-type]
    return {"channel": str(response["channel"]), "ts": str(response["ts"])}
