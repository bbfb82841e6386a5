"""The backup service against real servers: PostgreSQL round trip through S3 (SeaweedFS), verification catching a
changed object, a run cancelled mid-upload and a run whose process died leaving nothing listed, Redis RDB and RDS
snapshot (moto) targets, alerts for failures and RPO breaches, and the scheduler's job functions."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from bot.backups.model import BackupRecord, BackupState, RestoreState
from bot.backups.service import BackupService
from bot.shell.config import ChatopsConfig, parse_config
from tests.backups.harness import backup_yaml, set_environment
from tests.backups.servers import Postgres, S3Server
from tests.conftest import BotHarness
from tests.state import state
from tests.waiting import eventually


@pytest.fixture
def bot_config(
    monkeypatch: pytest.MonkeyPatch,
    postgres: Postgres,
    appdb: str,
    s3_server: S3Server,
    bucket: str,
    redis_url: str,
    moto_url: str,
) -> ChatopsConfig:
    set_environment(
        monkeypatch, postgres=postgres, database=appdb, s3=s3_server, redis_url=redis_url, moto_url=moto_url
    )
    return parse_config(backup_yaml(bucket, postgres.bin_dir), "backups.yaml")


def data(postgres: Postgres, database: str) -> str:
    return postgres.psql(
        "SELECT count(*), sum(id), md5(string_agg(email, ',' ORDER BY id)) FROM users;"
        "SELECT count(*), sum(total) FROM orders",
        database=database,
    )


async def ingested(bot: BotHarness) -> list[dict]:
    """Every alert the service put into the alert pipeline's stream, in order."""
    entries = await state(bot).redis.xrange(state(bot).keys.alerts("stream"))
    return [json.loads(alert) for _, fields in entries for alert in json.loads(fields["alerts"])]


async def firing(bot: BotHarness) -> set[str]:
    return set(await state(bot).redis.smembers(state(bot).keys.backups("firing")))


async def test_round_trip_restores_the_same_data(
    bot: BotHarness, postgres: Postgres, appdb: str, s3_server: S3Server, bucket: str
) -> None:
    service: BackupService = bot.deps.backups
    before = data(postgres, appdb)
    record = await service.run_scheduled("appdb")
    assert record is not None and record.state == BackupState.SUCCEEDED, record
    assert record.location == f"s3://{bucket}/chatops/appdb/{record.id}.dump"
    s3 = s3_server.client()
    body = s3.get_object(Bucket=bucket, Key=f"chatops/appdb/{record.id}.dump")["Body"].read()
    assert body.startswith(b"PGDMP") and len(body) == record.size and hashlib.sha256(body).hexdigest() == record.sha256
    metadata = json.loads(s3.get_object(Bucket=bucket, Key=f"chatops/appdb/{record.id}.json")["Body"].read())
    assert (
        metadata["outcome"] == "succeeded"
        and metadata["sha256"] == record.sha256
        and metadata["requested_by"] == "schedule"
    )
    assert "lock_token" not in metadata

    postgres.psql(f"DROP DATABASE {appdb} WITH (FORCE)")
    restore = await service.restores.request("appdb", record.id, into_env=None, user="U0BOB", channel="C0BACKUPS")
    assert restore.state == RestoreState.AWAITING_APPROVAL
    await service.restores.approve(restore.id, "U0ALICE", is_approver=True)

    async def restored() -> bool:
        current = await service.get_restore(restore.id)
        return current is not None and current.terminal

    await eventually(restored, "the restore to complete")
    done = await service.get_restore(restore.id)
    assert done is not None and done.state == RestoreState.SUCCEEDED, done.detail
    assert data(postgres, appdb) == before

    async def audited() -> list[tuple[str, str, str]]:  # the record is written first, the audit entry after it
        actions = [(r.actor, r.action, r.result) for r in await bot.deps.audit.recent(30)]
        return actions if ("U0BOB", "backup.restore.finish", "ok") in actions else []

    actions = await eventually(audited, "the restore's finish in the audit log")
    assert ("U0BOB", "backup.restore.finish", "ok") in actions and (
        "U0ALICE",
        "backup.restore.approve",
        "ok",
    ) in actions


async def test_restore_into_another_database(bot: BotHarness, postgres: Postgres, appdb: str) -> None:
    service: BackupService = bot.deps.backups
    record = await service.run_scheduled("appdb")
    assert record is not None
    restore = await service.restores.request(
        "appdb", record.id, into_env="RESTORE_URL", user="U0BOB", channel="C0BACKUPS"
    )
    await service.restores.approve(restore.id, "U0CAROL", is_approver=True)
    await eventually(lambda: _terminal(service, restore.id), f"restore {restore.id} to end")
    assert data(postgres, appdb + "_copy") == data(postgres, appdb)
    postgres.psql(f"DROP DATABASE {appdb}_copy WITH (FORCE)")


async def _terminal(service: BackupService, restore_id: str) -> bool:
    current = await service.get_restore(restore_id)
    return current is not None and current.terminal


