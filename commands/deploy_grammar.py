"""The grammar of `/deploy` and `/rollback`: turns the text a person typed into one typed, validated command.

Pure parsing, no I/O: whether a service or environment exists in the configuration is for the deploy engine to
check. Words, quotes and flags come from the one lexer, `commands.lexer` (so “curly quotes”, Slack's escaping,
`--reason "…"`, `--reason="…"` and the dashes Slack substitutes, `—reason` and `–reason`, work as everywhere). Every
problem raises `UsageError` with a message that says what to type instead and the usage line(s) that apply.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from bot.platform.errors import UsageError
from commands.lexer import MAX_REASON, REASON, Flag, FlagSet
from commands.lexer import show as _show
from integrations.types import parse_duration

__all__ = [
    "DEFAULT_HISTORY",
    "DEFAULT_LOCK",
    "DEPLOY_USAGE",
    "KEYWORDS",
    "MAX_HISTORY",
    "MAX_LOCK",
    "MAX_REASON",
    "ROLLBACK_USAGE",
    "CancelCmd",
    "DeployCommand",
    "DeployRequestCmd",
    "HistoryCmd",
    "LockCmd",
    "LocksCmd",
    "RollbackCmd",
    "StatusCmd",
    "UnlockCmd",
    "parse_deploy",
    "parse_rollback",
]

# --- the commands ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeployRequestCmd:
    """`/deploy <service> <version> to <env>`: deploy a version; `reason` is "" when none was given."""

    service: str
    version: str
    environment: str
    reason: str = ""
    force: bool = False


@dataclass(frozen=True)
class StatusCmd:
    """`/deploy status [<service>]`: what runs where (every service when `service` is None)."""

    service: str | None = None


@dataclass(frozen=True)
class HistoryCmd:
    """`/deploy history <service> [<env>] [N]`: the last `limit` deploys (every environment when None)."""

    service: str
    environment: str | None = None
    limit: int = 10


@dataclass(frozen=True)
class CancelCmd:
    """`/deploy cancel <id>`: stop a deploy that is waiting or running."""

    deploy_id: str


@dataclass(frozen=True)
class LockCmd:
    """`/deploy lock <env> [<service>] --reason "…" [--for 2h]`: block deploys (of one service, or all)."""

    environment: str
    service: str | None
    reason: str
    duration: timedelta


@dataclass(frozen=True)
class UnlockCmd:
    """`/deploy unlock <env> [<service>]`: lift a lock."""

    environment: str
    service: str | None = None


@dataclass(frozen=True)
class LocksCmd:
    """`/deploy locks`: list the locks in force."""


@dataclass(frozen=True)
class RollbackCmd:
    """`/rollback <service> <env> [to <version>]`: back to `version`, or the last good one when None."""

    service: str
    environment: str
    version: str | None = None
    reason: str = ""


DeployCommand = DeployRequestCmd | StatusCmd | HistoryCmd | CancelCmd | LockCmd | UnlockCmd | LocksCmd
"""Whatever `parse_deploy` returns."""

# --- limits and usage --------------------------------------------------------------------------------------------

DEFAULT_HISTORY = 10
MAX_HISTORY = 50
DEFAULT_LOCK = timedelta(hours=2)
MAX_LOCK = timedelta(days=7)
_MAX_LOCK_TEXT = "7d"
KEYWORDS = frozenset({"status", "history", "cancel", "lock", "unlock", "locks", "help"})
"""Words that name a subcommand when they come first, so they can never be a service name there."""

_USAGE = {
    "request": '/deploy <service> <version> to <env> [--reason "…"] [--force]\n'
    '/deploy <service>@<version> <env> [--reason "…"] [--force]',
    "status": "/deploy status [<service>]",
    "history": "/deploy history <service> [<env>] [N]",
    "cancel": "/deploy cancel <id>",
    "lock": '/deploy lock <env> [<service>] --reason "…" [--for 2h]',
    "unlock": "/deploy unlock <env> [<service>]",
    "locks": "/deploy locks",
    "rollback": '/rollback <service> <env> [to <version>] [--reason "…"]',
}
DEPLOY_USAGE = "\n".join(_USAGE[name] for name in ("request", "status", "history", "cancel", "lock", "unlock", "locks"))
"""Every form of `/deploy`, one a line."""
ROLLBACK_USAGE = _USAGE["rollback"]
"""The form of `/rollback`."""

_SLASH = {"request": "/deploy", "rollback": "/rollback", **{k: f"/deploy {k}" for k in KEYWORDS - {"help"}}}
# The options each form takes; `--reason` and `--for` take a value, `--force` does not.
_OPTIONS: dict[str, tuple[str, ...]] = {
    "request": ("reason", "force"),
    "lock": ("reason", "for"),
    "rollback": ("reason",),
}
_FLAGS = FlagSet(REASON, Flag("force", takes_value=False), Flag("for", example="2h"))

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
_DEPLOY_ID = re.compile(r"d-[a-z0-9]{4,32}")
_COUNT = re.compile(r"[+-]?[0-9]+")


# --- parsing -----------------------------------------------------------------------------------------------------


def parse_deploy(text: str) -> DeployCommand:
    """The command in the text after `/deploy`; UsageError (with the usage that applies) on any problem."""
    positional, options = _FLAGS.split(text, DEPLOY_USAGE)
    first = positional[0].lower() if positional else ""
    form = first if first in KEYWORDS else "request"
    if form == "help":
        raise UsageError("`help` is a reserved word, not a service: `/deploy help` shows the usage", DEPLOY_USAGE)
    usage = _USAGE[form]
    flags = _FLAGS.check(options, allowed=_OPTIONS.get(form, ()), slash=_SLASH[form], usage=usage)
    if form == "request":
        return _request(positional, flags, usage)
    args = positional[1:]
    if form == "status":
        _at_most(args, 1, form, usage)
        return StatusCmd(_name(args[0], "service", usage) if args else None)
    if form == "history":
        return _history(args, usage)
    if form == "cancel":
        if not args:
            raise UsageError("`/deploy cancel` needs the deploy id: write `/deploy cancel d-…`", usage)
        _at_most(args, 1, form, usage)
        return CancelCmd(_deploy_id(args[0], usage))
    if form == "locks":
        _at_most(args, 0, form, usage)
        return LocksCmd()
    if not args:
        example = '/deploy lock <env> --reason "…"' if form == "lock" else "/deploy unlock <env>"
        raise UsageError(f"`/deploy {form}` needs an environment: write `{example}`", usage)
    _at_most(args, 2, form, usage)
    environment = _name(args[0], "environment", usage)
    service = _name(args[1], "service", usage) if len(args) > 1 else None
    if form == "unlock":
        return UnlockCmd(environment, service)
    if "reason" not in flags:
        target = f"{environment} {service}" if service else environment
        raise UsageError(f'a lock needs a reason: write `/deploy lock {target} --reason "…"`', usage)
    return LockCmd(environment, service, flags["reason"], _lock_duration(flags.get("for"), usage))


def parse_rollback(text: str) -> RollbackCmd:
    """The command in the text after `/rollback`; UsageError (with the usage) on any problem."""
    usage = ROLLBACK_USAGE
    positional, options = _FLAGS.split(text, usage)
    flags = _FLAGS.check(options, allowed=_OPTIONS["rollback"], slash=_SLASH["rollback"], usage=usage)
    reason = flags.get("reason", "")
    if not positional:
        raise UsageError("`/rollback` needs a service and an environment: write `/rollback <service> <env>`", usage)
    first = positional[0]
    if "@" in first:
        service_text, _, version_text = first.partition("@")
        env_hint = _show(positional[1]) if len(positional) > 1 else "<env>"
        raise UsageError(
            f"`/rollback` takes the version after `to`: write "
            f"`/rollback {_show(service_text) or '<service>'} {env_hint} to {_show(version_text) or '<version>'}`",
            usage,
        )
    service = _name(first, "service", usage)
    if len(positional) == 1:
        raise UsageError(f"`/rollback {service}` needs an environment: write `/rollback {service} <env>`", usage)
    if positional[1].lower() == "to" and len(positional) <= 3:  # four words: the environment is `to`
        raise UsageError(
            f"`/rollback {service}` needs the environment before `to`: write `/rollback {service} <env> to <version>`",
            usage,
        )
    environment = _name(positional[1], "environment", usage)
    if len(positional) == 2:
        return RollbackCmd(service, environment, None, reason)
    third = positional[2]
    if third.lower() != "to":
        if len(positional) == 3:
            version = _version(third, usage)
            raise UsageError(
                f"`{version}` is missing `to`: write `/rollback {service} {environment} to {version}`", usage
            )
        raise UsageError(
            f"expected `to` after the environment, not `{_show(third)}`: "
            f"write `/rollback {service} {environment} to <version>`",
            usage,
        )
    if len(positional) == 3:
        raise UsageError(
            f"`to` needs a version after it: write `/rollback {service} {environment} to <version>`", usage
        )
    version = _version(positional[3], usage)
    _nothing_after(positional, 4, usage)
    return RollbackCmd(service, environment, version, reason)


# --- the forms ---------------------------------------------------------------------------------------------------


def _request(positional: Sequence[str], flags: dict[str, str], usage: str) -> DeployRequestCmd:
    reason, force = flags.get("reason", ""), "force" in flags
    if not positional:
        raise UsageError(
            "`/deploy` needs a service, a version and an environment: write `/deploy <service> <version> to <env>`",
            DEPLOY_USAGE,
        )
    first = positional[0]
    if "@" in first:
        service_text, _, version_text = first.partition("@")
        if not service_text:
            raise UsageError(
                f"`{_show(first)}` needs the service before `@`: write `/deploy <service>{_show(first)} <env>`", usage
            )
        service = _name(service_text, "service", usage, reserved=True)
        if not version_text:
            raise UsageError(
                f"`{service}@` needs the version after `@`: write `/deploy {service}@<version> <env>`", usage
            )
        version = _version(version_text, usage)
        rest = list(positional[1:])
        if rest and rest[0].lower() == "to":
            if len(rest) == 1:
                raise UsageError(
                    f"`to` needs an environment after it: write `/deploy {service}@{version} to <env>`", usage
                )
            rest = rest[1:]
        if not rest:
            raise UsageError(
                f"`/deploy {service}@{version}` needs an environment: write `/deploy {service}@{version} <env>`", usage
            )
        environment = _name(rest[0], "environment", usage)
        _nothing_after(rest, 1, usage)
        return DeployRequestCmd(service, version, environment, reason, force)

    service = _name(first, "service", usage, reserved=True)
    if len(positional) == 1:
        raise UsageError(
            f"`/deploy {service}` needs a version and an environment: write `/deploy {service} <version> to <env>`",
            usage,
        )
    if positional[1].lower() == "to" and len(positional) <= 3:  # four words: the version is `to`
        env_hint = _show(positional[2]) if len(positional) > 2 else "<env>"
        raise UsageError(
            f"`/deploy {service}` is missing the version: write `/deploy {service} <version> to {env_hint}`", usage
        )
    version = _version(positional[1], usage)
    if len(positional) == 2:
        raise UsageError(
            f"`/deploy {service} {version}` needs an environment: write `/deploy {service} {version} to <env>`", usage
        )
    third = positional[2]
    if third.lower() != "to":
        if len(positional) == 3:
            environment = _name(third, "environment", usage)
            raise UsageError(
                f"`{environment}` is missing `to`: write `/deploy {service} {version} to {environment}`", usage
            )
        raise UsageError(
            f"expected `to` after the version, not `{_show(third)}`: write `/deploy {service} {version} to <env>`",
            usage,
        )
    if len(positional) == 3:
        raise UsageError(f"`to` needs an environment after it: write `/deploy {service} {version} to <env>`", usage)
    environment = _name(positional[3], "environment", usage)
    _nothing_after(positional, 4, usage)
    return DeployRequestCmd(service, version, environment, reason, force)


def _history(args: Sequence[str], usage: str) -> HistoryCmd:
    if not args:
        raise UsageError("`/deploy history` needs a service: write `/deploy history <service>`", usage)
    _at_most(args, 3, "history", usage)
    service = _name(args[0], "service", usage)
    environment: str | None = None
    limit = DEFAULT_HISTORY
    if len(args) == 2:
        if _COUNT.fullmatch(args[1]):
            limit = _count(args[1], usage)
        else:
            environment = _name(args[1], "environment", usage)
    elif len(args) == 3:
        environment = _name(args[1], "environment", usage)
        if not _COUNT.fullmatch(args[2]):
            raise UsageError(
                f"`{_show(args[2])}` is not a number: `history` ends with how many deploys to show, 1 to {MAX_HISTORY}",
                usage,
            )
        limit = _count(args[2], usage)
    return HistoryCmd(service, environment, limit)


def _count(text: str, usage: str) -> int:
    digits = text.lstrip("+-").lstrip("0") or "0"
    number = int(digits) if len(digits) <= 6 else MAX_HISTORY + 1  # plain ASCII digits (_COUNT); never huge
    if text.startswith("-") or number < 1:
        raise UsageError(f"`history` takes at least 1 (got {_show(text)})", usage)
    if number > MAX_HISTORY:
        raise UsageError(f"`history` takes at most {MAX_HISTORY} (got {_show(text)})", usage)
    return number


def _lock_duration(text: str | None, usage: str) -> timedelta:
    if text is None:
        return DEFAULT_LOCK
    try:
        duration = parse_duration(text)
    except (ValueError, OverflowError):
        raise UsageError(f"`--for` takes a duration like 30m, 2h or 1d, not `{_show(text)}`", usage) from None
    if duration <= timedelta(0):
        raise UsageError("`--for` must be longer than 0s", usage)
    if duration > MAX_LOCK:
        raise UsageError(f"`--for` can be at most {_MAX_LOCK_TEXT}, not `{_show(text)}`", usage)
    return duration


# --- words ----------------------------------------------------------------------------------------------------


def _name(text: str, kind: str, usage: str, *, reserved: bool = False) -> str:
    """A service or environment name, in lower case."""
    name = text.lower() if text.isascii() else text
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"{kind} `{_show(text)}` is not a valid name: use lower-case letters, digits, `.`, `_` and `-`, "
            "starting with a letter or digit (at most 63 characters)",
            usage,
        )
    if reserved and name in KEYWORDS:
        raise UsageError(f"`{name}` is a reserved word and cannot be a service name here", usage)
    return name


def _version(text: str, usage: str) -> str:
    if not _VERSION.fullmatch(text):
        raise UsageError(
            f"version `{_show(text)}` is not valid: use letters, digits, `.`, `_`, `+` and `-`, "
            "starting with a letter or digit (at most 128 characters)",
            usage,
        )
    return text


def _deploy_id(text: str, usage: str) -> str:
    deploy_id = text.lower() if text.isascii() else text
    if not _DEPLOY_ID.fullmatch(deploy_id):
        raise UsageError(f"`{_show(text)}` is not a deploy id: they look like `d-7k2m9x`", usage)
    return deploy_id


def _at_most(args: Sequence[str], count: int, form: str, usage: str) -> None:
    if len(args) > count:
        after = f"after `{_show(args[count - 1])}`" if count else f"after `{form}`"
        raise UsageError(f"unexpected `{_show(' '.join(args[count:]))}` {after}", usage)


def _nothing_after(words: Sequence[str], count: int, usage: str) -> None:
    if len(words) > count:
        raise UsageError(f"unexpected `{_show(' '.join(words[count:]))}` after `{_show(words[count - 1])}`", usage)
