"""Encrypted backups, safe restores and Object Lock against real servers: PostgreSQL, SeaweedFS S3, and moto for
KMS and for S3 Object Lock (SeaweedFS's lock support is partial; moto enforces retention on versioned deletes).

- an encrypted backup (key in the environment, and KMS data keys) is restored byte-identical: `pg_dump` of the
  source and of the restored database are the same, both into a new database and over the existing one;
- a tampered encrypted object is refused with nothing written, even when the record's checksum was changed too;
- a damaged plain dump (one byte flipped) is refused and the target database is unchanged;
- a dump that breaks pg_restore half-way (its checksum matching) leaves the target unchanged and nothing behind;
- retention does not delete an object that Object Lock holds, and says so; once the lock is gone every version
  of it is deleted."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import boto3
import botocore.exceptions
import pytest

from bot.backups.model import BackupRecord, BackupState, RestoreRecord, RestoreState
from bot.backups.service import BackupService
from bot.shell.config import ChatopsConfig, parse_config
from integrations.backups.envelope import MAGIC
from tests.backups.servers import PG_PASSWORD, Postgres, S3Server
from tests.conftest import BotHarness
from tests.state import state
from tests.waiting import eventually


@pytest.fixture
def kms_key(moto_url: str) -> str:
    kms = boto3.client(
        "kms",
        endpoint_url=moto_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="eu-west-1",
    )
    key_id = str(kms.create_key(Description="chatops backups")["KeyMetadata"]["Arn"])
    kms.close()
    return key_id


@pytest.fixture
def moto_s3(moto_url: str) -> Iterator[object]:
    client = boto3.client(
        "s3",
        endpoint_url=moto_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="eu-west-1",
    )
    yield client
    client.close()


@pytest.fixture
def locked_bucket(moto_s3) -> str:
    name = f"locked-{secrets.token_hex(6)}"
    moto_s3.create_bucket(
        Bucket=name, ObjectLockEnabledForBucket=True, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    return name


@pytest.fixture
def bot_config(
    monkeypatch: pytest.MonkeyPatch,
    postgres: Postgres,
    appdb: str,
    s3_server: S3Server,
    bucket: str,
    moto_url: str,
    kms_key: str,
    locked_bucket: str,
) -> ChatopsConfig:
    monkeypatch.setenv("APPDB_URL", postgres.url(appdb))
    monkeypatch.setenv("RESTORE_URL", postgres.url(appdb + "_copy"))
    monkeypatch.setenv("S3_ENDPOINT_URL", s3_server.url)
    monkeypatch.setenv("MOTO_URL", moto_url)
    monkeypatch.setenv("BACKUP_KEY", base64.b64encode(os.urandom(32)).decode())
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    s3 = f'bucket: "{bucket}", region: eu-west-1, endpoint_url_env: S3_ENDPOINT_URL, part_size_mib: 5'
    pg = f'kind: postgres, dsn_env: APPDB_URL, bin_dir: "{postgres.bin_dir}", restore_into: [RESTORE_URL]'
    return parse_config(
        f"""
slack: {{announce_channel: "#general"}}
roles:
  admins: [U0DEMO]
  operators: [U0BOB]
  approvers: [U0ALICE]
backups:
  operators: operators
  lock_ttl: 3s
  storage:
    sealed: {{kind: s3, {s3}, prefix: "env/", encryption: {{key_env: BACKUP_KEY}}}}
    kms: {{kind: s3, {s3}, prefix: "kms/", encryption: {{kms_key_id: "{kms_key}", endpoint_url_env: MOTO_URL}}}}
    plain: {{kind: s3, {s3}, prefix: "plain/"}}
    locked: {{kind: s3, bucket: "{locked_bucket}", region: eu-west-1, endpoint_url_env: MOTO_URL,
              object_lock: {{mode: GOVERNANCE, days: 1}}}}
  targets:
    sealed: {{{pg}, storage: sealed}}
    kms: {{{pg}, storage: kms}}
    plain: {{{pg}, storage: plain}}
    locked: {{{pg}, storage: locked, retention: {{daily: 1}}}}
  restore_approval: {{required: 1, approvers: approvers}}
