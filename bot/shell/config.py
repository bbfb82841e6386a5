"""The configuration file, `chatops.yaml`: its schema, and a loader whose errors name the file, the line, the key
path and the fix.

`parse_config` turns any text into either a `ChatopsConfig` or a `ConfigError` listing every problem at once:
YAML syntax, duplicate keys, unknown keys (with a "did you mean" hint found by walking the model types along the
key path, so new sections need no change here) and invalid values, each with the line of the key it concerns.
Secrets never live in this file: a section that needs one names an environment variable in a `*_env` key.

The schema is here; reading the YAML with its line numbers is `bot/shell/config_source.py`, and turning validation
errors into those messages is `bot/shell/config_problems.py` (`ConfigProblem` and `ConfigError` are re-exported here).
"""

from __future__ import annotations

import difflib
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    ValidationError,
    model_validator,
)

from bot.alerts.config import AlertsSection
from bot.backups.config import BackupsSection
from bot.deploys.config import (
    ApprovalConfig,
    DeploysSection,
    ServiceConfig,
    ServiceName,
)
from bot.incidents.config import IncidentsSection
from bot.oncall.config import OncallSection, PagerDutyTarget
from bot.platform.retention import RetentionSection
from bot.shell.config_problems import ConfigError, ConfigProblem, allowed_keys, ordered_problems, problems_from
from bot.shell.config_source import read_yaml
from bot.status.config import StatusPageSection, StatusSection
from integrations.paging.pagerduty import PagerDutySettings
from integrations.statuspage.statuspage import StatuspageSettings
from integrations.types import (
    Duration,
    RoleMember,
    SlackChannelRef,
    StrictModel,
    describe_value,
    format_duration,
)

__all__ = [
    "WELL_KNOWN_ROLES",
    "ChatopsConfig",
    "ConfigError",
    "ConfigProblem",
    "RedisSection",
    "SlackSection",
    "load_config",
    "parse_config",
    "parse_model",
    "summary",
]

_M = TypeVar("_M", bound=BaseModel)

WELL_KNOWN_ROLES = ("admins", "deployers", "approvers", "responders")
"""The roles chatops itself checks; other names are allowed for teams' own use."""

_ROLE_NAME = re.compile(r"[a-z][a-z0-9_-]*")
_KEY_PREFIX = re.compile(r"[a-z0-9_-]{1,32}")


def _check_role_name(name: str) -> str:
    if not _ROLE_NAME.fullmatch(name):
        message = (
            f"{describe_value(name)} is not a valid role name "
            "(lowercase letters, digits, - and _, starting with a letter)"
        )
        if _ROLE_NAME.fullmatch(name.lower()):
            message += f"; did you mean {name.lower()!r}?"
        raise ValueError(message)
    if name not in WELL_KNOWN_ROLES:
        close = difflib.get_close_matches(name, WELL_KNOWN_ROLES, n=1, cutoff=0.8)
        if close:
            raise ValueError(f"role {name!r} looks like a typo; did you mean {close[0]!r}?")
    return name


def _check_key_prefix(prefix: str) -> str:
    if not _KEY_PREFIX.fullmatch(prefix):
        raise ValueError(f"must be 1 to 32 lowercase letters, digits, - or _ (got {describe_value(prefix)})")
    return prefix


RoleName = Annotated[str, AfterValidator(_check_role_name)]
"""A key under `roles:`: lowercase, starting with a letter; a near miss of a well-known role is refused."""

KeyPrefix = Annotated[str, AfterValidator(_check_key_prefix)]
"""The first part of every Redis key: 1 to 32 of a-z, 0-9, - and _."""


class SlackSection(StrictModel):
    """`slack:` — where the bot talks in Slack."""

    announce_channel: SlackChannelRef | None = None