async def test_verify_restores_into_scratch_and_catches_a_changed_object(
    bot: BotHarness, postgres: Postgres, s3_server: S3Server, bucket: str
) -> None:
    service: BackupService = bot.deps.backups
    record = await service.run_scheduled("appdb")
    assert record is not None
    good = await service.verifier.verify(record, user="U0BOB")
    assert good.ok and good.tables == 2 and good.rows == 2500, good.detail
    assert "chatops_verify" not in postgres.psql("SELECT string_agg(datname, ',') FROM pg_database")

    s3 = s3_server.client()
    key = f"chatops/appdb/{record.id}.dump"
    body = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    bad = await service.verifier.verify(record, user="U0BOB")
    assert not bad.ok and "checksum mismatch" in bad.detail
    stored = await service.get(record.id)
    assert stored is not None and [v.ok for v in stored.verifications] == [True, False]
    assert "appdb:verify" in await firing(bot)
    assert "chatops_verify" not in postgres.psql("SELECT string_agg(datname, ',') FROM pg_database")


async def test_a_run_cancelled_mid_upload_leaves_no_backup(
    bot: BotHarness, postgres: Postgres, appdb: str, s3_server: S3Server, bucket: str
) -> None:
    postgres.psql(
        "CREATE TABLE blob AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) || md5(random()::text) AS junk "
        "FROM generate_series(1, 600000) g",
        database=appdb,
    )
    service: BackupService = bot.deps.backups
    s3 = s3_server.client()
    task = asyncio.get_running_loop().create_task(service.run_scheduled("appdb"))

    async def uploading() -> bool:
        uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads") or []
        return any(s3.list_parts(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"]).get("Parts") for u in uploads)

    await eventually(uploading, "the backup to be uploading")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    records = await service.history("appdb", 10)
    assert [r.state for r in records] == [BackupState.INTERRUPTED]
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])] == []
    assert await state(bot).backups.lock_holder("appdb") is None


async def test_a_run_whose_process_died_is_marked_interrupted_by_the_next(
    bot: BotHarness, s3_server: S3Server, bucket: str
) -> None:
    service: BackupService = bot.deps.backups
    s3 = s3_server.client()
    key = "chatops/appdb/appdb-dead.dump"
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"x" * (5 * 1024 * 1024))
    now = datetime.now(UTC)
    dead = BackupRecord(
        id="appdb-dead",
        target="appdb",
        kind="postgres",
        state=BackupState.RUNNING,
        requested_by="U0BOB",
        created_at=now - timedelta(minutes=5),
        storage="main",
        key="appdb/appdb-dead.dump",
        upload_id=upload,
        lock_token="gone-with-its-process",
    )
    await state(bot).backups.create(dead)
    record = await service.run_scheduled("appdb")
    assert record is not None and record.state == BackupState.SUCCEEDED
    found = await service.get("appdb-dead")
    assert found is not None and found.state == BackupState.INTERRUPTED
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert {r.id for r in await service.history("appdb", 10) if r.good} == {record.id}


async def test_redis_target_streams_an_rdb(bot: BotHarness, redis_url: str, s3_server: S3Server, bucket: str) -> None:
    await state(bot).redis.set("some-key", "some-value")
    service: BackupService = bot.deps.backups
    record = await service.run_scheduled("cache")
    assert record is not None and record.state == BackupState.SUCCEEDED, record.detail
    body = s3_server.client().get_object(Bucket=bucket, Key=f"chatops/cache/{record.id}.rdb")["Body"].read()
    assert body.startswith(b"REDIS") and b"some-value" in body and hashlib.sha256(body).hexdigest() == record.sha256
    assert (await service.verifier.verify(record, user="U0BOB")).ok
    asked = await service.restores.request("cache", record.id, into_env=None, user="U0BOB", channel="C0BACKUPS")
    assert asked.state == RestoreState.AWAITING_APPROVAL  # replayed with RESTORE … REPLACE once approved


