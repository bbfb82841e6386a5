"""The Sentry source: the `Sentry-Hook-Signature` HMAC over the raw body, each resource of Sentry's documented
webhook bodies (tests/fixtures/sentry/) as one lifecycle per alert rule or issue, 204 for resources without an
alert, `Request-ID` as the idempotency key, and nothing but a precise WebhookRejected for any bytes."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
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
from integrations.alerts.registry import AlertSourcesSettings
from integrations.alerts.sentry import SentrySettings, SentrySource, build
from integrations.alerts.source import UNEXPECTED_REASON

SECRET = "sentry-client-secret-6b0f3e"
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sentry"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def source(**overrides: Any) -> SentrySource:
    return build(
        SentrySettings(client_secret_env="SENTRY_CLIENT_SECRET", **overrides),
        environ={"SENTRY_CLIENT_SECRET": SECRET},
        http=None,
    )


def sign(body: bytes, secret: str = SECRET) -> str:
    """As Sentry's docs verify it: hex HMAC-SHA256 of the body with the client secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def request(
    resource: str,
    body: bytes | dict[str, Any],
    *,
    signature: str | None = "auto",
    request_id: str | None = "c0a8e1f2-7d3b-4a55-9f1e-0d6c2b8a9e41",
) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {
        "Content-Type": "application/json",
        "Sentry-Hook-Resource": resource,
        "Sentry-Hook-Timestamp": str(int(NOW.timestamp())),
    }
    if signature is not None:
        headers["Sentry-Hook-Signature"] = sign(raw) if signature == "auto" else signature
    if request_id is not None:
        headers["Request-ID"] = request_id
    return WebhookRequest(headers=headers, body=raw, now=NOW)


async def receive(resource: str, body: bytes | dict[str, Any], **kwargs: Any) -> Accepted:
    result = await source(**kwargs.pop("settings", {})).receive(request(resource, body, **kwargs))
    assert isinstance(result, Accepted)
    return result


async def only(resource: str, body: bytes | dict[str, Any], **kwargs: Any) -> Alert:
    result = await receive(resource, body, **kwargs)
    assert not result.ignored and len(result.alerts) == 1
    return result.alerts[0]


def test_is_an_alert_source_and_is_configured_under_alerts_sources() -> None:
    assert isinstance(source(), AlertSource)
    parsed = AlertSourcesSettings.model_validate(
        {"sentry": {"client_secret_env": "SENTRY_CLIENT_SECRET", "issue_created_alerts": True}}
    )
    assert parsed.sentry is not None and parsed.sentry.issue_created_alerts is True
    with pytest.raises(ValueError, match="client_secret_env"):
        AlertSourcesSettings.model_validate({"sentry": {}})
    with pytest.raises(ValueError, match="not an environment variable name"):
        SentrySettings(client_secret_env="not a name")
    with pytest.raises(SourceConfigError, match="SENTRY_CLIENT_SECRET") as error:
        build(SentrySettings(client_secret_env="SENTRY_CLIENT_SECRET"), environ={}, http=None)
    assert SECRET not in str(error.value)


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        (None, "missing Sentry-Hook-Signature header"),
        ("", "missing Sentry-Hook-Signature header"),
        ("zz" * 32, "bad signature: Sentry-Hook-Signature must be 64 hex digits"),
        ("sha256=" + "0" * 64, "bad signature: Sentry-Hook-Signature must be 64 hex digits"),
        ("0" * 64, "bad signature"),
    ],
)
async def test_a_missing_or_wrong_signature_is_401(signature: str | None, reason: str) -> None:
    with pytest.raises(WebhookRejected) as rejected:
        await source().receive(request("metric_alert", fixture("metric_alert-critical"), signature=signature))
    assert (rejected.value.status, rejected.value.reason) == (401, reason)
    assert SECRET not in rejected.value.reason


async def test_the_signature_covers_the_raw_bytes_and_the_secret() -> None:
    raw = json.dumps(fixture("metric_alert-critical"), indent=4).encode()  # not the bytes json.dumps would give
    assert (await only("metric_alert", raw)).status == "firing"
    other_secret = sign(raw, "another-secret")
    with pytest.raises(WebhookRejected, match="bad signature"):
        await source().receive(request("metric_alert", raw, signature=other_secret))
    tampered = raw.replace(b"Too many errors", b"Too many errorz")
    with pytest.raises(WebhookRejected, match="bad signature"):
        await source().receive(request("metric_alert", tampered, signature=sign(raw)))
    upper = await only("metric_alert", raw, signature=sign(raw).upper())  # hex is case-insensitive
    assert upper.status == "firing"


