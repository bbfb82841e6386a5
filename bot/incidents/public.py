"""Public updates of incidents sent to Statuspage, durably.

`/incident public <text>` (and a status change, a severity change or the resolution of an incident made public)
queues one operation in the same Redis transaction that records the change: a list per incident keeps them in
order, and a sorted set says when each incident's queue is due. The leader's tick claims a due incident with a
lease, sends the head of its queue, and only when Statuspage has accepted it pops it and records, in one
transaction, the Statuspage incident id and a timeline entry naming the Statuspage ids. A process that dies
mid-call leaves the operation at the head, marked attempted: the next attempt looks on Statuspage first (the
incident created for us, found by its metadata; the update already on top of the incident) so nothing is sent
twice. A rate limit, a 5xx or no answer puts the queue back with exponential backoff (Retry-After when given);
a 4xx is Statuspage saying the request is wrong: it is dropped, logged with Statuspage's message and noted on
the timeline, and the queue goes on.

Only what was given with `public` leaves: the public title and text, the incident's status, and component
statuses from the configured service -> component map. Internal updates, names, channels never do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from bot.incidents.model import Incident, TimelineEntry, TimelineKind
from bot.incidents.recorder import SYSTEM
from bot.incidents.store import IncidentStore
from bot.platform.store import Pipe, optional_text, stream_fields, text, texts
from integrations.statuspage.statuspage import (
    ComponentStatus,
    StatuspageClient,
    StatuspageRejected,
    StatuspageUnavailable,
)

log = logging.getLogger(__name__)

LEASE_SECONDS = 60
FIRST_BACKOFF_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 300.0
MAX_TITLE = 120

_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], member) end
return due
"""
# Pops the head operation (only if it is still the one sent) and makes the queue due now, or forgets it when empty.
_POP = """
if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then redis.call('LPOP', KEYS[1]) end
if redis.call('LLEN', KEYS[1]) > 0 then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
else redis.call('ZREM', KEYS[2], ARGV[2]) end
return 1
"""


class PublicOp(BaseModel):
    """One public update waiting for Statuspage (JSON in the incident's queue)."""

    model_config = ConfigDict(frozen=True)

    incident: str
    name: str
    status: Literal["investigating", "identified", "monitoring", "resolved"]
    body: str = ""
    components: dict[str, ComponentStatus] = {}
    queued_at: datetime
    attempts: int = 0
    attempted: bool = False


def public_title(text: str) -> str:
    """The public title from the first public text: its first sentence, at most MAX_TITLE characters."""
    first = " ".join(text.split())
    for end in (". ", "! ", "? "):
        first = first.split(end, 1)[0]
    first = first.rstrip(".!? ")
    return first if len(first) <= MAX_TITLE else first[: MAX_TITLE - 1].rstrip() + "…"


def backoff(attempts: int, retry_after: float | None) -> float:
    """Seconds before the next attempt: Retry-After when Statuspage gave one, else doubling from 2 s up to 5 min."""
    if retry_after is not None:
        return min(max(retry_after, 1.0), MAX_BACKOFF_SECONDS)
    return min(FIRST_BACKOFF_SECONDS * 2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS)


