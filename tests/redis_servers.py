"""Highly available Redis deployments for tests, started here from the `redis-server` binary on free ports in a
temp dir: a primary with replicas watched by three Sentinels, and a three-master Redis Cluster. Reusable by
any test (the HA tests, a chaos test). Every process started is stopped by `stop()`, whatever happened.

Both need `redis-server` (and the cluster `redis-cli`) on PATH; `require_binaries` skips a test that lacks them.
With `tls=make_tls_files(dir)` every server, replica link, Sentinel and cluster bus speaks only TLS (`--port 0`),
with a certificate for 127.0.0.1 signed by a CA made for the test; `require_tls` skips when redis-server lacks TLS.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

from bot.platform.embedded_redis import free_port, system_binary
from tests.waiting import DEFAULT_DEADLINE_SECONDS, eventually_blocking

MASTER_NAME = "chatops"


def require_binaries(*names: str) -> dict[str, str]:
    """The paths of `names` on PATH; skips the calling test, naming what is missing, if any is not there."""
    found = {name: system_binary(name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not on PATH: install Redis (apt-get install redis-server redis-tools)")
    return {name: str(path) for name, path in found.items()}


@dataclass(frozen=True)
class TlsFiles:
    """A test CA and a certificate for 127.0.0.1 it signed, as PEM files (the server's also serves as a client's)."""

    ca: Path
    cert: Path
    key: Path

    @property
    def query(self) -> str:
        """The REDIS_URL query that trusts this CA."""
        return f"?ssl_ca_certs={quote(str(self.ca))}"

    def server_args(self) -> list[str]:
        """redis-server's TLS options (clients need no certificate)."""
        return [
            "--tls-cert-file",
            str(self.cert),
            "--tls-key-file",
            str(self.key),
            "--tls-ca-cert-file",
            str(self.ca),
            "--tls-auth-clients",
            "no",
        ]

    def conf(self) -> str:
        """The same options as configuration-file lines (for Sentinel)."""
        return (
            f"tls-cert-file {self.cert}\ntls-key-file {self.key}\ntls-ca-cert-file {self.ca}\n"
            "tls-auth-clients no\ntls-replication yes\n"
        )

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting only this CA, checking the host name, with the certificate for mutual TLS."""
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(self.cert, self.key)
        return context


def make_tls_files(directory: Path, name: str = "chatops test CA") -> TlsFiles:
    """Generates (with `cryptography`) a CA called `name` and a certificate for 127.0.0.1 and localhost it signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    files.key.chmod(0o600)
    return files


_TLS_SUPPORT: dict[str, str | None] = {}


