"""PagerDuty's pure parts: event bodies, answers classified as the Events API docs say, webhook signatures and
parsing (bad input is a clear WebhookInvalid, never a crash)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations.paging.pagerduty import (
    WebhookInvalid,
    classify,
    follow_up_body,
    parse_webhook,
    signature,
    trigger_body,
    verify_signature,
)
from tests.pagerduty_server import _problems, webhook_body


def test_a_trigger_is_cut_to_pagerdutys_limits_and_valid_for_its_api() -> None:
    body = trigger_body(
        dedup_key="a-" + "k" * 300,
        summary="x" * 5000,
        source="",
        severity="fatal",
        links=[("Slack", "https://acme.slack.com/archives/C1/p1"), ("bad", "javascript:alert(1)")],
    )
    assert len(body["payload"]["summary"]) == 1024 and len(body["dedup_key"]) == 255
    assert body["payload"]["severity"] == "error" and body["payload"]["source"] == "chatops"
    assert body["links"] == [{"href": "https://acme.slack.com/archives/C1/p1", "text": "Slack"}]
    assert _problems({"routing_key": "k" * 32, **body}) == []
    assert _problems({"routing_key": "k" * 32, **follow_up_body("resolve", "a-1")}) == []


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(202, "accepted"), (400, "rejected"), (404, "rejected"), (429, "retry"), (500, "retry"), (503, "retry")],
)
def test_answers_are_classified_as_the_events_api_documents_them(status: int, outcome: str) -> None:
    assert classify(status, "{}").outcome == outcome


def test_a_400_keeps_pagerdutys_own_error() -> None:
    result = classify(
        400,
        json.dumps(
            {
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": ["Length of 'routing_key' is incorrect (should be 32 characters)"],
            }
        ),
    )
    assert result.message == (
        "HTTP 400: Event object is invalid; Length of 'routing_key' is incorrect (should be 32 characters)"
    )
    assert classify(429, "", 30.0).retry_after == 30.0


def test_any_matching_v1_signature_is_accepted_and_nothing_else() -> None:
    body = b'{"event": {}}'
    verify_signature(body, signature(body, "s3cret"), "s3cret")
    verify_signature(body, f"v1={'0' * 64}, {signature(body, 's3cret')}", "s3cret")
    for header, reason in [
        (None, "missing"),
        ("", "missing"),
        ("sha256=abc", "no v1="),
        (signature(body, "other"), "bad signature"),
        (signature(body + b" ", "s3cret"), "bad"),
    ]:
        with pytest.raises(WebhookInvalid, match=reason) as refused:
            verify_signature(body, header, "s3cret")
        assert refused.value.status == 401


def test_the_documented_incident_payload_is_parsed() -> None:
    event = parse_webhook(webhook_body("incident.acknowledged", "a-abc"), webhook_id="WH-9")
    assert (event.id, event.event_type, event.incident_key, event.agent_id, event.agent_name) == (
        "WH-9",
        "incident.acknowledged",
        "a-abc",
        "PALICE1",
        "Alice Adams",
    )
    assert parse_webhook(webhook_body("incident.resolved", "a-abc")).id == "01DEN4HPBQAQ6FXOA3NVBFB2RS"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not JSON"),
        (b"[]", "no `event`"),
        (b'{"event": {"id": "1"}}', "event_type"),
        (b'{"event": {"event_type": "incident.resolved"}}', "event.id"),
        (b'{"event": {"id": "1", "event_type": "incident.resolved", "resource_type": "incident", "data": 3}}', "data"),
        (b'{"event": {"id": "1", "event_type": "incident.resolved", "occurred_at": "yesterday"}}', "ISO 8601"),
    ],
)
def test_malformed_webhooks_are_400_with_the_reason(body: bytes, reason: str) -> None:
    with pytest.raises(WebhookInvalid, match=reason) as refused:
        parse_webhook(body)
    assert refused.value.status == 400


_KEYS = st.sampled_from(["event", "id", "event_type", "data", "agent", "resource_type", "incident_key", "summary"])
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(_KEYS, kids, max_size=4),
    max_leaves=12,
)


@given(st.binary(max_size=300) | _JSON.map(lambda v: json.dumps(v).encode()))
def test_no_body_crashes_the_parser(body: bytes) -> None:
    try:
        parse_webhook(body)
    except WebhookInvalid as refused:
        assert refused.status == 400
