"""The alert consumer's pacing (bot/alerts/pacing.py): behind, with webhooks still arriving, it rests after each batch
so that the webhooks keep most of the process; it never stops delivering while they arrive, and once they stop it
delivers the whole backlog."""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from bot.alerts.pacing import MAX_REST_SECONDS, REST_PER_BUSY, Batch, rest_after
from bot.alerts.pipeline import READ_BATCH
from bot.alerts.store import CONSUMER_GROUP
from bot.shell.config import ChatopsConfig, parse_config
from tests.conftest import BotHarness
from tests.state import state
from tests.waiting import eventually

TOKEN = "am-pacing-token-7d21"
FIXTURES = Path(__file__).parent / "fixtures"
CONFIG = """
roles: {admins: [U0DEMO]}
alerts:
  default_channel: "#alerts"
  group_by: [alertname]
  group_wait: 0s
  sources:
    alertmanager: {token_env: TEST_AM_TOKEN}
"""


# -- the rule ----------------------------------------------------------------------------------------------------


def test_a_consumer_that_keeps_up_never_rests() -> None:
    assert rest_after(Batch(seconds=0.2, behind=False, webhooks_meanwhile=500)) == 0


def test_a_consumer_behind_with_no_webhook_arriving_never_rests() -> None:
    assert rest_after(Batch(seconds=0.2, behind=True, webhooks_meanwhile=0)) == 0


def test_behind_with_webhooks_arriving_it_rests_in_proportion_to_its_batch() -> None:
    assert rest_after(Batch(seconds=0.1, behind=True, webhooks_meanwhile=3)) == pytest.approx(0.1 * REST_PER_BUSY)


def test_no_rest_is_longer_than_the_cap() -> None:
    assert rest_after(Batch(seconds=60, behind=True, webhooks_meanwhile=1)) == MAX_REST_SECONDS


# -- in the running bot ------------------------------------------------------------------------------------------


@pytest.fixture
def bot_config(monkeypatch: pytest.MonkeyPatch) -> ChatopsConfig:
    monkeypatch.setenv("TEST_AM_TOKEN", TOKEN)
    return parse_config(CONFIG, "pacing.yaml")


def storm_body(first: int, count: int) -> bytes:
    """Alertmanager's real firing body (tests/fixtures) with `count` alerts of one group, numbered from `first`."""
    sample = json.loads((FIXTURES / "alertmanager-firing.json").read_text())
    template = sample["alerts"][0]
    sample["alerts"] = []
    for n in range(first, first + count):
        alert = copy.deepcopy(template)
        alert["labels"] |= {"alertname": "Storm", "instance": f"host-{n}"}
        alert["fingerprint"] = f"fp-storm-{n}"
        sample["alerts"].append(alert)
    return json.dumps(sample).encode()


async def delivered_entries(bot: BotHarness) -> int:
    """Stream entries the consumer group has read and acknowledged."""
    store = state(bot).alerts
    stream = store.k("stream")
    [group] = [g for g in await store.redis.xinfo_groups(stream) if g["name"] == CONSUMER_GROUP]
    read_up_to = group["last-delivered-id"]
    read = len(await store.redis.xrange(stream, "-", read_up_to)) if read_up_to != "0-0" else 0
    return read - int(group["pending"])


async def test_delivery_goes_on_while_webhooks_keep_coming_and_the_backlog_is_delivered_when_they_stop(
    bot: BotHarness,
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    answers: list[int] = []
    sent = 0

    async with aiohttp.ClientSession() as session:

        async def send(first: int) -> None:
            async with session.post(
                f"{bot.url}/alerts/alertmanager", data=storm_body(first, 5), headers=headers
            ) as response:
                answers.append(response.status)

        async def keep_sending() -> None:
            nonlocal sent
            while not stop.is_set():  # 16 webhooks in flight at a time: the consumer stays behind
                await asyncio.gather(*(send(5 * (sent + n)) for n in range(16)))
                sent += 16

        # A backlog of three full batches, written straight to the stream as the webhook would: the consumer is
        # behind from the start, and the webhooks that keep coming make it rest after each batch.
        store = state(bot).alerts
        now = datetime.now(UTC)
        backlog = [storm_body(100_000 + 5 * n, 5) for n in range(3 * READ_BATCH)]
        stop = asyncio.Event()
        load = asyncio.create_task(keep_sending())
        try:
            await asyncio.gather(*(store.append_raw("alertmanager", body, 5, now) for body in backlog))
            during = await delivered_entries(bot)
            # The load goes on until the consumer has delivered two more full batches: were it starved, this fails.
            await eventually(
                lambda: _more_than(bot, during + 2 * READ_BATCH), "delivery going on while webhooks keep coming"
            )
            assert not load.done()
        finally:
            stop.set()
            await load

    assert answers and set(answers) == {200}
    stored = await store.redis.xlen(store.k("stream"))
    assert stored == len(backlog) + len(answers)  # every 2xx is in the stream
    await eventually(
        lambda: _more_than(bot, stored - 1), f"all {stored} entries delivered once the webhooks stopped", deadline=120
    )


async def _more_than(bot: BotHarness, count: int) -> bool:
    return await delivered_entries(bot) > count
