"""The backup seam: where backups are stored (`BackupStore`, an `Upload` in progress), what makes them
(`BackupEngine`: PostgreSQL, Redis, RDS snapshots), and the streaming helpers they share.

A dump is an async iterator of parts of `PART_SIZE` bytes (the last one shorter), read from a subprocess's stdout
and uploaded as it comes: no temporary file, and memory bounded by a few parts whatever the database's size.
Every error raised here is a `BackupError` whose message is safe to show: it never holds a DSN or a password.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable
from urllib.parse import quote, unquote, urlsplit, urlunsplit

log = logging.getLogger(__name__)

PART_SIZE = 8 * 1024 * 1024
"""Default bytes per uploaded part: S3 wants at least 5 MiB per part but the last, and at most 10,000 parts, so
8 MiB parts allow dumps up to 78 GiB (an S3 storage's `part_size` raises that)."""

READ_LIMIT = 1024 * 1024
"""The subprocess pipe reader's buffer: fewer, larger reads than asyncio's 64 KiB default."""

STDERR_TAIL = 2000


class BackupError(Exception):
    """A backup, verification or restore step failed; the message is safe to show (no DSN, no password)."""


@dataclass(frozen=True)
class Progress:
    """How far a stream got: bytes so far and seconds since it started."""

    bytes: int
    elapsed: float

    @property
    def rate(self) -> float:
        """Bytes per second so far."""
        return self.bytes / self.elapsed if self.elapsed > 0 else 0.0


OnProgress = Callable[[Progress], Awaitable[None]]


@dataclass(frozen=True)
class Streamed:
    """What a finished stream amounted to."""

    size: int
    sha256: str
    seconds: float


@dataclass(frozen=True)
class VerifyFacts:
    """What a verification found beyond the checksum: tables and row counts (PostgreSQL), a format check."""

    detail: str
    tables: int | None = None
    rows: Mapping[str, int] = field(default_factory=dict)


@runtime_checkable
class Upload(Protocol):
    """One object being written: parts in order, then `complete` (it becomes visible) or `abort` (nothing is)."""

    key: str
    upload_id: str
    retain_until: datetime | None
    """Until when the object is locked against deletion (S3 Object Lock), None when it is not."""

    async def write(self, part: bytes | bytearray) -> None:
        """Appends one part (every part but the last at least 5 MiB for S3)."""

    async def complete(self) -> str:
        """Makes the object visible; returns its location (`s3://bucket/key`, a path)."""

    async def abort(self) -> None:
        """Discards everything written; safe to call twice."""


@runtime_checkable
class BackupStore(Protocol):
    """Where backup objects live (an S3 bucket, a local folder)."""

    part_size: int

    async def begin(self, key: str) -> Upload:
        """Starts writing the object `key` (relative to the store's prefix)."""

    def read(self, key: str) -> AsyncIterator[bytes]:
        """The object's bytes in parts."""

    async def put_small(self, key: str, data: bytes) -> None:
        """Writes a small object at once (the JSON metadata next to a backup)."""

    async def get_small(self, key: str) -> bytes | None:
        """A small object's bytes, or None when there is none."""

    async def delete(self, keys: Sequence[str]) -> None:
        """Deletes objects (missing ones are fine)."""

    async def exists(self, key: str) -> bool:
        """Whether a complete object `key` exists."""

    async def incomplete(self, prefix: str) -> list[tuple[str, str]]:
        """(key, upload id) of every unfinished upload under `prefix`: never a backup, only something to abort."""

    async def abort_incomplete(self, key: str, upload_id: str) -> None:
        """Aborts one unfinished upload."""

    def location(self, key: str) -> str:
        """Where `key` is, for people: `s3://bucket/prefix/key`, `/var/backups/key`."""

    async def aclose(self) -> None:
        """Releases clients."""


class BackupEngine(Protocol):
    """Makes a dump of one target as a stream of parts (PostgreSQL, Redis)."""

    extension: str

    def dump(self, part_size: int = PART_SIZE) -> AsyncIterator[bytes]:
        """The dump, in parts of `part_size` bytes; raises BackupError when the tool fails."""

    async def verify(self, chunks: AsyncIterator[bytes]) -> VerifyFacts:
        """Checks a dump beyond its checksum (restore into scratch, format check); BackupError when it is bad."""

    async def restore(self, chunks: AsyncIterator[bytes], into_env: str | None) -> str:
        """Restores a dump into the target (or the database named by the variable `into_env`); a summary."""


# -- subprocesses ------------------------------------------------------------------------------------------------


class Subprocess:
    """A child process started from an argv list (never a shell), its stderr kept (bounded) for error messages."""

    def __init__(self, process: asyncio.subprocess.Process, name: str, secrets: Sequence[str]) -> None:
        self.process = process
        self.name = name
        self._secrets = [s for s in secrets if s]
        self._stderr = bytearray()
        self._reader = asyncio.get_running_loop().create_task(self._drain())

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        secrets: Sequence[str] = (),
        stdin: bool = False,
        stdout: bool = False,
    ) -> Subprocess:
        """Starts `argv`; BackupError when the program is missing."""
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                env=dict(env),
                limit=READ_LIMIT,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if stdout else asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError:
            raise BackupError(f"{argv[0]} is not installed (not found on PATH)") from None
        except PermissionError:
            raise BackupError(f"{argv[0]} cannot be run (permission denied)") from None
        for descriptor in (1, 0):
            _widen_pipe(process, descriptor)
        return cls(process, argv[0].rsplit("/", 1)[-1], secrets)

    async def _drain(self) -> None:
        assert self.process.stderr is not None
        while chunk := await self.process.stderr.read(65536):
            self._stderr += chunk
            if len(self._stderr) > 4 * STDERR_TAIL:
                del self._stderr[: len(self._stderr) - STDERR_TAIL]

    def stderr_tail(self) -> str:
        """The end of stderr, with any secret this process was given replaced by ***."""
        text = self._stderr.decode("utf-8", "replace")[-STDERR_TAIL:].strip()
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    async def finish(self) -> None:
        """Waits for the exit; BackupError with the stderr tail when it failed."""
        code = await self.process.wait()
        with contextlib.suppress(Exception):
            await self._reader
        if code != 0:
            tail = self.stderr_tail()
            raise BackupError(f"{self.name} exited with status {code}" + (f": {tail}" if tail else ""))

    async def kill(self) -> None:
        """Ends the process if it still runs (a cancelled or failed stream)."""
        transport = getattr(self.process, "_transport", None)
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            # A reader that paused past its limit never reads the end of stdout, and wait() waits for the pipes
            # too: close stdout (and stdin) first, or a cancelled stream of a fast dump waits forever.
            for descriptor in (0, 1):
                pipe = transport.get_pipe_transport(descriptor) if transport is not None else None
                if pipe is not None:
                    pipe.close()
            await self.process.wait()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        # A stream stopped early leaves stdout unread: close the pipes now, not when the collector finds them (an
        # unclosed-transport warning then surfaces somewhere unrelated, e.g. in the next test).
        if transport is not None:
            transport.close()


