"""The metric gate's logic: bake/interval/failure_limit as Flagger and Argo users expect, counted per metric and
per step, a final failure ending the gate at once, progress reported before and after every round, and the
`analysis:` section's validation as `check-config` words it."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from bot.shell.config import ConfigError, parse_config
from integrations.health.analysis import (
    AnalysisProgress,
    AnalysisSettings,
    run_analysis,
)
from integrations.health.base import Measurement


class Scripted:
    """A HealthCheck that answers from a script (the Protocol's own test double; no vendor is involved)."""

    def __init__(self, name: str, answers: Iterable[Measurement]) -> None:
        self.name = name
        self._answers = list(answers)
        self.calls = 0

    async def measure(self) -> Measurement:
        self.calls += 1
        return self._answers.pop(0) if len(self._answers) > 1 else self._answers[0]

    async def aclose(self) -> None:
        pass


OK = Measurement(ok=True, value="0.001", limit="max 0.01")
HIGH = Measurement(ok=False, value="0.25", limit="max 0.01")


def analysis(**values: object) -> AnalysisSettings:
    base: dict[str, object] = {
        "bake": "40ms",
        "interval": "10ms",
        "failure_limit": 2,
        "metrics": [
            {"name": "error-rate", "kind": "prometheus", "url": "http://prometheus:9090", "query": "up", "max": 0.01},
            {"name": "latency", "kind": "prometheus", "url": "http://prometheus:9090", "query": "up", "max": 0.5},
        ],
    }
    base.update(values)
    return AnalysisSettings.model_validate(base)


async def run(checks: list[Scripted], settings: AnalysisSettings) -> tuple[object, list[AnalysisProgress]]:
    reports: list[AnalysisProgress] = []

    async def report(progress: AnalysisProgress) -> None:
        reports.append(progress)

    return await run_analysis(checks, settings, report=report), reports


async def test_the_gate_passes_after_every_check_of_the_bake() -> None:
    checks = [Scripted("error-rate", [OK]), Scripted("latency", [OK])]
    result, reports = await run(checks, analysis())
    assert result.ok
    assert result.reason == "4 checks of 2 metrics over 40ms within limits"
    assert [c.calls for c in checks] == [4, 4]
    assert [r.checks_done for r in reports] == [0, 1, 2, 3, 4]
    assert reports[0].metrics[0].value is None and reports[-1].metrics[0].value == "0.001"


async def test_failure_limit_failed_checks_of_one_metric_fail_the_gate_naming_it() -> None:
    checks = [Scripted("error-rate", [OK, HIGH, OK, HIGH, OK]), Scripted("latency", [OK])]
    result, reports = await run(checks, analysis())
    assert not result.ok and result.metric == "error-rate"
    assert result.reason == "error-rate = 0.25 (limit: max 0.01); 2 failed checks in this step, failure_limit 2"
    assert checks[0].calls == 4 and reports[-1].metrics[0].failures == 2


async def test_failures_are_counted_per_metric() -> None:
    # One failure each: neither metric reaches failure_limit 2 (Argo counts per metric, not per round).
    checks = [Scripted("error-rate", [HIGH, OK]), Scripted("latency", [OK, HIGH, OK])]
    result, _ = await run(checks, analysis())
    assert result.ok


async def test_a_final_failure_ends_the_gate_at_once() -> None:
    rejected = Measurement(
        ok=False,
        value="error",
        limit="max 0.01",
        final=True,
        error="Prometheus rejected the query: 1:5: parse error: unexpected end of input",
    )
    checks = [Scripted("error-rate", [rejected]), Scripted("latency", [OK])]
    result, _ = await run(checks, analysis(failure_limit=3))
    assert not result.ok and checks[0].calls == 1
    assert result.reason == "error-rate: Prometheus rejected the query: 1:5: parse error: unexpected end of input"


async def test_no_data_counts_as_a_failed_check() -> None:
    no_data = Measurement(ok=False, value="no data", limit="max 0.01", error="no data (the query returned no series)")
    result, _ = await run([Scripted("error-rate", [no_data])], analysis(metrics=analysis().metrics[:1]))
    assert not result.ok
    assert result.reason == (
        "error-rate: no data (the query returned no series) (limit: max 0.01); "
        "2 failed checks in this step, failure_limit 2"
    )


async def test_a_check_that_raises_is_a_failed_check() -> None:
    class Broken(Scripted):
        async def measure(self) -> Measurement:
            raise RuntimeError("bug")

    result, _ = await run([Broken("error-rate", [OK])], analysis(metrics=analysis().metrics[:1], failure_limit=1))
    assert not result.ok and "check failed: RuntimeError" in result.reason


# The issue's example, verbatim: its PromQL queries are longer than a line, and wrapping them would change them.
ISSUE_EXAMPLE = """
roles: {deployers: [U0BOB]}
services:
  web:
    environments:
      production:
        deployer: {kind: command, argv: ["true"]}
        canary: [10, 50, 100]
        auto_rollback: true
        analysis:
          bake: 2m
          interval: 20s
          failure_limit: 2
          metrics:
            - {name: error-rate, kind: prometheus, url_env: PROMETHEUS_URL, query: 'sum(rate(http_requests_total{job="web",code=~"5.."}[1m])) / sum(rate(http_requests_total{job="web"}[1m]))', max: 0.01}
            - {name: p99-latency, kind: prometheus, url_env: PROMETHEUS_URL, query: 'histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket{job="web"}[1m])) by (le))', max: 0.5}
            - {name: alarms, kind: cloudwatch_alarm, alarm_names: [web-5xx], region: eu-west-1}
            - {name: monitors, kind: datadog_monitor, monitor_ids: [123], api_key_env: DD_API_KEY, app_key_env: DD_APP_KEY}
"""  # noqa: E501


def test_the_issue_example_validates() -> None:
    config = parse_config(ISSUE_EXAMPLE, "chatops.yaml")
    gate = config.services["web"].environments["production"].analysis
    assert (
        gate is not None
        and gate.rounds == 6
        and [m.kind for m in gate.metrics] == ["prometheus", "prometheus", "cloudwatch_alarm", "datadog_monitor"]
    )


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            "kind: cloudwatch_alarm",
            "kind: cloudwatch",
            "line 17, services.web.environments.production.analysis.metrics[2]: unknown kind 'cloudwatch'; expected "
            "one "
            "of: prometheus, cloudwatch_alarm, datadog_monitor, http (did you mean 'cloudwatch_alarm'?)",
        ),
        (
            "url_env: PROMETHEUS_URL, query: 'hist",
            "query: 'hist",
            "line 16, services.web.environments.production.analysis.metrics[1]: url_env is missing: name the "
            "environment "
            "variable holding Prometheus's URL (e.g. url_env: PROMETHEUS_URL), or give url",
        ),
        (
            ", app_key_env: DD_APP_KEY",
            "",
            "line 18, services.web.environments.production.analysis.metrics[3].app_key_env: required key is missing",
        ),
        (
            "api_key_env: DD_API_KEY",
            "api_key_env: DD-API-KEY",
            "line 18, services.web.environments.production.analysis.metrics[3].api_key_env: 'DD-API-KEY' is not an "
            "environment variable name",
        ),
        (
            "name: p99-latency",
            "name: error-rate",
            "line 10, services.web.environments.production.analysis: metric names must be unique: error-rate appears "
            "more than once",
        ),
        (
            "bake: 2m",
            "bake: 10s",
            "line 10, services.web.environments.production.analysis: bake (10s) is shorter than interval (20s): no "
            "check "
            "would run in it",
        ),
        (
            "failure_limit: 2",
            "failure_limit: 7",
            "line 10, services.web.environments.production.analysis: failure_limit (7) is more than the 6 checks a "
            "step "
            "makes (bake / interval): the gate could never fail",
        ),
    ],
)
def test_check_config_names_each_mistake(old: str, new: str, problem: str) -> None:
    assert old in ISSUE_EXAMPLE
    with pytest.raises(ConfigError) as caught:
        parse_config(ISSUE_EXAMPLE.replace(old, new, 1), "chatops.yaml")
    assert problem in str(caught.value), str(caught.value)
