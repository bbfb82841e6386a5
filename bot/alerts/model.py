"""An alert group as recorded in Redis: one Slack message for the lifecycle of one or more alerts that share a
group key and a channel (a single alert is a group of one), with who acknowledged or resolved it."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from bot.text.blocks import external_text
from integrations.alerts.model import Alert

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
# The source of the pages chatops raises itself (an incident's pages, bot.incidents.paging), not a monitoring alert.
CHATOPS_SOURCE = "chatops"


class Member(BaseModel):
    """One alert inside a group, as last seen."""

    model_config = ConfigDict(frozen=True)

    fingerprint: str
    title: str
    severity: Literal["critical", "warning", "info"]
    status: Literal["firing", "resolved"]
    summary: str = ""
    labels: dict[str, str] = {}
    links: dict[str, str] = {}
    starts_at: datetime
    ends_at: datetime | None = None
    count: int = 1
    last_seen: datetime
    last_event: str = "0-0-0"

    @classmethod
    def from_alert(cls, alert: Alert, *, now: datetime, event_id: str) -> Member:
        """A member from a freshly received alert."""
        return cls(
            fingerprint=alert.fingerprint,
            title=alert.title,
            severity=alert.severity,
            status=alert.status,
            summary=alert.summary,
            labels=dict(alert.labels),
            links=dict(alert.links),
            starts_at=alert.starts_at,
            ends_at=alert.ends_at,
            last_seen=now,
            last_event=event_id,
        )


class Page(BaseModel):
    """One page of an escalation: which step and round, when it was due and went out, and to whom."""

    model_config = ConfigDict(frozen=True)

    number: int
    round: int
    step: int
    due: datetime
    at: datetime
    rotation: str | None = None
    targets: tuple[str, ...] = ()
    channel: str | None = None
    dms: dict[str, str] = {}
    pagerduty: str | None = None  # the integration key's name, when the step triggered PagerDuty


EscalationState = Literal["idle", "paging", "acknowledged", "exhausted", "stopped"]


class AlertGroup(BaseModel):
    """One Slack message's worth of alerts."""

    model_config = ConfigDict(frozen=True)

    id: str
    group_key: str
    channel: str
    escalation: str | None = None
    state: Literal["firing", "resolved"] = "firing"
    members: dict[str, Member] = {}
    created_at: datetime
    updated_at: datetime
    message_channel: str | None = None
    message_ts: str | None = None
    acked_by: str | None = None
    acked_at: datetime | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    # Where it was acknowledged / resolved ("pagerduty" for PagerDuty's webhooks), and the name of who did it when
    # that person is not a Slack user chatops could find (acked_by/resolved_by then hold `pagerduty:<user id>`).
    acked_via: str | None = None
    acked_name: str | None = None
    resolved_via: str | None = None
    resolved_name: str | None = None
    # The silence made from this message (its button or its Custom… form), shown on the message until it ends.
    silenced_by: str | None = None
    silence_id: str | None = None
    silenced_until: datetime | None = None
    escalation_epoch: int = 0
    escalation_state: EscalationState = "idle"
    escalation_started: datetime | None = None
    pages: tuple[Page, ...] = ()
    reminders: int = 0
    pending: str | None = None
    pending_at: datetime | None = None

    @property
    def pagerduty_routes(self) -> list[str]:
        """The PagerDuty integration keys (by name) a page of this group triggered, in order."""
        return list(dict.fromkeys(page.pagerduty for page in self.pages if page.pagerduty))

    @property
    def acked_by_text(self) -> str:
        """Who acknowledged, as Slack text: a mention, or "<name> in PagerDuty"."""
        return _person(self.acked_by, self.acked_name, self.acked_via)

    @property
    def resolved_by_text(self) -> str:
        """Who resolved by hand, as Slack text: a mention, or "<name> in PagerDuty"."""
        return _person(self.resolved_by, self.resolved_name, self.resolved_via)

    def silenced(self, now: datetime) -> bool:
        """Whether a silence made from this message still holds at `now`."""
        return self.silence_id is not None and self.silenced_until is not None and self.silenced_until > now

    @property
    def firing(self) -> list[Member]:
        """Members still firing, most severe first."""
        return sorted(
            (m for m in self.members.values() if m.status == "firing"),
            key=lambda m: (SEVERITY_ORDER[m.severity], m.title),
        )

    @property
    def severity(self) -> str:
        """The most severe member's severity."""
        return min((m.severity for m in self.members.values()), key=SEVERITY_ORDER.__getitem__, default="info")

    @property
    def title(self) -> str:
        """The group's headline: the alert's title, or the shared title and a count."""
        titles = sorted({m.title for m in self.members.values()})
        if len(self.members) == 1 or len(titles) == 1:
            return titles[0] if titles else "alert"
        return f"{len(self.members)} alerts: {', '.join(titles[:3])}{'…' if len(titles) > 3 else ''}"

    @property
    def duration_seconds(self) -> float | None:
        """How long the group fired, once resolved."""
        if self.resolved_at is None:
            return None
        return (self.resolved_at - self.created_at).total_seconds()


def _person(user: str | None, name: str | None, via: str | None) -> str:
    if name:
        where = " in PagerDuty" if via == "pagerduty" else ""
        return f"{external_text(name)}{where}"
    mention = f"<@{user}>" if user else "someone"
    return f"{mention} in PagerDuty" if via == "pagerduty" else mention


def is_chatops_page(group: AlertGroup) -> bool:
    """Whether a group is a page chatops raised itself (an incident's page) rather than an alert from monitoring."""
    return group.group_key.startswith(f"{CHATOPS_SOURCE}:")


def new_group_id() -> str:
    """A short id people can type: `a-` and 8 characters."""
    alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
    return "a-" + "".join(secrets.choice(alphabet) for _ in range(8))
