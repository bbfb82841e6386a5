"""PostgreSQL backups with the server's own tools: `pg_dump -Fc` streamed out, `pg_restore` fed from a stream.

The DSN comes from an environment variable (`dsn_env`) and is a `postgresql://` URL. Its password never goes
into argv (where `ps` shows it): the URL is passed without it and the password through `PGPASSWORD`.
Verification restores a dump into a scratch database on the same server (`chatops_verify_<random>`), counts
tables and rows, and drops it whatever happened.

A restore never writes into the database it replaces: it restores into a new database on the same server
(`<name>_restore_<random>`, made like the target: same owner, encoding and locale) and only when pg_restore succeeded
swaps the two by renaming them in one transaction, then drops the old one. A restore that fails drops the new
database and leaves the target exactly as it was. The swap needs the target to have no sessions: it stops new
ones (`ALLOW_CONNECTIONS false`), ends the open ones, and gives connections back if the swap fails.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field

from integrations.alerts.settings import EnvVarName
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

log = logging.getLogger(__name__)

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
            env=self._env(dsn),
            secrets=[dsn.password],
            stdout=True,
        )
        async for part in read_parts(proc, part_size):
            yield part

    async def restore(self, chunks: AsyncIterator[bytes], into_env: str | None) -> str:
        """Restores into a new database and swaps it for the target (or the one `into_env` names) only when the
        restore succeeded; on any failure the new database is dropped and the target is untouched."""
        dsn = self._dsn(into_env or self._settings.dsn_env)
        name = _database(dsn)
        staging = _derived_name(name, "restore")
        like = await self._database_settings(dsn, name)
        await self._create_database(dsn, staging, exist_ok=False, like=like)
        try:
            await self._pg_restore(_with_database(dsn, staging), chunks)
            await self._swap(dsn, name, staging, existed=like is not None)
        except BaseException:
            await _shielded(self._drop_database(dsn, staging))
            raise
        if like is None:
            return f"restored into the new database {name} on {dsn.host}"
        return f"restored into a new database, then swapped in for database {name} on {dsn.host}"

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
        tables = f"{len(rows)} table{'' if len(rows) == 1 else 's'}"  # integrations cannot import bot.text.humanize
        detail = f"restored into a scratch database: {tables}, {total} row{'' if total == 1 else 's'}"
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
            [
                self._tool("psql"),
                "--no-password",
                "--no-psqlrc",
                "--quiet",
                "--tuples-only",
                "--no-align",
                "--set=ON_ERROR_STOP=1",
                f"--dbname={dsn.url}",
            ],
            env=self._env(dsn) | {"PGOPTIONS": "-c default_transaction_read_only=on -c statement_timeout=300000"},
            secrets=[dsn.password],
            stdin=True,
            stdout=True,
        )
        assert proc.process.stdin is not None and proc.process.stdout is not None
        proc.process.stdin.write(query.encode() + b"\n;\n")
        proc.process.stdin.close()
        output = await proc.process.stdout.read()
        await proc.finish()
        return output.decode("utf-8", "replace").strip().splitlines()[0] if output.strip() else ""

    async def _pg_restore(self, dsn: SplitUrl, chunks: AsyncIterator[bytes]) -> None:
        # Always into a database created empty for it, so no --clean: nothing of a previous state can interfere.
        proc = await Subprocess.start(
            [
                self._tool("pg_restore"),
                "--no-password",
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                f"--dbname={dsn.url}",
            ],
            env=self._env(dsn),
            secrets=[dsn.password],
            stdin=True,
        )
        await feed(proc, chunks)

    async def _psql(self, dsn: SplitUrl, script: str, variables: Mapping[str, str] | None = None) -> str:
        """Runs a script of ours with psql (values go in as psql variables, quoted by psql as :'name' or :"name",
        never pasted into SQL); its unaligned output."""
        argv = [
            self._tool("psql"),
            "--no-password",
            "--no-psqlrc",
            "--quiet",
            "--tuples-only",
            "--no-align",
            "--field-separator=|",
            "--set=ON_ERROR_STOP=1",
            f"--dbname={dsn.url}",
        ]
        argv += [f"--set={name}={value}" for name, value in (variables or {}).items()]
        proc = await Subprocess.start(argv, env=self._env(dsn), secrets=[dsn.password], stdin=True, stdout=True)
        assert proc.process.stdin is not None and proc.process.stdout is not None
        proc.process.stdin.write(script.encode())
        proc.process.stdin.close()
        try:
            output = await proc.process.stdout.read()
            await proc.finish()
        finally:
            await proc.kill()
        return output.decode()

    async def _database_settings(self, dsn: SplitUrl, name: str) -> tuple[str, str, str, str] | None:
        """(owner, encoding, collate, ctype) of database `name`, None when there is no such database."""
        output = await self._psql(_with_database(dsn, "postgres"), _DATABASE_SETTINGS, {"name": name})
        line = output.strip()
        if not line:
            return None
        owner, encoding, collate, ctype = line.split("|")
        return owner, encoding, collate, ctype

    async def _swap(self, dsn: SplitUrl, name: str, staging: str, *, existed: bool) -> None:
        """Puts `staging` in the place of `name` (renames in one transaction); drops the replaced database."""
        maintenance = _with_database(dsn, "postgres")
        if not existed:
            await self._psql(
                maintenance, 'ALTER DATABASE :"staging" RENAME TO :"name";\n', {"staging": staging, "name": name}
            )
            return
        old = _derived_name(name, "replaced")
        variables = {"name": name, "staging": staging, "old": old}
        try:
            await self._psql(maintenance, _SWAP, variables)
        except BackupError as error:
            await _shielded(self._psql(maintenance, 'ALTER DATABASE :"name" ALLOW_CONNECTIONS true;\n', variables))
            raise BackupError(
                f"the restore succeeded but database {name} could not be replaced ({error}); {name} is unchanged"
            ) from None
        await self._drop_database(dsn, old)

    async def _row_counts(self, dsn: SplitUrl) -> dict[str, int]:
        output = await self._psql(dsn, _COUNT_ROWS)
        rows: dict[str, int] = {}
        for line in output.splitlines():
            table, _, count = line.rpartition("|")
            if table and count.isdigit():
                rows[table] = int(count)
        return rows

    async def _create_database(
        self, dsn: SplitUrl, name: str, *, exist_ok: bool, like: tuple[str, str, str, str] | None = None
    ) -> None:
        argv = [self._tool("createdb"), "--no-password", f"--maintenance-db={_with_database(dsn, 'postgres').url}"]
        if like is not None:
            owner, encoding, collate, ctype = like
            argv += [
                "--template=template0",
                f"--owner={owner}",
                f"--encoding={encoding}",
                f"--lc-collate={collate}",
                f"--lc-ctype={ctype}",
            ]
        proc = await Subprocess.start([*argv, name], env=self._env(dsn), secrets=[dsn.password])
        try:
            await proc.finish()
        except BackupError as error:
            if not (exist_ok and "already exists" in str(error)):
                raise

    async def _drop_database(self, dsn: SplitUrl, name: str) -> None:
        proc = await Subprocess.start(
            [
                self._tool("dropdb"),
                "--no-password",
                "--if-exists",
                "--force",
                f"--maintenance-db={_with_database(dsn, 'postgres').url}",
                name,
            ],
            env=self._env(dsn),
            secrets=[dsn.password],
        )
        await proc.finish()


_DATABASE_SETTINGS = """
SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype
FROM pg_database WHERE datname = :'name';
"""

# ALTER DATABASE … RENAME waits up to 5s for the sessions it finds to end (CountOtherDBBackends), so the sessions
# ended just before are gone by then; both renames commit together or not at all.
_SWAP = """
ALTER DATABASE :"name" ALLOW_CONNECTIONS false;
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = :'name' AND pid <> pg_backend_pid();
BEGIN;
ALTER DATABASE :"name" RENAME TO :"old";
ALTER DATABASE :"staging" RENAME TO :"name";
COMMIT;
"""


def _derived_name(name: str, purpose: str) -> str:
    """`<name>_<purpose>_<random>`, within PostgreSQL's 63-byte identifiers."""
    suffix = f"_{purpose}_{secrets.token_hex(4)}"
    return name.encode()[: 63 - len(suffix)].decode("utf-8", "ignore") + suffix


async def _shielded(cleanup: Awaitable[object]) -> None:
    """Runs a clean-up to its end even when the restore was cancelled; its own failure is logged, not raised
    (the restore's error is the one to report)."""
    try:
        await asyncio.shield(cleanup)
    except Exception as error:  # a clean-up must not hide the failure that caused it
        log.warning("PostgreSQL restore clean-up failed: %s", error)


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
