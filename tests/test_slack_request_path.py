"""The Slack request path end to end: signatures, replay and tamper, retries and double clicks, help, errors."""

from __future__ import annotations

import asyncio
import html
import logging
import time

import pytest
from slack_sdk.signature import SignatureVerifier

from bot.platform.errors import new_ref
from commands.catalog import Catalog, CommandSpec
from commands.dispatch import run_command
from commands.framework import CommandContext, Invocation
from commands.registry import build_catalog
from tests.conftest import BotHarness
from tests.slack_signing import command_body, parse, post, signed_headers
from tests.state import state
from tests.waiting import eventually

# Slack's documented example (api.slack.com/authentication/verifying-requests-from-slack).
KAT_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
KAT_TIMESTAMP = "1531420618"
KAT_BODY = (
    "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    "&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
KAT_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


class FixedClock:
    def __init__(self, now: float) -> None:
        self.value = now

    def now(self) -> float:
        return self.value


def test_signature_known_answer_vector() -> None:
    verifier = SignatureVerifier(KAT_SECRET, clock=FixedClock(float(KAT_TIMESTAMP)))
    assert verifier.generate_signature(timestamp=KAT_TIMESTAMP, body=KAT_BODY) == KAT_SIGNATURE
    assert verifier.is_valid(body=KAT_BODY, timestamp=KAT_TIMESTAMP, signature=KAT_SIGNATURE)
    assert not verifier.is_valid(body=KAT_BODY + "x", timestamp=KAT_TIMESTAMP, signature=KAT_SIGNATURE)


async def _idempotency_keys(bot: BotHarness) -> list[str]:
    return [key async for key in state(bot).redis.scan_iter(match="chatops:{idem}:*")]


async def test_known_answer_request_is_a_replay_and_is_refused(bot: BotHarness) -> None:
    headers = {
        "X-Slack-Request-Timestamp": KAT_TIMESTAMP,
        "X-Slack-Signature": KAT_SIGNATURE,
        "Content-Type": "application/x-www-form-urlencoded",
    }
    status, _ = await post(f"{bot.url}/slack/events", KAT_BODY, headers)
    assert status == 401
    assert await _idempotency_keys(bot) == []


async def test_fresh_signature_is_accepted(bot: BotHarness) -> None:
    body = command_body("/chatops", "help")
    status, text = await post(f"{bot.url}/slack/events", body, signed_headers(bot.signing_secret, body))
    assert status == 200
    assert "/deploy" in parse(text)["text"]


@pytest.mark.parametrize(
    "case",
    [
        "tampered body",
        "wrong secret",
        "older than five minutes",
        "from the future",
        "no signature",
        "garbage signature",
    ],
)
async def test_forged_requests_get_401_and_change_nothing(bot: BotHarness, case: str) -> None:
    body = command_body("/chatops", "audit")
    headers = signed_headers(bot.signing_secret, body)
    if case == "tampered body":
        body = body.replace("audit", "whoami")
    elif case == "wrong secret":
        headers = signed_headers("not-the-secret", body)
    elif case == "older than five minutes":
        headers = signed_headers(bot.signing_secret, body, timestamp=int(time.time()) - 301)
    elif case == "from the future":
        headers = signed_headers(bot.signing_secret, body, timestamp=int(time.time()) + 3600)
    elif case == "no signature":
        del headers["X-Slack-Signature"]
    else:
        headers["X-Slack-Signature"] = "v0=" + "0" * 64
    status, _ = await post(f"{bot.url}/slack/events", body, headers)
    assert status == 401
    assert await _idempotency_keys(bot) == []
    assert await bot.deps.audit.recent(10) == []


async def test_slack_retry_of_a_command_runs_it_once(bot: BotHarness) -> None:
    body = command_body("/chatops", "audit", trigger_id="42.42.retry")
    first = await post(f"{bot.url}/slack/events", body, signed_headers(bot.signing_secret, body))
    retry_headers = signed_headers(bot.signing_secret, body) | {
        "X-Slack-Retry-Num": "1",
        "X-Slack-Retry-Reason": "http_timeout",
    }
    second = await post(f"{bot.url}/slack/events", body, retry_headers)
    assert first[0] == second[0] == 200
    assert "audit" in parse(first[1])["text"].lower()
    assert second[1] == ""
    assert len(await _idempotency_keys(bot)) == 1


async def test_emulator_retry_header_is_deduplicated(bot: BotHarness) -> None:
    first = await bot.emulator.send_command(command="/chatops", text="help", user_id="U0DEMO", channel_id="C0GENERAL")
    assert first.status == 200 and first.json and "/deploy" in first.json["text"]
    distinct = await bot.emulator.send_command(
        command="/chatops", text="help", user_id="U0DEMO", channel_id="C0GENERAL"
    )
    assert distinct.json and "/deploy" in distinct.json["text"], "a new request (new trigger_id) is not a retry"


async def _help_message(bot: BotHarness) -> dict:
    result = await bot.emulator.send_command(command="/chatops", text="help", user_id="U0DEMO", channel_id="C0GENERAL")
    assert result.status == 200
    messages = [m for m in bot.emulator.messages("C0GENERAL") if m.get("ephemeral_to") == "U0DEMO"]
    assert messages, "the help answer is shown to the user"
    return messages[-1]


async def test_help_button_updates_the_message_in_place(bot: BotHarness) -> None:
    message = await _help_message(bot)
    result = await bot.emulator.send_block_action(
        channel="C0GENERAL", message_ts=message["ts"], action_id="chatops.help.show", value="deploy", user_id="U0DEMO"
    )
    assert result.status == 200
    await eventually(lambda: _header(bot, message["ts"]) == "/deploy", "the help message to show /deploy's page")
    updated = bot.emulator.find_message("C0GENERAL", message["ts"])
    assert updated is not None and "/deploy &lt;service&gt; &lt;version&gt; to &lt;env&gt;" in str(updated["blocks"])
    back = await bot.emulator.send_block_action(
        channel="C0GENERAL",
        message_ts=message["ts"],
        action_id="chatops.help.overview",
        value="overview",
        user_id="U0DEMO",
    )
    assert back.status == 200
    await eventually(
        lambda: _header(bot, message["ts"]) == "chatops: what you can ask", "the help message back on its first page"
    )


def _header(bot: BotHarness, ts: str) -> str:
    message = bot.emulator.find_message("C0GENERAL", ts) or {}
    return str(((message.get("blocks") or [{}])[0].get("text") or {}).get("text"))


async def test_quick_clicks_on_help_are_all_answered(bot: BotHarness) -> None:
    """Help buttons change nothing, so the double-click guard leaves them alone: every click is answered."""
    message = await _help_message(bot)
    clicks = await asyncio.gather(
        *[
            bot.emulator.send_block_action(
                channel="C0GENERAL",
                message_ts=message["ts"],
                action_id="chatops.help.show",
                value="rollback",
                user_id="U0DEMO",
            )
            for _ in range(3)
        ]
    )
    assert all(click.status == 200 for click in clicks)
    metrics = 'chatops_requests_total{command="chatops",outcome="ok"} 3.0'
    await eventually(lambda: metrics in bot.deps.metrics.render()[0].decode(), "the request's metrics to be rendered")
    assert _header(bot, message["ts"]) == "/rollback"
    assert 'outcome="duplicate"' not in bot.deps.metrics.render()[0].decode()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("help", "/incident"),
        ("", "/backup"),
        ("help deploy", "/deploy <service> <version> to <env>"),
        ("deploy help", "/deploy <service> <version> to <env>"),
        ("help oncall", "/oncall override <rotation>"),
    ],
)
async def test_help_is_generated_for_every_command(bot: BotHarness, text: str, expected: str) -> None:
    result = await bot.emulator.send_command(command="/chatops", text=text, user_id="U0BOB", channel_id="C0GENERAL")
    assert result.json is not None and expected in html.unescape(result.json["text"])
    assert result.json["response_type"] == "ephemeral"


