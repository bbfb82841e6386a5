"""The Slack emulator against the real slack_sdk AsyncWebClient: envelopes and error codes, ts and thread semantics,
rate limits with slack_sdk's retry handler, signed requests as a bot verifies them, response URLs, files, views,
the page's JSON and WebSocket endpoints, and the pure block validation and mrkdwn rendering."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.emulator import SlackEmulator, Workspace
from bot.emulator.mrkdwn import Names, to_html
from bot.emulator.validation import validate_blocks
from bot.emulator.workspace import User

TOKEN = "xoxb-emulator-test"
SECRET = "emulator-test-signing-secret"
TS = re.compile(r"^\d{10}\.\d{6}$")


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    """Runs `app` on 127.0.0.1 and a free port; returns the runner and the origin."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.fixture
async def emu() -> AsyncIterator[SlackEmulator]:
    emulator = SlackEmulator(signing_secret=SECRET, bot_token=TOKEN, workspace=Workspace.demo())
    runner, origin = await serve(emulator.make_app(page=True))
    emulator.origin = origin
    yield emulator
    await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def client(emu: SlackEmulator, http: aiohttp.ClientSession) -> AsyncWebClient:
    return AsyncWebClient(token=TOKEN, base_url=emu.api_url, session=http)


@dataclass
class Received:
    """One request the fake bot got."""

    headers: dict[str, str]
    body: str
    form: dict[str, str]
    payload: dict[str, Any] | None
    signature_valid: bool


Answer = Callable[[Received], Awaitable[web.StreamResponse]]


async def empty_ack(_: Received) -> web.StreamResponse:
    return web.Response()


@dataclass
class FakeBot:
    """A minimal app behind app_url: verifies Slack's signature and answers with `answer`."""

    verifier: SignatureVerifier
    requests: list[Received] = field(default_factory=list)
    answer: Answer = empty_ack

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.text()
        valid = self.verifier.is_valid(
            body=body,
            timestamp=request.headers.get("X-Slack-Request-Timestamp", ""),
            signature=request.headers.get("X-Slack-Signature", ""),
        )
        form = dict(parse_qsl(body, keep_blank_values=True)) if request.content_type.endswith("urlencoded") else {}
        payload = (
            json.loads(form["payload"])
            if "payload" in form
            else json.loads(body)
            if request.content_type == "application/json"
            else None
        )
        received = Received(dict(request.headers), body, form, payload, valid)
        self.requests.append(received)
        if not valid:
            return web.Response(status=401)
        return await self.answer(received)


@pytest.fixture
async def bot(emu: SlackEmulator) -> AsyncIterator[FakeBot]:
    fake = FakeBot(SignatureVerifier(SECRET))
    app = web.Application()
    app.router.add_post("/slack/events", fake.handle)
    runner, origin = await serve(app)
    emu.app_url = f"{origin}/slack/events"
    yield fake
    await runner.cleanup()


def events_of(emu: SlackEmulator) -> list[dict[str, Any]]:
    """Collects the emulator's page events from now on."""
    seen: list[dict[str, Any]] = []
    emu.state.subscribe(seen.append)
    return seen


async def api_error(call: Awaitable[Any]) -> dict[str, Any]:
    with pytest.raises(SlackApiError) as raised:
        await call
    return dict(raised.value.response.data)


# -- envelope, auth, argument formats ------------------------------------------------------------------------------


async def test_auth_test_answers_as_the_bot(client: AsyncWebClient, emu: SlackEmulator) -> None:
    answer = await client.auth_test()
    assert answer.data == {
        "ok": True,
        "url": f"{emu.origin}/",
        "team": "Acme",
        "user": "chatops",
        "team_id": "T0CHATOPS",
        "user_id": "U0BOT",
        "bot_id": "B0BOT",
        "is_enterprise_install": False,
    }
    assert emu.calls_to("auth.test")[0].ok


@pytest.mark.parametrize(("token", "error"), [(None, "not_authed"), ("xoxb-wrong", "invalid_auth")])
async def test_wrong_or_missing_token(
    emu: SlackEmulator, http: aiohttp.ClientSession, token: str | None, error: str
) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.post(
        f"{emu.api_url}chat.postMessage", json={"channel": "C0GENERAL", "text": "x"}, headers=headers
    ) as r:
        assert r.status == 200
        assert await r.json() == {"ok": False, "error": error}
    assert emu.messages("C0GENERAL") == []
    assert emu.calls[-1].error == error and emu.calls[-1].status == 200


async def test_unknown_method(client: AsyncWebClient) -> None:
    assert (await api_error(client.api_call("chat.frobnicate")))["error"] == "unknown_method"


async def test_form_body_query_and_token_param_are_read_like_slack(
    emu: SlackEmulator, http: aiohttp.ClientSession
) -> None:
    blocks = json.dumps([{"type": "section", "text": {"type": "mrkdwn", "text": "*form*"}}])
    async with http.post(
        f"{emu.api_url}chat.postMessage?channel=%23deploys", data={"token": TOKEN, "text": "by form", "blocks": blocks}
    ) as r:
        body = await r.json()
    assert body["ok"] and body["channel"] == "C0DEPLOYS"
    assert emu.find_message("#deploys", body["ts"])["blocks"][0]["text"]["text"] == "*form*"
    async with http.get(f"{emu.api_url}users.info", params={"token": TOKEN, "user": "U0BOB"}) as r:
        assert (await r.json())["user"]["name"] == "bob"
    assert "token" not in emu.calls_to("users.info")[0].args


# -- chat.postMessage ----------------------------------------------------------------------------------------------


