"""Highly available Redis deployments for tests, started here from the `redis-server` binary on free ports in a
temp dir: a primary with replicas watched by three Sentinels, and a three-master Redis Cluster. Reusable by
any test (the HA tests, a chaos test). Every process started is stopped by `stop()`, whatever happened.

Both need `redis-server` (and the cluster `redis-cli`) on PATH; `require_binaries` skips a test that lacks them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.embedded_redis import free_port

MASTER_NAME = "chatops"
START_TIMEOUT = 20.0
FAILOVER_TIMEOUT = 60.0


def require_binaries(*names: str) -> dict[str, str]:
    """The paths of `names` on PATH; skips the calling test, naming what is missing, if any is not there."""
    found = {name: shutil.which(name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not on PATH: install Redis (apt-get install redis-server redis-tools)")
    return {name: str(path) for name, path in found.items()}


def command(port: int, *args: str, timeout: float = 2.0) -> str:
    """Sends one command to 127.0.0.1:`port` over RESP and returns the reply as text (errors start with `-`)."""
    payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(payload.encode())
        return _read_reply(conn.makefile("rb"))


def _read_reply(stream: object) -> str:
    line = stream.readline().decode(errors="replace").rstrip("\r\n")  # type: ignore[attr-defined]
    if line[:1] in "+-:":
        return line if line[:1] == "-" else line[1:]
    if line[:1] == "$":
        size = int(line[1:])
        return "" if size < 0 else stream.read(size + 2)[:-2].decode(errors="replace")  # type: ignore[attr-defined]
    if line[:1] == "*":
        count = int(line[1:])
        return "\n".join(_read_reply(stream) for _ in range(max(count, 0)))
    raise ValueError(f"unexpected reply {line!r}")


def wait_until(condition: Callable[[], bool], what: str, timeout: float) -> None:
    """Polls `condition` (exceptions count as not yet) until true; fails naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(OSError, ValueError):
            if condition():
                return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class RedisProcess:
    """One redis-server (or Sentinel) child process, its port and its directory."""

    binary: str
    port: int
    directory: Path
    args: list[str]
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisProcess:
        """Starts it (detached from the test's terminal signals) and waits until it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [self.binary, *self.args], cwd=self.directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(lambda: self.alive() and command(self.port, "PING") == "PONG", f"redis on port {self.port}",
                   START_TIMEOUT)
        return self

    def start_with(self, make_args: Callable[[int, Path], list[str]]) -> RedisProcess:
        """Starts a server whose arguments depend on its port and directory (another port on a port race)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            self.args = make_args(self.port, self.directory)
            try:
                return self.start()
            except AssertionError:
                self.stop()
                self.port = free_port()
        raise RuntimeError(f"redis-server would not start in {self.directory}: {self.log()}")

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """kill -9, as a crash would (and resumes it first if it was stopped, so it dies)."""
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """Stops it (SIGCONT in case it was paused, SIGTERM, then SIGKILL after 5 s)."""
        if not self.alive():
            return
        assert self.process is not None
        with suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        """Its log file, for failure messages."""
        with suppress(OSError):
            return (self.directory / "redis.log").read_text(errors="replace")[-2000:]
        return ""


def _server_args(port: int, directory: Path, *extra: str) -> list[str]:
    return [
        "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", "", "--appendonly", "no",
        "--logfile", str(directory / "redis.log"), "--repl-diskless-sync-delay", "0", *extra,
    ]


