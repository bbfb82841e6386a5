"""ElastiCache (Redis OSS / Valkey) backups: ElastiCache refuses `SYNC`, so `redis-cli --rdb` cannot read it.
Instead: `CreateSnapshot` of the replication group or cache cluster, polled (`DescribeSnapshots`) until
`available`, then `CopySnapshot` with `TargetBucket` to export the RDB into our S3 bucket, where ElastiCache
writes `<TargetSnapshotName>-0001.rdb` (one file per shard; we take a single-shard RDB). The exported object is
then moved under our layout by the bot (see `bot/backups/service.py`).

API: https://docs.aws.amazon.com/AmazonElastiCache/latest/APIReference/API_CreateSnapshot.html,
API_CopySnapshot.html, API_DescribeSnapshots.html, API_DeleteSnapshot.html; the bucket must grant ElastiCache
access (User Guide, "Exporting a backup"). boto3 runs through `asyncio.to_thread` on one client built on first use.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, model_validator

from integrations.alerts.settings import EnvVarName
from integrations.backups.aws import AwsClient
from integrations.backups.base import BackupError, Progress
from integrations.deploy.base import PositiveDuration
from integrations.types import StrictModel

_ID = r"^[A-Za-z][A-Za-z0-9-]*$"


class ElastiCacheSettings(StrictModel):
    """`{kind: elasticache_snapshot, replication_group: sessions, region: eu-west-1, storage: main}`."""

    kind: Literal["elasticache_snapshot"]
    replication_group: str | None = Field(None, min_length=1, max_length=40, pattern=_ID)
    cache_cluster: str | None = Field(None, min_length=1, max_length=50, pattern=_ID)
    region: str | None = None
    endpoint_url_env: EnvVarName | None = None
    url_env: EnvVarName | None = Field(None, description="The cluster's redis:// URL, for restores that replay keys.")
    redis_server: str = "redis-server"
    poll_interval: PositiveDuration = timedelta(seconds=15)
    timeout: PositiveDuration = timedelta(hours=2)

    @model_validator(mode="after")
    def _one_source(self) -> ElastiCacheSettings:
        if (self.replication_group is None) == (self.cache_cluster is None):
            raise ValueError("give exactly one of replication_group or cache_cluster")
        return self

    @property
    def source(self) -> str:
        """The replication group or cache cluster id."""
        return self.replication_group or self.cache_cluster or ""


OnNote = Callable[[Progress, str], Awaitable[None]]


class ElastiCacheSnapshotter:
    """Creates, exports and deletes manual snapshots of one replication group or cache cluster."""

    def __init__(self, settings: ElastiCacheSettings, *, environ: Mapping[str, str]) -> None:
        import botocore.config

        self._settings = settings
        self._aws = AwsClient(
            "elasticache",
            region=settings.region,
            endpoint_url_env=settings.endpoint_url_env,
            environ=environ,
            subject=f"for {settings.source}",
            config=botocore.config.Config(retries={"mode": "standard"}),
        )

    async def _call(self, operation: str, **params: Any) -> Any:
        return await self._aws.call(operation, **params)

    async def snapshot(self, name: str, on_progress: OnNote) -> dict[str, Any]:
        """Creates the snapshot `name` and waits until it is available; its description."""
        started = time.monotonic()
        source = (
            {"ReplicationGroupId": self._settings.replication_group}
            if self._settings.replication_group
            else {"CacheClusterId": self._settings.cache_cluster}
        )
        answer = await self._call(
            "create_snapshot", SnapshotName=name, **source, Tags=[{"Key": "created-by", "Value": "chatops"}]
        )
        snapshot = answer["Snapshot"]
        deadline = started + self._settings.timeout.total_seconds()
        while True:
            status = str(snapshot.get("SnapshotStatus", "")).lower()
            if status == "available":
                return dict(snapshot)
            if status in ("failed", "deleted", "deleting"):
                raise BackupError(f"ElastiCache snapshot {name} ended {status}")
            if time.monotonic() > deadline:
                raise BackupError(f"ElastiCache snapshot {name} was not available after the timeout (still {status})")
            await on_progress(Progress(0, time.monotonic() - started), f"snapshot {status or 'creating'}")
            await asyncio.sleep(self._settings.poll_interval.total_seconds())
            snapshot = (await self._call("describe_snapshots", SnapshotName=name))["Snapshots"][0]

    async def export(self, name: str, bucket: str) -> str:
        """Starts the export of snapshot `name` into `bucket` (`CopySnapshot` with `TargetBucket`); the name the
        objects start with. ElastiCache writes them asynchronously: the caller waits for them to appear."""
        target = f"{name}-export"
        await self._call("copy_snapshot", SourceSnapshotName=name, TargetSnapshotName=target, TargetBucket=bucket)
        return target

    @property
    def poll_interval(self) -> float:
        """Seconds between checks of something still in progress."""
        return self._settings.poll_interval.total_seconds()

    @property
    def timeout(self) -> float:
        """Seconds to wait for a snapshot or an export."""
        return self._settings.timeout.total_seconds()

    async def delete(self, name: str) -> None:
        """Deletes the snapshot; one already gone is fine."""
        try:
            await self._call("delete_snapshot", SnapshotName=name)
        except BackupError as error:
            if "SnapshotNotFound" not in str(error):
                raise

    async def aclose(self) -> None:
        """Closes the client."""
        await self._aws.aclose()


def build(settings: ElastiCacheSettings, *, environ: Mapping[str, str]) -> ElastiCacheSnapshotter:
    """The snapshotter for validated settings."""
    return ElastiCacheSnapshotter(settings, environ=environ)
