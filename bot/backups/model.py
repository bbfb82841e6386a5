"""Backups and restores as recorded in Redis (and, for a backup, in the JSON object next to it).

A backup is `running` until it is `succeeded` (its object is complete and its checksum known), `failed`, or
`interrupted` (its process died: found later by the next run or the tick). Retention moves old successes to
`pruned` after deleting their objects. A restore waits for approval, then runs once."""

from __future__ import annotations

import secrets
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

from bot.platform.approvals import Decision, approved_by

_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"


class BackupState(StrEnum):
    """Where a backup is in its life."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    PRUNED = "pruned"


class Verification(BaseModel):
    """The outcome of one verification of a backup."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    ok: bool
    detail: str
    by: str
    tables: int | None = None
    rows: int | None = None


class Encryption(BaseModel):
    """How a backup object was encrypted: the scheme, which master key wrapped its data key, and the wrapped data
    key itself (base64; useless without the master key)."""

    model_config = ConfigDict(frozen=True)

    scheme: str
    key_ref: str
    wrapped_key: str


class BackupRecord(BaseModel):
    """One backup run; the JSON stored in Redis and next to the backup object."""

    model_config = ConfigDict(frozen=True)

    id: str
    target: str
    kind: Literal["postgres", "redis", "rds_snapshot", "elasticache_snapshot"]
    state: BackupState
    requested_by: str
    reason: str = ""
    created_at: datetime
    finished_at: datetime | None = None
    storage: str | None = None
    key: str | None = None
    location: str | None = None
    upload_id: str | None = None
    size: int | None = None
    sha256: str | None = None
    seconds: float | None = None
    detail: str = ""
    lock_token: str = ""
    channel: str | None = None
    message_ts: str | None = None
    verifications: tuple[Verification, ...] = ()
    snapshot: str | None = None  # the ElastiCache snapshot an exported backup came from (deleted with it)
    copy_location: str | None = None  # the RDS snapshot's copy in another region (its ARN)
    export_location: str | None = None  # where the RDS snapshot was exported to S3 as Parquet
    encryption: Encryption | None = None
    retain_until: datetime | None = None
    """Until when S3 Object Lock keeps the object (nobody can delete it before)."""

    @property
    def good(self) -> bool:
        """A complete backup that can be restored (and that retention counts)."""
        return self.state == BackupState.SUCCEEDED

    @property
    def last_verification(self) -> Verification | None:
        """The newest verification, if any."""
        return self.verifications[-1] if self.verifications else None


class RestoreState(StrEnum):
    """Where a restore request is in its life."""

    AWAITING_APPROVAL = "awaiting_approval"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


RESTORE_TERMINAL = frozenset(RestoreState) - {RestoreState.AWAITING_APPROVAL, RestoreState.RUNNING}


class RestoreRecord(BaseModel):
    """One restore request: what, into where, who asked and who approved."""

    model_config = ConfigDict(frozen=True)

    id: str
    target: str
    backup_id: str
    into_env: str | None = None
    as_instance: str | None = None  # RDS: the new instance the snapshot is restored as
    state: RestoreState
    requested_by: str
    reason: str = ""
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    required_approvals: int
    approvers_role: str
    allow_self_approval: bool = False
    expires_at: datetime
    decisions: tuple[Decision, ...] = ()
    channel: str | None = None
    message_ts: str | None = None
    detail: str = ""

    @property
    def approved_by(self) -> tuple[str, ...]:
        """The distinct users who approved, in order."""
        return approved_by(self.decisions)

    @property
    def terminal(self) -> bool:
        """True once the restore can no longer change."""
        return self.state in RESTORE_TERMINAL

    @property
    def destination(self) -> str:
        """Where it restores to, for people."""
        if self.as_instance:
            return f"a new instance `{self.as_instance}` (from `{self.target}`)"
        return f"`{self.target}`" + (f" (into `{self.into_env}`)" if self.into_env else "")


class DrillCheckResult(BaseModel):
    """One check of a drill: what, the value found, and whether it passed."""

    model_config = ConfigDict(frozen=True)

    label: str
    value: int | None
    ok: bool
    detail: str = ""


class DrillRecord(BaseModel):
    """One timed DR drill: the newest good backup restored into a scratch target, checked and timed. `ok` is the
    restore and its checks; `within_rto` compares the restore time with the target's `rto` (None: no RTO)."""

    model_config = ConfigDict(frozen=True)

    id: str
    target: str
    kind: str
    backup_id: str | None
    requested_by: str
    started_at: datetime
    finished_at: datetime
    restore_seconds: float | None
    rto_seconds: float | None
    backup_age_seconds: float | None  # the RPO at that moment: how old the restored backup was
    ok: bool
    within_rto: bool | None
    checks: tuple[DrillCheckResult, ...] = ()
    scratch: str = ""
    detail: str = ""

    @property
    def good(self) -> bool:
        """Restored, checked, and within the RTO (when there is one)."""
        return self.ok and self.within_rto is not False


def new_drill_id(target: str, now: datetime) -> str:
    """`d-<target>-20261123-040000-<4 random>`."""
    return f"d-{target}-{now:%Y%m%d-%H%M%S}-" + "".join(secrets.choice(_ALPHABET) for _ in range(4))


def new_backup_id(target: str, now: datetime) -> str:
    """`<target>-20261123-020000-<4 random>`: sortable, says what it is, unique even when two start together."""
    return f"{target}-{now:%Y%m%d-%H%M%S}-" + "".join(secrets.choice(_ALPHABET) for _ in range(4))


def new_restore_id() -> str:
    """`r-` and 8 characters."""
    return "r-" + "".join(secrets.choice(_ALPHABET) for _ in range(8))