@pytest.mark.parametrize("name", [spec.name for spec in build_catalog().specs])
async def test_each_command_answers_help(bot: BotHarness, name: str) -> None:
    result = await bot.emulator.send_command(command=f"/{name}", text="help", user_id="U0BOB", channel_id="C0GENERAL")
    spec = build_catalog().get(name)
    assert spec is not None and result.json is not None
    expected = "/deploy <service> <version>" if name == "chatops" else spec.usage[0]
    assert expected in html.unescape(result.json["text"])


def test_every_registered_command_is_built() -> None:
    assert [spec.name for spec in build_catalog().specs if not spec.available] == []


async def test_mistyped_command_gets_what_was_wrong_and_usage(bot: BotHarness) -> None:
    result = await bot.emulator.send_command(
        command="/chatops", text="frobnicate now", user_id="U0DEMO", channel_id="C0GENERAL"
    )
    assert result.json is not None
    text = html.unescape(result.json["text"])
    assert "`frobnicate` is not a chatops command." in text
    assert "/chatops audit [N]" in text
    assert result.json["response_type"] == "ephemeral"
    bad_count = await bot.emulator.send_command(
        command="/chatops", text="audit lots", user_id="U0DEMO", channel_id="C0GENERAL"
    )
    assert bad_count.json is not None and "`audit` takes one number from 1 to 100." in bad_count.json["text"]


