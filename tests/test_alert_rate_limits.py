"""Slack's rate limit holds up no alert: the consumer, which posts a new group's message itself (`group_wait: 0s`),
never waits out a 429, nor does the flusher, which leaves a rate-limited channel alone until Slack's Retry-After ends
and goes on with the others. Thread replies (an alert resolved) are queued with the change they tell of, and sent by
the flusher once the message exists, all that are queued as one reply. Each against the real bot, the emulator and a
real Redis.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.shell.config import ChatopsConfig, parse_config
from tests.conftest import BotHarness
from tests.state import state
from tests.test_alert_delivery_faults import (
    TOKEN,
    alertmanager_body,
    assert_each_posted_once,
    idle,
    posts_naming,
    send,
)
from tests.test_alert_delivery_faults import (
    config_text as delivery_config,
)
from tests.waiting import eventually

# Long enough that the bot's work on the next webhook is surely done before it ends, even on a loaded machine.
# Before, the consumer slept this long inside slack_sdk, with every alert behind it.
RETRY_AFTER_SECONDS = 12


def config_text(group_wait: str) -> str:
    """The delivery-fault tests' configuration, with alerts of team db routed to #incidents."""
    return delivery_config(group_wait) + '  routes:\n    - {match: {team: db}, channel: "#incidents"}\n'


@pytest.fixture(params=["0s"])
def bot_config(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ChatopsConfig:
    monkeypatch.setenv("TEST_AM_TOKEN", TOKEN)
    return parse_config(config_text(request.param), "rate-limits.yaml")


async def grouped(bot: BotHarness, name: str) -> dict[str, Any] | None:
    """The stored group (id, posted?, message ts) holding an alert named `name`, if any."""
    store = state(bot).alerts
    for group_id in await store.firing_ids():
        group = await store.get_group(group_id)
        if group is not None and any(m.labels.get("alertname") == name for m in group.members.values()):
            return {"id": group_id, "posted": group.message_ts is not None, "ts": group.message_ts}
    return None


def disk_alerts(count: int, status: str) -> dict[str, Any]:
    """An Alertmanager webhook body: `count` DiskFull alerts (one group) on hosts disk-0…, firing or resolved."""
    sample = json.loads((Path(__file__).parent / "fixtures" / "alertmanager-firing.json").read_text())
    alerts = []
    for n in range(count):
        alert = copy.deepcopy(sample["alerts"][0])
        alert["labels"] = {**alert["labels"], "alertname": "DiskFull", "instance": f"disk-{n}"}
        alert["annotations"] = {**alert.get("annotations", {}), "summary": f"Disk full on disk-{n}"}
        alert["fingerprint"] = f"fp-disk-{n}"
        alert["status"] = status
        alerts.append(alert)
    return {**sample, "status": status, "alerts": alerts}


async def send_body(url: str, body: dict[str, Any]) -> int:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/alerts/alertmanager", json=body, headers=headers) as response,
    ):
        return response.status


async def test_a_rate_limited_post_does_not_hold_up_the_alerts_behind_it(bot: BotHarness) -> None:
    bot.emulator.faults.add("429", methods=["chat.postMessage"], count=1, retry_after=RETRY_AFTER_SECONDS)
    assert await send(bot.url, ["LimitedFirst"]) == 200
    limited = await eventually(lambda: grouped(bot, "LimitedFirst"), "the first alert in its group")
    assert await send(bot.url, ["BehindIt"]) == 200

    behind = await eventually(lambda: grouped(bot, "BehindIt"), "the second webhook's alert in its group")
    first_now = await grouped(bot, "LimitedFirst")
    assert first_now is not None and not first_now["posted"], "the rate-limited post waits for Retry-After"
    assert not behind["posted"], "a new group in a rate-limited channel waits for Retry-After too"
    limited_calls = [c for c in bot.emulator.calls_to("chat.postMessage") if c.status == 429]
    assert len(limited_calls) == 1, "nothing is sent into a channel Slack asked us to leave alone"

    await assert_each_posted_once(bot, ["LimitedFirst", "BehindIt"])
    assert limited["id"] != behind["id"]
    assert not bot.emulator.calls_to("conversations.history"), "a 429 posted nothing: no history search"


