"""Signs requests exactly as Slack does (v0 HMAC-SHA256 over `v0:{timestamp}:{body}`), for tests that craft their
own."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import aiohttp
from slack_sdk.signature import SignatureVerifier


def signed_headers(
    secret: str, body: str, *, timestamp: int | None = None, content_type: str = "application/x-www-form-urlencoded"
) -> dict[str, str]:
    """The headers Slack sends with a request body."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature, "Content-Type": content_type}


def command_body(
    command: str,
    text: str,
    *,
    user_id: str = "U0DEMO",
    channel_id: str = "C0GENERAL",
    trigger_id: str = "1.2.abc",
    response_url: str = "http://127.0.0.1:9/none",
) -> str:
    """A slash command's form body."""
    return urlencode(
        {
            "token": "legacy",
            "team_id": "T0CHATOPS",
            "team_domain": "acme",
            "channel_id": channel_id,
            "channel_name": "general",
            "user_id": user_id,
            "user_name": user_id.lower(),
            "command": command,
            "text": text,
            "api_app_id": "A0CHATOPS",
            "response_url": response_url,
            "trigger_id": trigger_id,
        }
    )


async def post(url: str, body: str, headers: dict[str, str]) -> tuple[int, str]:
    """POSTs a body and returns (status, text)."""
    async with aiohttp.ClientSession() as session, session.post(url, data=body.encode(), headers=headers) as response:
        return response.status, await response.text()


def parse(text: str) -> dict:
    """The JSON answer of a command ack, or {} for an empty ack."""
    return json.loads(text) if text.strip() else {}
