"""Sentry and Datadog alerts end to end through the running bot: signed bodies shaped as Sentry documents them
(tests/fixtures/sentry/) and Datadog's payload template into `POST /alerts/sentry` and `/alerts/datadog`, the Redis
Stream, routing by label and one Slack message per lifecycle in the emulator; forged requests get 401 and store
nothing; a redelivered Request-ID (Sentry) or event id (Datadog) is stored once."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.shell.config import ChatopsConfig, parse_config
from tests.conftest import BotHarness
from tests.integrations.test_alerts_datadog import filled
from tests.state import state
from tests.waiting import eventually

SENTRY_SECRET = "sentry-e2e-client-secret-91d2"
DD_TOKEN = "dd-e2e-token-58be"
FIXTURES = Path(__file__).parent / "fixtures" / "sentry"
CONFIG = """
roles: {admins: [U0DEMO], responders: [U0BOB, U0DEMO, U0ALICE]}
alerts:
  default_channel: "#alerts"
  group_wait: 0s
  sources:
    sentry: {client_secret_env: TEST_SENTRY_SECRET}
    datadog: {token_env: TEST_DD_TOKEN}
  routes:
    - {match: {service: web}, channel: "#deploys"}
    - {match: {project: front-end}, channel: "#incidents"}
"""


@pytest.fixture
def bot_config(monkeypatch: pytest.MonkeyPatch) -> ChatopsConfig:
    monkeypatch.setenv("TEST_SENTRY_SECRET", SENTRY_SECRET)
    monkeypatch.setenv("TEST_DD_TOKEN", DD_TOKEN)
    return parse_config(CONFIG, "alerts.yaml")


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


async def post(bot: BotHarness, source: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", **headers}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{bot.url}/alerts/{source}", data=body, headers=headers) as response,
    ):
        text = await response.text()
        return response.status, (json.loads(text) if text else None)


async def sentry(
    bot: BotHarness,
    resource: str,
    body: dict[str, Any],
    *,
    request_id: str | None = None,
    signature: str | None = "auto",
) -> tuple[int, Any]:
    """POSTs as Sentry does: the resource, a Request-ID and the HMAC-SHA256 of the body with the client secret."""
    raw = json.dumps(body).encode()
    headers = {
        "Sentry-Hook-Resource": resource,
        "Request-ID": request_id or str(uuid.uuid4()),
        "Sentry-Hook-Timestamp": "1714564800",
    }
    if signature is not None:
        headers["Sentry-Hook-Signature"] = (
            hmac.new(SENTRY_SECRET.encode(), raw, hashlib.sha256).hexdigest() if signature == "auto" else signature
        )
    return await post(bot, "sentry", raw, headers)


async def datadog(bot: BotHarness, body: dict[str, Any], token: str | None = DD_TOKEN) -> tuple[int, Any]:
    """POSTs as Datadog's webhook does with chatops' template and the custom Authorization header."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return await post(bot, "datadog", json.dumps(body).encode(), headers)


async def stream_length(bot: BotHarness) -> int:
    store = state(bot).alerts
    return int(await store.redis.xlen(store.k("stream")))


async def group_count(bot: BotHarness) -> int:
    store = state(bot).alerts
    return int(await store.redis.zcard(store.k("groups")))


async def delivered(bot: BotHarness) -> bool:
    """Whether the consumer group has read and acknowledged every entry in the stream."""
    store = state(bot).alerts
    stream = store.k("stream")
    last = await store.redis.xrevrange(stream, count=1)
    if not last:
        return True
    groups = await store.redis.xinfo_groups(stream)
    return any(g["name"] == "delivery" and g["last-delivered-id"] == last[0][0] and g["pending"] == 0 for g in groups)


def top_level(bot: BotHarness, channel: str) -> list[dict[str, Any]]:
    return [m for m in bot.emulator.messages(channel) if not m.get("thread_ts") or m.get("thread_ts") == m["ts"]]


def rendered(message: dict[str, Any]) -> str:
    return message["text"] + json.dumps(message.get("blocks", []))


async def test_sentry_metric_alert_posts_dedupes_by_request_id_updates_and_resolves(bot: BotHarness) -> None:
    status, answer = await sentry(bot, "metric_alert", fixture("metric_alert-critical"), request_id="req-1")
    assert (status, answer) == (200, {"accepted": 1, "truncated": 0})
    status, answer = await sentry(bot, "metric_alert", fixture("metric_alert-critical"), request_id="req-1")
    assert (status, answer) == (200, {"accepted": 0, "truncated": 0, "duplicate": True})
    assert await stream_length(bot) == 1

    await eventually(lambda: len(top_level(bot, "#alerts")) == 1, "the critical metric alert posted in #alerts")
    message = top_level(bot, "#alerts")[0]
    for shown in ("Too many errors", "project=bar", "https://sentry.io/organizations/baz/alerts/1/"):
        assert shown in rendered(message), shown

    assert (await sentry(bot, "metric_alert", fixture("metric_alert-warning")))[0] == 200
    await eventually(lambda: delivered(bot), "the warning delivered")
    assert await group_count(bot) == 1  # the same lifecycle: no second group, so no second message

    assert (await sentry(bot, "metric_alert", fixture("metric_alert-resolved")))[0] == 200
    await eventually(lambda: "RESOLVED" in top_level(bot, "#alerts")[0]["text"], "the alert's message says RESOLVED")
    assert len(top_level(bot, "#alerts")) == 1 and await group_count(bot) == 1