async def test_audit_is_for_admins_and_records_the_refusal(bot: BotHarness) -> None:
    denied = await bot.emulator.send_command(command="/chatops", text="audit", user_id="U0BOB", channel_id="C0GENERAL")
    assert denied.json is not None
    assert "You need the `admins` role to read the audit log" in denied.json["text"]
    allowed = await bot.emulator.send_command(
        command="/chatops", text="audit 5", user_id="U0DEMO", channel_id="C0GENERAL"
    )
    assert allowed.json is not None
    assert "<@U0BOB> *chatops.read the audit log*" in allowed.json["text"]
    assert "denied" in allowed.json["text"]


async def test_whoami_resolves_usergroups(bot: BotHarness) -> None:
    alice = await bot.emulator.send_command(
        command="/chatops", text="whoami", user_id="U0ALICE", channel_id="C0GENERAL"
    )
    assert alice.json is not None and "`deployers`" in alice.json["text"] and "`approvers`" in alice.json["text"]
    carol = await bot.emulator.send_command(
        command="/chatops", text="whoami", user_id="U0CAROL", channel_id="C0GENERAL"
    )
    assert carol.json is not None and "no roles" in carol.json["text"]


async def test_usergroups_are_cached(bot: BotHarness) -> None:
    permissions = bot.deps.permissions
    assert await permissions.holds("U0ALICE", "deployers")
    calls = len(bot.emulator.calls_to("usergroups.users.list"))
    assert await permissions.holds("U0ALICE", "deployers")
    assert not await permissions.holds("U0CAROL", "deployers")
    assert len(bot.emulator.calls_to("usergroups.users.list")) == calls


async def test_internal_error_shows_a_ref_and_logs_the_traceback(
    bot: BotHarness, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(ctx: CommandContext):
        raise KeyError("boom")

    spec = CommandSpec(
        name="broken", summary="Breaks.", description="", usage=("/broken",), examples=(), usage_hint="", handler=broken
    )
    catalog = Catalog([spec, build_catalog().umbrella])
    invocation = Invocation(
        user_id="U0DEMO",
        user_name="demo",
        channel_id="C0GENERAL",
        channel_name="general",
        team_id="T0CHATOPS",
        command="/broken",
        text="",
        response_url="",
        trigger_id="t",
    )
    ctx = CommandContext(
        user_id="U0DEMO",
        channel_id="C0GENERAL",
        response_url="",
        deps=bot.deps,
        catalog=catalog,
        spec=spec,
        invocation=invocation,
        args="",
    )
    with caplog.at_level(logging.ERROR):
        reply, outcome = await run_command(ctx, help_requested=False)
    assert outcome == "error"
    ref = reply.text.split("(ref ")[1][:6]
    assert "Traceback" not in reply.text and "KeyError" not in reply.text
    record = next(r for r in caplog.records if ref in r.getMessage())
    assert record.exc_info is not None


def test_refs_are_short_and_unambiguous() -> None:
    refs = {new_ref() for _ in range(200)}
    assert len(refs) > 190
    assert all(len(ref) == 6 and not set(ref) & set("01IO") for ref in refs)
