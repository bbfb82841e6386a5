"""The alert-source seam: `Alert`'s invariants and its lossless JSON round trip (property-tested), the request
type's case-insensitive headers, RFC 3339 parsing with Go's zero time, severity normalisation, fingerprints, and the
guard that turns a source's bug into a 400 instead of an unhandled error."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations.alerts.labels import make_fingerprint, normalise_severity
from integrations.alerts.model import Alert, is_http_url
from integrations.alerts.payload import load_json
from integrations.alerts.source import (
    UNEXPECTED_REASON,
    Accepted,
    WebhookRejected,
    WebhookRequest,
    accepted,
    rejects_only,
)
from integrations.alerts.text import make_title
from integrations.alerts.times import parse_time


def make(**changes: Any) -> Alert:
    values: dict[str, Any] = {
        "source": "generic",
        "fingerprint": "abc123",
        "status": "firing",
        "title": "Disk full",
        "severity": "warning",
        "labels": {"service": "db"},
        "annotations": {"summary": "95% used"},
        "summary": "95% used",
        "starts_at": datetime(2024, 5, 1, 12, tzinfo=UTC),
        "ends_at": None,
        "links": {"source": "https://x.example/a"},
        "group_key": None,
    }
    values.update(changes)
    return Alert(**values)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"fingerprint": "has space"}, "fingerprint must match"),
        ({"fingerprint": "x" * 129}, "fingerprint must match"),
        ({"status": "pending"}, "status must be firing or resolved"),
        ({"severity": "P1"}, "severity must be critical, warning or info"),
        ({"title": ""}, "title must be a string of 1 to 200"),
        ({"title": "x" * 201}, "title must be a string of 1 to 200"),
        ({"summary": "x" * 1001}, "summary must be a string of at most 1000"),
        ({"labels": {"port": 8080}}, "labels must map strings to strings"),
        ({"links": {"source": "javascript:alert(1)"}}, "links['source'] must be an http(s) URL"),
        ({"links": {"source": ""}}, "links['source'] must be an http(s) URL"),
        ({"starts_at": datetime(2024, 5, 1)}, "starts_at must be a timezone-aware datetime"),
        ({"ends_at": "2024-05-01T12:00:00Z"}, "ends_at must be a timezone-aware datetime"),
        ({"source": ""}, "source must be a non-empty string"),
    ],
)
def test_invariants(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        make(**changes)


def test_alerts_are_immutable_and_hashable() -> None:
    labels = {"service": "db"}
    alert = make(labels=labels)
    labels["service"] = "changed"
    assert alert.labels == {"service": "db"}
    with pytest.raises(TypeError):
        alert.labels["service"] = "x"
    with pytest.raises(AttributeError):
        alert.status = "resolved"
    assert len({alert, make(), make(status="resolved")}) == 2


def test_times_are_normalised_to_utc() -> None:
    paris = timezone(timedelta(hours=2))
    alert = make(starts_at=datetime(2024, 5, 1, 14, tzinfo=paris))
    assert alert.starts_at == datetime(2024, 5, 1, 12, tzinfo=UTC) and alert.starts_at.tzinfo is UTC


def test_json_shape_for_the_stream() -> None:
    data = json.loads(make(status="resolved", ends_at=datetime(2024, 5, 1, 13, tzinfo=UTC)).to_json())
    assert data == {
        "v": 1,
        "source": "generic",
        "fingerprint": "abc123",
        "status": "resolved",
        "title": "Disk full",
        "severity": "warning",
        "labels": {"service": "db"},
        "annotations": {"summary": "95% used"},
        "summary": "95% used",
        "starts_at": "2024-05-01T12:00:00+00:00",
        "ends_at": "2024-05-01T13:00:00+00:00",
        "links": {"source": "https://x.example/a"},
        "group_key": None,
    }


text = st.text(max_size=30)
offsets = st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59))
moments = st.builds(
    lambda moment, offset: moment.replace(tzinfo=timezone(offset)),
    st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)),
    offsets,
)
alerts = st.builds(
    Alert,
    source=st.sampled_from(["alertmanager", "grafana", "sns", "generic"]),
    fingerprint=st.from_regex(r"[a-zA-Z0-9:_-]{1,128}", fullmatch=True),
    status=st.sampled_from(["firing", "resolved"]),
    title=st.text(min_size=1, max_size=200),
    severity=st.sampled_from(["critical", "warning", "info"]),
    labels=st.dictionaries(text, text, max_size=5),
    annotations=st.dictionaries(text, st.text(max_size=300), max_size=3),
    summary=st.text(max_size=1000),
    starts_at=moments,
    ends_at=st.none() | moments,
    links=st.dictionaries(
        st.sampled_from(["source", "silence", "dashboard", "panel", "image"]),
        st.sampled_from(
            ["https://grafana.example.com/d/x?orgId=1&viewPanel=4", "http://vm:26000/#/silences/new?filter=%7B%7D"]
        ),
    ),
    group_key=st.none() | text,
)


@given(alerts)
def test_json_round_trip_is_lossless(alert: Alert) -> None:
    text = alert.to_json()
    assert text.isascii()
    again = Alert.from_json(text)
    assert again == alert
    assert again.to_json() == text
    assert Alert.from_json(text.encode()) == alert


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        "{}",
        '{"v": 2}',
        json.dumps({**json.loads(make().to_json()), "extra": 1}),
        json.dumps({**json.loads(make().to_json()), "starts_at": "yesterday"}),
        json.dumps({**json.loads(make().to_json()), "starts_at": "2024-05-01T12:00:00"}),  # naive
        json.dumps({**json.loads(make().to_json()), "labels": {"a": 1}}),
        "[" * 10000,
    ],
)
def test_from_json_refuses_what_to_json_did_not_write(text: str) -> None:
    with pytest.raises(ValueError):
        Alert.from_json(text)


def test_requests_have_case_insensitive_headers() -> None:
    request = WebhookRequest(headers={"AUTHORIZATION": "Bearer x"}, body=bytearray(b"{}"))
    assert request.headers.get("authorization") == "Bearer x"
    assert request.body == b"{}" and isinstance(request.body, bytes)
    assert request.now.tzinfo is not None and request.remote is None
    with pytest.raises(ValueError, match="now must be a timezone-aware datetime"):
        WebhookRequest(headers={}, body=b"", now=datetime(2024, 5, 1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-22T21:08:48.827902876Z", datetime(2026, 11, 22, 21, 8, 48, 827902, tzinfo=UTC)),
        ("2024-05-01T14:02:10.123+02:00", datetime(2024, 5, 1, 12, 2, 10, 123000, tzinfo=UTC)),
        ("2024-05-01T11:59:30.512+0000", datetime(2024, 5, 1, 11, 59, 30, 512000, tzinfo=UTC)),
        ("2024-05-01t12:00:00z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", None),
    ],
)
def test_rfc3339_times(text: str, expected: datetime | None) -> None:
    assert parse_time(text, "t") == expected


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01",
        "2024-05-01T12:00:00",
        "2024-02-30T00:00:00Z",
        "2024-05-01T24:00:00Z",
        "9999-12-31T23:59:59-01:00",
        "1714564800",
        1714564800,
        "2024-05-01T12:00:00+25:00",
        "٢٠٢٤-05-01T12:00:00Z",
    ],
)
def test_bad_times_are_400s(text: object) -> None:
    with pytest.raises(WebhookRejected, match="startsAt must be an RFC 3339 time"):
        parse_time(text, "startsAt")


def test_severity_normalisation() -> None:
    table = {
        "critical": ["critical", "CRIT", "page", "error", "high", "P1", "p0", "sev-1", "Fatal", " major "],
        "warning": ["warning", "warn", "medium", "P2", "P3", "minor", "average"],
        "info": ["info", "low", "P4", "P5", "none", "unknown", "informational", "debug"],
    }
    for expected, spellings in table.items():
        for spelling in spellings:
            assert normalise_severity(spelling) == expected, spelling
    assert normalise_severity("catastrophic") is None
    assert normalise_severity(None) is None and normalise_severity(1) is None


def test_fingerprints_are_stable_and_label_order_free() -> None:
    first = make_fingerprint("alertmanager", {"b": "2", "a": "1"})
    assert first == make_fingerprint("alertmanager", {"a": "1", "b": "2"})
    assert first != make_fingerprint("grafana", {"a": "1", "b": "2"})
    assert make_fingerprint("generic", "k") != make_fingerprint("generic", "k ")
    assert len(first) == 64 and make(fingerprint=first).fingerprint == first


def test_titles_are_one_clipped_line() -> None:
    assert make_title("Disk\n  full\ton db1 ") == "Disk full on db1"
    assert make_title(" \n ") == make_title(None) == "unnamed alert"
    assert make_title("x" * 300) == "x" * 199 + "…"


def test_load_json_never_raises_anything_else() -> None:
    assert load_json(b"\xef\xbb\xbf{}") == {}  # a UTF-8 byte order mark is tolerated
    with pytest.raises(WebhookRejected, match="not JSON"):
        load_json(b"1" * 5000)  # more digits than Python converts to an int
    with pytest.raises(WebhookRejected, match="not JSON: nested too deeply"):
        load_json(b'{"a":' * 100_000)


def test_accepted_reply_counts() -> None:
    assert accepted([]).reply == "accepted 0 alerts"
    result = accepted([make(), make(summary="newer"), make(fingerprint="other")], truncated=1)
    assert [(a.fingerprint, a.summary) for a in result.alerts] == [("abc123", "newer"), ("other", "95% used")]
    assert result.reply == "accepted 2 alerts (1 duplicate dropped, 1 truncated by the sender)"


class _Buggy:
    name = "buggy"

    @rejects_only
    async def receive(self, request: WebhookRequest) -> Accepted:
        if request.body == b"cancel":
            raise asyncio.CancelledError
        if request.body == b"reject":
            raise WebhookRejected(403, "no")
        return {}["missing"]


async def test_a_bug_in_a_source_is_a_logged_400(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR), pytest.raises(WebhookRejected) as caught:
        await _Buggy().receive(WebhookRequest(headers={}, body=b"x"))
    assert (caught.value.status, caught.value.reason) == (400, UNEXPECTED_REASON)
    assert "alert source buggy failed" in caplog.text and "KeyError" in caplog.text
    with pytest.raises(WebhookRejected, match="no"):
        await _Buggy().receive(WebhookRequest(headers={}, body=b"reject"))
    with pytest.raises(asyncio.CancelledError):
        await _Buggy().receive(WebhookRequest(headers={}, body=b"cancel"))


@pytest.mark.parametrize("space", [chr(c) for c in range(0x110000) if chr(c).isspace()])
def test_a_link_with_any_white_space_is_not_a_link(space: str) -> None:
    """`is_http_url` finds white space with a regular expression: every character str.isspace() accepts counts."""
    assert is_http_url("https://example.com/a")
    assert not is_http_url(f"https://example.com/a{space}b")


@given(st.text(max_size=40))
def test_is_http_url_refuses_exactly_the_urls_with_white_space(tail: str) -> None:
    url = f"https://example.com/{tail}"
    if any(ch.isspace() for ch in tail):
        assert not is_http_url(url)
    else:
        assert is_http_url(url)
