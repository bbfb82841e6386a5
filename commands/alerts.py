"""Firing alerts, acknowledgements, silences and alert statistics.

Anyone may acknowledge or resolve an alert unless `alerts.responders` is set; silencing hides alerts from
everyone, so it always needs the `responders` role (admins hold every role). Regex matchers (`=~`, `!~`) use
RE2: linear time, no backreferences or lookaround, at most 512 characters. A silence made from an alert's
message (Silence 1h…, or the Custom… form) shows on that message, with an Unsilence button, until it ends.

`/alerts test` (admins) sends a clearly marked test alert through the real pipeline: routing, grouping, paging
and escalation behave as for a real one, so you can check where alerts land. Resolve it when you are done.

Usage:
  /alerts [list] [service=… severity=…]
  /alerts ack <id>
  /alerts resolve <id>
  /alerts silence <matchers> <duration> --reason "…"
  /alerts silences
  /alerts unsilence <id>
  /alerts stats [7d]
  /alerts test [critical|warning]
Examples:
  /alerts list severity=critical
  /alerts silence service=web 2h --reason "maintenance"
  /alerts test warning
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

from bot.alerts.escalation import who_was_paged
from bot.alerts.model import AlertGroup
from bot.alerts.render import (
    ACK,
    RESOLVE,
    SILENCE,
    SILENCE_VIEW,
    UNACK,
    UNSILENCE,
    member_line,
    silence_modal,
)
from bot.alerts.routing import Matcher, parse_matcher, route, silence_matchers
from bot.platform.errors import UsageError, UserFacingError
from bot.text.blocks import context, external_text, header, section
from bot.text.humanize import duration as human_duration
from bot.text.humanize import plural
from commands.framework import ActionContext, Command, CommandContext, Reply, ViewContext
from commands.lexer import REASON, FlagSet
from integrations.alerts.model import Alert, Severity
from integrations.types import parse_duration

# Subcommands that only show something: answered without an idempotency record (commands/dispatch.py)
READ_ONLY_SUBCOMMANDS = frozenset({"", "list", "silences", "stats"})
_ID = re.compile(r"a-[a-z0-9]{1,32}")
MAX_SILENCE = timedelta(days=30)
FLAGS = FlagSet(REASON)
SUBCOMMANDS = ("list", "ack", "resolve", "silence", "silences", "unsilence", "stats", "test")


async def handle(ctx: CommandContext) -> Reply:
    """Routes `/alerts …`."""
    args, flags = parse_args(ctx.args)
    sub = args[0].lower() if args else "list"
    if sub in ("list", "ls") or "=" in sub:
        return await _list(ctx, args[1:] if sub in ("list", "ls") else args)
    if sub in ("ack", "resolve"):
        group_id = _one_id(args, sub)
        if not await _was_paged(ctx, group_id):
            await ctx.require("responders", action=f"{sub} alerts", everyone_if_unset=True)
        pipeline = ctx.deps.alerts
        if sub == "ack":
            group = await pipeline.acknowledge(group_id, ctx.user_id, via="command")
            return Reply(text=f":eyes: Acknowledged `{group.id}` ({external_text(group.title)}).")
        group = await pipeline.resolve(group_id, ctx.user_id, via="command")
        return Reply(text=f":white_check_mark: Resolved `{group.id}` ({external_text(group.title)}).")
    if sub == "silence":
        return await _silence(ctx, args[1:], flags.get("reason", ""))
    if sub == "silences":
        return await _silences(ctx)
    if sub == "unsilence":
        if len(args) != 2:
            raise UsageError(
                "`unsilence` takes one silence id, e.g. `/alerts unsilence s-1a2b3c4d`.", "/alerts unsilence <id>"
            )
        await ctx.require("responders", action="remove silences", everyone_if_unset=True)
        if not await ctx.deps.alerts.unsilence(args[1], ctx.user_id):
            raise UserFacingError(f"There is no silence `{external_text(args[1])}`. See `/alerts silences`.")
        return Reply(text=f":bell: Silence `{external_text(args[1])}` removed.")
    if sub == "stats":
        return await _stats(ctx, args[1:])
    if sub == "test":
        return await _test(ctx, args[1:])
    raise UsageError(f"`{external_text(sub)}` is not an /alerts command.")


def parse_args(text: str) -> tuple[list[str], dict[str, str]]:
    """The words and flags of `/alerts …` text: `--reason` belongs to `silence`, no other subcommand takes flags."""
    args, options = FLAGS.split(text)
    sub = args[0].lower() if args else "list"
    named = "list" if "=" in sub or sub == "ls" else sub if sub in SUBCOMMANDS else ""
    allowed = ("reason",) if sub == "silence" else ()
    return args, FLAGS.check(options, allowed=allowed, slash=f"/alerts {named}".strip())


def _one_id(args: list[str], sub: str) -> str:
    if len(args) != 2 or not _ID.fullmatch(args[1]):
        raise UsageError(f"`{sub}` takes one alert id like `a-1b2c3d4e` (see `/alerts list`).", f"/alerts {sub} <id>")
    return args[1]


def parse_filters(words: list[str]) -> list[Matcher]:
    """`service=web severity=critical` → matchers; UsageError for anything else."""
    try:
        return [parse_matcher(word) for word in words]
    except ValueError as error:  # the message quotes what was typed
        raise UsageError(external_text(str(error)), "/alerts [list] [label=value …]") from None


def matchers_text(matchers: list[Matcher] | list[str]) -> str:
    """Matchers as code spans, escaped: their values are whatever people typed or alerts carried."""
    return " ".join(f"`{external_text(str(m))}`" for m in matchers)


async def _list(ctx: CommandContext, words: list[str]) -> Reply:
    filters = parse_filters(words)
    groups = await ctx.deps.alerts.firing()
    lines = []
    for group in sorted(groups, key=lambda g: g.created_at, reverse=True):
        members = [m for m in group.firing if all(f.matches({**m.labels, "severity": m.severity}) for f in filters)]
        if not members:
            continue
        ack = f" — acked by <@{group.acked_by}>" if group.acked_by else ""
        lines.append(
            f"`{group.id}` {member_line(members[0])}{f' and {len(members) - 1} more' if len(members) > 1 else ''}{ack}"
        )
    if not lines:
        return Reply(text="No alerts are firing" + (" that match." if filters else "."))
    text = "\n".join(lines[:50])
    return Reply(
        text=text,
        blocks=[
            header(f"Firing alerts ({len(lines)})"),
            section(text),
            context("`/alerts ack <id>` · `/alerts resolve <id>`"),
        ],
    )


async def _silence(ctx: CommandContext, words: list[str], reason: str) -> Reply:
    usage = '/alerts silence <label=value …> <duration> --reason "…"'
    if len(words) < 2:
        raise UsageError(
            '`silence` needs matchers and a duration, e.g. `/alerts silence service=web 2h --reason "deploy"`.', usage
        )
    try:
        duration = silence_duration(words[-1])
    except ValueError as error:
        raise UsageError(external_text(str(error)), usage) from None
    if not reason:
        raise UsageError('Say why with `--reason "…"`.', usage)
    matchers = parse_filters(words[:-1])
    await _require_silencer(ctx)
    silence_id = await ctx.deps.alerts.silence(matchers, duration, ctx.user_id, reason)
    return Reply(
        text=f":no_bell: Silence `{silence_id}`: {matchers_text(matchers)} for {human_duration(duration)} — "
        f"{external_text(reason)}"
    )


def silence_duration(text: str) -> timedelta:
    """How long a silence lasts: 1m to 30d; ValueError saying what is wrong."""
    try:
        duration = parse_duration(text.strip())
    except ValueError as error:
        raise ValueError(f"`{text.strip()}` is not a duration: {error}") from None
    if not timedelta(minutes=1) <= duration <= MAX_SILENCE:
        raise ValueError("A silence lasts from 1m to 30d.")
    return duration


async def _require_silencer(ctx: ActionContext | CommandContext | ViewContext) -> None:
    """A silence hides alerts from everyone, so it needs the `responders` role (admins hold every role) even when
    no responders are configured; acknowledging and resolving stay open to everyone then."""
    await ctx.require("responders", action="silence alerts")


async def _silences(ctx: CommandContext) -> Reply:
    now = ctx.deps.clock()
    lines = []
    for silence_id, silence in sorted((await ctx.deps.alerts.silences()).items()):
        expires = datetime.fromisoformat(str(silence["expires_at"]))
        if expires <= now:
            continue
        matchers = matchers_text(silence_matchers(silence))
        lines.append(
            f"`{silence_id}` {matchers} by <@{silence['created_by']}>, {human_duration(expires - now)} left — "
            f"{external_text(str(silence.get('reason', '')))}"
        )
    return Reply(text="\n".join(lines) if lines else "No silences.")


async def _stats(ctx: CommandContext, words: list[str]) -> Reply:
    try:
        window = parse_duration(words[0]) if words else timedelta(days=7)
    except ValueError as error:
        raise UsageError(
            f"`{external_text(words[0])}` is not a duration: {external_text(str(error))}", "/alerts stats [7d]"
        ) from None
    if len(words) > 1 or not timedelta(days=1) <= window <= timedelta(days=90):
        raise UsageError("`stats` takes one window from 1d to 90d.", "/alerts stats [7d]")
    now = ctx.deps.clock()
    days = [now - timedelta(days=n) for n in range(window.days)]
    figures = await ctx.deps.alerts.figures(days, since=now - window)
    totals, acked = figures.totals, figures.acked
    mtta = human_duration(figures.mean_to_ack) if figures.mean_to_ack is not None else "n/a"
    resolved = totals.get("resolved", 0)
    noise = f"{totals.get('resolved_without_action', 0) / resolved:.0%}" if resolved else "n/a"
    text = (
        f"Last {window.days}d: {totals.get('received', 0)} received, {totals.get('posted', 0)} messages posted, "
        f"{totals.get('deduplicated', 0)} deduplicated, {totals.get('silenced', 0)} silenced, {resolved} resolved; "
        f"{plural(acked, 'acknowledgement')}, mean time to acknowledge {mtta};"
        f" resolved without any action: {noise}."
    )
    return Reply(text=text)


TEST_SOURCE = "chatops-test"
TEST_SEVERITIES: tuple[Severity, ...] = ("critical", "warning")


def make_test_alert(user_id: str, severity: Severity, now: datetime) -> Alert:
    """The alert `/alerts test` sends: marked as a test in its title, labels and summary, and unique per call
    (its own fingerprint), so two tests never merge into one group."""
    stamp = now.strftime("%Y%m%dT%H%M%S%f")
    return Alert(
        source=TEST_SOURCE,
        fingerprint=f"test-{user_id}-{stamp}"[:128],
        status="firing",
        title=f"TEST alert ({severity}): sent with /alerts test, nothing is wrong",
        severity=severity,
        labels={"alertname": "ChatopsTestAlert", "test": "true", "sent_by": user_id},
        annotations={},
        summary=f"A test alert sent by <@{user_id}> with `/alerts test {severity}`. It is routed, paged and "
        "escalated like a real one; resolve it when you have seen where it went.",
        starts_at=now,
        ends_at=None,
        links={},
    )


async def _test(ctx: CommandContext, words: list[str]) -> Reply:
    usage = "/alerts test [critical|warning]"
    severity = words[0].lower() if words else "warning"
    if len(words) > 1 or severity not in TEST_SEVERITIES:
        raise UsageError(f"`test` takes one severity: {' or '.join(f'`{s}`' for s in TEST_SEVERITIES)}.", usage)
    await ctx.require("admins", action="send test alerts")
    alert = make_test_alert(ctx.user_id, severity, ctx.deps.clock())
    await ctx.deps.alerts.ingest([alert])
    await ctx.audit(action="alert.test", result="ok", target=severity)
    destinations = route(ctx.deps.alerts.config, {**alert.labels, "severity": severity})
    where = ", ".join([await ctx.deps.channels.link(d.channel) for d in destinations])
    pages = sorted({d.escalation for d in destinations if d.escalation})
    paging = f" and pages through the `{'`, `'.join(pages)}` escalation policy" if pages else ""
    return Reply(
        text=f":white_check_mark: Sent a {severity} test alert. It goes to {where}{paging}, "
        f"like a real {severity} alert would. Resolve it with its Resolve button (or `/alerts resolve <id>`) "
        "when done."
    )


async def _button(ctx: ActionContext) -> AlertGroup | None:
    pipeline = ctx.deps.alerts
    if ctx.action_id == SILENCE:
        await _require_silencer(ctx)
    elif ctx.action_id == UNSILENCE:
        await ctx.require("responders", action="remove silences", everyone_if_unset=True)
    elif not (ctx.action_id in (ACK, RESOLVE) and await _was_paged(ctx, ctx.value)):
        await ctx.require("responders", action="act on alerts", everyone_if_unset=True)
    via = "dm" if ctx.channel_id.startswith("D") else "button"
    if ctx.action_id == ACK:
        return await pipeline.acknowledge(ctx.value, ctx.user_id, via=via)
    if ctx.action_id == UNACK:
        return await pipeline.unacknowledge(ctx.value, ctx.user_id)
    if ctx.action_id == RESOLVE:
        return await pipeline.resolve(ctx.value, ctx.user_id, via=via)
    if ctx.action_id == UNSILENCE:
        group = await pipeline.get(ctx.value)
        if group is None or group.silence_id is None or not await pipeline.unsilence(group.silence_id, ctx.user_id):
            raise UserFacingError(f"`{external_text(ctx.value)}` is not silenced any more.")
        return None
    group_id, _, duration = ctx.value.partition(":")
    if duration == "custom":
        group = await pipeline.get(group_id)
        if group is None:
            raise UserFacingError(f"There is no alert `{external_text(group_id)}`.")
        matchers = " ".join(str(m) for m in await pipeline.group_matchers(group_id))
        view = silence_modal(group, matchers, channel=ctx.channel_id)
        await ctx.deps.replies.open_view(ctx.trigger_id, view)
        return None
    await pipeline.silence_group(group_id, parse_duration(duration), ctx.user_id)
    return None


async def _on_silence_form(ctx: ViewContext) -> dict[str, str] | None:
    """The Custom… form: every field checked (errors show under it, the form stays open), then the silence."""
    await _require_silencer(ctx)
    errors: dict[str, str] = {}
    words = ctx.value("matchers", "matchers").split()
    matchers: list[Matcher] = []
    try:
        matchers = [parse_matcher(word) for word in words]
    except ValueError as error:  # modal errors are plain text: no escaping
        errors["matchers"] = str(error)
    if not words:
        errors["matchers"] = "Give at least one matcher, e.g. service=web."
    try:
        duration = silence_duration(ctx.value("duration", "duration") or "")
    except ValueError as error:
        errors["duration"] = str(error)
    reason = " ".join(ctx.value("reason", "reason").split())
    if not reason:
        errors["reason"] = "Say why: whoever misses these alerts will read it."
    if errors:
        return errors
    try:
        metadata = json.loads(ctx.private_metadata or "{}")
    except ValueError:
        metadata = {}
    group_id = str(metadata.get("group") or "") if isinstance(metadata, dict) else ""
    try:
        silence_id = await ctx.deps.alerts.silence_group(
            group_id, duration, ctx.user_id, matchers=matchers, reason=reason
        )
    except UserFacingError as error:
        return {"matchers": error.message}
    done = Reply(
        text=f":no_bell: Silence `{silence_id}`: {matchers_text(matchers)} for {human_duration(duration)}"
        f" — {external_text(reason)}"
    )
    ctx.spawn(ctx.respond(done), name="alerts:silenced")
    return None


async def _was_paged(ctx: ActionContext | CommandContext, group_id: str) -> bool:
    """Whether this alert paged the user: whoever is paged may acknowledge or resolve it, role or not."""
    group = await ctx.deps.alerts.get(group_id)
    return group is not None and ctx.user_id in who_was_paged(group)


async def _on_button(ctx: ActionContext) -> None:
    await _button(ctx)


COMMAND = Command(
    name="alerts",
    doc=__doc__,
    handler=handle,
    usage_hint="[list | ack | resolve | silence | silences | stats | test]",
    actions={ACK: _on_button, UNACK: _on_button, RESOLVE: _on_button, SILENCE: _on_button, UNSILENCE: _on_button},
    views={SILENCE_VIEW: _on_silence_form},
    read_only_subcommands=READ_ONLY_SUBCOMMANDS,
)
