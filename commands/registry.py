"""The registry: the one list of slash commands. A new command is one module plus one line here."""

from __future__ import annotations

from commands import alerts, backup, chatops, deploy, incident, oncall, rollback, status
from commands.catalog import Catalog, CommandSpec

MODULES = (deploy, rollback, backup, status, oncall, incident, alerts, chatops)


def build_catalog() -> Catalog:
    """The catalog of every registered command."""
    return Catalog(CommandSpec.from_module(module) for module in MODULES)
