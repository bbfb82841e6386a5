"""`chatops dev`: the whole bot on one machine with nothing to install. An embedded Redis (unless REDIS_URL is
set), the Slack emulator's Web API and its channel page on the bot's own port, and the demo configuration."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import sys
from pathlib import Path

from aiohttp import web

from bot.emulator import SlackEmulator, Workspace
from bot.platform.embedded_redis import EmbeddedRedis, RedisNotFound
from bot.shell.composition import create_web_app
from bot.shell.config import ChatopsConfig, ConfigError, load_config, summary
from bot.shell.event_loop import event_loop
from bot.shell.logs import configure_logging
from bot.shell.settings import Settings

DEMO_CONFIG = Path("examples") / "chatops.yaml"
DEV_BOT_TOKEN = "xoxb-chatops-dev-emulator"


def find_demo_config() -> Path:
    """examples/chatops.yaml in the working directory, else next to the installed source tree."""
    for candidate in (Path.cwd() / DEMO_CONFIG, Path(__file__).resolve().parents[2] / DEMO_CONFIG):
        if candidate.is_file():
            return candidate
    return Path.cwd() / DEMO_CONFIG


def run_dev(*, config_path: str | None, host: str, port: int, data_dir: str) -> int:
    """Runs the dev bot until Ctrl-C; returns the exit code."""
    path = Path(config_path) if config_path else find_demo_config()
    try:
        config = load_config(path)
    except ConfigError as error:
        print(f"chatops dev: the configuration is invalid\n{error}", file=sys.stderr)
        return 2
    configure_logging(os.environ.get("LOG_LEVEL", "INFO").upper(), os.environ.get("LOG_FORMAT", "console"))
    print(f"chatops dev: {summary(config, str(path))}", file=sys.stderr)
    try:
        # The loop `chatops serve` runs on by default (uvloop where installed), so that dev behaves as production.
        with asyncio.Runner(loop_factory=event_loop("auto").new) as runner:
            return runner.run(_serve(config=config, host=host, port=port, data_dir=Path(data_dir)))
    except (RedisNotFound, RuntimeError) as error:
        print(f"chatops dev: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


async def _serve(*, config: ChatopsConfig, host: str, port: int, data_dir: Path) -> int:
    try:
        listener = _bind(host, port)
    except OSError as error:
        print(f"chatops dev: cannot listen on {host}:{port}: {error.strerror}; try --port", file=sys.stderr)
        return 2
    redis_url = os.environ.get("REDIS_URL")
    embedded: EmbeddedRedis | None = None
    if not redis_url:
        embedded = await EmbeddedRedis(data_dir / "redis", persist=True).astart()
        redis_url = embedded.url
        print(f"chatops dev: started a private Redis at {redis_url} (data in {data_dir / 'redis'})", file=sys.stderr)
    # The demo service's deploy script keeps its processes' pids here, so stopping dev can stop them too.
    os.environ.setdefault("DEMO_STATE_DIR", str((data_dir / "demo").resolve()))
    # The demo configuration's Alertmanager source reads its token from here (see examples/chatops.yaml).
    os.environ.setdefault("CHATOPS_DEMO_ALERT_TOKEN", "demo-alert-token")
    # The demo configuration's backup target dumps the dev Redis itself (`/backup run dev-redis`).
    os.environ.setdefault("CHATOPS_DEMO_REDIS_URL", redis_url)
    # ...and restores into a second, throwaway Redis (`/backup restore dev-redis <id> into
    # CHATOPS_DEMO_RESTORE_REDIS_URL`), so the approval-gated restore can be tried without touching the bot's own.
    restore_redis: EmbeddedRedis | None = None
    if not os.environ.get("CHATOPS_DEMO_RESTORE_REDIS_URL"):
        restore_redis = await EmbeddedRedis(data_dir / "restore-redis").astart()
        os.environ["CHATOPS_DEMO_RESTORE_REDIS_URL"] = restore_redis.url
    signing_secret = secrets.token_hex(16)
    emulator = SlackEmulator(signing_secret=signing_secret, bot_token=DEV_BOT_TOKEN, workspace=Workspace.demo())
    url_host = "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host
    origin = f"http://{url_host}:{listener.getsockname()[1]}"
    emulator.origin = origin
    emulator.app_url = f"{origin}/slack/events"
    settings = Settings.model_validate(
        {
            "SLACK_BOT_TOKEN": DEV_BOT_TOKEN,
            "SLACK_SIGNING_SECRET": signing_secret,
            "SLACK_API_URL": f"{origin}/api/",
            "REDIS_URL": redis_url,
            "HOST": host,
            "PORT": listener.getsockname()[1],
            "LOG_FORMAT": "console",
        }
    )
    app = create_web_app(settings, config, mount=lambda a: emulator.install(a, page=True))
    runner = web.AppRunner(app, access_log=None)
    try:
        await runner.setup()
        await web.SockSite(runner, listener).start()
        print(
            f"chatops dev: open {origin}/ and type /chatops help. Ctrl-C stops everything.", file=sys.stderr, flush=True
        )
        await _until_stopped()
        print("chatops dev: stopping", file=sys.stderr)
        return 0
    finally:
        await runner.cleanup()
        listener.close()
        stop_demo_apps(Path(os.environ["DEMO_STATE_DIR"]))
        if restore_redis is not None:
            await restore_redis.astop()
        if embedded is not None:
            await embedded.astop()


def stop_demo_apps(state_dir: Path) -> None:
    """Stops the demo service processes that deploys started (their pids are in the demo state files)."""
    for state_file in state_dir.glob("*.json"):
        try:
            pid = int(json.loads(state_file.read_text())["pid"])
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError, KeyError, TypeError):
            continue


def _bind(host: str, port: int) -> socket.socket:
    """Binds the listening socket first, so the port (even with --port 0) is known before the app is built."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(128)
    except OSError:
        listener.close()
        raise
    listener.setblocking(False)
    return listener


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
