"""How alert events change the open group they belong to: pure logic, no I/O. The consumer applies all the events
of one stream entry that share a group in one atomic update (`apply_events`), rather than one update per alert:
an Alertmanager webhook carries one of its groups, so a batch of ten alerts is one read and one write of the group.
In a backlog the consumer delivers several entries as one run (`delivery_runs`), so a group is written once a run.

Each event is (event id, alert): the id is the stream entry's id and the alert's index in it (`1700000000000-0-3`),
so a redelivered or out-of-order event is recognised as stale and changes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from bot.alerts.model import AlertGroup, Member
from integrations.alerts.model import Alert

Outcome = Literal["joined", "deduplicated", "refired", "resolved", "stale"]


@dataclass(frozen=True)
class Applied:
    """What one event did to its group, and the member as that event left it."""

    outcome: Outcome
    member: Member | None


def apply_events(
    group: AlertGroup, events: Sequence[tuple[str, Alert]], now: datetime
) -> tuple[AlertGroup, list[Applied]]:
    """Applies `events` in order, stopping after one that resolves the group (the events after it belong to the
    next group opened for the key, not to this resolved one). Returns the group and what each applied event did;
    `len(applied)` events were used, at least one."""
    members = dict(group.members)
    applied: list[Applied] = []
    changed = resolved = False
    for event_id, alert in events:
        outcome, member = _apply(members, event_id, alert, now)
        applied.append(Applied(outcome, member))
        if member is None:  # stale: nothing changed
            continue
        changed = True
        if not any(m.status == "firing" for m in members.values()):
            resolved = True
            break
    if not changed:
        return group, applied
    update: dict[str, object] = {"members": members, "updated_at": now}
    if resolved:
        update |= {"state": "resolved", "resolved_at": now}
    return group.model_copy(update=update), applied


def _apply(members: dict[str, Member], event_id: str, alert: Alert, now: datetime) -> tuple[Outcome, Member | None]:
    """Changes `members` for one event; the member it wrote, or None when the event changed nothing."""
    current = members.get(alert.fingerprint)
    if current is not None and not newer(event_id, current.last_event):
        return "stale", None
    if current is None:
        member = members[alert.fingerprint] = Member.from_alert(alert, now=now, event_id=event_id)
        return ("joined" if alert.status == "firing" else "stale"), member
    if alert.status == "firing":
        member = members[alert.fingerprint] = current.model_copy(
            update={
                "status": "firing",
                "count": current.count + 1,
                "last_seen": now,
                "last_event": event_id,
                "summary": alert.summary or current.summary,
                "ends_at": None,
            }
        )
        return ("deduplicated" if current.status == "firing" else "refired"), member
    member = members[alert.fingerprint] = current.model_copy(
        update={"status": "resolved", "ends_at": alert.ends_at or now, "last_seen": now, "last_event": event_id}
    )
    return ("resolved" if current.status == "firing" else "stale"), member


def newer(event_id: str, than: str) -> bool:
    """Whether event `event_id` (stream id and index in its batch) comes after `than`; a redelivered or
    out-of-order event does not."""

    def parts(value: str) -> tuple[int, ...]:
        return tuple(int(part or 0) for part in value.split("-"))

    try:
        return parts(event_id) > parts(than)
    except ValueError:
        return True


def delivery_runs(entries: Sequence[tuple[str, Sequence[Alert]]]) -> list[list[tuple[str, Sequence[Alert]]]]:
    """Splits entries read together (id, alerts; in stream order) into runs, each delivered and acknowledged as one.
    A run that fails is delivered again from its start. Redelivering events a group has seen is harmless (they are
    stale), except across the resolve that closed a group: an alert's firing event delivered again after its own
    resolve closed the group would open a new group for an alert that is no longer firing. So a run never holds an
    alert's resolve after its firing event: an entry that resolves an alert fired earlier in the run starts a new
    run, and the run before it has been acknowledged by then. (A group closes only once every member is resolved,
    so no other order of events in a run can reopen one.)"""
    runs: list[list[tuple[str, Sequence[Alert]]]] = []
    fired: set[str] = set()  # (source, fingerprint) of the firing events in the current run
    for entry in entries:
        alerts = entry[1]
        if not runs or any(a.status == "resolved" and f"{a.source}:{a.fingerprint}" in fired for a in alerts):
            runs.append([])
            fired = set()
        runs[-1].append(entry)
        fired.update(f"{a.source}:{a.fingerprint}" for a in alerts if a.status == "firing")
    return runs
