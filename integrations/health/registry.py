"""Which health checks exist: the settings union an `analysis:` metric validates against (chosen by `kind`), and the
factory that builds the configured check. Adding a check is one new module plus one member of `MetricSettings`
and one line in `_BUILDERS`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

import aiohttp
from pydantic import Field

from integrations.health import cloudwatch_alarm, datadog_monitor, http, prometheus
from integrations.health.base import HealthCheck
from integrations.health.cloudwatch_alarm import CloudwatchAlarmSettings
from integrations.health.datadog_monitor import DatadogMonitorSettings
from integrations.health.http import HttpCheckSettings
from integrations.health.prometheus import PrometheusSettings

AnyMetricSettings = PrometheusSettings | CloudwatchAlarmSettings | DatadogMonitorSettings | HttpCheckSettings

MetricSettings = Annotated[AnyMetricSettings, Field(discriminator="kind")]
"""One `analysis.metrics[]` entry: a check's settings, chosen by `kind`."""

_BUILDERS: dict[type[Any], Callable[..., HealthCheck]] = {
    PrometheusSettings: prometheus.build,
    CloudwatchAlarmSettings: cloudwatch_alarm.build,
    DatadogMonitorSettings: datadog_monitor.build,
    HttpCheckSettings: http.build,
}


def build_check(settings: AnyMetricSettings, *, environ: Mapping[str, str], http: aiohttp.ClientSession) -> HealthCheck:
    """The `HealthCheck` for a validated `MetricSettings` value."""
    try:
        factory = _BUILDERS[type(settings)]
    except KeyError:
        raise TypeError(f"no health check for {type(settings).__name__}") from None
    return factory(settings, environ=environ, http=http)
