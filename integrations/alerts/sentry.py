"""Sentry's integration-platform webhooks (an internal integration's), at `POST /alerts/sentry`.

Shapes follow Sentry's webhook documentation (docs.sentry.io/organization/integrations/integration-platform/webhooks/,
kept in getsentry/sentry-docs): every request carries `Request-ID`, `Sentry-Hook-Resource`, `Sentry-Hook-Timestamp`
and `Sentry-Hook-Signature` (the hex HMAC-SHA256 of the body with the integration's client secret), and a body
`{"action": ..., "actor": {...}, "data": {...}, "installation": {"uuid": ...}}`. The resources used here:

- `metric_alert` (action `critical`, `warning` or `resolved`): `data.metric_alert` is the incident with its
  `alert_rule`, plus `data.description_title`, `data.description_text` and `data.web_url`;
- `event_alert` (an issue alert rule fired; action `triggered`): `data.event` (with `issue_id`, `level`, `culprit`,
  `title`, `web_url`, `tags`) and `data.triggered_rule`;
- `issue` (action `created`, `resolved`, `assigned`, `archived` (formerly `ignored`) or `unresolved`): `data.issue`.

One alert lifecycle per metric alert rule (`critical` and `warning` update it, `resolved` closes it) and one per
Sentry issue (an issue alert opens it; resolving or archiving the issue in Sentry closes it). Anything else
(`installation`, `error`, `comment`, other issue actions) is answered 204 and not stored. `Request-ID` is the
delivery's idempotency key: a delivery seen before is not stored twice.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp

from integrations.alerts.auth import SignedSource, constant_time_equal
from integrations.alerts.labels import make_fingerprint, normalise_severity
from integrations.alerts.model import MAX_SUMMARY_CHARS, Alert, Severity, Status
from integrations.alerts.payload import check_size, load_json, optional_string, require_object
from integrations.alerts.settings import EnvVarName, read_secret
from integrations.alerts.source import Accepted, WebhookRejected, WebhookRequest, accepted, ignored, rejects_only
from integrations.alerts.text import clean, clip, http_links, make_title
from integrations.alerts.times import parse_time
from integrations.types import StrictModel

NAME = "sentry"
SIGNATURE_HEADER = "Sentry-Hook-Signature"
RESOURCE_HEADER = "Sentry-Hook-Resource"
REQUEST_ID_HEADER = "Request-ID"
METRIC_ACTIONS: dict[str, Severity | None] = {"critical": "critical", "warning": "warning", "resolved": None}
ISSUE_RESOLVING_ACTIONS = ("resolved", "ignored", "archived")  # Sentry renamed "ignored" to "archived"
MAX_REQUEST_ID_CHARS = 200
_HEX_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")
# Sentry's API URL of an event names the project's slug: /api/0/projects/<org>/<project>/events/<id>/
_EVENT_API_URL = re.compile(r"/api/0/projects/([^/]+)/([^/]+)/events/")


class SentrySettings(StrictModel):
    """`alerts: {sources: {sentry: {client_secret_env: SENTRY_CLIENT_SECRET}}}`."""

    client_secret_env: EnvVarName
    issue_created_alerts: bool = False
    """Whether a new Sentry issue (`issue` / `created`) is an alert by itself, without an issue alert rule."""
    default_severity: Severity = "warning"
    """The severity of an issue or event whose `level` is missing or unknown."""


class SentrySource(SignedSource[SentrySettings]):
    """Takes Sentry internal-integration webhooks signed with the integration's client secret."""

    name = NAME

    @rejects_only
    async def receive(self, request: WebhookRequest) -> Accepted:
        """Checks the signature, then turns the resource into an alert (or an ignored request)."""
        check_size(request.body)
        verify(self._secret, request.headers, request.body)
        resource = (request.headers.get(RESOURCE_HEADER) or "").strip()
        if not resource:
            raise WebhookRejected(400, f"missing {RESOURCE_HEADER} header")
        if resource not in ("metric_alert", "event_alert", "issue"):
            return ignored(f"Sentry {clip(resource, 40)!r} webhooks carry no alert")
        result = parse_payload(
            resource,
            load_json(request.body),
            now=request.now,
            issue_created_alerts=self._settings.issue_created_alerts,
            default_severity=self._settings.default_severity,
        )
        request_id = (request.headers.get(REQUEST_ID_HEADER) or "").strip()
        if result.ignored or not request_id:
            return result
        key = clip(request_id, MAX_REQUEST_ID_CHARS)
        return Accepted(alerts=result.alerts, reply=result.reply, idempotency_key=key)