async def test_post_message_by_id_name_and_user(client: AsyncWebClient, emu: SlackEmulator) -> None:
    by_id = await client.chat_postMessage(channel="C0GENERAL", text="by id")
    by_name = await client.chat_postMessage(channel="#general", text="by name")
    dm = await client.chat_postMessage(channel="U0ALICE", text="psst")
    assert by_id["channel"] == by_name["channel"] == "C0GENERAL"
    assert by_id["message"]["bot_id"] == "B0BOT" and by_id["message"]["user"] == "U0BOT"
    assert dm["channel"].startswith("D")
    assert emu.channel(dm["channel"])["is_im"] is True and emu.channel(dm["channel"])["user"] == "U0ALICE"
    assert [m["text"] for m in emu.messages("#general")] == ["by id", "by name"]
    assert emu.messages(dm["channel"])[0]["text"] == "psst"


async def test_post_message_errors(client: AsyncWebClient, emu: SlackEmulator) -> None:
    emu.workspace.add_channel("quiet", bot_member=False, members=["U0DEMO"])
    assert (await api_error(client.chat_postMessage(channel="C0NOPE", text="x")))["error"] == "channel_not_found"
    assert (await api_error(client.chat_postMessage(channel="#quiet", text="x")))["error"] == "not_in_channel"
    assert (await api_error(client.api_call("chat.postMessage", json={"channel": "C0GENERAL"})))["error"] == "no_text"
    assert (await api_error(client.chat_postMessage(channel="C0GENERAL", text="x" * 40_001)))["error"] == "msg_too_long"
    await client.chat_postMessage(channel="C0GENERAL", text="x" * 40_000)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _button(text: str = "Go", action_id: str = "go") -> dict[str, Any]:
    return {"type": "button", "text": {"type": "plain_text", "text": text}, "action_id": action_id}


@pytest.mark.parametrize(
    ("blocks", "complaint"),
    [
        ([{"type": "carousel"}], "unknown block type `carousel`"),
        ([{"text": "no type"}], "missing required field: type"),
        (["not an object"], "must be an object"),
        ({"type": "section"}, "must be an array"),
        ([_section("x")] * 51, "no more than 50 items"),
        ([_section("x" * 3001)], "must be less than 3001 characters"),
        ([{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}], "must be less than 151 characters"),
        ([{"type": "header", "text": {"type": "mrkdwn", "text": "*h*"}}], "must be plain_text"),
        ([{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}], "no more than 10 items"),
        ([{"type": "actions", "elements": [_button(action_id=f"a{i}") for i in range(26)]}], "no more than 25 items"),
        ([{"type": "actions", "elements": [_button("b" * 76)]}], "must be less than 76 characters"),
        ([{"type": "actions", "elements": [_button(action_id="a" * 256)]}], "at most 255 characters"),
        ([{"type": "section", "text": {"type": "mrkdwn", "text": ""}}], "more than 0 characters"),
        ([_section("a") | {"block_id": "same"}, _section("b") | {"block_id": "same"}], "duplicate block_id"),
    ],
)
async def test_invalid_blocks_say_what_is_wrong(
    client: AsyncWebClient, emu: SlackEmulator, blocks: Any, complaint: str
) -> None:
    error = await api_error(
        client.api_call("chat.postMessage", json={"channel": "C0GENERAL", "text": "t", "blocks": blocks})
    )
    assert error["error"] == "invalid_blocks"
    assert any(complaint in m for m in error["response_metadata"]["messages"]), error
    assert emu.messages("C0GENERAL") == []


async def test_blocks_at_the_limits_are_accepted(client: AsyncWebClient) -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "h" * 150}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "s" * 3000}, "accessory": _button("b" * 75, "a" * 255)},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 10},
        {"type": "actions", "elements": [_button(action_id=f"a{i}") for i in range(25)]},
        {
            "type": "context",
            "elements": [
                {"type": "image", "image_url": "https://x/i.png", "alt_text": "i"},
                {"type": "mrkdwn", "text": "c"},
            ],
        },
        {"type": "divider"},
        {"type": "image", "image_url": "https://x/i.png", "alt_text": "i"},
        {"type": "rich_text", "elements": []},
    ] + [{"type": "divider"}] * 42
    answer = await client.chat_postMessage(channel="C0GENERAL", text="limits", blocks=blocks)
    assert len(answer["message"]["blocks"]) == 50
    assert all(b["block_id"] for b in answer["message"]["blocks"]), "Slack gives every block a block_id"


async def test_ts_is_slack_shaped_and_strictly_increasing(client: AsyncWebClient, emu: SlackEmulator) -> None:
    before = time.time()
    answers = await asyncio.gather(*[client.chat_postMessage(channel="C0ALERTS", text=str(i)) for i in range(30)])
    after = time.time()
    stamps = [a["ts"] for a in answers]
    assert all(TS.match(ts) for ts in stamps)
    stored = [m["ts"] for m in emu.messages("C0ALERTS")]
    assert stored == sorted(stored, key=float) and len(set(stored)) == 30
    # The time of posting: between the moments before and after (a millisecond for the microsecond digits and the
    # bumps that keep stamps of the same microsecond apart), however long the machine took in between.
    assert all(before - 0.001 <= float(ts) <= after + 0.001 for ts in stamps), (before, stamps, after)


async def test_threads(client: AsyncWebClient, emu: SlackEmulator) -> None:
    parent = await client.chat_postMessage(channel="C0INCIDENTS", text="incident")
    first = await client.chat_postMessage(channel="C0INCIDENTS", text="update 1", thread_ts=parent["ts"])
    emu.post_as_user("C0INCIDENTS", "U0ALICE", "looking", thread_ts=parent["ts"])
    nested = await client.chat_postMessage(channel="C0INCIDENTS", text="via reply", thread_ts=first["ts"])
    broadcast = await client.chat_postMessage(
        channel="C0INCIDENTS", text="resolved", thread_ts=parent["ts"], reply_broadcast=True
    )
    stored = emu.find_message("C0INCIDENTS", parent["ts"])
    assert stored is not None
    assert stored["thread_ts"] == parent["ts"]
    assert stored["reply_count"] == 4 and stored["latest_reply"] == broadcast["ts"]
    assert set(stored["reply_users"]) == {"U0BOT", "U0ALICE"} and stored["reply_users_count"] == 2
    assert nested["message"]["thread_ts"] == parent["ts"], "a reply to a reply joins the parent's thread"
    assert broadcast["message"]["subtype"] == "thread_broadcast"
    replies = await client.conversations_replies(channel="C0INCIDENTS", ts=parent["ts"])
    assert [m["text"] for m in replies["messages"]] == ["incident", "update 1", "looking", "via reply", "resolved"]
    history = await client.conversations_history(channel="C0INCIDENTS")
    assert [m["text"] for m in history["messages"]] == ["resolved", "incident"]


