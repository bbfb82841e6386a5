"""The configured backup targets and what reaches them: a target's configuration, its recorded backups, the channel
its messages go to, and the storage, dump engines and RDS snapshotters it uses (each built once, on first use, and
closed by `aclose`). Shared by running, verifying and restoring backups."""

from __future__ import annotations

import json

from bot.backups.config import (
    BackupsSection,
    ElastiCacheTarget,
    RdsTarget,
    TargetConfig,
)
from bot.backups.model import BackupRecord
from bot.backups.readback import StoredObject
from bot.backups.runs import quietly
from bot.backups.store import BackupStore as BackupRecords
from bot.platform.errors import UserFacingError
from integrations.backups.base import BackupEngine, BackupStore
from integrations.backups.elasticache import ElastiCacheSnapshotter
from integrations.backups.envelope import Envelope
from integrations.backups.rds import RdsSnapshotEngine
from integrations.backups.registry import (
    build_cache_snapshotter,
    build_engine,
    build_snapshotter,
    build_store,
)
from integrations.backups.s3 import S3BackupStore


class BackupTargets:
    """Lookups of targets and backups, and the clients a target's runs use; one per `BackupService`."""

    def __init__(
        self,
        section: BackupsSection,
        *,
        announce_channel: str | None,
        records: BackupRecords,
        environ: dict[str, str],
    ) -> None:
        self.section = section
        self._announce_channel = announce_channel
        self.records = records
        self.environ = environ  # shared, not copied: the clients read the environment of the service that owns them
        self._stores: dict[str, BackupStore] = {}
        self._engines: dict[str, BackupEngine] = {}
        self._snapshotters: dict[str, RdsSnapshotEngine] = {}
        self._cache_snapshotters: dict[str, ElastiCacheSnapshotter] = {}
        self._envelopes: dict[str, Envelope] = {}

    def target(self, name: str) -> TargetConfig:
        """A target's configuration; a refusal naming the known ones otherwise."""
        target = self.section.targets.get(name)
        if target is None:
            known = (
                ", ".join(f"`{t}`" for t in self.section.targets)
                or "none are configured (add them under `backups.targets`)"
            )
            raise UserFacingError(f"There is no backup target `{name}`. Targets: {known}.")
        return target

    async def backup(self, backup_id: str, *, target: str | None = None) -> BackupRecord:
        """A recorded backup (of `target`, when given); a refusal otherwise."""
        record = await self.records.get(backup_id)
        if record is None or (target is not None and record.target != target):
            where = f" of `{target}`" if target else ""
            hint = f" See `/backup list {target}`." if target else " See `/backup list <target>`."
            raise UserFacingError(f"There is no backup `{backup_id}`{where}.{hint}")
        return record

    def channel(self, target: str, fallback: str | None) -> str | None:
        """Where the target's messages go: its channel, the backups channel, the announce channel, or `fallback`."""
        config = self.target(target)
        return config.channel or self.section.channel or self._announce_channel or fallback

    def store_for(self, target: str) -> BackupStore:
        """The storage a target writes to (built once)."""
        config = self.target(target)
        name = getattr(config, "storage", None)
        assert name is not None
        if name not in self._stores:
            self._stores[name] = build_store(self.section.storage[name], environ=self.environ)
        return self._stores[name]

    def envelope_for(self, target: str) -> Envelope | None:
        """The encryption of the storage a target writes to (built once), None when it stores plain objects."""
        name: str | None = getattr(self.target(target), "storage", None)
        if name is None:
            return None
        settings = self.section.storage[name]
        if settings.encryption is None:
            return None
        if name not in self._envelopes:
            self._envelopes[name] = Envelope(
                settings.encryption, environ=self.environ, region=getattr(settings, "region", None)
            )
        return self._envelopes[name]

    def read_back(self, record: BackupRecord) -> StoredObject:
        """A recorded backup's object, to check whole (`check`) and then stream decrypted (`plaintext`)."""
        return StoredObject(self.store_for(record.target), self.envelope_for(record.target), record)

    def engine(self, target: str) -> BackupEngine:
        """The dump engine of a PostgreSQL or Redis target (built once)."""
        config = self.target(target)
        if target not in self._engines:
            assert not isinstance(config, (RdsTarget, ElastiCacheTarget))
            self._engines[target] = build_engine(config, environ=self.environ)
        return self._engines[target]

    def snapshotter(self, target: str) -> RdsSnapshotEngine:
        """The snapshot engine of an RDS target (built once)."""
        config = self.target(target)
        assert isinstance(config, RdsTarget)
        if target not in self._snapshotters:
            self._snapshotters[target] = build_snapshotter(config, environ=self.environ)
        return self._snapshotters[target]

    def cache_snapshotter(self, target: str) -> ElastiCacheSnapshotter:
        """The snapshot-and-export engine of an ElastiCache target (built once)."""
        config = self.target(target)
        assert isinstance(config, ElastiCacheTarget)
        if target not in self._cache_snapshotters:
            self._cache_snapshotters[target] = build_cache_snapshotter(config, environ=self.environ)
        return self._cache_snapshotters[target]

    def s3_store(self, name: str) -> S3BackupStore:
        """The S3 storage `name` (built once); config validation made sure it is S3."""
        if name not in self._stores:
            self._stores[name] = build_store(self.section.storage[name], environ=self.environ)
        store = self._stores[name]
        assert isinstance(store, S3BackupStore)
        return store

    async def write_metadata(self, record: BackupRecord) -> None:
        """The JSON next to the backup object (PostgreSQL and Redis targets)."""
        if record.key is None or record.storage is None:
            return
        data = record.model_dump(mode="json", exclude={"lock_token", "channel", "message_ts", "upload_id"})
        data["outcome"] = record.state.value
        await self.store_for(record.target).put_small(
            record.key.rsplit(".", 1)[0] + ".json", json.dumps(data, indent=2).encode()
        )

    async def aclose(self) -> None:
        """Releases storage and AWS clients."""
        for store in self._stores.values():
            await quietly(store.aclose())
        for snapshotter in self._snapshotters.values():
            await quietly(snapshotter.aclose())
        for cache in self._cache_snapshotters.values():
            await quietly(cache.aclose())
        for envelope in self._envelopes.values():
            await quietly(envelope.aclose())
