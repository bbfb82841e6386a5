"""Prometheus Alertmanager's webhook receiver (payload version "4").

Point a receiver at the bot, with the token in Alertmanager's `http_config`:

    receivers:
      - name: chatops
        webhook_configs:
          - url: https://chatops.example.com/alerts/alertmanager
            send_resolved: true
            http_config: {authorization: {credentials_file: /etc/alertmanager/chatops-token}}

and `alerts: {sources: {alertmanager: {token_env: ALERTMANAGER_TOKEN}}}` in the bot's configuration. Each alert of a
group becomes one `Alert`: its own `status` decides firing/resolved (a group can mix both), Alertmanager's
`fingerprint` is kept, the `severity` label is normalised, and `endsAt` of `0001-01-01T00:00:00Z` means "not ended".

The source offers the raw intake (`admit`, `normalise`): a body that `well_formed` finds certainly valid is stored as
Alertmanager sent it and normalised by the stream's consumer; anything else goes through `receive` as before, so
every malformed body still gets its precise 400 at the edge.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import aiohttp

from integrations.alerts.base import (
    Accepted,
    Admitted,
    Alert,
    EnvVarName,
    Severity,
    WebhookRejected,
    WebhookRequest,
    accepted,
    best_summary,
    check_bearer,
    check_size,
    group_envelope,
    http_links,
    load_json,
    make_fingerprint,
    make_title,
    optional_string,
    parse_time,
    read_secret,
    rejects_only,
    require_object,
    severity_from_labels,
    string_map,
    string_values,
    valid_fingerprint,
    valid_time,
)
from integrations.types import StrictModel

NAME = "alertmanager"
PAYLOAD_VERSION = "4"


class AlertmanagerSettings(StrictModel):
    """`alerts: {sources: {alertmanager: {token_env: ALERTMANAGER_TOKEN}}}`."""

    token_env: EnvVarName
    default_severity: Severity = "warning"


class AlertmanagerSource:
    """Takes Alertmanager webhooks carrying `Authorization: Bearer <token>`."""

    name = NAME

    def __init__(self, settings: AlertmanagerSettings, token: str) -> None:
        self._settings = settings
        self._token = token

    @rejects_only
    async def receive(self, request: WebhookRequest) -> Accepted:
        """Checks the bearer token, then parses the group."""
        check_size(request.body)
        check_bearer(request.headers, self._token)
        return parse_payload(load_json(request.body), default_severity=self._settings.default_severity,
                             now=request.now)

    def admit(self, request: WebhookRequest) -> Admitted | None:
        """Checks the bearer token and the body as `receive` does; Admitted when `receive` would certainly accept
        the group, None when only `receive` can tell (its answer then decides)."""
        check_size(request.body)
        check_bearer(request.headers, self._token)
        return well_formed(load_json(request.body))

    def normalise(self, body: bytes, received_at: datetime) -> Accepted:
        """The alerts of an admitted body, as `receive` would have returned them at `received_at`."""
        return parse_payload(load_json(body), default_severity=self._settings.default_severity, now=received_at)


_STATUSES = ("firing", "resolved")


def well_formed(data: Any) -> Admitted | None:
    """Admitted (with the count `receive` answers) when `parse_payload` certainly accepts `data` with at least one
    alert: every check it makes, done without building anything, and every fingerprint given and valid (so that
    duplicates are counted without hashing labels). None for anything else, which `parse_payload` then judges."""
    if type(data) is not dict or data.get("version", PAYLOAD_VERSION) != PAYLOAD_VERSION:
        return None
    alerts = data.get("alerts")
    truncated = data.get("truncatedAlerts", 0)
    if truncated is None:
        truncated = 0
    if type(alerts) is not list or not alerts or type(truncated) is not int or truncated < 0:
        return None
    for key in ("groupKey", "externalURL"):
        if type(data.get(key, "")) is not str and data.get(key) is not None:
            return None
    if not string_values(data.get("commonLabels")):
        return None
    fingerprints = set()
    for item in alerts:
        if type(item) is not dict or item.get("status") not in _STATUSES:
            return None
        if not (string_values(item.get("labels")) and string_values(item.get("annotations"))):
            return None
        if not valid_time(item.get("startsAt")) or ("endsAt" in item and item["endsAt"] is not None
                                                      and not valid_time(item["endsAt"])):
            return None
        generator_url, fingerprint = item.get("generatorURL"), item.get("fingerprint")
        if generator_url is not None and type(generator_url) is not str:
            return None
        if type(fingerprint) is not str or not valid_fingerprint(fingerprint):
            return None
        fingerprints.add(fingerprint)
    return Admitted(count=len(fingerprints), truncated=truncated)


def parse_payload(data: Any, *, default_severity: Severity = "warning", now: datetime) -> Accepted:
    """The alerts of a decoded version 4 webhook body; WebhookRejected(400) naming the first thing wrong with it.
    `now` stands in for a start time given as Go's zero time."""
    envelope = group_envelope(data, version=PAYLOAD_VERSION)
    external_url = optional_string(envelope.body, "externalURL", "")
    string_map(envelope.body.get("commonLabels"), "commonLabels")  # checked for shape; each alert has its own labels
    alerts = [
        parse_alert(raw, f"alerts[{index}]", group_key=envelope.group_key, external_url=external_url,
                    default_severity=default_severity, now=now)
        for index, raw in enumerate(envelope.alerts)
    ]
    return accepted(alerts, truncated=envelope.truncated)