async def test_sentry_issue_alert_routes_by_project_and_resolving_the_issue_resolves_it(bot: BotHarness) -> None:
    fired = fixture("event_alert-triggered")
    fired["data"]["event"]["issue_id"] = "1170820242"  # the issue of the issues.mdx bodies
    fired["data"]["event"]["tags"].append(["environment", "production"])
    assert (await sentry(bot, "event_alert", fired))[0] == 200
    await eventually(lambda: len(top_level(bot, "#incidents")) == 1, "the issue alert posted in #incidents")
    message = top_level(bot, "#incidents")[0]
    for shown in (
        "ReferenceError: heck is not defined",
        "project=front-end",
        "environment=production",
        "level=error",
        "?(&lt;anonymous&gt;)",
        "/issues/1117540176/events/",
    ):
        assert shown in rendered(message), shown

    assert (await sentry(bot, "event_alert", fired))[0] == 200  # the rule fires again for the same issue
    await eventually(lambda: "Notifications" in rendered(top_level(bot, "#incidents")[0]), "the repeat counted")

    status, answer = await sentry(bot, "issue", fixture("issue-assigned"))
    assert (status, answer) == (204, None)
    assert await stream_length(bot) == 2

    assert (await sentry(bot, "issue", fixture("issue-resolved")))[0] == 200
    await eventually(lambda: "RESOLVED" in top_level(bot, "#incidents")[0]["text"], "resolved with the issue")
    assert await group_count(bot) == 1 and top_level(bot, "#alerts") == []


async def test_forged_or_ignored_sentry_requests_store_nothing(bot: BotHarness) -> None:
    body = fixture("metric_alert-critical")
    assert await sentry(bot, "metric_alert", body, signature=None) == (
        401,
        {"error": "missing Sentry-Hook-Signature header"},
    )
    forged = hmac.new(b"guessed-secret", json.dumps(body).encode(), hashlib.sha256).hexdigest()
    assert await sentry(bot, "metric_alert", body, signature=forged, request_id="req-7") == (
        401,
        {"error": "bad signature"},
    )
    assert await sentry(bot, "installation", fixture("installation-created")) == (204, None)
    assert await stream_length(bot) == 0
    # the forged request did not use up its Request-ID: the genuine delivery is stored
    assert await sentry(bot, "metric_alert", body, request_id="req-7") == (200, {"accepted": 1, "truncated": 0})
    assert await stream_length(bot) == 1


async def test_datadog_alert_routes_by_tag_dedupes_and_recovers(bot: BotHarness) -> None:
    status, answer = await datadog(bot, filled())
    assert (status, answer) == (200, {"accepted": 1, "truncated": 0})
    assert await datadog(bot, filled()) == (200, {"accepted": 0, "truncated": 0, "duplicate": True})  # same $ID
    assert await stream_length(bot) == 1
    await eventually(lambda: len(top_level(bot, "#deploys")) == 1, "the Datadog alert posted in #deploys (service:web)")
    message = top_level(bot, "#deploys")[0]
    for shown in ("Host is Down", "service=web", "monitor_id=1234", "app.datadoghq.com/event/event"):
        assert shown in rendered(message), shown

    renotified = filled(
        id="7301652424394857284", transition="Re-Triggered", title="[Re-Triggered on {host:ip-012345}] Host is Down"
    )
    assert (await datadog(bot, renotified))[0] == 200
    await eventually(lambda: "Notifications" in rendered(top_level(bot, "#deploys")[0]), "the repeat counted")
    assert await group_count(bot) == 1

    recovered = filled(
        id="7301652424394857285", transition="Recovered", title="[Recovered on {host:ip-012345}] Host is Down"
    )
    assert (await datadog(bot, recovered))[0] == 200
    await eventually(lambda: "RESOLVED" in top_level(bot, "#deploys")[0]["text"], "the message says RESOLVED")
    assert top_level(bot, "#alerts") == []


async def test_forged_or_malformed_datadog_requests_store_nothing(bot: BotHarness) -> None:
    assert await datadog(bot, filled(), token=None) == (401, {"error": "missing bearer token"})
    assert await datadog(bot, filled(), token="guessed") == (401, {"error": "bad bearer token"})
    body = filled()
    del body["transition"]
    assert await datadog(bot, body) == (
        400,
        {"error": "transition is missing: the body is not chatops' Datadog payload template"},
    )
    assert await stream_length(bot) == 0
