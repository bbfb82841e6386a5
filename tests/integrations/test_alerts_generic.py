"""The generic source: our documented JSON schema (one alert, or a batch of up to 1000), its defaults and identity
rules, the HMAC-SHA256 signature over "v1:{timestamp}:{body}" and the ±5 minute window, precise 400s naming the
offending field, and nothing but WebhookRejected for any bytes."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
from datetime import UTC, datetime, timedelta
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
    generic,
)
from integrations.alerts.generic import (
    GenericSettings,
    GenericSource,
    build,
    signed_headers,
)
from integrations.alerts.source import UNEXPECTED_REASON

SECRET = "generic-hmac-secret-5d1c"
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
STAMP = int(NOW.timestamp())


def source(**overrides: Any) -> GenericSource:
    return build(
        GenericSettings(hmac_secret_env="CHATOPS_ALERTS_SECRET", **overrides),
        environ={"CHATOPS_ALERTS_SECRET": SECRET},
        http=None,
    )


def sign(body: bytes, timestamp: int = STAMP, secret: str = SECRET) -> dict[str, str]:
    """Written from the documentation, independently of the code under test."""
    digest = hmac.new(secret.encode(), f"v1:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Chatops-Timestamp": str(timestamp), "X-Chatops-Signature": f"sha256={digest}"}


def request(body: bytes | dict[str, Any], headers: dict[str, str] | None = None, now: datetime = NOW) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return WebhookRequest(
        headers={"Content-Type": "application/json", **(sign(raw) if headers is None else headers)}, body=raw, now=now
    )


async def receive(body: bytes | dict[str, Any], **kwargs: Any) -> Accepted:
    result = await source().receive(request(body, **kwargs))
    assert isinstance(result, Accepted)
    return result


async def rejected(body: bytes | dict[str, Any], **kwargs: Any) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as caught:
        await source().receive(request(body, **kwargs))
    return caught.value


FULL = {
    "title": "Nightly backup failed",
    "severity": "critical",
    "service": "billing-db",
    "dedup_key": "backup/billing-db",
    "summary": "pg_dump exited with 1",
    "url": "https://ci.example.com/runs/42",
    "labels": {"team": "data", "env": "prod"},
    "starts_at": "2024-05-01T02:00:13Z",
}


async def test_the_documented_example() -> None:
    result = await receive(FULL)
    assert isinstance(source(), AlertSource) and source().name == "generic"
    assert result.reply == "accepted 1 alert"
    (alert,) = result.alerts
    assert alert == Alert(
        source="generic",
        fingerprint=alert.fingerprint,
        status="firing",
        title="Nightly backup failed",
        severity="critical",
        labels={
            "team": "data",
            "env": "prod",
            "severity": "critical",
            "service": "billing-db",
            "alertname": "Nightly backup failed",
        },
        annotations={"summary": "pg_dump exited with 1"},
        summary="pg_dump exited with 1",
        starts_at=datetime(2024, 5, 1, 2, 0, 13, tzinfo=UTC),
        ends_at=None,
        links={"source": "https://ci.example.com/runs/42"},
        group_key=None,
    )
    assert (
        alert.fingerprint
        == hashlib.sha256(json.dumps(["generic", "backup/billing-db"], separators=(",", ":")).encode()).hexdigest()
    )
    assert Alert.from_json(alert.to_json()) == alert


async def test_defaults_for_a_minimal_alert() -> None:
    (alert,) = (await receive({"title": "Disk almost full"})).alerts
    assert (alert.status, alert.severity, alert.summary) == ("firing", "warning", "Disk almost full")
    assert alert.starts_at == NOW and alert.ends_at is None
    assert alert.labels == {"severity": "warning", "alertname": "Disk almost full"}
    assert alert.annotations == {} and alert.links == {}


async def test_identity_is_the_dedup_key_else_title_and_service() -> None:
    async def fingerprint(**fields: Any) -> str:
        return (await receive(fields)).alerts[0].fingerprint

    base = await fingerprint(title="Queue backlog", service="mailer")
    assert await fingerprint(title="Queue backlog", service="mailer", summary="other words", severity="info") == base
    assert await fingerprint(title="Queue backlog", service="billing") != base
    assert await fingerprint(title="Queue backlog", labels={"service": "mailer"}) == base
    keyed = await fingerprint(title="x", dedup_key="k1")
    assert await fingerprint(title="completely different", dedup_key="k1") == keyed != base


async def test_resolving_with_the_same_key() -> None:
    fired = (await receive({"title": "Cert expires soon", "dedup_key": "cert/api"})).alerts[0]
    later = NOW + timedelta(minutes=30)
    body = json.dumps({"title": "Cert renewed", "dedup_key": "cert/api", "status": "resolved"}).encode()
    result = await source().receive(request(body, headers=sign(body, int(later.timestamp())), now=later))
    assert isinstance(result, Accepted)
    (resolved,) = result.alerts
    assert resolved.fingerprint == fired.fingerprint
    assert (resolved.status, resolved.ends_at) == ("resolved", later)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("critical", "critical"),
        ("PAGE", "critical"),
        ("P1", "critical"),
        ("error", "critical"),
        ("high", "critical"),
        ("warning", "warning"),
        ("warn", "warning"),
        ("medium", "warning"),
        ("P2", "warning"),
        ("p3", "warning"),
        ("info", "info"),
        ("low", "info"),
        ("P4", "info"),
        ("p5", "info"),
        ("none", "info"),
        ("unknown", "info"),
    ],
)
async def test_severity_spellings(given: str, expected: str) -> None:
    (alert,) = (await receive({"title": "t", "severity": given})).alerts
    assert alert.severity == expected == alert.labels["severity"]


async def test_severity_from_labels_when_the_field_is_absent() -> None:
    (alert,) = (await receive({"title": "t", "labels": {"severity": "page"}})).alerts
    assert alert.severity == "critical"


async def test_a_batch_with_duplicates() -> None:
    items = [{"title": f"check {i}", "dedup_key": f"k{i % 3}"} for i in range(5)]
    result = await receive({"alerts": items})
    assert [a.title for a in result.alerts] == ["check 2", "check 3", "check 4"]  # the last of each key
    assert result.reply == "accepted 3 alerts (2 duplicates dropped)"
    assert (await receive({"alerts": []})).alerts == ()


async def test_batches_hold_at_most_1000() -> None:
    ok = await receive({"alerts": [{"title": f"a{i}"} for i in range(1000)]})
    assert len(ok.alerts) == 1000
    problem = await rejected({"alerts": [{"title": f"a{i}"} for i in range(1001)]})
    assert (problem.status, problem.reason) == (400, "alerts has 1001 entries; at most 1000 per request")


async def test_long_text_is_clipped() -> None:
    (alert,) = (await receive({"title": "T" * 300, "summary": "S" * 3000})).alerts
    assert len(alert.title) == 200 and len(alert.summary) == 1000


# -- the signature ------------------------------------------------------------------------------------------------


async def test_the_signature_is_required_and_checked() -> None:
    body = json.dumps({"title": "t"}).encode()
    good = sign(body)
    cases = [
        ({}, "missing X-Chatops-Timestamp"),
        ({"X-Chatops-Timestamp": str(STAMP)}, "missing X-Chatops-Signature"),
        ({**good, "X-Chatops-Timestamp": "soon"}, "X-Chatops-Timestamp must be unix seconds"),
        ({**good, "X-Chatops-Timestamp": "1714564800.5"}, "X-Chatops-Timestamp must be unix seconds"),
        (sign(body, secret="guessed"), "bad signature"),
        ({**good, "X-Chatops-Signature": good["X-Chatops-Signature"].removeprefix("sha256=")}, "bad signature"),
        ({**good, "X-Chatops-Signature": "sha256=ünïcödé"}, "bad signature"),
        # the signature covers the timestamp: moving it within the window still fails
        ({**good, "X-Chatops-Timestamp": str(STAMP + 1)}, "bad signature"),
    ]
    for headers, reason in cases:
        problem = await rejected(body, headers=headers)
        assert (problem.status, problem.reason) == (401, reason), headers
        assert SECRET not in problem.reason
    tampered = json.dumps({"title": "u"}).encode()
    assert (await rejected(tampered, headers=good)).reason == "bad signature"
    upper = {**good, "x-chatops-signature": good["X-Chatops-Signature"].upper().replace("SHA256=", "sha256=")}
    del upper["X-Chatops-Signature"]
    assert isinstance(await source().receive(request(body, headers=upper)), Accepted)  # any case of header and hex


@pytest.mark.parametrize(("skew", "fresh"), [(-301, False), (-299, True), (299, True), (301, False)])
async def test_the_timestamp_window(skew: int, fresh: bool) -> None:
    body = json.dumps({"title": "t"}).encode()
    headers = sign(body, STAMP + skew)
    if fresh:
        await receive(body, headers=headers)
    else:
        problem = await rejected(body, headers=headers)
        assert (problem.status, problem.reason) == (401, "stale timestamp")


async def test_the_signature_is_checked_before_the_body_is_read() -> None:
    assert (await rejected(b"{not json", headers=sign(b"{not json", secret="x"))).reason == "bad signature"


def test_the_helper_and_the_documented_shell_recipe_agree() -> None:
    body = b'{"title": "from a shell"}'
    assert signed_headers(SECRET.encode(), body, timestamp=STAMP) == sign(body)
    try:
        shell = subprocess.run(
            [
                "sh",
                "-c",
                ('printf \'v1:%s:%s\' "$ts" "$body" | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d\' \' -f1'),
            ],
            env={"ts": str(STAMP), "body": body.decode(), "SECRET": SECRET, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("no openssl command here")
    assert "sha256=" + shell.stdout.strip() == sign(body)["X-Chatops-Signature"]


def test_build_needs_the_secret_variable() -> None:
    with pytest.raises(SourceConfigError, match="CHATOPS_ALERTS_SECRET"):
        build(GenericSettings(hmac_secret_env="CHATOPS_ALERTS_SECRET"), environ={}, http=None)


def test_the_schema_is_documented_for_the_readme() -> None:
    doc = generic.__doc__ or ""
    assert "## Generic alert webhook" in doc
    for name in generic.FIELDS:
        assert f"`{name}`" in doc


# -- malformed bodies -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not JSON: Expecting value at line 1 column 1"),
        (b'{"title": "a",}', "not JSON: Expecting property name enclosed in double quotes at line 1 column 15"),
        (b'["title"]', "body must be an object"),
        ({}, "title is missing"),
        ({"title": "  "}, "title must not be empty"),
        ({"title": 5}, "title must be a string"),
        (
            {"title": "t", "sevrity": "critical"},
            (
                "unknown field 'sevrity' (known: title, severity, service, status, "
                "dedup_key, summary, url, labels, starts_at)"
            ),
        ),
        ({"title": "t", "severity": "catastrophic"}, "severity must be critical, warning or info (got 'catastrophic')"),
        ({"title": "t", "status": "ok"}, 'status must be "firing" or "resolved"'),
        ({"title": "t", "labels": ["a"]}, "labels must be an object"),
        ({"title": "t", "labels": {"port": 8080}}, "labels.port must be a string"),
        ({"title": "t", "url": "javascript:alert(1)"}, "url must be an http(s) URL"),
        ({"title": "t", "dedup_key": ""}, "dedup_key must not be empty"),
        ({"title": "t", "starts_at": "1714564800"}, "starts_at must be an RFC 3339 time like 2024-05-01T12:00:00Z"),
        ({"alerts": {"title": "t"}}, "alerts must be a list"),
        ({"alerts": [{"title": "t"}], "title": "t"}, "a batch is {\"alerts\": [...]} and nothing else (found 'title')"),
        ({"alerts": [{"title": "t"}, {"title": "t"}, {"title": "t"}, "x"]}, "alerts[3] must be an object"),
        (
            {"alerts": [{"title": "t"}, {"title": "t", "labels": None}, {"title": "t"}, {"title": "t", "labels": 3}]},
            "alerts[3].labels must be an object",
        ),
        (
            {"alerts": [{"titel": "t"}]},
            (
                "unknown field 'titel' in alerts[0] (known: title, severity, service, status, "
                "dedup_key, summary, url, labels, starts_at)"
            ),
        ),
        ({"alerts": [{"title": "t", "severity": 1}]}, "alerts[0].severity must be a string"),
    ],
)
async def test_malformed_bodies_get_a_precise_400(body: bytes | dict[str, Any], reason: str) -> None:
    problem = await rejected(body)
    assert (problem.status, problem.reason) == (400, reason)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)
alert_like = st.fixed_dictionaries(
    {},
    optional={
        "title": st.text(max_size=30) | json_values,
        "severity": st.sampled_from(["critical", "P2", "bogus"]) | json_values,
        "service": st.text(max_size=10) | json_values,
        "status": st.sampled_from(["firing", "resolved"]) | json_values,
        "dedup_key": st.text(max_size=10) | json_values,
        "summary": st.text(max_size=10) | json_values,
        "url": st.sampled_from(["https://x.example/", "http://[::1", "mailto:x@y"]) | json_values,
        "labels": st.dictionaries(st.text(max_size=5), st.text(max_size=5)) | json_values,
        "starts_at": st.sampled_from(["2024-05-01T02:00:13Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59"])
        | json_values,
    },
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | alert_like.map(lambda v: json.dumps(v).encode())
    | st.lists(alert_like, max_size=4).map(lambda v: json.dumps({"alerts": v}).encode()),
    signed=st.booleans(),
)
async def test_any_body_is_accepted_or_rejected_never_a_crash(body: bytes, signed: bool) -> None:
    headers = sign(body) if signed else {"X-Chatops-Timestamp": str(STAMP), "X-Chatops-Signature": "sha256=00"}
    try:
        result = await source().receive(request(body, headers=headers))
    except WebhookRejected as problem:
        assert problem.status in ((400, 413) if signed else (401,))
        assert problem.reason != UNEXPECTED_REASON
    else:
        assert signed and isinstance(result, Accepted)
        for alert in result.alerts:
            assert Alert.from_json(alert.to_json()) == alert
