"""Run, list, verify and restore backups (PostgreSQL, Redis, ElastiCache, RDS) and run timed DR drills.

Running, verifying and asking for a restore need the `backups.operators` role (admins by default); a restore
runs only after `backups.restore_approval` approvers approve it. Anyone may list and show.
Usage:
  /backup run <target> [--reason "…"]
  /backup list <target> [N]
  /backup show <id>
  /backup verify <target> [<id>]
  /backup restore <target> <id> [into <dsn-env>] [--reason "…"]
  /backup restore <rds-target> <id> as <new-instance> [--reason "…"]
  /backup drill <target>
  /backup drills [<target>] [N]
Examples:
  /backup run appdb
  /backup restore appdb appdb-20261123-020000-k3mz into STAGING_DB_URL
  /backup restore rds-prod rds-prod-20261123-023000-x7qa as prod-db-restore-1
  /backup drill appdb
"""

from __future__ import annotations

from bot.backups.model import RestoreRecord
from bot.backups.render import (
    APPROVE,
    CANCEL,
    REJECT,
    drills_message,
    list_message,
    show_message,
)
from bot.platform.errors import UsageError, UserFacingError
from bot.text.blocks import escape
from commands.backup_grammar import (
    FLAGS,
    DrillCmd,
    DrillsCmd,
    ListCmd,
    RestoreCmd,
    RunCmd,
    ShowCmd,
    VerifyCmd,
    parse_backup,
)
from commands.framework import ActionContext, Command, CommandContext, Reply

# Subcommands that only show something: answered without an idempotency record (commands/dispatch.py)
READ_ONLY_SUBCOMMANDS = frozenset({"list", "show", "drills"})


# Subcommands whose first word is a target: without it, the answer lists the targets there are.
_TARGET_FIRST = {"run": "<target>", "list": "<target> [N]", "verify": "<target> [<id>]", "drill": "<target>"}


def _missing_target(text: str, targets: list[str]) -> UsageError | None:
    """`/backup list` (or run, verify, drill) with no target: a usage error naming the targets to choose from."""
    words = FLAGS.split(text)[0]
    verb = words[0].lower() if len(words) == 1 else ""
    if verb not in _TARGET_FIRST:
        return None
    known = ", ".join(f"`{t}`" for t in targets) or "none are configured (add them under `backups.targets`)"
    return UsageError(f"`/backup {verb}` needs a target. Targets: {known}.", f"/backup {verb} {_TARGET_FIRST[verb]}")