def parse_alert(raw: Any, path: str, *, group_key: str | None, external_url: str | None,
                default_severity: Severity, now: datetime) -> Alert:
    """One entry of `alerts[]` as an Alert."""
    item = require_object(raw, path)
    status = item.get("status")
    if status not in ("firing", "resolved"):
        raise WebhookRejected(400, f"{path}.status must be \"firing\" or \"resolved\"")
    labels = string_map(item.get("labels"), f"{path}.labels")
    annotations = string_map(item.get("annotations"), f"{path}.annotations")
    if "startsAt" not in item:
        raise WebhookRejected(400, f"{path}.startsAt is missing")
    starts_at = parse_time(item["startsAt"], f"{path}.startsAt")
    ends_at = parse_time(item["endsAt"], f"{path}.endsAt") if item.get("endsAt") is not None else None
    generator_url = optional_string(item, "generatorURL", path)
    fingerprint = optional_string(item, "fingerprint", path)
    if not valid_fingerprint(fingerprint):
        fingerprint = make_fingerprint(NAME, labels)
    assert fingerprint is not None
    if starts_at is None:  # Go's zero time: the sender did not say
        starts_at = ends_at or now
    title = make_title(labels.get("alertname"))
    links = http_links({
        "source": generator_url,
        "silence": silence_url(external_url, labels),
        "runbook": annotations.get("runbook_url") or annotations.get("runbook"),
    })
    return Alert(
        source=NAME,
        fingerprint=fingerprint,
        status=status,
        title=title,
        severity=severity_from_labels(labels, default_severity),
        labels=labels,
        annotations=annotations,
        summary=best_summary(annotations, title),
        starts_at=starts_at,
        ends_at=ends_at if status == "resolved" else None,
        links=links,
        group_key=group_key,
    )


_NEEDS_ESCAPE = re.compile(r'["\\\n]')


def silence_url(external_url: str | None, labels: Mapping[str, str]) -> str | None:
    """Alertmanager's "new silence" page prefilled with the alert's labels, or None without an external URL."""
    if not external_url or not labels:
        return None

    def escape(value: str) -> str:
        return _NEEDS_ESCAPE.sub(lambda m: {"\n": "\\n"}.get(m.group(0), "\\" + m.group(0)), value)

    matchers = ",".join(f'{name}="{escape(value)}"' for name, value in sorted(labels.items()))
    return f"{external_url.rstrip('/')}/#/silences/new?filter={quote('{' + matchers + '}', safe='')}"


def build(settings: AlertmanagerSettings, *, environ: Mapping[str, str],
          http: aiohttp.ClientSession) -> AlertmanagerSource:
    """The Alertmanager source; SourceConfigError when `token_env` is not set."""
    del http  # nothing to fetch
    token = read_secret(environ, settings.token_env, "the Alertmanager bearer token", strip=True)
    return AlertmanagerSource(settings, token)
