"""The configuration file, `chatops.yaml`: its schema, and a loader whose errors name the file, the line, the key
path and the fix.

`parse_config` turns any text into either a `ChatopsConfig` or a `ConfigError` listing every problem at once:
YAML syntax, duplicate keys, unknown keys (with a "did you mean" hint found by walking the model types along the
key path, so new sections need no change here) and invalid values, each with the line of the key it concerns.
Secrets never live in this file: a section that needs one names an environment variable in a `*_env` key.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    RootModel,
    ValidationError,
    model_validator,
)
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

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
            raise ValueError(f"max_connections: must be from 2 to 10000 (got {self.max_connections}); 64 suits most teams")
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
                        problems.append(f"services.{service_name}.environments.{env_name}.{key}: role '{role}' is not defined under roles")
        for number, route in enumerate(self.alerts.routes):
            if route.escalation is not None and route.escalation not in self.oncall.escalation_policies:
                close = difflib.get_close_matches(route.escalation, list(self.oncall.escalation_policies), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else " (define it under oncall.escalation_policies)"
                problems.append(f"alerts.routes[{number}].escalation: there is no escalation policy {route.escalation!r}{hint}")
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
        hint = f"; did you mean {close[0]!r}?" if close else (
            f" (rotations and policies: {', '.join(sorted(known))})" if known else " (define it under oncall.rotations or oncall.escalation_policies)")
        problems.append(f"incidents.severities.{name}.page: {severity.page!r} is not an on-call rotation or escalation policy{hint}")
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
                problems.append(f"integrations.statuspage.severity_status.{severity}: not a severity "
                                f"(incidents.severities: {', '.join(severities)})")
    if config.status_page is not None:
        targets = [f"{name}/{env}" for name, svc in config.services.items() for env, spec in svc.environments.items()
                   if spec.health is not None and not spec.health.gate_only] + [
                       probe.name for probe in config.status.probes]
        for number, component in enumerate(config.status_page.components):
            for target in component.targets:
                if target in targets or any(t.startswith(f"{target}/") for t in targets):
                    continue
                close = difflib.get_close_matches(target, targets, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else (
                    f" (targets: {', '.join(targets)})" if targets
                    else " (add health: to an environment or a status.probes entry)")
                problems.append(f"status_page.components[{number}].targets: {target!r} is not a /status target{hint}")
        explicit = "incident_states" in config.status_page.model_fields_set
        for severity in config.status_page.incident_states if explicit else ():
            if severity not in severities:
                problems.append(f"status_page.incident_states.{severity}: not a severity "
                                f"(incidents.severities: {', '.join(severities)})")
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
            problems.append(f"{path}: pages PagerDuty ({target.pagerduty!r}) but integrations.pagerduty is not"
                            f" configured (add {example})")
            continue
        close = difflib.get_close_matches(target.pagerduty, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (routing_keys: {', '.join(sorted(known))})"
        problems.append(f"{path}: {target.pagerduty!r} is not under integrations.pagerduty.routing_keys{hint}")
    return problems


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the file: the dotted key path ("roles.admins[0]", "" for the file), what, and where."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = ", ".join(part for part in (f"line {self.line}" if self.line else "", self.path) if part)
        return f"{where}: {self.message}" if where else self.message


class ConfigError(Exception):
    """The configuration cannot be used; `problems` lists every reason, `str()` is the report for people."""

    def __init__(self, source: str, problems: Sequence[ConfigProblem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__(source, self.problems)

    def __str__(self) -> str:
        count = len(self.problems)
        header = f"{self.source}: {count} problem{'' if count == 1 else 's'}"
        return "\n".join([header, *(f"  {problem}" for problem in self.problems)])


def summary(config: ChatopsConfig, source: str) -> str:
    """One line for people: "chatops.yaml: OK (3 roles, 7 members; announce channel #general)"."""
    roles = len(config.roles)
    members = len({member for role_members in config.roles.values() for member in role_members})
    channel = config.slack.announce_channel
    where = f"announce channel {channel}" if channel else "no announce channel"
    services = len(config.services)
    environments = sum(len(service.environments) for service in config.services.values())
    deployable = f"; {services} service{'' if services == 1 else 's'} in {environments} environment{'' if environments == 1 else 's'}" if services else ""
    rotations, policies = len(config.oncall.rotations), len(config.oncall.escalation_policies)
    oncall = (f"; {rotations} rotation{'' if rotations == 1 else 's'}, {policies} escalation polic{'y' if policies == 1 else 'ies'}"
              if rotations or policies else "")
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
    document = _read_yaml(text, source)
    if document.data is None:
        data: Any = {}
    elif isinstance(document.data, dict):
        data = document.data
    else:
        sections = ", ".join(f"{name}:" for name in _allowed_keys(model))
        raise ConfigError(source, [*document.problems, ConfigProblem(
            "", f"the file must be a mapping of sections such as {sections} (got {describe_value(document.data)})",
            document.lines.get((), 1),
        )])
    try:
        result = model.model_validate(data)
    except ValidationError as error:
        explained = {problem.path for problem in document.problems}
        found = [p for p in _problems_from(error, model, data, document.lines) if p.path not in explained]
        raise ConfigError(source, _ordered([*document.problems, *found])) from None
    if document.problems:
        raise ConfigError(source, _ordered(document.problems))
    return result


def _ordered(problems: Sequence[ConfigProblem]) -> list[ConfigProblem]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.line is None, p.line or 0))


# --- reading YAML with line numbers ----------------------------------------------------------------------------

MAX_NODES = 100_000
"""More values than this (counting every alias expansion) is refused: a config is small, a YAML bomb is not."""
MAX_DEPTH = 64
"""Nesting deeper than this is refused."""

_KeyPath: TypeAlias = tuple[Any, ...]
_MERGE_TAG = "tag:yaml.org,2002:merge"
_NULL_TAG = "tag:yaml.org,2002:null"
_NO_CONSTRUCTOR = "could not determine a constructor for the tag "
_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")
_COMMENTED_CHANNEL = re.compile(r"(?::|^\s*-)\s+(#[a-z0-9][a-z0-9._-]*)\s*(?:#.*)?$")


class _Loader(yaml.SafeLoader):
    """SafeLoader whose value errors (a date like 2024-02-30, `!!int x`) become YAML errors with a position."""

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (yaml.YAMLError, RecursionError):
            raise
        except Exception as error:  # noqa: BLE001 - PyYAML's constructors fail in many ways on odd scalars ("!!int")
            raise ConstructorError(None, None, _unreadable(node, error), node.start_mark) from None


_TAG_KINDS = {
    "tag:yaml.org,2002:timestamp": "a date",
    "tag:yaml.org,2002:int": "a whole number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "true or false",
    "tag:yaml.org,2002:binary": "base64 data",
}


def _short_tag(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")


def _unreadable(node: Node, error: Exception) -> str:
    """"cannot read '2024-02-30' as a date: day is out of range for month" for a scalar its tag cannot build."""
    shown = describe_value(node.value) if isinstance(node, ScalarNode) else "this value"
    kind = _TAG_KINDS.get(node.tag, _short_tag(node.tag))
    reason = f": {error}" if node.tag == "tag:yaml.org,2002:timestamp" and isinstance(error, ValueError) else ""
    return f"cannot read {shown} as {kind}{reason}"


@dataclass
class _Document:
    data: Any = None
    lines: dict[_KeyPath, int] = dataclasses.field(default_factory=dict)
    problems: list[ConfigProblem] = dataclasses.field(default_factory=list)


def _read_yaml(text: str, source: str) -> _Document:
    if not isinstance(text, str):
        raise ConfigError(source, [ConfigProblem("", f"the configuration is not text (got {describe_value(text)})")])
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            return _Document()
        walk = _NodeWalk(text)
        walk.check(node, (), 0)
        if walk.fatal:
            raise ConfigError(source, _ordered(walk.problems))
        data = loader.construct_document(node)
        document = _Document(data, problems=walk.problems)
        _record_lines(loader, node, data, (), document.lines, 0)
        return document
    except yaml.YAMLError as error:
        raise ConfigError(source, [_syntax_problem(error, text)]) from None
    except RecursionError:
        message = f"the file is nested more than {MAX_DEPTH} levels deep"
        raise ConfigError(source, [ConfigProblem("", message)]) from None
    finally:
        if loader is not None:
            loader.dispose()


def _syntax_problem(error: yaml.YAMLError, text: str) -> ConfigProblem:
    if isinstance(error, yaml.reader.ReaderError):
        line = text.count("\n", 0, error.position) + 1
        return ConfigProblem("", f"character U+{error.character:04X} is not allowed in a YAML file", line)
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "cannot be read"
        if error.context and problem.startswith("but "):  # "expected a single document…, but found another"
            problem = f"{error.context}, {problem}"
        if problem.startswith(_NO_CONSTRUCTOR):
            problem = "unsupported YAML tag " + _short_tag(problem.removeprefix(_NO_CONSTRUCTOR))
        message = problem if isinstance(error, ConstructorError) else f"YAML syntax error: {problem}"
        if mark is not None and "that cannot start any token" in problem:
            token = _token_at(text, mark.line, mark.column)
            if "'\\t'" in problem:
                message += "; indent with spaces, not tabs"
            elif token:
                message += f"; put the value in quotes: \"{token}\""
        return ConfigProblem("", message, mark.line + 1 if mark is not None else None)
    return ConfigProblem("", f"YAML error: {error}")


def _yaml_lines(text: str) -> list[str]:
    """The text split where YAML counts lines (not at form feeds and the other breaks str.splitlines knows)."""
    return _LINE_BREAK.split(text)


def _token_at(text: str, line: int, column: int) -> str:
    lines = _yaml_lines(text)
    if line >= len(lines):
        return ""
    match = re.match(r"[^\s,\]}\"']+", lines[line][column:])
    token = match.group(0) if match else ""
    return token if len(token) <= 40 else ""


class _NodeWalk:
    """Checks the composed node graph before anything is built: duplicate keys, aliases that contain themselves,
    alias bombs, excessive nesting, and `key: #name` where YAML silently read the channel as a comment."""

    def __init__(self, text: str) -> None:
        self.lines = _yaml_lines(text)
        self.problems: list[ConfigProblem] = []
        self.fatal = False
        self.count = 0
        self.active: set[int] = set()

    def check(self, node: Node, path: _KeyPath, depth: int) -> None:
        if self.fatal:
            return
        self.count += 1
        line = node.start_mark.line + 1
        if self.count > MAX_NODES:
            self._fatal((), f"the file holds more than {MAX_NODES} values once its aliases are expanded", line)
            return
        if depth > MAX_DEPTH:
            self._fatal(path, f"nested more than {MAX_DEPTH} levels deep", line)
            return
        if id(node) in self.active:
            self._fatal(path, "an alias here refers to a value that contains it", line)
            return
        if isinstance(node, ScalarNode):
            return
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                for index, item in enumerate(node.value):
                    self._commented_channel(item, path + (index,), item.start_mark.line)
                    self.check(item, path + (index,), depth + 1)
            elif isinstance(node, MappingNode):
                self._mapping(node, path, depth)
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: MappingNode, path: _KeyPath, depth: int) -> None:
        seen: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag != _MERGE_TAG:
                identity = (key_node.tag, key_node.value)
                key_line = key_node.start_mark.line + 1
                if identity in seen:
                    self.problems.append(ConfigProblem(
                        _format_path(path),
                        f"duplicate key {describe_value(key_node.value)} (first at line {seen[identity]})",
                        key_line,
                    ))
                else:
                    seen[identity] = key_line
                child = path + (key_node.value,)
                self._commented_channel(value_node, child, key_node.end_mark.line)
            else:
                child = path + ("?",)
                self.check(key_node, child, depth + 1)
            self.check(value_node, child, depth + 1)

    def _commented_channel(self, node: Node, path: _KeyPath, line_index: int) -> None:
        """`announce_channel: #general` is a key with no value and a comment; say so instead of ignoring it."""
        if not (isinstance(node, ScalarNode) and node.tag == _NULL_TAG and node.value == "" and node.style is None):
            return
        if line_index >= len(self.lines):
            return
        match = _COMMENTED_CHANNEL.search(self.lines[line_index])
        if match:
            name = match.group(1)
            self.problems.append(ConfigProblem(
                _format_path(path), f"YAML reads {name} as a comment, so this value is empty; write \"{name}\"",
                line_index + 1,
            ))

    def _fatal(self, path: _KeyPath, message: str, line: int) -> None:
        self.fatal = True
        self.problems.append(ConfigProblem(_format_path(path), message, line))


def _record_lines(
    loader: _Loader, node: Node, data: Any, path: _KeyPath, lines: dict[_KeyPath, int], depth: int
) -> None:
    """Maps each key path, with keys as built (so they match pydantic's locations), to the line of its key."""
    lines.setdefault(path, node.start_mark.line + 1)
    if depth > MAX_DEPTH:
        return
    if isinstance(node, SequenceNode) and isinstance(data, list):
        for index, (item_node, item) in enumerate(zip(node.value, data)):
            lines[path + (index,)] = item_node.start_mark.line + 1
            _record_lines(loader, item_node, item, path + (index,), lines, depth + 1)
    elif isinstance(node, MappingNode) and isinstance(data, dict):
        for key_node, value_node in node.value:  # merges (<<) are already flattened in place by the constructor
            try:
                key = loader.construct_object(key_node, deep=True)
                hash(key)
            except Exception:  # noqa: BLE001, S112 - a key we cannot rebuild just has no line of its own
                continue
            if key not in data:
                continue
            lines[path + (key,)] = key_node.start_mark.line + 1
            _record_lines(loader, value_node, data[key], path + (key,), lines, depth + 1)


# --- pydantic errors as problems for people --------------------------------------------------------------------

_KINDS = {
    "string_type": "a string",
    "string_unicode": "a string",
    "string_sub_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "decimal_type": "a number",
    "decimal_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "tuple_type": "a list",
    "set_type": "a list",
    "frozen_set_type": "a list",
    "iterable_type": "a list",
    "dict_type": "a mapping",
    "mapping_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "dataclass_type": "a mapping",
    "date_type": "a date (YYYY-MM-DD)",
    "date_parsing": "a date (YYYY-MM-DD)",
    "datetime_type": "a date and time",
    "datetime_parsing": "a date and time",
    "url_type": "a URL",
    "url_parsing": "a URL",
}
_COMPARISONS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", "≥"),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "≤"),
    "multiple_of": ("multiple_of", "a multiple of"),
}
_PREFIXES = ("Value error, ", "Assertion failed, ")
_MISSING = object()