class PublicUpdates:
    """Queues public updates with the change that makes them, and sends them to Statuspage from the tick."""

    def __init__(self, *, store: IncidentStore, client: StatuspageClient, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._client = client
        self._clock = clock
        self._claim = store.redis.register_script(_CLAIM)

    def components(self, incident: Incident) -> dict[str, ComponentStatus]:
        """The Statuspage components the incident affects and the status it gives them (operational once resolved)."""
        settings = self._client.settings
        component = settings.components.get(incident.service)
        if component is None:
            return {}
        if not incident.open:
            return {component: "operational"}
        return {component: settings.severity_status.get(incident.severity, "major_outage")}

    def queue(self, pipe: Pipe, incident: Incident, body: str = "") -> None:
        """Queues the incident's public state (and `body`, public text) in the transaction that changes it."""
        if not incident.public:
            return
        op = PublicOp(
            incident=incident.id,
            name=incident.public_title,
            status=incident.status,
            body=body,
            components=self.components(incident),
            queued_at=self._clock(),
        )
        pipe.rpush(self._store.k("public", incident.id), op.model_dump_json())
        # LT adds it, or brings a queue waiting out a backoff forward: a new update is a reason to try again now.
        pipe.zadd(self._store.k("public_due"), {incident.id: self._clock().timestamp()}, lt=True)

    async def pending(self, incident_id: str) -> list[PublicOp]:
        """The operations not accepted yet, oldest first."""
        key = self._store.k("public", incident_id)
        raws = texts(await self._store.call("public_pending", self._store.redis.lrange(key, 0, -1)))
        return [PublicOp.model_validate_json(raw) for raw in raws]

    async def statuspage_id(self, incident_id: str) -> str | None:
        """The Statuspage incident created for this incident, once Statuspage accepted it."""
        return optional_text(
            await self._store.call("public_sp_id", self._store.redis.hget(self._store.k("statuspage"), incident_id))
        )

    async def tick(self) -> int:
        """Sends the head of every due queue; returns how many operations Statuspage accepted."""
        now = self._clock()
        claimed = await self._store.call(
            "public_claim",
            self._claim(
                keys=[self._store.k("public_due")], args=[now.timestamp(), now.timestamp() + LEASE_SECONDS, 50]
            ),
        )
        accepted = 0
        for member in claimed:
            incident_id = str(member)
            try:
                while await self._send_head(incident_id):
                    accepted += 1
            except Exception:
                log.exception("public update of %s failed; it comes due again in %ss", incident_id, LEASE_SECONDS)
        return accepted

    async def _send_head(self, incident_id: str) -> bool:
        """Sends the head operation; True if accepted and more may follow, False when the queue waits or is empty."""
        key = self._store.k("public", incident_id)
        head = await self._store.call("public_head", self._store.redis.lindex(key, 0))
        if head is None:
            await self._done(incident_id, "")
            return False
        raw = text(head)
        try:
            op = PublicOp.model_validate_json(raw)
        except ValidationError:
            log.error("dropping an unreadable public update of %s", incident_id)
            await self._done(incident_id, raw)
            return True
        sp_id = await self.statuspage_id(incident_id)
        try:
            answer = await self._looked_up(op, sp_id) if op.attempted else None
            if answer is None:
                marked = op.model_copy(update={"attempted": True, "attempts": op.attempts + 1})
                await self._store.call("public_mark", self._store.redis.lset(key, 0, marked.model_dump_json()))
                raw = marked.model_dump_json()
                answer = await self._send(op, sp_id)
        except StatuspageUnavailable as error:
            wait = backoff(op.attempts + 1, error.retry_after)
            log.warning("Statuspage did not take %s's public update (%s); retrying in %.0fs", incident_id, error, wait)
            await self._store.call(
                "public_later",
                self._store.redis.zadd(
                    self._store.k("public_due"), {incident_id: (self._clock() + timedelta(seconds=wait)).timestamp()}
                ),
            )
            return False
        except StatuspageRejected as error:
            log.error("Statuspage refused %s's public update: %s", incident_id, error)
            note = f"Statuspage refused the public update ({error.status}): {error.message}"
            await self._done(incident_id, raw, note=note)
            return True
        update = _first_update(answer)
        done = f"On Statuspage: incident {answer.get('id')}" + (f", update {update}" if update else "")
        done += f" ({op.status})"
        await self._done(incident_id, raw, sp_id=str(answer.get("id") or ""), note=done, kind="statuspage")
        return True

    async def _send(self, op: PublicOp, sp_id: str | None) -> dict[str, Any]:
        if sp_id is None:
            return await self._client.create_incident(
                name=op.name, status=op.status, body=op.body, components=op.components, chatops_id=op.incident
            )
        return await self._client.update_incident(sp_id, status=op.status, body=op.body, components=op.components)

    async def _looked_up(self, op: PublicOp, sp_id: str | None) -> dict[str, Any] | None:
        """What an earlier attempt whose answer was lost did: the incident it created, or the incident if the update
        is on top of it already; None if it did not get through."""
        if sp_id is None:
            return await self._client.find_incident(op.incident)
        incident = await self._client.get_incident(sp_id)
        updates = incident.get("incident_updates") or []
        latest = updates[0] if updates and isinstance(updates[0], dict) else {}
        if latest.get("status") != op.status or (latest.get("body") or "") != op.body:
            return None
        # Statuspage lists what each update did to components (affected_components: code, new_status).
        affected = {
            str(c.get("code")): c.get("new_status")
            for c in latest.get("affected_components") or []
            if isinstance(c, dict)
        }
        if any(affected.get(component) != status for component, status in op.components.items()):
            return None
        return incident

    async def _done(
        self,
        incident_id: str,
        raw: str,
        *,
        sp_id: str = "",
        note: str = "",
        kind: TimelineKind = "note",
    ) -> None:
        """Pops `raw` off the queue, and records the Statuspage id and a timeline entry, in one transaction."""
        async with self._store.redis.pipeline(transaction=True) as pipe:
            if sp_id:
                pipe.hset(self._store.k("statuspage"), incident_id, sp_id)
            if note:
                entry = TimelineEntry(at=self._clock(), kind=kind, by=SYSTEM, text=note)
                pipe.xadd(self._store.k("timeline", incident_id), stream_fields(entry.fields()))
            # EVAL, not the registered script's EVALSHA: a Redis Cluster pipeline does not load scripts first.
            pipe.eval(
                _POP,
                2,
                self._store.k("public", incident_id),
                self._store.k("public_due"),
                raw,
                incident_id,
                self._clock().timestamp(),
            )
            await self._store.call("public_done", pipe.execute())


def _first_update(incident: dict[str, Any]) -> str:
    updates = incident.get("incident_updates") or []
    return str(updates[0].get("id") or "") if updates and isinstance(updates[0], dict) else ""
