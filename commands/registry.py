"""The registry: the one list of slash commands. A new command is one module declaring `COMMAND = Command(...)`
(commands.framework) plus one line here."""

from __future__ import annotations

from commands import alerts, backup, chatops, deploy, incident, oncall, rollback, status
from commands.catalog import Catalog
from commands.framework import Command

COMMANDS: tuple[Command, ...] = (
    deploy.COMMAND,
    rollback.COMMAND,
    backup.COMMAND,
    status.COMMAND,
    oncall.COMMAND,
    incident.COMMAND,
    alerts.COMMAND,
    chatops.COMMAND,
)


def build_catalog() -> Catalog:
    """The catalog of every registered command."""
    return Catalog(command.spec for command in COMMANDS)
