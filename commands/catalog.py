"""The command catalog: the specs of every command (help text from the docstring, usage hint, handler and
actions) and the routing of slash-command text to a spec. Help, routing and the Slack app manifest all read from it.

It knows handlers only as callables: what a handler receives and returns, and the declaration each command module
makes (`commands.framework.Command`), live in `commands.framework`, which builds specs from here; this module
imports nothing from it (no import cycle)."""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.shell.deps import Deps

# The handlers as the catalog routes them; `commands.framework` declares their exact context and reply types.
CommandHandler = Callable[[Any], Awaitable[Any]]
ActionHandler = Callable[[Any], Awaitable[None]]
ShortcutHandler = Callable[[Any], Awaitable[None]]
ViewHandler = Callable[[Any], Awaitable["dict[str, str] | None"]]
"""A modal's submit handler: errors by input block id (shown under the inputs, the modal stays), or None."""
EventHandler = Callable[[Deps, Mapping[str, Any]], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Shortcut:
    """A shortcut a command module offers (a message shortcut appears in every message's "More actions" menu)."""

    callback_id: str
    name: str
    description: str
    handler: ShortcutHandler
    type: Literal["message", "global"] = "message"


UMBRELLA = "chatops"
HELP_WORDS = frozenset({"help", "--help", "-h", "?"})
# How alike a typed word and a command must be to suggest it: "histroy"/"history" 0.86, "deplyo"/"deploy" 0.83,
# while a service called "statuspage" (0.75 to "status") is left alone.
SUGGEST_CUTOFF = 0.8
_SUBCOMMAND = re.compile(r"^/\S+ \[?([a-z][a-z-]*)\]?(?:\s|$)")


@dataclass(frozen=True, eq=False)
class CommandSpec:
    """One slash command: its name, help text (from the module docstring), handler and button actions.
    Compared and hashed by identity: each command module yields one spec."""

    name: str
    summary: str
    description: str
    usage: tuple[str, ...]
    examples: tuple[str, ...]
    usage_hint: str
    handler: CommandHandler | None
    actions: Mapping[str, ActionHandler] = field(default_factory=dict)
    escapes_mentions: bool = False
    shortcuts: tuple[Shortcut, ...] = ()
    views: Mapping[str, ViewHandler] = field(default_factory=dict)
    events: Mapping[str, EventHandler] = field(default_factory=dict)
    # Buttons that only show something (help pages, a refresh): never dropped as a double click.
    read_only_actions: frozenset[str] = frozenset()
    read_only_subcommands: frozenset[str] = frozenset()  # first words that only show something ("" bare, "*" all)

    @property
    def slash(self) -> str:
        """The command as typed, e.g. `/deploy`."""
        return f"/{self.name}"

    @property
    def available(self) -> bool:
        """False for commands announced but not built yet."""
        return self.handler is not None

    @property
    def subcommands(self) -> tuple[str, ...]:
        """The literal words that may follow the command, read from its usage lines (`history` in
        `/deploy history <service>`; not `<service>`)."""
        found = (_SUBCOMMAND.match(line) for line in self.usage)
        return tuple(dict.fromkeys(match.group(1) for match in found if match))

    @property
    def usage_text(self) -> str:
        """The usage lines joined, for error messages."""
        return "\n".join(self.usage)

    @classmethod
    def build(cls, name: str, doc: str | None, **parts: Any) -> CommandSpec:
        """A spec from a command's name, docstring (= help: summary, description, `Usage:` and `Examples:`) and
        the other parts (`handler`, `actions`, …); ValueError when the docstring lacks a summary or usage."""
        summary, description, sections = parse_docstring(inspect.cleandoc(doc or ""))
        if not summary or not sections.get("usage"):
            raise ValueError(f"command {name} needs a docstring with a summary and a Usage: section")
        return cls(
            name=name,
            summary=summary,
            description=description,
            usage=tuple(sections["usage"]),
            examples=tuple(sections.get("examples", ())),
            **parts,
        )


def parse_docstring(doc: str) -> tuple[str, str, dict[str, list[str]]]:
    """Splits a command docstring into summary line, free description and `Usage:`/`Examples:` sections."""
    lines = doc.splitlines()
    summary = lines[0].strip() if lines else ""
    description: list[str] = []
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines[1:]:
        stripped = line.strip()
        heading = stripped[:-1].lower() if stripped.endswith(":") and " " not in stripped else None
        if heading in {"usage", "examples"}:
            current = sections.setdefault(heading, [])
        elif current is not None and stripped:
            current.append(stripped)
        elif current is None:
            description.append(stripped)
    return summary, "\n".join(description).strip(), sections


@dataclass(frozen=True)
class Route:
    """Where a slash command's text goes: a spec, whether help was asked for, and the remaining text."""

    spec: CommandSpec
    help: bool
    args: str


class Catalog:
    """The registered commands, in registry order, with the umbrella `/chatops` last."""

    def __init__(self, specs: Iterable[CommandSpec]) -> None:
        self.specs = tuple(specs)
        self._by_name = {spec.name: spec for spec in self.specs}
        if UMBRELLA not in self._by_name:
            raise ValueError("the registry must include the umbrella /chatops command")

    def get(self, name: str) -> CommandSpec | None:
        """The spec for a command name (without slash), if registered."""
        return self._by_name.get(name.lstrip("/").lower())

    @property
    def umbrella(self) -> CommandSpec:
        """The /chatops command."""
        return self._by_name[UMBRELLA]

    def actions(self) -> dict[str, tuple[CommandSpec, ActionHandler]]:
        """Every button action id with the command that owns it."""
        found: dict[str, tuple[CommandSpec, ActionHandler]] = {}
        for spec in self.specs:
            for action_id, handler in spec.actions.items():
                if action_id in found:
                    raise ValueError(f"action id {action_id} is registered twice")
                found[action_id] = (spec, handler)
        return found

    def read_only_actions(self) -> frozenset[str]:
        """Action ids that change nothing (navigation, refresh): the double-click guard leaves them alone."""
        return frozenset().union(*(spec.read_only_actions for spec in self.specs))

    def shortcuts(self) -> dict[str, tuple[CommandSpec, Shortcut]]:
        """Every shortcut callback_id with the command that owns it."""
        found: dict[str, tuple[CommandSpec, Shortcut]] = {}
        for spec in self.specs:
            for shortcut in spec.shortcuts:
                if shortcut.callback_id in found:
                    raise ValueError(f"shortcut {shortcut.callback_id} is registered twice")
                found[shortcut.callback_id] = (spec, shortcut)
        return found

    def events(self) -> dict[str, EventHandler]:
        """Every Events API handler by event type (one owner per type)."""
        found: dict[str, EventHandler] = {}
        for spec in self.specs:
            for event_type, handler in spec.events.items():
                if event_type in found:
                    raise ValueError(f"event {event_type} is handled twice")
                found[event_type] = handler
        return found

    def views(self) -> dict[str, tuple[CommandSpec, ViewHandler]]:
        """Every modal callback_id with the command that owns it."""
        found: dict[str, tuple[CommandSpec, ViewHandler]] = {}
        for spec in self.specs:
            for callback_id, handler in spec.views.items():
                if callback_id in found:
                    raise ValueError(f"view {callback_id} is registered twice")
                found[callback_id] = (spec, handler)
        return found

    def suggest(self, spec: CommandSpec, args: str) -> str | None:
        """What `args` of `spec` were probably meant to be, when the first word is a typo of a command or
        subcommand: "deploy history web" for `/chatops deplyo histroy web`, "history web" for `/deploy histroy
        web`. None when the first word is a known one, or nothing is close enough."""
        words = args.split()
        if not words:
            return None
        first, rest = words[0].lower(), words[1:]
        if spec.name != UMBRELLA:
            fixed = None if first in spec.subcommands else _closest(first, spec.subcommands)
            return " ".join([fixed, *rest]) if fixed else None
        names = [other.name for other in self.specs if other.name != UMBRELLA]
        if first in names or first in spec.subcommands or first in HELP_WORDS:
            return None
        fixed = _closest(first, [*names, *spec.subcommands])
        if fixed is None:
            return None
        target = self.get(fixed)
        if target is not None and target.name != UMBRELLA:
            return f"{fixed} {self.suggest(target, ' '.join(rest)) or ' '.join(rest)}".strip()
        return " ".join([fixed, *rest])

    def slash_commands(self) -> str:
        """The real slash commands as code spans ("`/deploy` `/rollback` …"): a mistyped one never reaches the
        bot (Slack itself answers it), so help says which exist."""
        return " ".join(f"`{spec.slash}`" for spec in self.specs)

    def route(self, command: str, text: str) -> Route:
        """Routes `/deploy x`, `/deploy help`, `/chatops deploy x`, `/chatops help deploy`, `/chatops`."""
        spec = self.get(command) or self.umbrella
        words = text.strip().split(maxsplit=1)
        first = words[0].lower() if words else ""
        rest = words[1] if len(words) > 1 else ""
        if spec.name == UMBRELLA:
            target = self.get(first) if first else None
            if target is not None and target.name != UMBRELLA:
                return self.route(target.slash, rest)
            if not first:
                return Route(spec, help=True, args="")
            if first in HELP_WORDS:
                named = self.get(rest.split()[0]) if rest.split() else None
                return Route(named or spec, help=True, args="" if named else rest)
            return Route(spec, help=False, args=text.strip())
        if first in HELP_WORDS:
            return Route(spec, help=True, args=rest)
        return Route(spec, help=False, args=text.strip())


def _closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice most like `word`, if one is alike enough to be what was meant."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=SUGGEST_CUTOFF)
    return found[0] if found else None


def describe(spec: CommandSpec) -> dict[str, Any]:
    """The manifest's view of a command."""
    described: dict[str, Any] = {"command": spec.slash, "description": spec.summary, "usage_hint": spec.usage_hint}
    if spec.escapes_mentions:
        described["should_escape"] = True  # Slack sends @alice as <@U…|alice>: exact IDs, no lookup
    return described


def describe_shortcut(shortcut: Shortcut) -> dict[str, str]:
    """The manifest's view of a shortcut."""
    return {
        "name": shortcut.name[:24],
        "type": shortcut.type,
        "callback_id": shortcut.callback_id,
        "description": shortcut.description[:150],
    }
