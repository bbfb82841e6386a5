"""The `alerts.sources` section: each source optional, validated strictly, built into `AlertSource`s keyed by the
`{source}` of `POST /alerts/{source}`; a missing environment variable is named, its value never shown."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from pydantic import ValidationError

from integrations.alerts import (
    AlertSource,
    AlertSourcesSettings,
    SourceConfigError,
    build_sources,
)
from integrations.alerts.alertmanager import AlertmanagerSource
from integrations.alerts.generic import GenericSource
from integrations.alerts.grafana import GrafanaSource
from integrations.alerts.sns import SnsSource

SECTION = {
    "alertmanager": {"token_env": "ALERTMANAGER_TOKEN"},
    "grafana": {"username": "grafana", "password_env": "GRAFANA_PASSWORD", "default_severity": "info"},
    "sns": {"topic_arns": ["arn:aws:sns:eu-west-1:123456789012:ops-alarms"], "max_age": "30m"},
    "generic": {"hmac_secret_env": "CHATOPS_ALERTS_SECRET", "tolerance": "2m"},
}
ENVIRON = {
    "ALERTMANAGER_TOKEN": "am-secret-value",
    "GRAFANA_PASSWORD": "grafana-secret-value",
    "CHATOPS_ALERTS_SECRET": "generic-secret-value",
}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_every_source_builds(http: aiohttp.ClientSession) -> None:
    sources = build_sources(AlertSourcesSettings.model_validate(SECTION), environ=ENVIRON, http=http)
    assert {name: type(source) for name, source in sources.items()} == {
        "alertmanager": AlertmanagerSource,
        "grafana": GrafanaSource,
        "sns": SnsSource,
        "generic": GenericSource,
    }
    for name, source in sources.items():
        assert isinstance(source, AlertSource) and source.name == name


async def test_sources_are_optional(http: aiohttp.ClientSession) -> None:
    assert build_sources(AlertSourcesSettings(), environ={}, http=http) == {}
    only = AlertSourcesSettings.model_validate({"generic": SECTION["generic"]})
    assert list(build_sources(only, environ=ENVIRON, http=http)) == ["generic"]


@pytest.mark.parametrize("variable", ["ALERTMANAGER_TOKEN", "GRAFANA_PASSWORD", "CHATOPS_ALERTS_SECRET"])
async def test_a_missing_variable_is_named_and_no_value_is_shown(http: aiohttp.ClientSession, variable: str) -> None:
    environ = {name: value for name, value in ENVIRON.items() if name != variable}
    with pytest.raises(SourceConfigError) as caught:
        build_sources(AlertSourcesSettings.model_validate(SECTION), environ=environ, http=http)
    message = str(caught.value)
    assert variable in message and "is not set" in message
    assert not any(value in message for value in ENVIRON.values())


def test_the_section_is_strict() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        AlertSourcesSettings.model_validate({"pagerduty": {}})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        AlertSourcesSettings.model_validate({"alertmanager": {"token": "inline-secrets-are-not-allowed"}})
    with pytest.raises(ValidationError, match="must be a duration"):
        AlertSourcesSettings.model_validate({"generic": {"hmac_secret_env": "S", "tolerance": "five minutes"}})
    with pytest.raises(ValidationError, match="Input should be 'critical', 'warning' or 'info'"):
        AlertSourcesSettings.model_validate({"alertmanager": {"token_env": "T", "default_severity": "P1"}})
