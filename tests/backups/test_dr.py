"""Disaster recovery against real servers: an ElastiCache snapshot exported into S3 (SeaweedFS) through the
ElastiCache stand-in in front of moto, and pruned; an RDS snapshot copied to another region and exported (moto);
a Redis RDB restored into a scratch redis-server and replayed into a live one with every key back, and refused
where the server does not allow RESTORE; an RDS restore as a new instance; timed drills, their RTO alert and its
resolution; `/backup drills` and `/status`; the configuration errors."""

from __future__ import annotations

import hashlib
import html
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest
import redis.asyncio as aioredis

from bot.backups.model import BackupRecord, BackupState, RestoreState
from bot.backups.service import BackupService
from bot.shell.config import ChatopsConfig, ConfigError, parse_config
from tests.backups.elasticache_server import ElastiCacheStandIn
from tests.backups.harness import set_environment
from tests.backups.servers import Postgres, S3Server
from tests.conftest import BotHarness
from tests.state import state
from tests.waiting import eventually, eventually_blocking

KEYS = 300


class RedisProcess:
    """A redis-server owned by one test, on a unix socket in a temp dir (no port to race for)."""

    def __init__(self, *extra: str) -> None:
        self.folder = tempfile.mkdtemp(prefix="chatops-dr-redis-")
        self.socket = os.path.join(self.folder, "redis.sock")
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                "0",
                "--unixsocket",
                self.socket,
                "--dir",
                self.folder,
                "--save",
                "",
                "--appendonly",
                "no",
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        eventually_blocking(lambda: os.path.exists(self.socket), f"redis-server to create its socket {self.socket}")

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def client(self) -> aioredis.Redis:
        return aioredis.Redis(unix_socket_path=self.socket)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def redis_processes() -> Iterator[list[RedisProcess]]:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server and redis-cli are needed (apt-get install -y redis-server)")
    started: list[RedisProcess] = []
    yield started
    for process in started:
        process.stop()


def start_redis(started: list[RedisProcess], *extra: str) -> RedisProcess:
    process = RedisProcess(*extra)
    started.append(process)
    return process


async def fill(server: RedisProcess) -> None:
    """Keys of every common type, some with a TTL."""
    client = server.client()
    pipe = client.pipeline(transaction=False)
    for i in range(KEYS):
        pipe.set(f"user:{i}", f"user {i} " * (i % 7 + 1))
    pipe.rpush("queue", *range(500))
    pipe.sadd("tags", *[f"t{i}" for i in range(50)])
    pipe.zadd("scores", {f"p{i}": i * 1.5 for i in range(200)})
    pipe.hset("profile", mapping={f"f{i}": "v" * 80 for i in range(100)})
    pipe.xadd("events", {"kind": "login"})
    pipe.set("session:short", "x", ex=3600)
    await pipe.execute()
    await client.aclose()


async def snapshot_of(server: RedisProcess) -> dict[bytes, tuple[bytes, object, bool]]:
    """Every key's type, value and whether it has a TTL: what 'every key back' compares."""
    client = server.client()
    found: dict[bytes, tuple[bytes, object, bool]] = {}
    async for key in client.scan_iter(count=1000):
        kind = await client.type(key)
        value: object = {
            b"string": client.get,
            b"list": lambda k: client.lrange(k, 0, -1),
            b"set": client.smembers,
            b"zset": lambda k: client.zrange(k, 0, -1, withscores=True),
            b"hash": client.hgetall,
            b"stream": lambda k: client.xrange(k),
        }[kind](key)
        found[key] = (kind, await value, await client.pttl(key) > 0)
    await client.aclose()
    return found


