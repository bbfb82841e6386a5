"""Deploy a service version to an environment, with approvals for production, locks and canary steps.

Usage:
  /deploy <service> <version> to <env> [--reason "…"] [--force]
  /deploy <service>@<version> <env>
  /deploy status [<service>]
  /deploy history <service> [<env>] [N]
  /deploy cancel <id>
  /deploy lock <env> [<service>] --reason "…" [--for 2h]
  /deploy unlock <env> [<service>]
  /deploy locks
Examples:
  /deploy web v1.4.2 to staging
  /deploy web@v1.4.2 production --reason "fix checkout"
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from bot.deploys.engine import DeployRequest
from bot.deploys.model import DeployRecord
from bot.deploys.render import (
    APPROVE,
    CANCEL,
    REJECT,
    history_message,
    state_label,
    title,
)
from bot.platform.errors import UserFacingError
from bot.text.blocks import context, escape, header, section
from commands.deploy_grammar import (
    CancelCmd,
    DeployRequestCmd,
    HistoryCmd,
    LockCmd,
    LocksCmd,
    StatusCmd,
    UnlockCmd,
    parse_deploy,
)
from commands.framework import ActionContext, Command, CommandContext, Reply

# Subcommands that only show something: answered without an idempotency record (commands/dispatch.py)
READ_ONLY_SUBCOMMANDS = frozenset({"status", "history", "locks"})


async def handle(ctx: CommandContext) -> Reply:
    """Routes a parsed `/deploy` to the engine."""
    command = parse_deploy(ctx.args)
    if isinstance(command, DeployRequestCmd):
        return await request_deploy(
            ctx,
            kind="deploy",
            service=command.service,
            environment=command.environment,
            version=command.version,
            reason=command.reason,
            force=command.force,
        )
    if isinstance(command, StatusCmd):
        return await _status(ctx, command.service)
    if isinstance(command, HistoryCmd):
        records, figures = await ctx.deps.deploys.history(command.service, command.environment, command.limit)
        text, blocks = history_message(command.service, records, figures)
        return Reply(text=text, blocks=blocks)
    if isinstance(command, CancelCmd):
        is_admin = await ctx.deps.permissions.holds(ctx.user_id, "admins")
        record = await ctx.refusals_audited(
            "deploy.cancel",
            command.deploy_id,
            ctx.deps.deploys.cancel(command.deploy_id, ctx.user_id, is_admin=is_admin),
        )
        return Reply(text=f"Cancelled `{record.id}` ({title(record)}).")
    if isinstance(command, LockCmd):
        return await _lock(ctx, command)
    if isinstance(command, UnlockCmd):
        return await _unlock(ctx, command)
    assert isinstance(command, LocksCmd)
    return await _locks(ctx)


async def request_deploy(
    ctx: CommandContext,
    *,
    kind: Literal["deploy", "rollback"],
    service: str,
    environment: str,
    version: str | None,
    reason: str,
    force: bool,
) -> Reply:
    """Checks the requester's role (and admin for --force), then asks the engine; refusals are audited."""
    engine = ctx.deps.deploys
    _, env = engine.environment(service, environment)
    verb = "roll back" if kind == "rollback" else "deploy"
    await ctx.require(env.deploy_role, action=f"{verb} {service} in {environment}")
    if force:
        await ctx.require("admins", action="use --force (deploy past a freeze or lock)")
    deploy_request = DeployRequest(
        kind=kind,
        service=service,
        environment=environment,
        version=version,
        reason=reason,
        force=force,
        user=ctx.user_id,
        channel=ctx.channel_id,
    )
    record = await ctx.refusals_audited(f"{kind}.request", f"{service} → {environment}", engine.request(deploy_request))
    where = f" in {await ctx.deps.channels.link(record.channel)}" if record.channel else ""
    if record.required_approvals:
        need = (
            f"{record.required_approvals} approval{'s' if record.required_approvals > 1 else ''} from "
            f"`{record.approvers_role}`"
        )
        return Reply(text=f":raised_hand: {title(record)} is `{record.id}`: it needs {need}{where}.")
    return Reply(text=f":rocket: {title(record)} is `{record.id}`: starting now{where}.")


async def _status(ctx: CommandContext, service: str | None) -> Reply:
    engine = ctx.deps.deploys
    services = [service] if service else list(engine.services)
    if service is not None and service not in engine.services:
        engine.environment(service, "")
    if not services:
        return Reply(text="No services are configured. Add them under `services:` in chatops.yaml.")
    active = {(r.service, r.environment): r for r in await engine.active()}
    holds = await engine.holds()
    lines = []
    for name in services:
        for env_name in engine.services[name].environments:
            current = await engine.current_version(name, env_name) or "nothing deployed yet"
            line = f"*{name}* in *{env_name}*: `{current}`"
            running = active.get((name, env_name))
            if running:
                line += f" — {state_label(running.state)} `{running.id}` → {running.version}"
            hold = holds.get(f"{env_name}:{name}") or holds.get(f"{env_name}:*")
            if hold:
                line += f" — :lock: locked by <@{hold.holder}>: {escape(hold.reason)}"
            lines.append(line)
    text = "\n".join(lines)
    return Reply(text=text, blocks=[header("Deploy status"), section(text)])


