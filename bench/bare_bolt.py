"""The baseline for bench/ack_latency.py and bench/startup.py: a bare Bolt AsyncApp on aiohttp whose only listener
acks, and a /healthz that answers 200 (so start-up is timed the same way as `chatops serve`'s).

Run as: python bench/bare_bolt.py PORT SIGNING_SECRET API_URL BOT_TOKEN [--process-before-response]
"""

from __future__ import annotations

import sys

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_sdk.web.async_client import AsyncWebClient


def build(signing_secret: str, api_url: str, token: str, process_before_response: bool) -> web.Application:
    """An aiohttp app serving a Bolt app with one acking listener."""
    bolt = AsyncApp(
        client=AsyncWebClient(token=token, base_url=api_url),
        signing_secret=signing_secret,
        process_before_response=process_before_response,
    )

    @bolt.command("/chatops")
    async def only_ack(ack: AsyncAck) -> None:
        await ack()

    async def events(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/slack/events", events)
    app.router.add_get("/healthz", healthz)
    return app


if __name__ == "__main__":
    port, secret, api, token = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    web.run_app(
        build(secret, api, token, "--process-before-response" in sys.argv),
        host="127.0.0.1",
        port=port,
        print=None,
        access_log=None,
    )
