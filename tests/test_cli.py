"""The `chatops` command line as a user runs it: manifest, check-config, and serve (start-up failures and a real
run)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bot.emulator import SlackEmulator
from bot.platform.embedded_redis import free_port
from bot.shell.cli import main
from commands.registry import build_catalog
from tests.conftest import BOT_TOKEN, serve_environment, wait_ready


def _run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "REDIS_", "CHATOPS_"))}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        check=False,
        capture_output=True,
        text=True,
        env=base | (env or {}),
        cwd=cwd,
        timeout=30,
    )


def test_manifest_lists_every_registered_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["manifest", "--url", "https://bot.example.com"]) == 0
    manifest = yaml.safe_load(capsys.readouterr().out)
    commands = manifest["features"]["slash_commands"]
    assert [c["command"] for c in commands] == [spec.slash for spec in build_catalog().specs]
    for command, spec in zip(commands, build_catalog().specs, strict=True):
        assert command["description"] == spec.summary
        assert command["usage_hint"] == spec.usage_hint
        assert command["url"] == "https://bot.example.com/slack/events"
    assert manifest["settings"]["interactivity"]["request_url"] == "https://bot.example.com/slack/events"
    assert manifest["settings"]["socket_mode_enabled"] is False
    assert {"commands", "chat:write", "usergroups:read"} <= set(manifest["oauth_config"]["scopes"]["bot"])


def test_manifest_socket_mode_has_no_urls(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["manifest", "--socket-mode"]) == 0
    manifest = yaml.safe_load(capsys.readouterr().out)
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert "request_url" not in manifest["settings"]["interactivity"]
    assert all("url" not in c for c in manifest["features"]["slash_commands"])


def test_dev_finds_the_demo_config_from_any_directory(tmp_path: Path, repo_root: Path) -> None:
    # `chatops dev` run outside a checkout falls back to the examples next to the source tree.
    result = _run_python("from bot.shell.dev import find_demo_config; print(find_demo_config())", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == repo_root / "examples" / "chatops.yaml"


def _run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=cwd, timeout=30
    )


def test_check_config_ok_and_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str], repo_root: Path) -> None:
    assert main(["check-config", str(repo_root / "examples" / "chatops.yaml")]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("slak: {}\nroles:\n  admins: [bob]\n")
    assert main(["check-config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "slak" in err and "did you mean 'slack'" in err
    assert "roles.admins[0]" in err and "line 3" in err


def test_serve_refuses_to_start_without_its_environment() -> None:
    result = _run("serve")
    assert result.returncode == 2
    assert "SLACK_BOT_TOKEN is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_an_invalid_config(tmp_path: Path) -> None:
    config = tmp_path / "chatops.yaml"
    config.write_text("roles:\n  admins: [nobody]\n")
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": "s3cr3t-value",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "CHATOPS_CONFIG": str(config),
    }
    result = _run("serve", env=env)
    assert result.returncode == 2
    assert "roles.admins[0]" in result.stderr
    assert "s3cr3t-value" not in result.stderr and BOT_TOKEN not in result.stderr


def test_serve_rejects_a_user_token_without_echoing_it() -> None:
    result = _run(
        "serve",
        env={"SLACK_BOT_TOKEN": "xoxp-user-token-secret", "SLACK_SIGNING_SECRET": "x", "REDIS_URL": "redis://x"},
    )
    assert result.returncode == 2
    assert "SLACK_BOT_TOKEN: must be a bot token starting with xoxb-" in result.stderr
    assert "xoxp-user-token-secret" not in result.stderr


@pytest.mark.parametrize(("event_loop", "runs_on"), [(None, "uvloop"), ("asyncio", "asyncio")])
async def test_serve_runs_as_a_user_would(
    emulator: SlackEmulator, redis_url: str, repo_root: Path, event_loop: str | None, runs_on: str
) -> None:
    port = free_port()
    env = serve_environment(emulator, redis_url, repo_root / "examples" / "chatops.yaml", port) | {"LOG_FORMAT": "json"}
    if event_loop is not None:
        env["CHATOPS_EVENT_LOOP"] = event_loop
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "serve", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        await wait_ready(f"http://127.0.0.1:{port}")
        emulator.app_url = f"http://127.0.0.1:{port}/slack/events"
        answer = await emulator.send_command(
            command="/chatops", text="whoami", user_id="U0ALICE", channel_id="C0GENERAL"
        )
        assert answer.status == 200 and answer.json is not None and "`deployers`" in answer.json["text"]
    finally:
        process.terminate()
        _, stderr = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode == 0
    start_line = next(line for line in stderr.decode().splitlines() if line.startswith("chatops serve:"))
    assert start_line.endswith(f"; HTTP on 127.0.0.1:{port}; {runs_on}")
    assert emulator.signing_secret not in stderr.decode()
    assert BOT_TOKEN not in stderr.decode()
    assert "will be unused" not in stderr.decode()  # Bolt's notice about SLACK_BOT_TOKEN in the environment


async def test_serve_stops_at_start_up_when_slack_refuses_the_app_token(
    emulator: SlackEmulator, redis_url: str, repo_root: Path
) -> None:
    port = free_port()
    env = serve_environment(emulator, redis_url, repo_root / "examples" / "chatops.yaml", port) | {
        "SLACK_APP_TOKEN": "xapp-1-revoked-0000"
    }
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bot", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "Slack refused SLACK_APP_TOKEN for Socket Mode" in result.stderr
    assert "xapp-1-revoked-0000" not in result.stderr and "Traceback" not in result.stderr


def test_serve_names_a_missing_alert_source_secret(tmp_path: Path) -> None:
    config = tmp_path / "chatops.yaml"
    config.write_text("alerts:\n  sources:\n    alertmanager: {token_env: AM_TOKEN_NOT_SET}\n")
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": "s3cr3t-value",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "CHATOPS_CONFIG": str(config),
    }
    result = _run("serve", env=env)
    assert result.returncode == 2
    assert "AM_TOKEN_NOT_SET" in result.stderr and "Traceback" not in result.stderr
