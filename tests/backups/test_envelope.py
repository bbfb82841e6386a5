"""The encrypted object format without any server: every size round-trips, and every change an attacker or a bad
disk can make (a flipped bit, a dropped, repeated or reordered frame, a cut, bytes appended, another key, another
object's header) is refused; keys of the wrong length are refused naming the variable, never the value; the
configuration names the key that is wrong."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.shell.composition import StartupError, check_backup_keys
from bot.shell.config import ConfigError, parse_config
from integrations.backups.base import BackupError
from integrations.backups.envelope import (
    FRAME_SIZE,
    MAGIC,
    EncryptionSettings,
    Envelope,
    Header,
    Opener,
    Sealer,
    open_sealed,
    parse_key,
    seal,
)

KEY = os.urandom(32)
ENV = {"BACKUP_KEY": base64.b64encode(KEY).decode()}


async def _run(function, *args):
    return function(*args)


async def _pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def sealed(data: bytes, *, context: str = "appdb/one.dump", part: int = 6 * FRAME_SIZE) -> tuple[bytes, int]:
    """The encrypted object of `data` and the number of parts it came out in."""
    envelope = Envelope(EncryptionSettings(key_env="BACKUP_KEY"), environ=ENV)
    key = await envelope.new_key(context)
    parts = [p async for p in seal(_pieces(data, part), key, context, _run)]
    return b"".join(parts), len(parts)


async def opened(blob: bytes, *, environ: dict[str, str] = ENV, read: int = 1_000_003) -> bytes:
    envelope = Envelope(EncryptionSettings(key_env="BACKUP_KEY"), environ=environ)

    async def unwrap(header: Header) -> bytes:
        return await envelope.unwrap(header.key_ref, header.wrapped_key, header.context)

    return b"".join([p async for p in open_sealed(_pieces(blob, read), unwrap, _run)])


@pytest.mark.parametrize("size", [0, 1, FRAME_SIZE - 1, FRAME_SIZE, FRAME_SIZE + 1, 13 * FRAME_SIZE + 12345])
async def test_every_size_round_trips_one_part_out_per_part_in(size: int) -> None:
    data = os.urandom(size)
    blob, parts = await sealed(data)
    assert blob.startswith(MAGIC)
    if size >= 64:
        assert data[:64] not in blob  # nothing of the plaintext is stored
    assert parts == max(1, -(-size // (6 * FRAME_SIZE)))  # S3 parts keep their size: no extra small part
    assert await opened(blob) == data


def _frames(blob: bytes) -> tuple[bytes, list[bytes]]:
    decoded = Header.decode(blob)
    assert decoded is not None
    position = decoded[1]
    frames = []
    while position < len(blob):
        length = int.from_bytes(blob[position : position + 4], "big")
        frames.append(blob[position : position + 4 + length])
        position += 4 + length
    return blob[: decoded[1]], frames


async def test_every_kind_of_change_is_refused() -> None:
    data = os.urandom(3 * FRAME_SIZE + 100)
    blob, _ = await sealed(data)
    header, frames = _frames(blob)
    assert len(frames) == 4
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x01
    other_object, _ = await sealed(data, context="appdb/two.dump")
    changes = {
        "a flipped bit": bytes(flipped),
        "a dropped frame": header + frames[0] + frames[2] + frames[3],
        "reordered frames": header + frames[1] + frames[0] + frames[2] + frames[3],
        "a repeated frame": header + frames[0] + frames[0] + frames[1] + frames[2] + frames[3],
        "the last frame cut": header + b"".join(frames[:3]),
        "a cut inside a frame": blob[:-7],
        "bytes appended": blob + b"\x00\x00\x00\x10" + b"x" * 16,
        "the header of another object": _frames(other_object)[0] + b"".join(frames),
        "only a header": header,
    }
    for what, changed in changes.items():
        with pytest.raises(BackupError) as caught:
            await opened(changed)
        assert (
            "authentication" in str(caught.value)
            or "truncated" in str(caught.value)
            or "after its last frame" in str(caught.value)
            or "does not open" in str(caught.value)
        ), what


async def test_another_key_does_not_open_it_and_the_error_does_not_show_a_key() -> None:
    blob, _ = await sealed(b"secret rows")
    other = base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(BackupError) as caught:
        await opened(blob, environ={"BACKUP_KEY": other})
    assert "BACKUP_KEY does not open" in str(caught.value) and other not in str(caught.value)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=5000), st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=255))
def test_any_change_to_a_small_object_is_refused(data: bytes, where: int, bit: int) -> None:
    header = Header(frame_size=1024, key_ref="env:K", wrapped_key=b"w" * 60, context="t/x.dump")
    sealer = Sealer(KEY, header)
    blob = bytearray(sealer.seal(data) + sealer.finish())
    blob[where % len(blob)] ^= bit
    encoded = header.encode()
    if bytes(blob[: len(encoded)]) != encoded:
        return  # the header itself changed: the unwrap step refuses it (tested above)
    opener = Opener(KEY, header)
    with pytest.raises(BackupError):
        opener.open(bytes(blob[len(encoded) :]))
        opener.finish()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "is not set"),
        (base64.b64encode(os.urandom(16)).decode(), "holds a 16-byte key; AES-256 needs 32 bytes"),
        (os.urandom(31).hex(), "holds a 31-byte key"),
        ("not a key!", "neither hex nor base64"),
    ],
)
def test_a_key_of_the_wrong_length_is_refused_naming_the_variable(value: str, expected: str) -> None:
    with pytest.raises(BackupError) as caught:
        parse_key({"BACKUP_KEY": value}, "BACKUP_KEY")
    assert "BACKUP_KEY" in str(caught.value) and expected in str(caught.value)
    assert not value or value not in str(caught.value)
    assert parse_key({"K": os.urandom(32).hex()}, "K") and len(parse_key(ENV, "BACKUP_KEY")) == 32


_CONFIG = """
roles: {{admins: [U0DEMO]}}
backups:
  storage:
    main: {{kind: s3, bucket: acme-backups, {extra}}}
