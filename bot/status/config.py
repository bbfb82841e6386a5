"""The `status:` section: how often the leader probes, the SLO, and probes beyond the services' own health checks
(which are reused from each environment's deploy `health:` block)."""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import Field, model_validator

from integrations.health.http import HttpHealthSettings
from integrations.types import Duration, StrictModel

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")


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
