"""The `alerts:` section: sources, routes to channels, grouping, who may act on alert messages."""

from __future__ import annotations

from datetime import timedelta

from pydantic import ConfigDict, Field, field_validator

from bot.alerts.patterns import compile_pattern
from integrations.alerts.registry import AlertSourcesSettings
from integrations.types import Duration, RoleMember, SlackChannelRef, StrictModel


class RouteConfig(StrictModel):
    """One routing rule: labels that must equal (`match`) or fully match a regex (`match_re`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    match: dict[str, str] = Field(default_factory=dict)
    match_re: dict[str, str] = Field(default_factory=dict)
    channel: SlackChannelRef | None = None
    escalation: str | None = None
    continue_: bool = Field(False, alias="continue")

    @field_validator("match_re")
    @classmethod
    def _regexes(cls, value: dict[str, str]) -> dict[str, str]:
        for label, pattern in value.items():
            try:
                compile_pattern(pattern)  # the RE2 the router matches with, so check-config refuses what it cannot run
            except ValueError as error:
                raise ValueError(f"match_re.{label}: {error}") from None
        return value


class AlertsSection(StrictModel):
    """`alerts:` — how monitoring reaches Slack."""

    default_channel: SlackChannelRef = "#alerts"
    group_by: tuple[str, ...] = ("alertname",)
    group_wait: Duration = timedelta(seconds=5)
    responders: tuple[RoleMember, ...] = ()
    sources: AlertSourcesSettings = AlertSourcesSettings()
    routes: tuple[RouteConfig, ...] = ()
    max_group_lines: int = Field(20, ge=1, le=100)
