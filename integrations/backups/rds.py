"""RDS backups: a manual DB snapshot (`create_db_snapshot`), waited for until it is available.

The snapshot lives in AWS, not in a backup store; its id is the backup's id and it is deleted by retention like
any other backup. boto3 runs through `asyncio.to_thread` on one client built on first use.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any, Literal

import botocore.config
import botocore.exceptions
from pydantic import Field

from integrations.alerts.base import EnvVarName
from integrations.backups.aws import AwsClient
from integrations.backups.base import BackupError, Progress, VerifyFacts
from integrations.deploy.base import PositiveDuration
from integrations.types import StrictModel


class RdsSettings(StrictModel):
    """`{kind: rds_snapshot, instance: prod-db, region: eu-west-1}`."""

    kind: Literal["rds_snapshot"]
    instance: str = Field(min_length=1, max_length=63, pattern=r"^[A-Za-z][A-Za-z0-9-]*$")
    region: str | None = None
    endpoint_url_env: EnvVarName | None = None
    poll_interval: PositiveDuration = timedelta(seconds=15)
    timeout: PositiveDuration = timedelta(hours=2)


class RdsSnapshotEngine:
    """Creates, checks and deletes manual snapshots of one RDS instance."""

    def __init__(self, settings: RdsSettings, *, environ: Mapping[str, str]) -> None:
        self._settings = settings
        self._aws = AwsClient("rds", region=settings.region, endpoint_url_env=settings.endpoint_url_env, environ=environ,
                              subject=f"for {settings.instance}", config=botocore.config.Config(retries={"mode": "standard"}))

    async def _call(self, operation: str, **params: Any) -> Any:
        return await self._aws.call(operation, **params)

    async def snapshot(self, snapshot_id: str, on_progress: Callable[[Progress, str], Awaitable[None]]) -> tuple[str, int]:
        """Creates the snapshot and waits until it is available: (its ARN, its allocated size in bytes)."""
        started = time.monotonic()
        answer = await self._call("create_db_snapshot", DBSnapshotIdentifier=snapshot_id,
                                  DBInstanceIdentifier=self._settings.instance,
                                  Tags=[{"Key": "created-by", "Value": "chatops"}])
        snapshot = answer["DBSnapshot"]
        deadline = started + self._settings.timeout.total_seconds()
        while True:
            status = str(snapshot.get("Status", "")).lower()
            if status == "available":
                return str(snapshot.get("DBSnapshotArn", snapshot_id)), int(snapshot.get("AllocatedStorage") or 0) * 1024**3
            if status in ("failed", "incompatible-restore", "incompatible-parameters", "deleted"):
                raise BackupError(f"RDS snapshot {snapshot_id} ended {status}")
            if time.monotonic() > deadline:
                raise BackupError(f"RDS snapshot {snapshot_id} was not available after the timeout (still {status})")
            await on_progress(Progress(0, time.monotonic() - started), f"snapshot {status or 'pending'} "
                                                                       f"({snapshot.get('PercentProgress', 0)}%)")
            await asyncio.sleep(self._settings.poll_interval.total_seconds())
            snapshot = (await self._call("describe_db_snapshots", DBSnapshotIdentifier=snapshot_id))["DBSnapshots"][0]

    async def verify(self, snapshot_id: str) -> VerifyFacts:
        """Checks that the snapshot exists and is available."""
        answer = await self._call("describe_db_snapshots", DBSnapshotIdentifier=snapshot_id)
        snapshots = answer.get("DBSnapshots") or []
        if not snapshots or str(snapshots[0].get("Status", "")).lower() != "available":
            raise BackupError(f"RDS snapshot {snapshot_id} is not available")
        return VerifyFacts(detail=f"snapshot {snapshot_id} is available ({snapshots[0].get('Engine', 'unknown engine')})")

    async def delete(self, snapshot_id: str) -> None:
        """Deletes the snapshot; one already gone is fine."""
        try:
            await self._call("delete_db_snapshot", DBSnapshotIdentifier=snapshot_id)
        except BackupError as error:
            if "DBSnapshotNotFound" not in str(error):
                raise

    async def aclose(self) -> None:
        """Closes the client."""
        await self._aws.aclose()

def build(settings: RdsSettings, *, environ: Mapping[str, str]) -> RdsSnapshotEngine:
    """The engine for validated settings."""
    return RdsSnapshotEngine(settings, environ=environ)
