"""Grafana unified alerting's webhook contact point (payload version "1").

In Grafana, add a Webhook contact point with URL `https://chatops.example.com/alerts/grafana` and either
"Authorization header" (scheme `Bearer`, credentials the token in `token_env`) or "Basic auth" (`username` and the
password in `password_env`). When both are configured here, either is accepted.

The body is Alertmanager's webhook data plus Grafana's fields: top level `receiver`, `status`, `orgId`, `alerts`,
`groupLabels`, `commonLabels`, `commonAnnotations`, `externalURL`, `version`, `groupKey`, `truncatedAlerts` (and the
deprecated `title`, `state`, `message`); each alert has `status`, `labels`, `annotations`, `startsAt`, `endsAt`,
`values`, `generatorURL`, `fingerprint`, `silenceURL`, `dashboardURL`, `panelURL` and `imageURL`. The rule's title is
the `alertname` label; `values` (older Grafana: `valueString`) becomes the `values` annotation.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Self

import aiohttp
from pydantic import model_validator

from integrations.alerts.auth import bearer_token, constant_time_equal
from integrations.alerts.model import Alert, Severity
from integrations.alerts.payload import (
    check_size,
    field_path,
    group_alert,
    group_envelope,
    load_json,
    optional_string,
    require_object,
    sender_fingerprint,
)
from integrations.alerts.settings import EnvVarName, read_secret
from integrations.alerts.source import Accepted, WebhookRejected, WebhookRequest, accepted, rejects_only
from integrations.alerts.text import clean, http_links, make_title
from integrations.types import StrictModel

NAME = "grafana"
PAYLOAD_VERSION = "1"
_ERROR_RULES = ("DatasourceNoData", "DatasourceError")  # Grafana's own alertname for a rule that failed to evaluate


class GrafanaSettings(StrictModel):
    """`alerts: {sources: {grafana: {token_env: GRAFANA_WEBHOOK_TOKEN}}}` (or `username` + `password_env`)."""

    token_env: EnvVarName | None = None
    username: str | None = None
    password_env: EnvVarName | None = None
    default_severity: Severity = "warning"

    @model_validator(mode="after")
    def _some_auth(self) -> Self:
        if (self.username is None) != (self.password_env is None):
            raise ValueError("set username and password_env together (Grafana's basic auth)")
        if self.username is not None and ":" in self.username:
            raise ValueError("username cannot contain ':' (basic auth separates it from the password with one)")
        if self.token_env is None and self.username is None:
            raise ValueError("set token_env (a bearer token), or username and password_env (basic auth)")
        return self


class GrafanaSource:
    """Takes Grafana webhook notifications carrying a bearer token or basic credentials."""

    name = NAME

    def __init__(self, settings: GrafanaSettings, *, token: str | None, password: str | None) -> None:
        self._settings = settings
        self._token = token
        self._password = password

    @rejects_only
    async def receive(self, request: WebhookRequest) -> Accepted:
        """Checks the credentials, then parses the notification."""
        check_size(request.body)
        self._authenticate(request.headers)
        return parse_payload(load_json(request.body), default_severity=self._settings.default_severity, now=request.now)

    def _authenticate(self, headers: Mapping[str, str]) -> None:
        token = bearer_token(headers)
        if token is not None and self._token is not None:
            if not constant_time_equal(token, self._token):
                raise WebhookRejected(401, "bad bearer token")
            return
        credentials = basic_credentials(headers)
        if credentials is not None and self._password is not None:
            assert self._settings.username is not None
            user_ok = constant_time_equal(credentials[0], self._settings.username)
            password_ok = constant_time_equal(credentials[1], self._password)
            if not (user_ok and password_ok):
                raise WebhookRejected(401, "bad basic credentials")
            return
        if self._token is not None and self._password is not None:
            raise WebhookRejected(401, "missing bearer token or basic credentials")
        raise WebhookRejected(401, "missing bearer token" if self._token is not None else "missing basic credentials")


def basic_credentials(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """(username, password) of an `Authorization: Basic …` header, or None when there is none or it is garbled."""
    value = headers.get("Authorization")
    if not value:
        return None
    scheme, _, encoded = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    username, colon, password = decoded.partition(":")
    return (username, password) if colon else None


def parse_payload(data: Any, *, default_severity: Severity = "warning", now: datetime) -> Accepted:
    """The alerts of a decoded Grafana webhook body; WebhookRejected(400) naming the first thing wrong with it.
    `now` stands in for a start time given as Go's zero time."""
    envelope = group_envelope(data, version=PAYLOAD_VERSION)
    alerts = [
        parse_alert(raw, f"alerts[{index}]", group_key=envelope.group_key, default_severity=default_severity, now=now)
        for index, raw in enumerate(envelope.alerts)
    ]
    return accepted(alerts, truncated=envelope.truncated)


def parse_alert(raw: Any, path: str, *, group_key: str | None, default_severity: Severity, now: datetime) -> Alert:
    """One entry of `alerts[]` as an Alert."""
    entry = group_alert(raw, path)
    item = entry.item
    urls = {
        key: optional_string(item, key, path)
        for key in ("generatorURL", "silenceURL", "dashboardURL", "panelURL", "imageURL")
    }
    fingerprint = sender_fingerprint(item, path, NAME, entry.labels)
    values = format_values(item.get("values"), f"{path}.values")
    if values is None:
        values = optional_string(item, "valueString", path)
    if values:
        entry.annotations.setdefault("values", values)
    links = http_links(
        {
            "source": urls["generatorURL"],
            "silence": urls["silenceURL"],
            "dashboard": urls["dashboardURL"],
            "panel": urls["panelURL"],
            "image": urls["imageURL"],
            "runbook": entry.runbook,
        }
    )
    return entry.alert(
        NAME,
        fingerprint=fingerprint,
        title=make_title(rule_title(entry.labels)),
        default_severity=default_severity,
        links=links,
        group_key=group_key,
        now=now,
    )


def rule_title(labels: Mapping[str, str]) -> str:
    """The alert rule's title (the `alertname` label); for a rule that failed to evaluate, "<rule> (<why>)"."""
    alertname = labels.get("alertname", "")
    rule = labels.get("rulename")
    if alertname in _ERROR_RULES and rule and rule.strip():
        return f"{rule} ({alertname})"
    return alertname


def format_values(value: Any, path: str) -> str | None:
    """`{"B": 44.239, "C": 1}` as "B=44.239, C=1"; None when absent; 400 unless it maps names to numbers."""
    if value is None:
        return None
    values = require_object(value, path)
    parts = []
    for name, number in values.items():
        if number is None:
            parts.append(f"{name}=null")
            continue
        if not isinstance(number, int | float) or isinstance(number, bool):
            raise WebhookRejected(400, f"{field_path(path, name)} must be a number")
        if isinstance(number, float) and not math.isfinite(number):
            parts.append(f"{name}={number}")
        else:
            parts.append(f"{name}={number:.6g}" if isinstance(number, float) else f"{name}={number}")
    return clean(", ".join(parts)) or None


def build(settings: GrafanaSettings, *, environ: Mapping[str, str], http: aiohttp.ClientSession) -> GrafanaSource:
    """The Grafana source; SourceConfigError when `token_env` or `password_env` is not set."""
    del http  # nothing to fetch
    token = (
        None
        if settings.token_env is None
        else read_secret(environ, settings.token_env, "the Grafana contact point's bearer token", strip=True)
    )
    password = (
        None
        if settings.password_env is None
        else read_secret(environ, settings.password_env, "the Grafana contact point's basic auth password")
    )
    return GrafanaSource(settings, token=token, password=password)