def dr_yaml(bucket: str, pg_bin: str, kms_central: str, kms_west: str) -> str:
    return f"""
slack: {{announce_channel: "#general"}}
roles:
  admins: [U0DEMO]
  operators: [U0BOB, U0ALICE]
  approvers: [U0ALICE, U0CAROL]
backups:
  channel: "#backups"
  operators: operators
  lock_ttl: 3s
  storage:
    main: {{kind: s3, bucket: "{bucket}", prefix: "chatops/", region: eu-west-1, endpoint_url_env: S3_ENDPOINT_URL, \
            part_size_mib: 5}}
  targets:
    appdb:
      kind: postgres
      dsn_env: APPDB_URL
      bin_dir: "{pg_bin}"
      storage: main
      rpo: 26h
      verify_schedule: "0 4 * * 0"
      rto: 1h
      checks: [{{sql: "select count(*) from orders", min: 1}}]
    cache:
      kind: redis
      url_env: CACHE_URL
      storage: main
      verify_schedule: "0 5 * * 0"
      rto: 1h
      checks: [{{keys: "user:*", min: {KEYS}, max: {KEYS}}}, {{keys: "*", min: {KEYS + 6}}}]
      restore_into: [SCRATCH_REDIS_URL, LOCKED_REDIS_URL]
    sessions:
      kind: elasticache_snapshot
      replication_group: sessions
      region: eu-west-1
      endpoint_url_env: ELASTICACHE_ENDPOINT_URL
      storage: main
      poll_interval: 50ms
      retention: {{max_age: 30d}}
      verify_schedule: "0 6 * * 0"
      checks: [{{keys: "user:*", min: {KEYS}}}]
    rds-prod:
      kind: rds_snapshot
      instance: dr-db
      region: eu-west-1
      endpoint_url_env: RDS_ENDPOINT_URL
      poll_interval: 50ms
      retention: {{max_age: 30d}}
      copy_to: {{region: eu-central-1, kms_key_id: "{kms_central}"}}
      export_to: {{storage: main, iam_role_arn: "arn:aws:iam::123456789012:role/rds-export", kms_key_id: "{kms_west}"}}
      verify_schedule: "0 7 * * 0"
      rto: 2h
  restore_approval: {{required: 1, approvers: approvers, allow_self_approval: false}}
"""


def aws(service: str, moto_url: str, region: str = "eu-west-1"):
    return boto3.client(
        service, endpoint_url=moto_url, region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing"
    )


@pytest.fixture
async def standin(
    moto_url: str, s3_server: S3Server, redis_processes: list[RedisProcess]
) -> AsyncIterator[ElastiCacheStandIn]:
    cluster = start_redis(redis_processes)
    await fill(cluster)
    elasticache = aws("elasticache", moto_url)
    if not elasticache.describe_replication_groups()["ReplicationGroups"]:
        elasticache.create_replication_group(
            ReplicationGroupId="sessions",
            ReplicationGroupDescription="sessions",
            Engine="redis",
            CacheNodeType="cache.t3.micro",
            NumCacheClusters=1,
        )
    server = await ElastiCacheStandIn(moto_url=moto_url, s3_client=s3_server.client, redis_url=cluster.url).start()
    yield server
    await server.stop()


@pytest.fixture
def bot_config(
    monkeypatch: pytest.MonkeyPatch,
    postgres: Postgres,
    appdb: str,
    s3_server: S3Server,
    bucket: str,
    redis_url: str,
    moto_url: str,
    standin: ElastiCacheStandIn,
    redis_processes: list[RedisProcess],
) -> ChatopsConfig:
    set_environment(
        monkeypatch, postgres=postgres, database=appdb, s3=s3_server, redis_url=redis_url, moto_url=moto_url
    )
    monkeypatch.setenv("ELASTICACHE_ENDPOINT_URL", standin.url)
    cache = start_redis(redis_processes)
    monkeypatch.setenv("CACHE_URL", cache.url)
    monkeypatch.setenv("SCRATCH_REDIS_URL", start_redis(redis_processes).url)
    monkeypatch.setenv("LOCKED_REDIS_URL", start_redis(redis_processes, "--rename-command", "RESTORE", "").url)
    kms_central = aws("kms", moto_url, "eu-central-1").create_key()["KeyMetadata"]["Arn"]
    kms_west = aws("kms", moto_url).create_key()["KeyMetadata"]["Arn"]
    return parse_config(dr_yaml(bucket, postgres.bin_dir, kms_central, kms_west), "dr.yaml")


def redis_named(processes: list[RedisProcess], url: str) -> RedisProcess:
    return next(p for p in processes if p.url == url)


async def ingested(bot: BotHarness) -> list[dict]:
    entries = await state(bot).redis.xrange(state(bot).keys.alerts("stream"))
    return [json.loads(alert) for _, fields in entries for alert in json.loads(fields["alerts"])]


async def finished(service: BackupService, restore_id: str) -> bool:
    current = await service.get_restore(restore_id)
    return current is not None and current.terminal


