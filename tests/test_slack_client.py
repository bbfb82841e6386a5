"""The bot's Slack client against the emulator's faults: every way a call fails arrives as one `SlackApiError` with
a code (never an AttributeError on a proxy's HTML page, never a bare aiohttp error), and tells whether a retry can
succeed and whether the failed call may nevertheless have been applied (then a post must be looked for first)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from slack_sdk.errors import SlackApiError

from bot.emulator import SlackEmulator, Workspace
from bot.platform.metrics import Metrics
from bot.platform.slack_client import (
    InstrumentedWebClient,
    build_slack_client,
    error_code,
    is_transient,
    maybe_applied,
)
from tests.conftest import BOT_TOKEN, start_site
from tests.waiting import eventually


@pytest.fixture
async def slack() -> AsyncIterator[tuple[SlackEmulator, InstrumentedWebClient]]:
    emulator = SlackEmulator(signing_secret=secrets.token_hex(8), bot_token=BOT_TOKEN, workspace=Workspace.demo())
    runner, origin = await start_site(emulator.make_app(page=False))
    emulator.origin = origin
    client = build_slack_client(token=BOT_TOKEN, base_url=emulator.api_url, metrics=Metrics(), timeout=1.0)
    yield emulator, client
    emulator.faults.clear()
    await runner.cleanup()


@pytest.mark.parametrize(
    ("mode", "code", "applied"),
    [
        ("500", "internal_error", True),
        ("html502", "http_error", True),
        ("timeout", "request_timeout", True),
        ("applied_then_500", "internal_error", True),
    ],
)
async def test_every_failure_is_a_slack_api_error_with_a_code(
    slack: tuple[SlackEmulator, InstrumentedWebClient],
    mode: str,
    code: str,
    applied: bool,
) -> None:
    emulator, client = slack
    emulator.faults.add(mode, methods=["chat.postMessage"], count=1, hold=3.0)
    with pytest.raises(SlackApiError) as raised:
        await client.chat_postMessage(channel="#general", text="hello")
    assert error_code(raised.value) == code
    assert raised.value.response.get("error") == code  # what every caller reads
    assert is_transient(raised.value) and maybe_applied(raised.value) is applied
    posted = await client.chat_postMessage(channel="#general", text="hello again")  # the next call goes through
    assert posted["ok"]


async def test_a_post_is_never_repeated_blindly_after_its_connection_failed(
    slack: tuple[SlackEmulator, InstrumentedWebClient],
) -> None:
    """slack_sdk's connection-error retry would post a second copy of a message whose answer was lost."""
    emulator, client = slack
    emulator.faults.add("timeout", methods=["chat.postMessage"], count=1, hold=3.0)
    with pytest.raises(SlackApiError):
        await client.chat_postMessage(channel="#general", text="once")
    # The held call is recorded when the emulator lets it go; a blind retry would have been recorded before it.
    await eventually(lambda: emulator.calls_to("chat.postMessage"), "the held call to end")
    assert len(emulator.calls_to("chat.postMessage")) == 1


async def test_definite_refusals_are_not_transient(slack: tuple[SlackEmulator, InstrumentedWebClient]) -> None:
    _, client = slack
    with pytest.raises(SlackApiError) as raised:
        await client.chat_postMessage(channel="#does-not-exist", text="hello")
    assert error_code(raised.value) == "channel_not_found"
    assert not is_transient(raised.value) and not maybe_applied(raised.value)


async def test_rate_limits_are_waited_out_not_raised(slack: tuple[SlackEmulator, InstrumentedWebClient]) -> None:
    emulator, client = slack
    emulator.faults.add("429", methods=["chat.postMessage"], count=2, retry_after=0)
    assert (await client.chat_postMessage(channel="#general", text="after the limit"))["ok"]
