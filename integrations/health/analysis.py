"""Metric gates with bake time: after each canary step, the deploy keeps checking its metrics for `bake`, every
`interval`, and fails the step once one metric has failed `failure_limit` checks.

```yaml
analysis:
  bake: 2m            # how long each step is watched before the next one
  interval: 20s       # one check of every metric per interval
  failure_limit: 2    # this many failed checks of one metric in a step fail the gate
  metrics: [{name: error-rate, kind: prometheus, url_env: PROMETHEUS_URL, query: '...', max: 0.01}, ...]
```

How this maps onto what users know from Flagger and Argo Rollouts:

- `interval` is Flagger's `analysis.interval` and Argo's metric `interval`: every metric is measured once per
  interval, all at the same moment. The first check comes one interval after the step, as in Flagger, so the
  step's traffic is already in the metrics' windows.
- `bake` is the time a step is watched, like an Argo `pause: {duration: ...}` step with background analysis, or
  Flagger's interval × iterations: `bake / interval` checks run per step (at least one), and the step passes
  only when they have all run without reaching the limit. It applies after every step, the last one included.
- `failure_limit` is Flagger's `threshold` ("max number of failed checks before rollback"): reaching it fails.
  Argo's `failureLimit` counts the failures it tolerates (it fails when failures exceed it), so our
  `failure_limit: N` is Argo's `failureLimit: N-1`. Failures are counted per metric, as in Argo, and per step:
  each step starts from zero (Flagger keeps one count for the whole analysis). They need not be consecutive.
- A measurement that could not be taken (Prometheus unreachable, 5xx after retries) counts as a failed check, as
  does a query that returns no data: a gate is never passed by a metric that is absent. There is no separate
  inconclusive state (Argo's `inconclusiveLimit`, `consecutiveErrorLimit`).
- A check that can never pass as configured (a query Prometheus rejects, an unknown alarm or monitor, a missing
  key) fails the gate at once, with the vendor's own error text, instead of burning the bake time.

A failing gate names the metric, its value and its limit; the deploy engine then applies `auto_rollback`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta

from pydantic import Field, model_validator

from integrations.health.base import HealthCheck, Measurement, PositiveDuration, clip
from integrations.health.registry import MetricSettings
from integrations.types import Duration, StrictModel, format_duration

log = logging.getLogger(__name__)


class AnalysisSettings(StrictModel):
    """`analysis: {bake: 2m, interval: 20s, failure_limit: 2, metrics: [...]}` (see the module docstring)."""

    bake: Duration = timedelta(minutes=2)
    interval: PositiveDuration = timedelta(seconds=20)
    failure_limit: int = Field(2, ge=1, le=1000)
    metrics: tuple[MetricSettings, ...] = Field(min_length=1, max_length=20)

    @model_validator(mode="after")
    def _consistent(self) -> AnalysisSettings:
        names = [metric.name for metric in self.metrics]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"metric names must be unique: {', '.join(twice)} appears more than once")
        if self.bake < self.interval:
            raise ValueError(
                f"bake ({format_duration(self.bake)}) is shorter than interval "
                f"({format_duration(self.interval)}): no check would run in it"
            )
        if self.failure_limit > self.rounds:
            raise ValueError(
                f"failure_limit ({self.failure_limit}) is more than the {self.rounds} checks a step "
                f"makes (bake / interval): the gate could never fail"
            )
        return self

    @property
    def rounds(self) -> int:
        """How many times each metric is checked per step."""
        return max(1, self.bake // self.interval)


@dataclass(frozen=True)
class MetricStatus:
    """One metric's line in the deploy message: its last value and limit, and its failed checks in this step."""

    name: str
    value: str | None = None  # None: not checked yet
    limit: str = ""
    ok: bool | None = None
    failures: int = 0
    error: str | None = None


@dataclass(frozen=True)
class AnalysisProgress:
    """Where a step's analysis is: checks done of the planned ones, and every metric's status."""

    checks_done: int
    checks: int
    failure_limit: int
    metrics: tuple[MetricStatus, ...]


@dataclass(frozen=True)
class AnalysisResult:
    """The gate's verdict: ok, a one-line reason naming the metric, its value and limit, and the last progress."""

    ok: bool
    reason: str
    progress: AnalysisProgress
    metric: str | None = None


