"""Metric gates end to end: slash commands through the Slack emulator, real Redis, the command provider running a
script, and a real Prometheus scraping a local exporter whose 5xx rate the test sets. A canary whose error rate
stays low bakes through every step with its metric shown live in the deploy message; one whose error rate crosses
the limit during a step's bake is rolled back automatically, the failure naming the metric, its value and limit."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.deploys.model import DeployRecord, DeployState
from bot.shell.config import ChatopsConfig, parse_config
from tests.conftest import BotHarness, fake_deploy_argv
from tests.deploy_messages import shown_message
from tests.health_servers import Exporter, PrometheusServer, error_rate_query
from tests.waiting import eventually

SERVICE_LABEL = "shop"  # the exporter's series for this module's service


@pytest.fixture
def deploy_dir(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "state").mkdir()
    yield tmp_path


@pytest.fixture
def bot_config(
    prometheus: PrometheusServer, exporter: Exporter, deploy_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> ChatopsConfig:
    exporter.set_error_ratio(SERVICE_LABEL, 0.0)
    prometheus.wait_for_series(error_rate_query(SERVICE_LABEL))  # the gate starts with data, not "no data"
    monkeypatch.setenv("PROMETHEUS_URL", prometheus.url)  # read by the engine when the bot starts
    env = f'{{DEPLOY_LOG: "{deploy_dir / "deploy.log"}", STATE_DIR: "{deploy_dir / "state"}"}}'
    query = error_rate_query(SERVICE_LABEL).replace("'", "''")
    return parse_config(
        f"""
slack: {{announce_channel: "#general"}}
roles:
  admins: [U0DEMO]
  deployers: [U0BOB]
deploys: {{lock_ttl: 3s}}
services:
  web:
    channel: "#deploys"
    environments:
      production:
        deployer: {{kind: command, argv: {fake_deploy_argv()}, env: {env}, timeout: 30s}}
        canary: [50, 100]
        auto_rollback: true
        analysis:
          bake: 3s
          interval: 500ms
          failure_limit: 2
          metrics:
            - {{name: error-rate, kind: prometheus, url_env: PROMETHEUS_URL, query: '{query}', max: 0.01}}
""",
        "gates.yaml",
    )


async def deploy(bot: BotHarness, text: str) -> str:
    result = await bot.emulator.send_command(command="/deploy", text=text, user_id="U0BOB", channel_id="C0GENERAL")
    assert result.status == 200 and result.json is not None, result
    return html.unescape(result.json["text"]).split("`")[1]


async def record_when(
    bot: BotHarness,
    deploy_id: str,
    condition,
    what: str,
) -> DeployRecord:
    found: list[DeployRecord] = []

    async def holds() -> bool:
        record = await bot.deps.deploys.get(deploy_id)
        if record is not None and condition(record):
            found.append(record)
            return True
        return False

    await eventually(holds, what)
    return found[0]


async def message_text(bot: BotHarness, record: DeployRecord) -> str:
    """The finished deploy's message blocks, once the message shows its final state."""
    message = await shown_message(bot.emulator, record)
    return html.unescape(str(message["blocks"]))


def thread(bot: BotHarness, record: DeployRecord) -> list[str]:
    assert record.channel
    return [
        html.unescape(str(m["text"]))
        for m in bot.emulator.messages(record.channel)
        if m.get("thread_ts") == record.message_ts and m["ts"] != record.message_ts
    ]


async def test_a_canary_whose_error_rate_crosses_its_limit_during_bake_rolls_back(
    bot: BotHarness,
    exporter: Exporter,
    deploy_dir: Path,
) -> None:
    # v1 bakes through both steps at a 0% error rate: the metric's line is edited in place, not posted per check.
    first = await deploy(bot, "web v1 to production")
    done = await record_when(bot, first, lambda r: r.terminal, "the first deploy to finish")
    assert done.state == DeployState.SUCCEEDED, done.detail
    assert done.analysis is not None and done.analysis.verdict == "passed" and done.analysis.checks_done == 6
    text = await message_text(bot, done)
    assert "*Metric gate* · step 2/2 (100%) · passed after 6 of 6 checks" in text
    assert ":white_check_mark: *error-rate* 0 (limit: max 0.01)" in text
    await eventually(lambda: any("is live in production" in line for line in thread(bot, done)), "the success reply")
    gate_lines = [line for line in thread(bot, done) if "metric gate" in line or "watching error-rate" in line]
    assert len(gate_lines) == 4, thread(bot, done)  # per step: "watching ..." and the verdict, never one per check
    assert not any("limit: max 0.01" in line for line in thread(bot, done))  # values live in the message only

    # v2: once step 1's bake has begun, the canary starts answering 5xx (the whole bake is left to notice it).
    second = await deploy(bot, "web v2 to production")
    baking = await record_when(
        bot,
        second,
        lambda r: r.analysis is not None and r.analysis.step.startswith("step 1/2"),
        "step 1 of v2 to be baking",
    )
    assert baking.state == DeployState.VERIFYING
    exporter.set_error_ratio(SERVICE_LABEL, 0.5)
    try:
        failed = await record_when(bot, second, lambda r: r.terminal, "the second deploy to finish")
    finally:
        exporter.set_error_ratio(SERVICE_LABEL, 0.0)
    assert failed.state == DeployState.ROLLED_BACK, failed.detail
    assert re.search(
        r"^metric gate failed at step 1/2 \(50%\): error-rate = 0\.[0-9]+ \(limit: max 0\.01\); "
        r"2 failed checks in this step, failure_limit 2\. Rolled back to v1 automatically\.$",
        failed.detail,
    ), failed.detail
    assert failed.analysis is not None and failed.analysis.verdict == "failed"
    text = await message_text(bot, failed)
    assert "*Metric gate* · step 1/2 (50%) · failed after" in text
    assert re.search(r":x: \*error-rate\* 0\.[0-9]+ \(limit: max 0\.01\) · 2/2 failed", text), text
    calls = (deploy_dir / "deploy.log").read_text().splitlines()
    assert calls[:3] == [
        "web v1 production 50 rollback=false",
        "web v1 production 100 rollback=false",
        "web v2 production 50 rollback=false",
    ]
    assert len(calls) == 4 and calls[3].startswith("web v1 production") and calls[3].endswith("rollback=true")
    assert await bot.deps.deploys.current_version("web", "production") == "v1"


def test_the_metric_lines_escape_what_vendors_said() -> None:
    from bot.deploys.model import AnalysisView, CheckLine
    from bot.deploys.render import analysis_text

    view = AnalysisView(
        step="step 1/3 (10%)",
        checks_done=2,
        checks=6,
        interval_seconds=20,
        failure_limit=2,
        lines=(
            CheckLine(name="error-rate", value="0.002", limit="max 0.01", ok=True),
            CheckLine(name="monitors", value="#123 Alert (<!channel> web)", limit="all OK", ok=False, failures=1),
            CheckLine(name="alarms"),
        ),
    )
    assert analysis_text(view).splitlines() == [
        "*Metric gate* · step 1/3 (10%) · check 2 of 6, every 20s",
        ":white_check_mark: *error-rate* 0.002 (limit: max 0.01)",
        ":x: *monitors* #123 Alert (&lt;!channel&gt; web) (limit: all OK) · 1/2 failed",
        ":hourglass_flowing_sand: *alarms* waiting for the first check",
    ]
