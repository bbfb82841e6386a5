"""Who is on call, the upcoming schedule, overrides and acknowledgement figures.

Shows who is on call now for every rotation, with overrides applied, and who comes next. Times are shown in
your own time zone (from your Slack profile).

Usage:
  /oncall
  /oncall schedule <rotation> [2w]
  /oncall override <rotation> @user (for 4h | until <time>) [from <time>] [--reason "…"]
  /oncall overrides
  /oncall override cancel <id>
  /oncall acks [@user] [7d]
Examples:
  /oncall
  /oncall schedule primary 4w
  /oncall override primary @alice for 4h --reason "swap with Bob"
  /oncall override secondary @bob until tomorrow 09:00
  /oncall acks @alice 30d
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.oncall import stats
from bot.oncall.overrides import OverrideRecord
from bot.oncall.when import EXAMPLES, format_local, parse_when
from bot.platform.errors import UsageError, UserFacingError
from bot.text.blocks import Block, context, escape, header, section
from bot.text.humanize import duration as human_duration
from commands.framework import Command, CommandContext, Reply
from commands.lexer import REASON, FlagSet
from integrations.types import parse_duration

FLAGS = FlagSet(REASON)
SUBCOMMANDS = ("now", "who", "schedule", "override", "overrides", "acks")
# Subcommands that only show something: answered without an idempotency record (commands/dispatch.py); a bare
# `/oncall` keeps its record: with no rotations it reads nothing, and under a hung Redis it must still say so.
READ_ONLY_SUBCOMMANDS = frozenset({"schedule", "overrides", "acks"})
OVERRIDE_USAGE = '/oncall override <rotation> @user (for 4h | until <time>) [from <time>] [--reason "…"]'


async def handle(ctx: CommandContext) -> Reply:
    """Routes `/oncall …`."""
    args, flags = parse_args(ctx.args)
    sub = args[0].lower() if args else "now"
    if sub in ("now", "who"):
        if len(args) > 1:
            raise UsageError(
                "`/oncall` takes no arguments; for one rotation's shifts use `/oncall schedule <rotation>`."
            )
        return await _now(ctx)
    if sub == "schedule":
        return await _schedule(ctx, args[1:])
    if sub == "override":
        if len(args) >= 2 and args[1].lower() == "cancel":
            return await _cancel(ctx, args[2:])
        return await _override(ctx, args[1:], flags.get("reason", ""))
    if sub == "overrides":
        return await _overrides(ctx)
    if sub == "acks":
        return await _acks(ctx, args[1:])
    raise UsageError(f"`{escape(sub)}` is not an /oncall command.")


def parse_args(text: str) -> tuple[list[str], dict[str, str]]:
    """The words and flags of `/oncall …` text: `--reason` belongs to `override`, nothing else takes flags."""
    args, options = FLAGS.split(text)
    sub = args[0].lower() if args else ""
    named = sub if sub in SUBCOMMANDS else ""
    allowed = ("reason",) if sub == "override" else ()
    return args, FLAGS.check(options, allowed=allowed, slash=f"/oncall {named}".strip())


def _no_rotations() -> UserFacingError:
    return UserFacingError("No rotations are configured: add `oncall.rotations` to chatops.yaml (see `/oncall help`).")


async def _now(ctx: CommandContext) -> Reply:
    if not ctx.deps.config.oncall.rotations:
        raise _no_rotations()
    zone = await ctx.deps.people.timezone(ctx.user_id)
    lines = []
    for now in await ctx.deps.oncall.now_all():
        via = (
            f" (override `{now.override.id}`{f': {escape(now.override.reason)}' if now.override.reason else ''})"
            if now.override
            else ""
        )
        following = f" · next <@{now.next_member}>" if now.next_member else ""
        lines.append(f"*{escape(now.rotation)}*: <@{now.member}>{via} until {format_local(now.until, zone)}{following}")
    text = "\n".join(lines)
    blocks: list[Block] = [
        header("On call now"),
        section(text),
        context(f"Times in {zone.key} · `/oncall schedule <rotation>` for upcoming shifts"),
    ]
    return Reply(text=text, blocks=blocks)


async def _schedule(ctx: CommandContext, args: list[str]) -> Reply:
    usage = "/oncall schedule <rotation> [2w]"
    if not args:
        known = ", ".join(f"`{name}`" for name in ctx.deps.oncall.config.specs) or "none are configured"
        raise UsageError(f"`schedule` needs a rotation. Rotations: {known}.", usage)
    if len(args) > 2:
        raise UsageError(
            "`schedule` takes a rotation and an optional window, e.g. `/oncall schedule primary 2w`.", usage
        )
    spec = ctx.deps.oncall.spec(args[0])
    window = _window(args[1] if len(args) > 1 else "2w", usage, low=timedelta(days=1), high=timedelta(weeks=12))
    zone = await ctx.deps.people.timezone(ctx.user_id)
    now = ctx.deps.clock()
    shifts = await ctx.deps.oncall.schedule(spec.name, now, now + window)
    lines = []
    for shift, overridden in shifts[:40]:
        mark = " _(override)_" if overridden else ""
        lines.append(f"{format_local(shift.starts, zone)} → {format_local(shift.ends, zone)}  <@{shift.member}>{mark}")
    if len(shifts) > 40:
        lines.append(f"… and {len(shifts) - 40} more")
    text = "\n".join(lines) or "No shifts in that window."
    title = f"{spec.name}: the next {human_duration(window)}"
    return Reply(
        text=text,
        blocks=[
            header(title),
            section(text),
            context(f"Times in {zone.key} · hand-off {spec.handoff_time:%H:%M} {spec.timezone}"),
        ],
    )


def _window(word: str, usage: str, *, low: timedelta, high: timedelta) -> timedelta:
    try:
        window = parse_duration(word)
    except ValueError as error:
        raise UsageError(f"`{escape(word)}` is not a duration: {escape(str(error))}", usage) from None
    if not low <= window <= high:
        raise UsageError(f"The window is from {human_duration(low)} to {human_duration(high)}.", usage)
    return window


async def _override(ctx: CommandContext, args: list[str], reason: str) -> Reply:
    if len(args) < 4:
        raise UsageError(
            "`override` needs a rotation, a person and how long, e.g. `/oncall override primary @alice for 4h`.",
            OVERRIDE_USAGE,
        )
    spec = ctx.deps.oncall.spec(args[0])
    member = await ctx.deps.people.resolve(args[1])
    zone = await ctx.deps.people.timezone(ctx.user_id)
    now = ctx.deps.clock()
    starts, ends = _span(args[2:], now, zone)
    await ctx.require("responders", action="override on-call rotations", everyone_if_unset=True)
    record = await ctx.deps.oncall.add_override(spec.name, member, starts, ends, reason=reason, by=ctx.user_id)
    when = "from now" if record.starts <= now else f"from {format_local(record.starts, zone)}"
    return Reply(
        text=f":repeat: <@{member}> covers *{escape(spec.name)}* {when} until {format_local(record.ends, zone)}"
        f" (override `{record.id}`; cancel with `/oncall override cancel {record.id}`)."
    )


def _span(words: list[str], now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """`for 4h`, `until friday 18:00`, either followed by `from <time>`: (starts, ends)."""
    lowered = [word.lower() for word in words]
    starts = now
    if "from" in lowered:
        at = lowered.index("from")
        starts = _when(" ".join(words[at + 1 :]), now, zone)
        words, lowered = words[:at], lowered[:at]
    if len(words) < 2 or lowered[0] not in ("for", "until"):
        raise UsageError("Say how long: `for 4h` or `until <time>`.", OVERRIDE_USAGE)
    if lowered[0] == "for":
        if len(words) != 2:
            raise UsageError("`for` takes one duration, e.g. `for 4h` or `for 2d`.", OVERRIDE_USAGE)
        try:
            length = parse_duration(words[1])
        except ValueError as error:
            raise UsageError(f"`{escape(words[1])}` is not a duration: {escape(str(error))}", OVERRIDE_USAGE) from None
        if length < timedelta(minutes=5):
            raise UsageError("An override lasts at least 5m.", OVERRIDE_USAGE)
        return starts, starts + length
    return starts, _when(" ".join(words[1:]), now, zone)


def _when(text: str, now: datetime, zone: ZoneInfo) -> datetime:
    try:
        return parse_when(text, now, zone)
    except ValueError as error:
        raise UsageError(f"{error} (times are read in {zone.key}; e.g. {EXAMPLES})", OVERRIDE_USAGE) from None


async def _cancel(ctx: CommandContext, args: list[str]) -> Reply:
    if len(args) != 1:
        raise UsageError(
            "`override cancel` takes one override id, e.g. `/oncall override cancel o-2b3c4d`.",
            "/oncall override cancel <id>",
        )
    is_admin = await ctx.deps.permissions.holds(ctx.user_id, "admins")
    record = await ctx.deps.oncall.cancel_override(args[0], ctx.user_id, may_cancel_any=is_admin)
    return Reply(
        text=f":leftwards_arrow_with_hook: Cancelled override `{record.id}` (<@{record.member}> on "
        f"*{escape(record.rotation)}*)."
    )


async def _overrides(ctx: CommandContext) -> Reply:
    now = ctx.deps.clock()
    zone = await ctx.deps.people.timezone(ctx.user_id)
    current = [r for r in await ctx.deps.oncall.active_overrides() if r.ends > now]
    if not current:
        return Reply(text="No overrides now or coming up. Add one with `/oncall override <rotation> @user for 4h`.")
    return Reply(text="\n".join(_override_line(record, now, zone) for record in current[:50]))


def _override_line(record: OverrideRecord, now: datetime, zone: ZoneInfo) -> str:
    state = "now" if record.starts <= now else f"from {format_local(record.starts, zone)}"
    why = f" — {escape(record.reason)}" if record.reason else ""
    return (
        f"`{record.id}` *{escape(record.rotation)}*: <@{record.member}> {state} until {format_local(record.ends, zone)}"
        f" (by <@{record.created_by}>){why}"
    )


async def _acks(ctx: CommandContext, args: list[str]) -> Reply:
    usage = "/oncall acks [@user] [7d]"
    if len(args) > 2:
        raise UsageError(
            "`acks` takes an optional person and an optional window, e.g. `/oncall acks @alice 30d`.", usage
        )
    user = None
    window = timedelta(days=7)
    for word in args:
        if word[:1].isdigit():
            window = _window(word, usage, low=timedelta(days=1), high=timedelta(days=365))
        else:
            user = await ctx.deps.people.resolve(word)
    since = ctx.deps.clock() - window
    records = stats.within(await ctx.deps.alerts.acks(), since, user)
    scope = f" by <@{user}>" if user else ""
    if not records:
        return Reply(text=f"No acknowledgements{scope} in the last {human_duration(window)}.")
    lines = [
        f"*{len(records)} acknowledgement{'' if len(records) == 1 else 's'}{scope} in the last "
        f"{human_duration(window)}*"
    ]
    lines.append("*Per person* (count · mean · p90 time to acknowledge)")
    lines += [
        f"<@{f.who}>: {f.count} · {human_duration(f.mean)} · {human_duration(f.p90)}"
        for f in stats.figures_by(records, "user")
    ]
    by_rotation = stats.figures_by(records, "rotation")
    if by_rotation:
        lines.append("*Per rotation*")
        lines += [
            f"`{escape(f.who)}`: {f.count} · {human_duration(f.mean)} · {human_duration(f.p90)}" for f in by_rotation
        ]
    recent = records[:10]
    lines.append("*Latest*")
    for ack in recent:
        step = f", step {ack['step']}" if ack.get("step", "0") not in ("", "0") else ""
        lines.append(
            f"`{ack.get('group', '?')}` {escape(ack.get('title', ''))} — <@{ack.get('user')}> after "
            f"{human_duration(timedelta(seconds=float(ack.get('seconds_to_ack', 0))))}{step} via "
            f"{escape(ack.get('via', ''))}"
        )
    text = "\n".join(lines)
    return Reply(text=text, blocks=[section(text)])


COMMAND = Command(
    name="oncall",
    doc=__doc__,
    handler=handle,
    usage_hint="[schedule | override | overrides | acks]",
    escapes_mentions=True,
    read_only_subcommands=READ_ONLY_SUBCOMMANDS,
)