async def test_post_ephemeral(client: AsyncWebClient, emu: SlackEmulator) -> None:
    emu.workspace.add_user("U0DAVE", "dave")
    answer = await client.chat_postEphemeral(channel="C0GENERAL", user="U0BOB", text="only bob")
    stored = emu.find_message("C0GENERAL", answer["message_ts"])
    assert stored is not None and stored["ephemeral_to"] == "U0BOB"
    assert (await api_error(client.chat_postEphemeral(channel="C0GENERAL", user="U0DAVE", text="x")))[
        "error"
    ] == "user_not_in_channel"
    assert (await api_error(client.chat_postEphemeral(channel="C0GENERAL", user="U0NOBODY", text="x")))[
        "error"
    ] == "user_not_found"


async def test_update_delete_and_permalink(client: AsyncWebClient, emu: SlackEmulator) -> None:
    posted = await client.chat_postMessage(channel="C0DEPLOYS", text="deploying", blocks=[_section("*deploying*")])
    updated = await client.chat_update(channel="C0DEPLOYS", ts=posted["ts"], text="deployed")
    stored = emu.find_message("C0DEPLOYS", posted["ts"])
    assert stored is not None and updated["ts"] == posted["ts"]
    assert stored["text"] == "deployed" and stored["blocks"][0]["text"]["text"] == "*deploying*", (
        "blocks kept when omitted"
    )
    assert stored["edited"]["user"] == "U0BOT" and TS.match(stored["edited"]["ts"])
    await client.chat_update(channel="C0DEPLOYS", ts=posted["ts"], text="deployed", blocks=[])
    assert "blocks" not in emu.find_message("C0DEPLOYS", posted["ts"])
    assert (await api_error(client.chat_update(channel="C0DEPLOYS", ts="1.000001", text="x")))[
        "error"
    ] == "message_not_found"
    human = emu.post_as_user("C0DEPLOYS", "U0ALICE", "mine")
    assert (await api_error(client.chat_update(channel="C0DEPLOYS", ts=human["ts"], text="x")))[
        "error"
    ] == "cant_update_message"
    assert (await api_error(client.chat_delete(channel="C0DEPLOYS", ts=human["ts"])))["error"] == "cant_delete_message"
    link = await client.chat_getPermalink(channel="C0DEPLOYS", message_ts=posted["ts"])
    assert link["permalink"] == f"{emu.origin}/archives/C0DEPLOYS/p{posted['ts'].replace('.', '')}"
    await client.chat_delete(channel="C0DEPLOYS", ts=posted["ts"])
    assert emu.find_message("C0DEPLOYS", posted["ts"]) is None
    assert (await api_error(client.chat_delete(channel="C0DEPLOYS", ts=posted["ts"])))["error"] == "message_not_found"


async def test_update_of_invalid_blocks_is_refused(client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel="C0DEPLOYS", text="x")
    error = await api_error(
        client.chat_update(channel="C0DEPLOYS", ts=posted["ts"], text="y", blocks=[{"type": "nope"}])
    )
    assert error["error"] == "invalid_blocks"


# -- conversations, pins, users, usergroups -------------------------------------------------------------------------


async def test_conversations(client: AsyncWebClient, emu: SlackEmulator) -> None:
    created = await client.conversations_create(name="inc-42-db")
    channel_id = created["channel"]["id"]
    assert created["channel"]["is_member"] is True
    await client.chat_postMessage(channel=channel_id, text="war room")
    assert (await api_error(client.conversations_create(name="inc-42-db")))["error"] == "name_taken"
    assert (await api_error(client.conversations_create(name="Bad Name!")))["error"] == "invalid_name_specials"
    assert (await api_error(client.conversations_create(name="x" * 81)))["error"] == "invalid_name_specials"
    await client.conversations_invite(channel=channel_id, users="U0ALICE,U0BOB")
    assert (await api_error(client.conversations_invite(channel=channel_id, users="U0ALICE")))[
        "error"
    ] == "already_in_channel"
    assert (await api_error(client.conversations_invite(channel=channel_id, users="U0NOBODY")))[
        "error"
    ] == "user_not_found"
    assert (await api_error(client.conversations_invite(channel=channel_id, users="U0BOT")))[
        "error"
    ] == "cant_invite_self"
    assert (await api_error(client.conversations_invite(channel="C0NOPE", users="U0BOB")))[
        "error"
    ] == "channel_not_found"
    members = await client.conversations_members(channel=channel_id)
    assert members["members"] == ["U0BOT", "U0ALICE", "U0BOB"]
    await client.conversations_setTopic(channel=channel_id, topic="DB is slow")
    info = await client.conversations_info(channel=channel_id)
    assert info["channel"]["name"] == "inc-42-db" and info["channel"]["topic"]["value"] == "DB is slow"
    assert (await api_error(client.conversations_info(channel="C0NOPE")))["error"] == "channel_not_found"
    emu.workspace.add_channel("lobby", bot_member=False)
    assert (await api_error(client.conversations_setTopic(channel="#lobby", topic="t")))["error"] == "not_in_channel"
    await client.conversations_join(channel=emu.channel("#lobby")["id"])
    await client.chat_postMessage(channel="#lobby", text="hello")


