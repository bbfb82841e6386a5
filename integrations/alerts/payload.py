"""Reading a webhook body: the size limit, JSON decoding, and the shape checks the parsers are built from, each of
whose WebhookRejected(400) names the path of the offending value (`alerts[2].labels.team must be a string`); also
the shapes Alertmanager's and Grafana's webhooks share (`GroupEnvelope`, `GroupAlert`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from integrations.alerts.labels import make_fingerprint, severity_from_labels
from integrations.alerts.model import Alert, Severity, Status, valid_fingerprint
from integrations.alerts.source import WebhookRejected
from integrations.alerts.text import best_summary, clean, clip
from integrations.alerts.times import parse_time
from integrations.types import describe_value

__all__ = [
    "MAX_BODY_BYTES",
    "GroupAlert",
    "GroupEnvelope",
    "check_size",
    "field_path",
    "group_alert",
    "group_envelope",
    "load_json",
    "optional_string",
    "require_object",
    "sender_fingerprint",
    "string_map",
    "string_values",
]

MAX_BODY_BYTES = 5 * 1024 * 1024
"""Largest webhook body a source reads; larger ones are rejected with 413."""


def check_size(body: bytes) -> None:
    """413 for a body over MAX_BODY_BYTES."""
    if len(body) > MAX_BODY_BYTES:
        raise WebhookRejected(413, f"body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB")


def load_json(body: bytes) -> Any:
    """The decoded JSON of a UTF-8 body; 400 saying where it is not JSON."""
    check_size(body)
    try:  # orjson reads the usual body several times faster; what it refuses, the standard parser decides, as before
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise WebhookRejected(400, "not JSON: the body is not UTF-8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise WebhookRejected(400, f"not JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    except RecursionError:
        raise WebhookRejected(400, "not JSON: nested too deeply") from None
    except ValueError as error:  # e.g. an integer with more digits than Python converts
        raise WebhookRejected(400, f"not JSON: {str(error)[:80]}") from None


_SIMPLE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,39}")


def field_path(path: str, key: str) -> str:
    """`path.key`, or `path["odd key"]` for a key that is not a plain name (clipped, so errors stay short)."""
    if _SIMPLE_KEY.fullmatch(key):
        return f"{path}.{key}" if path else key
    shown = json.dumps(clip(key, 40))
    return f"{path}[{shown}]"


def require_object(value: Any, path: str) -> dict[str, Any]:
    """`value` when it is a JSON object; 400 "<path> must be an object" otherwise."""
    if not isinstance(value, dict):
        raise WebhookRejected(400, f"{path or 'body'} must be an object")
    return value


def string_map(value: Any, path: str) -> dict[str, str]:
    """A JSON object of strings (None is {}); 400 naming the first entry that is not a string."""
    if value is None:
        return {}
    obj = require_object(value, path)
    out: dict[str, str] = {}
    for key, item in obj.items():
        if not isinstance(item, str):
            raise WebhookRejected(400, f"{field_path(path, key)} must be a string")
        out[clean(key)] = clean(item)
    return out


def string_values(value: Any) -> bool:
    """Whether `string_map` accepts `value` (None, or an object whose values are all strings)."""
    if value is None:
        return True
    if type(value) is not dict:
        return False
    for item in value.values():  # noqa: SIM110 (a plain loop is twice as fast as all(); three calls an alert)
        if type(item) is not str:
            return False
    return True


def optional_string(obj: Mapping[str, Any], key: str, path: str) -> str | None:
    """`obj[key]` when it is a string, None when absent or null; 400 when it is anything else."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise WebhookRejected(400, f"{field_path(path, key)} must be a string")
    return clean(value)


@dataclass(frozen=True)
class GroupEnvelope:
    """The outer shape Alertmanager's webhook and Grafana's (its descendant) share."""

    body: dict[str, Any]
    alerts: list[Any]
    group_key: str | None
    truncated: int


def group_envelope(data: Any, *, version: str) -> GroupEnvelope:
    """Checks the shared outer shape (`version`, `alerts[]`, `groupKey`, `truncatedAlerts`); WebhookRejected(400)
    naming the first thing wrong."""
    body = require_object(data, "")
    given = body.get("version")
    if given is not None and given != version:
        raise WebhookRejected(400, f'unsupported payload version {describe_value(given)} (expected "{version}")')
    raw_alerts = body.get("alerts")
    if not isinstance(raw_alerts, list):
        raise WebhookRejected(400, "alerts must be a list")
    truncated = body.get("truncatedAlerts", 0)
    if truncated is None:
        truncated = 0
    if not isinstance(truncated, int) or isinstance(truncated, bool) or truncated < 0:
        raise WebhookRejected(400, "truncatedAlerts must be a non-negative integer")
    return GroupEnvelope(body, raw_alerts, optional_string(body, "groupKey", ""), truncated)


@dataclass(frozen=True)
class GroupAlert:
    """An entry of `alerts[]` in Alertmanager's webhook or Grafana's, with the fields both give it checked."""

    item: dict[str, Any]
    status: Status
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime | None
    """None for Go's zero time: the sender did not say."""
    ends_at: datetime | None

    @property
    def runbook(self) -> str | None:
        """The runbook link the annotations give (`runbook_url`, else `runbook`), if any."""
        return self.annotations.get("runbook_url") or self.annotations.get("runbook")

    def alert(
        self,
        source: str,
        *,
        fingerprint: str,
        title: str,
        default_severity: Severity,
        links: dict[str, str],
        group_key: str | None,
        now: datetime,
    ) -> Alert:
        """This entry as an Alert: the severity its labels name (else `default_severity`), the best summary line, a
        start given as Go's zero time taken as the end (else `now`), and an end only once resolved."""
        return Alert(
            source=source,
            fingerprint=fingerprint,
            status=self.status,
            title=title,
            severity=severity_from_labels(self.labels, default_severity),
            labels=self.labels,
            annotations=self.annotations,
            summary=best_summary(self.annotations, title),
            starts_at=self.starts_at or self.ends_at or now,
            ends_at=self.ends_at if self.status == "resolved" else None,
            links=links,
            group_key=group_key,
        )


def group_alert(raw: Any, path: str) -> GroupAlert:
    """Checks an entry's shared fields (`status`, `labels`, `annotations`, `startsAt`, `endsAt`, in that order);
    WebhookRejected(400) naming the first thing wrong."""
    item = require_object(raw, path)
    status = item.get("status")
    if status not in ("firing", "resolved"):
        raise WebhookRejected(400, f'{path}.status must be "firing" or "resolved"')
    labels = string_map(item.get("labels"), f"{path}.labels")
    annotations = string_map(item.get("annotations"), f"{path}.annotations")
    if "startsAt" not in item:
        raise WebhookRejected(400, f"{path}.startsAt is missing")
    starts_at = parse_time(item["startsAt"], f"{path}.startsAt")
    ends_at = parse_time(item["endsAt"], f"{path}.endsAt") if item.get("endsAt") is not None else None
    return GroupAlert(item, status, labels, annotations, starts_at, ends_at)


def sender_fingerprint(item: Mapping[str, Any], path: str, source: str, labels: Mapping[str, str]) -> str:
    """The entry's own `fingerprint` when it can be used as it is (400 when it is not a string), else one made from
    `source` and the labels."""
    fingerprint = optional_string(item, "fingerprint", path)
    if fingerprint is not None and valid_fingerprint(fingerprint):
        return fingerprint
    return make_fingerprint(source, labels)