def _tls_support(binary: str, directory: Path) -> str | None:
    """Why `binary` cannot serve TLS, or None when it can: a TLS-only server is started and answers PING, or
    exits saying why (a build without TLS refuses the options)."""
    tls = make_tls_files(directory / "probe-tls")
    port = free_port()
    process = subprocess.Popen(
        [binary, *server_args(port, directory, tls=tls)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # Either it exits (a build without TLS refuses the options) or it answers.
        try:
            wait_until(
                lambda: process.poll() is not None or command(port, "PING", tls=tls) == "PONG",
                f"{binary} to answer PING over TLS or exit",
            )
        except AssertionError as gave_up:
            return str(gave_up)
        if process.poll() is not None:
            output = (process.stdout.read() if process.stdout else b"").decode(errors="replace")
            log_file = directory / "redis.log"
            log = log_file.read_text(errors="replace") if log_file.exists() else ""
            return f"{binary} cannot serve TLS: {(output + log).strip()[-300:]}"
        return None
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stdout:
            process.stdout.close()


def require_tls(directory: Path) -> dict[str, str]:
    """The Redis binaries, skipping the calling test (with the reason) unless redis-server serves TLS (checked once,
    with a server started in `directory`)."""
    binaries = require_binaries("redis-server", "redis-cli")
    server = binaries["redis-server"]
    if server not in _TLS_SUPPORT:
        _TLS_SUPPORT[server] = _tls_support(server, directory)
    reason = _TLS_SUPPORT[server]
    if reason is not None:
        pytest.skip(reason)
    return binaries


def command(port: int, *args: str, timeout: float = 2.0, tls: TlsFiles | None = None) -> str:
    """Sends one command to 127.0.0.1:`port` (over TLS with `tls`) over RESP and returns the reply as text (errors
    start with `-`)."""
    payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        conn = tls.client_context().wrap_socket(raw, server_hostname="127.0.0.1") if tls else raw
        with conn:
            conn.sendall(payload.encode())
            return _read_reply(conn.makefile("rb"))


def _read_reply(stream: object) -> str:
    line = stream.readline().decode(errors="replace").rstrip("\r\n")
    if line[:1] in "+-:":
        return line if line[:1] == "-" else line[1:]
    if line[:1] == "$":
        size = int(line[1:])
        return "" if size < 0 else stream.read(size + 2)[:-2].decode(errors="replace")
    if line[:1] == "*":
        count = int(line[1:])
        return "\n".join(_read_reply(stream) for _ in range(max(count, 0)))
    raise ValueError(f"unexpected reply {line!r}")


CLUSTER_PORT_LIMIT = 55535
"""A cluster node's bus listens 10000 above its port, so redis-server refuses a port above this one."""


def cluster_port() -> int:
    """A free port a cluster node may take (a free port from Linux's ephemeral range is above 55535 one time in
    five, which redis-server refuses)."""
    for _ in range(200):
        if (port := free_port()) <= CLUSTER_PORT_LIMIT:
            return port
    raise RuntimeError(f"no free port at or below {CLUSTER_PORT_LIMIT} in 200 tries")


def wait_until(condition: Callable[[], bool], what: str, *, deadline: float = DEFAULT_DEADLINE_SECONDS) -> None:
    """`eventually_blocking` on `condition`, where a connection error or an unreadable reply (a server still starting
    or failing over) counts as "not yet"; fails naming `what`."""

    def holds() -> bool:
        with suppress(OSError, ValueError):
            return bool(condition())
        return False

    eventually_blocking(holds, what, deadline=deadline)


@dataclass
class RedisProcess:
    """One redis-server (or Sentinel) child process, its port and its directory."""

    binary: str
    port: int
    directory: Path
    args: list[str]
    process: subprocess.Popen[bytes] | None = None
    tls: TlsFiles | None = None  # it listens only for TLS (its port is the tls-port)
    next_port: Callable[[], int] = free_port  # where start_with tries again after a port race

    def start(self) -> RedisProcess:
        """Starts it (detached from the test's terminal signals) and waits until it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [self.binary, *self.args],
            cwd=self.directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # An exit ends the wait at once (a port race: start_with retries on another port).
        wait_until(
            lambda: not self.alive() or self.command("PING") == "PONG", f"redis on port {self.port} to answer PING"
        )
        assert self.alive(), f"redis on port {self.port} exited on start"
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
                self.port = self.next_port()
        raise RuntimeError(f"redis-server would not start in {self.directory}: {self.log()}")

    def command(self, *args: str) -> str:
        """Sends it one command (over TLS if it speaks TLS) and returns the reply as text."""
        return command(self.port, *args, tls=self.tls)

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


def server_args(port: int, directory: Path, *extra: str, tls: TlsFiles | None = None) -> list[str]:
    """redis-server's arguments for a test server on 127.0.0.1:`port` in `directory`: no persistence, a log file,
    `extra` at the end (TLS only, with `tls`)."""
    ports = (
        ["--port", "0", "--tls-port", str(port), *tls.server_args(), "--tls-replication", "yes"]
        if tls
        else ["--port", str(port)]
    )
    return [
        *ports,
        "--bind",
        "127.0.0.1",
        "--dir",
        str(directory),
        "--save",
        "",
        "--appendonly",
        "no",
        "--logfile",
        str(directory / "redis.log"),
        "--repl-diskless-sync-delay",
        "0",
        *extra,
    ]


def start_server(root: Path, *, tls: TlsFiles | None = None, extra: tuple[str, ...] = ()) -> RedisProcess:
    """One redis-server (TLS only with `tls`; `extra` options last) on a free port in `root`; `url(it)` reaches db 0."""
    binary = require_binaries("redis-server")["redis-server"]
    return RedisProcess(binary, free_port(), root, [], tls=tls).start_with(
        lambda p, d: server_args(p, d, *extra, tls=tls)
    )


def url(process: RedisProcess, db: int = 0) -> str:
    """The REDIS_URL of one server started here (rediss:// trusting its test CA when it speaks TLS)."""
    if process.tls is None:
        return f"redis://127.0.0.1:{process.port}/{db}"
    return f"rediss://127.0.0.1:{process.port}/{db}{process.tls.query}"


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
    tls: TlsFiles | None = None  # every node, replication link and Sentinel speaks only TLS

    @property
    def url(self) -> str:
        """The REDIS_URL that reaches this deployment through its Sentinels."""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        if self.tls is not None:
            return f"rediss+sentinel://{hosts}/{MASTER_NAME}/0{self.tls.query}"
        return f"redis+sentinel://{hosts}/{MASTER_NAME}/0"

    def start(self) -> SentinelDeployment:
        """Starts everything and waits until every Sentinel sees the primary and its replicas; stops all on failure."""
        binary = require_binaries("redis-server")["redis-server"]
        try:
            port = free_port()
            tls = self.tls
            self.primary = RedisProcess(binary, port, self.root / "primary", [], tls=tls).start_with(
                lambda p, d: server_args(p, d, tls=tls)
            )
            port = self.primary.port  # another one if the first was taken meanwhile
            for index in range(self.replicas):
                replica_port = free_port()
                directory = self.root / f"replica{index}"
                self.replica_nodes.append(
                    RedisProcess(binary, replica_port, directory, [], tls=tls).start_with(
                        lambda p, d: server_args(p, d, "--replicaof", "127.0.0.1", str(port), tls=tls)
                    )
                )
            wait_until(
                lambda: self._connected_replicas(port) >= self.replicas, "the replicas to be in sync (state=online)"
            )
            for index in range(3):
                self.sentinels.append(self._start_sentinel(binary, index, port))
            wait_until(self._sentinels_agree, "the Sentinels to see the primary, its replicas and each other")
        except BaseException:
            self.stop()
            raise
        return self

    def _start_sentinel(self, binary: str, index: int, primary_port: int) -> RedisProcess:
        port = free_port()
        directory = self.root / f"sentinel{index}"
        directory.mkdir(parents=True, exist_ok=True)
        conf = directory / "sentinel.conf"  # Sentinel rewrites its file: one each, writable
        ports = f"port 0\ntls-port {port}\n{self.tls.conf()}" if self.tls else f"port {port}\n"
        conf.write_text(
            f"{ports}bind 127.0.0.1\ndir {directory}\nlogfile {directory / 'redis.log'}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after_ms}\n"
            f"sentinel failover-timeout {MASTER_NAME} {self.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        return RedisProcess(binary, port, directory, [str(conf), "--sentinel"], tls=self.tls).start()

    def _sentinels_agree(self) -> bool:
        for sentinel in self.sentinels:
            info = sentinel.command("INFO", "sentinel")
            if f"slaves={self.replicas}," not in info or "sentinels=3" not in info:
                return False
        return True

    def _connected_replicas(self, port: int) -> int:
        """Replicas in sync with the primary on `port` (`state=online`, not still loading its copy)."""
        return command(port, "INFO", "replication", tls=self.tls).count("state=online")

    def master_port(self) -> int:
        """The primary's port as the first Sentinel reports it now."""
        reply = self.sentinels[0].command("SENTINEL", "get-master-addr-by-name", MASTER_NAME).splitlines()
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
                int(s.command("SENTINEL", "get-master-addr-by-name", MASTER_NAME).splitlines()[1])
                for s in self.sentinels
            }
            if len(reported) != 1 or next(iter(reported)) not in ports:
                return False
            return "role:master" in command(next(iter(reported)), "INFO", "replication", tls=self.tls)

        wait_until(promoted, "the Sentinels to promote a replica after the primary was killed")
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
    tls: TlsFiles | None = None  # clients and the cluster bus speak only TLS

    @property
    def url(self) -> str:
        """The REDIS_URL of this cluster (every node as a start-up node)."""
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        return f"rediss+cluster://{hosts}{self.tls.query}" if self.tls else f"redis+cluster://{hosts}"

    def start(self) -> ClusterDeployment:
        """Starts the nodes, creates the cluster and waits for `cluster_state:ok` on each; stops all on failure."""
        binaries = require_binaries("redis-server", "redis-cli")
        try:
            for index in range(self.masters):
                tls = self.tls
                node = RedisProcess(
                    binaries["redis-server"],
                    cluster_port(),
                    self.root / f"node{index}",
                    [],
                    tls=tls,
                    next_port=cluster_port,
                )
                self.nodes.append(
                    node.start_with(
                        lambda p, d, tls=tls: server_args(
                            p,
                            d,
                            "--cluster-enabled",
                            "yes",
                            "--cluster-config-file",
                            str(d / "nodes.conf"),
                            "--cluster-node-timeout",
                            "2000",
                            *(["--tls-cluster", "yes"] if tls else []),
                            tls=tls,
                        )
                    )
                )
            cli_tls = ["--tls", "--cacert", str(self.tls.ca)] if self.tls else []
            create = subprocess.run(
                [
                    binaries["redis-cli"],
                    *cli_tls,
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{n.port}" for n in self.nodes),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if create.returncode != 0:
                raise RuntimeError(
                    f"redis-cli --cluster create failed: {create.stdout[-1000:]} {create.stderr[-1000:]}"
                )
            wait_until(
                lambda: all("cluster_state:ok" in n.command("CLUSTER", "INFO") for n in self.nodes),
                "cluster_state:ok on every node",
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stops every node."""
        for node in self.nodes:
            node.stop()
