"""An APScheduler trigger that fires at a rotation's hand-offs: local wall-clock times in the rotation's zone,
every `shift_days`, which no cron expression can say for multi-week shifts and which must follow DST."""

from __future__ import annotations

from datetime import datetime, timedelta

from apscheduler.triggers.base import BaseTrigger

from bot.oncall import rotation
from bot.oncall.rotation import RotationSpec

_TICK = timedelta(microseconds=1)


class HandoffTrigger(BaseTrigger):
    """Fires at every hand-off of one rotation."""

    def __init__(self, spec: RotationSpec) -> None:
        self.spec = spec

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
        """The first hand-off after the previous fire time, or (first time) at or after `now`."""
        after = previous_fire_time if previous_fire_time is not None else now - _TICK
        return rotation.next_handoff(self.spec, after)

    def __str__(self) -> str:
        return f"handoff[{self.spec.name}]"

    def __repr__(self) -> str:
        return f"<HandoffTrigger {self.spec.name}>"
