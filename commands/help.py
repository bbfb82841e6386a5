"""Help text rendered from the command catalog: the overview of every command and the page for one command."""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

from bot.text.blocks import (
    actions,
    button,
    context,
    divider,
    escape,
    header,
    section,
    static_select,
)
from commands.catalog import UMBRELLA, Catalog, CommandSpec
from commands.framework import Reply

if TYPE_CHECKING:
    from bot.shell.config import ChatopsConfig

Names = tuple[tuple[str, str | None], ...]
"""(name in the docstring examples, the loaded configuration's name for it, or None: it has none)."""

SHOW_ACTION = "chatops.help.show"
PICK_ACTION = "chatops.help.pick"
OVERVIEW_ACTION = "chatops.help.overview"
NAVIGATION_ACTIONS = frozenset({SHOW_ACTION, PICK_ACTION, OVERVIEW_ACTION})


@functools.cache
def overview(catalog: Catalog) -> Reply:
    """Every command with its one-line summary and a button to its usage (built once per catalog)."""
    blocks = [
        header("chatops: what you can ask"),
        section("Deploys, alerts, on-call, incidents and backups, from Slack. Pick a command to see its usage."),
        divider(),
    ]
    lines = []
    for spec in catalog.specs:
        soon = "" if spec.available else "  _(coming soon)_"
        hint = f" `{escape(spec.usage_hint)}`" if spec.usage_hint else ""
        blocks.append(
            section(
                f"*{spec.slash}*{hint}\n{escape(spec.summary)}{soon}", accessory=button("Usage", SHOW_ACTION, spec.name)
            )
        )
        lines.append(escape(f"{spec.slash} {spec.usage_hint}".rstrip() + f": {spec.summary}"))
    blocks.append(
        actions(static_select("Jump to a command…", PICK_ACTION, [(spec.slash, spec.name) for spec in catalog.specs]))
    )
    blocks.append(
        context(
            f"The slash commands are {catalog.slash_commands()}: Slack itself answers a mistyped one. "
            f"Another app owns `/deploy`? Every command also works as `/{UMBRELLA} deploy …`. "
            "`/<command> help` shows its usage."
        )
    )
    return Reply(text="chatops commands:\n" + "\n".join(lines), blocks=blocks)


def config_names(config: ChatopsConfig) -> Names:
    """What the docstring examples' names (`web`, `appdb`, `primary`, …) are called in this configuration, so help
    shows commands that work as typed here; None where the configuration has nothing of that kind."""
    from bot.backups.config import RdsTarget

    service_name = next(iter(config.services), None)
    envs = list(config.services[service_name].environments) if service_name else []
    targets = config.backups.targets
    dumps = [name for name, t in targets.items() if not isinstance(t, RdsTarget)]
    snapshots = [name for name, t in targets.items() if isinstance(t, RdsTarget)]
    into = next((v for name in dumps[:1] for v in targets[name].restore_into), None)
    rotations = list(config.oncall.rotations)
    severities = list(config.incidents.severities)

    def env(name: str, fallback: int) -> str | None:
        return name if name in envs else (envs[fallback] if envs else None)

    return (
        ("web", service_name),
        ("staging", env("staging", 0)),
        ("production", env("production", -1)),
        ("appdb", dumps[0] if dumps else None),
        ("rds-prod", snapshots[0] if snapshots else None),
        ("STAGING_DB_URL", into),
        ("primary", rotations[0] if rotations else None),
        ("secondary", rotations[1] if len(rotations) > 1 else None),
        ("sev2", "sev2" if "sev2" in severities else severities[0]),
    )


def localise(example: str, names: Names) -> str | None:
    """One example with the configuration's names, or None when it names something this configuration lacks."""
    for old, new in names:
        pattern = rf"(?<![\w-]){re.escape(old)}\b"
        if re.search(pattern, example):
            if new is None:
                return None
            example = re.sub(pattern, new, example)
    return example


@functools.cache
def command_help(spec: CommandSpec, names: Names = ()) -> Reply:
    """The usage, description and examples of one command; examples use `names` (config_names) when given."""
    usage = escape("\n".join(spec.usage))
    examples = [e for e in (localise(example, names) for example in spec.examples) if e is not None]
    blocks = [
        header(spec.slash),
        section(escape(spec.summary) + ("" if spec.available else "\n_Not available yet in this version of chatops._")),
    ]
    if spec.description:
        blocks.append(section(escape(spec.description)))
    blocks.append(section(f"*Usage*\n```{usage}```"))
    if examples:
        blocks.append(section("*Examples*\n" + "\n".join(f"`{escape(example)}`" for example in examples)))
    blocks.append(actions(button("All commands", OVERVIEW_ACTION, "overview")))
    text = f"{spec.slash}: {escape(spec.summary)}\nUsage:\n{usage}"
    if examples:
        text += "\nExamples:\n" + escape("\n".join(examples))
    return Reply(text=text, blocks=blocks)


def not_available(spec: CommandSpec) -> Reply:
    """The answer of a command announced but not built yet."""
    return Reply(
        text=f"`{spec.slash}` is not available yet in this version of chatops. "
        f"It will: {spec.summary[0].lower()}{spec.summary[1:]} See `{spec.slash} help` for what is planned."
    )
