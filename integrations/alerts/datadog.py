"""Datadog monitors through Datadog's Webhooks integration, at `POST /alerts/datadog`.

Datadog lets the user write the payload and the headers of a webhook (docs.datadoghq.com/integrations/webhooks/),
filling in its own `$VARIABLES`. chatops expects this payload template, pasted verbatim into the webhook's
Payload field, with the custom header `{"Authorization": "Bearer <token>"}` (the token in `token_env`):

    {"id": "$ID", "alert_id": "$ALERT_ID", "title": "$EVENT_TITLE", "transition": "$ALERT_TRANSITION",
     "status": "$ALERT_STATUS", "priority": "$PRIORITY", "metric": "$ALERT_METRIC", "query": "$ALERT_QUERY",
     "scope": "$ALERT_SCOPE", "tags": "$TAGS", "link": "$LINK", "aggreg_key": "$AGGREG_KEY",
     "hostname": "$HOSTNAME", "date": "$DATE", "body": "$EVENT_MSG", "org": "$ORG_NAME"}

`transition` ($ALERT_TRANSITION: Triggered, Re-Triggered, Warn, Re-Warn, No Data, Re-No Data, Recovered, Renotify,
Null) decides: Triggered / Re-Triggered / Renotify fire with the severity of `priority` (P1 critical, P2-P3 warning,
P4-P5 info, as `$ALERT_PRIORITY` gives them; `$PRIORITY`, the event's priority, gives `normal`, which is critical,
or `low`, which is info; critical when empty), Warn / Re-Warn fire as warning, No Data / Re-No Data fire as warning
(or are ignored with `no_data: ignore`), Recovered resolves. `tags` ($TAGS, `k:v` comma-separated) and the tags of
`scope` become labels, so `routes` can `match: {service: web}`. One lifecycle per `aggreg_key` + `scope`; `id`
($ID, the notification's event id) is the delivery's idempotency key, so a retried delivery is stored once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp

from integrations.alerts.auth import BearerTokenSource
from integrations.alerts.labels import make_fingerprint, normalise_severity
from integrations.alerts.model import MAX_SUMMARY_CHARS, Alert, Severity, Status
from integrations.alerts.payload import require_object
from integrations.alerts.settings import EnvVarName, read_secret
from integrations.alerts.source import Accepted, WebhookRejected, WebhookRequest, accepted, ignored, rejects_only
from integrations.alerts.text import clean, clip, http_links, make_title
from integrations.types import StrictModel

NAME = "datadog"
FIELDS = (
    "id",
    "alert_id",
    "title",
    "transition",
    "status",
    "priority",
    "metric",
    "query",
    "scope",
    "tags",
    "link",
    "aggreg_key",
    "hostname",
    "date",
    "body",
    "org",
)
"""The fields of the payload template (see the module docstring)."""
REQUIRED = ("transition", "alert_id")
FIRING = ("Triggered", "Re-Triggered", "Renotify")
WARNING = ("Warn", "Re-Warn")
NO_DATA = ("No Data", "Re-No Data")
RECOVERED = ("Recovered",)
IGNORED = ("Null",)
TRANSITIONS = (*FIRING, *WARNING, *NO_DATA, *RECOVERED, *IGNORED)
MAX_LABELS = 64
_PREFIX = re.compile(r"^(?:\s*\[[^\[\]]*\])+\s*")  # "[P1] [Triggered on {host:a}] " before the monitor's name
_LABEL_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-/]{0,99}")


class DatadogSettings(StrictModel):
    """`alerts: {sources: {datadog: {token_env: DATADOG_WEBHOOK_TOKEN}}}`."""

    token_env: EnvVarName
    no_data: Literal["warning", "ignore"] = "warning"
    """What a No Data notification is: a warning alert, or nothing (answered 204)."""


class DatadogSource(BearerTokenSource[DatadogSettings]):
    """Takes Datadog webhook notifications in chatops' payload template, with a bearer token."""

    name = NAME

    @rejects_only
    async def receive(self, request: WebhookRequest) -> Accepted:
        """Checks the bearer token, then parses the notification."""
        return parse_payload(self._authentic_json(request), now=request.now, no_data=self._settings.no_data)