async def test_elasticache_backup_is_exported_to_s3_checked_and_pruned(
    bot: BotHarness, standin: ElastiCacheStandIn, s3_server: S3Server, bucket: str, moto_url: str
) -> None:
    service: BackupService = bot.deps.backups
    s3 = s3_server.client()
    elasticache = aws("elasticache", moto_url)
    old_id = f"sessions-old-{int(time.time() * 1000)}"  # a 40-day-old backup: its snapshot and object must go
    elasticache.create_snapshot(SnapshotName=old_id, ReplicationGroupId="sessions")
    s3.put_object(Bucket=bucket, Key=f"chatops/sessions/{old_id}.rdb", Body=b"REDIS0010")
    await state(bot).backups.create(
        BackupRecord(
            id=old_id,
            target="sessions",
            kind="elasticache_snapshot",
            state=BackupState.RUNNING,
            requested_by="schedule",
            created_at=datetime.now(UTC) - timedelta(days=40),
            storage="main",
            key=f"sessions/{old_id}.rdb",
            snapshot=old_id,
            lock_token="x",
        )
    )
    await state(bot).backups.update(old_id, lambda r: r.model_copy(update={"state": BackupState.SUCCEEDED}))

    record = await service.run_scheduled("sessions")
    assert record is not None and record.state == BackupState.SUCCEEDED, record.detail if record else None
    assert standin.copies == [{"source": record.id, "target": f"{record.id}-export", "bucket": bucket}]
    assert record.location == f"s3://{bucket}/chatops/sessions/{record.id}.rdb" and record.snapshot == record.id
    body = s3.get_object(Bucket=bucket, Key=f"chatops/sessions/{record.id}.rdb")["Body"].read()
    assert body.startswith(b"REDIS") and len(body) == record.size and hashlib.sha256(body).hexdigest() == record.sha256
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))
    assert keys == [f"chatops/sessions/{record.id}.json", f"chatops/sessions/{record.id}.rdb"]  # export moved, old gone
    snapshots = {s["SnapshotName"] for s in elasticache.describe_snapshots(ReplicationGroupId="sessions")["Snapshots"]}
    assert record.id in snapshots and old_id not in snapshots
    states = {r.id: r.state for r in await service.history("sessions", 10)}
    assert states == {record.id: BackupState.SUCCEEDED, old_id: BackupState.PRUNED}

    drill = await service.drills.run("sessions", user="U0BOB")  # the exported RDB in a scratch redis-server
    assert drill is not None and drill.good, drill
    assert [(c.label, c.value, c.ok) for c in drill.checks] == [(f"keys user:* >= {KEYS}", KEYS, True)]


async def test_rds_snapshot_is_copied_to_another_region_exported_and_both_pruned(
    bot: BotHarness, moto_url: str, bucket: str
) -> None:
    rds, central = aws("rds", moto_url), aws("rds", moto_url, "eu-central-1")
    if not rds.describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": ["dr-db"]}])["DBInstances"]:
        rds.create_db_instance(
            DBInstanceIdentifier="dr-db",
            DBInstanceClass="db.t3.micro",
            Engine="postgres",
            AllocatedStorage=20,
            MasterUsername="admin",
            MasterUserPassword="password123",
        )
    service: BackupService = bot.deps.backups
    first = await service.run_scheduled("rds-prod")
    assert first is not None and first.state == BackupState.SUCCEEDED, first.detail if first else None
    assert first.copy_location == f"arn:aws:rds:eu-central-1:123456789012:snapshot:{first.id}", first.detail
    assert first.export_location == f"s3://{bucket}/chatops/rds-prod/exports/{first.id}-export/"
    copy = central.describe_db_snapshots(DBSnapshotIdentifier=first.id)["DBSnapshots"][0]
    assert copy["Status"] == "available" and copy["KmsKeyId"]
    task = rds.describe_export_tasks(ExportTaskIdentifier=f"{first.id}-export")["ExportTasks"][0]
    assert task["S3Bucket"] == bucket and task["SourceArn"].endswith(f":snapshot:{first.id}")

    old = first.created_at - timedelta(days=31)  # age the first backup past retention: the next run prunes both
    await state(bot).backups.update(first.id, lambda r: r.model_copy(update={"created_at": old}))
    second = await service.run_scheduled("rds-prod")
    assert second is not None and second.state == BackupState.SUCCEEDED
    gone = {s["DBSnapshotIdentifier"] for s in rds.describe_db_snapshots(DBInstanceIdentifier="dr-db")["DBSnapshots"]}
    assert first.id not in gone and second.id in gone
    copies = {s["DBSnapshotIdentifier"] for s in central.describe_db_snapshots()["DBSnapshots"]}
    assert first.id not in copies and second.id in copies


