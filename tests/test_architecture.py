"""The dependency direction commands -> bot -> integrations, enforced by import-linter's contract in pyproject."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True))"


def test_import_contract_holds(repo_root: Path) -> None:
    # In a child process: import-linter reconfigures logging, which must not leak into other tests.
    result = subprocess.run([sys.executable, "-c", LINT], check=False, cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "KEPT" in result.stdout