""",
        "backups.yaml",
    )


def pg_dump(postgres: Postgres, database: str) -> str:
    """A plain-text dump of the schema and data, without the lines that differ on every run."""
    result = subprocess.run(
        [
            f"{postgres.bin_dir}/pg_dump",
            "--no-owner",
            f"--dbname=postgresql://postgres@127.0.0.1:{postgres.port}/{database}",
        ],
        env=dict(os.environ, PGPASSWORD=PG_PASSWORD),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    # PostgreSQL 17.6+ brackets a dump in \restrict <random key> / \unrestrict <key>.
    return "\n".join(line for line in result.stdout.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))


def databases(postgres: Postgres) -> set[str]:
    return set(postgres.psql("SELECT datname FROM pg_database").split())


async def backup(service: BackupService, target: str) -> BackupRecord:
    record = await service.run_scheduled(target)
    assert record is not None and record.state == BackupState.SUCCEEDED, record and record.detail
    return record


async def restore(service: BackupService, target: str, backup_id: str, *, into_env: str | None = None) -> RestoreRecord:
    """Requests, approves and waits for a restore; its final record."""
    request = await service.restores.request(target, backup_id, into_env=into_env, user="U0BOB", channel="C0BACKUPS")
    await service.restores.approve(request.id, "U0ALICE", is_approver=True)

    async def finished() -> bool:
        current = await service.get_restore(request.id)
        return current is not None and current.terminal

    await eventually(finished, "the backup run to finish")
    done = await service.get_restore(request.id)
    assert done is not None
    return done


async def tamper(
    bot: BotHarness,
    s3_server: S3Server,
    bucket: str,
    record: BackupRecord,
    change: Callable[[bytes], bytes],
    *,
    rerecord: bool,
) -> None:
    """Changes the stored object with `change(bytes) -> bytes`; with `rerecord`, also makes the record's size and
    sha256 match the changed bytes (an attacker who can write the records too, or a dump damaged before upload)."""
    service = bot.deps.backups
    s3 = s3_server.client()
    storage = service.section.storage[service.target(record.target).storage]
    key = f"{storage.prefix}{record.key}"
    body = change(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    s3.close()
    if rerecord:
        await state(bot).backups.update(
            record.id, lambda r: r.model_copy(update={"size": len(body), "sha256": hashlib.sha256(body).hexdigest()})
        )


def flip_middle(body: bytes) -> bytes:
    changed = bytearray(body)
    changed[len(changed) // 2] ^= 0xFF
    return bytes(changed)


@pytest.mark.parametrize("target", ["sealed", "kms"])
async def test_an_encrypted_backup_is_restored_byte_identical(
    bot: BotHarness, postgres: Postgres, appdb: str, s3_server: S3Server, bucket: str, target: str
) -> None:
    service: BackupService = bot.deps.backups
    source = pg_dump(postgres, appdb)
    record = await backup(service, target)

    assert record.encryption is not None and record.encryption.scheme == "aes-256-gcm-stream-v1"
    assert record.encryption.key_ref.startswith("env:BACKUP_KEY" if target == "sealed" else "kms:arn:aws:kms:")
    s3 = s3_server.client()
    prefix = "env/" if target == "sealed" else "kms/"
    body = s3.get_object(Bucket=bucket, Key=f"{prefix}{record.key}")["Body"].read()
    assert body.startswith(MAGIC) and b"PGDMP" not in body and b"example.com" not in body
    assert len(body) == record.size and hashlib.sha256(body).hexdigest() == record.sha256  # of the stored bytes
    metadata_key = f"{prefix}{record.key.rsplit('.', 1)[0]}.json"
    metadata = json.loads(s3.get_object(Bucket=bucket, Key=metadata_key)["Body"].read())
    assert metadata["encryption"]["wrapped_key"] == record.encryption.wrapped_key
    assert base64.b64decode(record.encryption.wrapped_key) in body  # the header carries the same wrapped key
    s3.close()

    into_new = await restore(service, target, record.id, into_env="RESTORE_URL")
    assert into_new.state == RestoreState.SUCCEEDED, into_new.detail
    assert "every encrypted frame authenticated" in into_new.detail
    assert pg_dump(postgres, appdb + "_copy") == source
    postgres.psql(f"DROP DATABASE {appdb}_copy WITH (FORCE)")

    postgres.psql(
        "DELETE FROM orders WHERE id > 100; UPDATE users SET email = 'changed'; CREATE TABLE extra (x int)",
        database=appdb,
    )
    over_target = await restore(service, target, record.id)
    assert over_target.state == RestoreState.SUCCEEDED, over_target.detail
    assert pg_dump(postgres, appdb) == source
    assert not [name for name in databases(postgres) if "_restore_" in name or "_replaced_" in name]


@pytest.mark.parametrize("rerecord", [False, True], ids=["object-only", "object-and-record"])
async def test_a_tampered_encrypted_object_is_refused_with_nothing_written(
    bot: BotHarness, postgres: Postgres, appdb: str, s3_server: S3Server, bucket: str, rerecord: bool
) -> None:
    service: BackupService = bot.deps.backups
    record = await backup(service, "sealed")
    await tamper(bot, s3_server, bucket, record, flip_middle, rerecord=rerecord)
    before, existing = pg_dump(postgres, appdb), databases(postgres)

    into_new = await restore(service, "sealed", record.id, into_env="RESTORE_URL")
    assert into_new.state == RestoreState.FAILED
    assert "Refused before anything was written" in into_new.detail
    assert "failed authentication" in into_new.detail, into_new.detail  # the frame fails before the checksum is due
    assert databases(postgres) == existing  # not even an empty database was created

    over_target = await restore(service, "sealed", record.id)
    assert over_target.state == RestoreState.FAILED and "Refused before anything was written" in over_target.detail
    assert pg_dump(postgres, appdb) == before and databases(postgres) == existing


async def test_a_damaged_plain_dump_is_refused_and_the_target_is_unchanged(
    bot: BotHarness, postgres: Postgres, appdb: str, s3_server: S3Server, bucket: str
) -> None:
    service: BackupService = bot.deps.backups
    record = await backup(service, "plain")
    await tamper(bot, s3_server, bucket, record, flip_middle, rerecord=False)
    postgres.psql("INSERT INTO users VALUES (9999, 'after-the-backup@example.com')", database=appdb)
    before, existing = pg_dump(postgres, appdb), databases(postgres)

    done = await restore(service, "plain", record.id)
    assert done.state == RestoreState.FAILED
    assert pg_dump(postgres, appdb) == before, "the failed restore changed the target database"
    assert databases(postgres) == existing
    assert "Refused before anything was written" in done.detail and "checksum mismatch" in done.detail, done.detail


async def test_a_restore_that_fails_half_way_leaves_the_target_unchanged(
    bot: BotHarness, postgres: Postgres, appdb: str, s3_server: S3Server, bucket: str
) -> None:
    service: BackupService = bot.deps.backups
    record = await backup(service, "plain")
    # Damaged before it was hashed (the checksum matches): pg_restore creates the tables, then fails in the data.
    await tamper(bot, s3_server, bucket, record, lambda body: body[: len(body) * 3 // 5], rerecord=True)
    postgres.psql("INSERT INTO users VALUES (9999, 'after-the-backup@example.com')", database=appdb)
    before, existing = pg_dump(postgres, appdb), databases(postgres)

    done = await restore(service, "plain", record.id)
    assert done.state == RestoreState.FAILED and "pg_restore" in done.detail, done.detail
    assert pg_dump(postgres, appdb) == before, "the failed restore changed the target database"
    assert databases(postgres) == existing  # the new database it restored into is gone


async def test_retention_keeps_an_object_that_object_lock_holds_and_says_so(
    bot: BotHarness, moto_s3, locked_bucket: str
) -> None:
    service: BackupService = bot.deps.backups
    first = await backup(service, "locked")
    assert first.retain_until is not None
    assert timedelta(hours=23) < first.retain_until - datetime.now(UTC) <= timedelta(days=1)
    head = moto_s3.head_object(Bucket=locked_bucket, Key=first.key)
    assert head["ObjectLockMode"] == "GOVERNANCE" and head["ObjectLockRetainUntilDate"] >= first.retain_until
    version = head["VersionId"]
    with pytest.raises(botocore.exceptions.ClientError):  # the lock is real: S3 refuses to delete the version
        moto_s3.delete_object(Bucket=locked_bucket, Key=first.key, VersionId=version)

    second = await backup(service, "locked")  # daily: 1 -> the first one is due for pruning, but it is locked
    kept = await service.get(first.id)
    assert kept is not None and kept.state == BackupState.SUCCEEDED
    assert "S3 Object Lock keeps it until" in kept.detail, kept.detail
    versions = moto_s3.list_object_versions(Bucket=locked_bucket, Prefix=first.key)
    assert [v["VersionId"] for v in versions.get("Versions", [])] == [version] and not versions.get("DeleteMarkers")
    audit = [(r.action, r.target) for r in await bot.deps.audit.recent(30)]
    assert ("backup.prune.locked", first.id) in audit and ("backup.prune", first.id) not in audit

    # The lock ends (lifted here by a governance bypass, as its date would): pruning removes every version.
    soon = datetime.now(UTC) + timedelta(seconds=1)
    moto_s3.put_object_retention(
        Bucket=locked_bucket,
        Key=first.key,
        VersionId=version,
        BypassGovernanceRetention=True,
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": soon},
    )
    await state(bot).backups.update(first.id, lambda r: r.model_copy(update={"retain_until": soon}))
    moto_s3.put_object(Bucket=locked_bucket, Key=first.key, Body=b"an overwrite by someone")  # a newer version
    await eventually(lambda: _lock_over(moto_s3, locked_bucket, first.key, version), "the object lock to run out")
    assert first.id in await service.prune("locked")
    left = moto_s3.list_object_versions(Bucket=locked_bucket, Prefix=first.key)
    assert not left.get("Versions") and not left.get("DeleteMarkers")
    assert (await service.get(second.id)).state == BackupState.SUCCEEDED


async def _lock_over(client, bucket: str, key: str, version: str) -> bool:
    head = client.head_object(Bucket=bucket, Key=key, VersionId=version)
    return head["ObjectLockRetainUntilDate"] < datetime.now(UTC)