def signature(secret: bytes, body: bytes) -> str:
    """The `Sentry-Hook-Signature` of `body`: hex HMAC-SHA256 with the client secret."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, headers: Mapping[str, str], body: bytes) -> None:
    """401 unless `Sentry-Hook-Signature` is the body's signature (compared in constant time)."""
    given = (headers.get(SIGNATURE_HEADER) or "").strip()
    if not given:
        raise WebhookRejected(401, f"missing {SIGNATURE_HEADER} header")
    if not _HEX_SIGNATURE.fullmatch(given):
        raise WebhookRejected(401, f"bad signature: {SIGNATURE_HEADER} must be 64 hex digits")
    if not constant_time_equal(given.lower(), signature(secret, body)):
        raise WebhookRejected(401, "bad signature")


# -- parsing: pure functions of the decoded body ------------------------------------------------------------------


def parse_payload(
    resource: str,
    data: Any,
    *,
    now: datetime,
    issue_created_alerts: bool = False,
    default_severity: Severity = "warning",
) -> Accepted:
    """The alert in a decoded webhook body of `resource` (or an ignored result); 400 naming what is wrong."""
    body = require_object(data, "")
    action = body.get("action")
    if not isinstance(action, str) or not action:
        raise WebhookRejected(400, "action is missing")
    payload = require_object(body.get("data"), "data")
    if resource == "metric_alert":
        return accepted([parse_metric_alert(action, payload, now=now)])
    if resource == "event_alert":
        if action != "triggered":
            raise WebhookRejected(400, 'action must be "triggered" for an event_alert')
        return accepted([parse_event_alert(payload, now=now, default_severity=default_severity)])
    if resource == "issue":
        if action in ISSUE_RESOLVING_ACTIONS:
            return accepted([parse_issue(payload, "resolved", now=now, default_severity=default_severity)])
        if action == "created" and issue_created_alerts:
            return accepted([parse_issue(payload, "firing", now=now, default_severity=default_severity)])
        return ignored(f"Sentry issue {clip(action, 40)!r} is not an alert")
    return ignored(f"Sentry {clip(resource, 40)!r} webhooks carry no alert")


def parse_metric_alert(action: str, data: Mapping[str, Any], *, now: datetime) -> Alert:
    """A metric alert (`critical`, `warning` or `resolved`) as one lifecycle per alert rule."""
    if action not in METRIC_ACTIONS:
        raise WebhookRejected(400, "action must be critical, warning or resolved for a metric_alert")
    incident = require_object(data.get("metric_alert"), "data.metric_alert")
    rule = require_object(incident.get("alert_rule"), "data.metric_alert.alert_rule")
    rule_id = identifier(rule, "id", "data.metric_alert.alert_rule")
    rule_name = optional_string(rule, "name", "data.metric_alert.alert_rule") or ""
    title = make_title(
        rule_name or optional_string(data, "description_title", "data"), f"Sentry metric alert {rule_id}"
    )
    projects = string_list(rule.get("projects"), "data.metric_alert.alert_rule.projects") or string_list(
        incident.get("projects"), "data.metric_alert.projects"
    )
    environment = optional_string(rule, "environment", "data.metric_alert.alert_rule")
    labels = {"alertname": title, "alert_rule_id": rule_id}
    if projects:
        labels["project"] = ",".join(projects)
    if environment:
        labels["environment"] = environment
    annotations: dict[str, str] = {}
    for key in ("aggregate", "query", "dataset"):
        value = optional_string(rule, key, "data.metric_alert.alert_rule")
        if value:
            annotations[key] = value
    heading = optional_string(data, "description_title", "data") or ""
    text = optional_string(data, "description_text", "data") or ""
    if heading:
        annotations["description_title"] = heading
    if text:
        annotations["description"] = text
    severity = METRIC_ACTIONS[action]
    status: Status = "firing" if severity is not None else "resolved"
    started = _optional_time(incident, "date_started", "data.metric_alert") or _optional_time(
        incident, "date_detected", "data.metric_alert"
    )
    closed = _optional_time(incident, "date_closed", "data.metric_alert")
    return Alert(
        source=NAME,
        fingerprint=make_fingerprint(NAME, f"metric_alert:{rule_id}"),
        status=status,
        title=title,
        # A resolve does not say which threshold had fired; every Sentry metric rule has a critical one.
        severity=severity or "critical",
        labels=labels,
        annotations=annotations,
        summary=clip(" ".join((text or heading or title).replace("\\n", " ").split()), MAX_SUMMARY_CHARS),
        starts_at=started or now,
        ends_at=(closed or now) if status == "resolved" else None,
        links=http_links({"source": optional_string(data, "web_url", "data")}),
    )


