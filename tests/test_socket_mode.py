"""Socket Mode end to end: the emulator's apps.connections.open and WebSocket (hello, envelopes, acks, pings,
disconnects) against raw clients and slack_sdk's own SocketModeClient, then the bot's real web app started with
SLACK_APP_TOKEN: no HTTP endpoint, commands and buttons through the socket, and a clean shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.emulator import SlackEmulator
from bot.shell.composition import create_web_app
from bot.shell.config import parse_config
from tests.conftest import BOT_TOKEN, DEFAULT_CONFIG, make_settings, start_site
from tests.waiting import eventually

APP_TOKEN = "xapp-1-test"


@pytest.fixture
async def emu(emulator: SlackEmulator) -> SlackEmulator:
    """The conftest emulator with Socket Mode on (it accepts APP_TOKEN) and no HTTP app_url at all."""
    emulator.app_token = APP_TOKEN
    assert emulator.app_url is None
    return emulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def open_url(emu: SlackEmulator, http: aiohttp.ClientSession, token: str = APP_TOKEN) -> str:
    client = AsyncWebClient(token=BOT_TOKEN, base_url=emu.api_url, session=http)
    answer = await client.apps_connections_open(app_token=token)
    return str(answer["url"])


# -- apps.connections.open -----------------------------------------------------------------------------------------


async def test_connections_open_wants_the_app_token(emu: SlackEmulator, http: aiohttp.ClientSession) -> None:
    url = await open_url(emu, http)
    assert url.startswith(emu.origin.replace("http://", "ws://") + "/emulator/socket?ticket=")
    assert url.endswith("&app_id=A0CHATOPS")
    opened = emu.calls_to("apps.connections.open")
    assert [(c.ok, c.token_type) for c in opened] == [(True, "app")]

    for token, error in [(BOT_TOKEN, "not_allowed_token_type"), ("xapp-1-wrong", "invalid_auth")]:
        with pytest.raises(SlackApiError) as raised:
            await open_url(emu, http, token)
        assert raised.value.response["error"] == error
    app_client = AsyncWebClient(token=APP_TOKEN, base_url=emu.api_url, session=http)
    with pytest.raises(SlackApiError) as raised:
        await app_client.chat_postMessage(channel="C0GENERAL", text="not with an app token")
    assert raised.value.response["error"] == "not_allowed_token_type"
    assert emu.messages("C0GENERAL") == []


async def test_without_an_app_token_socket_mode_is_off(emulator: SlackEmulator, http: aiohttp.ClientSession) -> None:
    with pytest.raises(SlackApiError) as raised:
        await open_url(emulator, http)
    assert raised.value.response["error"] == "invalid_auth"


async def test_a_ticket_opens_one_connection(emu: SlackEmulator, http: aiohttp.ClientSession) -> None:
    url = await open_url(emu, http)
    async with http.ws_connect(url) as ws:
        await emu.wait_for_socket()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url)
        assert refused.value.status == 401
        await ws.receive_json(timeout=2)
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await http.ws_connect(url.replace("ticket=", "ticket=forged"))
    await eventually(lambda: emu.socket_connections == 0, "no Socket Mode connection left open")


# -- the wire, with a raw WebSocket client -------------------------------------------------------------------------


async def test_hello_then_a_command_envelope_and_its_ack(emu: SlackEmulator, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(await open_url(emu, http)) as ws:
        hello = await ws.receive_json(timeout=2)
        assert hello == {
            "type": "hello",
            "num_connections": 1,
            "debug_info": {"host": "applink-chatops-emulator", "build_number": 1, "approximate_connection_time": 18060},
            "connection_info": {"app_id": "A0CHATOPS"},
        }
        sending = asyncio.create_task(
            emu.send_command(command="/chatops", text="status", user_id="U0ALICE", channel_id="#general")
        )
        envelope = await ws.receive_json(timeout=2)
        assert set(envelope) == {"envelope_id", "payload", "type", "accepts_response_payload"}
        assert envelope["type"] == "slash_commands" and envelope["accepts_response_payload"] is True
        form = envelope["payload"]
        assert form["command"] == "/chatops" and form["text"] == "status" and form["user_id"] == "U0ALICE"
        assert form["channel_id"] == "C0GENERAL" and form["response_url"].startswith(f"{emu.origin}/emulator/response/")
        assert all(isinstance(value, str) for value in form.values()), "the form fields, as a JSON object of strings"
        await ws.send_json(
            {"envelope_id": envelope["envelope_id"], "payload": {"response_type": "in_channel", "text": "all green"}}
        )
        result = await sending
    assert result.status == 200 and result.error is None
    assert result.json == {"response_type": "in_channel", "text": "all green"}
    shown = [(m["user"], m["text"], m.get("ephemeral_to")) for m in emu.messages("C0GENERAL")]
    assert shown == [("U0ALICE", "/chatops status", None), ("U0BOT", "all green", None)]
    assert emu.deliveries[-1].envelope == envelope and emu.deliveries[-1].ack is not None


async def test_acks_without_payload_and_ephemeral_answers(emu: SlackEmulator, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(await open_url(emu, http)) as ws:
        await ws.receive_json(timeout=2)

        async def answer(payload: dict[str, Any] | None) -> None:
            envelope = await ws.receive_json(timeout=2)
            await ws.send_json({"envelope_id": envelope["envelope_id"]} | ({"payload": payload} if payload else {}))

        quiet, _ = await asyncio.gather(emu.send_command(text="quiet", user_id="U0BOB"), answer(None))
        assert quiet.status == 200 and quiet.body == "" and quiet.json is None
        private, _ = await asyncio.gather(
            emu.send_command(text="private", user_id="U0BOB"), answer({"text": "only you"})
        )
        assert private.json == {"text": "only you"}
    assert [(m["text"], m.get("ephemeral_to")) for m in emu.messages("C0GENERAL")] == [("only you", "U0BOB")]


async def test_no_ack_is_a_timeout_and_the_user_sees_the_failure(
    emu: SlackEmulator, http: aiohttp.ClientSession
) -> None:
    emu.ack_timeout = 0.2
    seen: list[dict[str, Any]] = []
    emu.state.subscribe(seen.append)
    async with http.ws_connect(await open_url(emu, http)) as ws:
        await ws.receive_json(timeout=2)
        result = await emu.send_command(text="slow", user_id="U0BOB")
        assert (result.status, result.error) == (0, "operation_timeout")
        assert emu.deliveries[-1].ack is None and emu.deliveries[-1].error == "operation_timeout"
        late = await ws.receive_json(timeout=1)
        await ws.send_json({"envelope_id": late["envelope_id"], "payload": {"text": "too late"}})
    assert [e["text"] for e in seen if e["type"] == "command_error"] == [
        '/chatops failed with the error "operation_timeout"'
    ]
    assert emu.messages("C0GENERAL") == []


async def test_interactive_and_events_envelopes(emu: SlackEmulator, http: aiohttp.ClientSession) -> None:
    message = emu.state.post(
        emu.workspace.channel("C0GENERAL"),
        user="U0BOT",
        text="pick",
        blocks=[
            {
                "type": "actions",
                "block_id": "b",
                "elements": [
                    {"type": "button", "action_id": "go", "text": {"type": "plain_text", "text": "Go"}, "value": "1"}
                ],
            }
        ],
    )
    async with http.ws_connect(await open_url(emu, http)) as ws:
        await ws.receive_json(timeout=2)

        async def ack() -> dict[str, Any]:
            envelope = await ws.receive_json(timeout=2)
            await ws.send_json({"envelope_id": envelope["envelope_id"]})
            return envelope

        click, clicked = await asyncio.gather(
            emu.send_block_action(channel="C0GENERAL", message_ts=message["ts"], action_id="go", user_id="U0ALICE"),
            ack(),
        )
        assert click.status == 200
        assert clicked["type"] == "interactive" and clicked["accepts_response_payload"] is False
        assert clicked["payload"]["type"] == "block_actions" and clicked["payload"]["actions"][0]["value"] == "1"
        assert "retry_attempt" not in clicked

        event, delivered = await asyncio.gather(emu.send_event({"type": "app_mention", "text": "<@U0BOT> hi"}), ack())
        assert event.status == 200
        assert delivered["type"] == "events_api" and delivered["accepts_response_payload"] is False
        assert (delivered["retry_attempt"], delivered["retry_reason"]) == (0, "")
        assert (
            delivered["payload"]["type"] == "event_callback" and delivered["payload"]["event"]["type"] == "app_mention"
        )

        _retried, resent = await asyncio.gather(emu.send_command(text="again", retry_num=1), ack())
        assert (resent["retry_attempt"], resent["retry_reason"]) == (1, "timeout")


async def test_page_and_state_count_a_socket_as_connected(emu: SlackEmulator, http: aiohttp.ClientSession) -> None:
    assert not emu.app_connected
    async with http.ws_connect(await open_url(emu, http)) as ws:
        await emu.wait_for_socket()
        assert emu.app_connected
        await ws.receive_json(timeout=2)
    await eventually(lambda: not emu.app_connected, "the app to disconnect")


async def test_emulator_shutdown_closes_the_sockets(redis_url: str, http: aiohttp.ClientSession) -> None:
    emu = SlackEmulator(signing_secret="s", bot_token=BOT_TOKEN, app_token=APP_TOKEN)
    runner, emu.origin = await start_site(emu.make_app(page=False))
    ws = await http.ws_connect(await open_url(emu, http))
    await ws.receive_json(timeout=2)
    await runner.cleanup()
    closing = await ws.receive(timeout=2)
    assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == aiohttp.WSCloseCode.GOING_AWAY
    await ws.close()
    assert emu.socket_connections == 0


# -- slack_sdk's own client ----------------------------------------------------------------------------------------


async def sdk_client(emu: SlackEmulator, http: aiohttp.ClientSession, ping_interval: float) -> SocketModeClient:
    web_client = AsyncWebClient(token=BOT_TOKEN, base_url=emu.api_url, session=http)
    client = SocketModeClient(app_token=APP_TOKEN, web_client=web_client, ping_interval=ping_interval)

    async def handle(client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
        await client.send_socket_mode_response(
            SocketModeResponse(envelope_id=req.envelope_id, payload={"text": f"got {req.type}"})
        )

    client.socket_mode_request_listeners.append(handle)
    return client


async def test_slack_sdk_client_stays_connected_through_pings(emu: SlackEmulator, http: aiohttp.ClientSession) -> None:
    emu.socket_ping_interval = 0.2  # the emulator pings too; slack_sdk answers with pongs itself (autoping off)
    client = await sdk_client(emu, http, ping_interval=0.2)
    try:
        await client.connect()
        await emu.wait_for_socket()
        rounds: set[float] = set()

        def pinged() -> bool:
            if client.last_ping_pong_time is not None:
                rounds.add(client.last_ping_pong_time)
            return len(rounds) >= 3

        await eventually(pinged, "three ping/pong rounds on the connection")
        assert await client.is_connected()
        assert client.last_ping_pong_time is not None, "the emulator answers slack_sdk's pings with its data"
        assert len(emu.calls_to("apps.connections.open")) == 1, "no reconnection"
        result = await emu.send_command(text="ping")
        assert result.json == {"text": "got slash_commands"}
    finally:
        await client.close()
    await eventually(lambda: emu.socket_connections == 0, "no Socket Mode connection left open")


async def test_disconnect_makes_the_client_reconnect(emu: SlackEmulator, http: aiohttp.ClientSession) -> None:
    client = await sdk_client(emu, http, ping_interval=5)
    try:
        await client.connect()
        await emu.wait_for_socket()
        await emu.disconnect_sockets("refresh_requested")
        await eventually(
            lambda: len(emu.calls_to("apps.connections.open")) == 2 and emu.socket_connections == 1,
            "a second apps.connections.open and one live connection",
        )
        result = await emu.send_command(text="after refresh")
        assert result.json == {"text": "got slash_commands"}
    finally:
        await client.close()
    await eventually(lambda: emu.socket_connections == 0, "no Socket Mode connection left open")


# -- the bot in Socket Mode ----------------------------------------------------------------------------------------


def _header(emu: SlackEmulator, ts: str) -> str:
    message = emu.find_message("C0GENERAL", ts) or {}
    return str(((message.get("blocks") or [{}])[0].get("text") or {}).get("text"))


async def test_bot_runs_in_socket_mode(
    emu: SlackEmulator, redis_url: str, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = make_settings(
        api_url=emu.api_url, redis_url=redis_url, signing_secret=emu.signing_secret, SLACK_APP_TOKEN=APP_TOKEN
    )
    assert settings.socket_mode
    app = create_web_app(settings, parse_config(DEFAULT_CONFIG, "test.yaml"))
    runner, origin = await start_site(app)
    try:
        async with http.post(f"{origin}/slack/events", data="command=%2Fchatops&text=help") as response:
            assert response.status in {404, 405}, "no HTTP endpoint for Slack in Socket Mode"
        async with http.get(f"{origin}/healthz") as response:
            assert response.status == 200

        await emu.wait_for_socket()
        opened = emu.calls_to("apps.connections.open")
        assert [(c.ok, c.token_type) for c in opened] == [(True, "app")], "the bot connected with its app token"

        help_answer = await emu.send_command(command="/chatops", text="help", user_id="U0DEMO", channel_id="C0GENERAL")
        assert help_answer.status == 200 and help_answer.error is None
        assert help_answer.json is not None and "/deploy" in help_answer.json["text"]
        assert emu.deliveries[-1].envelope["type"] == "slash_commands"
        help_message = [m for m in emu.messages("C0GENERAL") if m.get("ephemeral_to") == "U0DEMO"][-1]
        assert _header(emu, help_message["ts"]) == "chatops: what you can ask"

        whoami = await emu.send_command(command="/chatops", text="whoami", user_id="U0ALICE", channel_id="C0GENERAL")
        assert whoami.json is not None and "`deployers`" in whoami.json["text"] and "`approvers`" in whoami.json["text"]

        click = await emu.send_block_action(
            channel="C0GENERAL",
            message_ts=help_message["ts"],
            action_id="chatops.help.show",
            value="deploy",
            user_id="U0DEMO",
        )
        assert click.status == 200 and click.error is None
        assert emu.deliveries[-1].envelope["type"] == "interactive"
        await eventually(
            lambda: _header(emu, help_message["ts"]) == "/deploy", "the help message to show /deploy's page"
        )
        updated = emu.find_message("C0GENERAL", help_message["ts"])
        assert updated is not None and "/deploy &lt;service&gt; &lt;version&gt; to &lt;env&gt;" in str(
            updated["blocks"]
        )
        assert updated.get("ephemeral_to") == "U0DEMO", "replaced in place, still only for the user"
        assert [m["ts"] for m in emu.messages("C0GENERAL") if m.get("ephemeral_to") == "U0DEMO"] == [help_message["ts"]]
        assert all(d.ack is not None and d.error is None for d in emu.deliveries)
    finally:
        await runner.cleanup()

    await eventually(lambda: emu.socket_connections == 0, "no Socket Mode connection left open")
    assert len(emu.calls_to("apps.connections.open")) == 1, "closing did not make the bot reconnect"
    problems = [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith(("slack", "bot", "commands", "aiohttp"))
    ]
    assert problems == [], [r.getMessage() for r in problems]