class RedisSection(StrictModel):
    """`redis:` — how the bot's keys are named in Redis (the URL is the REDIS_URL environment variable), the
    connection pool, and how many replicas must confirm a write before chatops answers that it is done."""

    key_prefix: KeyPrefix = "chatops"
    max_connections: int = 64
    pool_timeout: Duration = timedelta(seconds=5)
    min_replicas_acked: int = 0
    wait_timeout: Duration = timedelta(milliseconds=500)

    @model_validator(mode="after")
    def _bounds(self) -> RedisSection:
        if not 2 <= self.max_connections <= 10_000:
            raise ValueError(
                f"max_connections: must be from 2 to 10000 (got {self.max_connections}); 64 suits most teams"
            )
        if not timedelta(milliseconds=100) <= self.pool_timeout <= timedelta(seconds=60):
            raise ValueError(f"pool_timeout: must be from 100ms to 60s (got {format_duration(self.pool_timeout)})")
        if not 0 <= self.min_replicas_acked <= 16:
            raise ValueError(
                f"min_replicas_acked: must be from 0 (do not wait) to 16 (got {self.min_replicas_acked}); "
                "1 keeps an answered write through a failover"
            )
        if not timedelta(milliseconds=10) <= self.wait_timeout <= timedelta(seconds=2):
            raise ValueError(
                f"wait_timeout: must be from 10ms to 2s, so answers stay within Slack's 3 s "
                f"(got {format_duration(self.wait_timeout)})"
            )
        return self


class SchedulerSection(StrictModel):
    """`scheduler:` — the leader lease (how soon another process takes over from a dead leader) and how often
    the escalation tick looks for due pages."""

    lease: Duration = timedelta(seconds=15)
    tick: Duration = timedelta(seconds=2)

    @model_validator(mode="after")
    def _bounds(self) -> SchedulerSection:
        if not timedelta(seconds=1) <= self.lease <= timedelta(minutes=5):
            raise ValueError(f"lease: must be from 1s to 5m (got {format_duration(self.lease)})")
        if not timedelta(milliseconds=100) <= self.tick <= timedelta(minutes=1):
            raise ValueError(f"tick: must be from 100ms to 1m (got {format_duration(self.tick)})")
        return self


class IntegrationsSection(StrictModel):
    """`integrations:` — outside services chatops sends to (and takes webhooks from), each optional."""

    pagerduty: PagerDutySettings | None = None
    statuspage: StatuspageSettings | None = None


