"""A stand-in for the ElastiCache API in front of moto: moto answers CreateSnapshot, DescribeSnapshots and
DeleteSnapshot (forwarded unchanged), but has no CopySnapshot, so this server implements it for the export case
(`TargetBucket` set), as documented in the ElastiCache API reference (API_CopySnapshot.html, query protocol, XML
answer `CopySnapshotResponse/CopySnapshotResult/Snapshot`) and the User Guide's "Exporting a backup": the RDB is
written into the bucket as `<TargetSnapshotName>-0001.rdb`.

The cluster's data is a real redis-server owned by the test: its RDB (`redis-cli --rdb`) is what the export holds."""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import aiohttp
import boto3
import botocore.exceptions
from aiohttp import web

from tests.conftest import start_site

_NS = "http://elasticache.amazonaws.com/doc/2015-02-02/"


def _error(code: str, message: str, status: int = 400) -> web.Response:
    body = (
        f'<ErrorResponse xmlns="{_NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{escape(message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )
    return web.Response(status=status, body=body.encode(), content_type="text/xml")


class ElastiCacheStandIn:
    """Serves the ElastiCache query API on 127.0.0.1; `copies` lists the CopySnapshot calls it answered."""

    def __init__(self, *, moto_url: str, s3_client: Callable[[], object], redis_url: str) -> None:
        self.moto_url = moto_url
        self._s3_client = s3_client
        self.redis_url = redis_url
        self.copies: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> ElastiCacheStandIn:
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._session = aiohttp.ClientSession()
        self._runner, self.url = await start_site(app)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("Action") == "CopySnapshot":
            return await self._copy_snapshot(form)
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self._session.post(self.moto_url + "/", data=body, headers=headers) as answer:
            return web.Response(
                status=answer.status, body=await answer.read(), content_type=answer.content_type or "text/xml"
            )

    async def _copy_snapshot(self, form: dict[str, str]) -> web.Response:
        source, target, bucket = (
            form.get("SourceSnapshotName"),
            form.get("TargetSnapshotName"),
            form.get("TargetBucket"),
        )
        if not source or not target:
            return _error("InvalidParameterValue", "SourceSnapshotName and TargetSnapshotName are required")
        if not bucket:
            return _error("InvalidParameterValue", "this stand-in implements only the export (TargetBucket)")
        moto = boto3.client(
            "elasticache",
            endpoint_url=self.moto_url,
            region_name="eu-west-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        try:
            snapshot = (await asyncio.to_thread(moto.describe_snapshots, SnapshotName=source))["Snapshots"][0]
        except botocore.exceptions.ClientError:
            return _error("SnapshotNotFoundFault", f"Snapshot {source} not found.", 404)
        finally:
            moto.close()
        folder = tempfile.mkdtemp(prefix="elasticache-export-")
        path = os.path.join(folder, "dump.rdb")
        await asyncio.to_thread(
            subprocess.run,
            ["redis-cli", "-s", self.redis_url.removeprefix("unix://"), "--rdb", path],
            check=True,
            capture_output=True,
            timeout=60,
        )
        s3 = self._s3_client()
        try:
            data = await asyncio.to_thread(Path(path).read_bytes)
            await asyncio.to_thread(s3.put_object, Bucket=bucket, Key=f"{target}-0001.rdb", Body=data)
        except botocore.exceptions.ClientError:
            return _error("InvalidParameterValue", f"The S3 bucket {bucket} does not exist.")
        finally:
            s3.close()
            os.remove(path)
            os.rmdir(folder)
        self.copies.append({"source": source, "target": target, "bucket": bucket})
        group = snapshot.get("ReplicationGroupId") or ""
        answer = (
            f'<CopySnapshotResponse xmlns="{_NS}"><CopySnapshotResult><Snapshot>'
            f"<SnapshotName>{escape(target)}</SnapshotName><ReplicationGroupId>{escape(group)}</ReplicationGroupId>"
            f"<SnapshotStatus>exporting</SnapshotStatus><SnapshotSource>manual</SnapshotSource>"
            f"</Snapshot></CopySnapshotResult><ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId>"
            f"</ResponseMetadata></CopySnapshotResponse>"
        )
        return web.Response(body=answer.encode(), content_type="text/xml")
