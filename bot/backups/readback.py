"""A recorded backup's object read back from storage: the one step every restore, drill and verification shares.

`check()` reads the whole object and proves it is the one recorded (size and sha256 of the stored bytes) and, when
it is encrypted, that every frame authenticates under its data key; nothing read is kept. A restore calls it before
the first byte reaches its target, so a damaged or tampered object is refused with nothing written. `plaintext()`
then streams the dump (decrypted, each frame authenticated before it is passed on) and checks size and sha256 again
at the end, since the object is read a second time: whatever consumes it must write into something it can throw
away (a new database, a scratch server) until the stream has ended without an error.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

from bot.backups.model import BackupRecord
from integrations.backups.base import BackupError, BackupStore, Hashed
from integrations.backups.envelope import Envelope, Header, open_sealed


class StoredObject:
    """One backup's object: check it whole, then stream its plaintext."""

    def __init__(self, store: BackupStore, envelope: Envelope | None, record: BackupRecord) -> None:
        if record.key is None:
            raise BackupError(f"{record.id} has no stored object (it is {record.kind})")
        self._store = store
        self._envelope = envelope
        self._record = record
        self.key: str = record.key

    async def check(self) -> str:
        """Reads every byte: BackupError when the object is missing, is not the recorded one, or (encrypted) does
        not authenticate. What was checked, for people."""
        if not await self._store.exists(self.key):
            raise BackupError(f"the object {self._store.location(self.key)} is missing")
        async for _ in self.plaintext():
            pass
        what = f"sha256 of all {self._record.size} bytes as recorded"
        return what + (", every encrypted frame authenticated" if self._record.encryption else "")

    async def plaintext(self) -> AsyncIterator[bytes]:
        """The dump as it was made (decrypted when it was encrypted); BackupError at the first frame that does not
        authenticate, or at the end when the bytes read differ from the record."""
        hashed = Hashed(self._store.read(self.key))
        source = hashed.chunks()
        if self._record.encryption is not None:
            source = self._decrypted(source)
        async for chunk in source:
            yield chunk
        record = self._record
        if hashed.sha256 != record.sha256 or hashed.size != record.size:
            raise BackupError(
                f"checksum mismatch: the stored object has sha256 {hashed.sha256} ({hashed.size} bytes), "
                f"the backup recorded {record.sha256} ({record.size} bytes)"
            )

    def _decrypted(self, source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        if self._envelope is None:
            raise BackupError(
                f"{self._record.id} is encrypted but its storage has no `encryption` configured any "
                "more: configure the key it was made with"
            )
        return open_sealed(source, self._unwrap)

    async def _unwrap(self, header: Header) -> bytes:
        encryption = self._record.encryption
        assert encryption is not None and self._envelope is not None
        # The header is authenticated by every frame; the record is ours: they must name the same key and object.
        if header.wrapped_key != base64.b64decode(encryption.wrapped_key) or header.context != self.key:
            raise BackupError(
                f"the encrypted object at {self._store.location(self.key)} is not the one "
                f"{self._record.id} recorded (another data key or object)"
            )
        return await self._envelope.unwrap(header.key_ref, header.wrapped_key, header.context)
