"""The architecture as import-linter contracts (pyproject.toml, [tool.importlinter]): commands -> bot ->
integrations; inside bot, the shell above the domains (in a fixed order) above text and the platform; the Slack
emulator importing nothing from the bot; no import cycles. docs/architecture.md explains the layers. And each
service the only way into its state: commands import no store or raw client, `Deps` hands out none."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

LINT = (
    "import sys; from importlinter.cli import lint_imports; "
    "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True))"
)

# Each rule of docs/architecture.md is one contract: a contract deleted or renamed fails here, not silently.
CONTRACTS = (
    "commands -> bot -> integrations",
    "commands.catalog knows handlers only as callables (no catalog <-> framework cycle)",
    "bot by layer: shell -> domains (in this order) -> platform -> text",
    "The Slack emulator is a stand-in for Slack: it imports nothing from the bot, commands or integrations",
    "No import cycles in bot, commands or integrations",
)


def test_import_contracts_hold(repo_root: Path) -> None:
    # In a child process: import-linter reconfigures logging, which must not leak into other tests.
    result = subprocess.run(
        [sys.executable, "-c", LINT], check=False, cwd=repo_root, capture_output=True, text=True, timeout=120
    )
    report = " ".join((result.stdout + result.stderr).split())  # long contract names are wrapped
    assert result.returncode == 0, result.stdout + result.stderr
    for name in CONTRACTS:
        assert f"{name} KEPT" in report, f"contract {name!r} not reported KEPT:\n{result.stdout}"
    assert f"{len(CONTRACTS)} kept, 0 broken" in report, result.stdout


def test_the_emulator_runs_without_the_bot(repo_root: Path) -> None:
    # What the contract checks statically, at run time too (an import inside a function or by name counts here).
    probe = (
        "import sys, bot.emulator.server; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('bot', 'commands', 'integrations')"
        " and m != 'bot' and not m.startswith('bot.emulator')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], check=True, cwd=repo_root, capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "[]", f"importing the emulator loaded bot modules: {result.stdout}"


# Each service is the only way into its state (issue 16, item 3): the Slack surface reaches state through services.
FORBIDDEN_IN_COMMANDS = ("bot.platform.store", "bot.platform.locks", "bot.platform.redis_client", "redis", "aiohttp")
# Plain value types that live in a store module, importable by name (not the store itself).
VALUE_TYPES_IN_STORE_MODULES = {("bot.status.store", "Bucket")}


def _store_imports(source: str) -> list[str]:
    """The imports of a module that reach a store: bot.platform.store, bot.platform.locks, any `*.store` module, a
    raw client."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            modules = [(node.module, alias.name) for alias in node.names]
        else:
            continue
        for module, name in modules:
            reaches = (
                module.endswith(".store")
                or module.split(".")[-1] == "store"
                or any(module == f or module.startswith(f + ".") for f in FORBIDDEN_IN_COMMANDS)
            )
            if reaches and (module, name) not in VALUE_TYPES_IN_STORE_MODULES:
                found.append(f"{module}{'.' + name if name else ''}")
    return found


def test_commands_import_no_store_lock_or_raw_client(repo_root: Path) -> None:
    offenders = {
        path.name: found
        for path in sorted((repo_root / "commands").glob("*.py"))
        if (found := _store_imports(path.read_text()))
    }
    assert offenders == {}, f"commands/ reaching past the services into storage or raw clients: {offenders}"


def test_commands_read_no_service_store_attribute(repo_root: Path) -> None:
    """No `x.store`, `x.records`, `x._store` (a service's internals) anywhere in commands/."""
    offenders = [
        f"{path.name}:{node.lineno} .{node.attr}"
        for path in sorted((repo_root / "commands").glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr in {"store", "records", "_store", "_records"}
    ]
    assert offenders == [], offenders


def test_deps_hands_out_no_raw_client() -> None:
    """`Deps` has no field typed as a store, a Redis client, the Slack client or an HTTP session."""
    import aiohttp
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster
    from slack_sdk.web.async_client import AsyncWebClient

    from bot.platform.request_guard import RequestGuard
    from bot.platform.store import Store
    from bot.shell.deps import Deps

    raw = (Store, Redis, RedisCluster, AsyncWebClient, aiohttp.ClientSession, RequestGuard)
    hints = typing.get_type_hints(Deps)
    offenders = {
        name: hint
        for name, hint in hints.items()
        if name in {f.name for f in dataclasses.fields(Deps)} and any(_mentions(hint, kind) for kind in raw)
    }
    assert offenders == {}, f"Deps fields that are raw clients: {offenders}"


def _mentions(hint: object, kind: type) -> bool:
    """Whether a type hint is `kind` or a subclass, or has one among its arguments (X | None, list[X], ...)."""
    if isinstance(hint, type) and issubclass(hint, kind):
        return True
    return any(_mentions(arg, kind) for arg in typing.get_args(hint))


def test_services_keep_their_stores_private() -> None:
    """No domain service exposes a public attribute that is a store (services are the only way into state)."""
    import inspect

    from bot.alerts.pipeline import AlertPipeline
    from bot.backups.service import BackupService
    from bot.deploys.engine import DeployEngine
    from bot.incidents.service import IncidentService
    from bot.oncall.service import OncallService
    from bot.status.service import StatusService

    for service in (DeployEngine, AlertPipeline, BackupService, OncallService, IncidentService, StatusService):
        source = inspect.getsource(service.__init__)
        public = [
            line.strip()
            for line in source.splitlines()
            if line.strip().startswith(("self.store ", "self.store=", "self.records ", "self.records="))
        ]
        assert public == [], f"{service.__name__} exposes its store: {public}"