async def _lock(ctx: CommandContext, command: LockCmd) -> Reply:
    engine = ctx.deps.deploys
    await ctx.require(engine.lock_role(command.environment, command.service), action=f"lock {command.environment}")
    hold = await engine.lock(
        command.environment,
        command.service,
        user=ctx.user_id,
        reason=command.reason,
        duration=command.duration,
        token=ctx.invocation.trigger_id,
    )
    scope = f"`{command.service}` in `{command.environment}`" if command.service else f"`{command.environment}`"
    await ctx.audit(action="deploy.lock", result="ok", target=scope, detail=command.reason)
    return Reply(
        text=f":lock: <@{ctx.user_id}> locked {scope} until {_until(hold.until)}: {escape(command.reason)}",
        in_channel=True,
    )


async def _unlock(ctx: CommandContext, command: UnlockCmd) -> Reply:
    engine = ctx.deps.deploys
    await ctx.require(engine.lock_role(command.environment, command.service), action=f"unlock {command.environment}")
    removed = await engine.unlock(command.environment, command.service)
    scope = f"`{command.service}` in `{command.environment}`" if command.service else f"`{command.environment}`"
    if removed is None:
        raise UserFacingError(f"{scope} is not locked. See `/deploy locks`.")
    await ctx.audit(
        action="deploy.unlock", result="ok", target=scope, detail=f"was locked by {removed.holder}: {removed.reason}"
    )
    return Reply(
        text=f":unlock: <@{ctx.user_id}> unlocked {scope} (locked by <@{removed.holder}>: {escape(removed.reason)}).",
        in_channel=True,
    )


def _until(moment: datetime | None) -> str:
    return f"{moment:%a %H:%M}Z" if moment else "unlocked"


async def _locks(ctx: CommandContext) -> Reply:
    engine = ctx.deps.deploys
    holds = await engine.holds()
    lines = [
        f":lock: `{field.replace(':*', '')}` by <@{hold.holder}> since {hold.since:%H:%M}Z until "
        f"{_until(hold.until)}: {escape(hold.reason)}"
        for field, hold in sorted(holds.items())
    ]
    running: list[DeployRecord] = await engine.active()
    lines += [
        f":rocket: `{r.service}` in `{r.environment}`: {state_label(r.state)} `{r.id}` by <@{r.requested_by}>"
        for r in running
    ]
    text = "\n".join(lines) if lines else "No locks, and no deploy in progress."
    return Reply(
        text=text,
        blocks=[header("Deploy locks"), section(text), context("Manual locks first, then deploys in progress.")],
    )


async def _approve(ctx: ActionContext) -> None:
    record, is_approver = await _approver_click(ctx, "approve")
    await ctx.deps.deploys.approve(record.id, ctx.user_id, is_approver=is_approver)


async def _reject(ctx: ActionContext) -> None:
    record, is_approver = await _approver_click(ctx, "reject")
    await ctx.deps.deploys.reject(record.id, ctx.user_id, is_approver=is_approver)


async def _approver_click(ctx: ActionContext, verb: str) -> tuple[DeployRecord, bool]:
    """The deploy a button names and whether the clicker holds its approver role (checked on every click;
    a click without it is audited as denied, and the engine refuses it)."""
    record = await _record(ctx)
    is_approver = await ctx.deps.permissions.holds(ctx.user_id, record.approvers_role or "approvers")
    if not is_approver:
        await ctx.audit(
            action=f"{record.kind}.{verb}", result="denied", target=record.id, detail=f"not in {record.approvers_role}"
        )
    return record, is_approver


async def _cancel(ctx: ActionContext) -> None:
    record = await _record(ctx)
    is_admin = await ctx.deps.permissions.holds(ctx.user_id, "admins")
    await ctx.deps.deploys.cancel(record.id, ctx.user_id, is_admin=is_admin)


async def _record(ctx: ActionContext) -> DeployRecord:
    record = await ctx.deps.deploys.get(ctx.value)
    if record is None:
        raise UserFacingError(f"There is no deploy `{escape(ctx.value)}`.")
    return record


COMMAND = Command(
    name="deploy",
    doc=__doc__,
    handler=handle,
    usage_hint="<service> <version> to <env> | status | history | lock | unlock",
    actions={APPROVE: _approve, REJECT: _reject, CANCEL: _cancel},
    read_only_subcommands=READ_ONLY_SUBCOMMANDS,
)