async def test_pins(client: AsyncWebClient, emu: SlackEmulator) -> None:
    posted = await client.chat_postMessage(channel="C0INCIDENTS", text="summary")
    await client.pins_add(channel="C0INCIDENTS", timestamp=posted["ts"])
    assert emu.find_message("C0INCIDENTS", posted["ts"])["pinned_to"] == ["C0INCIDENTS"]
    assert (await api_error(client.pins_add(channel="C0INCIDENTS", timestamp=posted["ts"])))[
        "error"
    ] == "already_pinned"
    assert (await api_error(client.pins_add(channel="C0INCIDENTS", timestamp="1.000001")))[
        "error"
    ] == "message_not_found"


async def test_users_info(client: AsyncWebClient) -> None:
    user = (await client.users_info(user="U0DEMO"))["user"]
    assert user["tz"] == "Europe/Berlin" and user["tz_offset"] in (3600, 7200)
    assert user["profile"]["real_name"] == "Demo User" and "display_name" in user["profile"]
    assert user["name"] == "demo" and user["is_bot"] is False
    assert (await client.users_info(user="U0BOT"))["user"]["is_bot"] is True
    assert (await api_error(client.users_info(user="U0NOBODY")))["error"] == "user_not_found"


async def test_usergroups(client: AsyncWebClient) -> None:
    groups = (await client.usergroups_list(include_users=True))["usergroups"]
    assert {(g["id"], g["handle"], tuple(g["users"])) for g in groups} == {
        ("S0PLATFORM", "platform", ("U0DEMO", "U0ALICE")),
        ("S0SRE", "sre", ("U0BOB", "U0CAROL")),
    }
    assert "users" not in (await client.usergroups_list())["usergroups"][0]
    assert (await client.usergroups_users_list(usergroup="S0SRE"))["users"] == ["U0BOB", "U0CAROL"]
    assert (await api_error(client.usergroups_users_list(usergroup="S0NOPE")))["error"] == "no_such_subteam"


async def test_custom_workspace() -> None:
    workspace = Workspace(team_id="T0TEST", users=[User("U0X", "x", "X Person", tz="Asia/Tokyo")])
    workspace.add_user("U0Y", "y", tz="America/Sao_Paulo")
    room = workspace.add_channel("room", members=["U0X", "U0Y"])
    workspace.add_usergroup("S0ALL", "all", ["U0X", "U0Y"])
    emulator = SlackEmulator(signing_secret=SECRET, bot_token=TOKEN, workspace=workspace)
    runner, origin = await serve(emulator.make_app(page=False))
    emulator.origin = origin
    try:
        async with aiohttp.ClientSession() as session:
            client = AsyncWebClient(token=TOKEN, base_url=emulator.api_url, session=session)
            assert (await client.auth_test())["team_id"] == "T0TEST"
            assert (await client.users_info(user="U0Y"))["user"]["tz"] == "America/Sao_Paulo"
            assert (await client.usergroups_users_list(usergroup="S0ALL"))["users"] == ["U0X", "U0Y"]
            await client.chat_postMessage(channel=room.id, text="hi")
            assert emulator.messages("#room")[0]["text"] == "hi"
    finally:
        await runner.cleanup()


# -- rate limits ---------------------------------------------------------------------------------------------------


async def test_rate_limit_answers_429_with_retry_after(emu: SlackEmulator, http: aiohttp.ClientSession) -> None:
    emu.set_rate_limit(1)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    statuses = []
    for i in range(3):
        async with http.post(
            f"{emu.api_url}chat.postMessage", json={"channel": "C0ALERTS", "text": str(i)}, headers=headers
        ) as r:
            statuses.append(r.status)
            if r.status == 429:
                assert int(r.headers["Retry-After"]) >= 1
                assert await r.json() == {"ok": False, "error": "ratelimited"}
    assert statuses == [200, 429, 429]
    async with http.post(
        f"{emu.api_url}chat.postMessage", json={"channel": "C0DEPLOYS", "text": "other"}, headers=headers
    ) as r:
        assert r.status == 200, "the limit is per channel"
    assert emu.calls_to("chat.postMessage")[1].status == 429
    emu.set_rate_limit(None)
    async with http.post(
        f"{emu.api_url}chat.postMessage", json={"channel": "C0ALERTS", "text": "free"}, headers=headers
    ) as r:
        assert r.status == 200


async def test_rate_limit_retry_handler_gets_everything_through(
    emu: SlackEmulator, http: aiohttp.ClientSession
) -> None:
    emu.set_rate_limit(1)
    client = AsyncWebClient(
        token=TOKEN,
        base_url=emu.api_url,
        session=http,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=10)],
    )
    first = await client.chat_postMessage(channel="C0ALERTS", text="status")
    await asyncio.gather(
        *[client.chat_postMessage(channel="C0ALERTS", text=f"alert {i}") for i in range(3)],
        client.chat_update(channel="C0ALERTS", ts=first["ts"], text="status: 3 alerts"),
    )
    texts = [m["text"] for m in emu.messages("C0ALERTS")]
    assert sorted(texts) == ["alert 0", "alert 1", "alert 2", "status: 3 alerts"]
    assert any(c.status == 429 for c in emu.calls), "the limit was hit and retried"


# -- signed requests to the bot --------------------------------------------------------------------------------------


async def test_slash_command_is_signed_and_shaped_like_slack(emu: SlackEmulator, bot: FakeBot) -> None:
    async def answer(_: Received) -> web.StreamResponse:
        return web.json_response({"response_type": "ephemeral", "text": "here is *help*"})

    bot.answer = answer
    before = time.time()
    result = await emu.send_command(command="/chatops", text="help me", user_id="U0ALICE", channel_id="C0DEPLOYS")
    after = time.time()
    assert result.status == 200 and result.json == {"response_type": "ephemeral", "text": "here is *help*"}
    received = bot.requests[0]
    assert received.signature_valid
    assert received.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert int(before) <= int(received.headers["X-Slack-Request-Timestamp"]) <= after  # sent at the time of sending
    assert list(received.form)[:10] == [
        "token",
        "team_id",
        "team_domain",
        "channel_id",
        "channel_name",
        "user_id",
        "user_name",
        "command",
        "text",
        "api_app_id",
    ]
    assert {
        k: received.form[k]
        for k in (
            "team_id",
            "team_domain",
            "channel_id",
            "channel_name",
            "user_id",
            "user_name",
            "command",
            "text",
            "api_app_id",
        )
    } == {
        "team_id": "T0CHATOPS",
        "team_domain": "acme",
        "channel_id": "C0DEPLOYS",
        "channel_name": "deploys",
        "user_id": "U0ALICE",
        "user_name": "alice",
        "command": "/chatops",
        "text": "help me",
        "api_app_id": "A0CHATOPS",
    }
    assert received.form["response_url"].startswith(f"{emu.origin}/emulator/response/")
    assert received.form["trigger_id"]
    assert "X-Slack-Retry-Num" not in received.headers
    shown = [m for m in emu.messages("C0DEPLOYS") if m.get("ephemeral_to") == "U0ALICE"]
    assert [m["text"] for m in shown] == ["here is *help*"]


