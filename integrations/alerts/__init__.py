"""Alert sources behind one Protocol (`AlertSource`): Prometheus Alertmanager, Grafana, CloudWatch alarms through
Amazon SNS, Sentry, Datadog, and our own signed JSON webhook. Each authenticates a `POST /alerts/{source}` and parses
it into normalised `Alert`s; `build_sources` turns a validated `alerts.sources` section (`AlertSourcesSettings`)
into them."""

from integrations.alerts.model import Alert
from integrations.alerts.registry import AlertSourcesSettings, build_sources
from integrations.alerts.settings import SourceConfigError
from integrations.alerts.source import Accepted, AlertSource, Confirmation, WebhookRejected, WebhookRequest

__all__ = [
    "Accepted",
    "Alert",
    "AlertSource",
    "AlertSourcesSettings",
    "Confirmation",
    "SourceConfigError",
    "WebhookRejected",
    "WebhookRequest",
    "build_sources",
]