async def test_resolves_become_a_few_thread_replies_and_hold_up_nothing(bot: BotHarness) -> None:
    """Before, each resolved alert was one reply posted by the consumer itself, waiting out every 429."""
    assert await send_body(bot.url, disk_alerts(30, "firing")) == 200
    group = await eventually(lambda: posted_group(bot, "DiskFull"), "the DiskFull message posted")
    bot.emulator.faults.add("429", methods=["chat.postMessage"], count=1, retry_after=RETRY_AFTER_SECONDS)
    assert await send_body(bot.url, disk_alerts(30, "resolved")) == 200
    await eventually(lambda: resolved(bot, group["id"]), "the group resolved")
    await eventually(
        lambda: any(c.status == 429 for c in bot.emulator.calls_to("chat.postMessage")), "the reply rate-limited"
    )
    assert await send(bot.url, ["AfterTheResolves"]) == 200
    await eventually(lambda: grouped(bot, "AfterTheResolves"), "the next webhook's alert in its group")
    assert thread_replies(bot, group["ts"]) == [], "the replies wait for Slack's Retry-After; the consumer does not"

    await eventually(lambda: thread_replies(bot, group["ts"]), "the resolves told in the thread")
    await eventually(lambda: idle(bot), "delivery idle")
    (reply,) = thread_replies(bot, group["ts"])
    assert len(resolved_lines(bot, group["ts"])) == 10, "ten of the thirty named"
    assert "…and 20 more" in reply["text"], "the others counted"
    await assert_each_posted_once(bot, ["AfterTheResolves"])
    assert not bot.emulator.calls_to("conversations.replies"), "a 429 sent nothing: no search of the thread"


@pytest.mark.parametrize("bot_config", ["1s"], indirect=True)
async def test_a_rate_limited_channel_does_not_hold_up_another_channels_messages(bot: BotHarness) -> None:
    """Before, the flusher waited out each 429 in place: a busy channel held up every other channel's alerts."""
    bot.emulator.set_rate_limit(0.1)  # a message every 10 s in each channel, after the first
    busy = ["BusyOne", "BusyTwo", "BusyThree"]
    assert await send(bot.url, busy) == 200
    database = alertmanager_body(["DatabaseDown"])
    database["alerts"][0]["labels"]["team"] = "db"
    assert await send_body(bot.url, database) == 200

    await eventually(lambda: posts_naming(bot.emulator, "#incidents", "DatabaseDown"), "the #incidents alert posted")
    posted = [name for name in busy if posts_naming(bot.emulator, "#alerts", name)]
    assert len(posted) < len(busy), "#incidents did not wait for the rate-limited #alerts"
    await assert_each_posted_once(bot, busy)
    assert len(posts_naming(bot.emulator, "#incidents", "DatabaseDown")) == 1


async def posted_group(bot: BotHarness, name: str) -> dict[str, Any] | None:
    found = await grouped(bot, name)
    return found if found and found["posted"] else None


async def resolved(bot: BotHarness, group_id: str) -> bool:
    group = await state(bot).alerts.get_group(group_id)
    return group is not None and group.state == "resolved"


def thread_replies(bot: BotHarness, thread_ts: str) -> list[dict[str, Any]]:
    return [m for m in bot.emulator.messages("#alerts") if m.get("thread_ts") == thread_ts and m["ts"] != thread_ts]


def resolved_lines(bot: BotHarness, thread_ts: str) -> list[str]:
    """The "resolved" lines in the thread."""
    return [
        line
        for reply in thread_replies(bot, thread_ts)
        for line in str(reply.get("text", "")).splitlines()
        if "*DiskFull* resolved" in line
    ]