async def test_command_answers_are_applied_like_slack(emu: SlackEmulator, bot: FakeBot) -> None:
    answers: list[web.StreamResponse] = [
        web.json_response({"response_type": "in_channel", "text": "deploying web", "blocks": [_section("*web*")]}),
        web.Response(),
        web.Response(text="plain text answer"),
        web.Response(status=500),
        web.Response(status=404),
    ]

    async def answer(_: Received) -> web.StreamResponse:
        return answers.pop(0)

    bot.answer = answer
    seen = events_of(emu)
    await emu.send_command(command="/deploy", text="web v1", user_id="U0DEMO", channel_id="C0DEPLOYS")
    public = emu.messages("C0DEPLOYS")
    assert [(m["user"], m["text"], m.get("ephemeral_to")) for m in public] == [
        ("U0DEMO", "/deploy web v1", None),
        ("U0BOT", "deploying web", None),
    ]
    assert public[1]["blocks"][0]["text"]["text"] == "*web*"
    await emu.send_command(command="/deploy", text="quiet", channel_id="C0DEPLOYS")
    assert len(emu.messages("C0DEPLOYS")) == 2, "an empty answer shows nothing"
    await emu.send_command(command="/deploy", text="plain", channel_id="C0DEPLOYS")
    assert emu.messages("C0DEPLOYS")[-1]["text"] == "plain text answer"
    assert emu.messages("C0DEPLOYS")[-1]["ephemeral_to"] == "U0DEMO"
    failed = await emu.send_command(command="/deploy", text="boom", channel_id="C0DEPLOYS")
    await emu.send_command(command="/deploy", text="missing", channel_id="C0DEPLOYS")
    assert failed.status == 500
    errors = [e["text"] for e in seen if e["type"] == "command_error"]
    assert errors == [
        '/deploy failed with the error "http_service_error"',
        '/deploy failed with the error "http_client_error"',
    ]


async def test_unreachable_and_slow_bots(emu: SlackEmulator, bot: FakeBot) -> None:
    async def slow(_: Received) -> web.StreamResponse:
        await asyncio.sleep(1)
        return web.Response()

    bot.answer = slow
    emu.ack_timeout = 0.2
    seen = events_of(emu)
    assert (await emu.send_command(command="/chatops", text="slow")).error == "operation_timeout"
    emu.app_url = "http://127.0.0.1:9/slack/events"
    assert (await emu.send_command(command="/chatops", text="down")).error == "dispatch_failed"
    assert [e["text"] for e in seen if e["type"] == "command_error"] == [
        '/chatops failed with the error "operation_timeout"',
        '/chatops failed with the error "dispatch_failed"',
    ]


async def test_retry_resends_the_same_request_with_retry_headers(emu: SlackEmulator, bot: FakeBot) -> None:
    await emu.send_command(command="/chatops", text="audit", user_id="U0DEMO", channel_id="C0GENERAL")
    await emu.send_command(command="/chatops", text="audit", user_id="U0DEMO", channel_id="C0GENERAL", retry_num=1)
    first, retry = bot.requests
    assert retry.signature_valid and retry.headers["X-Slack-Retry-Num"] == "1"
    assert retry.headers["X-Slack-Retry-Reason"] == "http_timeout"
    assert retry.form == first.form, "a retry is the same request (same trigger_id)"


async def test_send_signed_low_level(emu: SlackEmulator, bot: FakeBot) -> None:
    result = await emu.send_signed(
        "a=1", "application/x-www-form-urlencoded", headers={"X-Extra": "yes"}, timestamp=int(time.time()) - 10
    )
    assert result.status == 200 and bot.requests[0].signature_valid and bot.requests[0].headers["X-Extra"] == "yes"
    stale = await emu.send_signed("a=1", "application/x-www-form-urlencoded", timestamp=int(time.time()) - 600)
    assert stale.status == 401, "SignatureVerifier refuses requests older than five minutes"


async def test_event_callback_envelope(emu: SlackEmulator, bot: FakeBot) -> None:
    await emu.send_event({"type": "app_mention", "user": "U0BOB", "text": "<@U0BOT> hi", "channel": "C0GENERAL"})
    received = bot.requests[0]
    assert received.signature_valid and received.headers["Content-Type"] == "application/json"
    envelope = received.payload
    assert envelope is not None and envelope["type"] == "event_callback"
    assert envelope["team_id"] == "T0CHATOPS" and envelope["api_app_id"] == "A0CHATOPS"
    assert envelope["event_id"].startswith("Ev") and isinstance(envelope["event_time"], int)
    assert envelope["event"]["type"] == "app_mention" and envelope["event"]["text"] == "<@U0BOT> hi"


APPROVAL_BLOCKS = [
    _section("Deploy *web* v2 to production?"),
    {
        "type": "actions",
        "block_id": "approval",
        "elements": [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Approve"},
                "action_id": "deploy.approve",
                "value": "req-1",
                "style": "primary",
            },
            {
                "type": "static_select",
                "action_id": "deploy.env",
                "placeholder": {"type": "plain_text", "text": "Env"},
                "option_groups": [
                    {
                        "label": {"type": "plain_text", "text": "Prod"},
                        "options": [{"text": {"type": "plain_text", "text": "production"}, "value": "prod"}],
                    }
                ],
            },
        ],
    },
]