async def handle(ctx: CommandContext) -> Reply:
    """Routes a parsed `/backup` to the backup service, checking the role first."""
    service = ctx.deps.backups
    missing = _missing_target(ctx.args, list(service.section.targets))
    if missing is not None:
        raise missing
    command = parse_backup(ctx.args)
    operators = service.section.operators
    if isinstance(command, RunCmd):
        service.target(command.target)
        await ctx.require(operators, action=f"back up {command.target}")
        record = await ctx.refusals_audited(
            "backup.run",
            command.target,
            service.start(command.target, user=ctx.user_id, reason=command.reason, channel=ctx.channel_id),
        )
        where = f" Progress in {await ctx.deps.channels.link(record.channel)}." if record.channel else ""
        return Reply(text=f":floppy_disk: Backup of `{record.target}` started: `{record.id}`.{where}")
    if isinstance(command, ListCmd):
        service.target(command.target)
        text, blocks = list_message(command.target, await service.history(command.target, command.limit))
        return Reply(text=text, blocks=blocks)
    if isinstance(command, ShowCmd):
        text, blocks = show_message(await service.backup(command.backup_id))
        return Reply(text=text, blocks=blocks)
    if isinstance(command, VerifyCmd):
        service.target(command.target)
        await ctx.require(operators, action=f"verify backups of {command.target}")
        record = await service.verifier.pick(command.target, command.backup_id)
        ctx.spawn(
            service.verifier.verify_in_background(record, user=ctx.user_id, channel=ctx.channel_id),
            name=f"verify:{record.id}",
        )
        return Reply(
            text=f":mag: Verifying `{record.id}` of `{record.target}`: downloading, checking the sha256"
            f"{' and restoring into a scratch database' if record.kind == 'postgres' else ''}. The result follows."
        )
    if isinstance(command, DrillCmd):
        service.target(command.target)
        await ctx.require(operators, action=f"run a DR drill of {command.target}")
        await service.verifier.pick(command.target, None)  # nothing to drill: say so now, not in the thread
        ctx.spawn(
            service.drills.run(command.target, user=ctx.user_id, channel=ctx.channel_id), name=f"drill:{command.target}"
        )
        return Reply(
            text=f":stopwatch: DR drill of `{command.target}` started: the newest backup is restored into a "
            "scratch target, checked and timed. The result follows."
        )
    if isinstance(command, DrillsCmd):
        names = [command.target] if command.target else list(service.section.targets)
        if command.target:
            service.target(command.target)
        found = [d for name in names for d in await service.drill_history(name, command.limit)]
        found.sort(key=lambda d: d.started_at, reverse=True)
        text, blocks = drills_message(command.target, found[: command.limit])
        return Reply(text=text, blocks=blocks)
    assert isinstance(command, RestoreCmd)
    service.target(command.target)
    await ctx.require(operators, action=f"restore {command.target}")
    restore = await ctx.refusals_audited(
        "backup.restore.request",
        f"{command.target} {command.backup_id}",
        service.restores.request(
            command.target,
            command.backup_id,
            into_env=command.into_env,
            user=ctx.user_id,
            channel=ctx.channel_id,
            reason=command.reason,
            as_instance=command.as_instance,
        ),
    )
    need = (
        f"{restore.required_approvals} approval{'s' if restore.required_approvals > 1 else ''} from "
        f"`{restore.approvers_role}`"
    )
    where = f" in {await ctx.deps.channels.link(restore.channel)}" if restore.channel else ""
    return Reply(
        text=f":raised_hand: Restore `{restore.id}` of {restore.destination} from `{restore.backup_id}` needs "
        f"{need}{where}."
    )


async def _restore_click(ctx: ActionContext, verb: str) -> tuple[RestoreRecord, bool]:
    """The restore a button names and whether the clicker holds its approver role (checked on every click; a
    click without it is audited as denied and refused by the service)."""
    record = await ctx.deps.backups.get_restore(ctx.value)
    if record is None:
        raise UserFacingError(f"There is no restore request `{escape(ctx.value)}`.")
    is_approver = await ctx.deps.permissions.holds(ctx.user_id, record.approvers_role)
    if not is_approver:
        await ctx.audit(
            action=f"backup.restore.{verb}", result="denied", target=record.id, detail=f"not in {record.approvers_role}"
        )
    return record, is_approver


async def _approve(ctx: ActionContext) -> None:
    record, is_approver = await _restore_click(ctx, "approve")
    await ctx.deps.backups.restores.approve(record.id, ctx.user_id, is_approver=is_approver)


async def _reject(ctx: ActionContext) -> None:
    record, is_approver = await _restore_click(ctx, "reject")
    await ctx.deps.backups.restores.reject(record.id, ctx.user_id, is_approver=is_approver)


async def _cancel(ctx: ActionContext) -> None:
    record = await ctx.deps.backups.get_restore(ctx.value)
    if record is None:
        raise UserFacingError(f"There is no restore request `{escape(ctx.value)}`.")
    is_admin = await ctx.deps.permissions.holds(ctx.user_id, "admins")
    await ctx.deps.backups.restores.cancel(record.id, ctx.user_id, is_admin=is_admin)


COMMAND = Command(
    name="backup",
    doc=__doc__,
    handler=handle,
    usage_hint="run | list | show | verify | restore | drill | drills …",
    actions={APPROVE: _approve, REJECT: _reject, CANCEL: _cancel},
    read_only_subcommands=READ_ONLY_SUBCOMMANDS,
)
