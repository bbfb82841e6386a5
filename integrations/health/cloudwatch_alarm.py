"""A gate on CloudWatch alarms: `{name: alarms, kind: cloudwatch_alarm, alarm_names: [web-5xx], region: eu-west-1}`.
The check fails while any listed alarm is in ALARM.

Each check is one `DescribeAlarms` call with `AlarmNames` (metric and composite alarms; up to 100 names), whose
answer lists `MetricAlarms` and `CompositeAlarms` with their `StateValue`: `OK`, `ALARM` or `INSUFFICIENT_DATA`.
INSUFFICIENT_DATA is "no data", which fails like a Prometheus query without data, unless
`insufficient_data: pass`. An alarm name CloudWatch does not know fails the gate at once (a typo must not pass).

boto3 is synchronous: every call goes through `asyncio.to_thread`, on one client built when first needed, from
`region` (else AWS_REGION / AWS_DEFAULT_REGION), the AWS key variables of the environment given to `build` (else
boto3's usual chain) and, for tests or LocalStack, an endpoint URL named by `endpoint_url_env`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Literal

import aiohttp
from pydantic import Field, field_validator

from integrations.health.base import EnvVarName, Measurement, MetricName, clip
from integrations.types import StrictModel

_KEY_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_FINAL_ERRORS = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "AccessDeniedException",
    "AccessDenied",
    "InvalidParameterValue",
    "InvalidParameterCombination",
}


class CloudwatchAlarmSettings(StrictModel):
    """`{name: alarms, kind: cloudwatch_alarm, alarm_names: [web-5xx], region: eu-west-1}`."""

    kind: Literal["cloudwatch_alarm"]
    name: MetricName
    alarm_names: tuple[str, ...] = Field(min_length=1, max_length=100)
    region: str | None = Field(None, description="Default: AWS_REGION / AWS_DEFAULT_REGION from the environment.")
    endpoint_url_env: EnvVarName | None = Field(
        None, description="Variable holding an endpoint URL (LocalStack, tests)."
    )
    insufficient_data: Literal["fail", "pass"] = "fail"

    @field_validator("alarm_names")
    @classmethod
    def _names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        if any(not name or len(name) > 255 for name in names):
            raise ValueError("alarm names are 1 to 255 characters long")
        if len(set(names)) != len(names):
            raise ValueError("lists an alarm twice")
        return names


class _Final(Exception):
    """A problem no retry fixes."""


class CloudwatchAlarmCheck:
    """Reads the listed alarms' states on every check."""

    def __init__(self, settings: CloudwatchAlarmSettings, *, environ: Mapping[str, str]) -> None:
        self.name = settings.name
        self._settings = settings
        self._environ = environ
        self._client: Any = None
        self._client_lock = asyncio.Lock()

    @property
    def limit(self) -> str:
        """What the check asks for, for people."""
        return "no alarm in ALARM" + (" or INSUFFICIENT_DATA" if self._settings.insufficient_data == "fail" else "")

    async def measure(self) -> Measurement:
        """One DescribeAlarms call; never raises."""
        import botocore.exceptions

        settings = self._settings
        try:
            client = await self._cloudwatch()
            answer = await asyncio.to_thread(
                client.describe_alarms,
                AlarmNames=list(settings.alarm_names),
                AlarmTypes=["MetricAlarm", "CompositeAlarm"],
                MaxRecords=100,
            )
        except _Final as problem:
            return Measurement(ok=False, value="error", limit=self.limit, error=str(problem), final=True)
        except botocore.exceptions.ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", "error"))
            return Measurement(
                ok=False,
                value="error",
                limit=self.limit,
                final=code in _FINAL_ERRORS,
                error=f"CloudWatch DescribeAlarms failed: {code}",
            )
        except (botocore.exceptions.BotoCoreError, OSError) as error:
            return Measurement(
                ok=False,
                value="error",
                limit=self.limit,
                error=f"CloudWatch could not be reached: {type(error).__name__}",
            )
        states = {
            str(alarm.get("AlarmName")): str(alarm.get("StateValue"))
            for alarm in [*answer.get("MetricAlarms", []), *answer.get("CompositeAlarms", [])]
        }
        missing = [name for name in settings.alarm_names if name not in states]
        if missing:
            where = settings.region or self._environ.get("AWS_REGION") or self._environ.get("AWS_DEFAULT_REGION")
            return Measurement(
                ok=False,
                value="error",
                limit=self.limit,
                final=True,
                error=f"CloudWatch has no alarm {', '.join(clip(n, 80) for n in missing)} in {where}",
            )
        return judge(settings, [(name, states[name]) for name in settings.alarm_names], self.limit)

    async def _cloudwatch(self) -> Any:
        async with self._client_lock:
            if self._client is None:
                self._client = await asyncio.to_thread(self._make_client)
            return self._client

    def _make_client(self) -> Any:
        import boto3
        import botocore.config

        environ = self._environ
        region = self._settings.region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
        if not region:
            raise _Final("no AWS region: set `region` in the metric or AWS_REGION in the environment")
        endpoint = None
        if self._settings.endpoint_url_env:
            endpoint = environ.get(self._settings.endpoint_url_env)
            if not endpoint:
                raise _Final(
                    f"environment variable {self._settings.endpoint_url_env} (the CloudWatch endpoint URL) is not set"
                )
        keys = {name.lower(): environ[name] for name in _KEY_VARIABLES if environ.get(name)}
        session = boto3.session.Session(**keys, region_name=region)
        config = botocore.config.Config(
            connect_timeout=5, read_timeout=10, retries={"max_attempts": 3, "mode": "standard"}
        )
        return session.client("cloudwatch", endpoint_url=endpoint, config=config)

    async def aclose(self) -> None:
        """Closes the boto3 client."""
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)


def judge(settings: CloudwatchAlarmSettings, states: list[tuple[str, str]], limit: str) -> Measurement:
    """The verdict on (alarm, state) pairs (pure): ALARM fails, INSUFFICIENT_DATA fails unless allowed."""
    failing = [
        (name, state)
        for name, state in states
        if state == "ALARM" or (state != "OK" and settings.insufficient_data == "fail")
    ]
    if not failing:
        return Measurement(ok=True, value="OK" if len(states) == 1 else f"{len(states)} OK", limit=limit)
    return Measurement(ok=False, value=", ".join(f"{clip(name, 60)} {state}" for name, state in failing), limit=limit)


def build(
    settings: CloudwatchAlarmSettings, *, environ: Mapping[str, str], http: aiohttp.ClientSession
) -> CloudwatchAlarmCheck:
    """The check for validated settings (the HTTP session is not used: boto3 has its own)."""
    return CloudwatchAlarmCheck(settings, environ=environ)
