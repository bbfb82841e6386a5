"""Backup storage in an S3 bucket (AWS, or any S3-compatible server such as SeaweedFS or MinIO).

A backup is written as a multipart upload, one part per dump part, and becomes an object only when the upload is
completed: an upload that fails or is killed leaves no object, only an incomplete upload, which `incomplete`
finds and `abort_incomplete` removes.

With `object_lock: {mode: GOVERNANCE|COMPLIANCE, days: 30}` (the bucket must have S3 Object Lock enabled, which
also turns versioning on) each backup object gets a retention date: nobody holding the bucket's credentials can
delete or overwrite that version before it (COMPLIANCE: not even the root user). A delete in a versioned bucket
without a version id only adds a delete marker and frees nothing, so deletes here remove every version of the key.

boto3 is synchronous: every call runs through `asyncio.to_thread` on one client built when first needed. That keeps
to the project's one AWS library; the calls are few (one per 8 MiB part), so a thread hop per call costs nothing
measurable, and boto3 brings credentials, retries and signing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import Field, field_validator

from integrations.alerts.settings import EnvVarName
from integrations.backups.aws import AwsClient
from integrations.backups.base import PART_SIZE, BackupError
from integrations.backups.envelope import EncryptionSettings
from integrations.types import StrictModel

MIN_PART = 5 * 1024 * 1024
READ_CHUNK = 4 * 1024 * 1024


class ObjectLockSettings(StrictModel):
    """`object_lock: {mode: GOVERNANCE, days: 30}`: the retention every backup object gets (see the S3 docs,
    "Locking objects with Object Lock"; GOVERNANCE can be lifted by a user with s3:BypassGovernanceRetention,
    COMPLIANCE by nobody)."""

    mode: Literal["GOVERNANCE", "COMPLIANCE"]
    days: int = Field(ge=1, le=36500)


class S3StorageSettings(StrictModel):
    """`storage.<name>: {kind: s3, bucket: acme-backups, prefix: chatops/, region: eu-west-1}`."""

    kind: Literal["s3"]
    bucket: str = Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]+[a-z0-9]$")
    prefix: str = ""
    region: str | None = None
    endpoint_url_env: EnvVarName | None = Field(
        None, description="Variable holding an endpoint URL (SeaweedFS, MinIO, tests)."
    )
    storage_class: (
        Literal[
            "STANDARD",
            "STANDARD_IA",
            "ONEZONE_IA",
            "INTELLIGENT_TIERING",
            "GLACIER_IR",
            "REDUCED_REDUNDANCY",
        ]
        | None
    ) = None
    sse: Literal["AES256", "aws:kms"] | None = None
    part_size_mib: int = Field(PART_SIZE // (1024 * 1024), ge=5, le=512)
    encryption: EncryptionSettings | None = None
    object_lock: ObjectLockSettings | None = None

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value.startswith("/") or "//" in value or ".." in value.split("/"):
            raise ValueError("must be a relative key prefix like 'chatops/' (no leading '/', '//' or '..')")
        return value


class S3Upload:
    """A multipart upload in progress."""

    def __init__(self, store: S3BackupStore, key: str, upload_id: str, retain_until: datetime | None) -> None:
        self._store = store
        self.key = key
        self.upload_id = upload_id
        self.retain_until = retain_until
        self._parts: list[dict[str, Any]] = []
        self._done = False

    async def write(self, part: bytes | bytearray) -> None:
        """Uploads the next part."""
        number = len(self._parts) + 1
        self._parts.append({"PartNumber": number})
        answer = await self._store.call(
            "upload_part",
            Bucket=self._store.bucket,
            Key=self._store.full(self.key),
            UploadId=self.upload_id,
            PartNumber=number,
            Body=part,
        )
        self._parts[number - 1]["ETag"] = answer["ETag"]

    async def complete(self) -> str:
        """Completes the upload; the object exists from now on."""
        full = self._store.full(self.key)
        if not self._parts:  # an empty dump: S3 needs at least one part
            await self.write(b"")
        answer = await self._store.call(
            "complete_multipart_upload",
            Bucket=self._store.bucket,
            Key=full,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self._parts},
        )
        self._done = True
        if self.retain_until is not None:
            await self._store.confirm_lock(full, answer.get("VersionId"), self.retain_until)
        return self._store.location(self.key)

    async def abort(self) -> None:
        """Aborts the upload (its parts are deleted); idempotent."""
        if self._done:
            return
        self._done = True
        await self._store.abort_incomplete(self.key, self.upload_id)


class S3BackupStore:
    """Backup objects under `s3://bucket/prefix`."""

    def __init__(self, settings: S3StorageSettings, *, environ: Mapping[str, str]) -> None:
        import botocore.config

        self.settings = settings
        self.bucket = settings.bucket
        self.part_size = settings.part_size_mib * 1024 * 1024
        self._aws = AwsClient(
            "s3",
            region=settings.region,
            endpoint_url_env=settings.endpoint_url_env,
            environ=environ,
            subject=f"on {settings.bucket}",
            config=botocore.config.Config(
                retries={"mode": "standard", "max_attempts": 5},
                max_pool_connections=4,
                s3={"addressing_style": "path"} if settings.endpoint_url_env else None,
            ),
        )

    def full(self, key: str) -> str:
        """The object key with the configured prefix."""
        return self.settings.prefix + key

    def location(self, key: str) -> str:
        """`s3://bucket/prefix/key`."""
        return f"s3://{self.bucket}/{self.full(key)}"

    async def call(self, operation: str, **params: Any) -> Any:
        """One S3 call in a thread; BackupError with the service's error code (never credentials) on failure."""
        return await self._aws.call(operation, **params)

    async def begin(self, key: str) -> S3Upload:
        """Creates a multipart upload for `key`, with the storage class and encryption configured."""
        extra: dict[str, str] = {"ContentType": "application/octet-stream"}
        if self.settings.storage_class:
            extra["StorageClass"] = self.settings.storage_class
        if self.settings.sse:
            extra["ServerSideEncryption"] = self.settings.sse
        lock: dict[str, Any] = {}
        retain_until = None
        if self.settings.object_lock is not None:
            # Whole seconds: S3 keeps the date at that precision, and the record must say what S3 enforces.
            now = datetime.now(UTC).replace(microsecond=0)
            retain_until = now + timedelta(days=self.settings.object_lock.days)
            lock = {"ObjectLockMode": self.settings.object_lock.mode, "ObjectLockRetainUntilDate": retain_until}
        answer = await self.call("create_multipart_upload", Bucket=self.bucket, Key=self.full(key), **extra, **lock)
        return S3Upload(self, key, answer["UploadId"], retain_until)

    async def confirm_lock(self, full_key: str, version_id: str | None, retain_until: datetime) -> None:
        """Checks that the completed object carries its retention and sets it when it does not: some
        S3-compatible servers ignore the lock headers of a multipart upload (AWS honours them)."""
        lock = self.settings.object_lock
        assert lock is not None
        version = {"VersionId": version_id} if version_id else {}
        head = await self.call("head_object", Bucket=self.bucket, Key=full_key, **version)
        until = head.get("ObjectLockRetainUntilDate")
        if head.get("ObjectLockMode") == lock.mode and until is not None and until >= retain_until:
            return
        await self.call(
            "put_object_retention",
            Bucket=self.bucket,
            Key=full_key,
            **version,
            Retention={"Mode": lock.mode, "RetainUntilDate": retain_until},
        )

    async def read(self, key: str) -> AsyncIterator[bytes]:
        """The object in chunks of 4 MiB, read as they are consumed (never the whole object in memory)."""
        async for chunk in self.read_absolute(self.full(key)):
            yield chunk

    async def delete_absolute(self, absolute_key: str) -> None:
        """Deletes an object another service wrote into this bucket (an ElastiCache export we have stored again)."""
        await self.call("delete_object", Bucket=self.bucket, Key=absolute_key)

    async def read_absolute(self, absolute_key: str) -> AsyncIterator[bytes]:
        """`read` of an object at `absolute_key` in the bucket (outside our prefix: an ElastiCache export)."""
        import botocore.exceptions

        answer = await self.call("get_object", Bucket=self.bucket, Key=absolute_key)
        body = answer["Body"]
        try:
            while True:
                try:
                    chunk = await asyncio.to_thread(body.read, READ_CHUNK)
                except (botocore.exceptions.BotoCoreError, OSError) as error:
                    raise BackupError(
                        f"reading s3://{self.bucket}/{absolute_key} failed: {type(error).__name__}"
                    ) from None
                if not chunk:
                    return
                yield chunk
        finally:
            with contextlib.suppress(Exception):
                body.close()

    async def put_small(self, key: str, data: bytes) -> None:
        """A small object in one request."""
        extra = {"ServerSideEncryption": self.settings.sse} if self.settings.sse else {}
        await self.call(
            "put_object", Bucket=self.bucket, Key=self.full(key), Body=data, ContentType="application/json", **extra
        )

    async def get_small(self, key: str) -> bytes | None:
        """A small object's bytes, or None."""
        try:
            answer = await self.call("get_object", Bucket=self.bucket, Key=self.full(key))
        except BackupError as error:
            if "NoSuchKey" in str(error) or "404" in str(error):
                return None
            raise
        return bytes(await asyncio.to_thread(answer["Body"].read))

    async def exists(self, key: str) -> bool:
        """Whether the completed object exists."""
        try:
            await self.call("head_object", Bucket=self.bucket, Key=self.full(key))
        except BackupError as error:
            if "404" in str(error) or "NoSuchKey" in str(error) or "NotFound" in str(error):
                return False
            raise
        return True

    async def delete(self, keys: Sequence[str]) -> None:
        """Deletes objects, 1000 per request (with Object Lock: every version of them); BackupError naming the
        first object S3 would not delete (a locked one: AccessDenied)."""
        objects: list[dict[str, str]] = []
        for key in keys:
            if self.settings.object_lock is None:
                objects.append({"Key": self.full(key)})
            else:
                objects += await self._versions(self.full(key))
        for start in range(0, len(objects), 1000):
            answer = await self.call(
                "delete_objects", Bucket=self.bucket, Delete={"Objects": objects[start : start + 1000], "Quiet": True}
            )
            for error in answer.get("Errors") or []:
                raise BackupError(
                    f"S3 did not delete s3://{self.bucket}/{error.get('Key')}: {error.get('Code')} "
                    f"({error.get('Message', '')})".rstrip(" ()")
                )

    async def _versions(self, full_key: str) -> list[dict[str, str]]:
        """Every version and delete marker of exactly `full_key`."""
        found: list[dict[str, str]] = []
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full_key}
        while True:
            answer = await self.call("list_object_versions", **params)
            for entry in [*(answer.get("Versions") or []), *(answer.get("DeleteMarkers") or [])]:
                if entry["Key"] == full_key:
                    found.append({"Key": full_key, "VersionId": str(entry["VersionId"])})
            if not answer.get("IsTruncated"):
                return found
            params |= {"KeyMarker": answer.get("NextKeyMarker"), "VersionIdMarker": answer.get("NextVersionIdMarker")}

    async def incomplete(self, prefix: str) -> list[tuple[str, str]]:
        """Unfinished multipart uploads under `prefix`, keys relative to the store's prefix."""
        found: list[tuple[str, str]] = []
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.full(prefix)}
        while True:
            answer = await self.call("list_multipart_uploads", **params)
            for upload in answer.get("Uploads") or []:
                found.append((str(upload["Key"])[len(self.settings.prefix) :], str(upload["UploadId"])))
            if not answer.get("IsTruncated"):
                return found
            params |= {"KeyMarker": answer.get("NextKeyMarker"), "UploadIdMarker": answer.get("NextUploadIdMarker")}

    async def abort_incomplete(self, key: str, upload_id: str) -> None:
        """Aborts one multipart upload; one already gone is fine."""
        try:
            await self.call("abort_multipart_upload", Bucket=self.bucket, Key=self.full(key), UploadId=upload_id)
        except BackupError as error:
            if "NoSuchUpload" not in str(error):
                raise

    async def keys_under(self, absolute_prefix: str) -> list[str]:
        """Every object key (bucket-absolute, not under our prefix) starting with `absolute_prefix`."""
        found: list[str] = []
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": absolute_prefix}
        while True:
            answer = await self.call("list_objects_v2", **params)
            found += [str(item["Key"]) for item in answer.get("Contents") or []]
            if not answer.get("IsTruncated"):
                return found
            params["ContinuationToken"] = answer.get("NextContinuationToken")

    async def delete_prefix(self, absolute_prefix: str) -> int:
        """Deletes every object under `absolute_prefix` (an RDS export's folder); how many."""
        keys = await self.keys_under(absolute_prefix)
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            await self.call("delete_objects", Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        return len(keys)

    async def aclose(self) -> None:
        """Closes the client's connections."""
        await self._aws.aclose()


def build(settings: S3StorageSettings, *, environ: Mapping[str, str]) -> S3BackupStore:
    """The store for validated settings (the client is built on first use)."""
    return S3BackupStore(settings, environ=environ)