async def test_rds_snapshot_with_moto(bot: BotHarness, moto_url: str) -> None:
    import boto3

    rds = boto3.client(
        "rds",
        endpoint_url=moto_url,
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    rds.create_db_instance(
        DBInstanceIdentifier="prod-db",
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        AllocatedStorage=20,
        MasterUsername="admin",
        MasterUserPassword="password123",
    )
    service: BackupService = bot.deps.backups
    record = await service.run_scheduled("rds-prod")
    assert record is not None and record.state == BackupState.SUCCEEDED, record.detail
    assert record.location and record.location.startswith("arn:aws:rds:") and record.size == 20 * 1024**3
    snapshots = rds.describe_db_snapshots(DBInstanceIdentifier="prod-db", SnapshotType="manual")["DBSnapshots"]
    assert [s["DBSnapshotIdentifier"] for s in snapshots] == [record.id]
    assert (await service.verifier.verify(record, user="U0BOB")).ok


async def test_failure_alerts_and_the_next_success_resolves(bot: BotHarness, postgres: Postgres, appdb: str) -> None:
    service: BackupService = bot.deps.backups
    good_url = service._environ["APPDB_URL"]
    service._environ["APPDB_URL"] = postgres.url("no_such_database")
    failed = await service.run_scheduled("appdb")
    assert failed is not None and failed.state == BackupState.FAILED
    assert "pg_dump exited with status 1" in failed.detail and "no_such_database" in failed.detail
    assert "s3cr3t" not in failed.detail
    assert "appdb:failed" in await firing(bot)
    assert [a["status"] for a in await ingested(bot)] == ["firing"]
    service._environ["APPDB_URL"] = good_url
    ok = await service.run_scheduled("appdb")
    assert ok is not None and ok.state == BackupState.SUCCEEDED
    assert "appdb:failed" not in await firing(bot)
    assert [(a["fingerprint"], a["status"]) for a in await ingested(bot)] == [
        ("chatops:backup:appdb:failed", "firing"),
        ("chatops:backup:appdb:failed", "resolved"),
    ]


async def test_rpo_breach_alerts_once_and_resolves(bot: BotHarness) -> None:
    service: BackupService = bot.deps.backups
    assert await service.check_rpo() == []  # first seen now: the RPO counts from here
    old = (datetime.now(UTC) - timedelta(hours=30)).isoformat()
    await state(bot).redis.set(state(bot).keys.backups("last_good", "appdb"), old)
    assert await service.check_rpo() == ["appdb"]
    assert await service.check_rpo() == ["appdb"]
    assert len(await ingested(bot)) == 1  # raised once, not every check
    await service.run_scheduled("appdb")
    assert await service.check_rpo() == []
    assert [(a["fingerprint"], a["status"]) for a in await ingested(bot)] == [
        ("chatops:backup:appdb:rpo", "firing"),
        ("chatops:backup:appdb:rpo", "resolved"),
    ]


async def test_jobs_for_the_scheduler(bot: BotHarness) -> None:
    service: BackupService = bot.deps.backups
    jobs = {name: (func, trigger) for name, func, trigger in service.jobs()}
    assert set(jobs) == {"backup:appdb", "backup:cache", "backup:rds-prod", "backup-verify:appdb", "backup-rpo-check"}
    monday = datetime(2026, 11, 23, tzinfo=UTC)
    assert jobs["backup-verify:appdb"][1].get_next_fire_time(None, monday) == datetime(
        2026, 11, 29, 4, tzinfo=UTC
    )  # Sunday
    assert jobs["backup:cache"][1].get_next_fire_time(None, monday) == datetime(2026, 11, 23, 0, tzinfo=UTC)
    # Another process runs this target's backup: the job takes the lock first and does nothing.
    lock, _ = await state(bot).backups.acquire_lock(
        "appdb", holder="other", reason="other replica", run_id="", now=monday, ttl=timedelta(seconds=30)
    )
    assert lock is not None
    await jobs["backup:appdb"][0](None)
    assert await service.history("appdb", 10) == []
    await state(bot).backups.release_lock("appdb", lock.token)
    await jobs["backup:appdb"][0](None)
    assert [r.state for r in await service.history("appdb", 10)] == [BackupState.SUCCEEDED]
    await jobs["backup-verify:appdb"][0](None)
    newest = (await service.history("appdb", 1))[0]
    assert newest.last_verification is not None and newest.last_verification.ok
    await jobs["backup-rpo-check"][0](None)


async def test_retention_prunes_objects_after_a_success(bot: BotHarness, s3_server: S3Server, bucket: str) -> None:
    service: BackupService = bot.deps.backups
    now = datetime.now(UTC)
    s3 = s3_server.client()
    for age in (40, 35):  # older than cache's max_age of 30 days
        backup_id = f"cache-old-{age}"
        s3.put_object(Bucket=bucket, Key=f"chatops/cache/{backup_id}.rdb", Body=b"REDIS0009")
        await state(bot).backups.create(
            BackupRecord(
                id=backup_id,
                target="cache",
                kind="redis",
                state=BackupState.RUNNING,
                requested_by="schedule",
                created_at=now - timedelta(days=age),
                storage="main",
                key=f"cache/{backup_id}.rdb",
                lock_token="x",
            )
        )
        await state(bot).backups.update(backup_id, lambda r: r.model_copy(update={"state": BackupState.SUCCEEDED}))
    record = await service.run_scheduled("cache")
    assert record is not None and record.state == BackupState.SUCCEEDED
    states = {r.id: r.state for r in await service.history("cache", 10)}
    assert states == {
        record.id: BackupState.SUCCEEDED,
        "cache-old-40": BackupState.PRUNED,
        "cache-old-35": BackupState.PRUNED,
    }
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert sorted(keys) == sorted([f"chatops/cache/{record.id}.rdb", f"chatops/cache/{record.id}.json"])
