"""Redis backups: an RDB snapshot streamed from the server with `redis-cli --rdb -`, and the two ways back.

The URL comes from an environment variable (`url_env`, `redis://` or `rediss://`); its password goes to redis-cli
through `REDISCLI_AUTH`, never argv. Verification checks the RDB header on top of the checksum.

Restores: into a live server (the target's own, or one named by a variable) by replaying every key with
`RESTORE … REPLACE ABSTTL` from a streamed parse of the RDB (`rdb.py`), after checking that the server allows it
(RESTORE not renamed or denied, an RDB version it reads, not a cluster); or, for drills, into a scratch
`redis-server` started on the RDB file in a temporary folder, listening on a unix socket only, stopped after.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis
import redis.exceptions

from integrations.alerts.settings import EnvVarName
from integrations.backups.base import (
    PART_SIZE,
    BackupError,
    Subprocess,
    VerifyFacts,
    read_env,
    read_parts,
    split_password,
)
from integrations.backups.rdb import RdbError, RdbUnsupported, rdb_version, read_rdb
from integrations.types import StrictModel

SCHEMES = ("redis", "rediss")


class RedisSettings(StrictModel):
    """`{kind: redis, url_env: CACHE_REDIS_URL}`."""

    kind: Literal["redis"]
    url_env: EnvVarName
    redis_cli: str = "redis-cli"
    redis_server: str = "redis-server"


class RedisEngine:
    """Dumps one Redis server's dataset."""

    extension = "rdb"

    def __init__(self, settings: RedisSettings, *, environ: Mapping[str, str]) -> None:
        self._settings = settings
        self._environ = environ

    async def dump(self, part_size: int = PART_SIZE) -> AsyncIterator[bytes]:
        """The RDB snapshot, in parts."""
        raw = read_env(self._environ, self._settings.url_env, "a Redis URL")
        if raw.startswith("unix://"):  # a local server's socket: `unix:///run/redis.sock`
            proc = await Subprocess.start(
                [self._settings.redis_cli, "-s", raw.removeprefix("unix://").split("?")[0], "--rdb", "-"],
                env=dict(self._environ),
                stdout=True,
            )
            async for part in read_parts(proc, part_size):
                yield part
            return
        url = split_password(raw, variable=self._settings.url_env, schemes=SCHEMES)
        argv = [self._settings.redis_cli, "-h", url.host, "-p", str(url.port or 6379)]
        if url.user and url.user != "default":
            argv += ["--user", url.user]
        if url.url.startswith("rediss://"):
            argv.append("--tls")
        argv += ["--rdb", "-"]
        env = {k: v for k, v in self._environ.items() if k != "REDISCLI_AUTH"}
        if url.password:
            env["REDISCLI_AUTH"] = url.password
        proc = await Subprocess.start(argv, env=env, secrets=[url.password], stdout=True)
        async for part in read_parts(proc, part_size):
            yield part

    async def verify(self, chunks: AsyncIterator[bytes]) -> VerifyFacts:
        """Checks the `REDIS0009`-style header (the checksum is checked by the caller)."""
        head = b""
        async for chunk in chunks:
            if len(head) < 9:
                head += chunk[: 9 - len(head)]
        if not (head.startswith(b"REDIS") and head[5:9].isdigit()):
            raise BackupError("not an RDB file (the header is not REDIS followed by a version)")
        return VerifyFacts(detail=f"RDB version {int(head[5:9])} header is valid")

    async def restore(self, chunks: AsyncIterator[bytes], into_env: str | None) -> str:
        """Replays every key into the live server at `into_env` (default: the target's own) with RESTORE … REPLACE."""
        variable = into_env or self._settings.url_env
        return await replay_into(chunks, read_env(self._environ, variable, "a Redis URL"), variable=variable)

    async def scratch(self, chunks: AsyncIterator[bytes]) -> ScratchFacts:
        """Starts a scratch redis-server on the RDB and counts its keys (then stops it)."""
        return await scratch_server(chunks, self._settings.redis_server)


def build(settings: RedisSettings, *, environ: Mapping[str, str]) -> RedisEngine:
    """The engine for validated settings."""
    return RedisEngine(settings, environ=environ)


# -- restores ----------------------------------------------------------------------------------------------------

# The newest RDB version each Redis release reads (redis/src/rdb.h RDB_VERSION per release).
_RDB_BY_RELEASE = ((7, 4, 12), (7, 2, 11), (7, 0, 10), (5, 0, 9), (4, 0, 8), (3, 2, 7), (0, 0, 6))
REPLAY_BATCH = 500


def newest_rdb_read_by(version: str) -> int:
    """The newest RDB version a Redis `major.minor.patch` reads."""
    parts = [int(p) for p in version.split(".")[:2] if p.isdigit()] + [0, 0]
    for major, minor, rdb in _RDB_BY_RELEASE:
        if (parts[0], parts[1]) >= (major, minor):
            return rdb
    return 6


