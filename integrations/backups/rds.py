"""RDS backups: a manual DB snapshot (`create_db_snapshot`), waited for until it is available; optionally copied
to another region (`copy_to`: `CopyDBSnapshot` called in the destination region with the source ARN and
`SourceRegion`, re-encrypted with `kms_key_id`) and exported to S3 as Parquet (`export_to`: `StartExportTask`,
followed with `DescribeExportTasks` until `COMPLETE`). Restores are `RestoreDBInstanceFromDBSnapshot` into a
new instance, followed until `available`, never over an existing one.

The snapshot lives in AWS, not in a backup store; its id is the backup's id and it is deleted (with its copy) by
retention like any other backup. boto3 runs through `asyncio.to_thread` on clients built on first use.
API: https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/ (API_CopyDBSnapshot, API_StartExportTask,
API_RestoreDBInstanceFromDBSnapshot, API_DeleteDBInstance).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field

from integrations.alerts.settings import EnvVarName
from integrations.backups.aws import AwsClient
from integrations.backups.base import BackupError, Progress, VerifyFacts
from integrations.deploy.base import PositiveDuration
from integrations.types import StrictModel

INSTANCE_ID = r"^[A-Za-z][A-Za-z0-9-]*$"


class RdsCopyTo(StrictModel):
    """`copy_to: {region: eu-central-1, kms_key_id: arn:aws:kms:…}`: a copy of each snapshot in another region."""

    region: str = Field(min_length=1)
    kms_key_id: str | None = Field(
        None, description="The destination region's KMS key (needed for encrypted snapshots)."
    )
    option_group_name: str | None = None


class RdsExportTo(StrictModel):
    """`export_to: {storage: main, iam_role_arn: …, kms_key_id: …}`: each snapshot exported to S3 as Parquet."""

    storage: str
    iam_role_arn: str = Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
    kms_key_id: str = Field(min_length=1)


class RdsSettings(StrictModel):
    """`{kind: rds_snapshot, instance: prod-db, region: eu-west-1}`."""

    kind: Literal["rds_snapshot"]
    instance: str = Field(min_length=1, max_length=63, pattern=INSTANCE_ID)
    region: str | None = None
    endpoint_url_env: EnvVarName | None = None
    poll_interval: PositiveDuration = timedelta(seconds=15)
    timeout: PositiveDuration = timedelta(hours=2)
    copy_to: RdsCopyTo | None = None
    export_to: RdsExportTo | None = None
    restore_instance_class: str | None = Field(
        None, description="Instance class of restores and drills (default: the snapshot's instance's)."
    )


class RdsSnapshotEngine:
    """Creates, checks and deletes manual snapshots of one RDS instance."""

    def __init__(self, settings: RdsSettings, *, environ: Mapping[str, str]) -> None:
        import botocore.config

        self._settings = settings
        config = botocore.config.Config(retries={"mode": "standard"})
        self._aws = AwsClient(
            "rds",
            region=settings.region,
            endpoint_url_env=settings.endpoint_url_env,
            environ=environ,
            subject=f"for {settings.instance}",
            config=config,
        )
        self._remote = (
            None
            if settings.copy_to is None
            else AwsClient(
                "rds",
                region=settings.copy_to.region,
                endpoint_url_env=settings.endpoint_url_env,
                environ=environ,
                subject=f"for {settings.instance} in {settings.copy_to.region}",
                config=config,
            )
        )

    async def _call(self, operation: str, **params: Any) -> Any:
        return await self._aws.call(operation, **params)

    async def snapshot(
        self, snapshot_id: str, on_progress: Callable[[Progress, str], Awaitable[None]]
    ) -> tuple[str, int]:
        """Creates the snapshot and waits until it is available: (its ARN, its allocated size in bytes)."""
        started = time.monotonic()
        answer = await self._call(
            "create_db_snapshot",
            DBSnapshotIdentifier=snapshot_id,
            DBInstanceIdentifier=self._settings.instance,
            Tags=[{"Key": "created-by", "Value": "chatops"}],
        )
        snapshot = answer["DBSnapshot"]
        deadline = started + self._settings.timeout.total_seconds()
        while True:
            status = str(snapshot.get("Status", "")).lower()
            if status == "available":
                return str(snapshot.get("DBSnapshotArn", snapshot_id)), int(
                    snapshot.get("AllocatedStorage") or 0
                ) * 1024**3
            if status in ("failed", "incompatible-restore", "incompatible-parameters", "deleted"):
                raise BackupError(f"RDS snapshot {snapshot_id} ended {status}")
            if time.monotonic() > deadline:
                raise BackupError(f"RDS snapshot {snapshot_id} was not available after the timeout (still {status})")
            await on_progress(
                Progress(0, time.monotonic() - started),
                f"snapshot {status or 'pending'} ({snapshot.get('PercentProgress', 0)}%)",
            )
            await asyncio.sleep(self._settings.poll_interval.total_seconds())
            snapshot = (await self._call("describe_db_snapshots", DBSnapshotIdentifier=snapshot_id))["DBSnapshots"][0]

    async def verify(self, snapshot_id: str) -> VerifyFacts:
        """Checks that the snapshot exists and is available."""
        answer = await self._call("describe_db_snapshots", DBSnapshotIdentifier=snapshot_id)
        snapshots = answer.get("DBSnapshots") or []
        if not snapshots or str(snapshots[0].get("Status", "")).lower() != "available":
            raise BackupError(f"RDS snapshot {snapshot_id} is not available")
        return VerifyFacts(
            detail=f"snapshot {snapshot_id} is available ({snapshots[0].get('Engine', 'unknown engine')})"
        )

    async def delete(self, snapshot_id: str) -> None:
        """Deletes the snapshot; one already gone is fine."""
        try:
            await self._call("delete_db_snapshot", DBSnapshotIdentifier=snapshot_id)
        except BackupError as error:
            if "DBSnapshotNotFound" not in str(error):
                raise

    # -- off-box copies -----------------------------------------------------------------------------------

    async def copy(self, snapshot_id: str, snapshot_arn: str) -> str:
        """Copies the snapshot into `copy_to.region` and waits until the copy is available; the copy's ARN."""
        assert self._remote is not None and self._settings.copy_to is not None
        target = self._settings.copy_to
        params: dict[str, Any] = {
            "SourceDBSnapshotIdentifier": snapshot_arn,
            "TargetDBSnapshotIdentifier": snapshot_id,
            "CopyTags": True,
        }
        if self._settings.region:
            params["SourceRegion"] = self._settings.region  # boto3 presigns the source-region request with it
        if target.kms_key_id:
            params["KmsKeyId"] = target.kms_key_id
        if target.option_group_name:
            params["OptionGroupName"] = target.option_group_name
        answer = await self._remote.call("copy_db_snapshot", **params)
        snapshot = answer["DBSnapshot"]
        deadline = time.monotonic() + self._settings.timeout.total_seconds()
        while str(snapshot.get("Status", "")).lower() != "available":
            status = str(snapshot.get("Status", "")).lower()
            if status in ("failed", "deleted"):
                raise BackupError(f"the copy of {snapshot_id} in {target.region} ended {status}")
            if time.monotonic() > deadline:
                raise BackupError(f"the copy of {snapshot_id} in {target.region} was not available after the timeout")
            await asyncio.sleep(self._settings.poll_interval.total_seconds())
            snapshot = (await self._remote.call("describe_db_snapshots", DBSnapshotIdentifier=snapshot_id))[
                "DBSnapshots"
            ][0]
        return str(snapshot.get("DBSnapshotArn", snapshot_id))

    async def delete_copy(self, snapshot_id: str) -> None:
        """Deletes the copy in `copy_to.region`; one already gone is fine."""
        if self._remote is None:
            return
        try:
            await self._remote.call("delete_db_snapshot", DBSnapshotIdentifier=snapshot_id)
        except BackupError as error:
            if "DBSnapshotNotFound" not in str(error):
                raise

    async def export(self, snapshot_id: str, snapshot_arn: str, *, bucket: str, prefix: str) -> str:
        """Exports the snapshot to `s3://bucket/prefix…` as Parquet and waits for `COMPLETE`; the S3 location."""
        assert self._settings.export_to is not None
        export = self._settings.export_to
        task_id = f"{snapshot_id}-export"[:60]
        await self._call(
            "start_export_task",
            ExportTaskIdentifier=task_id,
            SourceArn=snapshot_arn,
            S3BucketName=bucket,
            S3Prefix=prefix,
            IamRoleArn=export.iam_role_arn,
            KmsKeyId=export.kms_key_id,
        )
        deadline = time.monotonic() + self._settings.timeout.total_seconds()
        while True:
            tasks = (await self._call("describe_export_tasks", ExportTaskIdentifier=task_id)).get("ExportTasks") or []
            status = str(tasks[0].get("Status", "")).upper() if tasks else "MISSING"
            if status == "COMPLETE":
                return f"s3://{bucket}/" + (prefix.rstrip("/") + "/" if prefix else "") + task_id + "/"
            if status in ("FAILED", "CANCELED", "CANCELING", "MISSING"):
                reason = tasks[0].get("FailureCause", "") if tasks else ""
                raise BackupError(
                    f"the export of {snapshot_id} to S3 ended {status.lower()}" + (f": {reason}" if reason else "")
                )
            if time.monotonic() > deadline:
                raise BackupError(f"the export of {snapshot_id} to S3 did not complete before the timeout ({status})")
            await asyncio.sleep(self._settings.poll_interval.total_seconds())

    # -- restores -----------------------------------------------------------------------------------------

    async def instance_exists(self, instance: str) -> bool:
        """Whether a DB instance with this identifier exists."""
        try:
            await self._call("describe_db_instances", DBInstanceIdentifier=instance)
        except BackupError as error:
            if "DBInstanceNotFound" in str(error):
                return False
            raise
        return True

    async def restore(
        self, snapshot_id: str, instance: str, on_note: Callable[[str], Awaitable[None]] | None = None
    ) -> str:
        """Restores the snapshot into the NEW instance `instance` and waits until it is available; its endpoint.
        Refuses when the instance exists: a restore never replaces a database."""
        if await self.instance_exists(instance):
            raise BackupError(
                f"the DB instance {instance} already exists: a restore only creates a new instance; "
                "name one that does not exist"
            )
        params: dict[str, Any] = {
            "DBInstanceIdentifier": instance,
            "DBSnapshotIdentifier": snapshot_id,
            "Tags": [{"Key": "created-by", "Value": "chatops"}, {"Key": "restored-from", "Value": snapshot_id}],
        }
        if self._settings.restore_instance_class:
            params["DBInstanceClass"] = self._settings.restore_instance_class
        answer = await self._call("restore_db_instance_from_db_snapshot", **params)
        database = answer["DBInstance"]
        deadline = time.monotonic() + self._settings.timeout.total_seconds()
        while True:
            status = str(database.get("DBInstanceStatus", "")).lower()
            if status == "available":
                endpoint = database.get("Endpoint") or {}
                return f"{endpoint.get('Address', instance)}:{endpoint.get('Port', '')}".rstrip(":")
            if status in ("failed", "incompatible-restore", "incompatible-parameters", "deleting"):
                raise BackupError(f"the restored instance {instance} ended {status}")
            if time.monotonic() > deadline:
                raise BackupError(f"the restored instance {instance} was not available after the timeout ({status})")
            if on_note is not None:
                await on_note(status or "creating")
            await asyncio.sleep(self._settings.poll_interval.total_seconds())
            database = (await self._call("describe_db_instances", DBInstanceIdentifier=instance))["DBInstances"][0]

    async def delete_instance(self, instance: str) -> None:
        """Deletes a (drill's temporary) instance without a final snapshot; one already gone is fine."""
        try:
            await self._call(
                "delete_db_instance", DBInstanceIdentifier=instance, SkipFinalSnapshot=True, DeleteAutomatedBackups=True
            )
        except BackupError as error:
            if "DBInstanceNotFound" not in str(error):
                raise

    async def aclose(self) -> None:
        """Closes the clients."""
        await self._aws.aclose()
        if self._remote is not None:
            await self._remote.aclose()


def build(settings: RdsSettings, *, environ: Mapping[str, str]) -> RdsSnapshotEngine:
    """The engine for validated settings."""
    return RdsSnapshotEngine(settings, environ=environ)
