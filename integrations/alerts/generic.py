"""Our own JSON webhook, for scripts, cron jobs and tools without a dedicated source: `POST /alerts/generic`.

## Generic alert webhook

Send one alert as a JSON object, or up to 1000 as `{"alerts": [ ... ]}`:

| Field       | Type                            | Default   | Meaning                                                |
| ----------- | ------------------------------- | --------- | ------------------------------------------------------ |
| `title`     | string, required                |           | What is wrong, one line (clipped to 200 characters).   |
| `severity`  | `critical` / `warning` / `info` | `warning` | Also understood: page, error, high, P1 (critical);     |
|             |                                 |           | warn, medium, P2, P3 (warning); low, P4, P5 (info).    |
| `service`   | string                          |           | The service affected; becomes the `service` label.     |
| `status`    | `firing` / `resolved`           | `firing`  | Send `resolved` with the same identity to close it.    |
| `dedup_key` | string                          |           | The alert's identity: repeats with the same key are    |
|             |                                 |           | one alert. Without it: `title` plus `service`.         |
| `summary`   | string                          | the title | A longer description (clipped to 1000 characters).     |
| `url`       | http(s) URL                     |           | Where to look; shown as the alert's link.              |
| `labels`    | object of string values         | `{}`      | Anything else to route and silence on (`severity`,     |
|             |                                 |           | `service` and `alertname` are set from the fields).    |
| `starts_at` | RFC 3339 time                   | now       | When it started, e.g. `2024-05-01T12:00:00Z`.          |

Any other field is an error (so a typo like `sevrity` is reported, not ignored). Example:

    {"title": "Nightly backup failed", "severity": "critical", "service": "billing-db",
     "dedup_key": "backup/billing-db", "summary": "pg_dump exited with 1", "url": "https://ci.example.com/runs/42"}

Every request is signed with the shared secret (the environment variable named by `hmac_secret_env`):

    X-Chatops-Timestamp: <unix seconds>
    X-Chatops-Signature: sha256=<hex HMAC-SHA256 of "v1:<timestamp>:<body>">

The body is signed byte for byte as sent. A timestamp more than 5 minutes away from the bot's clock is refused
("stale timestamp"), which limits replays. With a shell:

    ts=$(date +%s); sig=$(printf 'v1:%s:%s' "$ts" "$body" | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1)
    curl -H "X-Chatops-Timestamp: $ts" -H "X-Chatops-Signature: sha256=$sig" --data "$body" $BOT/alerts/generic
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from integrations.alerts.auth import SignedSource, constant_time_equal
from integrations.alerts.labels import make_fingerprint, normalise_severity
from integrations.alerts.model import MAX_SUMMARY_CHARS, Alert
from integrations.alerts.payload import check_size, load_json, optional_string, require_object, string_map
from integrations.alerts.settings import EnvVarName, PositiveDuration, read_secret
from integrations.alerts.source import Accepted, WebhookRejected, WebhookRequest, accepted, rejects_only
from integrations.alerts.text import clip, http_links, make_title
from integrations.alerts.times import parse_time
from integrations.types import StrictModel, describe_value

NAME = "generic"
MAX_BATCH = 1000
"""Most alerts in one `{"alerts": [...]}` request."""

TIMESTAMP_HEADER = "X-Chatops-Timestamp"
SIGNATURE_HEADER = "X-Chatops-Signature"
SIGNATURE_PREFIX = "sha256="
FIELDS = ("title", "severity", "service", "status", "dedup_key", "summary", "url", "labels", "starts_at")
"""The fields an alert object may have."""


class GenericSettings(StrictModel):
    """`alerts: {sources: {generic: {hmac_secret_env: CHATOPS_ALERTS_SECRET}}}`."""

    hmac_secret_env: EnvVarName
    tolerance: PositiveDuration = timedelta(minutes=5)


class GenericSource(SignedSource[GenericSettings]):
    """Takes alerts in our documented JSON schema, signed with HMAC-SHA256."""

    name = NAME

    @rejects_only
    async def receive(self, request: WebhookRequest) -> Accepted:
        """Checks the timestamp and signature, then parses the alert or batch."""
        check_size(request.body)
        verify(self._secret, request.headers, request.body, now=request.now, tolerance=self._settings.tolerance)
        return parse_payload(load_json(request.body), now=request.now)


def signature(secret: bytes, timestamp: int | str, body: bytes) -> str:
    """The X-Chatops-Signature value: "sha256=" + hex HMAC-SHA256 of "v1:{timestamp}:{body}"."""
    signed = b"v1:" + str(timestamp).encode("ascii") + b":" + body
    return SIGNATURE_PREFIX + hmac.new(secret, signed, hashlib.sha256).hexdigest()


def signed_headers(secret: bytes, body: bytes, *, timestamp: int) -> dict[str, str]:
    """The two headers a sender adds to `body` (for senders written in Python, and tests)."""
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signature(secret, timestamp, body)}


def verify(secret: bytes, headers: Mapping[str, str], body: bytes, *, now: datetime, tolerance: timedelta) -> None:
    """401 unless the headers carry a fresh timestamp and the body's signature (compared in constant time)."""
    stamp = headers.get(TIMESTAMP_HEADER)
    given = headers.get(SIGNATURE_HEADER)
    if not stamp:
        raise WebhookRejected(401, f"missing {TIMESTAMP_HEADER}")
    if not given:
        raise WebhookRejected(401, f"missing {SIGNATURE_HEADER}")
    stamp = stamp.strip()
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        raise WebhookRejected(401, f"{TIMESTAMP_HEADER} must be unix seconds")
    if abs(now.timestamp() - int(stamp)) > tolerance.total_seconds():
        raise WebhookRejected(401, "stale timestamp")
    if not constant_time_equal(given.strip().lower(), signature(secret, stamp, body)):
        raise WebhookRejected(401, "bad signature")