def _problems_from(
    error: ValidationError, model: type[BaseModel], data: Any, lines: Mapping[_KeyPath, int]
) -> Iterator[ConfigProblem]:
    for detail in error.errors(include_url=False):
        try:
            yield _problem_from(detail, model, data, lines)
        except Exception:  # noqa: BLE001 - an error we cannot explain is still reported, in pydantic's words
            yield ConfigProblem(".".join(str(part) for part in detail.get("loc", ())), str(detail.get("msg")))


@dataclass
class _Location:
    keys: list[Any]  # as in the data: the path to look lines up by
    segments: list[tuple[bool, Any]]  # (is_index, key) for printing
    model_type: Any  # the declared type at the end of the path, or None when it cannot be told
    parent_type: Any
    about_key: bool  # the error is about the mapping key itself, not its value


def _problem_from(
    detail: Mapping[str, Any], model: type[BaseModel], data: Any, lines: Mapping[_KeyPath, int]
) -> ConfigProblem:
    where = _locate(tuple(detail["loc"]), model, data)
    kind = detail["type"]
    if kind == "invalid_key":  # a non-string key where the model expects field names
        where.about_key = True
    message = _message(kind, detail, where)
    return ConfigProblem(_render(where.segments), message, _line_for(tuple(where.keys), lines))


