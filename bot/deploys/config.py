"""The `services:` section: each service's channel and environments, and per environment its deploy provider,
health gate, metric gates with bake time (`analysis:`), approvals, canary steps, automatic rollback and freeze
windows."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, field_validator, model_validator

from bot.platform.cron import Cron
from integrations.deploy.github_commits import LeadTimeSettings
from integrations.deploy.registry import DeployerSettings, has_deployment_url
from integrations.health.analysis import AnalysisSettings
from integrations.health.http import DEPLOYMENT_URL, GateHealthSettings
from integrations.types import Duration, SlackChannelRef, StrictModel

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
RESERVED_NAMES = frozenset({"status", "history", "cancel", "lock", "unlock", "locks", "help"})
DEFAULT_VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$"


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a valid name: use lower-case letters, digits, '.', '_' or '-'")
    if name in RESERVED_NAMES:
        raise ValueError(f"{name!r} is a /deploy keyword and cannot name a service or environment")
    return name


Name = Annotated[str, AfterValidator(_check_name)]


class ApprovalConfig(StrictModel):
    """`approval:` — how many people of which role must approve, and for how long a request waits."""

    required: int = Field(1, ge=1, le=5)
    approvers: str = "approvers"
    allow_self_approval: bool = False
    expires_after: Duration = timedelta(minutes=30)
    checklist: tuple[str, ...] = ()


class FreezeWindow(StrictModel):
    """`freeze:` — a crontab expression; every minute it matches (in `timezone`) refuses deploys."""

    cron: str
    reason: str = Field(min_length=1, max_length=200)
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        Cron.parse(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone such as Europe/Berlin") from None
        return value


def _canary(steps: tuple[int, ...]) -> tuple[int, ...]:
    if not steps:
        raise ValueError("list at least one traffic weight, ending with 100")
    if any(not 1 <= s <= 100 for s in steps) or list(steps) != sorted(set(steps)):
        raise ValueError("weights must rise strictly from 1 to 100, e.g. [10, 50, 100]")
    if steps[-1] != 100:
        raise ValueError("the last canary step must be 100 (all traffic)")
    return steps


class EnvironmentConfig(StrictModel):
    """`services.<name>.environments.<env>:` — how this service deploys to this environment."""

    deployer: DeployerSettings
    health: GateHealthSettings | None = None
    analysis: AnalysisSettings | None = None
    approval: ApprovalConfig | None = None
    rollback_approval: bool | ApprovalConfig = True
    canary: Annotated[tuple[int, ...], AfterValidator(_canary)] | None = None
    auto_rollback: bool = False
    freeze: tuple[FreezeWindow, ...] = ()
    deploy_role: str = "deployers"
    version_pattern: str = DEFAULT_VERSION_PATTERN
    checklist: tuple[str, ...] = ()

    @field_validator("version_pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"not a valid regular expression: {error}") from None
        return value

    @model_validator(mode="after")
    def _deployment_url(self) -> EnvironmentConfig:
        if self.health is not None and self.health.needs_deployment_url and not has_deployment_url(self.deployer):
            raise ValueError(
                f"health.url uses {DEPLOYMENT_URL}, but kind: {self.deployer.kind} reports no deployment "
                "URL to check (kind: vercel does); put the service's own URL in health.url"
            )
        return self

    def rollback_policy(self) -> ApprovalConfig | None:
        """The approval a rollback needs: `rollback_approval: false` none, `true` the same as a deploy."""
        if self.rollback_approval is True:
            return self.approval
        if self.rollback_approval is False:
            return None
        return self.rollback_approval

    @property
    def steps(self) -> tuple[int | None, ...]:
        """The traffic weights a deploy walks through; (None,) means everything at once."""
        return self.canary or (None,)


class ServiceConfig(StrictModel):
    """`services.<name>:` — a deployable service."""

    channel: SlackChannelRef | None = None
    environments: dict[Name, EnvironmentConfig] = Field(min_length=1)


class DeploysSection(StrictModel):
    """`deploys:` — engine settings shared by every service."""

    lock_ttl: Duration = timedelta(seconds=30)
    history_keep: int = Field(500, ge=10, le=100_000)
    lead_time: LeadTimeSettings = LeadTimeSettings()

    @model_validator(mode="after")
    def _ttl(self) -> DeploysSection:
        if self.lock_ttl < timedelta(seconds=3):
            raise ValueError("lock_ttl must be at least 3s (the lock is renewed every third of it)")
        return self


ServiceName = Name
