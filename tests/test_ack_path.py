"""The acknowledgement path: a command that only shows something answers without writing an idempotency record
(Slack does not retry slash commands), while a click on a button that changes something keeps its double-click
guard; and the serve path loads no AWS SDK and no Slack emulator. The bot's real web app, the Slack emulator and
a real Redis."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bot.shell.config import ChatopsConfig, parse_config
from tests.conftest import BotHarness
from tests.slack_signing import command_body, parse, post, signed_headers
from tests.state import posted_alert, state
from tests.waiting import eventually

CONFIG = """
roles: {admins: [U0DEMO]}
alerts:
  default_channel: "#alerts"
  group_wait: 0s
"""


@pytest.fixture
def bot_config() -> ChatopsConfig:
    return parse_config(CONFIG, "ack_path.yaml")


async def _idempotency_keys(bot: BotHarness) -> list[str]:
    return [key async for key in state(bot).redis.scan_iter(match="chatops:{idem}:*")]


async def _command(bot: BotHarness, command: str, text: str, trigger_id: str) -> dict:
    body = command_body(command, text, trigger_id=trigger_id)
    status, answer = await post(f"{bot.url}/slack/events", body, signed_headers(bot.signing_secret, body))
    assert status == 200, (command, text, status, answer)
    return parse(answer)


async def test_reads_write_no_idempotency_record_and_changes_keep_theirs(bot: BotHarness) -> None:
    answer = await _command(bot, "/chatops", "help", "1.1.help")
    assert "/deploy" in answer["text"]
    assert (await _command(bot, "/deploy", "help", "1.2.help"))["text"]
    assert (await _command(bot, "/chatops", "whoami", "1.3.whoami"))["text"].startswith("You are <@U0DEMO>")
    again = await _command(bot, "/chatops", "help", "1.1.help")  # the same request again: answered again
    assert again == answer
    assert await _idempotency_keys(bot) == [], "a read wrote an idempotency record"
    # A command that is not on the read-only list keeps its record (and a repeat of it runs nothing).
    assert "audit" in (await _command(bot, "/chatops", "audit", "1.4.audit"))["text"].lower()
    assert len(await _idempotency_keys(bot)) == 1
    assert await _command(bot, "/chatops", "audit", "1.4.audit") == {}


async def test_a_double_click_on_a_state_changing_button_is_still_guarded(bot: BotHarness) -> None:
    await _command(bot, "/chatops", "help", "2.1.help")
    assert await _idempotency_keys(bot) == []
    group = posted = await posted_alert(bot, "a-ackpath1")
    for _ in range(2):
        result = await bot.emulator.send_block_action(
            channel="#alerts", message_ts=posted.message_ts, action_id="alerts.ack", value=group.id, user_id="U0DEMO"
        )
        assert result.status == 200, result

    def answered() -> list[str]:
        return [m.get("text", "") for m in bot.emulator.messages("#alerts") if m.get("ephemeral_to") == "U0DEMO"]

    await eventually(
        lambda: any("already done" in text.lower() for text in answered()),
        'an ephemeral "already done" answer to the second click',
        deadline=20,
    )
    assert len(await _idempotency_keys(bot)) == 2, "each click is recorded before it runs"
    assert len(await bot.deps.alerts.acks()) == 1


SERVE_PATH = """
import sys
from pathlib import Path

from bot.shell import cli  # noqa: F401 - the `chatops` entry point
from bot.shell.composition import create_web_app
from bot.shell.config import load_config
from bot.shell.settings import Settings

settings = Settings.model_validate({
    "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "s3cr3t-signing", "SLACK_API_URL": "http://127.0.0.1:9/api/",
    "REDIS_URL": "redis://127.0.0.1:9/0",
})
create_web_app(settings, load_config(Path("examples/chatops.yaml")))
print(" ".join(name for name in LAZY if name in sys.modules))
"""


UNUSED_KINDS = [  # vendors examples/chatops.yaml does not name: imported only by a configuration that does
    "integrations.alerts.sns",
    "integrations.alerts.grafana",
    "integrations.alerts.sentry",
    "integrations.alerts.datadog",
    "integrations.alerts.generic",
    "cryptography.x509",
    "integrations.deploy.ecs",
    "integrations.deploy.github_actions",
    "integrations.deploy.webhook",
    "integrations.deploy.vercel",
    "integrations.health.prometheus",
    "integrations.health.cloudwatch_alarm",
    "integrations.health.datadog_monitor",
]


def test_the_serve_path_loads_no_aws_sdk_no_emulator_and_no_unused_vendor(repo_root: Path) -> None:
    lazy = ["boto3", "botocore", "s3transfer", "bot.emulator", "apscheduler.schedulers.asyncio", *UNUSED_KINDS]
    code = f"LAZY = {lazy!r}\n" + textwrap.dedent(SERVE_PATH)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "CHATOPS_DEMO_ALERT_TOKEN": "x"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"imported on the serve path: {result.stdout.strip()}"
