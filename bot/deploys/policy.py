"""Deploy policy as pure decisions: freeze windows, manual locks, approvals (who may, how many, self-approval),
and the version to roll back to. No I/O: the engine gathers facts and asks these functions."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.deploys.config import EnvironmentConfig, FreezeWindow
from bot.deploys.model import DeployRecord, DeployState
from bot.platform.approvals import Approvable, ApprovalCheck
from bot.platform.approvals import check_approval as approval_check
from bot.platform.cron import Cron
from bot.platform.locks import LockInfo


@dataclass(frozen=True)
class ActiveFreeze:
    """A freeze window in force now and when it ends (None: not within a month)."""

    window: FreezeWindow
    until: datetime | None


def active_freeze(windows: Sequence[FreezeWindow], now: datetime) -> ActiveFreeze | None:
    """The first freeze window that covers `now`, in its own time zone."""
    for window in windows:
        local = now.astimezone(ZoneInfo(window.timezone))
        cron = Cron.parse(window.cron)
        if cron.matches(local):
            end = cron.end_of_match(local)
            return ActiveFreeze(window, end.astimezone(now.tzinfo) if end else None)
    return None


def blocking_hold(holds: Mapping[str, LockInfo], service: str, environment: str) -> LockInfo | None:
    """The manual lock that stops deploying `service` to `environment`, if any (service lock before env lock)."""
    return holds.get(f"{environment}:{service}") or holds.get(f"{environment}:*")


def version_problem(env: EnvironmentConfig, version: str) -> str | None:
    """Why `version` is not acceptable for this environment, or None."""
    if not re.fullmatch(env.version_pattern, version):
        return f"`{version}` does not look like a version here (it must match `{env.version_pattern}`)"
    return None


def check_approval(record: DeployRecord, user: str, *, is_approver: bool) -> ApprovalCheck:
    """Whether `user` may approve `record` now, and whether their approval completes it (see bot.platform.approvals)."""
    return approval_check(
        Approvable(
            noun="deploy",
            waiting=record.state == DeployState.AWAITING_APPROVAL,
            state_label=record.state.value.replace("_", " "),
            requested_by=record.requested_by,
            approvers_role=record.approvers_role,
            allow_self_approval=record.allow_self_approval,
            required_approvals=record.required_approvals,
            approved_by=record.approved_by,
        ),
        user,
        is_approver=is_approver,
    )


def rollback_target(history: Sequence[DeployRecord], current: str | None) -> str | None:
    """The newest successfully deployed version other than the current one (history newest first)."""
    for record in history:
        if record.state == DeployState.SUCCEEDED and record.version != current:
            return record.version
    return None