def parse_payload(data: Any, *, now: datetime, no_data: str = "warning") -> Accepted:
    """The alert in a decoded notification (or an ignored result); 400 naming the missing or wrong field."""
    body = require_object(data, "")
    fields = {key: text_field(body, key) for key in FIELDS}
    for key in REQUIRED:
        if not fields[key]:
            raise WebhookRejected(400, f"{key} is missing: the body is not chatops' Datadog payload template")
    transition = fields["transition"]
    if transition not in TRANSITIONS:
        raise WebhookRejected(400, f"transition must be one of {', '.join(TRANSITIONS)}, not {clip(transition, 40)!r}")
    if transition in IGNORED or (transition in NO_DATA and no_data == "ignore"):
        return ignored(f"Datadog {transition!r} notification")
    alert = parse_alert(fields, now=now)
    if not fields["id"]:
        return accepted([alert])
    return Accepted(alerts=(alert,), reply=accepted([alert]).reply, idempotency_key=clip(fields["id"], 128))


def parse_alert(fields: Mapping[str, str], *, now: datetime) -> Alert:
    """One notification's fields (all strings, `transition` known) as an Alert."""
    transition = fields["transition"]
    priority = fields["priority"]
    if transition in WARNING or transition in NO_DATA:
        severity: Severity = "warning"
    else:  # Triggered, Renotify and Recovered: the monitor's priority, so a recovery routes where its alert went
        severity = normalise_severity(priority) or "critical"
    monitor = monitor_name(fields["title"]) or f"Datadog monitor {fields['alert_id']}"
    labels: dict[str, str] = {}
    for key, value in [*tag_pairs(fields["tags"]), *tag_pairs(fields["scope"])]:
        if len(labels) < MAX_LABELS:
            labels.setdefault(key, value)
    labels.update({"alertname": make_title(monitor), "monitor_id": fields["alert_id"]})
    for key in ("hostname", "metric", "org"):
        if fields[key]:
            labels.setdefault(key, fields[key])
    if priority:
        labels.setdefault("priority", priority)
    annotations = {"transition": transition}
    for key in ("status", "query", "scope", "tags"):
        if fields[key]:
            annotations[key] = fields[key]
    if fields["body"]:
        annotations["message"] = fields["body"]
    status: Status = "resolved" if transition in RECOVERED else "firing"
    happened = epoch_millis(fields["date"]) or now
    identity = json.dumps([fields["aggreg_key"] or f"monitor:{fields['alert_id']}", fields["scope"]])
    summary = fields["status"] or fields["body"] or monitor
    return Alert(
        source=NAME,
        fingerprint=make_fingerprint(NAME, identity),
        status=status,
        title=make_title(monitor),
        severity=severity,
        labels=labels,
        annotations=annotations,
        summary=clip(" ".join(summary.split()), MAX_SUMMARY_CHARS),
        starts_at=happened,
        ends_at=happened if status == "resolved" else None,
        links=http_links({"source": fields["link"]}),
    )


def text_field(body: Mapping[str, Any], key: str) -> str:
    """A template field as text ("" when absent, null, or left as its `$VARIABLE`); numbers are taken as text
    (a template edited to drop the quotes around `$DATE`); 400 naming the field for anything else."""
    value = body.get(key)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise WebhookRejected(400, f"{key} must be a string")
    text = clean(str(value)).strip()
    if re.fullmatch(r"\$[A-Z_]+", text):  # a variable Datadog had no value for in this notification
        return ""
    return text


def monitor_name(title: str) -> str:
    """The monitor's name in an event title: "[P1] [Triggered on {host:a}] Disk full" is "Disk full"."""
    return _PREFIX.sub("", title).strip()


def tag_pairs(text: str) -> list[tuple[str, str]]:
    """`service:web, env:prod, monitor` as [("service", "web"), ("env", "prod")]: tags without a value, and keys
    that are not label names, are left out (they stay in the `tags` annotation)."""
    pairs = []
    for tag in text.split(","):
        key, colon, value = tag.strip().partition(":")
        key, value = key.strip(), value.strip()
        if colon and value and _LABEL_KEY.fullmatch(key):
            pairs.append((key, value))
    return pairs


def epoch_millis(text: str) -> datetime | None:
    """$DATE (milliseconds since the epoch) as a time; None when empty; 400 when it is not a number of them."""
    if not text:
        return None
    if not re.fullmatch(r"[0-9]{1,14}", text):
        raise WebhookRejected(400, "date must be milliseconds since the epoch (Datadog's $DATE)")
    return datetime.fromtimestamp(int(text) / 1000, UTC)


def build(settings: DatadogSettings, *, environ: Mapping[str, str], http: aiohttp.ClientSession) -> DatadogSource:
    """The Datadog source; SourceConfigError when `token_env` is not set."""
    del http  # nothing to fetch
    token = read_secret(environ, settings.token_env, "the Datadog webhook's bearer token", strip=True)
    return DatadogSource(settings, token)
