"""PagerDuty's outbox: every Events API v2 event chatops owes PagerDuty (trigger from an escalation step,
acknowledge and resolve when the alert group is acknowledged or resolved anywhere else) is written to Redis in the
same transaction as the group change that calls for it, then sent until PagerDuty answers 202.

An event is a hash entry (`{alerts}:pd_events`, id -> JSON; the integration key is not stored, only its name) and
a member of a due set (`{alerts}:pd_due`, id -> when to try next). Sending claims due ids with a lease (a process
that dies mid-send leaves them to come due again), in order per group and integration key (an acknowledge never
overtakes its trigger), and records the outcome: 202 forgets the event; 429, 5xx or an unreachable PagerDuty tries
again later (Retry-After when given, else doubling backoff up to 5 minutes); 400 is logged with PagerDuty's own
error, counted, kept in `{alerts}:pd_dead` and said in the alert's thread, never retried. Ids are deterministic
(page deadline or group, action, key name), so a retried page or a replayed change writes the same entry once;
PagerDuty de-duplicates a trigger sent twice after a crash by its `dedup_key` (the group id).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from bot.alerts.model import AlertGroup
from bot.alerts.pipeline import AlertPipeline
from bot.alerts.store import AlertStore
from bot.platform.store import Pipe
from bot.text.blocks import external_text
from integrations.paging.pagerduty import Action, PagerDuty, follow_up_body, trigger_body

log = logging.getLogger(__name__)

EVENTS = "pd_events"
DUE = "pd_due"
DEAD = "pd_dead"
FIRST_RETRY = timedelta(seconds=2)
MAX_RETRY = timedelta(minutes=5)
POLL_SECONDS = 1.0
_ORDER = {"trigger": 0, "acknowledge": 1, "resolve": 2}


def retry_delay(attempts: int, retry_after: float | None) -> timedelta:
    """How long to wait after `attempts` failed tries: PagerDuty's Retry-After if it gave one, else 2 s doubling
    to 5 minutes (its docs ask for "a backoff of a few minutes" on 429)."""
    if retry_after is not None:
        return min(max(timedelta(seconds=retry_after), timedelta(seconds=1)), MAX_RETRY * 2)
    return min(FIRST_RETRY * (2 ** max(attempts - 1, 0)), MAX_RETRY)


def severity_of(group: AlertGroup) -> str:
    """PagerDuty's severity for a group: ours (critical, warning, info), or the alert's own `severity` label when it
    is one of PagerDuty's (`error`)."""
    labels = next(iter(group.members.values())).labels if group.members else {}
    label = labels.get("severity", "")
    return label if label == "error" else group.severity


def trigger_for(group: AlertGroup, *, permalink: str | None) -> dict[str, Any]:
    """The trigger event of a group: its title and summary, the labels and links of its alerts, the Slack link."""
    first = next(iter(group.members.values()), None)
    summary = group.title
    if first is not None and first.summary and len(group.members) == 1:
        summary = f"{group.title}: {first.summary}"
    labels = dict(first.labels) if first is not None else {}
    links = [(name, url) for member in group.members.values() for name, url in sorted(member.links.items())]
    if permalink:
        links.insert(0, ("Slack message", permalink))
    return trigger_body(
        dedup_key=group.id,
        summary=summary,
        source=labels.get("instance") or labels.get("service") or "chatops",
        severity=severity_of(group),
        timestamp=group.created_at,
        component=labels.get("service"),
        group=labels.get("alertname"),
        links=links,
        custom_details={
            "chatops_alert": group.id,
            "firing": len(group.firing),
            "labels": labels,
            "links": {name: url for name, url in links},
        },
    )