PIPE_BYTES = 1024 * 1024


def _widen_pipe(process: asyncio.subprocess.Process, descriptor: int) -> None:
    """Gives the pipe to (0) or from (1) the process 1 MiB instead of Linux's 64 KiB, so a dump writing faster
    than one loop turn drains it does not stop and wait (Linux only; elsewhere the default stays)."""
    # asyncio keeps the subprocess transport private, and only it reaches the pipe.
    transport = process._transport.get_pipe_transport(descriptor)  # type: ignore[attr-defined]  # private, see above
    pipe = transport.get_extra_info("pipe") if transport is not None else None
    if pipe is None or not hasattr(fcntl, "F_SETPIPE_SZ"):
        return
    with contextlib.suppress(OSError):
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


async def read_parts(proc: Subprocess, part_size: int = PART_SIZE) -> AsyncIterator[bytes]:
    """The process's stdout in parts of `part_size` bytes; then its exit status is checked (BackupError).
    A consumer that stops early (or is cancelled) kills the process."""
    stdout = proc.process.stdout
    assert stdout is not None
    try:
        pieces: list[bytes] = []
        held = 0
        while True:
            chunk = await stdout.read(min(READ_LIMIT, part_size - held))
            if not chunk:
                break
            pieces.append(chunk)
            held += len(chunk)
            if held >= part_size:
                yield b"".join(pieces)
                pieces, held = [], 0
        await proc.finish()
        if held:
            yield b"".join(pieces)
    finally:
        await proc.kill()


