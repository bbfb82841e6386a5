"""The CloudWatch alarm check against moto's server on a free port: OK passes, ALARM fails naming the alarm,
INSUFFICIENT_DATA fails unless allowed, an unknown alarm fails at once, and one client serves every check."""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from integrations.health.base import Measurement
from integrations.health.cloudwatch_alarm import (
    CloudwatchAlarmCheck,
    CloudwatchAlarmSettings,
)

REGION = "eu-west-1"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{server._server.server_port}"
    finally:
        server.stop()


@pytest.fixture
def environ(moto_url: str) -> dict[str, str]:
    request = urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request) as answer:  # every test starts from an empty AWS
        answer.read()
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "CLOUDWATCH_URL": moto_url}


@pytest.fixture
def cloudwatch(environ: dict[str, str]) -> Iterator[Any]:
    client = boto3.client(
        "cloudwatch",
        region_name=REGION,
        endpoint_url=environ["CLOUDWATCH_URL"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    for name in ("web-5xx", "web-latency"):
        client.put_metric_alarm(
            AlarmName=name,
            Namespace="web",
            MetricName=name,
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanThreshold",
        )
    yield client
    client.close()


@pytest.fixture
async def make_check(environ: dict[str, str]) -> AsyncIterator[Any]:
    built: list[CloudwatchAlarmCheck] = []

    def make(**values: object) -> CloudwatchAlarmCheck:
        settings = CloudwatchAlarmSettings.model_validate(
            {
                "kind": "cloudwatch_alarm",
                "name": "alarms",
                "alarm_names": ["web-5xx", "web-latency"],
                "region": REGION,
                "endpoint_url_env": "CLOUDWATCH_URL",
                **values,
            }
        )
        built.append(CloudwatchAlarmCheck(settings, environ=environ))
        return built[-1]

    yield make
    for check in built:
        await check.aclose()


async def test_alarms_in_ok_pass_and_one_in_alarm_fails(cloudwatch: Any, make_check: Any) -> None:
    check = make_check()
    assert await check.measure() == Measurement(ok=True, value="2 OK", limit="no alarm in ALARM or INSUFFICIENT_DATA")
    client = check._client
    cloudwatch.set_alarm_state(AlarmName="web-latency", StateValue="ALARM", StateReason="p99 above 500ms")
    assert await check.measure() == Measurement(
        ok=False, value="web-latency ALARM", limit="no alarm in ALARM or INSUFFICIENT_DATA"
    )
    assert check._client is client  # built once


async def test_insufficient_data_fails_unless_allowed(cloudwatch: Any, make_check: Any) -> None:
    cloudwatch.set_alarm_state(AlarmName="web-5xx", StateValue="INSUFFICIENT_DATA", StateReason="no datapoints")
    assert (await make_check().measure()).value == "web-5xx INSUFFICIENT_DATA"
    assert await make_check(insufficient_data="pass").measure() == Measurement(
        ok=True, value="2 OK", limit="no alarm in ALARM"
    )


async def test_an_unknown_alarm_fails_at_once(cloudwatch: Any, make_check: Any) -> None:
    result = await make_check(alarm_names=["web-5xx", "web-5xxx"]).measure()
    assert result.final and result.error == f"CloudWatch has no alarm web-5xxx in {REGION}"


async def test_an_unset_endpoint_variable_is_named(make_check: Any, environ: dict[str, str]) -> None:
    result = await make_check(endpoint_url_env="NOT_SET_HERE").measure()
    assert result.final and result.error == (
        "environment variable NOT_SET_HERE (the CloudWatch endpoint URL) is not set"
    )
