"""What every run under a target's lock shares (backups, restores, verification drills): the lock kept renewed
while the run lasts and released after it, and best-effort steps that must never hide the run's real outcome."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from bot.backups.store import BackupStore as BackupRecords
from bot.platform.locks import LockInfo

log = logging.getLogger(__name__)

SCHEDULE = "schedule"  # who scheduled runs run as


@asynccontextmanager
async def lock_held(records: BackupRecords, name: str, lock: LockInfo, ttl: timedelta) -> AsyncIterator[None]:
    """Renews the lock `name` (taken as `lock`) every third of its `ttl` while the block runs; releases it after."""
    renewer = asyncio.get_running_loop().create_task(_renew(records, name, lock, ttl))
    try:
        yield
    finally:
        renewer.cancel()
        await asyncio.gather(renewer, return_exceptions=True)
        await records.release_lock(name, lock.token)


async def _renew(records: BackupRecords, name: str, lock: LockInfo, ttl: timedelta) -> None:
    while True:
        await asyncio.sleep(ttl.total_seconds() / 3)
        try:
            if not await records.renew_lock(name, lock.token, ttl):
                log.error("the backup lock of %s was lost", name)
        except Exception:  # a Redis blip must not kill the run; the next renewal tries again
            log.warning("could not renew the backup lock of %s", name, exc_info=True)


async def quietly(awaitable: Awaitable[Any]) -> None:
    """Best-effort clean-up and reporting: a failure is logged, never raised over the real outcome."""
    try:
        await awaitable
    except Exception:
        log.warning("backup clean-up step failed", exc_info=True)
