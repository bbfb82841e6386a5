"""The Prometheus check against a real Prometheus (Debian's `prometheus` binary) scraping a local exporter whose
5xx rate each test sets: values within and beyond the limits, no data as a failed check, a query Prometheus rejects
(final, in Prometheus's words), an unreachable server, and the verdict on the shapes Prometheus answers with."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from pydantic import ValidationError

from integrations.health.base import Measurement
from integrations.health.prometheus import PrometheusSettings, build, judge
from tests.health_servers import Exporter, PrometheusServer, error_rate_query
from tests.waiting import eventually


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def settings(**values: object) -> PrometheusSettings:
    base: dict[str, object] = {
        "kind": "prometheus",
        "name": "error-rate",
        "url_env": "PROMETHEUS_URL",
        "query": "up",
        "max": 0.01,
        "timeout": "5s",
    }
    base.update(values)
    return PrometheusSettings.model_validate(base)


async def measure_until(check, condition, what: str) -> Measurement:
    """Measures until `condition(measurement)` holds (Prometheus needs a few scrapes to see a new rate)."""
    seen: list[Measurement] = []

    async def holds() -> bool:
        seen.append(await check.measure())
        return bool(condition(seen[-1]))

    await eventually(holds, what, every=0.2)
    return seen[-1]


async def test_an_error_rate_within_max_passes(
    prometheus: PrometheusServer, exporter: Exporter, http: aiohttp.ClientSession
) -> None:
    exporter.set_error_ratio("calm", 0.0)
    check = build(settings(query=error_rate_query("calm")), environ={"PROMETHEUS_URL": prometheus.url}, http=http)
    result = await measure_until(check, lambda m: m.value != "no data", "Prometheus to have the calm service's rate")
    assert result == Measurement(ok=True, value="0", limit="max 0.01")


async def test_an_error_rate_above_max_fails_with_its_value_and_limit(
    prometheus: PrometheusServer,
    exporter: Exporter,
    http: aiohttp.ClientSession,
) -> None:
    exporter.set_error_ratio("failing", 0.25)
    check = build(settings(query=error_rate_query("failing")), environ={"PROMETHEUS_URL": prometheus.url}, http=http)
    result = await measure_until(check, lambda m: m.value != "no data", "Prometheus to have the failing service's rate")
    assert result == Measurement(ok=False, value="0.25", limit="max 0.01")


async def test_a_success_rate_below_min_fails(
    prometheus: PrometheusServer, exporter: Exporter, http: aiohttp.ClientSession
) -> None:
    exporter.set_error_ratio("flaky", 0.1)
    query = f"1 - ({error_rate_query('flaky')})"
    check = build(
        settings(name="success-rate", query=query, max=None, min=0.99),
        environ={"PROMETHEUS_URL": prometheus.url},
        http=http,
    )
    result = await measure_until(check, lambda m: m.value != "no data", "Prometheus to have the flaky service's rate")
    assert result == Measurement(ok=False, value="0.9", limit="min 0.99")


async def test_a_query_without_data_is_a_failed_check(
    prometheus: PrometheusServer, http: aiohttp.ClientSession
) -> None:
    check = build(
        settings(query=error_rate_query("never-deployed")), environ={"PROMETHEUS_URL": prometheus.url}, http=http
    )
    result = await check.measure()
    assert not result.ok and not result.final
    assert result.value == "no data" and result.error == "no data (the query returned no series)"


async def test_bad_promql_is_reported_at_first_use_in_prometheus_words(
    prometheus: PrometheusServer,
    http: aiohttp.ClientSession,
) -> None:
    check = build(
        settings(query="sum(rate(http_requests_total[1m])"), environ={"PROMETHEUS_URL": prometheus.url}, http=http
    )
    result = await check.measure()
    assert not result.ok and result.final
    assert result.error is not None and result.error.startswith("Prometheus rejected the query: ")
    assert "parse error" in result.error  # Prometheus's own text, e.g. `1:34: parse error: unclosed left parenthesis`


async def test_an_unreachable_prometheus_is_a_failed_check_that_may_recover(http: aiohttp.ClientSession) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    check = build(settings(timeout="1s"), environ={"PROMETHEUS_URL": closed}, http=http)
    result = await check.measure()
    assert not result.ok and not result.final
    assert result.error == "Prometheus did not answer in time (connection refused)"


async def test_an_unset_url_variable_is_final_and_named(http: aiohttp.ClientSession) -> None:
    result = await build(settings(), environ={}, http=http).measure()
    assert result.final and result.error == "environment variable PROMETHEUS_URL (the Prometheus URL) is not set"


def test_the_verdict_on_prometheus_answer_shapes() -> None:
    # Shapes from https://prometheus.io/docs/prometheus/latest/querying/api/#expression-query-result-formats
    gate = settings(max=0.5)
    two = {
        "resultType": "vector",
        "result": [{"metric": {"pod": "a"}, "value": [1.0, "0.1"]}, {"metric": {"pod": "b"}, "value": [1.0, "0.7"]}],
    }
    assert judge(gate, two) == Measurement(ok=False, value="0.7 (worst of 2 series)", limit="max 0.5")
    assert judge(gate, {"resultType": "scalar", "result": [1.0, "0.2"]}) == Measurement(
        ok=True, value="0.2", limit="max 0.5"
    )
    nan = judge(gate, {"resultType": "vector", "result": [{"metric": {}, "value": [1.0, "NaN"]}]})
    assert not nan.ok and nan.value == "no data" and nan.error == "no data (the query returned NaN)"
    matrix = judge(gate, {"resultType": "matrix", "result": []})
    assert not matrix.ok and matrix.final and "instant vector or a scalar" in (matrix.error or "")
    both = settings(min=0.1, max=0.5)
    assert judge(both, {"resultType": "scalar", "result": [1.0, "0.05"]}).limit == "0.1..0.5"
    assert not judge(both, {"resultType": "scalar", "result": [1.0, "0.05"]}).ok


def test_settings_errors_are_precise() -> None:
    with pytest.raises(ValidationError, match="url_env is missing: name the environment variable"):
        PrometheusSettings.model_validate({"kind": "prometheus", "name": "e", "query": "up", "max": 1})
    with pytest.raises(ValidationError, match="set max \\(fail above it\\) or min"):
        settings(max=None)
    with pytest.raises(ValidationError, match="min \\(2\\) is above max \\(1\\)"):
        settings(min=2, max=1)
    with pytest.raises(ValidationError, match="not an environment variable name"):
        settings(url_env="PROMETHEUS URL")
