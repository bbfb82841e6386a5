"""The Datadog source: chatops' payload template as Datadog fills it in, the bearer token of the custom header,
transitions (Triggered, Warn, No Data, Recovered, …) to firing / resolved with a severity, tags as labels, one
lifecycle per aggregation key and scope, `$ID` as the idempotency key, and precise 400s (never a crash)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrations.alerts import (
    Accepted,
    Alert,
    AlertSource,
    SourceConfigError,
    WebhookRejected,
    WebhookRequest,
)
from integrations.alerts.datadog import (
    FIELDS,
    DatadogSettings,
    DatadogSource,
    build,
    monitor_name,
    tag_pairs,
)
from integrations.alerts.registry import AlertSourcesSettings
from integrations.alerts.source import UNEXPECTED_REASON

TOKEN = "dd-webhook-token-3a9c"
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
TEMPLATE = (
    '{"id": "$ID", "alert_id": "$ALERT_ID", "title": "$EVENT_TITLE", "transition": "$ALERT_TRANSITION", '
    '"status": "$ALERT_STATUS", "priority": "$PRIORITY", "metric": "$ALERT_METRIC", "query": "$ALERT_QUERY", '
    '"scope": "$ALERT_SCOPE", "tags": "$TAGS", "link": "$LINK", "aggreg_key": "$AGGREG_KEY", '
    '"hostname": "$HOSTNAME", "date": "$DATE", "body": "$EVENT_MSG", "org": "$ORG_NAME"}'
)
"""The template of issue 13 and the README, verbatim."""

# Values as Datadog's Webhooks documentation gives them for each variable (docs.datadoghq.com/integrations/webhooks/);
# $PRIORITY is the event's priority (normal / low), $ALERT_PRIORITY the monitor's (P1-P5).
VALUES = {
    "$ID": "7301652424394857283",
    "$ALERT_ID": "1234",
    "$EVENT_TITLE": "[Triggered on {host:ip-012345}] Host is Down",
    "$ALERT_TRANSITION": "Triggered",
    "$ALERT_STATUS": "system.load.1 over host:my-host was > 0 at least once during the last 1m",
    "$PRIORITY": "normal",
    "$ALERT_METRIC": "system.load.1",
    "$ALERT_QUERY": "avg(last_1m):avg:system.load.1{*} > 0",
    "$ALERT_SCOPE": "availability-zone:us-east-1a, role:computing-node",
    "$TAGS": "monitor, service:web, env:prod, team:platform",
    "$LINK": "https://app.datadoghq.com/event/event?id=7301652424394857283",
    "$AGGREG_KEY": "9bd4ac313a4d1e8fae2482df7b77628",
    "$HOSTNAME": "ip-012345",
    "$DATE": "1406662672000",
    "$EVENT_MSG": "@webhook-chatops Sending to the webhook",
    "$ORG_NAME": "Acme",
}


def filled(**changes: str) -> dict[str, Any]:
    """The template as Datadog sends it: each `$VARIABLE` replaced by its value (`changes` by template field)."""
    text = TEMPLATE
    for variable in sorted(VALUES, key=len, reverse=True):  # $ALERT_ID before $ID
        text = text.replace(variable, VALUES[variable])
    body = json.loads(text)
    body.update(changes)
    return body


def source(**overrides: Any) -> DatadogSource:
    return build(
        DatadogSettings(token_env="DATADOG_WEBHOOK_TOKEN", **overrides),
        environ={"DATADOG_WEBHOOK_TOKEN": TOKEN + "\n"},
        http=None,
    )


def request(body: bytes | dict[str, Any], authorization: str | None = f"Bearer {TOKEN}") -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    return WebhookRequest(headers=headers, body=raw, now=NOW)


async def receive(body: bytes | dict[str, Any], **settings_: Any) -> Accepted:
    result = await source(**settings_).receive(request(body))
    assert isinstance(result, Accepted)
    return result


async def only(body: dict[str, Any], **settings_: Any) -> Alert:
    result = await receive(body, **settings_)
    assert not result.ignored and len(result.alerts) == 1
    return result.alerts[0]


def test_is_an_alert_source_and_is_configured_under_alerts_sources() -> None:
    assert isinstance(source(), AlertSource)
    parsed = AlertSourcesSettings.model_validate(
        {"datadog": {"token_env": "DATADOG_WEBHOOK_TOKEN", "no_data": "ignore"}}
    )
    assert parsed.datadog is not None and parsed.datadog.no_data == "ignore"
    with pytest.raises(ValueError, match="no_data"):
        AlertSourcesSettings.model_validate({"datadog": {"token_env": "T", "no_data": "drop"}})
    with pytest.raises(SourceConfigError, match="DATADOG_WEBHOOK_TOKEN"):
        build(DatadogSettings(token_env="DATADOG_WEBHOOK_TOKEN"), environ={}, http=None)


def test_the_template_has_exactly_the_fields_the_source_reads() -> None:
    assert tuple(json.loads(TEMPLATE)) == FIELDS


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "missing bearer token"),
        ("Bearer nope", "bad bearer token"),
        (f"Basic {TOKEN}", "missing bearer token"),
    ],
)
async def test_a_missing_or_wrong_token_is_401(authorization: str | None, reason: str) -> None:
    with pytest.raises(WebhookRejected) as rejected:
        await source().receive(request(filled(), authorization))
    assert (rejected.value.status, rejected.value.reason) == (401, reason)


async def test_triggered_fires_with_the_monitor_name_labels_and_link() -> None:
    alert = await only(filled())
    assert (alert.status, alert.severity, alert.title) == ("firing", "critical", "Host is Down")
    assert dict(alert.labels) == {
        "service": "web",
        "env": "prod",
        "team": "platform",
        "availability-zone": "us-east-1a",
        "role": "computing-node",
        "alertname": "Host is Down",
        "monitor_id": "1234",
        "hostname": "ip-012345",
        "metric": "system.load.1",
        "org": "Acme",
        "priority": "normal",
    }
    assert alert.summary == VALUES["$ALERT_STATUS"]
    assert alert.links == {"source": VALUES["$LINK"]}
    assert alert.starts_at == datetime(2014, 7, 29, 19, 37, 52, tzinfo=UTC)
    assert alert.annotations["message"] == VALUES["$EVENT_MSG"] and alert.annotations["transition"] == "Triggered"


@pytest.mark.parametrize(
    ("transition", "priority", "status", "severity"),
    [
        ("Triggered", "P1", "firing", "critical"),
        ("Re-Triggered", "P2", "firing", "warning"),
        ("Triggered", "P3", "firing", "warning"),
        ("Triggered", "P4", "firing", "info"),
        ("Triggered", "P5", "firing", "info"),
        ("Triggered", "low", "firing", "info"),
        ("Triggered", "", "firing", "critical"),
        ("Triggered", "normal", "firing", "critical"),
        ("Renotify", "P1", "firing", "critical"),
        ("Warn", "P1", "firing", "warning"),
        ("Re-Warn", "P1", "firing", "warning"),
        ("No Data", "P1", "firing", "warning"),
        ("Re-No Data", "P1", "firing", "warning"),
        ("Recovered", "P1", "resolved", "critical"),
    ],
)
async def test_transitions_and_priorities(transition: str, priority: str, status: str, severity: str) -> None:
    alert = await only(filled(transition=transition, priority=priority))
    assert (alert.status, alert.severity) == (status, severity)
    assert alert.ends_at == (alert.starts_at if status == "resolved" else None)


async def test_repeats_and_the_recovery_are_one_lifecycle_per_aggregation_key_and_scope() -> None:
    triggered = await only(filled())
    warn = await only(filled(transition="Warn", title="[Warn on {host:ip-012345}] Host is Down", id="2"))
    recovered = await only(filled(transition="Recovered", title="[P1] [Recovered on {host:ip-012345}] Host is Down"))
    assert triggered.fingerprint == warn.fingerprint == recovered.fingerprint
    assert triggered.labels == recovered.labels  # so the recovery groups and routes where its alert went
    other_scope = await only(filled(scope="availability-zone:us-east-1b"))
    other_monitor = await only(filled(aggreg_key="0f0f"))
    assert len({triggered.fingerprint, other_scope.fingerprint, other_monitor.fingerprint}) == 3


async def test_no_data_can_be_ignored_and_null_is_ignored() -> None:
    assert (await receive(filled(transition="No Data"), no_data="ignore")).ignored
    assert (await receive(filled(transition="Null"))).ignored


async def test_the_event_id_is_the_idempotency_key() -> None:
    assert (await receive(filled())).idempotency_key == VALUES["$ID"]
    assert (await receive(filled(id=""))).idempotency_key is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"transition": None}, "transition is missing: the body is not chatops' Datadog payload template"),
        ({"transition": ""}, "transition is missing"),
        ({"alert_id": None}, "alert_id is missing: the body is not chatops' Datadog payload template"),
        ({"alert_id": "$ALERT_ID"}, "alert_id is missing"),
        ({"transition": "Exploded"}, "transition must be one of Triggered, Re-Triggered"),
        ({"tags": ["service:web"]}, "tags must be a string"),
        ({"date": "yesterday"}, "date must be milliseconds since the epoch"),
    ],
)
async def test_bodies_that_are_not_the_template_are_a_400_naming_the_field(change: dict[str, Any], reason: str) -> None:
    body = filled()
    for key, value in change.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    with pytest.raises(WebhookRejected) as rejected:
        await source().receive(request(body))
    assert rejected.value.status == 400 and rejected.value.reason.startswith(reason), rejected.value.reason


async def test_not_json_and_not_an_object_are_400() -> None:
    with pytest.raises(WebhookRejected, match="not JSON"):
        await source().receive(request(b"payload=%7B%7D"))  # "Encode as form" left on
    with pytest.raises(WebhookRejected, match="body must be an object"):
        await source().receive(request(b"[]"))


def test_helpers() -> None:
    assert monitor_name("[P2] [Triggered on {host:a,env:b}] Disk [sda] full") == "Disk [sda] full"
    assert monitor_name("Plain") == "Plain"
    assert tag_pairs("monitor, service:web,  env : prod ,bad key:x, url:https://x.example/a:b, :x") == [
        ("service", "web"),
        ("env", "prod"),
        ("url", "https://x.example/a:b"),
    ]


template_like = st.fixed_dictionaries(
    {},
    optional={
        key: st.sampled_from(
            [
                "",
                f"${key.upper()}",
                "Triggered",
                "Recovered",
                "No Data",
                "P1",
                "1406662672000",
                "a:b, c:d",
                "https://app.datadoghq.com/x",
            ]
        )
        | st.text(max_size=20)
        | st.integers()
        | st.none()
        | st.booleans()
        | st.lists(st.text(max_size=3), max_size=2)
        for key in FIELDS
    },
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | template_like.map(lambda v: json.dumps(v).encode()),
    no_data=st.sampled_from(["warning", "ignore"]),
)
async def test_any_body_is_accepted_or_rejected_never_a_crash(body: bytes, no_data: str) -> None:
    try:
        result = await source(no_data=no_data).receive(request(body))
    except WebhookRejected as problem:
        assert problem.status in (400, 413)
        assert problem.reason != UNEXPECTED_REASON
    else:
        assert isinstance(result, Accepted)
        for alert in result.alerts:
            assert Alert.from_json(alert.to_json()) == alert
