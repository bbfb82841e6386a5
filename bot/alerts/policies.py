"""Escalation policies, as the alert pipeline walks them: who is paged in what order and how often, with the
settings the pipeline reads of the `oncall:` section (where they are configured, `bot.oncall.config`).

They live with alerts because the walk is alert-group state (`bot.alerts.escalation`); on-call, above, decides
who a rotation step pages and delivers the pages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Protocol

from pydantic import AfterValidator, Field, model_validator

from integrations.types import Duration, StrictModel

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
        """ "user", "channel", "rotation" or "pagerduty"."""
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


class EscalationSettings(Protocol):
    """What the alert pipeline reads of the on-call section (`OncallSection` is one), from the composition root."""

    @property
    def escalation_policies(self) -> Mapping[str, EscalationPolicy]: ...

    @property
    def ack_reminder(self) -> timedelta | None: ...

    @property
    def reescalate_after_reminder(self) -> bool: ...


@dataclass(frozen=True)
class NoEscalation:
    """No policies and no reminder: a pipeline built without on-call settings (tools, benchmarks)."""

    escalation_policies: Mapping[str, EscalationPolicy] = field(default_factory=dict)
    ack_reminder: timedelta | None = None
    reescalate_after_reminder: bool = True
