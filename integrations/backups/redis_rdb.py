"""Redis backups: an RDB snapshot streamed from the server with `redis-cli --rdb -`.

The URL comes from an environment variable (`url_env`, `redis://` or `rediss://`); its password goes to redis-cli
through `REDISCLI_AUTH`, never argv. Verification checks the RDB header on top of the checksum. Restoring an RDB
means replacing a server's data file while it is stopped, which chatops does not do from Slack: `restore` says so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Literal

from integrations.alerts.base import EnvVarName
from integrations.backups.base import (
    PART_SIZE,
    BackupError,
    Subprocess,
    VerifyFacts,
    read_env,
    read_parts,
    split_password,
)
from integrations.types import StrictModel

SCHEMES = ("redis", "rediss")


class RedisSettings(StrictModel):
    """`{kind: redis, url_env: CACHE_REDIS_URL}`."""

    kind: Literal["redis"]
    url_env: EnvVarName
    redis_cli: str = "redis-cli"


class RedisEngine:
    """Dumps one Redis server's dataset."""

    extension = "rdb"

    def __init__(self, settings: RedisSettings, *, environ: Mapping[str, str]) -> None:
        self._settings = settings
        self._environ = environ

    async def dump(self, part_size: int = PART_SIZE) -> AsyncIterator[bytes]:
        """The RDB snapshot, in parts."""
        url = split_password(read_env(self._environ, self._settings.url_env, "a Redis URL"),
                             variable=self._settings.url_env, schemes=SCHEMES)
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
        """Refused: see the module docstring."""
        raise BackupError("Redis restores are not run from Slack: stop the server, put the RDB file in its data "
                          "directory and start it again")


def build(settings: RedisSettings, *, environ: Mapping[str, str]) -> RedisEngine:
    """The engine for validated settings."""
    return RedisEngine(settings, environ=environ)
