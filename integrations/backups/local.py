"""Backup storage in a local folder (`chatops dev`, a mounted volume).

An upload writes `<key>.partial` and renames it to `<key>` when complete, so a killed run leaves only a
`.partial` file: never listed as a backup, found by `incomplete`, removed by `abort_incomplete`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Literal

from pydantic import Field

from integrations.backups.base import PART_SIZE, BackupError
from integrations.backups.envelope import EncryptionSettings
from integrations.types import StrictModel

PARTIAL = ".partial"
READ_CHUNK = 4 * 1024 * 1024


class LocalStorageSettings(StrictModel):
    """`storage.<name>: {kind: local, path: ./backups}` (a relative path is taken from the working directory)."""

    kind: Literal["local"]
    path: str = Field(min_length=1)
    encryption: EncryptionSettings | None = None


class LocalUpload:
    """A file being written next to where it will be."""

    def __init__(self, store: LocalBackupStore, key: str, file: IO[bytes], partial: Path) -> None:
        self._store = store
        self.key = key
        self.upload_id = partial.name
        self.retain_until: datetime | None = None  # a folder has no object lock
        self._file: IO[bytes] | None = file
        self._partial = partial

    async def write(self, part: bytes | bytearray) -> None:
        """Appends a part."""
        assert self._file is not None
        await asyncio.to_thread(self._file.write, part)

    async def complete(self) -> str:
        """Flushes, syncs and renames the file into place."""
        assert self._file is not None
        file, self._file = self._file, None

        def finish() -> None:
            file.flush()
            os.fsync(file.fileno())
            file.close()
            os.replace(self._partial, self._store.path(self.key))

        await asyncio.to_thread(finish)
        return self._store.location(self.key)

    async def abort(self) -> None:
        """Removes the partial file; idempotent."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._partial.unlink(missing_ok=True)


class LocalBackupStore:
    """Backup objects as files under one folder."""

    def __init__(self, settings: LocalStorageSettings) -> None:
        self.root = Path(settings.path).absolute()
        self.part_size = PART_SIZE

    def path(self, key: str) -> Path:
        """The file of `key`; BackupError for a key that would leave the folder."""
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise BackupError(f"backup key {key!r} is outside the storage folder")
        return path

    def location(self, key: str) -> str:
        """The absolute path."""
        return str(self.root / key)

    async def begin(self, key: str) -> LocalUpload:
        """Opens `<key>.<random>.partial` for writing."""
        final = self.path(key)
        partial = final.with_name(f"{final.name}.{secrets.token_hex(4)}{PARTIAL}")

        def open_file() -> IO[bytes]:
            final.parent.mkdir(parents=True, exist_ok=True)
            return partial.open("xb")

        try:
            file = await asyncio.to_thread(open_file)
        except OSError as error:
            raise BackupError(f"cannot write to {final.parent}: {error.strerror}") from None
        return LocalUpload(self, key, file, partial)

    async def read(self, key: str) -> AsyncIterator[bytes]:
        """The file in chunks."""
        try:
            file = await asyncio.to_thread(self.path(key).open, "rb")
        except OSError as error:
            raise BackupError(f"cannot read {self.location(key)}: {error.strerror}") from None
        try:
            while chunk := await asyncio.to_thread(file.read, READ_CHUNK):
                yield chunk
        finally:
            file.close()

    async def put_small(self, key: str, data: bytes) -> None:
        """Writes a small file atomically."""
        path = self.path(key)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(path.name + PARTIAL)
            temporary.write_bytes(data)
            os.replace(temporary, path)

        await asyncio.to_thread(write)

    async def get_small(self, key: str) -> bytes | None:
        """A small file's bytes, or None."""
        try:
            return await asyncio.to_thread(self.path(key).read_bytes)
        except FileNotFoundError:
            return None

    async def exists(self, key: str) -> bool:
        """Whether the file exists."""
        return self.path(key).is_file()

    async def delete(self, keys: Sequence[str]) -> None:
        """Removes files (missing ones are fine)."""
        for key in keys:
            self.path(key).unlink(missing_ok=True)

    async def incomplete(self, prefix: str) -> list[tuple[str, str]]:
        """Partial files under `prefix`: (the key they were for, the partial file's name)."""
        base = self.path(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        found = []
        for partial in base.rglob(f"*{PARTIAL}"):
            stem = partial.name[: -len(PARTIAL)].rsplit(".", 1)[0]
            found.append((str(partial.with_name(stem).relative_to(self.root)), partial.name))
        return found

    async def abort_incomplete(self, key: str, upload_id: str) -> None:
        """Removes one partial file."""
        with contextlib.suppress(FileNotFoundError):
            self.path(key).with_name(upload_id).unlink()

    async def aclose(self) -> None:
        """Nothing to release."""


def build(settings: LocalStorageSettings, *, environ: Mapping[str, str]) -> LocalBackupStore:
    """The store for validated settings."""
    return LocalBackupStore(settings)