async def test_block_actions_payload(client: AsyncWebClient, emu: SlackEmulator, bot: FakeBot) -> None:
    posted = await client.chat_postMessage(channel="C0DEPLOYS", text="approve?", blocks=APPROVAL_BLOCKS)
    result = await emu.send_block_action(
        channel="C0DEPLOYS", message_ts=posted["ts"], action_id="deploy.approve", user_id="U0BOB"
    )
    assert result.status == 200
    received = bot.requests[0]
    assert received.signature_valid and list(received.form) == ["payload"]
    payload = received.payload
    assert payload is not None and payload["type"] == "block_actions"
    assert payload["user"] == {"id": "U0BOB", "username": "bob", "name": "bob", "team_id": "T0CHATOPS"}
    assert payload["container"] == {
        "type": "message",
        "message_ts": posted["ts"],
        "channel_id": "C0DEPLOYS",
        "is_ephemeral": False,
    }
    assert payload["channel"] == {"id": "C0DEPLOYS", "name": "deploys"}
    assert payload["team"]["id"] == "T0CHATOPS" and payload["api_app_id"] == "A0CHATOPS"
    assert payload["message"]["ts"] == posted["ts"] and payload["message"]["blocks"][1]["block_id"] == "approval"
    assert payload["state"] == {"values": {}} and payload["trigger_id"] and payload["token"]
    assert payload["response_url"].startswith(f"{emu.origin}/emulator/response/")
    action = payload["actions"][0]
    assert action["action_id"] == "deploy.approve" and action["block_id"] == "approval" and action["value"] == "req-1"
    assert action["type"] == "button" and action["text"]["text"] == "Approve" and TS.match(action["action_ts"])
    await emu.send_block_action(
        channel="#deploys", message_ts=posted["ts"], action_id="deploy.env", selected_option="prod"
    )
    select = bot.requests[1].payload["actions"][0]
    assert select["type"] == "static_select"
    assert select["selected_option"] == {"text": {"type": "plain_text", "text": "production"}, "value": "prod"}
    with pytest.raises(ValueError, match="no element with action_id"):
        await emu.send_block_action(channel="C0DEPLOYS", message_ts=posted["ts"], action_id="deploy.nope")
    with pytest.raises(ValueError, match="no option"):
        await emu.send_block_action(
            channel="C0DEPLOYS", message_ts=posted["ts"], action_id="deploy.env", selected_option="dev"
        )


async def test_response_url_replace_delete_and_new(
    emu: SlackEmulator, bot: FakeBot, http: aiohttp.ClientSession
) -> None:
    async def answer(_: Received) -> web.StreamResponse:
        return web.json_response({"text": "pick one", "blocks": APPROVAL_BLOCKS})

    bot.answer = answer
    await emu.send_command(command="/deploy", text="web v2 to production", user_id="U0DEMO", channel_id="C0DEPLOYS")
    ephemeral = emu.messages("C0DEPLOYS")[-1]
    assert ephemeral["ephemeral_to"] == "U0DEMO"
    bot.answer = empty_ack
    await emu.send_block_action(channel="C0DEPLOYS", message_ts=ephemeral["ts"], action_id="deploy.approve")
    response_url = bot.requests[-1].payload["response_url"]
    assert bot.requests[-1].payload["container"]["is_ephemeral"] is True

    async with http.post(response_url, json={"replace_original": True, "text": "Approved by <@U0DEMO>"}) as r:
        assert r.status == 200 and await r.text() == "ok"
    replaced = emu.find_message("C0DEPLOYS", ephemeral["ts"])
    assert replaced is not None and replaced["text"] == "Approved by <@U0DEMO>" and "blocks" not in replaced
    assert replaced["ephemeral_to"] == "U0DEMO", "an ephemeral message stays ephemeral when replaced"

    async with http.post(response_url, json={"response_type": "in_channel", "text": "Deploy started"}) as r:
        assert r.status == 200
    assert (
        emu.messages("C0DEPLOYS")[-1]["text"] == "Deploy started"
        and "ephemeral_to" not in emu.messages("C0DEPLOYS")[-1]
    )
    async with http.post(response_url, json={"text": "just for you"}) as r:
        assert r.status == 200
    assert emu.messages("C0DEPLOYS")[-1]["ephemeral_to"] == "U0DEMO"

    async with http.post(response_url, json={"delete_original": True}) as r:
        assert r.status == 200
    assert emu.find_message("C0DEPLOYS", ephemeral["ts"]) is None
    async with http.post(response_url, json={"text": "fifth"}) as r:
        assert r.status == 200
    async with http.post(response_url, json={"text": "sixth"}) as r:
        assert r.status == 404 and (await r.json())["error"] == "used_url", "a response_url takes five calls"
    async with http.post(f"{emu.origin}/emulator/response/unknown", json={"text": "x"}) as r:
        assert r.status == 404 and (await r.json())["ok"] is False


async def test_response_url_refuses_invalid_blocks(
    emu: SlackEmulator, bot: FakeBot, http: aiohttp.ClientSession
) -> None:
    await emu.send_command(command="/chatops", text="help")
    response_url = bot.requests[0].form["response_url"]
    async with http.post(response_url, json={"blocks": [{"type": "bogus"}]}) as r:
        assert r.status == 400 and (await r.json())["error"] == "invalid_blocks"