@pytest.mark.parametrize("mode", ["500", "html502"])
async def test_queued_replies_survive_slack_failing(bot: BotHarness, mode: str) -> None:
    """A reply Slack fails to take (5xx, a proxy's HTML page) stays queued and goes out once Slack is back, once."""
    assert await send_body(bot.url, disk_alerts(3, "firing")) == 200
    group = await eventually(lambda: posted_group(bot, "DiskFull"), "the DiskFull message posted")
    bot.emulator.faults.add(mode, methods=["chat.postMessage"], count=2)
    assert await send_body(bot.url, disk_alerts(3, "resolved")) == 200
    await eventually(lambda: len(resolved_lines(bot, group["ts"])) == 3, "the resolves told in the thread")
    await eventually(lambda: idle(bot), "delivery idle")
    assert len(thread_replies(bot, group["ts"])) == 1, "one reply, sent once"
    assert [c.fault for c in bot.emulator.calls_to("chat.postMessage") if c.fault] == [mode, mode]


async def test_a_reply_slack_took_but_did_not_confirm_is_not_sent_again(bot: BotHarness) -> None:
    """Before: a reply Slack applied but answered 500 for, or one sent just before a kill -9 (the process died before
    recording it), was sent again by the retry. Now the retry finds it in the thread by its metadata key."""
    assert await send_body(bot.url, disk_alerts(3, "firing")) == 200
    group = await eventually(lambda: posted_group(bot, "DiskFull"), "the DiskFull message posted")
    bot.emulator.faults.add("applied_then_500", methods=["chat.postMessage"], count=1)
    assert await send_body(bot.url, disk_alerts(3, "resolved")) == 200
    await eventually(lambda: len(resolved_lines(bot, group["ts"])) == 3, "the resolves told in the thread")
    await eventually(lambda: idle(bot), "delivery idle")
    await eventually(lambda: bot.emulator.calls_to("conversations.replies"), "the retry looked in the thread")
    await eventually(lambda: idle(bot), "delivery idle after the retry")
    assert len(thread_replies(bot, group["ts"])) == 1, "the reply Slack took, not a second one"
    assert [c.fault for c in bot.emulator.calls_to("chat.postMessage") if c.fault] == ["applied_then_500"]
    await eventually(lambda: len_queued(bot, group["id"], 0), "the sent replies no longer queued")


async def test_a_retried_reply_sends_the_same_lines_under_the_same_key(bot: BotHarness) -> None:
    """A reply that may have reached Slack is retried with the lines of the first attempt, not with whatever was
    queued since (those follow in their own reply), so that finding it means exactly those lines were told."""
    store = state(bot).alerts
    assert await send_body(bot.url, disk_alerts(2, "firing")) == 200
    group = await eventually(lambda: posted_group(bot, "DiskFull"), "the DiskFull message posted")
    bot.emulator.faults.add("500", methods=["chat.postMessage", "conversations.replies"])  # until cleared
    first = disk_alerts(2, "resolved")
    first["alerts"] = first["alerts"][:1]
    assert await send_body(bot.url, first) == 200
    await eventually(lambda: [c for c in bot.emulator.calls_to("chat.postMessage") if c.fault], "a reply failed")
    attempt = await store.begin_reply(group["id"], 99)  # what a process taking over after a kill -9 sees
    assert (attempt.first, attempt.used) == (False, 1)
    second = disk_alerts(2, "resolved")
    second["alerts"] = second["alerts"][1:]
    assert await send_body(bot.url, second) == 200
    await eventually(lambda: len_queued(bot, group["id"], 2), "the second resolve queued behind the first")
    bot.emulator.faults.clear()
    await eventually(lambda: len(resolved_lines(bot, group["ts"])) == 2, "both resolves told")
    await eventually(lambda: idle(bot), "delivery idle")
    replies = thread_replies(bot, group["ts"])
    assert [len(str(r["text"]).splitlines()) for r in replies] == [1, 1], "the retried reply kept its one line"


async def len_queued(bot: BotHarness, group_id: str, count: int) -> bool:
    return len(await state(bot).alerts.queued_replies(group_id, 100)) == count
