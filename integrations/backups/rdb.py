"""A streamed RDB reader: turns an RDB file, read chunk by chunk, into one `RdbEntry` per key with the key's
database, absolute expiry and its value as a `DUMP`-format payload that `RESTORE` accepts.

A DUMP payload is the value exactly as the RDB file stores it (type byte and encoded value), followed by the RDB
version (2 bytes, little endian) and a CRC-64 (Jones, reflected; 8 bytes, little endian) of everything before it
(redis/src/cluster.c `createDumpPayload`, redis/src/crc64.c). So the reader never decodes values: it only finds
where each one ends (redis/src/rdb.c `rdbLoadObject`), and keeps its bytes. Memory is one value at a time.

Module values and hashes with per-field TTLs (Redis 7.4+) cannot be delimited without the module or are not
replayable by older servers: they raise `RdbUnsupported` naming the key's type, so a caller can refuse with the
reason instead of restoring half a dataset."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

# RDB opcodes (redis/src/rdb.h).
_SLOT_INFO, _FUNCTION2, _FUNCTION_PRE_GA, _MODULE_AUX = 0xF4, 0xF5, 0xF6, 0xF7
_IDLE, _FREQ, _AUX, _RESIZEDB, _EXPIRETIME_MS, _EXPIRETIME, _SELECTDB, _EOF = range(0xF8, 0x100)

TYPE_NAMES = {
    0: "string",
    1: "list",
    2: "set",
    3: "zset",
    4: "hash",
    5: "zset",
    6: "module",
    7: "module",
    9: "hash (zipmap)",
    10: "list (ziplist)",
    11: "set (intset)",
    12: "zset (ziplist)",
    13: "hash (ziplist)",
    14: "list (quicklist)",
    15: "stream",
    16: "hash (listpack)",
    17: "zset (listpack)",
    18: "list (quicklist)",
    19: "stream",
    20: "set (listpack)",
    21: "stream",
    22: "hash with field TTLs",
    23: "hash with field TTLs",
    24: "hash with field TTLs",
    25: "hash with field TTLs",
}
_ONE_STRING = frozenset({0, 9, 10, 11, 12, 13, 16, 17, 20})
_STRINGS = frozenset({1, 2})  # a count, then that many strings
_PAIRS = frozenset({4})  # a count, then that many string pairs
_STREAMS = frozenset({15, 19, 21})


class RdbError(Exception):
    """The bytes are not a valid RDB file (or it ends early)."""


class RdbUnsupported(RdbError):
    """A value this reader cannot replay (a module type, a hash with per-field TTLs)."""


@dataclass(frozen=True)
class RdbEntry:
    """One key: its database, key, absolute expiry in ms (None: none), and DUMP payload."""

    db: int
    key: bytes
    expire_ms: int | None
    payload: bytes
    type_name: str


def _crc64_table() -> list[int]:
    poly = 0x95AC9329AC4BC9B5  # 0xad93d23594c935a9 (Jones) bit-reversed, for the reflected algorithm
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc64_table()


def crc64(data: bytes, crc: int = 0) -> int:
    """Redis's CRC-64 (crc64("123456789") == 0xe9c6d914c4b8d9ca)."""
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


def dump_payload(value: bytes, rdb_version: int) -> bytes:
    """`value` (type byte and encoded value) framed as DUMP does."""
    body = value + struct.pack("<H", rdb_version)
    return body + struct.pack("<Q", crc64(body))


class _Reader:
    """Bytes from an async chunk stream, with an optional capture of everything read."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()
        self._pos = 0
        self.capture: bytearray | None = None

    async def take(self, count: int) -> bytes:
        while len(self._buffer) - self._pos < count:
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                raise RdbError("the RDB file ends in the middle of a value") from None
            if self._pos > 1 << 20:  # drop what was read so the buffer stays about one chunk
                del self._buffer[: self._pos]
                self._pos = 0
            self._buffer += chunk
        data = bytes(self._buffer[self._pos : self._pos + count])
        self._pos += count
        if self.capture is not None:
            self.capture += data
        return data

    async def byte(self) -> int:
        return (await self.take(1))[0]

    async def length(self) -> tuple[int, bool]:
        """(length, True) or (special encoding, False)."""
        first = await self.byte()
        kind = first >> 6
        if kind == 0:
            return first & 0x3F, True
        if kind == 1:
            return ((first & 0x3F) << 8) | await self.byte(), True
        if kind == 3:
            return first & 0x3F, False
        if first == 0x80:
            return struct.unpack(">I", await self.take(4))[0], True
        if first == 0x81:
            return struct.unpack(">Q", await self.take(8))[0], True
        raise RdbError(f"unknown length encoding 0x{first:02x}")

    async def number(self) -> int:
        value, plain = await self.length()
        if not plain:
            raise RdbError("expected a length, found an encoded string")
        return value

    async def string(self) -> bytes:
        value, plain = await self.length()
        if plain:
            return await self.take(value)
        if value == 0:
            return str(struct.unpack("b", await self.take(1))[0]).encode()
        if value == 1:
            return str(struct.unpack("<h", await self.take(2))[0]).encode()
        if value == 2:
            return str(struct.unpack("<i", await self.take(4))[0]).encode()
        if value == 3:  # LZF: kept compressed, RESTORE decompresses (only keys need their text)
            compressed = await self.number()
            size = await self.number()
            return _lzf_decompress(await self.take(compressed), size)
        raise RdbError(f"unknown string encoding {value}")


def _lzf_decompress(data: bytes, size: int) -> bytes:
    """liblzf's format (redis/src/lzf_d.c): literal runs and back references."""
    out = bytearray()
    i = 0
    while i < len(data):
        ctrl = data[i]
        i += 1
        if ctrl < 32:
            out += data[i : i + ctrl + 1]
            i += ctrl + 1
            continue
        length = ctrl >> 5
        if length == 7:
            length += data[i]
            i += 1
        ref = len(out) - ((ctrl & 0x1F) << 8) - data[i] - 1
        i += 1
        if ref < 0:
            raise RdbError("damaged LZF data")
        for _ in range(length + 2):
            out.append(out[ref])
            ref += 1
    if len(out) != size:
        raise RdbError("damaged LZF data (wrong length)")
    return bytes(out)