"""


def test_startup_refuses_a_backup_key_of_the_wrong_length() -> None:
    config = parse_config(_CONFIG.format(extra="encryption: {key_env: BACKUP_KEY}"), "c.yaml")
    short = base64.b64encode(os.urandom(24)).decode()
    with pytest.raises(StartupError) as caught:
        check_backup_keys(config, {"BACKUP_KEY": short})
    assert "backups.storage.main.encryption.key_env" in str(caught.value) and "24-byte" in str(caught.value)
    assert short not in str(caught.value)
    check_backup_keys(config, ENV)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("encryption: {}", "backups.storage.main.encryption: set exactly one of kms_key_id"),
        ("encryption: {kms_key_id: alias/backups, key_env: BACKUP_KEY}", "set exactly one of kms_key_id"),
        ("encryption: {kms_key_id: 'my key'}", "backups.storage.main.encryption: kms_key_id 'my key' is not a KMS key"),
        ("encryption: {key_env: BACKUP_KEY, region: eu-west-1}", "region and endpoint_url_env are for kms_key_id"),
        ("object_lock: {mode: LEGAL_HOLD, days: 30}", "backups.storage.main.object_lock.mode"),
        ("object_lock: {mode: GOVERNANCE, days: 0}", "backups.storage.main.object_lock.days"),
    ],
)
def test_config_errors_name_the_key(extra: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_CONFIG.format(extra=extra), "c.yaml")
    assert expected in str(caught.value)


def test_good_encryption_and_lock_settings_parse() -> None:
    arn = "arn:aws:kms:eu-west-1:123456789012:alias/b"
    config = parse_config(
        _CONFIG.format(extra=f"encryption: {{kms_key_id: '{arn}'}}, object_lock: {{mode: COMPLIANCE, days: 30}}"),
        "c.yaml",
    )
    storage = config.backups.storage["main"]
    assert storage.encryption is not None and storage.encryption.key_ref == f"kms:{arn}"
    assert storage.object_lock is not None and storage.object_lock.days == 30
