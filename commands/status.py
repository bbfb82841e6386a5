"""The status of everything: health, versions, deploys in progress, incidents, firing alerts, who is on call.

Every service environment with a `health:` check and every `status.probes` entry is probed now, concurrently,
within about 3 seconds whatever hangs. Posted in the channel, with a Refresh button. The app's Home tab shows the
same overview.

Usage:
  /status
  /status <service> [<env>]
  /status slo [<service>]
Examples:
  /status
  /status web production
  /status slo web
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.alerts.model import AlertGroup
from bot.deploys.model import DeployRecord, Holds
from bot.deploys.render import state_label
from bot.platform.errors import UsageError
from bot.shell.deps import Deps
from bot.status.page import status_lines
from bot.status.render import REFRESH, Overview, deploy_line, overview_message
from bot.status.service import Target
from bot.status.slo import (
    MIN_COVERAGE,
    availability_text,
    budget_text,
    burn_text,
    percent,
    sparkline,
)
from bot.status.store import Bucket
from bot.text.blocks import Block, context, escape, header, section
from bot.text.humanize import duration
from bot.text.humanize import duration as human_duration
from commands.framework import ActionContext, Command, CommandContext, Reply
from commands.lexer import NO_FLAGS

log = logging.getLogger(__name__)

# Subcommands that only show something: answered without an idempotency record (commands/dispatch.py);
# every /status form only reads.
READ_ONLY_SUBCOMMANDS = frozenset({"*"})


async def handle(ctx: CommandContext) -> Reply:
    """Routes `/status …`."""
    args = NO_FLAGS.parse(ctx.args, slash="/status").positional
    if not args:
        return await overview(ctx)
    if args[0].lower() == "slo":
        if len(args) > 2:
            raise UsageError("`slo` takes at most one service, e.g. `/status slo web`.", "/status slo [<service>]")
        return await _slo(ctx, args[1] if len(args) > 1 else None)
    if len(args) > 2:
        raise UsageError(
            "Give a service and optionally an environment, e.g. `/status web production`.", "/status <service> [<env>]"
        )
    return await _details(ctx, args[0], args[1] if len(args) > 1 else None)


async def overview(ctx: CommandContext | ActionContext) -> Reply:
    """The one-message overview (also what Refresh shows)."""
    text, blocks = await _overview(ctx.deps)
    return Reply(text=text, blocks=blocks, in_channel=True)


async def _overview(deps: Deps) -> tuple[str, list[Block]]:
    loop_start = deps.clock()
    checked = await deps.status.check()
    now = deps.clock()
    pairs = [
        (service, environment) for service, svc in deps.config.services.items() for environment in svc.environments
    ]
    # Every read below is independent of the others: one concurrent round (each store batches its own reads), not
    # one round trip per environment and target one after another.
    (holds, active, deployed), groups, on_call, incidents, public, backups = await asyncio.gather(
        _deploys(deps, pairs, now), _firing(deps), _on_call(deps), _incidents(deps), _public(deps), _backups(deps, now)
    )
    running: dict[str, str] = {}
    activity: dict[str, str] = {}
    probed = {(item.target.service, item.target.environment) for item in checked}
    unprobed = []
    for service, environment in pairs:
        version, record = deployed[(service, environment)]
        line = deploy_line(
            version, record.requested_by if record else None, record.finished_at if record else None, now
        )
        busy = [
            f":rocket: {state_label(r.state)} `{escape(r.version)}`"
            for r in active
            if r.service == service and r.environment == environment
        ]
        hold = holds.get(f"{environment}:{service}") or holds.get(f"{environment}:*")
        if hold is not None:
            busy.append(f":lock: locked by <@{hold.holder}>: {escape(hold.reason)}")
        if (service, environment) in probed:
            running[f"{service}/{environment}"] = line
            activity[f"{service}/{environment}"] = " · ".join(busy)
        else:
            unprobed.append(
                f":white_circle: *{escape(service)}/{escape(environment)}* — no health check · {line}"
                f"{' · ' + ' · '.join(busy) if busy else ''}"
            )
    by_severity: dict[str, int] = {}
    for group in groups:
        by_severity[group.severity] = by_severity.get(group.severity, 0) + 1
    text, blocks = overview_message(
        Overview(
            checked=checked,
            running=running,
            activity=activity,
            unprobed=unprobed,
            incidents=incidents,
            alerts_by_severity=by_severity,
            on_call=on_call,
            checked_at=now,
            took_seconds=(now - loop_start).total_seconds(),
            public=public,
        )
    )
    if backups:  # each target's last good backup against its RPO and last drill against its RTO
        at = len(blocks) - 1 if blocks and blocks[-1].get("type") == "actions" else len(blocks)  # above Refresh
        blocks.insert(at, section("*Backups and DR*\n" + "\n".join(backups)))
        text += "\nBackups and DR:\n" + "\n".join(backups)
    return text, blocks


async def _deploys(
    deps: Deps, pairs: list[tuple[str, str]], now: datetime
) -> tuple[Holds, list[DeployRecord], dict[tuple[str, str], tuple[str | None, DeployRecord | None]]]:
    return await asyncio.gather(deps.deploys.holds(now), deps.deploys.active(), deps.status.running_all(pairs))


async def _firing(deps: Deps) -> list[AlertGroup]:
    return await deps.alerts.firing()


async def _on_call(deps: Deps) -> list[str]:
    if not deps.config.oncall.rotations:
        return []
    return [f"{escape(n.rotation)} <@{n.member}>" for n in await deps.oncall.now_all()]


async def _incidents(deps: Deps) -> list[str]:
    return list(await deps.open_incidents()) if deps.open_incidents is not None else []


async def _public(deps: Deps) -> list[str]:
    return status_lines(await deps.status.public.page()) if deps.status.public is not None else []


async def _backups(deps: Deps, now: datetime) -> list[str]:
    return await deps.backups.dr_status(now) if deps.config.backups.targets else []


def _targets(ctx: CommandContext, service: str, environment: str | None) -> list[Target]:
    targets = ctx.deps.status.find(service, environment)
    if targets:
        return targets
    known = sorted({t.service or t.name for t in ctx.deps.status.targets} | set(ctx.deps.config.services))
    if service in ctx.deps.config.services:
        envs = ", ".join(f"`{e}`" for e in ctx.deps.config.services[service].environments)
        if environment is not None and environment not in ctx.deps.config.services[service].environments:
            raise UsageError(f"`{escape(service)}` has no environment `{escape(environment)}` (environments: {envs}).")
        return []
    raise UsageError(
        f"There is no service or probe `{escape(service)}` (known: {', '.join(f'`{k}`' for k in known) or 'none'})."
    )


async def _details(ctx: CommandContext, service: str, environment: str | None) -> Reply:
    targets = _targets(ctx, service, environment)
    now = ctx.deps.clock()
    blocks = [header(f"Status: {service}{f' {environment}' if environment else ''}")]
    lines = []
    for item in await ctx.deps.status.check(targets):
        minutes = await ctx.deps.status.recent_minutes(item.target, 60)
        by_minute = {bucket.tag: bucket for bucket in minutes}
        first = int(now.timestamp()) // 60 - 59
        spark = sparkline([_share([by_minute.get(first + m * 5 + k) for k in range(5)]) for m in range(12)])
        uptime = await _uptime(ctx, item.target, now)
        lines.append(f"*{escape(item.target.name)}*: {escape(item.text)}\nlast hour `{spark}` · {uptime}")
    if lines:
        blocks.append(section("\n\n".join(lines)))
    if service in ctx.deps.config.services:
        records, _ = await ctx.deps.deploys.history(service, environment, 5)
        history = (
            "\n".join(
                f"{state_label(r.state)} `{escape(r.version)}` to `{r.environment}` by <@{r.requested_by}> "
                f"{human_duration(now - r.created_at)} ago"
                for r in records
            )
            or "no deploys yet"
        )
        blocks.append(section(f"*Last deploys*\n{history}"))
    groups = await ctx.deps.alerts.firing()
    mine = [g for g in groups if any(m.labels.get("service") == service for m in g.members.values())]
    alerts = "\n".join(f"`{g.id}` {escape(g.title)} ({g.severity})" for g in mine) or "none"
    blocks.append(section(f"*Open alerts*\n{alerts}"))
    blocks.append(
        context("Sparkline: availability per 5 minutes over the last hour (█ all good, ▁ all failed, · no data)")
    )
    return Reply(text=f"Status of {service}", blocks=blocks)


async def _slo(ctx: CommandContext, service: str | None) -> Reply:
    targets = _targets(ctx, service, None) if service else ctx.deps.status.targets
    slo = ctx.deps.config.status.slo
    lines = []
    for target in targets:
        standing = await ctx.deps.status.budget(target)
        if standing.availability is None:
            lines.append(f"*{escape(target.name)}*: no data yet{await _why_no_data(ctx, target)}")
            continue
        flag = " :fire: *fast burn*" if standing.fast_burn else ""
        lines.append(
            f"*{escape(target.name)}*: {availability_text(standing.window)} · budget {budget_text(standing)}"
            f" · {burn_text(standing)}{flag}"
        )
    if not lines:
        return Reply(text="Nothing is probed yet: add `health:` to an environment or `status.probes` to chatops.yaml.")
    header_text = f"SLO {slo.target:g}% over {duration(slo.window)}"
    note = (
        f"From probe results stored every {duration(ctx.deps.config.status.probe_interval)} by the leader. Time "
        f"without probe data is not downtime; a burn rate needs probes over {MIN_COVERAGE:.0%} of its window."
    )
    blocks = [header(header_text), section("\n".join(lines)), context(note)]
    return Reply(text=header_text + "\n" + "\n".join(lines), blocks=blocks)


UPTIME_WINDOWS = (timedelta(days=1), timedelta(days=7), timedelta(days=30))


async def _uptime(ctx: CommandContext, target: Target, now: datetime) -> str:
    """ "uptime 99.95% over 3h of data", or per window while the data covers it: "uptime 99.99% last 24 hours ·
    99.95% over 3 days of data"."""
    parts = []
    for span in UPTIME_WINDOWS:
        measured = await ctx.deps.status.uptime(target, span, now)
        if measured.availability is None:
            why = await _why_no_data(ctx, target)
            return f"uptime: no data yet{why}" if why else "uptime: no probe data in the last 24 hours"
        if measured.covered < span * 0.99:  # the data ends inside this window: the longer ones would say the same
            parts.append(availability_text(measured))
            break
        label = "24 hours" if span == timedelta(days=1) else duration(span)
        parts.append(f"{percent(measured.availability)} last {label}")
    return "uptime " + " · ".join(parts)


