"""What a test reads or seeds in the bot's Redis directly: each domain's store built over the same Redis connection
and key prefix as the bot under test. The bot's services keep their stores private; a test that must set up or
check state below a service's methods builds its own view here instead of reaching into a service."""

from __future__ import annotations

from dataclasses import dataclass

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
