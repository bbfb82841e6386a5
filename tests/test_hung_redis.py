"""A hung Redis (cause 9): the test stops its own redis-server with SIGSTOP, so connections stay open and nothing
answers. Slack must still get every acknowledgement within its 3 s (the emulator enforces it and reports
`operation_timeout` otherwise), and the user must read a clear message, not Slack's failure text."""

from __future__ import annotations

import asyncio
import html
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.emulator import SlackEmulator
from bot.platform.embedded_redis import free_port
from bot.shell.config import parse_config
from tests.conftest import DEFAULT_CONFIG, start_bot
from tests.redis_servers import RedisProcess, require_binaries, server_args

SLACK_ACK_TIMEOUT = 3.0  # Slack's: the emulator answers `operation_timeout` when the bot is later than this


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server this test alone uses, so stopping it disturbs no other test."""
    binary = require_binaries("redis-server")["redis-server"]
    server = RedisProcess(binary, free_port(), tmp_path / "redis", [])
    server.start_with(lambda port, d: server_args(port, d))
    try:
        yield server
    finally:
        server.stop()  # resumes it first if a test left it stopped


async def test_a_command_is_answered_in_time_and_clearly_while_redis_hangs(
    emulator: SlackEmulator,
    own_redis: RedisProcess,
) -> None:
    emulator.ack_timeout = SLACK_ACK_TIMEOUT
    url = f"redis://127.0.0.1:{own_redis.port}/0"
    _bot, runner = await start_bot(emulator, url, parse_config(DEFAULT_CONFIG, "t.yaml"))
    assert own_redis.process is not None
    pid = own_redis.process.pid
    try:
        warm = await emulator.send_command(command="/oncall", text="", user_id="U0DEMO", channel_id="C0GENERAL")
        assert warm.error is None and warm.status == 200, warm  # connections are open before Redis hangs
        os.kill(pid, signal.SIGSTOP)
        try:
            answers = await asyncio.gather(
                *(
                    emulator.send_command(command=name, text=text, user_id="U0DEMO", channel_id="C0GENERAL")
                    for name, text in (("/oncall", ""), ("/incident", "declare sev2 Checkout is down"), ("/status", ""))
                )
            )
        finally:
            os.kill(pid, signal.SIGCONT)
        for answer in answers:
            assert answer.error is None and answer.status == 200, f"Slack saw no answer in time: {answer}"
            assert answer.json is not None
            assert "cannot reach its Redis store right now; nothing was changed" in html.unescape(
                answer.json["text"]
            ), answer
        again = await emulator.send_command(command="/oncall", text="", user_id="U0DEMO", channel_id="C0GENERAL")
        assert again.error is None and again.json is not None and "cannot reach" not in again.json["text"], again
    finally:
        await runner.cleanup()
