"""The `backups:` section: where backups are stored, what is backed up (targets, with their schedule, retention,
RPO, and timed DR drills with their checks and RTO), who may run them, and who must approve a restore.

`backups.operators` (default `admins`) may run, verify and request restores; `restore_approval` (default: one
approval from `admins`) says who must approve a restore before it runs. Anyone may list and show backups."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from apscheduler.triggers.cron import CronTrigger
from pydantic import AfterValidator, Field, model_validator

from bot.deploys.config import ApprovalConfig
from bot.platform.cron import Cron
from integrations.alerts.settings import EnvVarName
from integrations.backups.elasticache import ElastiCacheSettings
from integrations.backups.postgres import PostgresSettings
from integrations.backups.rds import RdsSettings
from integrations.backups.redis_rdb import RedisSettings
from integrations.backups.registry import StorageSettings
from integrations.types import Duration, SlackChannelRef, StrictModel

_TARGET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
RESERVED = frozenset({"run", "list", "show", "verify", "restore", "help", "into", "drill", "drills", "as"})


def _check_target_name(name: str) -> str:
    if not _TARGET_NAME.match(name):
        raise ValueError(f"{name!r} is not a valid target name: 1-40 lower-case letters, digits, '_' or '-'")
    if name in RESERVED:
        raise ValueError(f"{name!r} is a /backup keyword and cannot name a target")
    return name


def cron_trigger(expression: str) -> CronTrigger:
    """An APScheduler trigger (UTC) firing on the minutes the crontab `expression` matches. Day-of-week numbers
    are crontab's (0 and 7 are Sunday), not APScheduler's (0 is Monday): they are passed as names."""
    cron = Cron.parse(expression)
    minute, hour, day, month, _ = expression.split()
    if cron.days_restricted and cron.weekdays_restricted:
        raise ValueError(
            "restrict either the day of month or the day of week, not both (cron ORs them; "
            "use two targets' schedules if you need both)"
        )
    weekdays = "*" if not cron.weekdays_restricted else ",".join(_WEEKDAYS[d] for d in sorted(cron.weekdays))
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=weekdays, timezone="UTC")


def _check_cron(expression: str) -> str:
    cron_trigger(expression)
    return expression


CronText = Annotated[str, AfterValidator(_check_cron)]
TargetName = Annotated[str, AfterValidator(_check_target_name)]


class RetentionConfig(StrictModel):
    """`retention:` — grandfather-father-son counts and/or a maximum age. With counts, a backup is kept when it is
    the newest of one of the newest `daily` days (`weekly` ISO weeks, `monthly` months) that have backups; with
    `max_age` only, when it is younger; with both, when both say so. The newest good backup is always kept.
    Nothing set: everything is kept."""

    daily: int | None = Field(None, ge=1, le=3660)
    weekly: int | None = Field(None, ge=1, le=520)
    monthly: int | None = Field(None, ge=1, le=1200)
    max_age: Duration | None = None

    @model_validator(mode="after")
    def _positive_age(self) -> RetentionConfig:
        if self.max_age is not None and self.max_age <= timedelta(0):
            raise ValueError("max_age must be longer than 0s")
        return self


class DrillCheck(StrictModel):
    """One check a drill runs on the restored copy: `{sql: "select count(*) from orders", min: 1}` (PostgreSQL:
    the first column of the first row, a number) or `{keys: "*", min: 1}` (Redis: keys matching the pattern)."""

    sql: str | None = Field(None, min_length=1, max_length=2000)
    keys: str | None = Field(None, min_length=1, max_length=200)
    min: int | None = None
    max: int | None = None

    @model_validator(mode="after")
    def _one(self) -> DrillCheck:
        if (self.sql is None) == (self.keys is None):
            raise ValueError("a check has exactly one of sql (PostgreSQL) or keys (Redis)")
        if self.min is None and self.max is None:
            raise ValueError("a check needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is more than max ({self.max})")
        return self

    @property
    def label(self) -> str:
        """`select count(*) from orders >= 1`."""
        what = self.sql if self.sql is not None else f"keys {self.keys}"
        bounds = [f">= {self.min}"] if self.min is not None else []
        bounds += [f"<= {self.max}"] if self.max is not None else []
        return f"{what} {' and '.join(bounds)}"


class _TargetCommon(StrictModel):
    """What every target has besides its engine's settings."""

    schedule: CronText | None = None
    retention: RetentionConfig = RetentionConfig()
    rpo: Duration | None = None
    verify_schedule: CronText | None = None
    rto: Duration | None = Field(None, description="The longest a restore may take; measured by each drill.")
    checks: tuple[DrillCheck, ...] = ()
    restore_into: tuple[EnvVarName, ...] = Field((), description="Variables `/backup restore … into <VAR>` may name.")
    channel: SlackChannelRef | None = None


class PostgresTarget(_TargetCommon, PostgresSettings):
    """`targets.<name>: {kind: postgres, dsn_env: …, storage: main, …}`."""

    storage: str


class RedisTarget(_TargetCommon, RedisSettings):
    """`targets.<name>: {kind: redis, url_env: …, storage: main, …}`."""

    storage: str


