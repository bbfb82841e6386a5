"""The audit log: every state-changing action and every refusal, appended to a Redis Stream; trimmed past
`retention.audit` by the leader, and exported as JSON lines (`chatops audit export`) to keep it elsewhere first."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from bot.platform.store import Store, stream_fields, text

Result = Literal["ok", "partial", "denied", "refused", "failed", "error"]
"""How an audited action ended (`partial`: a page reached some of its targets, bot/oncall/pager.py)."""


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


# The fields of an exported record, in this order: what `chatops audit export` promises to keep stable.
EXPORT_FIELDS = ("id", "at", "actor", "action", "target", "channel", "result", "detail")


def export_line(record: AuditRecord) -> str:
    """One record as one JSON line: the EXPORT_FIELDS in order, `at` in ISO 8601 UTC."""
    values = {**record.model_dump(), "at": record.at.astimezone(UTC).isoformat()}
    return json.dumps({name: values[name] for name in EXPORT_FIELDS}, ensure_ascii=False)


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
        entry_id = text(await self.store.call("audit_append", self.store.redis.xadd(stream, stream_fields(fields))))
        await self.store.replicated(stream)  # "recorded" must survive a failover, like the change it records
        return entry_id

    async def recent(self, count: int) -> list[AuditRecord]:
        """The newest `count` records, newest first; entries that fail validation are skipped."""
        stream = self.store.keys.audit_stream()
        entries = await self.store.xrevrange("audit_read", stream, count=count)
        records: list[AuditRecord] = []
        for entry_id, fields in entries:
            try:
                records.append(AuditRecord.model_validate({**fields, "id": entry_id}))
            except ValidationError:
                continue
        return records

    async def between(
        self, since: datetime, until: datetime | None = None, page: int = 1000
    ) -> AsyncIterator[AuditRecord]:
        """Records with `since` <= at < `until`, oldest first, read a page at a time (memory stays flat however
        long the log); unreadable entries are skipped. For export, not for a request: it reads the whole stream."""
        stream = self.store.keys.audit_stream()
        start = "-"
        while True:
            entries = await self.store.xrange("audit_export", stream, start, count=page)
            for entry_id, fields in entries:
                try:
                    record = AuditRecord.model_validate({**fields, "id": entry_id})
                except ValidationError:
                    continue
                at = record.at if record.at.tzinfo else record.at.replace(tzinfo=UTC)  # older records: UTC
                if at >= since and (until is None or at < until):
                    yield record
            if len(entries) < page:
                return
            start = f"({entries[-1][0]}"

    async def trim(self, cutoff: datetime, batch: int) -> int:
        """Removes about `batch` entries at most appended before `cutoff` (whole stream nodes: `MINID ~ … LIMIT`,
        never a long block). Stream ids are Redis's clock, `at` is ours; in production they agree."""
        minid = f"{max(int(cutoff.timestamp() * 1000), 0)}-0"
        stream = self.store.keys.audit_stream()
        return int(
            await self.store.call(
                "audit_trim", self.store.redis.xtrim(stream, minid=minid, approximate=True, limit=batch)
            )
        )
