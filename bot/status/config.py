"""The `status:` section: how often the leader probes, the SLO, and probes beyond the services' own health checks
(which are reused from each environment's deploy `health:` block)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal

from pydantic import Field, model_validator

from integrations.health.http import HttpHealthSettings
from integrations.types import Duration, StrictModel

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
DAY_SLOTS = 400  # the day ring's size (bot/status/store.py's DAY_SLOTS): the most history_days can be


class ProbeConfig(HttpHealthSettings):
    """An extra probe: a name, and the same keys as a deploy health check."""

    name: str

    @model_validator(mode="after")
    def _name(self) -> ProbeConfig:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"name {self.name!r}: use lower-case letters, digits, '.', '_' or '-'")
        return self


class SloConfig(StrictModel):
    """The availability objective: `target` percent of probes good over `window`."""

    target: float = Field(99.9, gt=0, lt=100)
    window: Duration = timedelta(days=30)

    @model_validator(mode="after")
    def _window(self) -> SloConfig:
        if not timedelta(days=1) <= self.window <= timedelta(days=30):
            raise ValueError("window: from 1d to 30d (probe history is kept for 31 days)")
        return self


class StatusSection(StrictModel):
    """`status:` — probing and the SLO."""

    probe_interval: Duration = timedelta(seconds=30)
    slo: SloConfig = SloConfig()
    probes: tuple[ProbeConfig, ...] = ()

    @model_validator(mode="after")
    def _checks(self) -> StatusSection:
        if not timedelta(seconds=5) <= self.probe_interval <= timedelta(minutes=10):
            raise ValueError("probe_interval: from 5s to 10m")
        names = [probe.name for probe in self.probes]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"probes: the name {duplicates[0]!r} is used more than once")
        return self


PublicState = Literal["operational", "degraded_performance", "partial_outage", "major_outage"]


def _default_incident_states() -> dict[str, PublicState]:
    return {"sev1": "major_outage", "sev2": "partial_outage", "sev3": "degraded_performance"}


class PublicComponent(StrictModel):
    """One component of the public page: the name the public sees and the /status targets behind it."""

    name: str = Field(min_length=1, max_length=60)
    targets: tuple[str, ...] = Field(min_length=1)


class StatusPageSection(StrictModel):
    """`status_page:` — the built-in public page at /status-page: its title, its components (public names over
    /status targets; nothing else is shown), how many days of uptime it keeps and how long an answer is reused."""

    title: str = Field("Status", min_length=1, max_length=80)
    components: tuple[PublicComponent, ...] = Field(min_length=1)
    history_days: int = Field(90, ge=1, le=DAY_SLOTS)
    cache: Duration = timedelta(seconds=5)
    incident_states: dict[str, PublicState] = Field(default_factory=_default_incident_states)

    @model_validator(mode="after")
    def _checks(self) -> StatusPageSection:
        if not timedelta(seconds=1) <= self.cache <= timedelta(minutes=5):
            raise ValueError("cache: from 1s to 5m")
        names = [component.name for component in self.components]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"components: the name {duplicates[0]!r} is used more than once")
        return self