def _message(kind: str, detail: Mapping[str, Any], where: _Location) -> str:
    value = detail.get("input")
    ctx = detail.get("ctx") or {}
    msg = str(detail.get("msg", ""))
    subject = "key " if where.about_key else ""
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return _unknown_key(where)
    if kind == "invalid_key":
        return f"key must be a string (got {describe_value(value)})"
    if kind == "union_tag_invalid":  # `kind: <unknown>` in a section chosen by kind (deployer, metric, ...)
        tags = re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
        tag = str(ctx.get("tag", ""))
        close = difflib.get_close_matches(tag, tags, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        field = str(ctx.get("discriminator", "kind")).strip("'")
        return f"unknown {field} {tag!r}; expected one of: {', '.join(tags)}{hint}"
    if kind in ("value_error", "assertion_error"):
        for prefix in _PREFIXES:
            if msg.startswith(prefix):
                return msg[len(prefix):]
        return msg
    if kind in _KINDS:
        return f"{subject}must be {_KINDS[kind]} (got {describe_value(value)})"
    if kind in _COMPARISONS:
        name, symbol = _COMPARISONS[kind]
        return f"{subject}must be {symbol} {_limit(ctx.get(name))}"
    if kind in ("literal_error", "enum"):
        choices = _choices(where.model_type) or [ctx.get("expected", "")]
        return f"{subject}must be one of: {', '.join(str(choice) for choice in choices)}"
    if kind == "string_too_short":
        return f"{subject}must be at least {_count(ctx.get('min_length'), 'character')} long"
    if kind == "string_too_long":
        return f"{subject}must be at most {_count(ctx.get('max_length'), 'character')} long"
    if kind == "too_short":
        return f"must have at least {_count(ctx.get('min_length'), 'item')}"
    if kind == "too_long":
        return f"must have at most {_count(ctx.get('max_length'), 'item')}"
    if kind == "string_pattern_mismatch":
        return f"{subject}must match {ctx.get('pattern')} (got {describe_value(value)})"
    if kind == "finite_number":
        return f"{subject}must be a finite number (got {describe_value(value)})"
    if kind == "recursion_loop":
        return "refers to itself"
    if kind == "union_tag_invalid":  # a discriminated union's `kind:` names nothing we know
        return (f"{ctx.get('discriminator', 'kind').strip(chr(39))} {describe_value(ctx.get('tag'))} is not known; "
                f"use one of: {str(ctx.get('expected_tags', '')).replace(chr(39), '')}")
    return subject + msg[:1].lower() + msg[1:]


def _unknown_key(where: _Location) -> str:
    allowed = _allowed_keys(where.parent_type)
    key = where.keys[-1] if where.keys else ""
    if allowed and isinstance(key, str):
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        if close:
            return f"unknown key; did you mean {close[0]!r}?"
    if allowed:
        return f"unknown key; expected one of: {', '.join(allowed)}"
    return "unknown key"


def _limit(value: Any) -> str:
    return format_duration(value) if isinstance(value, timedelta) and value >= timedelta(0) else str(value)


def _count(number: Any, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _line_for(keys: _KeyPath, lines: Mapping[_KeyPath, int]) -> int | None:
    """The line of the key at `keys`, or of its nearest ancestor that is in the file (a missing key's parent)."""
    for end in range(len(keys), -1, -1):
        try:
            line = lines.get(keys[:end])
        except TypeError:  # an unhashable part
            continue
        if line is not None:
            return line
    return None


def _locate(loc: tuple[Any, ...], model: type[BaseModel], data: Any) -> _Location:
    """Walks pydantic's error location through the data and the declared types together: list positions become
    `[0]`, union member tags and `[key]` markers are dropped, and the model type at each step is known."""
    where = _Location(keys=[], segments=[], model_type=model, parent_type=None, about_key=False)
    current: Any = data
    for part in loc:
        if part == "[key]":
            where.about_key = True
            continue
        declared = _unwrap(where.model_type)
        members = _union_members(declared)
        in_data = isinstance(current, Mapping) and _find_key(current, part) is not _MISSING
        if members is not None and isinstance(part, str) and not in_data:
            where.model_type = _union_member(members, part)  # a tag naming the member that failed
            continue
        if isinstance(current, (list, tuple)) and isinstance(part, int):
            where.segments.append((True, part))
            where.keys.append(part)
            current = current[part] if -len(current) <= part < len(current) else _MISSING
        else:
            key = _find_key(current, part) if isinstance(current, Mapping) else _MISSING
            key = part if key is _MISSING else key
            is_index = isinstance(part, int) and not isinstance(current, Mapping) and _item_type(declared) is not None
            where.segments.append((is_index, key))
            where.keys.append(key)
            current = current.get(key, _MISSING) if isinstance(current, Mapping) else _MISSING
        where.parent_type = declared
        where.model_type = _child_type(declared, part)
    return where


def _find_key(mapping: Mapping[Any, Any], part: Any) -> Any:
    """The data key pydantic named `part` (pydantic writes a key it cannot show as str/int as its str())."""
    try:
        if part in mapping:
            return part
    except TypeError:
        return _MISSING
    for key in mapping:
        if isinstance(part, str) and not isinstance(key, str) and str(key) == part:
            return key
    return _MISSING


def _render(segments: list[tuple[bool, Any]]) -> str:
    text = ""
    for is_index, key in segments:
        if is_index:
            text += f"[{key}]"
        elif isinstance(key, str) and re.fullmatch(r"[A-Za-z0-9_-]+", key):
            text += f".{key}" if text else key
        elif isinstance(key, str):
            text += f"[{describe_value(key)}]"
        else:
            shown = "null" if key is None else describe_value(key)
            text += f".{shown}" if text else shown
    return text


def _format_path(path: _KeyPath) -> str:
    return _render([(isinstance(part, int) and not isinstance(part, bool), part) for part in path])


# --- walking declared types ------------------------------------------------------------------------------------


_TYPE_ALIAS: Any = getattr(typing, "TypeAliasType", None)


def _unwrap(tp: Any) -> Any:
    """Strips Annotated, `type X = ...` aliases, Optional and RootModel down to the type that holds the data."""
    for _ in range(32):
        if _TYPE_ALIAS is not None and isinstance(tp, _TYPE_ALIAS):  # `type X = ...` (Python 3.12+)
            tp = tp.__value__
        elif typing.get_origin(tp) is Annotated:
            tp = typing.get_args(tp)[0]
        elif _is_union(tp):
            members = [arg for arg in typing.get_args(tp) if arg is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        elif isinstance(tp, type) and issubclass(tp, RootModel):
            tp = tp.model_fields["root"].annotation
        else:
            return tp
    return tp


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _union_members(tp: Any) -> list[Any] | None:
    if not _is_union(tp):
        return None
    return [arg for arg in typing.get_args(tp) if arg is not type(None)]


def _union_member(members: list[Any], tag: str) -> Any:
    for member in members:
        plain = _unwrap(member)
        if getattr(plain, "__name__", None) == tag:
            return member
    return None


def _model_fields(tp: Any) -> dict[str, Any] | None:
    """Field name as written in the file -> declared type, for a pydantic model; None for anything else."""
    if not (isinstance(tp, type) and issubclass(tp, BaseModel)):
        return None
    fields = {}
    for name, info in tp.model_fields.items():
        alias = info.validation_alias if isinstance(info.validation_alias, str) else info.alias
        fields[alias or name] = info.annotation
    return fields


def _allowed_keys(tp: Any) -> list[str]:
    fields = _model_fields(_unwrap(tp))
    return list(fields) if fields else []


def _item_type(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (list, set, frozenset) or (isinstance(origin, type) and issubclass(origin, Sequence)):
        args = typing.get_args(tp)
        return args[0] if args else Any
    return None


def _child_type(tp: Any, part: Any) -> Any:
    """The declared type one step below `tp` along `part` (a field name, a dict key or a list position)."""
    fields = _model_fields(tp)
    if fields is not None:
        return fields.get(part)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
        return args[part] if isinstance(part, int) and 0 <= part < len(args) else None
    if origin is dict or (isinstance(origin, type) and issubclass(origin, Mapping)):
        return args[1] if len(args) == 2 else None
    return _item_type(tp)


def _choices(tp: Any) -> list[Any]:
    plain = _unwrap(tp)
    if typing.get_origin(plain) is Literal:
        return list(typing.get_args(plain))
    if isinstance(plain, type) and issubclass(plain, enum.Enum):
        return [member.value for member in plain]
    return []
