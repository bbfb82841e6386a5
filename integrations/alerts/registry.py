"""Which alert sources exist: the `alerts.sources` configuration section (each source optional) and the factory that
builds the configured ones. Adding a source is one new module plus one field of `AlertSourcesSettings` and one line
in `_BUILDERS`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from integrations.alerts import alertmanager, datadog, generic, grafana, sentry, sns
from integrations.alerts.alertmanager import AlertmanagerSettings
from integrations.alerts.datadog import DatadogSettings
from integrations.alerts.generic import GenericSettings
from integrations.alerts.grafana import GrafanaSettings
from integrations.alerts.sentry import SentrySettings
from integrations.alerts.settings import SourceConfigError
from integrations.alerts.sns import SnsSettings
from integrations.alerts.source import AlertSource
from integrations.types import StrictModel

__all__ = ["AlertSourcesSettings", "SourceConfigError", "build_sources"]


class AlertSourcesSettings(StrictModel):
    """`alerts: {sources: {alertmanager: {...}, grafana: {...}, sns: {...}, generic: {...}, sentry: {...},
    datadog: {...}}}`; each is optional."""

    alertmanager: AlertmanagerSettings | None = None
    grafana: GrafanaSettings | None = None
    sns: SnsSettings | None = None
    generic: GenericSettings | None = None
    sentry: SentrySettings | None = None
    datadog: DatadogSettings | None = None


_BUILDERS: dict[str, Callable[..., AlertSource]] = {
    "alertmanager": alertmanager.build,
    "grafana": grafana.build,
    "sns": sns.build,
    "generic": generic.build,
    "sentry": sentry.build,
    "datadog": datadog.build,
}


def build_sources(settings: AlertSourcesSettings, *, environ: Mapping[str, str],
                  http: aiohttp.ClientSession) -> dict[str, AlertSource]:
    """The configured sources by name (the `{source}` of `POST /alerts/{source}`); SourceConfigError naming a missing
    environment variable or unreadable file."""
    sources: dict[str, AlertSource] = {}
    for name, factory in _BUILDERS.items():
        section: Any = getattr(settings, name)
        if section is not None:
            sources[name] = factory(section, environ=environ, http=http)
    return sources