async def _why_no_data(ctx: CommandContext, target: Target) -> str:
    if await ctx.deps.status.live(target):
        return ""
    return " (it has not answered right since probing began: a target counts from its first deploy or good answer)"


def _share(buckets: list[Bucket | None]) -> float | None:
    present = [b for b in buckets if b is not None]
    total = sum(b.counts.total for b in present)
    return sum(b.counts.good for b in present) / total if total else None


async def _refresh(ctx: ActionContext) -> None:
    reply = await overview(ctx)
    await ctx.respond(reply, replace_original=True)


async def _home_opened(deps: Deps, event: Mapping[str, Any]) -> None:
    """The App Home tab: the same overview, probed afresh each time the user opens the tab."""
    if event.get("tab", "home") != "home" or not event.get("user"):
        return
    _, blocks = await _overview(deps)
    home = [block for block in blocks if block.get("type") != "actions"]
    home.append(context("Probed when you opened this tab · `/status` posts it in a channel"))
    try:
        await deps.replies.publish_home(str(event["user"]), {"type": "home", "blocks": home})
    except SlackApiError as error:
        log.warning("could not publish the home tab for %s: %s", event["user"], error.response.get("error"))


COMMAND = Command(
    name="status",
    doc=__doc__,
    handler=handle,
    usage_hint="[<service> [<env>] | slo [<service>]]",
    actions={REFRESH: _refresh},
    read_only_actions=frozenset({REFRESH}),
    events={"app_home_opened": _home_opened},
    read_only_subcommands=READ_ONLY_SUBCOMMANDS,
)
