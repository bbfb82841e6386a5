"""A Redis restore into a live server is all or nothing: keys are replayed into an empty spare database and SWAPDB
switches to it in one step, so a replay that fails part-way leaves the target exactly as it was (and nothing staged
behind), and a finished one makes the target exactly the backup."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from integrations.backups.base import BackupError
from integrations.backups.redis_rdb import RedisEngine, RedisSettings, replay_into
from tests.backups.test_dr import RedisProcess, fill, snapshot_of


@pytest.fixture
def servers() -> Iterator[tuple[RedisProcess, RedisProcess]]:
    """Two servers on unix sockets; the target is named with an explicit /0 in its URL (a db in the URL must not
    override the spare database the restore stages into)."""
    source, target = RedisProcess(), RedisProcess()
    yield source, target
    source.stop()
    target.stop()


async def dump_of(server: RedisProcess) -> list[bytes]:
    engine = RedisEngine(RedisSettings(kind="redis", url_env="SOURCE_URL"), environ={"SOURCE_URL": server.url})
    whole = b"".join([part async for part in engine.dump()])
    return [whole[start : start + 1024] for start in range(0, len(whole), 1024)]  # many small parts to fail between


async def as_stream(parts: list[bytes], *, fail_after: int | None = None) -> AsyncIterator[bytes]:
    for index, part in enumerate(parts):
        if fail_after is not None and index == fail_after:
            raise BackupError("the stored object stopped authenticating")  # as a tampered frame would, part-way
        yield part


async def keys_in_every_database(server: RedisProcess) -> dict[int, int]:
    client = server.client()
    info = await client.info("keyspace")
    await client.aclose()
    return {int(name.removeprefix("db")): int(stats["keys"]) for name, stats in info.items()}


async def test_a_replay_that_fails_part_way_leaves_the_target_as_it_was(
    servers: tuple[RedisProcess, RedisProcess],
) -> None:
    source, target = servers
    await fill(source)
    filler = source.client()
    await filler.mset({f"bulk:{i}": "x" * 20 for i in range(3000)})  # several RESTORE batches before the failure
    await filler.aclose()
    parts = await dump_of(source)
    assert len(parts) > 4
    client = target.client()
    await client.set("keep-me", "the live data")
    before = await snapshot_of(target)
    with pytest.raises(BackupError, match="stopped authenticating"):
        await replay_into(as_stream(parts, fail_after=len(parts) - 2), target.url + "?db=0", variable="TARGET_URL")
    assert await snapshot_of(target) == before
    assert await keys_in_every_database(target) == {0: 1}, "the staged keys were left behind"
    await client.aclose()


async def test_a_finished_replay_makes_the_target_exactly_the_backup(
    servers: tuple[RedisProcess, RedisProcess],
) -> None:
    source, target = servers
    await fill(source)
    expected = await snapshot_of(source)
    client = target.client()
    await client.set("keep-me", "written after the backup")
    summary = await replay_into(as_stream(await dump_of(source)), target.url + "?db=0", variable="TARGET_URL")
    assert "swapped it in (SWAPDB)" in summary
    assert await snapshot_of(target) == expected
    assert set(await keys_in_every_database(target)) == {0}, "the target's former data was left in the spare"
    await client.aclose()