async def test_metric_alert_critical_warning_resolved_are_one_lifecycle_per_rule() -> None:
    critical = await only("metric_alert", fixture("metric_alert-critical"))
    warning = await only("metric_alert", fixture("metric_alert-warning"))
    resolved = await only("metric_alert", fixture("metric_alert-resolved"))
    assert (critical.status, critical.severity) == ("firing", "critical")
    assert (warning.status, warning.severity) == ("firing", "warning")
    assert resolved.status == "resolved" and resolved.ends_at == NOW
    assert critical.fingerprint == warning.fingerprint == resolved.fingerprint
    assert critical.title == "Too many errors"
    assert dict(critical.labels) == {"alertname": "Too many errors", "alert_rule_id": "7", "project": "bar"}
    assert critical.links == {"source": "https://sentry.io/organizations/baz/alerts/1/"}
    assert critical.starts_at == datetime(2020, 9, 13, 12, 26, 40, tzinfo=UTC)
    assert critical.summary == "1000 events in the last 10 minutes Filter: level:error"
    assert critical.annotations["query"] == "level:error" and critical.annotations["aggregate"] == "count()"
    other_rule = fixture("metric_alert-critical")
    other_rule["data"]["metric_alert"]["alert_rule"]["id"] = "8"
    assert (await only("metric_alert", other_rule)).fingerprint != critical.fingerprint


async def test_metric_alert_environment_becomes_a_label() -> None:
    body = fixture("metric_alert-critical")
    body["data"]["metric_alert"]["alert_rule"]["environment"] = "production"
    assert (await only("metric_alert", body)).labels["environment"] == "production"


async def test_event_alert_fires_for_its_issue_with_the_event_level() -> None:
    alert = await only("event_alert", fixture("event_alert-triggered"))
    assert (alert.status, alert.severity) == ("firing", "critical")  # level "error"
    assert alert.title == "ReferenceError: heck is not defined"
    assert dict(alert.labels) == {
        "alertname": "sentry-issue-1117540176",
        "issue_id": "1117540176",
        "project": "front-end",
        "level": "error",
        "rule": "Very Important Alert Rule!",
    }
    assert alert.annotations["culprit"] == "?(<anonymous>)"
    assert "?(<anonymous>)" in alert.summary and "Very Important Alert Rule!" in alert.summary
    assert alert.links == {
        "source": "https://sentry.io/organizations/test-org/issues/1117540176/events/e4874d664c3540c1a32eab185f12c5ab/"
    }
    assert alert.starts_at == datetime(2019, 8, 19, 21, 6, 17, 677000, tzinfo=UTC)
    body = fixture("event_alert-triggered")
    body["data"]["event"]["level"] = "warning"
    body["data"]["event"]["tags"].append(["environment", "production"])
    warning = await only("event_alert", body)
    assert warning.severity == "warning" and warning.labels["environment"] == "production"
    assert warning.fingerprint == alert.fingerprint


async def test_issue_resolved_or_archived_resolves_the_issue_alert() -> None:
    fired = fixture("event_alert-triggered")
    fired["data"]["event"]["issue_id"] = "1170820242"  # the issue of the issues.mdx bodies
    alert = await only("event_alert", fired)
    for name in ("issue-resolved", "issue-archived"):
        resolved = await only("issue", fixture(name))
        assert resolved.status == "resolved" and resolved.fingerprint == alert.fingerprint
        # the labels that group and route it are the ones its alert had
        assert {k: resolved.labels[k] for k in ("alertname", "project", "level")} == {
            k: alert.labels[k] for k in ("alertname", "project", "level")
        }
        assert resolved.severity == alert.severity
    legacy = fixture("issue-archived")
    legacy["action"] = "ignored"  # what Sentry called archiving before
    assert (await only("issue", legacy)).status == "resolved"


async def test_issue_created_is_an_alert_only_when_configured() -> None:
    assert (await receive("issue", fixture("issue-created"))).ignored
    alert = await only("issue", fixture("issue-created"), settings={"issue_created_alerts": True})
    assert (alert.status, alert.title, alert.severity) == (
        "firing",
        "ReferenceError: blooopy is not defined",
        "critical",
    )
    assert alert.labels["project"] == "front-end" and alert.annotations["culprit"] == "?(runner)"
    assert alert.annotations["short_id"] == "FRONT-END-9"
    assert alert.starts_at == datetime(2019, 8, 19, 20, 58, 37, 391000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("resource", "name"),
    [
        ("installation", "installation-created"),
        ("issue", "issue-assigned"),
        ("comment", "issue-created"),
        ("error", "event_alert-triggered"),
    ],
)
async def test_resources_without_an_alert_are_ignored(resource: str, name: str) -> None:
    result = await receive(resource, fixture(name))
    assert result.ignored and result.alerts == ()


async def test_ignored_resources_still_need_the_signature() -> None:
    with pytest.raises(WebhookRejected) as rejected:
        await source().receive(request("installation", fixture("installation-created"), signature="0" * 64))
    assert rejected.value.status == 401


async def test_request_id_is_the_idempotency_key() -> None:
    result = await receive("metric_alert", fixture("metric_alert-critical"), request_id="  req-42  ")
    assert result.idempotency_key == "req-42"
    assert (await receive("metric_alert", fixture("metric_alert-critical"), request_id=None)).idempotency_key is None


