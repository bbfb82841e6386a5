"""The emulator's fault plan (bot/emulator/faults.py): the pure plan on a hand-moved clock, and each mode as the real
slack_sdk AsyncWebClient sees it over HTTP, with every faulted call kept in `emu.calls`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.emulator import SlackEmulator, Workspace
from bot.emulator.faults import HTML_502, MODES, FaultPlan
from tests.conftest import start_site
from tests.waiting import eventually, within

TOKEN = "xoxb-faults-test"


class Clock:
    """A monotonic clock the tests move by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def emu() -> AsyncIterator[SlackEmulator]:
    emulator = SlackEmulator(signing_secret="faults-test-secret", bot_token=TOKEN, workspace=Workspace.demo())
    runner, origin = await start_site(emulator.make_app(page=False))
    emulator.origin = origin
    yield emulator
    await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def client(emu: SlackEmulator, http: aiohttp.ClientSession) -> AsyncWebClient:
    """A client without retry handlers: it shows each answer as it came."""
    return AsyncWebClient(token=TOKEN, base_url=emu.api_url, session=http, retry_handlers=[])


def _texts(emu: SlackEmulator, channel: str = "#general") -> list[str]:
    return [str(m.get("text")) for m in emu.messages(channel)]


# -- the pure plan ------------------------------------------------------------------------------------------------


def test_a_window_ends_after_its_seconds() -> None:
    clock = Clock()
    plan = FaultPlan(clock=clock)
    plan.add("500", seconds=5)
    assert plan.pick("chat.postMessage") is not None
    clock.now += 4.9
    assert plan.pick("chat.update") is not None
    clock.now += 0.2
    assert plan.pick("chat.postMessage") is None
    assert plan.active() == []


def test_a_count_ends_after_that_many_faulted_calls_and_only_named_methods_count() -> None:
    plan = FaultPlan(clock=Clock())
    fault = plan.add("429", methods=["chat.postMessage"], count=2)
    assert plan.pick("conversations.open") is None
    assert plan.pick("chat.postMessage") is fault
    assert plan.pick("chat.postMessage") is fault
    assert plan.pick("chat.postMessage") is None
    assert fault.hits == 2


def test_a_single_method_name_is_one_method() -> None:
    plan = FaultPlan(clock=Clock())
    plan.add("500", methods="chat.update")
    assert plan.pick("chat.postMessage") is None
    assert plan.pick("chat.update") is not None


def test_window_and_count_end_at_whichever_comes_first() -> None:
    clock = Clock()
    plan = FaultPlan(clock=clock)
    plan.add("500", seconds=10, count=1)
    assert plan.pick("chat.postMessage") is not None
    assert plan.pick("chat.postMessage") is None  # the count ran out inside the window
    plan.add("500", seconds=1, count=100)
    clock.now += 2
    assert plan.pick("chat.postMessage") is None  # the window closed before the count ran out


def test_a_fraction_faults_about_that_share_and_repeats_with_the_same_seed() -> None:
    def draws(seed: int) -> list[bool]:
        plan = FaultPlan(clock=Clock(), seed=seed)
        plan.add("500", fraction=0.25)
        return [plan.pick("chat.postMessage") is not None for _ in range(2000)]

    first = draws(7)
    assert 350 < sum(first) < 650
    assert draws(7) == first


def test_the_first_fault_added_wins_and_clear_removes_all() -> None:
    plan = FaultPlan(clock=Clock())
    first = plan.add("html502", methods=["chat.postMessage"])
    plan.add("429")
    assert plan.pick("chat.postMessage") is first
    assert plan.pick("chat.update") is not first
    generation = plan.generation
    plan.clear()
    assert plan.pick("chat.postMessage") is None
    assert plan.generation == generation + 1


def test_faults_with_fractions_mix() -> None:
    plan = FaultPlan(clock=Clock(), seed=3)
    plan.add("429", fraction=0.5)
    plan.add("500", fraction=0.5)
    modes = [fault.mode if (fault := plan.pick("chat.postMessage")) else None for _ in range(2000)]
    assert 850 < modes.count("429") < 1150
    assert 350 < modes.count("500") < 650  # half of the calls the first one let through
    assert 350 < modes.count(None) < 650


def test_every_mode_is_accepted() -> None:
    plan = FaultPlan(clock=Clock())
    for mode in MODES:
        assert plan.add(mode).mode == mode


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"mode": "503"}, "unknown fault mode '503'; known: 429, 500, html502, timeout, applied_then_500"),
        ({"mode": "500", "seconds": 0}, "seconds must be more than 0"),
        ({"mode": "500", "count": 0}, "count must be a whole number of calls, at least 1"),
        ({"mode": "500", "count": 1.5}, "count must be a whole number"),
        ({"mode": "500", "fraction": 0}, "fraction must be more than 0 and at most 1"),
        ({"mode": "500", "fraction": 1.5}, "fraction must be more than 0 and at most 1"),
        ({"mode": "500", "methods": []}, "methods must be Web API method names"),
        ({"mode": "429", "retry_after": -1}, "retry_after must be whole seconds"),
        ({"mode": "timeout", "hold": 0}, "hold must be more than 0 seconds"),
    ],
)
def test_bad_arguments_are_refused_by_name_and_add_nothing(kwargs: dict[str, Any], complaint: str) -> None:
    plan = FaultPlan(clock=Clock())
    mode = kwargs.pop("mode")
    with pytest.raises(ValueError, match=complaint.replace("(", r"\(")):
        plan.add(mode, **kwargs)
    assert plan.faults == []


# -- over HTTP ----------------------------------------------------------------------------------------------------


