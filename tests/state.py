"""What a test reads or seeds in the bot's Redis directly: each domain's store built over the same Redis connection
and key prefix as the bot under test. The bot's services keep their stores private; a test that must set up or
check state below a service's methods builds its own view here instead of reaching into a service."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from bot.alerts.model import AlertGroup, Member
from bot.alerts.store import AlertStore
from bot.backups.store import BackupStore
from bot.deploys.store import DeployStore
from bot.incidents.store import IncidentStore
from bot.oncall.overrides import OverrideStore
from bot.platform.keys import Keys
from bot.platform.redis_client import RedisClient
from bot.shell.web import CONFIG, STORE
from bot.status.store import ProbeStore
from tests.conftest import BotHarness


@dataclass(frozen=True)
class State:
    """The bot's Redis, its keys and one store per domain, all on the bot's own connection."""

    redis: RedisClient
    keys: Keys
    alerts: AlertStore
    deploys: DeployStore
    backups: BackupStore
    incidents: IncidentStore
    overrides: OverrideStore
    probes: ProbeStore


def state(bot: BotHarness) -> State:
    """Direct views of `bot`'s state in Redis (a test's, not the services')."""
    store = bot.app[STORE]
    return State(
        redis=store.redis,
        keys=store.keys,
        alerts=AlertStore(store),
        deploys=DeployStore(store),
        backups=BackupStore(store, history_keep=bot.app[CONFIG].backups.history_keep),
        incidents=IncidentStore(store),
        overrides=OverrideStore(store),
        probes=ProbeStore(store),
    )


async def posted_alert(bot: BotHarness, group_id: str) -> AlertGroup:
    """A firing DiskFull warning group seeded in `bot`'s Redis and posted to #alerts: the group, with its message."""
    now = datetime.now(UTC)
    member = Member(
        fingerprint="fp-1",
        title="DiskFull",
        severity="warning",
        status="firing",
        labels={"alertname": "DiskFull"},
        starts_at=now,
        last_seen=now,
    )
    group = AlertGroup(
        id=group_id, group_key="k", channel="#alerts", members={"fp-1": member}, created_at=now, updated_at=now
    )
    await state(bot).alerts.create_group(group, post_at=now)
    await bot.deps.alerts.post(group.id)
    posted = await bot.deps.alerts.get(group.id)
    assert posted is not None and posted.message_ts, f"alert {group_id} was not posted"
    return posted
