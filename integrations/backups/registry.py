"""Which backup storages and engines exist: the settings unions the configuration validates against, and the
factories. A new storage or engine is one module plus one line here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import Field

from integrations.backups import elasticache, local, postgres, rds, redis_rdb, s3
from integrations.backups.base import BackupEngine, BackupStore
from integrations.backups.elasticache import ElastiCacheSettings, ElastiCacheSnapshotter
from integrations.backups.local import LocalStorageSettings
from integrations.backups.postgres import PostgresSettings
from integrations.backups.rds import RdsSettings, RdsSnapshotEngine
from integrations.backups.redis_rdb import RedisSettings
from integrations.backups.s3 import S3StorageSettings

StorageSettings = Annotated[S3StorageSettings | LocalStorageSettings, Field(discriminator="kind")]
"""A `backups.storage.<name>` section, chosen by `kind`."""


def build_store(settings: S3StorageSettings | LocalStorageSettings, *, environ: Mapping[str, str]) -> BackupStore:
    """The `BackupStore` for validated settings."""
    if isinstance(settings, S3StorageSettings):
        return s3.build(settings, environ=environ)
    return local.build(settings, environ=environ)


def build_engine(settings: PostgresSettings | RedisSettings, *, environ: Mapping[str, str]) -> BackupEngine:
    """The streaming `BackupEngine` for a PostgreSQL or Redis target."""
    if isinstance(settings, PostgresSettings):
        return postgres.build(settings, environ=environ)
    return redis_rdb.build(settings, environ=environ)


def build_snapshotter(settings: RdsSettings, *, environ: Mapping[str, str]) -> RdsSnapshotEngine:
    """The snapshot engine of an RDS target."""
    return rds.build(settings, environ=environ)


def build_cache_snapshotter(settings: ElastiCacheSettings, *, environ: Mapping[str, str]) -> ElastiCacheSnapshotter:
    """The snapshot-and-export engine of an ElastiCache target."""
    return elasticache.build(settings, environ=environ)
