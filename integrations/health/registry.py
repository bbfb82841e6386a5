"""Which health checks exist: the settings union an `analysis:` metric validates against (chosen by `kind`), and the
factory that builds the configured check. Adding a check is one new module plus one line in `_CHECKS`.

A check's module is imported only when a configuration names its `kind` (integrations/kinds.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

import aiohttp

from integrations.kinds import LazyKinds, load

if TYPE_CHECKING:
    from integrations.health.base import HealthCheck
    from integrations.health.cloudwatch_alarm import CloudwatchAlarmSettings
    from integrations.health.datadog_monitor import DatadogMonitorSettings
    from integrations.health.http import HttpCheckSettings
    from integrations.health.prometheus import PrometheusSettings

    AnyMetricSettings = PrometheusSettings | CloudwatchAlarmSettings | DatadogMonitorSettings | HttpCheckSettings
else:
    AnyMetricSettings = Any

_CHECKS: dict[str, tuple[str, str]] = {  # kind -> (module, settings model); each module has `build`
    "prometheus": ("integrations.health.prometheus", "PrometheusSettings"),
    "cloudwatch_alarm": ("integrations.health.cloudwatch_alarm", "CloudwatchAlarmSettings"),
    "datadog_monitor": ("integrations.health.datadog_monitor", "DatadogMonitorSettings"),
    "http": ("integrations.health.http", "HttpCheckSettings"),
}

MetricSettings = Annotated[
    AnyMetricSettings,
    LazyKinds("kind", {kind: f"{module}:{model}" for kind, (module, model) in _CHECKS.items()}),
]
"""One `analysis.metrics[]` entry: a check's settings, chosen by `kind`."""


def build_check(settings: AnyMetricSettings, *, environ: Mapping[str, str], http: aiohttp.ClientSession) -> HealthCheck:
    """The `HealthCheck` for a validated `MetricSettings` value."""
    kind = getattr(settings, "kind", None)
    check = _CHECKS.get(kind) if isinstance(kind, str) else None
    if check is None or type(settings).__name__ != check[1]:
        raise TypeError(f"no health check for {type(settings).__name__}")
    factory: Callable[..., HealthCheck] = load(f"{check[0]}:build")
    return factory(settings, environ=environ, http=http)
