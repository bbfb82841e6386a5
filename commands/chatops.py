"""The umbrella command: every other command through one name, plus help, the audit log and your roles.

Usage:
  /chatops help [<command>]
  /chatops <command> <arguments…>
  /chatops audit [N]
  /chatops whoami
Examples:
  /chatops help deploy
  /chatops deploy web v1.4.2 to staging
  /chatops audit 20
"""

from __future__ import annotations

import re

from bot.platform.errors import UsageError
from bot.text.blocks import context, escape, header, section, user_text
from commands import help as help_pages
from commands.framework import ActionContext, Command, CommandContext, Reply
from commands.lexer import NO_FLAGS

# Subcommands that only show something: answered without an idempotency record (commands/dispatch.py);
# `audit` keeps its record: a refused read is itself audited.
READ_ONLY_SUBCOMMANDS = frozenset({"whoami"})
AUDIT_DEFAULT = 20
AUDIT_MAX = 100
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
# A Slack user ID standing alone in a detail ("scribe: U0BOB"): uppercase, with a digit, not already in a mention.
_BARE_USER_ID = re.compile(r"(?<![@#\w])[UW](?=[A-Z]*\d)[A-Z0-9]{4,}\b")
_RESULT_ICONS = {
    "ok": ":white_check_mark:",
    "denied": ":no_entry:",
    "refused": ":no_entry_sign:",
    "failed": ":x:",
    "error": ":warning:",
}


async def handle(ctx: CommandContext) -> Reply:
    """Runs `/chatops audit` and `/chatops whoami`; help and other commands are routed before this."""
    words = ctx.args.split()  # an unknown subcommand is answered as typed (with a suggestion), not lexed
    sub = words[0].lower() if words else ""
    if sub in ("audit", "whoami"):
        words = list(NO_FLAGS.parse(ctx.args, slash=f"/chatops {sub}", usage=ctx.spec.usage_text).positional)
    if sub == "audit":
        return await _audit(ctx, words[1:])
    if sub == "whoami":
        return await _whoami(ctx, words[1:])
    raise UsageError(f"`{escape(sub)}` is not a chatops command.", ctx.spec.usage_text)


def parse_audit_count(words: list[str]) -> int:
    """The N of `/chatops audit [N]`: 1 to 100, default 20."""
    if not words:
        return AUDIT_DEFAULT
    if len(words) > 1 or not (words[0].isascii() and words[0].isdigit()) or not 1 <= int(words[0]) <= AUDIT_MAX:
        raise UsageError(f"`audit` takes one number from 1 to {AUDIT_MAX}.", "/chatops audit [N]")
    return int(words[0])


async def _audit(ctx: CommandContext, words: list[str]) -> Reply:
    count = parse_audit_count(words)
    await ctx.require("admins", action="read the audit log")
    records = await ctx.deps.audit.recent(count)
    if not records:
        return Reply(text="The audit log is empty.")
    channels = {r.channel: await ctx.deps.channels.link(r.channel) for r in records if r.channel}
    lines = [
        f"{_RESULT_ICONS.get(r.result, '')} `{r.at:%Y-%m-%d %H:%M:%S}Z` {_actor(r.actor)} *{escape(r.action)}*"
        + (f" {escape(r.target)}" if r.target else "")
        + (f" in {channels[r.channel]}" if r.channel else "")
        + f" — {r.result}"
        + (f" ({_detail(r.detail)})" if r.detail else "")
        for r in records
    ]
    text = "\n".join(lines)
    return Reply(
        text=f"Last {len(records)} audit records:\n{text}",
        blocks=[header(f"Audit log: last {len(records)}"), section(text), context("Newest first. Times are UTC.")],
    )


def _actor(actor: str) -> str:
    """A person as a mention; chatops itself (scheduled work) by name."""
    return f"<@{actor}>" if _USER_ID.fullmatch(actor) else escape(actor)


def _detail(detail: str) -> str:
    """An audit detail: what people typed keeps its mentions (never a broadcast); a bare user ID, as older records
    and role changes store them, becomes a mention too."""
    return _BARE_USER_ID.sub(lambda m: f"<@{m.group(0)}>", user_text(detail))


async def _whoami(ctx: CommandContext, words: list[str]) -> Reply:
    if words:
        raise UsageError("`whoami` takes no arguments.", "/chatops whoami")
    await ctx.require(None, action="see your roles")
    roles = [role for role in ctx.deps.config.roles if await ctx.deps.permissions.holds(ctx.user_id, role)]
    held = ", ".join(f"`{role}`" for role in roles) if roles else "no roles (you can use read-only commands)"
    return Reply(text=f"You are <@{ctx.user_id}>; roles: {held}.")


async def _show_help(ctx: ActionContext) -> None:
    await ctx.require(None, action="read help")
    spec = ctx.catalog.get(ctx.value)
    if spec is None:
        raise UsageError(f"There is no command `{escape(ctx.value)}`.")
    await ctx.respond(help_pages.command_help(spec, help_pages.config_names(ctx.deps.config)), replace_original=True)


async def _show_overview(ctx: ActionContext) -> None:
    await ctx.require(None, action="read help")
    await ctx.respond(help_pages.overview(ctx.catalog), replace_original=True)


COMMAND = Command(
    name="chatops",
    doc=__doc__,
    handler=handle,
    usage_hint="help | <command> … | audit [N] | whoami",
    actions={
        help_pages.SHOW_ACTION: _show_help,
        help_pages.PICK_ACTION: _show_help,
        help_pages.OVERVIEW_ACTION: _show_overview,
    },
    read_only_actions=frozenset(help_pages.NAVIGATION_ACTIONS),
    read_only_subcommands=READ_ONLY_SUBCOMMANDS,
)
