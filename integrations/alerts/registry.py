"""Which alert sources exist: the `alerts.sources` configuration section (each source optional) and the factory that
builds the configured ones. Adding a source is one new module plus one field of `AlertSourcesSettings` and one line
in `_SOURCES`.

A source's module is imported only when the configuration has its section (integrations/kinds.py): start-up imports
none of the sources a configuration does not use (SNS's certificate checks load `cryptography`'s X.509)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

import aiohttp

from integrations.alerts.settings import SourceConfigError
from integrations.alerts.source import AlertSource
from integrations.kinds import LazyModel, load
from integrations.types import StrictModel

if TYPE_CHECKING:
    from integrations.alerts.alertmanager import AlertmanagerSettings
    from integrations.alerts.datadog import DatadogSettings
    from integrations.alerts.generic import GenericSettings
    from integrations.alerts.grafana import GrafanaSettings
    from integrations.alerts.sentry import SentrySettings
    from integrations.alerts.sns import SnsSettings
else:  # validated by the model a LazyModel names, imported when the section is present
    AlertmanagerSettings = Annotated[Any, LazyModel("integrations.alerts.alertmanager:AlertmanagerSettings")]
    GrafanaSettings = Annotated[Any, LazyModel("integrations.alerts.grafana:GrafanaSettings")]
    SnsSettings = Annotated[Any, LazyModel("integrations.alerts.sns:SnsSettings")]
    GenericSettings = Annotated[Any, LazyModel("integrations.alerts.generic:GenericSettings")]
    SentrySettings = Annotated[Any, LazyModel("integrations.alerts.sentry:SentrySettings")]
    DatadogSettings = Annotated[Any, LazyModel("integrations.alerts.datadog:DatadogSettings")]

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


_SOURCES = ("alertmanager", "grafana", "sns", "generic", "sentry", "datadog")
"""Each is a field of `AlertSourcesSettings` and a module `integrations.alerts.<name>` with `build`."""


def build_sources(
    settings: AlertSourcesSettings, *, environ: Mapping[str, str], http: aiohttp.ClientSession
) -> dict[str, AlertSource]:
    """The configured sources by name (the `{source}` of `POST /alerts/{source}`); SourceConfigError naming a missing
    environment variable or unreadable file."""
    sources: dict[str, AlertSource] = {}
    for name in _SOURCES:
        section: Any = getattr(settings, name)
        if section is not None:
            factory: Callable[..., AlertSource] = load(f"integrations.alerts.{name}:build")
            sources[name] = factory(section, environ=environ, http=http)
    return sources
