"""The audit log: every state-changing action and every refusal, appended to a Redis Stream, never trimmed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from bot.store import Store

Result = Literal["ok", "denied", "refused", "failed", "error"]


class AuditRecord(BaseModel):
    """One audit entry as stored in Redis (validated when read back)."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    actor: str
    action: str
    target: str = ""
    channel: str = ""
    result: Result
    detail: str = ""
    id: str = ""


@dataclass(frozen=True)
class AuditLog:
    """Appends to and reads from the audit stream."""

    store: Store
    clock: Callable[[], datetime]

    async def record(
        self, *, actor: str, action: str, result: Result, target: str = "", channel: str = "", detail: str = ""
    ) -> str:
        """Appends one record and returns its stream id."""
        fields = {
            "at": self.clock().isoformat(),
            "actor": actor,
            "action": action,
            "target": target,
            "channel": channel,
            "result": result,
            "detail": detail[:2000],
        }
        stream = self.store.keys.audit_stream()
        entry_id = str(await self.store.call("audit_append", self.store.redis.xadd(stream, fields)))
        await self.store.replicated(stream)  # "recorded" must survive a failover, like the change it records
        return entry_id

    async def recent(self, count: int) -> list[AuditRecord]:
        """The newest `count` records, newest first; entries that fail validation are skipped."""
        stream = self.store.keys.audit_stream()
        entries = await self.store.call("audit_read", self.store.redis.xrevrange(stream, count=count))
        records: list[AuditRecord] = []
        for entry_id, fields in entries:
            try:
                records.append(AuditRecord.model_validate({**fields, "id": entry_id}))
            except ValidationError:
                continue
        return records
