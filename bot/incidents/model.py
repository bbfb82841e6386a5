"""An incident as recorded in Redis, and one entry of its timeline. Pure data: the service changes them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

Status = Literal["investigating", "identified", "monitoring", "resolved"]


class SeverityChange(BaseModel):
    """The severity from `at` on, and who set it."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    severity: str
    by: str


class Incident(BaseModel):
    """Everything about one incident that is not its timeline; the JSON stored in Redis.

    The Slack side (`channel_id`, `summary_ts`, `announce_ts`, `setup_done`) is filled in as the set-up goes, so
    a set-up interrupted by a restart is finished by the next tick."""

    model_config = ConfigDict(frozen=True)

    id: str
    number: int
    title: str
    severity: str
    status: Status = "investigating"
    service: str = ""
    declared_by: str
    declared_at: datetime
    commander: str | None = None
    commander_at: datetime | None = None
    roles: dict[str, str] = {}
    participants: tuple[str, ...] = ()
    channel_name: str = ""
    channel_id: str | None = None
    summary_ts: str | None = None
    announce_channel: str | None = None
    announce_ts: str | None = None
    setup_done: bool = False
    topic: str = ""
    alert_ids: tuple[str, ...] = ()
    page_ids: tuple[str, ...] = ()
    severity_history: tuple[SeverityChange, ...] = ()
    last_update: str = ""
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolution: str = ""
    deadline: str | None = None
    epoch: int = 0
    public_title: str = ""  # set by the first public update: the title the public sees (never the internal one)

    @property
    def public(self) -> bool:
        """Whether it was made public (`/incident public`): only then does anything of it leave chatops."""
        return bool(self.public_title)

    @property
    def open(self) -> bool:
        """Not resolved yet."""
        return self.status != "resolved"

    def may_change(self, user: str) -> bool:
        """Whether `user` is one of this incident's own people (declarer, commander, role holder, responder)."""
        return user in {self.declared_by, self.commander, *self.roles.values(), *self.participants}


TimelineKind = Literal[
    "declared",
    "update",
    "status",
    "severity",
    "commander",
    "role",
    "note",
    "page",
    "escalation",
    "resolved",
    "alert",
    "public",
    "statuspage",
]


class TimelineEntry(BaseModel):
    """One line of an incident's timeline (a Redis Stream entry; `id` is the stream id)."""

    model_config = ConfigDict(frozen=True)

    id: str = ""
    at: datetime
    kind: TimelineKind
    by: str
    text: str
    author: str = ""
    source_ts: str = ""

    def fields(self) -> dict[str, str]:
        """The entry as stream fields."""
        return {
            "at": self.at.isoformat(),
            "kind": self.kind,
            "by": self.by,
            "text": self.text,
            "author": self.author,
            "source_ts": self.source_ts,
        }


def add_people(people: tuple[str, ...], *users: str) -> tuple[str, ...]:
    """`people` and then `users`, each once, in that order (an incident's participants)."""
    return tuple(dict.fromkeys((*people, *users)))


def incident_id(number: int) -> str:
    """The id people type: `INC-7`."""
    return f"INC-{number}"