class ChatopsConfig(StrictModel):
    """The whole `chatops.yaml`."""

    slack: SlackSection = SlackSection()
    roles: dict[RoleName, tuple[RoleMember, ...]] = Field(default_factory=dict)
    redis: RedisSection = RedisSection()
    services: dict[ServiceName, ServiceConfig] = Field(default_factory=dict)
    deploys: DeploysSection = DeploysSection()
    alerts: AlertsSection = AlertsSection()
    backups: BackupsSection = BackupsSection()
    oncall: OncallSection = OncallSection()
    incidents: IncidentsSection = IncidentsSection()
    scheduler: SchedulerSection = SchedulerSection()
    status: StatusSection = StatusSection()
    status_page: StatusPageSection | None = None
    retention: RetentionSection = RetentionSection()
    integrations: IntegrationsSection = IntegrationsSection()

    @model_validator(mode="after")
    def _roles_exist(self) -> ChatopsConfig:
        """Every role an environment names must be defined under `roles:`."""
        problems = []
        for service_name, service in self.services.items():
            for env_name, env in service.environments.items():
                named = [("deploy_role", env.deploy_role)]
                if env.approval is not None:
                    named.append(("approval.approvers", env.approval.approvers))
                if isinstance(env.rollback_approval, ApprovalConfig):
                    named.append(("rollback_approval.approvers", env.rollback_approval.approvers))
                for key, role in named:
                    if role not in self.roles and role != "admins":
                        problems.append(
                            f"services.{service_name}.environments.{env_name}.{key}: role '{role}' is not "
                            "defined under roles"
                        )
        for number, route in enumerate(self.alerts.routes):
            if route.escalation is not None and route.escalation not in self.oncall.escalation_policies:
                close = difflib.get_close_matches(route.escalation, list(self.oncall.escalation_policies), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else " (define it under oncall.escalation_policies)"
                problems.append(
                    f"alerts.routes[{number}].escalation: there is no escalation policy {route.escalation!r}{hint}"
                )
        for key, role in self.backups.roles_named():
            if role not in self.roles and role != "admins":
                problems.append(f"{key}: role '{role}' is not defined under roles")
        problems += _incident_pages(self)
        problems += _public_status(self)
        problems += _pagerduty_targets(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def role_members(self, role: str) -> tuple[str, ...]:
        """The user IDs, usergroup IDs and @handles listed under `roles.<role>`; empty when the role is not set."""
        return self.roles.get(role, ())


def _incident_pages(config: ChatopsConfig) -> list[str]:
    """Every severity's `page:` must name an on-call rotation or an escalation policy."""
    known = [*config.oncall.rotations, *config.oncall.escalation_policies]
    problems = []
    for name, severity in config.incidents.severities.items():
        if severity.page is None or isinstance(severity.page, PagerDutyTarget) or severity.page in known:
            continue
        close = difflib.get_close_matches(severity.page, known, n=1)
        hint = (
            f"; did you mean {close[0]!r}?"
            if close
            else (
                f" (rotations and policies: {', '.join(sorted(known))})"
                if known
                else " (define it under oncall.rotations or oncall.escalation_policies)"
            )
        )
        problems.append(
            f"incidents.severities.{name}.page: {severity.page!r} is not an on-call rotation or escalation policy{hint}"
        )
    return problems


def _public_status(config: ChatopsConfig) -> list[str]:
    """Statuspage components must name configured services and severities; the public page's components must
    name /status targets (`<service>/<environment>` with a health check, or a `status.probes` name)."""
    problems = []
    severities = list(config.incidents.severities)
    statuspage = config.integrations.statuspage
    if statuspage is not None:
        for service in statuspage.components:
            if service not in config.services:
                close = difflib.get_close_matches(service, list(config.services), n=1)
                names = ", ".join(sorted(config.services)) or "none"
                hint = f"; did you mean {close[0]!r}?" if close else f" (services: {names})"
                problems.append(f"integrations.statuspage.components.{service}: there is no service {service!r}{hint}")
        for severity in statuspage.severity_status if "severity_status" in statuspage.model_fields_set else ():
            if severity not in severities:
                problems.append(
                    f"integrations.statuspage.severity_status.{severity}: not a severity "
                    f"(incidents.severities: {', '.join(severities)})"
                )
    if config.status_page is not None:
        targets = [
            f"{name}/{env}"
            for name, svc in config.services.items()
            for env, spec in svc.environments.items()
            if spec.health is not None and not spec.health.gate_only
        ] + [probe.name for probe in config.status.probes]
        for number, component in enumerate(config.status_page.components):
            for target in component.targets:
                if target in targets or any(t.startswith(f"{target}/") for t in targets):
                    continue
                close = difflib.get_close_matches(target, targets, n=1)
                hint = (
                    f"; did you mean {close[0]!r}?"
                    if close
                    else (
                        f" (targets: {', '.join(targets)})"
                        if targets
                        else " (add health: to an environment or a status.probes entry)"
                    )
                )
                problems.append(f"status_page.components[{number}].targets: {target!r} is not a /status target{hint}")
        explicit = "incident_states" in config.status_page.model_fields_set
        for severity in config.status_page.incident_states if explicit else ():
            if severity not in severities:
                problems.append(
                    f"status_page.incident_states.{severity}: not a severity "
                    f"(incidents.severities: {', '.join(severities)})"
                )
    return problems


def _pagerduty_targets(config: ChatopsConfig) -> list[str]:
    """Every `{pagerduty: <name>}` (escalation steps, incident pages) must name a key under
    `integrations.pagerduty.routing_keys`."""
    section = config.integrations.pagerduty
    known = list(section.routing_keys) if section is not None else []
    named: list[tuple[str, PagerDutyTarget]] = []
    for policy_name, policy in config.oncall.escalation_policies.items():
        for number, step in enumerate(policy.steps):
            if isinstance(step.notify, PagerDutyTarget):
                named.append((f"oncall.escalation_policies.{policy_name}.steps[{number}].notify", step.notify))
    for name, severity in config.incidents.severities.items():
        if isinstance(severity.page, PagerDutyTarget):
            named.append((f"incidents.severities.{name}.page", severity.page))
    problems = []
    for path, target in named:
        if target.pagerduty in known:
            continue
        if section is None:
            example = "integrations: {pagerduty: {routing_keys: {" + target.pagerduty + ": PD_ROUTING_KEY}}}"
            problems.append(
                f"{path}: pages PagerDuty ({target.pagerduty!r}) but integrations.pagerduty is not"
                f" configured (add {example})"
            )
            continue
        close = difflib.get_close_matches(target.pagerduty, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (routing_keys: {', '.join(sorted(known))})"
        problems.append(f"{path}: {target.pagerduty!r} is not under integrations.pagerduty.routing_keys{hint}")
    return problems


def summary(config: ChatopsConfig, source: str) -> str:
    """One line for people: "chatops.yaml: OK (3 roles, 7 members; announce channel #general)"."""
    roles = len(config.roles)
    members = len({member for role_members in config.roles.values() for member in role_members})
    channel = config.slack.announce_channel
    where = f"announce channel {channel}" if channel else "no announce channel"
    services = len(config.services)
    environments = sum(len(service.environments) for service in config.services.values())
    deployable = (
        f"; {services} service{'' if services == 1 else 's'} in {environments} "
        f"environment{'' if environments == 1 else 's'}"
        if services
        else ""
    )
    rotations, policies = len(config.oncall.rotations), len(config.oncall.escalation_policies)
    oncall = (
        f"; {rotations} rotation{'' if rotations == 1 else 's'}, {policies} escalation "
        f"polic{'y' if policies == 1 else 'ies'}"
        if rotations or policies
        else ""
    )
    return (
        f"{source}: OK ({roles} role{'' if roles == 1 else 's'}, "
        f"{members} member{'' if members == 1 else 's'}{deployable}{oncall}; {where})"
    )


def load_config(path: str | Path) -> ChatopsConfig:
    """Reads and parses the file at `path`; a missing, unreadable or non-UTF-8 file is a ConfigError too."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise _file_error(source, f"no such file ({Path(path).absolute()})") from None
    except IsADirectoryError:
        raise _file_error(source, f"this is a directory, not a file ({Path(path).absolute()})") from None
    except PermissionError:
        raise _file_error(source, f"cannot read the file: permission denied ({Path(path).absolute()})") from None
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise _file_error(source, f"cannot read the file: {reason} ({Path(path).absolute()})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        message = f"the file is not UTF-8 text (byte 0x{raw[error.start]:02x}); save it as UTF-8"
        raise ConfigError(source, [ConfigProblem("", message, line)]) from None
    return parse_config(text, source)


def _file_error(source: str, message: str) -> ConfigError:
    return ConfigError(source, [ConfigProblem("", message)])


def parse_config(text: str, source: str = "<config>") -> ChatopsConfig:
    """Validates YAML text as a ChatopsConfig; raises ConfigError with every problem, never anything else."""
    return parse_model(text, ChatopsConfig, source)


def parse_model(text: str, model: type[_M], source: str = "<config>") -> _M:
    """Validates YAML text as any pydantic `model` with the same problem reporting as `parse_config`."""
    document = read_yaml(text, source)
    if document.data is None:
        data: Any = {}
    elif isinstance(document.data, dict):
        data = document.data
    else:
        sections = ", ".join(f"{name}:" for name in allowed_keys(model))
        raise ConfigError(
            source,
            [
                *document.problems,
                ConfigProblem(
                    "",
                    f"the file must be a mapping of sections such as {sections} (got {describe_value(document.data)})",
                    document.lines.get((), 1),
                ),
            ],
        )
    try:
        result = model.model_validate(data)
    except ValidationError as error:
        explained = {problem.path for problem in document.problems}
        found = [p for p in problems_from(error, model, data, document.lines) if p.path not in explained]
        raise ConfigError(source, ordered_problems([*document.problems, *found])) from None
    if document.problems:
        raise ConfigError(source, ordered_problems(document.problems))
    return result
