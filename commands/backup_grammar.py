"""The `/backup` grammar as a pure function: text in, a typed command out, or a UsageError that says what was
wrong (never anything else). Words and flags come from the one lexer, `commands.lexer`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.platform.errors import UsageError
from commands.lexer import REASON, FlagSet, show

MAX_LIST = 50
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
SUBCOMMANDS = ("run", "list", "show", "verify", "restore", "drill", "drills")
FLAGS = FlagSet(REASON)
_TAKES_REASON = ("run", "restore")


@dataclass(frozen=True)
class RunCmd:
    """`/backup run <target> [--reason …]`."""

    target: str
    reason: str = ""


@dataclass(frozen=True)
class ListCmd:
    """`/backup list <target> [N]`."""

    target: str
    limit: int = 10


@dataclass(frozen=True)
class ShowCmd:
    """`/backup show <id>`."""

    backup_id: str


@dataclass(frozen=True)
class VerifyCmd:
    """`/backup verify <target> [<id>]`."""

    target: str
    backup_id: str | None = None


@dataclass(frozen=True)
class RestoreCmd:
    """`/backup restore <target> <id> [into <ENV>] [--reason …]`."""

    target: str
    backup_id: str
    into_env: str | None = None
    reason: str = ""
    as_instance: str | None = None


@dataclass(frozen=True)
class DrillCmd:
    """`/backup drill <target>`."""

    target: str


@dataclass(frozen=True)
class DrillsCmd:
    """`/backup drills [<target>] [N]`."""

    target: str | None = None
    limit: int = 10


BackupCmd = RunCmd | ListCmd | ShowCmd | VerifyCmd | RestoreCmd | DrillCmd | DrillsCmd


def parse_backup(text: str) -> BackupCmd:
    """Parses the text after `/backup`."""
    args, options = FLAGS.split(text)
    if not args:
        raise UsageError("Say what to do: `run`, `list`, `show`, `verify`, `restore`, `drill` or `drills`.")
    verb, rest = args[0].lower(), args[1:]
    if verb not in SUBCOMMANDS:
        raise UsageError(f"`{show(args[0])}` is not a /backup subcommand (use one of: {', '.join(SUBCOMMANDS)}).")
    allowed = ("reason",) if verb in _TAKES_REASON else ()
    reason = FLAGS.check(options, allowed=allowed, slash=f"/backup {verb}").get("reason", "")
    if verb == "run":
        _count(verb, rest, 1, 1, "<target>")
        return RunCmd(_name(rest[0], "target"), reason)
    if verb == "list":
        _count(verb, rest, 1, 2, "<target> [N]")
        limit = 10
        if len(rest) == 2:
            if not (rest[1].isascii() and rest[1].isdigit()) or not 1 <= int(rest[1]) <= MAX_LIST:
                raise UsageError(f"N must be a whole number from 1 to {MAX_LIST} (got `{show(rest[1])}`).")
            limit = int(rest[1])
        return ListCmd(_name(rest[0], "target"), limit)
    if verb == "show":
        _count(verb, rest, 1, 1, "<id>")
        return ShowCmd(_name(rest[0], "backup id"))
    if verb == "verify":
        _count(verb, rest, 1, 2, "<target> [<id>]")
        return VerifyCmd(_name(rest[0], "target"), _name(rest[1], "backup id") if len(rest) == 2 else None)
    if verb == "drill":
        _count(verb, rest, 1, 1, "<target>")
        return DrillCmd(_name(rest[0], "target"))
    if verb == "drills":
        _count(verb, rest, 0, 2, "[<target>] [N]")
        limit, named = 10, None
        for word in rest:
            if word.isascii() and word.isdigit():
                if not 1 <= int(word) <= MAX_LIST:
                    raise UsageError(f"N must be a whole number from 1 to {MAX_LIST} (got `{show(word)}`).")
                limit = int(word)
            elif named is None:
                named = _name(word, "target")
            else:
                raise UsageError(f"`/backup drills` takes [<target>] [N]; `{show(word)}` is one word too many.")
        return DrillsCmd(named, limit)
    _count(verb, rest, 2, 4, "<target> <id> [into <ENV_VAR> | as <new-instance>]")
    into = None
    if len(rest) > 2 and rest[2].lower() == "as" and len(rest) == 4:
        return RestoreCmd(
            _name(rest[0], "target"), _name(rest[1], "backup id"), None, reason, _name(rest[3], "instance name")
        )
    if len(rest) > 2:
        if rest[2].lower() != "into" or len(rest) != 4:
            raise UsageError(
                "After the backup id, only `into <ENV_VAR>` (the variable that holds the destination's "
                "URL) or `as <new-instance>` (RDS) may follow."
            )
        if not _ENV_NAME.match(rest[3]):
            raise UsageError(f"`{show(rest[3])}` is not an environment variable name (like `STAGING_DB_URL`).")
        into = rest[3]
    return RestoreCmd(_name(rest[0], "target"), _name(rest[1], "backup id"), into, reason)


def _count(verb: str, rest: list[str], low: int, high: int, shape: str) -> None:
    if len(rest) < low:
        raise UsageError(f"`/backup {verb}` needs {shape}.")
    if len(rest) > high:
        raise UsageError(f"`/backup {verb}` takes {shape}; `{show(rest[high])}` is one word too many.")


def _name(word: str, what: str) -> str:
    if not _ID.match(word):
        raise UsageError(f"`{show(word)}` is not a valid {what} (letters, digits, '.', '_' and '-').")
    return word
