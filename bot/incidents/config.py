"""The `incidents:` section: where incidents are announced, how their channels are named, the severities (what
each means, how soon someone must respond, whom to page) and who is pulled into every incident.

`page:` names an on-call rotation, an escalation policy or a PagerDuty service (`{pagerduty: <name>}`);
`ChatopsConfig` checks that it exists (the section alone cannot see `oncall:` or `integrations:`).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from bot.oncall.config import PagerDutyTarget
from integrations.types import Duration, RoleMember, SlackChannelRef, StrictModel

_SEVERITY = re.compile(r"[a-z][a-z0-9]{0,15}")
_PREFIX = re.compile(r"[a-z][a-z0-9-]{0,19}")
STATUSES = ("investigating", "identified", "monitoring", "resolved")


def _check_severity(name: str) -> str:
    if not _SEVERITY.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid severity name: lowercase letters and digits, like sev1")
    return name


def _check_prefix(prefix: str) -> str:
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"{prefix!r}: 1 to 20 lowercase letters, digits and -, starting with a letter")
    return prefix


SeverityName = Annotated[str, AfterValidator(_check_severity)]


class SeverityConfig(StrictModel):
    """One severity: what it means, how soon a commander must take it, and whom to page (none: no page)."""

    description: str = Field(min_length=1, max_length=200)
    respond_within: Duration
    page: str | PagerDutyTarget | None = None

    @model_validator(mode="after")
    def _bounds(self) -> SeverityConfig:
        if not timedelta(minutes=1) <= self.respond_within <= timedelta(days=7):
            raise ValueError("respond_within: must be from 1m to 7d")
        return self


def _default_severities() -> dict[str, SeverityConfig]:
    return {
        "sev1": SeverityConfig(
            description="Complete outage, data loss or security breach", respond_within=timedelta(minutes=15)
        ),
        "sev2": SeverityConfig(
            description="Partial outage or major feature broken", respond_within=timedelta(minutes=30)
        ),
        "sev3": SeverityConfig(description="Minor feature broken", respond_within=timedelta(hours=2)),
    }


class IncidentsSection(StrictModel):
    """`incidents:` — announce channel, channel prefix, severities (most severe first) and responders."""

    announce_channel: SlackChannelRef = "#incidents"
    channel_prefix: Annotated[str, AfterValidator(_check_prefix)] = "inc"
    severities: dict[SeverityName, SeverityConfig] = Field(default_factory=_default_severities, min_length=1)
    responders: tuple[RoleMember, ...] = ()

    def rank(self, severity: str) -> int:
        """0 for the most severe (the first listed); a higher number is less severe."""
        return list(self.severities).index(severity)
