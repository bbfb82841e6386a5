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

from integrations.alerts.auth import BearerTokenSource
from integrations.alerts.model import Alert, Severity, valid_fingerprint
from integrations.alerts.payload import (
    group_alert,
    group_envelope,
    load_json,
    optional_string,
    sender_fingerprint,
    string_map,
    string_values,
)
from integrations.alerts.settings import EnvVarName, read_secret
from integrations.alerts.source import Accepted, Admitted, WebhookRequest, accepted, rejects_only
from integrations.alerts.text import http_links, make_title
from integrations.alerts.times import valid_time
from integrations.types import StrictModel

NAME = "alertmanager"
PAYLOAD_VERSION = "4"


class AlertmanagerSettings(StrictModel):
    """`alerts: {sources: {alertmanager: {token_env: ALERTMANAGER_TOKEN}}}`."""

    token_env: EnvVarName
    default_severity: Severity = "warning"


class AlertmanagerSource(BearerTokenSource[AlertmanagerSettings]):
    """Takes Alertmanager webhooks carrying `Authorization: Bearer <token>`."""

    name = NAME

    @rejects_only
    async def receive(self, request: WebhookRequest) -> Accepted:
        """Checks the bearer token, then parses the group."""
        return parse_payload(
            self._authentic_json(request), default_severity=self._settings.default_severity, now=request.now
        )

    def admit(self, request: WebhookRequest) -> Admitted | None:
        """Checks the bearer token and the body as `receive` does; Admitted when `receive` would certainly accept
        the group, None when only `receive` can tell (its answer then decides)."""
        return well_formed(self._authentic_json(request))

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
        if not valid_time(item.get("startsAt")) or (
            "endsAt" in item and item["endsAt"] is not None and not valid_time(item["endsAt"])
        ):
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
        parse_alert(
            raw,
            f"alerts[{index}]",
            group_key=envelope.group_key,
            external_url=external_url,
            default_severity=default_severity,
            now=now,
        )
        for index, raw in enumerate(envelope.alerts)
    ]
    return accepted(alerts, truncated=envelope.truncated)


def parse_alert(
    raw: Any, path: str, *, group_key: str | None, external_url: str | None, default_severity: Severity, now: datetime
) -> Alert:
    """One entry of `alerts[]` as an Alert."""
    entry = group_alert(raw, path)
    generator_url = optional_string(entry.item, "generatorURL", path)
    fingerprint = sender_fingerprint(entry.item, path, NAME, entry.labels)
    links = http_links(
        {
            "source": generator_url,
            "silence": silence_url(external_url, entry.labels),
            "runbook": entry.runbook,
        }
    )
    return entry.alert(
        NAME,
        fingerprint=fingerprint,
        title=make_title(entry.labels.get("alertname")),
        default_severity=default_severity,
        links=links,
        group_key=group_key,
        now=now,
    )


_NEEDS_ESCAPE = re.compile(r'["\\\n]')


# silence_url's answers for the label sets it saw last: every notification of a group repeats its alerts' labels.
# Cleared when full; a link longer than a browser would take is not kept.
_SILENCE_URLS: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
_SILENCE_URLS_MAX = 2048
_LONGEST_KEPT_URL = 1024


def silence_url(external_url: str | None, labels: Mapping[str, str]) -> str | None:
    """Alertmanager's "new silence" page prefilled with the alert's labels, or None without an external URL."""
    if not external_url or not labels:
        return None
    key = (external_url, tuple(sorted(labels.items())))
    url = _SILENCE_URLS.get(key)
    if url is None:
        url = _silence_url(*key)
        if len(url) <= _LONGEST_KEPT_URL:
            if len(_SILENCE_URLS) >= _SILENCE_URLS_MAX:
                _SILENCE_URLS.clear()
            _SILENCE_URLS[key] = url
    return url


def _silence_url(external_url: str, labels: tuple[tuple[str, str], ...]) -> str:
    """`silence_url` for labels sorted by name, worked out."""

    def escape(value: str) -> str:
        return _NEEDS_ESCAPE.sub(lambda m: {"\n": "\\n"}.get(m.group(0), "\\" + m.group(0)), value)

    matchers = ",".join(f'{name}="{escape(value)}"' for name, value in labels)
    return f"{external_url.rstrip('/')}/#/silences/new?filter={quote('{' + matchers + '}', safe='')}"


def build(
    settings: AlertmanagerSettings, *, environ: Mapping[str, str], http: aiohttp.ClientSession
) -> AlertmanagerSource:
    """The Alertmanager source; SourceConfigError when `token_env` is not set."""
    del http  # nothing to fetch
    token = read_secret(environ, settings.token_env, "the Alertmanager bearer token", strip=True)
    return AlertmanagerSource(settings, token)