async def test_action_from_a_slash_command_can_be_updated_with_chat_update(
    client: AsyncWebClient, emu: SlackEmulator, bot: FakeBot
) -> None:
    async def answer(received: Received) -> web.StreamResponse:
        if received.payload and received.payload.get("type") == "block_actions":
            container = received.payload["container"]
            await client.chat_update(
                channel=container["channel_id"],
                ts=container["message_ts"],
                text="Approved",
                blocks=[_section(":white_check_mark: Approved by <@U0ALICE>")],
            )
        return web.Response()

    bot.answer = answer
    posted = await client.chat_postMessage(channel="C0DEPLOYS", text="approve?", blocks=APPROVAL_BLOCKS)
    await emu.send_block_action(
        channel="C0DEPLOYS", message_ts=posted["ts"], action_id="deploy.approve", user_id="U0ALICE"
    )
    message = emu.find_message("C0DEPLOYS", posted["ts"])
    assert message is not None and message["text"] == "Approved" and "edited" in message


# -- files ---------------------------------------------------------------------------------------------------------


async def test_file_upload_round_trip(client: AsyncWebClient, emu: SlackEmulator, http: aiohttp.ClientSession) -> None:
    parent = await client.chat_postMessage(channel="C0BACKUPS", text="backup report")
    content = b"db,size\norders,42GB\n" * 100
    answer = await client.files_upload_v2(
        channel="C0BACKUPS",
        content=content,
        filename="report.csv",
        title="Backup report",
        initial_comment="Here it is",
        thread_ts=parent["ts"],
    )
    file_id = answer["file"]["id"]
    assert emu.file_content(file_id) == content
    shared = emu.messages("C0BACKUPS")[-1]
    assert shared["thread_ts"] == parent["ts"] and shared["text"] == "Here it is"
    assert shared["files"][0]["id"] == file_id and shared["files"][0]["title"] == "Backup report"
    assert shared["files"][0]["size"] == len(content)
    async with http.get(f"{emu.origin}/emulator/files/{file_id}") as r:
        assert r.status == 200 and await r.read() == content
    info = await client.files_info(file=file_id)
    assert info["file"]["name"] == "report.csv"


async def test_upload_accepts_multipart(
    client: AsyncWebClient, emu: SlackEmulator, http: aiohttp.ClientSession
) -> None:
    announced = await client.files_getUploadURLExternal(filename="a.txt", length=5)
    assert announced["upload_url"].startswith(emu.origin)
    form = aiohttp.FormData()
    form.add_field("file", b"hello", filename="a.txt")
    async with http.post(announced["upload_url"], data=form) as r:
        assert r.status == 200
    assert emu.file_content(announced["file_id"]) == b"hello"
    not_uploaded = await client.files_getUploadURLExternal(filename="b.txt", length=5)
    error = await api_error(
        client.files_completeUploadExternal(files=[{"id": not_uploaded["file_id"]}], channel_id="C0BACKUPS")
    )
    assert error["error"] == "file_not_found"


# -- views ---------------------------------------------------------------------------------------------------------

MODAL = {
    "type": "modal",
    "callback_id": "rollback",
    "title": {"type": "plain_text", "text": "Roll back"},
    "submit": {"type": "plain_text", "text": "Roll back"},
    "blocks": [
        {
            "type": "input",
            "block_id": "reason",
            "label": {"type": "plain_text", "text": "Reason"},
            "element": {"type": "plain_text_input", "action_id": "text"},
        },
        {
            "type": "input",
            "block_id": "env",
            "label": {"type": "plain_text", "text": "Environment"},
            "element": {
                "type": "static_select",
                "action_id": "pick",
                "options": [{"text": {"type": "plain_text", "text": "staging"}, "value": "staging"}],
            },
        },
    ],
}


async def test_views(client: AsyncWebClient, emu: SlackEmulator, bot: FakeBot) -> None:
    assert (await api_error(client.views_open(trigger_id="", view=MODAL)))["error"] == "invalid_trigger_id"
    bad = await api_error(
        client.views_open(trigger_id="1.2.3", view=MODAL | {"title": {"type": "plain_text", "text": "x" * 25}})
    )
    assert bad["error"] == "invalid_arguments"
    await emu.send_command(command="/rollback", user_id="U0CAROL")
    trigger = bot.requests[0].form["trigger_id"]
    opened = (await client.views_open(trigger_id=trigger, view=MODAL))["view"]
    assert opened["id"].startswith("V") and opened["callback_id"] == "rollback" and opened["state"] == {"values": {}}
    assert [v["id"] for v in emu.open_views("U0CAROL")] == [opened["id"]]
    updated = (
        await client.views_update(
            view_id=opened["id"], view=MODAL | {"title": {"type": "plain_text", "text": "Roll back web"}}
        )
    )["view"]
    assert updated["id"] == opened["id"] and updated["title"]["text"] == "Roll back web"
    assert (await api_error(client.views_update(view_id="V0NOPE", view=MODAL)))["error"] == "not_found"

    async def errors(_: Received) -> web.StreamResponse:
        return web.json_response({"response_action": "errors", "errors": {"reason": "Say why"}})

    bot.answer = errors
    result = await emu.send_view_submission(
        view_id=opened["id"], values={"reason": {"text": ""}, "env": {"pick": "staging"}}
    )
    submission = bot.requests[-1].payload
    assert submission is not None and submission["type"] == "view_submission" and submission["user"]["id"] == "U0CAROL"
    assert submission["view"]["state"]["values"] == {
        "reason": {"text": {"type": "plain_text_input", "value": None}},
        "env": {
            "pick": {
                "type": "static_select",
                "selected_option": {"text": {"type": "plain_text", "text": "staging"}, "value": "staging"},
            }
        },
    }
    assert result.json == {"response_action": "errors", "errors": {"reason": "Say why"}}
    assert emu.open_views("U0CAROL"), "errors keep the modal open"
    bot.answer = empty_ack
    await emu.send_view_submission(view_id=opened["id"], values={"reason": {"text": "bad deploy"}})
    assert emu.open_views("U0CAROL") == [], "an empty answer closes the modal"
    home = (await client.views_publish(user_id="U0DEMO", view={"type": "home", "blocks": [_section("Home")]}))["view"]
    assert home["type"] == "home" and home["id"].startswith("V")


# -- the page's endpoints ------------------------------------------------------------------------------------------