def parse_event_alert(data: Mapping[str, Any], *, now: datetime, default_severity: Severity = "warning") -> Alert:
    """An issue alert rule's notification, as the lifecycle of the event's Sentry issue."""
    event = require_object(data.get("event"), "data.event")
    issue_id = identifier(event, "issue_id", "data.event")
    rule = optional_string(data, "triggered_rule", "data")
    if not rule and isinstance(data.get("issue_alert"), dict):
        rule = optional_string(data["issue_alert"], "title", "data.issue_alert")
    level = optional_string(event, "level", "data.event")
    culprit = optional_string(event, "culprit", "data.event") or ""
    tags = event_tags(event.get("tags"))
    project = _project_from_url(optional_string(event, "url", "data.event"))
    if project is None and isinstance(event.get("project"), int | str) and not isinstance(event.get("project"), bool):
        project = clean(str(event["project"]))
    environment = optional_string(event, "environment", "data.event") or tags.get("environment")
    title = make_title(
        optional_string(event, "title", "data.event") or optional_string(event, "message", "data.event"),
        f"Sentry issue {issue_id}",
    )
    labels = _issue_labels(issue_id, project=project, environment=environment, level=level)
    if rule:
        labels["rule"] = rule
    if tags.get("release"):
        labels["release"] = tags["release"]
    annotations = {"culprit": culprit} if culprit else {}
    if rule:
        annotations["rule"] = rule
    event_id = optional_string(event, "event_id", "data.event")
    if event_id:
        annotations["event_id"] = event_id
    started = _optional_time(event, "datetime", "data.event") or _epoch(event.get("timestamp"))
    return Alert(
        source=NAME,
        fingerprint=make_fingerprint(NAME, f"issue:{issue_id}"),
        status="firing",
        title=title,
        severity=normalise_severity(level) or default_severity,
        labels=labels,
        annotations=annotations,
        summary=_summary(culprit, rule),
        starts_at=started or now,
        ends_at=None,
        links=http_links({"source": optional_string(event, "web_url", "data.event")}),
    )


