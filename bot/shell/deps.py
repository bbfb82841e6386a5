"""The one frozen dependencies object, built once by the composition root and handed to handlers via Bolt's context."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.alerts.pipeline import AlertPipeline
from bot.backups.service import BackupService
from bot.deploys.engine import DeployEngine
from bot.incidents.service import IncidentService
from bot.oncall.pager import Pager
from bot.oncall.service import OncallService, OpenIncidents
from bot.platform.audit import AuditLog
from bot.platform.channels import ChannelDirectory
from bot.platform.metrics import Metrics
from bot.platform.people import PeopleDirectory
from bot.platform.permissions import Permissions
from bot.platform.replies import Replies
from bot.platform.scheduler import LeaderScheduler
from bot.platform.tasks import BackgroundTasks
from bot.shell.config import ChatopsConfig
from bot.status.service import StatusService


def utc_now() -> datetime:
    """The current time, timezone-aware UTC (the only clock domain code reads)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Deps:
    """Everything a handler may use; nothing else is reachable from a handler. No raw client: state is reached
    through the services, Slack through `replies` (tests/test_architecture.py keeps it so)."""

    config: ChatopsConfig
    audit: AuditLog
    permissions: Permissions
    replies: Replies
    metrics: Metrics
    tasks: BackgroundTasks
    deploys: DeployEngine
    alerts: AlertPipeline
    backups: BackupService
    oncall: OncallService
    pager: Pager
    incidents: IncidentService
    scheduler: LeaderScheduler
    people: PeopleDirectory
    channels: ChannelDirectory
    status: StatusService
    open_incidents: OpenIncidents | None = None
    clock: Callable[[], datetime] = utc_now