class PagerDutyOutbox:
    """Queues PagerDuty events durably and sends them until PagerDuty takes them."""

    def __init__(
        self,
        *,
        pagerduty: PagerDuty | None,
        alerts: AlertPipeline,
        store: AlertStore,
        clock: Callable[[], datetime],
        claim_lease: timedelta = timedelta(seconds=30),
    ) -> None:
        self.pagerduty = pagerduty
        self._alerts = alerts
        self._store = store  # the alert groups' store: the outbox rides on their changes
        self._clock = clock
        self._lease = max(
            claim_lease, timedelta(seconds=3 * (pagerduty.events.settings.timeout.total_seconds() if pagerduty else 10))
        )
        self._wake = asyncio.Event()
        self._sending = asyncio.Lock()
        self._seq = 0

    # -- queueing (inside a group change's transaction) -----------------------------------------------------

    def queue(self, pipe: Pipe, event_id: str, *, group_id: str, routing: str, body: dict[str, Any]) -> None:
        """Queues one event in `pipe` (a MULTI): recorded before anything is attempted, due now."""
        now = self._clock()
        self._seq += 1
        record = {
            "id": event_id,
            "group": group_id,
            "routing": routing,
            "action": body["event_action"],
            "body": body,
            "attempts": 0,
            "queued_at": now.isoformat(),
            "order": [now.timestamp(), _ORDER[body["event_action"]], self._seq],
        }
        pipe.hsetnx(self._store.k(EVENTS), event_id, json.dumps(record))
        pipe.zadd(self._store.k(DUE), {event_id: now.timestamp()}, nx=True)

    def queue_trigger(
        self,
        pipe: Pipe,
        group: AlertGroup,
        *,
        page: str,
        routing: str,
        permalink: str | None,
    ) -> None:
        """Queues the trigger of page `page` (a deadline name: one trigger per page however often it is retried)."""
        self.queue(
            pipe,
            f"{page}|trigger|{routing}",
            group_id=group.id,
            routing=routing,
            body=trigger_for(group, permalink=permalink),
        )

    def follow_up(self, pipe: Pipe, before: AlertGroup, after: AlertGroup) -> None:
        """An `AlertStore` observer: a group that triggered PagerDuty and is now acknowledged or resolved (not by
        PagerDuty itself) queues the acknowledge or resolve, once per group and integration key."""
        if self.pagerduty is None or not after.pagerduty_routes:
            return
        action: Action | None
        if after.state == "resolved" and before.state != "resolved":
            action = "resolve" if after.resolved_via != "pagerduty" else None
        elif after.acked_by is not None and before.acked_by is None:
            action = "acknowledge" if after.acked_via != "pagerduty" else None
        else:
            action = None
        if action is None:
            return
        for routing in after.pagerduty_routes:
            self.queue(
                pipe,
                f"{after.id}|{action}|{routing}",
                group_id=after.id,
                routing=routing,
                body=follow_up_body(action, after.id),
            )
        self.kick()

    def kick(self) -> None:
        """Wakes the sending loop (something new is due)."""
        self._wake.set()

    # -- sending --------------------------------------------------------------------------------------------

    async def drain(self) -> int:
        """Sends every event due now, in order per group and key; returns how many PagerDuty accepted."""
        if self.pagerduty is None:
            return 0
        async with self._sending:
            return await self._drain()

    async def _drain(self) -> int:
        now = self._clock()
        lease = self._lease.total_seconds()
        claimed = await self._store.claim_leased(DUE, now, lease_seconds=lease, count=100)
        if not claimed:
            return 0
        raw = await self._store.redis.hgetall(self._store.k(EVENTS))
        pending = {}
        for key, value in raw.items():
            with contextlib.suppress(ValueError, TypeError):
                pending[str(key)] = json.loads(value)
        accepted = 0
        for event_id in sorted(claimed, key=lambda i: pending.get(i, {}).get("order", [0, 0, 0])):
            record = pending.get(event_id)
            if record is None:  # already sent by someone else, or unreadable
                await self._store.redis.zrem(self._store.k(DUE), event_id)
                continue
            earlier = [r for r in pending.values() if _same_line(r, record) and r["order"] < record["order"]]
            if earlier:  # its trigger (or acknowledge) is still on its way: wait for it, never overtake it
                await self._store.redis.zadd(self._store.k(DUE), {event_id: self._clock().timestamp() + 1})
                continue
            if record["action"] == "trigger" and any(
                _same_line(r, record) and r["action"] == "resolve" for r in pending.values()
            ):
                await self._drop_unsent_line(record, pending)  # resolved before PagerDuty took the trigger
                continue
            if await self._send(record):
                accepted += 1
                pending.pop(event_id, None)
        return accepted

    async def _send(self, record: dict[str, Any]) -> bool:
        assert self.pagerduty is not None
        result = await self.pagerduty.events.send(record["routing"], record["body"])
        now = self._clock()
        event_id, group_id = record["id"], record["group"]
        day = self._store.k("stats", f"{now:%Y%m%d}")
        if result.outcome == "accepted":
            async with self._store.redis.pipeline(transaction=True) as pipe:
                pipe.hdel(self._store.k(EVENTS), event_id)
                pipe.zrem(self._store.k(DUE), event_id)
                pipe.hincrby(day, "pagerduty_sent", 1)
                await pipe.execute()
            if record["attempts"]:
                log.info("PagerDuty took %s after %d failed attempts", event_id, record["attempts"])
            return True
        if result.outcome == "rejected":
            log.error(
                "PagerDuty refused %s %s for alert %s (%s): %s",
                record["action"],
                event_id,
                group_id,
                record["routing"],
                result.message,
            )
            async with self._store.redis.pipeline(transaction=True) as pipe:
                pipe.hdel(self._store.k(EVENTS), event_id)
                pipe.zrem(self._store.k(DUE), event_id)
                pipe.xadd(
                    self._store.k(DEAD),
                    {
                        "id": event_id,
                        "group": group_id,
                        "routing": record["routing"],
                        "action": record["action"],
                        "error": result.message[:500],
                        "at": now.isoformat(),
                    },
                    maxlen=10_000,
                    approximate=True,
                )
                pipe.hincrby(day, "pagerduty_rejected", 1)
                await pipe.execute()
            group = await self._store.get_group(group_id)
            if group is not None:
                await self._alerts.thread_reply(
                    group,
                    f":warning: PagerDuty refused the {record['action']} for"
                    f" `{record['routing']}`: {external_text(result.message)}",
                )
            return False
        attempts = int(record["attempts"]) + 1
        delay = retry_delay(attempts, result.retry_after)
        log.warning(
            "PagerDuty did not take %s (%s, attempt %d); trying again in %ss",
            event_id,
            result.message,
            attempts,
            delay.total_seconds(),
        )
        record = {**record, "attempts": attempts, "last_error": result.message}
        async with self._store.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._store.k(EVENTS), event_id, json.dumps(record))
            pipe.zadd(self._store.k(DUE), {event_id: (now + delay).timestamp()})
            pipe.hincrby(day, "pagerduty_retries", 1)
            await pipe.execute()
        return False

    async def _drop_unsent_line(self, trigger: dict[str, Any], pending: dict[str, dict[str, Any]]) -> None:
        """Forgets a trigger PagerDuty never took and what follows it: the group was resolved meanwhile, and
        nobody should be woken for it."""
        line = [r for r in pending.values() if _same_line(r, trigger)]
        log.info(
            "alert %s resolved before PagerDuty (%s) took its trigger; not sending it",
            trigger["group"],
            trigger["routing"],
        )
        async with self._store.redis.pipeline(transaction=True) as pipe:
            for record in line:
                pipe.hdel(self._store.k(EVENTS), record["id"])
                pipe.zrem(self._store.k(DUE), record["id"])
            await pipe.execute()
        for record in line:
            pending.pop(record["id"], None)

    async def run(self, stop: asyncio.Event, heartbeat: Callable[[str], None] | None = None) -> None:
        """Sends due events until `stop`: at once when kicked, else every second; survives any failure."""
        while not stop.is_set():
            self._wake.clear()
            try:
                await self.drain()
                if heartbeat is not None:
                    heartbeat("pagerduty-outbox")
            except asyncio.CancelledError:
                raise
            except Exception as error:  # Redis down, or a bug: what is due stays due in Redis
                log.warning("PagerDuty outbox paused: %s: %s", type(error).__name__, error)
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            try:
                await asyncio.wait(waiters, timeout=POLL_SECONDS, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()

    async def pending(self) -> list[dict[str, Any]]:
        """Events not yet taken by PagerDuty, oldest first (for /alerts and tests)."""
        raw = await self._store.redis.hgetall(self._store.k(EVENTS))
        records = []
        for value in raw.values():
            with contextlib.suppress(ValueError, TypeError):
                records.append(json.loads(value))
        return sorted(records, key=lambda r: r.get("order", [0, 0, 0]))


def _same_line(one: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether two events concern the same PagerDuty alert (group and integration key), so order matters."""
    return one.get("group") == other.get("group") and one.get("routing") == other.get("routing")