SPARE_DATABASES = 16  # Redis's default `databases`; a spare is looked for below it


async def replay_into(chunks: AsyncIterator[bytes], url: str, *, variable: str) -> str:
    """Checks that the server at `url` allows RESTORE of this RDB, then replays every key; a summary. Refuses
    (BackupError with the reason) before writing anything when the server does not allow it."""
    if not url.startswith("unix://"):
        split_password(url, variable=variable, schemes=SCHEMES)  # a clear error naming the variable, never the URL
    client = aioredis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=10)
    clients: dict[int, Any] = {}
    try:
        head = b""
        iterator = aiter(chunks)
        while len(head) < 9:
            try:
                head += await anext(iterator)
            except StopAsyncIteration:
                break
        version = rdb_version(head)
        if version is None:
            raise BackupError("not an RDB file (the header is not REDIS followed by a version)")
        await _check_allowed(client, version, variable)

        async def replayed() -> AsyncIterator[bytes]:
            yield head
            async for chunk in iterator:
                yield chunk

        keys, expired, pipe, pending = 0, 0, None, 0
        base_db = int(client.connection_pool.connection_kwargs.get("db") or 0)

        def connection(db: int) -> Any:
            if db not in clients:
                # The URL's own /db would win over a `db=` argument to from_url: build the pool with the db set.
                pool = client.connection_pool
                clients[db] = (
                    client
                    if db == base_db
                    else aioredis.Redis.from_pool(
                        aioredis.ConnectionPool(
                            connection_class=pool.connection_class, **{**pool.connection_kwargs, "db": db}
                        )
                    )
                )
            return clients[db]

        # All or nothing: keys go into an empty spare database, which SWAPDB then exchanges with the target in one
        # step; a replay that fails part-way is thrown away and the target is left as it was.
        staging: dict[int, int] = {}

        async def staged(db: int) -> int:
            if db not in staging:
                staging[db] = await _empty_spare(
                    connection, avoid={db, base_db, *staging, *staging.values()}, variable=variable
                )
            return staging[db]

        try:
            async for entry in read_rdb(replayed()):
                if entry.expire_ms is not None and entry.expire_ms <= time.time() * 1000:
                    expired += 1
                    continue
                db = await staged(base_db if entry.db == 0 else entry.db)
                if pipe is None or pipe[0] != db:
                    if pipe is not None:
                        await pipe[1].execute()
                    pipe, pending = (db, connection(db).pipeline(transaction=False)), 0
                ttl = entry.expire_ms or 0
                args = [entry.key, ttl, entry.payload, "REPLACE"] + (["ABSTTL"] if ttl else [])
                pipe[1].execute_command("RESTORE", *args)
                keys += 1
                pending += 1
                if pending >= REPLAY_BATCH:
                    await pipe[1].execute()
                    pending = 0
            if pipe is not None:
                await pipe[1].execute()
            if not staging:  # an empty backup: the target becomes empty too
                await staged(base_db)
        except BaseException as error:
            for spare in staging.values():  # what was staged is thrown away; the target was never touched
                with contextlib.suppress(Exception):
                    await connection(spare).flushdb()
            if isinstance(error, RdbUnsupported):
                raise BackupError(
                    f"replay stopped after {keys} keys: the RDB holds {error}, which cannot be "
                    "replayed with RESTORE; nothing was changed"
                ) from None
            if isinstance(error, RdbError):
                raise BackupError(f"replay stopped after {keys} keys: {error}; nothing was changed") from None
            if isinstance(error, redis.exceptions.ResponseError):
                raise BackupError(
                    f"the server refused a RESTORE after {keys} keys: {str(error)[:200]}; nothing was changed"
                ) from None
            raise
        for db, spare in staging.items():
            await client.execute_command("SWAPDB", db, spare)
            await connection(spare).flushdb()  # now the target's former data
        note = f" ({expired} already expired, skipped)" if expired else ""
        return (
            f"replayed {keys} keys into a spare database of the Redis at `{variable}` and swapped it in (SWAPDB){note}"
        )
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as error:
        raise BackupError(f"could not reach the Redis at {variable}: {type(error).__name__}") from None
    finally:
        for other in clients.values():
            if other is not client:
                await other.aclose()
        await client.aclose()


async def _empty_spare(connection: Any, *, avoid: set[int], variable: str) -> int:
    """An empty database of the server other than `avoid`, to stage a restore in (highest index first)."""
    for candidate in range(SPARE_DATABASES - 1, -1, -1):
        if candidate in avoid:
            continue
        try:
            if await connection(candidate).dbsize() == 0:
                return int(candidate)
        except redis.exceptions.ResponseError:  # beyond the server's `databases`
            continue
    raise BackupError(
        f"the Redis at {variable} has no empty database to stage the restore in (it needs one besides "
        "the target, to switch to in one step): nothing was changed"
    )