async def test_page_state_and_websocket(
    client: AsyncWebClient, emu: SlackEmulator, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{emu.origin}/") as r:
        assert r.status == 200 and 'data-testid="composer"' in await r.text()
    async with http.ws_connect(f"{emu.origin}/emulator/ws") as ws:
        posted = await client.chat_postMessage(channel="C0GENERAL", text="*hello* <@U0ALICE>")
        first = await ws.receive_json(timeout=5)
        assert first["type"] == "message" and first["channel"] == "C0GENERAL"
        assert first["message"]["ts"] == posted["ts"] and "<b>hello</b>" in first["message"]["html"]
        await client.chat_update(channel="C0GENERAL", ts=posted["ts"], text="bye")
        second = await ws.receive_json(timeout=5)
        assert second["message"]["ts"] == posted["ts"] and second["message"]["text"] == "bye"
        await client.chat_delete(channel="C0GENERAL", ts=posted["ts"])
        assert await ws.receive_json(timeout=5) == {
            "type": "message_deleted",
            "channel": "C0GENERAL",
            "ts": posted["ts"],
        }
        await client.conversations_create(name="new-room")
        assert (await ws.receive_json(timeout=5))["type"] == "channel"
    await client.chat_postMessage(channel="C0GENERAL", text="kept")
    async with http.get(f"{emu.origin}/emulator/state") as r:
        state = await r.json()
    assert state["team"]["id"] == "T0CHATOPS"
    assert {u["id"] for u in state["users"]} >= {"U0DEMO", "U0ALICE", "U0BOB", "U0CAROL", "U0BOT"}
    assert {c["name"] for c in state["channels"]} >= {
        "general",
        "deploys",
        "alerts",
        "incidents",
        "oncall",
        "backups",
        "new-room",
    }
    assert [m["text"] for m in state["messages"]["C0GENERAL"]] == ["kept"]


async def test_page_command_and_message_endpoints(
    emu: SlackEmulator, bot: FakeBot, http: aiohttp.ClientSession
) -> None:
    async def answer(_: Received) -> web.StreamResponse:
        return web.json_response({"text": "pong"})

    bot.answer = answer
    async with http.post(
        f"{emu.origin}/emulator/command", json={"channel": "C0GENERAL", "user": "U0BOB", "text": "/chatops ping now"}
    ) as r:
        assert (await r.json())["ok"] is True
    assert bot.requests[0].form["command"] == "/chatops" and bot.requests[0].form["text"] == "ping now"
    assert emu.messages("C0GENERAL")[-1]["ephemeral_to"] == "U0BOB"
    async with http.post(
        f"{emu.origin}/emulator/message", json={"channel": "C0GENERAL", "user": "U0BOB", "text": "hi all"}
    ) as r:
        ts = (await r.json())["ts"]
    assert emu.find_message("C0GENERAL", ts)["user"] == "U0BOB"


# -- pure logic ----------------------------------------------------------------------------------------------------


def test_validate_blocks_accepts_what_bot_blocks_builds() -> None:
    from bot.text import blocks as b

    built = [
        b.header("Deploy"),
        b.section("text", accessory=b.button("Go", "go", "1", style="primary")),
        b.fields([("Service", "web"), ("Env", "prod")]),
        b.context("one", "two"),
        b.divider(),
        b.actions(b.button("Yes", "y"), b.static_select("Pick", "p", [("A", "a")])),
    ]
    assert validate_blocks(built) == []


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("*bold* _italic_ ~strike~ `code`", '<b>bold</b> <i>italic</i> <s>strike</s> <code class="code">code</code>'),
        ("snake_case_name and 2*3*4", "snake_case_name and 2*3*4"),
        ("```a *b*\n<c>```", '<pre class="pre">a *b*\nc</pre>'),
        (
            "<https://example.com/a_b|the *site*>",
            '<a class="link" href="https://example.com/a_b" target="_blank" rel="noopener">the *site*</a>',
        ),
        (
            "<@U0ALICE> in <#C0DEPLOYS|deploys> <!here>",
            '<span class="mention">@Alice Anders</span> in <span class="channel-link">#deploys</span> <span '
            'class="mention mention-broadcast">@here</span>',
        ),
        ("<!subteam^S0SRE|@sre>", '<span class="mention">@sre</span>'),
        (
            ":white_check_mark: ok :no_such_emoji:",
            '<span class="emoji" title=":white_check_mark:">✅</span> ok :no_such_emoji:',
        ),
        ("a\nb", "a<br>b"),
        ("&lt;script&gt; &amp;", "&lt;script&gt; &amp;"),
        ("<javascript:alert(1)|click>", '<span class="text">click</span>'),
        ("&gt; quoted\nplain", '<blockquote class="quote">quoted</blockquote>plain'),
    ],
)
def test_mrkdwn_to_html(text: str, html: str) -> None:
    assert to_html(text, Names.of(Workspace.demo())) == html


async def test_open_websocket_does_not_hold_up_shutdown() -> None:
    emulator = SlackEmulator(signing_secret=SECRET, bot_token=TOKEN)
    runner, origin = await serve(emulator.make_app(page=True))
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"{origin}/emulator/ws")
        await runner.cleanup()  # an open page socket must not hold this up (the per-test timeout would fail it)
        closing = await ws.receive(timeout=5)
        assert closing.type in {aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING}
        await ws.close()


async def test_without_the_page_only_the_api_is_served(http: aiohttp.ClientSession) -> None:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="bot")

    emulator = SlackEmulator(signing_secret=SECRET, bot_token=TOKEN)
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    emulator.install(app, page=False)
    runner, origin = await serve(app)
    emulator.origin = origin
    try:
        async with http.get(f"{origin}/") as r:
            assert r.status == 404
        async with http.get(f"{origin}/healthz") as r:
            assert await r.text() == "bot", "install() adds routes to an existing app"
        client = AsyncWebClient(token=TOKEN, base_url=emulator.api_url, session=http)
        assert (await client.auth_test())["ok"]
    finally:
        await runner.cleanup()