async def feed(proc: Subprocess, chunks: AsyncIterator[bytes]) -> None:
    """Writes `chunks` to the process's stdin, closes it and checks the exit status. A process that stops
    reading early (it failed) is reported with its own error, not as a broken pipe."""
    stdin = proc.process.stdin
    assert stdin is not None
    try:
        try:
            async for chunk in chunks:
                stdin.write(chunk)
                await stdin.drain()
            stdin.close()
            await stdin.wait_closed()
        except (BrokenPipeError, ConnectionResetError):
            pass
        await proc.finish()
    finally:
        await proc.kill()


async def stream_upload(
    chunks: AsyncIterator[bytes | bytearray], upload: Upload, on_progress: OnProgress | None = None
) -> Streamed:
    """Hashes and uploads `chunks` part by part, reading the next part while the previous one uploads (one
    upload in flight, so memory stays at about three parts). Does not complete or abort `upload`."""
    digest = hashlib.sha256()
    size = 0
    started = time.monotonic()
    in_flight: asyncio.Task[None] | None = None
    try:
        async for part in chunks:
            await asyncio.to_thread(digest.update, part)  # hashlib releases the GIL on large buffers
            if in_flight is not None:
                await in_flight
            in_flight = asyncio.get_running_loop().create_task(upload.write(part))
            size += len(part)
            if on_progress is not None:
                await on_progress(Progress(size, time.monotonic() - started))
        if in_flight is not None:
            await in_flight
    finally:
        if in_flight is not None and not in_flight.done():
            in_flight.cancel()
            await asyncio.gather(in_flight, return_exceptions=True)
    return Streamed(size=size, sha256=digest.hexdigest(), seconds=time.monotonic() - started)


@dataclass
class Hashed:
    """Passes chunks through while hashing them; `sha256` and `size` once the stream is used up."""

    source: AsyncIterator[bytes]
    size: int = 0
    _digest: hashlib._Hash = field(default_factory=hashlib.sha256)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The source's chunks, hashed on the way."""
        async for chunk in self.source:
            await asyncio.to_thread(self._digest.update, chunk)
            self.size += len(chunk)
            yield chunk

    @property
    def sha256(self) -> str:
        """The hex digest of what went through."""
        return self._digest.hexdigest()


# -- URLs with passwords -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitUrl:
    """A URL with its password taken out: the URL to put in argv, and the password for the environment."""

    url: str
    password: str
    user: str
    host: str
    port: int | None
    path: str


def split_password(url: str, *, variable: str, schemes: Sequence[str]) -> SplitUrl:
    """`postgresql://u:p@h:5432/db` -> (`postgresql://u@h:5432/db`, `p`). BackupError naming the variable (never
    the value) when it is not such a URL."""
    expected = " or ".join(f"{scheme}://" for scheme in schemes)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise BackupError(f"environment variable {variable} is not a valid {expected} URL") from None
    if parts.scheme not in schemes or not parts.hostname:
        raise BackupError(f"environment variable {variable} is not a {expected} URL with a host")
    user = unquote(parts.username or "")
    password = unquote(parts.password or "")
    host = parts.hostname
    netloc = (quote(user, safe="") + "@" if user else "") + (f"[{host}]" if ":" in host else host)
    if port is not None:
        netloc += f":{port}"
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    return SplitUrl(url=clean, password=password, user=user, host=host, port=port, path=parts.path)


def read_env(environ: Mapping[str, str], variable: str, what: str) -> str:
    """The non-empty value of `variable`; BackupError naming the variable (never a value) otherwise."""
    value = environ.get(variable, "")
    if not value:
        raise BackupError(f"environment variable {variable} ({what}) is not set")
    return value