async def _skip_value(reader: _Reader, kind: int) -> None:
    """Reads one value of type `kind` (its bytes land in the reader's capture)."""
    if kind in _ONE_STRING:
        await reader.string()
    elif kind in _STRINGS or kind == 14:
        for _ in range(await reader.number()):
            await reader.string()
    elif kind in _PAIRS:
        for _ in range(await reader.number()):
            await reader.string()
            await reader.string()
    elif kind == 3:  # zset: member, then the score as a length-prefixed text (253-255: nan, +inf, -inf)
        for _ in range(await reader.number()):
            await reader.string()
            size = await reader.byte()
            if size < 253:
                await reader.take(size)
    elif kind == 5:
        for _ in range(await reader.number()):
            await reader.string()
            await reader.take(8)
    elif kind == 18:  # quicklist 2: per node, its container kind and a listpack or plain string
        for _ in range(await reader.number()):
            await reader.number()
            await reader.string()
    elif kind in _STREAMS:
        await _skip_stream(reader, kind)
    else:
        raise RdbUnsupported(f"values of type {TYPE_NAMES.get(kind, f'#{kind}')}")


async def _skip_stream(reader: _Reader, kind: int) -> None:
    """redis/src/rdb.c: listpacks, length, last id, (v2+) first id, max deleted id, entries added, then the
    consumer groups with their pending entries and consumers."""
    for _ in range(await reader.number()):
        await reader.string()
        await reader.string()
    for _ in range(3):
        await reader.number()
    if kind >= 19:
        for _ in range(5):
            await reader.number()
    for _ in range(await reader.number()):
        await reader.string()
        await reader.number()
        await reader.number()
        if kind >= 19:
            await reader.number()
        for _ in range(await reader.number()):
            await reader.take(16 + 8)
            await reader.number()
        for _ in range(await reader.number()):
            await reader.string()
            await reader.take(8)
            if kind >= 21:
                await reader.take(8)
            for _ in range(await reader.number()):
                await reader.take(16)


async def read_rdb(chunks: AsyncIterator[bytes]) -> AsyncIterator[RdbEntry]:
    """The keys of an RDB stream, in file order; RdbError when it is damaged, RdbUnsupported at a value that
    cannot be replayed."""
    reader = _Reader(chunks)
    head = await reader.take(9)
    if not (head.startswith(b"REDIS") and head[5:].isdigit()):
        raise RdbError("not an RDB file (the header is not REDIS followed by a version)")
    version = int(head[5:])
    db = 0
    expire_ms: int | None = None
    while True:
        opcode = await reader.byte()
        if opcode == _EOF:
            return
        if opcode == _SELECTDB:
            db = await reader.number()
        elif opcode == _EXPIRETIME_MS:
            expire_ms = struct.unpack("<q", await reader.take(8))[0]
        elif opcode == _EXPIRETIME:
            expire_ms = struct.unpack("<i", await reader.take(4))[0] * 1000
        elif opcode == _RESIZEDB:
            await reader.number()
            await reader.number()
        elif opcode == _AUX:
            await reader.string()
            await reader.string()
        elif opcode == _FREQ:
            await reader.byte()
        elif opcode == _IDLE:
            await reader.number()
        elif opcode == _SLOT_INFO:
            for _ in range(3):
                await reader.number()
        elif opcode in (_FUNCTION2, _FUNCTION_PRE_GA):
            await reader.string()  # functions are not keys: replaying them is FUNCTION RESTORE's job
        elif opcode == _MODULE_AUX:
            raise RdbUnsupported("module data (a module's auxiliary section)")
        else:
            key = await reader.string()
            reader.capture = bytearray([opcode])
            try:
                await _skip_value(reader, opcode)
            except RdbUnsupported as error:
                raise RdbUnsupported(f"key {key[:100]!r} holds {error}") from None
            value = bytes(reader.capture)
            reader.capture = None
            yield RdbEntry(
                db=db,
                key=key,
                expire_ms=expire_ms,
                payload=dump_payload(value, version),
                type_name=TYPE_NAMES.get(opcode, str(opcode)),
            )
            expire_ms = None


def rdb_version(head: bytes) -> int | None:
    """The version in an RDB header, or None."""
    return int(head[5:9]) if head.startswith(b"REDIS") and head[5:9].isdigit() else None
