"""The `chatops` command line: serve, dev, check-config, audit export, manifest."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.shell.config import ChatopsConfig
    from bot.shell.event_loop import EventLoop
    from bot.shell.settings import Settings

EXIT_OK = 0
EXIT_INVALID_CONFIG = 1
EXIT_CANNOT_START = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatops", description="A self-hosted Slack bot for platform and on-call teams."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve_parser = sub.add_parser("serve", help="run the production bot (settings from environment variables)")
    serve_parser.add_argument(
        "--workers",
        type=int,
        help="worker processes on the one port, each a whole replica (default: $WEB_CONCURRENCY, or 1)",
    )
    dev = sub.add_parser("dev", help="run the bot locally with an embedded Redis and a Slack emulator page")
    dev.add_argument("--config", help="configuration file (default: examples/chatops.yaml)")
    dev.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    dev.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")), help="port (default 3000)")
    dev.add_argument("--data-dir", default=".chatops-dev", help="where the embedded Redis keeps its data")
    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("file", nargs="?", default=None, help="the file (default: $CHATOPS_CONFIG or ./chatops.yaml)")
    audit = sub.add_parser("audit", help="the audit log: `audit export --since DATE [--until DATE]` prints JSON lines")
    export = audit.add_subparsers(dest="audit_command", metavar="SUBCOMMAND", required=True).add_parser(
        "export", help="print audit records as JSON lines (REDIS_URL; key prefix from $CHATOPS_CONFIG)"
    )
    export.add_argument("--since", required=True, help="first day or time, UTC (YYYY-MM-DD or ISO 8601)")
    export.add_argument("--until", help="end, exclusive (default: now)")
    manifest = sub.add_parser("manifest", help="print the Slack app manifest (YAML)")
    manifest.add_argument("--url", help="public base URL of the bot, e.g. https://bot.example.com")
    manifest.add_argument("--socket-mode", action="store_true", help="Socket Mode instead of request URLs")
    manifest.add_argument("--name", default="chatops", help="the app's name in Slack")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one `chatops` subcommand and returns its exit code."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(workers=args.workers)
    if args.command == "dev":
        from bot.shell.dev import run_dev

        return run_dev(config_path=args.config, host=args.host, port=args.port, data_dir=args.data_dir)
    if args.command == "check-config":
        return check_config(args.file or os.environ.get("CHATOPS_CONFIG") or "./chatops.yaml")
    if args.command == "audit":
        from bot.shell.audit_export import run_export

        return run_export(since=args.since, until=args.until)
    if args.command == "manifest":
        return print_manifest(url=args.url, socket_mode=args.socket_mode, name=args.name)
    _parser().print_help()
    return EXIT_CANNOT_START


def check_config(path: str) -> int:
    """Validates a configuration file: 0 and a summary line, or 1 and every problem."""
    from bot.shell.config import ConfigError, load_config, summary

    try:
        config = load_config(path)
    except ConfigError as error:
        print(str(error), file=sys.stderr)
        return EXIT_INVALID_CONFIG
    print(summary(config, path))
    return EXIT_OK


def print_manifest(*, url: str | None, socket_mode: bool, name: str) -> int:
    """Prints the Slack app manifest generated from the command registry."""
    from bot.shell.composition import manifest_commands, manifest_shortcuts
    from bot.shell.manifest import build_manifest, manifest_yaml

    if url is None and not socket_mode:
        url = "https://chatops.example.com"
        print("# no --url given: replace https://chatops.example.com with your bot's public URL", file=sys.stderr)
    if url is not None and not url.startswith("https://") and not url.startswith("http://"):
        print(f"chatops manifest: --url must start with https:// (got {url!r})", file=sys.stderr)
        return EXIT_CANNOT_START
    print(
        manifest_yaml(
            build_manifest(
                manifest_commands(), url=url, socket_mode=socket_mode, app_name=name, shortcuts=manifest_shortcuts()
            )
        ),
        end="",
    )
    return EXIT_OK


def serve(*, workers: int | None = None) -> int:
    """Runs the production process: validates everything first; nothing starts on a bad setting or config.
    `workers` (else $WEB_CONCURRENCY) above 1 runs that many worker processes on the port (bot/shell/workers.py)."""
    # The collector stays on during start-up: turning it off saved about a tenth of the start but left the
    # status page's p99 at 70 ms instead of 20 ms under load (bench/status_page.py, same run). The composition
    # root still freezes what start-up made, a moment after the server listens.
    if workers is not None and not 1 <= workers <= 64:
        print(f"chatops serve: --workers must be between 1 and 64 (got {workers})", file=sys.stderr)
        return EXIT_CANNOT_START
    from bot.shell.settings import SettingsError, load_settings

    try:
        settings = load_settings(os.environ)
    except SettingsError as error:
        print("chatops serve: cannot start:\n  " + "\n  ".join(error.problems), file=sys.stderr)
        return EXIT_CANNOT_START
    count = workers if workers is not None else settings.workers
    if count == 1:
        return _serve(settings)
    from bot.platform.metrics_dir import shared_metrics_dir

    # Before the first metric exists in this process: every worker's metrics then go to files the /metrics of
    # any worker adds up (prometheus_client's multiprocess mode).
    with shared_metrics_dir():
        return _serve(settings, workers=count)


def _serve(settings: Settings, *, workers: int = 1) -> int:
    import asyncio

    from aiohttp import web

    from bot.shell.composition import StartupError, create_web_app, preflight
    from bot.shell.config import ConfigError, load_config, summary
    from bot.shell.event_loop import EventLoopUnavailable, event_loop
    from bot.shell.logs import configure_logging

    try:
        config = load_config(settings.config_path)
    except ConfigError as error:
        print(f"chatops serve: cannot start: the configuration is invalid\n{error}", file=sys.stderr)
        return EXIT_CANNOT_START
    try:
        loop = event_loop(settings.event_loop)
    except EventLoopUnavailable as error:
        print(f"chatops serve: cannot start: {error}", file=sys.stderr)
        return EXIT_CANNOT_START
    configure_logging(settings.log_level, settings.log_format, settings.secrets())
    try:
        asyncio.run(preflight(settings, config))
    except StartupError as error:
        print(f"chatops serve: cannot start: {error}", file=sys.stderr)
        return EXIT_CANNOT_START
    if workers > 1:
        return _serve_workers(settings, config, workers, loop)
    mode = "Socket Mode" if settings.socket_mode else f"HTTP on {settings.host}:{settings.port}"
    app = create_web_app(settings, config)
    print(f"chatops serve: {summary(config, settings.config_path)}; {mode}; {loop.name}", file=sys.stderr)
    try:
        web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None, loop=loop.new())
    except OSError as error:
        print(f"chatops serve: cannot listen on {settings.host}:{settings.port}: {error.strerror}", file=sys.stderr)
        return EXIT_CANNOT_START
    return EXIT_OK


def _serve_workers(settings: Settings, config: ChatopsConfig, workers: int, loop: EventLoop) -> int:
    """Runs `workers` replicas on the port under a supervisor (bot/shell/workers.py)."""
    import socket

    from aiohttp import web

    from bot.platform.metrics_dir import worker_ended
    from bot.shell.composition import create_web_app
    from bot.shell.config import summary
    from bot.shell.workers import PortUnavailable, Supervisor, reserve

    try:
        holder = reserve(settings.host, settings.port)
    except PortUnavailable as error:
        print(f"chatops serve: cannot listen on {settings.host}:{settings.port}: {error.strerror}", file=sys.stderr)
        return EXIT_CANNOT_START
    port = holder.getsockname()[1]

    def run_worker(sock: socket.socket, index: int) -> int:
        holder.close()
        # Each worker makes its own loop after the fork: a loop is never carried across one.
        web.run_app(create_web_app(settings, config), sock=sock, print=None, access_log=None, loop=loop.new())
        return EXIT_OK

    mode = "Socket Mode and HTTP" if settings.socket_mode else "HTTP"
    print(
        f"chatops serve: {summary(config, settings.config_path)}; {mode} on {settings.host}:{port}, {workers} workers; "
        f"{loop.name}",
        file=sys.stderr,
    )
    supervisor = Supervisor(count=workers, host=settings.host, port=port, run_worker=run_worker, on_exit=worker_ended)
    with holder:
        return supervisor.run()