def parse_issue(
    data: Mapping[str, Any], status: str, *, now: datetime, default_severity: Severity = "warning"
) -> Alert:
    """An `issue` webhook as the issue's lifecycle: `firing` (created) or `resolved` (resolved, archived)."""
    issue = require_object(data.get("issue"), "data.issue")
    issue_id = identifier(issue, "id", "data.issue")
    project = None
    if issue.get("project") is not None:
        project_info = require_object(issue["project"], "data.issue.project")
        project = optional_string(project_info, "slug", "data.issue.project")
    level = optional_string(issue, "level", "data.issue")
    culprit = optional_string(issue, "culprit", "data.issue") or ""
    title = make_title(optional_string(issue, "title", "data.issue"), f"Sentry issue {issue_id}")
    annotations = {"culprit": culprit} if culprit else {}
    short_id = optional_string(issue, "shortId", "data.issue")
    if short_id:
        annotations["short_id"] = short_id
    first_seen = _optional_time(issue, "firstSeen", "data.issue")
    return Alert(
        source=NAME,
        fingerprint=make_fingerprint(NAME, f"issue:{issue_id}"),
        status="firing" if status == "firing" else "resolved",
        title=title,
        severity=normalise_severity(level) or default_severity,
        labels=_issue_labels(issue_id, project=project, environment=None, level=level),
        annotations=annotations,
        summary=_summary(culprit, None),
        starts_at=first_seen or now,
        ends_at=now if status == "resolved" else None,
        links=http_links(
            {
                "source": optional_string(issue, "web_url", "data.issue")
                or optional_string(issue, "permalink", "data.issue")
            }
        ),
    )


def _issue_labels(issue_id: str, *, project: str | None, environment: str | None, level: str | None) -> dict[str, str]:
    # `alertname` is the issue's id, not its title: an event's title can differ from its issue's, and the resolve
    # (an `issue` webhook) must land in the group its alert (an `event_alert`) opened.
    labels = {"alertname": f"sentry-issue-{issue_id}", "issue_id": issue_id}
    if project:
        labels["project"] = project
    if environment:
        labels["environment"] = environment
    if level:
        labels["level"] = level
    return labels


def _summary(culprit: str, rule: str | None) -> str:
    parts = [f"in {culprit}" if culprit else "", f"(alert rule “{rule}”)" if rule else ""]
    return clip(" ".join(" ".join(part for part in parts if part).split()), MAX_SUMMARY_CHARS)


def identifier(obj: Mapping[str, Any], key: str, path: str) -> str:
    """A Sentry id (a string or an integer) as a non-empty string of at most 64 characters; 400 otherwise."""
    value = obj.get(key)
    if value is None or value == "":
        raise WebhookRejected(400, f"{path}.{key} is missing")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise WebhookRejected(400, f"{path}.{key} must be a string or an integer")
    text = clean(str(value)).strip()
    if not text or len(text) > 64:
        raise WebhookRejected(400, f"{path}.{key} must be 1 to 64 characters")
    return text


def string_list(value: Any, path: str) -> list[str]:
    """A JSON list of strings (None is []); 400 naming an entry that is not one."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise WebhookRejected(400, f"{path} must be a list")
    items = []
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise WebhookRejected(400, f"{path}[{index}] must be a string")
        items.append(clean(item))
    return items


def event_tags(value: Any) -> dict[str, str]:
    """An event's `tags` (`[["key", "value"], ...]`, or `[{"key": ..., "value": ...}]`) as a dict; odd entries are
    skipped (tags are context here, never required)."""
    tags: dict[str, str] = {}
    if not isinstance(value, list):
        return tags
    for item in value:
        if isinstance(item, list) and len(item) == 2 and all(isinstance(part, str) for part in item):
            tags.setdefault(clean(item[0]), clean(item[1]))
        elif isinstance(item, dict) and isinstance(item.get("key"), str) and isinstance(item.get("value"), str):
            tags.setdefault(clean(item["key"]), clean(item["value"]))
    return tags


def _project_from_url(url: str | None) -> str | None:
    match = _EVENT_API_URL.search(url or "")
    return match.group(2) if match else None


def _optional_time(obj: Mapping[str, Any], key: str, path: str) -> datetime | None:
    value = obj.get(key)
    return None if value is None else parse_time(value, f"{path}.{key}")


def _epoch(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (ValueError, OverflowError, OSError):
        return None


def build(settings: SentrySettings, *, environ: Mapping[str, str], http: aiohttp.ClientSession) -> SentrySource:
    """The Sentry source; SourceConfigError when `client_secret_env` is not set."""
    del http  # nothing to fetch
    secret = read_secret(environ, settings.client_secret_env, "the Sentry integration's client secret", strip=True)
    return SentrySource(settings, secret)
