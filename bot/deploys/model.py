"""A deploy (or rollback) as recorded in Redis, and its state machine:
requested → awaiting_approval → running → verifying → succeeded | failed | rolled_back,
with rejected, expired, cancelled and interrupted as the other ways out."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Literal, TypeAlias

from pydantic import BaseModel, ConfigDict

from bot.platform.approvals import Decision, approved_by
from bot.platform.locks import LockInfo


class DeployState(StrEnum):
    """Where a deploy is in its life."""

    REQUESTED = "requested"
    AWAITING_APPROVAL = "awaiting_approval"
    RUNNING = "running"
    VERIFYING = "verifying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


TERMINAL = frozenset(
    {
        DeployState.SUCCEEDED,
        DeployState.FAILED,
        DeployState.ROLLED_BACK,
        DeployState.REJECTED,
        DeployState.EXPIRED,
        DeployState.CANCELLED,
        DeployState.INTERRUPTED,
    }
)
ACTIVE = frozenset(DeployState) - TERMINAL

# Manual locks in force, by `<env>:<service or *>` (what `DeployEngine.holds` answers).
Holds: TypeAlias = dict[str, LockInfo]

ALLOWED = {
    DeployState.REQUESTED: {
        DeployState.AWAITING_APPROVAL,
        DeployState.RUNNING,
        DeployState.CANCELLED,
        DeployState.FAILED,
    },
    DeployState.AWAITING_APPROVAL: {
        DeployState.RUNNING,
        DeployState.REJECTED,
        DeployState.EXPIRED,
        DeployState.CANCELLED,
        DeployState.FAILED,
    },
    DeployState.RUNNING: {
        DeployState.VERIFYING,
        DeployState.SUCCEEDED,
        DeployState.FAILED,
        DeployState.ROLLED_BACK,
        DeployState.INTERRUPTED,
        DeployState.RUNNING,
    },
    DeployState.VERIFYING: {
        DeployState.RUNNING,
        DeployState.SUCCEEDED,
        DeployState.FAILED,
        DeployState.ROLLED_BACK,
        DeployState.INTERRUPTED,
    },
}


class IllegalTransition(Exception):
    """A state change the machine does not allow (a stale click, a race lost)."""


class StepProcesses(BaseModel):
    """The local processes of the step now running, recorded before it starts, for a replica that recovers the
    deploy after this process died: on the same host (`host_id`) it can stop the group `pgid` itself; anywhere
    else it waits until `ends_by`, by which the command's supervisor has stopped everything."""

    model_config = ConfigDict(frozen=True)

    host: str
    host_id: str
    pid: int | None = None  # the supervisor, once started
    pgid: int | None = None  # the command's process group, once started
    started_at: datetime
    ends_by: datetime
    kill_grace_seconds: float


class CheckLine(BaseModel):
    """One metric's line in the deploy message while a step bakes: its last value, its limit, failed checks."""

    model_config = ConfigDict(frozen=True)

    name: str
    value: str | None = None  # None: not checked yet
    limit: str = ""
    ok: bool | None = None
    failures: int = 0
    error: str | None = None


class AnalysisView(BaseModel):
    """The metric gate of the step now baking (or the last one), as the deploy message shows it."""

    model_config = ConfigDict(frozen=True)

    step: str
    checks_done: int
    checks: int
    interval_seconds: float
    failure_limit: int
    lines: tuple[CheckLine, ...]
    verdict: Literal["running", "passed", "failed"] = "running"


class StepProgress(BaseModel):
    """One step's block in the deploy message, edited in place while it runs: what the provider said and the
    health gate's checks as marks (a thread reply per check would bury what matters)."""

    model_config = ConfigDict(frozen=True)

    label: str
    state: Literal["running", "checking", "passed", "failed"] = "running"
    summary: str = ""  # the provider's one line on the step
    marks: str = ""  # one ✓ or ✗ per health check, oldest first
    status: int | None = None  # the HTTP status of the last passing check
    fastest_ms: float | None = None  # latency range of the passing checks
    slowest_ms: float | None = None
    error: str | None = None  # why the last check failed, while the last one failed

    def checked(self, *, ok: bool, status: int | None, latency_ms: float, error: str | None) -> StepProgress:
        """A copy with one more health check."""
        if not ok:
            return self.model_copy(update={"marks": self.marks + "✗", "error": error or "failed"})
        return self.model_copy(
            update={
                "marks": self.marks + "✓",
                "status": status,
                "error": None,
                "fastest_ms": latency_ms if self.fastest_ms is None else min(self.fastest_ms, latency_ms),
                "slowest_ms": latency_ms if self.slowest_ms is None else max(self.slowest_ms, latency_ms),
            }
        )


