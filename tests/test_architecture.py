"""The architecture as import-linter contracts (pyproject.toml, [tool.importlinter]): commands -> bot ->
integrations; inside bot, the shell above the domains (in a fixed order) above text and the platform; the Slack
emulator importing nothing from the bot; no import cycles. docs/architecture.md explains the layers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True))"

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
    result = subprocess.run([sys.executable, "-c", LINT], check=False, cwd=repo_root, capture_output=True, text=True, timeout=120)
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
    result = subprocess.run([sys.executable, "-c", probe], check=True, cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", f"importing the emulator loaded bot modules: {result.stdout}"