async def _check_allowed(client: Any, version: int, variable: str) -> None:
    """Refuses, before anything is written, what the server would refuse half-way."""
    try:
        info = await client.info("server")
        cluster = await client.info("cluster")
    except redis.exceptions.ResponseError as error:
        raise BackupError(
            f"the Redis at {variable} does not answer INFO ({str(error)[:100]}): cannot check it allows RESTORE"
        ) from None
    except redis.exceptions.AuthenticationError:
        raise BackupError(f"the Redis at {variable} refused the credentials in the URL") from None
    if str(cluster.get("cluster_enabled", 0)) == "1":
        raise BackupError(
            f"the Redis at {variable} runs in cluster mode: replaying keys across slots is not "
            "supported; restore each shard's RDB into its own node"
        )
    server_version = str(info.get("redis_version", "0"))
    if version > newest_rdb_read_by(server_version):
        raise BackupError(
            f"the backup is RDB version {version}, newer than Redis {server_version} at {variable} "
            f"reads ({newest_rdb_read_by(server_version)}): restore into a newer server"
        )
    client.set_response_callback("COMMAND", lambda response, **_: response)  # raw: a missing command is nil
    try:
        described = await client.execute_command("COMMAND", "INFO", "RESTORE")
    except redis.exceptions.ResponseError as error:
        raise BackupError(f"the Redis at {variable} does not allow checking RESTORE ({str(error)[:100]})") from None
    if not described or described == [None]:
        raise BackupError(
            f"the Redis at {variable} has no RESTORE command (renamed or disabled): keys cannot be replayed into it"
        )
    swap = await client.execute_command("COMMAND", "INFO", "SWAPDB")
    if not swap or swap == [None]:
        raise BackupError(
            f"the Redis at {variable} has no SWAPDB command (renamed or disabled): a restore could not "
            "switch to the restored data in one step"
        )
    with contextlib.suppress(redis.exceptions.ResponseError):  # ACL DRYRUN: Redis 7+; older servers skip it
        whoami = await client.execute_command("ACL", "WHOAMI")
        verdict = await client.execute_command("ACL", "DRYRUN", whoami, "RESTORE", "k", "0", "x", "REPLACE")
        if verdict not in (b"OK", "OK"):
            raise BackupError(f"the Redis user at {variable} may not run RESTORE: {str(verdict)[:200]}")


@dataclass(frozen=True)
class ScratchFacts:
    """What a scratch redis-server loaded: keys per database and the seconds it took to load."""

    keys: dict[int, int]
    seconds: float
    server: str

    @property
    def total(self) -> int:
        """Keys in every database."""
        return sum(self.keys.values())


async def scratch_server(chunks: AsyncIterator[bytes], binary: str = "redis-server", probe: Any = None) -> ScratchFacts:
    """Writes the RDB into a temporary folder, starts `binary` on it (unix socket only, no TCP, no saving), waits
    until it has loaded, counts keys per database (and runs `probe(client)` if given), then stops it."""
    if shutil.which(binary) is None and not await asyncio.to_thread(os.path.exists, binary):
        raise BackupError(f"{binary} is not installed (not found on PATH): a scratch restore needs it")
    folder = tempfile.mkdtemp(prefix="chatops-redis-scratch-")
    started = time.monotonic()
    process = None
    try:
        out = await asyncio.to_thread(open, os.path.join(folder, "dump.rdb"), "wb")
        try:
            async for chunk in chunks:
                await asyncio.to_thread(out.write, chunk)
        finally:
            await asyncio.to_thread(out.close)
        socket_path = os.path.join(folder, "redis.sock")
        proc = await Subprocess.start(
            [
                binary,
                "--port",
                "0",
                "--unixsocket",
                socket_path,
                "--unixsocketperm",
                "700",
                "--dir",
                folder,
                "--dbfilename",
                "dump.rdb",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            env={k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
        )
        process = proc
        client = aioredis.Redis(unix_socket_path=socket_path, socket_timeout=30)
        try:
            deadline = time.monotonic() + 600
            while True:
                if proc.process.returncode is not None:
                    await proc.finish()
                    raise BackupError("redis-server exited while loading the RDB")
                try:
                    info = await client.info("persistence")
                    if str(info.get("loading", 0)) == "0":
                        break
                except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError, OSError):
                    pass
                if time.monotonic() > deadline:
                    raise BackupError("the scratch redis-server did not finish loading the RDB in 10 minutes")
                await asyncio.sleep(0.05)
            seconds = time.monotonic() - started
            keyspace = await client.info("keyspace")
            keys = {int(name[2:]): int(data["keys"]) for name, data in keyspace.items() if name.startswith("db")}
            server = str((await client.info("server")).get("redis_version", "?"))
            if probe is not None:
                await probe(client)
        finally:
            await client.aclose()
        return ScratchFacts(keys=keys, seconds=seconds, server=server)
    finally:
        if process is not None:
            await process.kill()
        shutil.rmtree(folder, ignore_errors=True)