RecoveryAction = Literal["interrupt", "stop_group", "wait"]


def recovery_action(processes: StepProcesses | None, *, host_id: str, now: datetime) -> RecoveryAction:
    """What a replica recovering a deploy must do before it may mark it interrupted and release its lock:
    nothing when no local step can be running, stop the group when it can see it, else wait for `ends_by`."""
    if processes is None or now >= processes.ends_by:
        return "interrupt"
    if processes.host_id == host_id and processes.pgid is not None:
        return "stop_group"
    return "wait"


class DeployRecord(BaseModel):
    """Everything about one deploy or rollback; the JSON stored in Redis."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: Literal["deploy", "rollback"]
    service: str
    environment: str
    version: str
    previous_version: str | None
    requested_by: str
    reason: str = ""
    forced: bool = False
    state: DeployState
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    required_approvals: int = 0
    approvers_role: str | None = None
    allow_self_approval: bool = False
    expires_at: datetime | None = None
    decisions: tuple[Decision, ...] = ()
    steps: tuple[int | None, ...] = (None,)
    step_index: int = 0
    channel: str | None = None
    message_ts: str | None = None
    external_id: str | None = None
    external_url: str | None = None  # the provider's link for the run (a Vercel deployment's URL)
    commit_sha: str | None = None  # the commit deployed, when the provider knows it
    commit_repo: str | None = None  # its GitHub repository, owner/name
    commit_at: datetime | None = None  # when it was committed (GitHub's commit API), for lead time
    detail: str = ""
    rollback_of: str | None = None
    auto: bool = False
    cancelled_by: str | None = None
    processes: StepProcesses | None = None
    analysis: AnalysisView | None = None
    progress: tuple[StepProgress, ...] = ()  # one per step started, in order (and the automatic rollback's)
    went_live: bool = False  # a step put this version in place (served, not only staged): the old one was replaced
    counted: bool = False  # in the daily figures' counters since it finished (the backfill skips it)

    @property
    def approved_by(self) -> tuple[str, ...]:
        """The distinct users who approved, in order."""
        return approved_by(self.decisions)

    @property
    def terminal(self) -> bool:
        """True once the deploy can no longer change."""
        return self.state in TERMINAL

    def moved(self, state: DeployState, at: datetime, **changes: object) -> DeployRecord:
        """A copy in `state`; IllegalTransition if the machine does not allow it."""
        if state not in ALLOWED.get(self.state, set()):
            raise IllegalTransition(f"{self.id} is {self.state.value}; it cannot become {state.value}")
        extra: dict[str, object] = {"state": state, "updated_at": at, **changes}
        if state in TERMINAL and self.finished_at is None:
            extra.setdefault("finished_at", at)
        return self.model_copy(update=extra)

    def with_progress(self, label: str, change: Callable[[StepProgress], StepProgress]) -> DeployRecord:
        """A copy whose progress block `label` is changed (a new block at the end when there is none yet)."""
        blocks = list(self.progress)
        for index, block in enumerate(blocks):
            if block.label == label:
                blocks[index] = change(block)
                break
        else:
            blocks.append(change(StepProgress(label=label)))
        return self.model_copy(update={"progress": tuple(blocks)})

    @property
    def duration_seconds(self) -> float | None:
        """Seconds from start to finish, once finished."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


def new_deploy_id() -> str:
    """A short id people can type: `d-` and 8 base-36 characters."""
    alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
    return "d-" + "".join(secrets.choice(alphabet) for _ in range(8))
