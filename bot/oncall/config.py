"""The `oncall:` section: rotations, the hand-off channel, escalation policies and the acknowledgement reminder.

Rotations are validated by the rotation maths itself (`parse_rotation`), so the config and the schedule can never
disagree about what a rotation means. An escalation step notifies a rotation (whoever is on call when the step
fires), a channel (`"#eng-leads"`, with an optional `mention`), one person (`U…`) or a PagerDuty service
(`{pagerduty: <name>}`, a name under `integrations.pagerduty.routing_keys`, checked by `ChatopsConfig`).
"""

from __future__ import annotations

import difflib
import re
from datetime import date, timedelta
from functools import cached_property
from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from bot.oncall.rotation import RotationSpec, parse_rotation
from integrations.types import Duration, SlackChannelRef, SlackUserId, StrictModel

_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
_CHANNEL = re.compile(r"#[a-z0-9_-]{1,80}|[CG][A-Z0-9]{2,}")
_MENTIONS = {"@here": "<!here>", "@channel": "<!channel>", "@everyone": "<!everyone>"}
_USERGROUP_ID = re.compile(r"S[A-Z0-9]{2,}")


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid name: lowercase letters, digits, - and _, starting with a letter")
    return name


Name = Annotated[str, AfterValidator(_check_name)]


class RotationConfig(StrictModel):
    """One rotation: who, in what order, how long a shift lasts, and when (local time) it hands off."""

    members: tuple[SlackUserId, ...] = Field(min_length=1)
    shift: str
    handoff: str
    timezone: str
    start: date

    @model_validator(mode="after")
    def _valid_rotation(self) -> RotationConfig:
        parse_rotation("rotation", members=self.members, shift=self.shift, handoff=self.handoff,
                       timezone=self.timezone, start=self.start)
        return self


def _check_mention(value: str) -> str:
    if value in _MENTIONS or _USER_ID.fullmatch(value) or _USERGROUP_ID.fullmatch(value):
        return value
    raise ValueError(f"mention {value!r}: expected @here, @channel, @everyone, a user ID (U…) or a usergroup ID (S…)")


class PagerDutyTarget(StrictModel):
    """`{pagerduty: platform}`: trigger an alert on the PagerDuty service of that integration key."""

    pagerduty: Name

    def __str__(self) -> str:
        return f"pagerduty:{self.pagerduty}"


class EscalationStep(StrictModel):
    """Who to page, and how long after the alert started (for the first round)."""

    notify: str | PagerDutyTarget
    after: Duration = timedelta(0)
    mention: Annotated[str, AfterValidator(_check_mention)] | None = None

    @property
    def target_kind(self) -> str:
        """"user", "channel", "rotation" or "pagerduty"."""
        if isinstance(self.notify, PagerDutyTarget):
            return "pagerduty"
        if _USER_ID.fullmatch(self.notify):
            return "user"
        if _CHANNEL.fullmatch(self.notify):
            return "channel"
        return "rotation"

    def mention_markup(self) -> str:
        """The mention as Slack markup (`<!here>`, `<@U…>`, `<!subteam^S…>`), or "" for none."""
        if self.mention is None:
            return ""
        if self.mention in _MENTIONS:
            return _MENTIONS[self.mention]
        if self.mention.startswith("S"):
            return f"<!subteam^{self.mention}>"
        return f"<@{self.mention}>"


class EscalationPolicy(StrictModel):
    """Steps paged in order until someone acknowledges; the walk repeats `repeat` more times.

    A round's steps fire at `after` from the round's start; the next round starts `repeat_after` after the last
    step (default: the gap between the last two steps, or 5 minutes for a single step paged at once)."""

    steps: tuple[EscalationStep, ...] = Field(min_length=1, max_length=10)
    repeat: int = Field(0, ge=0, le=10)
    repeat_after: Duration | None = None

    @model_validator(mode="after")
    def _ordered(self) -> EscalationPolicy:
        for earlier, later in zip(self.steps, self.steps[1:], strict=False):
            if later.after < earlier.after:
                raise ValueError(
                    f"steps must be in order of `after`: {str(later.notify)!r} after {later.after} comes before "
                    f"{str(earlier.notify)!r} after {earlier.after}"
                )
        if self.repeat_after is not None and self.repeat_after <= timedelta(0):
            raise ValueError("repeat_after must be longer than 0s")
        return self

    @property
    def round_length(self) -> timedelta:
        """From a round's start to the next round's start."""
        last = self.steps[-1].after
        if self.repeat_after is not None:
            return last + self.repeat_after
        gap = last - self.steps[-2].after if len(self.steps) > 1 else last
        return last + (gap if gap > timedelta(0) else timedelta(minutes=5))


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
                    hint = f"; did you mean {close[0]!r}?" if close else (
                        f" (rotations: {', '.join(sorted(self.rotations))})" if self.rotations else
                        " (no rotations are defined; or give a #channel or a user ID)"
                    )
                    problems.append(f"escalation_policies.{policy_name}.steps[{number}].notify: "
                                    f"{step.notify!r} is not a rotation, #channel or user ID{hint}")
        if self.ack_reminder is not None and self.ack_reminder < timedelta(minutes=1):
            problems.append("ack_reminder: must be at least 1m")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @cached_property
    def specs(self) -> dict[str, RotationSpec]:
        """Every rotation as the schedule maths reads it."""
        return {
            name: parse_rotation(name, members=r.members, shift=r.shift, handoff=r.handoff, timezone=r.timezone, start=r.start)
            for name, r in self.rotations.items()
        }
