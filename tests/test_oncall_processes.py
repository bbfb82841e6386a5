"""Escalation across processes, in real time with a short policy: two bots against one Redis page each step
once; a `chatops serve` killed after paging and started again pages the next step once, on schedule."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from bot.alerts.model import AlertGroup
from bot.alerts.store import AlertStore
from bot.emulator import SlackEmulator
from bot.platform.embedded_redis import free_port
from bot.platform.keys import Keys
from bot.platform.metrics import Metrics
from bot.platform.store import Store
from bot.shell.config import parse_config
from integrations.alerts.model import Alert
from tests.conftest import BotHarness, serve_environment, start_bot, wait_ready
from tests.state import state
from tests.waiting import eventually, job_runs

POLICY = """
roles: {{admins: [U0DEMO]}}
alerts:
  group_wait: 0s
  sources: {{alertmanager: {{token_env: CHATOPS_DEMO_ALERT_TOKEN}}}}
  routes:
    - {{match: {{severity: critical}}, escalation: fast}}
oncall:
  rotations:
    primary:   {{members: [U0ALICE], shift: 1d, handoff: "09:00", timezone: UTC, start: 2026-01-05}}
    secondary: {{members: [U0CAROL], shift: 1d, handoff: "09:00", timezone: UTC, start: 2026-01-05}}
  escalation_policies:
    fast:
      steps:
        - {{notify: primary, after: 0s}}
        - {{notify: secondary, after: {second}}}
        - {{notify: "#incidents", after: {third}}}
scheduler: {{tick: 200ms, lease: 1s}}
"""


def _alert(fingerprint: str) -> Alert:
    now = datetime.now(UTC)
    return Alert(
        source="alertmanager",
        fingerprint=fingerprint,
        status="firing",
        title="DatabaseDown",
        severity="critical",
        labels={"alertname": "DatabaseDown"},
        annotations={},
        summary="",
        starts_at=now,
        ends_at=None,
        links={},
    )


def _pages(emulator: SlackEmulator, user: str) -> list[dict[str, Any]]:
    channel = emulator.workspace.im_with(user, create=False)
    messages = emulator.messages(channel.id) if channel else []
    return [m for m in messages if "📟" in json.dumps(m.get("blocks", []), ensure_ascii=False)]


def _channel_pages(emulator: SlackEmulator, channel: str) -> list[dict[str, Any]]:
    return [m for m in emulator.messages(channel) if "📟" in json.dumps(m.get("blocks", []), ensure_ascii=False)]


async def _ticks_recorded(client: aioredis.Redis, count: int) -> None:
    """Returns once the leader (in whichever process) recorded `count` more runs of the escalation tick."""
    runs = Keys("chatops").scheduler("runs")
    seen: set[str | None] = set()

    async def ticked() -> bool:
        seen.add(await client.hget(runs, "escalation-tick"))
        return len(seen) > count

    await eventually(ticked, f"{count} more escalation ticks recorded in Redis")


async def _only_group(alerts: AlertStore) -> AlertGroup | None:
    groups = await alerts.groups(await alerts.recent_ids(datetime(2026, 1, 1, tzinfo=UTC)))
    return groups[0] if len(groups) == 1 else None


async def test_two_processes_against_one_redis_page_each_step_once(
    emulator: SlackEmulator,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHATOPS_DEMO_ALERT_TOKEN", "demo-alert-token")
    config = parse_config(POLICY.format(second="1s", third="2s"), "fast.yaml")
    started = [await start_bot(emulator, redis_url, config) for _ in range(2)]
    bots: list[BotHarness] = [harness for harness, _ in started]
    try:
        await eventually(lambda: _leaders(bots, 1), "exactly one of the two bots leading")
        await bots[0].deps.alerts.ingest([_alert("fp-two")])
        alerts = state(bots[1]).alerts

        async def exhausted() -> bool:
            group = await _only_group(alerts)
            return group is not None and group.escalation_state == "exhausted"

        await eventually(exhausted, "the escalation policy walked to its end")
        # Two more escalation ticks on the leader, begun after the walk ended: nothing more may be sent.
        leader = next(bot for bot in bots if bot.deps.scheduler.is_leader)
        await job_runs(leader.deps, "escalation-tick", 2)
        group = await _only_group(alerts)
        assert group is not None
        assert [p.number for p in group.pages] == [0, 1, 2]
        assert all(page.at >= page.due for page in group.pages)
        assert len(_pages(emulator, "U0ALICE")) == 1
        assert len(_pages(emulator, "U0CAROL")) == 1
        assert len(_channel_pages(emulator, "#incidents")) == 1
        assert sum(bot.deps.scheduler.is_leader for bot in bots) == 1
    finally:
        for _, runner in started:
            await runner.cleanup()


async def _leaders(bots: list[BotHarness], count: int) -> bool:
    return sum(bot.deps.scheduler.is_leader for bot in bots) == count


async def _serve(emulator: SlackEmulator, redis_url: str, config: Path) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "serve",
        env=serve_environment(emulator, redis_url, config, port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    origin = f"http://127.0.0.1:{port}"
    await wait_ready(origin)
    emulator.app_url = f"{origin}/slack/events"
    return process, origin


async def test_a_process_killed_after_paging_escalates_on_time_and_once_after_restart(
    emulator: SlackEmulator,
    redis_url: str,
    tmp_path: Path,
) -> None:
    path = tmp_path / "chatops.yaml"
    path.write_text(POLICY.format(second="5s", third="1h"))
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    alerts = AlertStore(Store(client, Keys("chatops"), Metrics()))
    first, origin = await _serve(emulator, redis_url, path)
    second = None
    try:
        body = {
            "version": "4",
            "status": "firing",
            "receiver": "chatops",
            "groupLabels": {},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager",
            "groupKey": "{}:{}",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "DatabaseDown", "severity": "critical"},
                    "annotations": {},
                    "startsAt": datetime.now(UTC).isoformat(),
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "",
                    "fingerprint": "fp-kill",
                }
            ],
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{origin}/alerts/alertmanager",
                json=body,
                headers={"Authorization": "Bearer demo-alert-token"},
            ) as response,
        ):
            assert response.status == 200, await response.text()

        async def first_page_recorded() -> bool:
            group = await _only_group(alerts)
            return group is not None and len(group.pages) == 1

        await eventually(first_page_recorded, "the first page recorded")
        first.kill()  # no clean shutdown: the lease stays until it expires
        await first.wait()
        second, _ = await _serve(emulator, redis_url, path)

        async def second_page_recorded() -> bool:
            group = await _only_group(alerts)
            return group is not None and len(group.pages) == 2

        await eventually(second_page_recorded, "the second page recorded by the restarted process")
        await _ticks_recorded(client, 2)  # the restarted leader ticked twice more: no third page, no second DM
        group = await _only_group(alerts)
        assert group is not None and group.escalation_started is not None
        assert len(_pages(emulator, "U0ALICE")) == 1 and len(_pages(emulator, "U0CAROL")) == 1
        page = group.pages[1]
        assert page.step == 1 and page.due - group.escalation_started == timedelta(seconds=5)  # the original schedule
        assert page.at >= page.due
        thread = [
            str(m["text"])
            for m in emulator.messages(group.message_channel or group.channel)
            if m.get("thread_ts") == group.message_ts
        ]
        assert not any("late" in text for text in thread), thread  # the bot itself judged the page on time
        assert group.pending is not None  # the third step (an hour later) is still waiting
    finally:
        for process in (first, second):
            if process is not None and process.returncode is None:
                process.terminate()
                await process.wait()
        await client.aclose()
