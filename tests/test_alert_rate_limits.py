"""Slack rate-limiting new alert messages (`group_wait: 0s`) holds up no alert: the consumer, which posts a new
group's message itself, never waits out a 429. The rate-limited group and every new group in that channel until
Slack's Retry-After ends are posted by the flusher once it ends, each exactly once, without a history search (a 429
means nothing was posted). Against the real bot, the emulator and a real Redis.
"""

from __future__ import annotations

import pytest

from bot.shell.config import ChatopsConfig, parse_config
from tests.conftest import BotHarness
from tests.state import state
from tests.test_alert_delivery_faults import TOKEN, assert_each_posted_once, config_text, posts_naming, send
from tests.waiting import eventually

# Long enough that the consumer's work on the second webhook is surely done before it ends, even on a loaded
# machine; before the fix the consumer slept this long inside slack_sdk, the second webhook's alerts behind it.
RETRY_AFTER_SECONDS = 12


@pytest.fixture
def bot_config(monkeypatch: pytest.MonkeyPatch) -> ChatopsConfig:
    monkeypatch.setenv("TEST_AM_TOKEN", TOKEN)
    return parse_config(config_text("0s"), "rate-limits.yaml")


async def grouped(bot: BotHarness, name: str) -> dict[str, object] | None:
    """The stored group (id, posted?) holding alert `name`, if any."""
    store = state(bot).alerts
    for group_id in await store.firing_ids():
        group = await store.get_group(group_id)
        if group is not None and any(m.labels.get("alertname") == name for m in group.members.values()):
            return {"id": group_id, "posted": group.message_ts is not None}
    return None


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
    assert len(posts_naming(bot.emulator, "#alerts", "LimitedFirst")) == 1