async def test_429_answers_ratelimited_with_retry_after_and_applies_nothing(
    emu: SlackEmulator,
    http: aiohttp.ClientSession,
) -> None:
    emu.faults.add("429", methods=["chat.postMessage"], count=1, retry_after=3)
    async with http.post(
        emu.api_url + "chat.postMessage",
        json={"channel": "#general", "text": "hi"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "3"
        assert await response.json() == {"ok": False, "error": "ratelimited"}
    assert "hi" not in _texts(emu)
    (call,) = emu.calls_to("chat.postMessage")
    assert (call.status, call.error, call.fault) == (429, "ratelimited", "429")


async def test_slack_sdk_retry_handler_gets_through_a_counted_429(
    emu: SlackEmulator,
    http: aiohttp.ClientSession,
) -> None:
    client = AsyncWebClient(
        token=TOKEN,
        base_url=emu.api_url,
        session=http,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=5)],
    )
    emu.faults.add("429", methods=["chat.postMessage"], count=2, retry_after=0)
    await client.chat_postMessage(channel="#general", text="after two 429s")
    assert _texts(emu).count("after two 429s") == 1
    assert [c.fault for c in emu.calls_to("chat.postMessage")] == ["429", "429", None]


async def test_500_is_internal_error_and_applies_nothing(client: AsyncWebClient, emu: SlackEmulator) -> None:
    emu.faults.add("500", count=1)
    with pytest.raises(SlackApiError) as raised:
        await client.chat_postMessage(channel="#general", text="lost")
    assert raised.value.response.status_code == 500
    assert raised.value.response["error"] == "internal_error"
    assert "lost" not in _texts(emu)
    await client.chat_postMessage(channel="#general", text="next")  # the count is spent
    assert [(c.status, c.fault) for c in emu.calls_to("chat.postMessage")] == [(500, "500"), (200, None)]


async def test_html502_is_a_proxy_page_not_json(emu: SlackEmulator, http: aiohttp.ClientSession) -> None:
    emu.faults.add("html502", seconds=60)
    async with http.post(
        emu.api_url + "chat.postMessage",
        json={"channel": "#general", "text": "hi"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as response:
        assert response.status == 502
        assert response.content_type == "text/html"
        assert await response.text() == HTML_502
    assert "hi" not in _texts(emu)
    (call,) = emu.calls_to("chat.postMessage")
    assert (call.status, call.ok, call.fault) == (502, False, "html502")


async def test_applied_then_500_stores_the_message_but_answers_500(client: AsyncWebClient, emu: SlackEmulator) -> None:
    emu.faults.add("applied_then_500", methods=["chat.postMessage"], count=1)
    with pytest.raises(SlackApiError) as raised:
        await client.chat_postMessage(channel="#general", text="applied anyway")
    assert raised.value.response.status_code == 500
    assert _texts(emu).count("applied anyway") == 1
    (call,) = emu.calls_to("chat.postMessage")
    assert (call.status, call.error, call.fault) == (500, "internal_error", "applied_then_500")


async def test_applied_then_500_of_a_call_that_fails_anyway_gets_the_real_error(
    client: AsyncWebClient,
    emu: SlackEmulator,
) -> None:
    emu.faults.add("applied_then_500", count=1)
    with pytest.raises(SlackApiError) as raised:
        await client.chat_postMessage(channel="#no-such-channel", text="nowhere")
    assert raised.value.response.status_code == 200
    assert raised.value.response["error"] == "channel_not_found"


async def test_timeout_holds_past_the_client_timeout_then_clear_lets_it_go(
    emu: SlackEmulator,
    http: aiohttp.ClientSession,
) -> None:
    # No session: slack_sdk applies `timeout` only to the session it makes itself (it ignores it with a given one).
    client = AsyncWebClient(token=TOKEN, base_url=emu.api_url, retry_handlers=[], timeout=1)
    emu.faults.add("timeout", methods=["chat.postMessage"], count=1, hold=60)
    with pytest.raises(TimeoutError):
        await client.chat_postMessage(channel="#general", text="held")
    assert "held" not in _texts(emu)
    emu.faults.clear()
    # The held request ends soon after clear(), and is recorded then. Shorter than the default deadline on purpose:
    # the hold would end by itself after 60 s, so only a wait well inside that proves clear() let it go.
    await eventually(
        lambda: emu.calls_to("chat.postMessage"), "the held request to end once the faults were cleared", deadline=30
    )
    (call,) = emu.calls_to("chat.postMessage")
    assert (call.status, call.error, call.fault) == (504, "timeout", "timeout")
    await client.chat_postMessage(channel="#general", text="after")
    assert _texts(emu).count("after") == 1


async def test_a_held_request_does_not_hold_up_shutdown() -> None:
    emulator = SlackEmulator(signing_secret="faults-test-secret", bot_token=TOKEN, workspace=Workspace.demo())
    runner, origin = await start_site(emulator.make_app(page=False))
    emulator.origin = origin
    emulator.faults.add("timeout", hold=600)
    client = AsyncWebClient(token=TOKEN, base_url=emulator.api_url, retry_handlers=[], timeout=1)
    with pytest.raises(TimeoutError):
        await client.auth_test()
    # 30 s rather than the default deadline: far less than the 600 s hold, yet generous under load.
    await within(runner.cleanup(), "the emulator to shut down with a request still held", deadline=30)
    assert [c.fault for c in emulator.calls] == ["timeout"]


async def test_calls_failing_authentication_are_not_faulted(emu: SlackEmulator, http: aiohttp.ClientSession) -> None:
    emu.faults.add("500")
    async with http.post(emu.api_url + "auth.test", headers={"Authorization": "Bearer xoxb-wrong"}) as response:
        assert response.status == 200
        assert (await response.json())["error"] == "invalid_auth"
    assert [c.fault for c in emu.calls] == [None]
