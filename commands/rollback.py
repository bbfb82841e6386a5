"""Roll a service back to its last good version, through the same approval, lock and health path as a deploy.

Usage:
  /rollback <service> <env> [to <version>] [--reason "…"]
Examples:
  /rollback web production
  /rollback web staging to v1.4.1 --reason "bad migration"
"""

from __future__ import annotations

from commands.deploy import request_deploy
from commands.deploy_grammar import parse_rollback
from commands.framework import Command, CommandContext, Reply


async def handle(ctx: CommandContext) -> Reply:
    """Asks the engine for a rollback (the last good version unless one is named)."""
    command = parse_rollback(ctx.args)
    return await request_deploy(
        ctx,
        kind="rollback",
        service=command.service,
        environment=command.environment,
        version=command.version,
        reason=command.reason,
        force=False,
    )


COMMAND = Command(
    name="rollback",
    doc=__doc__,
    handler=handle,
    usage_hint='<service> <env> [to <version>] [--reason "…"]',
)