@pytest.mark.parametrize(
    ("resource", "change", "reason"),
    [
        ("metric_alert", lambda b: b.pop("action"), "action is missing"),
        ("metric_alert", lambda b: b.update(action="exploded"), "action must be critical, warning or resolved"),
        ("metric_alert", lambda b: b["data"]["metric_alert"].pop("alert_rule"), "data.metric_alert.alert_rule must be"),
        (
            "metric_alert",
            lambda b: b["data"]["metric_alert"]["alert_rule"].pop("id"),
            "data.metric_alert.alert_rule.id is missing",
        ),
        (
            "metric_alert",
            lambda b: b["data"]["metric_alert"].update(date_started="yesterday"),
            "data.metric_alert.date_started must be an RFC 3339 time",
        ),
        ("metric_alert", lambda b: b.update(data=[]), "data must be an object"),
        ("event_alert", lambda b: b["data"]["event"].pop("issue_id"), "data.event.issue_id is missing"),
        ("event_alert", lambda b: b["data"]["event"].update(level=3), "data.event.level must be a string"),
        ("issue", lambda b: b["data"].pop("issue"), "data.issue must be an object"),
        ("issue", lambda b: b["data"]["issue"].update(id=True), "data.issue.id must be a string or an integer"),
    ],
)
async def test_bodies_of_the_wrong_shape_are_a_400_naming_the_field(resource: str, change: Any, reason: str) -> None:
    name = {"metric_alert": "metric_alert-critical", "event_alert": "event_alert-triggered", "issue": "issue-resolved"}[
        resource
    ]
    body = fixture(name)
    change(body)
    with pytest.raises(WebhookRejected) as rejected:
        await source().receive(request(resource, body))
    assert rejected.value.status == 400 and rejected.value.reason.startswith(reason), rejected.value.reason


async def test_missing_resource_header_and_non_json_are_400() -> None:
    raw = json.dumps(fixture("metric_alert-critical")).encode()
    missing = WebhookRequest(headers={"Sentry-Hook-Signature": sign(raw)}, body=raw, now=NOW)
    with pytest.raises(WebhookRejected, match="missing Sentry-Hook-Resource header"):
        await source().receive(missing)
    with pytest.raises(WebhookRejected, match="not JSON"):
        await source().receive(request("metric_alert", b"{nope"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)
times = st.sampled_from(["2020-09-13T12:26:40.000000Z", "0001-01-01T00:00:00Z"]) | json_values
sentry_like = st.fixed_dictionaries(
    {},
    optional={
        "action": st.sampled_from(["critical", "warning", "resolved", "triggered", "created", "archived"])
        | json_values,
        "data": st.fixed_dictionaries(
            {},
            optional={
                "metric_alert": st.fixed_dictionaries(
                    {},
                    optional={
                        "alert_rule": st.fixed_dictionaries(
                            {},
                            optional={
                                "id": st.text(max_size=70) | json_values,
                                "name": json_values,
                                "projects": json_values,
                                "environment": json_values,
                                "query": json_values,
                            },
                        )
                        | json_values,
                        "date_started": times,
                        "date_closed": times,
                        "projects": json_values,
                    },
                )
                | json_values,
                "event": st.fixed_dictionaries(
                    {},
                    optional={
                        "issue_id": st.text(max_size=70) | json_values,
                        "level": json_values,
                        "tags": json_values,
                        "url": st.sampled_from(["https://sentry.io/api/0/projects/o/p/events/1/"]) | json_values,
                        "timestamp": json_values,
                        "datetime": times,
                        "web_url": json_values,
                        "project": json_values,
                        "title": json_values,
                    },
                )
                | json_values,
                "issue": st.fixed_dictionaries(
                    {},
                    optional={
                        "id": st.text(max_size=70) | json_values,
                        "project": json_values,
                        "level": json_values,
                        "firstSeen": times,
                        "title": json_values,
                    },
                )
                | json_values,
                "web_url": json_values,
                "description_text": json_values,
                "triggered_rule": json_values,
                "issue_alert": json_values,
            },
        )
        | json_values,
    },
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    resource=st.sampled_from(["metric_alert", "event_alert", "issue", "installation", ""]) | st.text(max_size=12),
    body=st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | sentry_like.map(lambda v: json.dumps(v).encode()),
    signed=st.booleans(),
)
async def test_any_body_is_accepted_or_rejected_never_a_crash(resource: str, body: bytes, signed: bool) -> None:
    src = source(issue_created_alerts=True)
    try:
        result = await src.receive(request(resource, body, signature="auto" if signed else "0" * 64))
    except WebhookRejected as problem:
        assert problem.status in ((400, 413) if signed else (401,)), problem
        assert problem.reason != UNEXPECTED_REASON
    else:
        assert signed and isinstance(result, Accepted)
        for alert in result.alerts:
            assert Alert.from_json(alert.to_json()) == alert