def parse_payload(data: Any, *, now: datetime) -> Accepted:
    """The alerts of a decoded body (one alert object, or `{"alerts": [...]}`); 400 naming what is wrong."""
    body = require_object(data, "")
    if "alerts" not in body:
        return accepted([parse_alert(body, "", now=now)])
    extra = sorted(set(body) - {"alerts"})
    if extra:
        raise WebhookRejected(
            400, f'a batch is {{"alerts": [...]}} and nothing else (found {describe_value(extra[0])})'
        )
    items = body["alerts"]
    if not isinstance(items, list):
        raise WebhookRejected(400, "alerts must be a list")
    if len(items) > MAX_BATCH:
        raise WebhookRejected(400, f"alerts has {len(items)} entries; at most {MAX_BATCH} per request")
    return accepted(parse_alert(item, f"alerts[{index}]", now=now) for index, item in enumerate(items))


def parse_alert(raw: Any, path: str, *, now: datetime) -> Alert:
    """One alert object of the schema as an Alert."""
    item = require_object(raw, path)
    at = f"{path}." if path else ""
    for key in item:
        if key not in FIELDS:
            where = f" in {path}" if path else ""
            raise WebhookRejected(400, f"unknown field {describe_value(key)}{where} (known: {', '.join(FIELDS)})")
    title = optional_string(item, "title", path)
    if title is None:
        raise WebhookRejected(400, f"{at}title is missing")
    if not title.strip():
        raise WebhookRejected(400, f"{at}title must not be empty")
    title = title.strip()
    labels = string_map(item.get("labels"), f"{at}labels")
    severity_text = optional_string(item, "severity", path)
    if severity_text is not None:
        severity = normalise_severity(severity_text)
        if severity is None:
            raise WebhookRejected(
                400, f"{at}severity must be critical, warning or info (got {describe_value(severity_text)})"
            )
    else:
        severity = normalise_severity(labels.get("severity")) or "warning"
    service = optional_string(item, "service", path)
    status = item.get("status", "firing")
    if status not in ("firing", "resolved"):
        raise WebhookRejected(400, f'{at}status must be "firing" or "resolved"')
    dedup_key = optional_string(item, "dedup_key", path)
    if dedup_key is not None and not dedup_key:
        raise WebhookRejected(400, f"{at}dedup_key must not be empty")
    summary = optional_string(item, "summary", path)
    url = optional_string(item, "url", path)
    links = http_links({"source": url})
    if url is not None and not links:
        raise WebhookRejected(400, f"{at}url must be an http(s) URL")
    starts_at = parse_time(item["starts_at"], f"{at}starts_at") if item.get("starts_at") is not None else None

    labels["severity"] = severity
    if service is not None:
        labels["service"] = service
    labels.setdefault("alertname", title)
    identity = dedup_key if dedup_key is not None else {"title": title, "service": labels.get("service", "")}
    clipped_title = make_title(title)
    return Alert(
        source=NAME,
        fingerprint=make_fingerprint(NAME, identity),
        status=status,
        title=clipped_title,
        severity=severity,
        labels=labels,
        annotations={"summary": summary} if summary else {},
        summary=clip(summary.strip() if summary and summary.strip() else clipped_title, MAX_SUMMARY_CHARS),
        starts_at=starts_at or now,
        ends_at=now if status == "resolved" else None,
        links=links,
        group_key=None,
    )


def build(settings: GenericSettings, *, environ: Mapping[str, str], http: aiohttp.ClientSession) -> GenericSource:
    """The generic source; SourceConfigError when `hmac_secret_env` is not set."""
    del http  # nothing to fetch
    return GenericSource(settings, read_secret(environ, settings.hmac_secret_env, "the generic webhook HMAC secret"))
