"""Help text rendered from the command catalog: the overview of every command and the page for one command."""

from __future__ import annotations

import functools

from bot.blocks import (
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
        blocks.append(section(f"*{spec.slash}*{hint}\n{escape(spec.summary)}{soon}", accessory=button("Usage", SHOW_ACTION, spec.name)))
        lines.append(escape(f"{spec.slash} {spec.usage_hint}".rstrip() + f": {spec.summary}"))
    blocks.append(
        actions(static_select("Jump to a command…", PICK_ACTION, [(spec.slash, spec.name) for spec in catalog.specs]))
    )
    blocks.append(
        context(f"The slash commands are {catalog.slash_commands()}: Slack itself answers a mistyped one. "
                f"Another app owns `/deploy`? Every command also works as `/{UMBRELLA} deploy …`. "
                "`/<command> help` shows its usage.")
    )
    return Reply(text="chatops commands:\n" + "\n".join(lines), blocks=blocks)


@functools.cache
def command_help(spec: CommandSpec) -> Reply:
    """The usage, description and examples of one command."""
    usage = escape("\n".join(spec.usage))
    blocks = [header(spec.slash), section(escape(spec.summary) + ("" if spec.available else "\n_Not available yet in this version of chatops._"))]
    if spec.description:
        blocks.append(section(escape(spec.description)))
    blocks.append(section(f"*Usage*\n```{usage}```"))
    if spec.examples:
        blocks.append(section("*Examples*\n" + "\n".join(f"`{escape(example)}`" for example in spec.examples)))
    blocks.append(actions(button("All commands", OVERVIEW_ACTION, "overview")))
    text = f"{spec.slash}: {escape(spec.summary)}\nUsage:\n{usage}"
    if spec.examples:
        text += "\nExamples:\n" + escape("\n".join(spec.examples))
    return Reply(text=text, blocks=blocks)


def not_available(spec: CommandSpec) -> Reply:
    """The answer of a command announced but not built yet."""
    return Reply(
        text=f"`{spec.slash}` is not available yet in this version of chatops. "
        f"It will: {spec.summary[0].lower()}{spec.summary[1:]} See `{spec.slash} help` for what is planned."
    )