def start(checks: Sequence[HealthCheck], settings: AnalysisSettings) -> AnalysisProgress:
    """The progress before the first check."""
    return AnalysisProgress(
        checks_done=0,
        checks=settings.rounds,
        failure_limit=settings.failure_limit,
        metrics=tuple(MetricStatus(name=check.name) for check in checks),
    )


def tally(
    progress: AnalysisProgress,
    measurements: Sequence[Measurement],
) -> tuple[AnalysisProgress, str | None, str | None]:
    """Adds one round of measurements (pure). Returns the new progress and, when the gate fails, the reason and
    the metric that failed it (the first in configuration order)."""
    metrics = []
    for status, measured in zip(progress.metrics, measurements, strict=True):
        metrics.append(
            replace(
                status,
                value=measured.value,
                limit=measured.limit,
                ok=measured.ok,
                failures=status.failures + (0 if measured.ok else 1),
                error=None if measured.ok else measured.error,
            )
        )
    progress = replace(progress, checks_done=progress.checks_done + 1, metrics=tuple(metrics))
    for status, measured in zip(progress.metrics, measurements, strict=True):
        if measured.final and not measured.ok:
            return progress, f"{status.name}: {measured.error or measured.value}", status.name
    for status in progress.metrics:
        if status.failures >= progress.failure_limit:
            return progress, failure_reason(status, progress), status.name
    return progress, None, None


def failure_reason(status: MetricStatus, progress: AnalysisProgress) -> str:
    """`error-rate = 0.25 (limit: max 0.01); 2 failed checks in this step, failure_limit 2`."""
    value, error = status.value or "", status.error or ""
    if error and (value == "error" or error.startswith(value)):
        seen = f"{status.name}: {error}"  # no value to show: what went wrong says it ("no data (...)")
    else:
        seen = f"{status.name} = {value}" + (f" ({error})" if error else "")
    plural = "s" if status.failures != 1 else ""
    return (
        f"{seen} (limit: {status.limit}); {status.failures} failed check{plural} in this step, "
        f"failure_limit {progress.failure_limit}"
    )


async def run_analysis(
    checks: Sequence[HealthCheck],
    settings: AnalysisSettings,
    *,
    report: Callable[[AnalysisProgress], Awaitable[None]],
) -> AnalysisResult:
    """Checks every metric each `interval` for `bake`; fails as soon as one metric reaches `failure_limit` failed
    checks (or fails finally), passes when all checks ran. `report` gets the progress before the first check and
    after every round (the deploy message shows it); its errors are logged, never decide the gate."""
    progress = start(checks, settings)
    await _report(report, progress)
    loop = asyncio.get_running_loop()
    began = loop.time()
    interval = settings.interval.total_seconds()
    for number in range(1, progress.checks + 1):
        # Rounds keep to the schedule from the start, so slow checks do not stretch the bake.
        delay = began + number * interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        measurements = await asyncio.gather(*(_measure(check) for check in checks))
        progress, reason, metric = tally(progress, measurements)
        await _report(report, progress)
        if reason is not None:
            return AnalysisResult(ok=False, reason=reason, progress=progress, metric=metric)
    return AnalysisResult(
        ok=True,
        progress=progress,
        reason=f"{progress.checks} check{'s' if progress.checks != 1 else ''} of "
        f"{len(checks)} metric{'s' if len(checks) != 1 else ''} over "
        f"{format_duration(settings.bake)} within limits",
    )


async def _measure(check: HealthCheck) -> Measurement:
    try:
        return await check.measure()
    except asyncio.CancelledError:
        raise
    except Exception as error:  # a check's bug is a failed check, not a crashed deploy
        log.exception("health check %s raised", check.name)
        return Measurement(ok=False, value="error", limit="", error=clip(f"check failed: {type(error).__name__}"))


async def _report(report: Callable[[AnalysisProgress], Awaitable[None]], progress: AnalysisProgress) -> None:
    try:
        await report(progress)
    except asyncio.CancelledError:
        raise
    except Exception:  # a chat hiccup must not decide a gate
        log.warning("analysis progress could not be shown", exc_info=True)