async def test_redis_rdb_restores_into_a_scratch_server_and_replays_into_a_live_one_with_every_key(
    bot: BotHarness, redis_processes: list[RedisProcess]
) -> None:
    service: BackupService = bot.deps.backups
    source = redis_named(redis_processes, service._environ["CACHE_URL"])
    await fill(source)
    expected = await snapshot_of(source)
    record = await service.run_scheduled("cache")
    assert record is not None and record.state == BackupState.SUCCEEDED, record.detail if record else None

    drill = await service.drills.run("cache", user="U0BOB")
    assert drill is not None and drill.good, drill
    assert [(c.value, c.ok) for c in drill.checks] == [(KEYS, True), (len(expected), True)]
    assert drill.scratch.startswith("scratch redis-server") and drill.within_rto is True

    restore = await service.restores.request(
        "cache", record.id, into_env="SCRATCH_REDIS_URL", user="U0BOB", channel="C0"
    )
    await service.restores.approve(restore.id, "U0ALICE", is_approver=True)
    await eventually(lambda: finished(service, restore.id), f"restore {restore.id} to finish")
    done = await service.get_restore(restore.id)
    assert done is not None and done.state == RestoreState.SUCCEEDED, done.detail
    assert f"Replayed {len(expected)} keys" in done.detail
    assert await snapshot_of(redis_named(redis_processes, service._environ["SCRATCH_REDIS_URL"])) == expected

    refused = await service.restores.request(
        "cache", record.id, into_env="LOCKED_REDIS_URL", user="U0BOB", channel="C0"
    )
    await service.restores.approve(refused.id, "U0ALICE", is_approver=True)
    await eventually(lambda: finished(service, refused.id), f"restore {refused.id} to finish")
    failed = await service.get_restore(refused.id)
    assert failed is not None and failed.state == RestoreState.FAILED
    assert "has no RESTORE command (renamed or disabled)" in failed.detail
    locked = redis_named(redis_processes, service._environ["LOCKED_REDIS_URL"]).client()
    assert await locked.dbsize() == 0  # refused before anything was written
    await locked.aclose()


async def test_rds_restore_creates_a_new_instance_and_never_overwrites(bot: BotHarness, moto_url: str) -> None:
    rds = aws("rds", moto_url)
    if not rds.describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": ["dr-db"]}])["DBInstances"]:
        rds.create_db_instance(
            DBInstanceIdentifier="dr-db",
            DBInstanceClass="db.t3.micro",
            Engine="postgres",
            AllocatedStorage=20,
            MasterUsername="admin",
            MasterUserPassword="password123",
        )
    service: BackupService = bot.deps.backups
    record = await service.run_scheduled("rds-prod")
    assert record is not None and record.state == BackupState.SUCCEEDED
    answer = await bot.emulator.send_command(
        command="/backup", text=f"restore rds-prod {record.id} as dr-db", user_id="U0BOB", channel_id="C0GENERAL"
    )
    assert "The DB instance `dr-db` already exists; a restore never overwrites" in html.unescape(answer.json["text"])
    name = f"dr-db-restore-{int(time.time())}"
    answer = await bot.emulator.send_command(
        command="/backup", text=f"restore rds-prod {record.id} as {name}", user_id="U0BOB", channel_id="C0GENERAL"
    )
    text = html.unescape(answer.json["text"])
    assert f"a new instance `{name}`" in text, text
    restore_id = text.split("`")[1]
    await service.restores.approve(restore_id, "U0ALICE", is_approver=True)
    await eventually(lambda: finished(service, restore_id), f"restore {restore_id} to finish")
    done = await service.get_restore(restore_id)
    assert done is not None and done.state == RestoreState.SUCCEEDED, done.detail
    instance = rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]
    assert instance["DBInstanceStatus"] == "available" and f"`{name}`" in done.detail
    assert rds.describe_db_instances(DBInstanceIdentifier="dr-db")["DBInstances"][0]["DBInstanceStatus"] == "available"