class RdsTarget(_TargetCommon, RdsSettings):
    """`targets.<name>: {kind: rds_snapshot, instance: …, region: …, copy_to: …, export_to: …}`."""


class ElastiCacheTarget(_TargetCommon, ElastiCacheSettings):
    """`targets.<name>: {kind: elasticache_snapshot, replication_group: …, region: …, storage: main}`: the snapshot
    is exported into `storage` (an S3 storage in the same region)."""

    storage: str


TargetConfig = Annotated[PostgresTarget | RedisTarget | RdsTarget | ElastiCacheTarget, Field(discriminator="kind")]
ENGINES = ("postgres", "redis", "rds_snapshot", "elasticache_snapshot")


class BackupsSection(StrictModel):
    """`backups:` — storage, targets, and who may do what."""

    channel: SlackChannelRef | None = None
    storage: dict[TargetName, StorageSettings] = Field(default_factory=dict)
    targets: dict[TargetName, TargetConfig] = Field(default_factory=dict)
    operators: str = "admins"
    restore_approval: ApprovalConfig = ApprovalConfig(approvers="admins")
    lock_ttl: Duration = timedelta(seconds=30)
    history_keep: int = Field(1000, ge=10, le=100_000)
    rpo_check_every: Duration = timedelta(minutes=5)

    @model_validator(mode="after")
    def _cross_check(self) -> BackupsSection:
        problems = []
        for name, target in self.targets.items():
            storage = getattr(target, "storage", None)
            if storage is not None and storage not in self.storage:
                known = ", ".join(self.storage) or "none are defined under backups.storage"
                problems.append(f"targets.{name}.storage: storage '{storage}' is not defined (storages: {known})")
            if isinstance(target, RdsTarget) and target.restore_into:
                problems.append(
                    f"targets.{name}.restore_into: an RDS snapshot is restored as a new instance "
                    f"(`/backup restore {name} <id> as <new-instance>`), not into a variable"
                )
            problems += _drill_problems(name, target)
            problems += _storage_problems(name, target, self.storage)
        if self.lock_ttl < timedelta(seconds=3):
            problems.append("lock_ttl must be at least 3s (the lock is renewed every third of it)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def roles_named(self) -> list[tuple[str, str]]:
        """(key path, role) of every role this section names, for the check that they exist."""
        return [
            ("backups.operators", self.operators),
            ("backups.restore_approval.approvers", self.restore_approval.approvers),
        ]


def _drill_problems(name: str, target: TargetConfig) -> list[str]:
    """`rto` and `checks` only mean something with drills, and checks must suit the engine."""
    problems = []
    if target.rto is not None and not target.verify_schedule:
        problems.append(
            f"targets.{name}.rto: an RTO is measured by timed drills; set targets.{name}.verify_schedule "
            'too (a cron expression such as "0 4 * * 0"), or remove rto'
        )
    if target.rto is not None and target.rto <= timedelta(0):
        problems.append(f"targets.{name}.rto: must be longer than 0s")
    for index, check in enumerate(target.checks):
        where = f"targets.{name}.checks[{index}]"
        if isinstance(target, RdsTarget):
            problems.append(
                f"{where}: an RDS drill checks that the snapshot restores into an available instance; "
                "it runs no sql or keys checks"
            )
        elif isinstance(target, PostgresTarget) and check.keys is not None:
            problems.append(f"{where}.keys: a PostgreSQL target's checks use sql")
        elif not isinstance(target, PostgresTarget) and check.sql is not None:
            problems.append(f'{where}.sql: a Redis target\'s checks use keys (a pattern such as "*" or "session:*")')
    return problems


def _storage_problems(name: str, target: TargetConfig, storage: dict[str, StorageSettings]) -> list[str]:
    """Off-box copies need somewhere else: another region, an S3 storage that exists."""
    problems = []
    if isinstance(target, RdsTarget) and target.copy_to is not None and target.copy_to.region == target.region:
        problems.append(
            f"targets.{name}.copy_to.region: '{target.copy_to.region}' is the instance's own region; "
            "an off-box copy must go to another region"
        )
    if isinstance(target, RdsTarget) and target.copy_to is not None and target.region is None:
        problems.append(f"targets.{name}.region: set the source region when copy_to is used (CopyDBSnapshot needs it)")
    if isinstance(target, RdsTarget) and target.export_to is not None:
        found = storage.get(target.export_to.storage)
        if found is None:
            known = ", ".join(storage) or "none are defined under backups.storage"
            problems.append(
                f"targets.{name}.export_to.storage: storage '{target.export_to.storage}' is not defined "
                f"(storages: {known})"
            )
        elif found.kind != "s3":
            problems.append(
                f"targets.{name}.export_to.storage: '{target.export_to.storage}' is a {found.kind} "
                "storage; RDS exports only to S3"
            )
    if isinstance(target, ElastiCacheTarget) and target.storage in storage and storage[target.storage].kind != "s3":
        problems.append(
            f"targets.{name}.storage: '{target.storage}' is a {storage[target.storage].kind} storage; "
            "ElastiCache exports snapshots only to an S3 bucket"
        )
    return problems