@dataclass
class SentinelDeployment:
    """A primary, `replicas` replicas and three Sentinels (quorum 2) watching them as `MASTER_NAME`."""

    root: Path
    replicas: int = 1
    down_after_ms: int = 1000
    failover_timeout_ms: int = 4000
    primary: RedisProcess | None = None
    replica_nodes: list[RedisProcess] = field(default_factory=list)
    sentinels: list[RedisProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The REDIS_URL that reaches this deployment through its Sentinels."""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}/0"

    def start(self) -> SentinelDeployment:
        """Starts everything and waits until every Sentinel sees the primary and its replicas; stops all on failure."""
        binary = require_binaries("redis-server")["redis-server"]
        try:
            port = free_port()
            self.primary = RedisProcess(binary, port, self.root / "primary", []).start_with(_server_args)
            for index in range(self.replicas):
                replica_port = free_port()
                directory = self.root / f"replica{index}"
                self.replica_nodes.append(RedisProcess(binary, replica_port, directory, []).start_with(
                    lambda p, d: _server_args(p, d, "--replicaof", "127.0.0.1", str(port))))
            wait_until(lambda: self._connected_replicas(port) >= self.replicas,
                       "the replicas to be in sync (state=online)", START_TIMEOUT)
            for index in range(3):
                self.sentinels.append(self._start_sentinel(binary, index, port))
            wait_until(self._sentinels_agree, "the Sentinels to see the primary, its replicas and each other",
                       START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_sentinel(self, binary: str, index: int, primary_port: int) -> RedisProcess:
        port = free_port()
        directory = self.root / f"sentinel{index}"
        directory.mkdir(parents=True, exist_ok=True)
        conf = directory / "sentinel.conf"  # Sentinel rewrites its file: one each, writable
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {directory}\nlogfile {directory / 'redis.log'}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after_ms}\n"
            f"sentinel failover-timeout {MASTER_NAME} {self.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        return RedisProcess(binary, port, directory, [str(conf), "--sentinel"]).start()

    def _sentinels_agree(self) -> bool:
        for sentinel in self.sentinels:
            info = command(sentinel.port, "INFO", "sentinel")
            if f"slaves={self.replicas}," not in info or "sentinels=3" not in info:
                return False
        return True

    @staticmethod
    def _connected_replicas(port: int) -> int:
        """Replicas in sync with the primary on `port` (`state=online`, not still loading its copy)."""
        return command(port, "INFO", "replication").count("state=online")

    def master_port(self) -> int:
        """The primary's port as the first Sentinel reports it now."""
        reply = command(self.sentinels[0].port, "SENTINEL", "get-master-addr-by-name", MASTER_NAME).splitlines()
        return int(reply[1])

    def fail_primary(self) -> RedisProcess:
        """kill -9 the primary and waits until every Sentinel names a replica as the new primary, and that replica
        says it is one; returns the promoted replica."""
        assert self.primary is not None
        old = self.primary
        old.kill()
        ports = {r.port: r for r in self.replica_nodes}

        def promoted() -> bool:
            reported = {
                int(command(s.port, "SENTINEL", "get-master-addr-by-name", MASTER_NAME).splitlines()[1])
                for s in self.sentinels
            }
            if len(reported) != 1 or next(iter(reported)) not in ports:
                return False
            return "role:master" in command(next(iter(reported)), "INFO", "replication")

        wait_until(promoted, "the Sentinels to promote a replica after the primary was killed", FAILOVER_TIMEOUT)
        new = ports[self.master_port()]
        self.replica_nodes.remove(new)
        self.replica_nodes.append(old)  # dead now; stop() ignores it
        self.primary = new
        return new

    def stop(self) -> None:
        """Stops every process started here."""
        for process in [*self.sentinels, *self.replica_nodes, *([self.primary] if self.primary else [])]:
            process.stop()


@dataclass
class ClusterDeployment:
    """A Redis Cluster of `masters` masters (no replicas) with every slot assigned."""

    root: Path
    masters: int = 3
    nodes: list[RedisProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The REDIS_URL of this cluster (every node as a start-up node)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> ClusterDeployment:
        """Starts the nodes, creates the cluster and waits for `cluster_state:ok` on each; stops all on failure."""
        binaries = require_binaries("redis-server", "redis-cli")
        try:
            for index in range(self.masters):
                node = RedisProcess(binaries["redis-server"], free_port(), self.root / f"node{index}", [])
                self.nodes.append(node.start_with(lambda p, d: _server_args(
                    p, d, "--cluster-enabled", "yes", "--cluster-config-file", str(d / "nodes.conf"),
                    "--cluster-node-timeout", "2000",
                )))
            create = subprocess.run(
                [binaries["redis-cli"], "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                 "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True, text=True, timeout=60, check=False,
            )
            if create.returncode != 0:
                raise RuntimeError(
                    f"redis-cli --cluster create failed: {create.stdout[-1000:]} {create.stderr[-1000:]}"
                )
            wait_until(lambda: all("cluster_state:ok" in command(n.port, "CLUSTER", "INFO") for n in self.nodes),
                       "cluster_state:ok on every node", START_TIMEOUT * 2)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stops every node."""
        for node in self.nodes:
            node.stop()
