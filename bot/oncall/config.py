"""The `oncall:` section: rotations, the hand-off channel, escalation policies and the acknowledgement reminder.

Rotations are validated by the rotation maths itself (`parse_rotation`), so the config and the schedule can never
disagree about what a rotation means. An escalation step notifies a rotation (whoever is on call when the step
fires), a channel (`"#eng-leads"`, with an optional `mention`), one person (`U…`) or a PagerDuty service
(`{pagerduty: <name>}`, a name under `integrations.pagerduty.routing_keys`, checked by `ChatopsConfig`).
"""

from __future__ import annotations

import difflib
from datetime import date, timedelta
from functools import cached_property

from pydantic import Field, model_validator

# Escalation policies are the alert pipeline's (bot.alerts.policies); this section is where they are configured.
from bot.alerts.policies import EscalationPolicy as EscalationPolicy
from bot.alerts.policies import EscalationStep as EscalationStep
from bot.alerts.policies import Name as Name
from bot.alerts.policies import PagerDutyTarget as PagerDutyTarget
from bot.oncall.rotation import RotationSpec, parse_rotation
from integrations.types import Duration, SlackChannelRef, SlackUserId, StrictModel


class RotationConfig(StrictModel):
    """One rotation: who, in what order, how long a shift lasts, and when (local time) it hands off."""

    members: tuple[SlackUserId, ...] = Field(min_length=1)
    shift: str
    handoff: str
    timezone: str
    start: date

    @model_validator(mode="after")
    def _valid_rotation(self) -> RotationConfig:
        parse_rotation(
            "rotation",
            members=self.members,
            shift=self.shift,
            handoff=self.handoff,
            timezone=self.timezone,
            start=self.start,
        )
        return self


class OncallSection(StrictModel):
    """`oncall:` — rotations, the hand-off channel, escalation policies and the acknowledgement reminder."""

    rotations: dict[Name, RotationConfig] = Field(default_factory=dict)
    handoff_channel: SlackChannelRef = "#oncall"
    escalation_policies: dict[Name, EscalationPolicy] = Field(default_factory=dict)
    ack_reminder: Duration | None = None
    reescalate_after_reminder: bool = True

    @model_validator(mode="after")
    def _references(self) -> OncallSection:
        problems = []
        for policy_name, policy in self.escalation_policies.items():
            for number, step in enumerate(policy.steps):
                if step.target_kind == "rotation" and step.notify not in self.rotations:
                    assert isinstance(step.notify, str)
                    close = difflib.get_close_matches(step.notify, list(self.rotations), n=1)
                    hint = (
                        f"; did you mean {close[0]!r}?"
                        if close
                        else (
                            f" (rotations: {', '.join(sorted(self.rotations))})"
                            if self.rotations
                            else " (no rotations are defined; or give a #channel or a user ID)"
                        )
                    )
                    problems.append(
                        f"escalation_policies.{policy_name}.steps[{number}].notify: "
                        f"{step.notify!r} is not a rotation, #channel or user ID{hint}"
                    )
        if self.ack_reminder is not None and self.ack_reminder < timedelta(minutes=1):
            problems.append("ack_reminder: must be at least 1m")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @cached_property
    def specs(self) -> dict[str, RotationSpec]:
        """Every rotation as the schedule maths reads it."""
        return {
            name: parse_rotation(
                name, members=r.members, shift=r.shift, handoff=r.handoff, timezone=r.timezone, start=r.start
            )
            for name, r in self.rotations.items()
        }
