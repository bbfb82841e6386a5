"""The normalised alert: `Alert`, what every source turns a monitoring tool's webhook into, with its `Severity` and
`Status`, the limits on its text, and the rules its fingerprint, links and times follow.

`Alert` is immutable and checks its own invariants, so an alert that exists is a valid one; `to_json`/`from_json`
round-trip it losslessly for the Redis stream.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Literal, get_args
from urllib.parse import urlsplit

from integrations.types import describe_value

__all__ = [
    "MAX_SUMMARY_CHARS",
    "MAX_TITLE_CHARS",
    "Alert",
    "Severity",
    "Status",
    "as_utc",
    "is_http_url",
    "valid_fingerprint",
]

Severity = Literal["critical", "warning", "info"]
"""How urgent an alert is, after normalisation."""

Status = Literal["firing", "resolved"]
"""Whether an alert is still going on."""

MAX_TITLE_CHARS = 200
"""Longest `Alert.title`; longer titles are clipped with an ellipsis."""

MAX_SUMMARY_CHARS = 1000
"""Longest `Alert.summary`; longer summaries are clipped with an ellipsis."""

_FINGERPRINT = re.compile(r"[a-zA-Z0-9:_-]{1,128}")
# What str.isspace() calls white space (re's \s for str patterns is the same test), found without a Python-level
# loop over the characters: a silence link is a few hundred of them, checked twice for every alert delivered.
_WHITE_SPACE = re.compile(r"\s")
_SEVERITIES: tuple[str, ...] = get_args(Severity)
_STATUSES: tuple[str, ...] = get_args(Status)


@dataclass(frozen=True)
class Alert:
    """One alert from any source, normalised; immutable, and `to_json`/`from_json` round-trip it losslessly."""

    source: str
    fingerprint: str
    status: Status
    title: str
    severity: Severity
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    summary: str
    starts_at: datetime
    ends_at: datetime | None
    links: Mapping[str, str]
    group_key: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            raise ValueError("source must be a non-empty string")
        if not isinstance(self.fingerprint, str) or not _FINGERPRINT.fullmatch(self.fingerprint):
            raise ValueError("fingerprint must match [a-zA-Z0-9:_-]{1,128}")
        if self.status not in _STATUSES:
            raise ValueError(f"status must be firing or resolved, not {describe_value(self.status)}")
        if self.severity not in _SEVERITIES:
            raise ValueError(f"severity must be critical, warning or info, not {describe_value(self.severity)}")
        if not isinstance(self.title, str) or not self.title or len(self.title) > MAX_TITLE_CHARS:
            raise ValueError(f"title must be a string of 1 to {MAX_TITLE_CHARS} characters")
        if not isinstance(self.summary, str) or len(self.summary) > MAX_SUMMARY_CHARS:
            raise ValueError(f"summary must be a string of at most {MAX_SUMMARY_CHARS} characters")
        if self.group_key is not None and not isinstance(self.group_key, str):
            raise ValueError("group_key must be a string or None")
        for name in ("labels", "annotations", "links"):
            value = getattr(self, name)
            if not isinstance(value, Mapping) or not all(
                isinstance(key, str) and isinstance(item, str) for key, item in value.items()
            ):
                raise ValueError(f"{name} must map strings to strings")
            object.__setattr__(self, name, MappingProxyType(dict(value)))
        for name, url in self.links.items():
            if not is_http_url(url):
                raise ValueError(f"links[{name!r}] must be an http(s) URL")
        object.__setattr__(self, "starts_at", as_utc(self.starts_at, "starts_at"))
        if self.ends_at is not None:
            object.__setattr__(self, "ends_at", as_utc(self.ends_at, "ends_at"))

    def __hash__(self) -> int:
        return hash((self.source, self.fingerprint, self.status, self.starts_at, self.ends_at))

    def to_json(self) -> str:
        """This alert as compact JSON (ASCII, keys sorted), for the Redis stream."""
        return json.dumps(
            {
                "v": 1,
                "source": self.source,
                "fingerprint": self.fingerprint,
                "status": self.status,
                "title": self.title,
                "severity": self.severity,
                "labels": dict(self.labels),
                "annotations": dict(self.annotations),
                "summary": self.summary,
                "starts_at": self.starts_at.isoformat(),
                "ends_at": None if self.ends_at is None else self.ends_at.isoformat(),
                "links": dict(self.links),
                "group_key": self.group_key,
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Alert:
        """The alert `to_json` wrote; ValueError when `text` is not one."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as error:
            raise ValueError(f"not an alert: {error}") from None
        if not isinstance(data, dict) or data.get("v") != 1:
            raise ValueError("not an alert: expected a version 1 alert object")
        expected = {
            "v",
            "source",
            "fingerprint",
            "status",
            "title",
            "severity",
            "labels",
            "annotations",
            "summary",
            "starts_at",
            "ends_at",
            "links",
            "group_key",
        }
        if set(data) != expected:
            raise ValueError(f"not an alert: fields {sorted(set(data) ^ expected)} missing or unexpected")
        try:
            starts_at = datetime.fromisoformat(data["starts_at"])
            ends_at = None if data["ends_at"] is None else datetime.fromisoformat(data["ends_at"])
        except (TypeError, ValueError):
            raise ValueError("not an alert: starts_at/ends_at are not ISO times") from None
        return cls(
            source=data["source"],
            fingerprint=data["fingerprint"],
            status=data["status"],
            title=data["title"],
            severity=data["severity"],
            labels=data["labels"],
            annotations=data["annotations"],
            summary=data["summary"],
            starts_at=starts_at,
            ends_at=ends_at,
            links=data["links"],
            group_key=data["group_key"],
        )


def as_utc(value: object, name: str) -> datetime:
    """`value` in UTC; ValueError naming `name` unless it is a timezone-aware datetime."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return value.astimezone(UTC)


def valid_fingerprint(value: str | None) -> bool:
    """Whether a sender's fingerprint can be used as `Alert.fingerprint` as it is."""
    return value is not None and _FINGERPRINT.fullmatch(value) is not None


def is_http_url(value: object) -> bool:
    """Whether `value` may be one of `Alert.links`: a non-empty http(s) URL with a host and no white space."""
    if not isinstance(value, str) or not value or _WHITE_SPACE.search(value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)
