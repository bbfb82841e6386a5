"""The alerts backups raise through the alert pipeline (a failed run, an RPO breach, a failed verification, a
failed off-box copy, a failed DR drill, a drill over its RTO): each raised once per target and kind until it
resolves, with the raised ones remembered in Redis."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Literal

from bot.alerts.pipeline import AlertPipeline
from bot.backups.store import BackupStore as BackupRecords
from integrations.alerts.model import Alert

log = logging.getLogger(__name__)

ALERT_NAMES = {
    "failed": "BackupFailed",
    "rpo": "BackupRPOBreached",
    "verify": "BackupVerificationFailed",
    "offbox": "BackupOffBoxCopyFailed",
    "drill": "BackupDrillFailed",
    "rto": "BackupDrillRTOExceeded",
}
WARNINGS = frozenset({"verify", "offbox"})


class BackupAlerts:
    """Raises and resolves a target's `failed`, `rpo` and `verify` alerts."""

    def __init__(self, *, records: BackupRecords, pipeline: AlertPipeline, clock: Callable[[], datetime]) -> None:
        self._records = records
        self._pipeline = pipeline
        self._clock = clock

    async def fire(self, target: str, kind: str, title: str, summary: str, *, once: bool = False) -> None:
        """Raises the alert; with `once`, only when it is not raised already."""
        new = await self._records.mark_firing(f"{target}:{kind}")
        if once and not new:
            return
        await self._ingest(target, kind, "firing", title, summary)

    async def resolve(self, target: str, kind: str, summary: str) -> None:
        """Resolves the alert if it is raised."""
        if await self._records.clear_firing(f"{target}:{kind}"):
            await self._ingest(target, kind, "resolved", f"Backup {kind} alert for {target} resolved", summary)

    async def _ingest(
        self, target: str, kind: str, status: Literal["firing", "resolved"], title: str, summary: str
    ) -> None:
        now = self._clock()
        alert = Alert(
            source="chatops",
            fingerprint=f"chatops:backup:{target}:{kind}",
            status=status,
            title=title[:200],
            severity="warning" if kind in WARNINGS else "critical",
            labels={"alertname": ALERT_NAMES.get(kind, "Backup"), "target": target, "component": "backups"},
            annotations={},
            summary=summary[:1000],
            starts_at=now,
            ends_at=now if status == "resolved" else None,
            links={},
        )
        try:
            await self._pipeline.ingest([alert])
        except Exception:
            log.exception("could not raise the %s alert of %s", kind, target)