async def test_a_drill_over_its_rto_alerts_and_the_next_good_drill_resolves(bot: BotHarness, moto_url: str) -> None:
    service: BackupService = bot.deps.backups
    record = await service.run_scheduled("appdb")
    assert record is not None and record.state == BackupState.SUCCEEDED
    config = service.section.targets["appdb"]
    service.section.targets["appdb"] = config.model_copy(update={"rto": timedelta(microseconds=1)})
    jobs = {name: func for name, func, _ in service.jobs()}
    await jobs["backup-verify:appdb"](None)  # the scheduled drill
    over = (await service.drill_history("appdb", 1))[0]
    assert over.ok and over.within_rto is False and over.backup_id == record.id
    assert [(c.label, c.ok) for c in over.checks] == [("select count(*) from orders >= 1", True)] and over.checks[
        0
    ].value == 2000
    assert over.backup_age_seconds is not None and over.backup_age_seconds >= 0
    alerts = [(a["fingerprint"], a["status"], a["labels"]["alertname"]) for a in await ingested(bot)]
    assert alerts == [("chatops:backup:appdb:rto", "firing", "BackupDrillRTOExceeded")]

    service.section.targets["appdb"] = config
    answer = await bot.emulator.send_command(
        command="/backup", text="drill appdb", user_id="U0BOB", channel_id="C0GENERAL"
    )
    assert "DR drill of `appdb` started" in html.unescape(answer.json["text"])

    async def resolved() -> bool:
        return ("chatops:backup:appdb:rto", "resolved") in [
            (a["fingerprint"], a["status"]) for a in await ingested(bot)
        ]

    await eventually(resolved, "the alert to resolve")
    good = (await service.drill_history("appdb", 1))[0]
    assert good.good and good.requested_by == "U0BOB"
    listing = await bot.emulator.send_command(
        command="/backup", text="drills appdb", user_id="U0CAROL", channel_id="C0GENERAL"
    )
    text = html.unescape(listing.json["text"])
    assert "over RTO" in text and "pass" in text and "Restore time, oldest to newest: `appdb`:" in text, text
    lines = await service.dr_status(bot.deps.clock())
    appdb_line = next(line for line in lines if "*appdb*" in line)
    assert (
        appdb_line.startswith(":large_green_circle:")
        and "last drill restored in" in appdb_line
        and "(RTO 1h)" in appdb_line
    )


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            "a: {kind: postgres, dsn_env: DB, storage: main, rto: 1h}",
            "targets.a.rto: an RTO is measured by timed drills; set targets.a.verify_schedule too",
        ),
        (
            "a: {kind: rds_snapshot, instance: db, region: eu-west-1, copy_to: {region: eu-west-1}}",
            "targets.a.copy_to.region: 'eu-west-1' is the instance's own region; an off-box copy must go to another "
            "region",
        ),
        (
            "a: {kind: mongodb, storage: main}",
            "backups.targets.a: unknown kind 'mongodb'; expected one of: postgres, redis, rds_snapshot, "
            "elasticache_snapshot",
        ),
        (
            "a: {kind: elasticache_snapshot, replication_group: g, cache_cluster: c, storage: main}",
            "give exactly one of replication_group or cache_cluster",
        ),
        (
            "a: {kind: redis, url_env: R, storage: main, verify_schedule: '0 4 * * 0', checks: [{sql: 'select 1', min: "
            "1}]}",
            "targets.a.checks[0].sql: a Redis target's checks use keys",
        ),
        (
            "a: {kind: rds_snapshot, instance: db, region: eu-west-1, export_to: {storage: nope, iam_role_arn: "
            "'arn:aws:iam::123456789012:role/x', kms_key_id: k}}",
            "targets.a.export_to.storage: storage 'nope' is not defined",
        ),
    ],
)
def test_configuration_errors_name_the_key(snippet: str, expected: str) -> None:
    text = f"backups:\n  storage:\n    main: {{kind: s3, bucket: bkt}}\n  targets:\n    {snippet}\n"
    with pytest.raises(ConfigError) as raised:
        parse_config(text, "dr.yaml")
    assert expected in str(raised.value), str(raised.value)
