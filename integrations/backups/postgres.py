"""PostgreSQL backups with the server's own tools: `pg_dump -Fc` streamed out, `pg_restore` fed from a stream.

The DSN comes from an environment variable (`dsn_env`) and is a `postgresql://` URL. Its password never goes
into argv (where `ps` shows it): the URL is passed without it and the password through `PGPASSWORD`.
Verification restores a dump into a scratch database on the same server (`chatops_verify_<random>`), counts
tables and rows, and drops it whatever happened.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field

from integrations.alerts.base import EnvVarName
from integrations.backups.base import (
    PART_SIZE,
    BackupError,
    SplitUrl,
    Subprocess,
    VerifyFacts,
    feed,
    read_env,
    read_parts,
    split_password,
)
from integrations.types import StrictModel

SCHEMES = ("postgresql", "postgres")

_COUNT_ROWS = r"""
SELECT format('SELECT %L, count(*) FROM %I.%I', schemaname || '.' || tablename, schemaname, tablename)
FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1
\gexec
"""


@dataclass(frozen=True)
class DrillFacts:
    """A drill's timed restore: seconds to restore, each query's first value (text), and where it went."""

    seconds: float
    values: list[str]
    scratch: str


class PostgresSettings(StrictModel):
    """`{kind: postgres, dsn_env: APPDB_URL}`: the database in the URL that variable holds."""

    kind: Literal["postgres"]
    dsn_env: EnvVarName
    bin_dir: str | None = Field(None, description="Folder of pg_dump/pg_restore/psql; default: found on PATH.")


class PostgresEngine:
    """Dumps, verifies and restores one PostgreSQL database."""

    extension = "dump"

    def __init__(self, settings: PostgresSettings, *, environ: Mapping[str, str]) -> None:
        self._settings = settings
        self._environ = environ

    def _tool(self, name: str) -> str:
        return os.path.join(self._settings.bin_dir, name) if self._settings.bin_dir else name

    def _dsn(self, variable: str) -> SplitUrl:
        return split_password(read_env(self._environ, variable, "a PostgreSQL URL"), variable=variable, schemes=SCHEMES)

    def _env(self, dsn: SplitUrl) -> dict[str, str]:
        env = {k: v for k, v in self._environ.items() if not k.startswith("PG")}
        env |= {"PGCONNECT_TIMEOUT": "10", "PGAPPNAME": "chatops-backup"}
        if dsn.password:
            env["PGPASSWORD"] = dsn.password
        return env

    async def dump(self, part_size: int = PART_SIZE) -> AsyncIterator[bytes]:
        """`pg_dump -Fc` of the database, in parts."""
        dsn = self._dsn(self._settings.dsn_env)
        proc = await Subprocess.start(
            [self._tool("pg_dump"), "--format=custom", "--no-password", f"--dbname={dsn.url}"],
            env=self._env(dsn), secrets=[dsn.password], stdout=True,
        )
        async for part in read_parts(proc, part_size):
            yield part

    async def restore(self, chunks: AsyncIterator[bytes], into_env: str | None) -> str:
        """Restores into the target database (or the one `into_env` names), creating it when it is missing;
        existing objects of the dump are dropped first (`--clean --if-exists`)."""
        dsn = self._dsn(into_env or self._settings.dsn_env)
        name = _database(dsn)
        await self._create_database(dsn, name, exist_ok=True)
        await self._pg_restore(dsn, chunks)
        return f"restored into database {name} on {dsn.host}"

    async def verify(self, chunks: AsyncIterator[bytes]) -> VerifyFacts:
        """Restores into a scratch database, counts tables and rows, drops it."""
        dsn = self._dsn(self._settings.dsn_env)
        scratch = f"chatops_verify_{secrets.token_hex(6)}"
        scratch_dsn = _with_database(dsn, scratch)
        await self._create_database(dsn, scratch, exist_ok=False)
        try:
            await self._pg_restore(scratch_dsn, chunks)
            rows = await self._row_counts(scratch_dsn)
        finally:
            await self._drop_database(dsn, scratch)
        total = sum(rows.values())
        detail = f"restored into a scratch database: {len(rows)} tables, {total} rows"
        return VerifyFacts(detail=detail, tables=len(rows), rows=rows)

    async def drill(self, chunks: AsyncIterator[bytes], queries: list[str]) -> DrillFacts:
        """A timed restore into a scratch database: the seconds from the first byte to a restored database, then
        the first value of each query (run read-only on the scratch copy), then the scratch database is dropped."""
        dsn = self._dsn(self._settings.dsn_env)
        scratch = f"chatops_drill_{secrets.token_hex(6)}"
        scratch_dsn = _with_database(dsn, scratch)
        started = time.monotonic()
        await self._create_database(dsn, scratch, exist_ok=False)
        try:
            await self._pg_restore(scratch_dsn, chunks)
            seconds = time.monotonic() - started
            values = [await self._scalar(scratch_dsn, query) for query in queries]
        finally:
            await self._drop_database(dsn, scratch)
        return DrillFacts(seconds=seconds, values=values, scratch=f"database {scratch} on {dsn.host} (dropped)")

    async def _scalar(self, dsn: SplitUrl, query: str) -> str:
        """The first column of the first row of `query`, run in a read-only transaction."""
        proc = await Subprocess.start(
            [self._tool("psql"), "--no-password", "--no-psqlrc", "--quiet", "--tuples-only", "--no-align",
             "--set=ON_ERROR_STOP=1", f"--dbname={dsn.url}"],
            env=self._env(dsn) | {"PGOPTIONS": "-c default_transaction_read_only=on -c statement_timeout=300000"},
            secrets=[dsn.password], stdin=True, stdout=True,
        )
        assert proc.process.stdin is not None and proc.process.stdout is not None
        proc.process.stdin.write(query.encode() + b"\n;\n")
        proc.process.stdin.close()
        output = await proc.process.stdout.read()
        await proc.finish()
        return output.decode("utf-8", "replace").strip().splitlines()[0] if output.strip() else ""

    async def _pg_restore(self, dsn: SplitUrl, chunks: AsyncIterator[bytes]) -> None:
        proc = await Subprocess.start(
            [self._tool("pg_restore"), "--no-password", "--clean", "--if-exists", "--no-owner", "--no-privileges",
             "--exit-on-error", f"--dbname={dsn.url}"],
            env=self._env(dsn), secrets=[dsn.password], stdin=True,
        )
        await feed(proc, chunks)

    async def _row_counts(self, dsn: SplitUrl) -> dict[str, int]:
        proc = await Subprocess.start(
            [self._tool("psql"), "--no-password", "--no-psqlrc", "--quiet", "--tuples-only", "--no-align",
             "--field-separator=|", "--set=ON_ERROR_STOP=1", f"--dbname={dsn.url}"],
            env=self._env(dsn), secrets=[dsn.password], stdin=True, stdout=True,
        )
        assert proc.process.stdin is not None and proc.process.stdout is not None
        proc.process.stdin.write(_COUNT_ROWS.encode())
        proc.process.stdin.close()
        output = await proc.process.stdout.read()
        await proc.finish()
        rows: dict[str, int] = {}
        for line in output.decode().splitlines():
            table, _, count = line.rpartition("|")
            if table and count.isdigit():
                rows[table] = int(count)
        return rows

    async def _create_database(self, dsn: SplitUrl, name: str, *, exist_ok: bool) -> None:
        proc = await Subprocess.start(
            [self._tool("createdb"), "--no-password", f"--maintenance-db={_with_database(dsn, 'postgres').url}", name],
            env=self._env(dsn), secrets=[dsn.password],
        )
        try:
            await proc.finish()
        except BackupError as error:
            if not (exist_ok and "already exists" in str(error)):
                raise

    async def _drop_database(self, dsn: SplitUrl, name: str) -> None:
        proc = await Subprocess.start(
            [self._tool("dropdb"), "--no-password", "--if-exists", "--force",
             f"--maintenance-db={_with_database(dsn, 'postgres').url}", name],
            env=self._env(dsn), secrets=[dsn.password],
        )
        await proc.finish()


def _database(dsn: SplitUrl) -> str:
    name = dsn.path.lstrip("/")
    if not name:
        raise BackupError("the PostgreSQL URL names no database (postgresql://host/<database>)")
    return name


def _with_database(dsn: SplitUrl, name: str) -> SplitUrl:
    parts = urlsplit(dsn.url)
    url = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))
    return SplitUrl(url=url, password=dsn.password, user=dsn.user, host=dsn.host, port=dsn.port, path="/" + name)


def build(settings: PostgresSettings, *, environ: Mapping[str, str]) -> PostgresEngine:
    """The engine for validated settings."""
    return PostgresEngine(settings, environ=environ)
