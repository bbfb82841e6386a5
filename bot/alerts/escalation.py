"""The escalation walk as pure functions: when each page of a policy is due, and how an alert group's escalation
state changes when it is paged, acknowledged, reminded, taken back or resolved.

A group's one pending deadline lives on the group itself (`pending`, `pending_at`); the alert store mirrors it
into a Redis sorted set in the same transaction as every change, so the tick finds it and nothing else can
drift. A deadline is named `<kind>|<group>|<epoch>|<n>`: the epoch changes on every acknowledgement, take-back
and restart, so a deadline claimed after the state moved on is recognised as stale and dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.alerts.model import AlertGroup, Page
from bot.alerts.policies import EscalationPolicy

PAGE = "page"
REMIND = "remind"


@dataclass(frozen=True)
class Slot:
    """One page of the walk: its position `number` (0-based over all rounds), round, step and due time."""

    number: int
    round: int
    step: int
    due: datetime


@dataclass(frozen=True)
class Deadline:
    """A parsed deadline name."""

    kind: str
    group_id: str
    epoch: int
    number: int

    def __str__(self) -> str:
        return f"{self.kind}|{self.group_id}|{self.epoch}|{self.number}"

    @classmethod
    def parse(cls, text: str) -> Deadline | None:
        """The deadline a sorted-set member names, or None for something unreadable."""
        parts = text.split("|")
        if len(parts) != 4 or parts[0] not in (PAGE, REMIND):
            return None
        try:
            return cls(parts[0], parts[1], int(parts[2]), int(parts[3]))
        except ValueError:
            return None


def total_slots(policy: EscalationPolicy) -> int:
    """How many pages a walk nobody acknowledges makes."""
    return len(policy.steps) * (policy.repeat + 1)


def slot(policy: EscalationPolicy, started: datetime, number: int) -> Slot | None:
    """Page `number` of a walk that started at `started`; None past the last one."""
    if not 0 <= number < total_slots(policy):
        return None
    round_number, step = divmod(number, len(policy.steps))
    due = started + round_number * policy.round_length + policy.steps[step].after
    return Slot(number, round_number, step, due)


def start(
    group: AlertGroup, policy: EscalationPolicy, now: datetime, *, not_before: datetime | None = None
) -> AlertGroup:
    """The group with a fresh walk starting at `now` (its first page due at the first step's `after`, and not
    before `not_before`: the message should exist when its thread is mentioned)."""
    epoch = group.escalation_epoch + 1
    first = slot(policy, now, 0)
    assert first is not None
    due = max(first.due, not_before) if not_before is not None else first.due
    return group.model_copy(
        update={
            "escalation_epoch": epoch,
            "escalation_started": now,
            "escalation_state": "paging",
            "pending": str(Deadline(PAGE, group.id, epoch, 0)),
            "pending_at": due,
            "reminders": 0,
        }
    )


def paged(group: AlertGroup, policy: EscalationPolicy, page: Page) -> AlertGroup:
    """The group after page `page.number` went out: the page recorded, the next one pending (or the walk over)."""
    assert group.escalation_started is not None
    following = slot(policy, group.escalation_started, page.number + 1)
    update: dict[str, object] = {"pages": (*group.pages, page)}
    if following is None:
        update |= {"pending": None, "pending_at": None, "escalation_state": "exhausted"}
    else:
        update |= {
            "pending": str(Deadline(PAGE, group.id, group.escalation_epoch, following.number)),
            "pending_at": following.due,
        }
    return group.model_copy(update=update)


def acknowledged(group: AlertGroup, now: datetime, reminder: timedelta | None) -> AlertGroup:
    """The walk stops; a reminder is pending if one is configured."""
    epoch = group.escalation_epoch + 1
    update: dict[str, object] = {"escalation_epoch": epoch, "reminders": 0, "pending": None, "pending_at": None}
    if group.escalation_state != "idle":
        update["escalation_state"] = "acknowledged"
    if reminder is not None:
        update |= {"pending": str(Deadline(REMIND, group.id, epoch, 1)), "pending_at": now + reminder}
    return group.model_copy(update=update)


def reminded(group: AlertGroup, now: datetime, reminder: timedelta) -> AlertGroup:
    """The next reminder pending after one went out."""
    count = group.reminders + 1
    return group.model_copy(
        update={
            "reminders": count,
            "pending": str(Deadline(REMIND, group.id, group.escalation_epoch, count + 1)),
            "pending_at": now + reminder,
        }
    )


def stopped(group: AlertGroup) -> AlertGroup:
    """Nothing pending any more (resolved, or acknowledged with no reminder)."""
    state = group.escalation_state if group.escalation_state in ("idle", "exhausted") else "stopped"
    return group.model_copy(
        update={
            "escalation_epoch": group.escalation_epoch + 1,
            "pending": None,
            "pending_at": None,
            "escalation_state": state,
        }
    )


def who_was_paged(group: AlertGroup) -> list[str]:
    """Everyone a page went to directly, in the order paged."""
    seen: list[str] = []
    for page in group.pages:
        seen.extend(user for user in page.targets if user not in seen)
    return seen


def rotation_of(group: AlertGroup, user: str) -> str:
    """The rotation `user` was paged for (else the rotation of the last page), "" if none."""
    for page in reversed(group.pages):
        if user in page.targets and page.rotation:
            return page.rotation
    for page in reversed(group.pages):
        if page.rotation:
            return page.rotation
    return ""
