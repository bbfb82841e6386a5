"""The Alertmanager source: the real webhook bodies Alertmanager 0.25 sent (embedded here, and compared with the
captured files in ../shared/samples when that folder exists), per-alert firing/resolved in one group, truncated
groups, duplicates, the bearer token, precise 400s for malformed bodies, and, for any bytes at all, nothing but
WebhookRejected."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrations.alerts import (
    Accepted,
    Alert,
    AlertSource,
    SourceConfigError,
    WebhookRejected,
    WebhookRequest,
    alertmanager,
)
from integrations.alerts.alertmanager import (
    AlertmanagerSettings,
    AlertmanagerSource,
    build,
    parse_payload,
)
from integrations.alerts.payload import MAX_BODY_BYTES
from integrations.alerts.source import UNEXPECTED_REASON

TOKEN = "am-test-token-7f3e"
NOW = datetime(2026, 11, 22, 21, 10, tzinfo=UTC)
SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples"

# Byte for byte what Alertmanager 0.25 sent (see ../shared/samples/README.md): note endsAt 0001-01-01 while firing,
# the empty generatorURL, and nanosecond startsAt.
FIRING_BODY = (
    '{"receiver":"chatops","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"Test","service":"web",'
    '"severity":"critical"},"annotations":{"runbook":"https://example.invalid/rb","summary":"Web is down"},'
    '"startsAt":"2026-11-22T21:08:48.827902876Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"",'
    '"fingerprint":"f92edf5dab463ba1"}],"groupLabels":{"alertname":"Test"},"commonLabels":{"alertname":"Test",'
    '"service":"web","severity":"critical"},"commonAnnotations":{"runbook":"https://example.invalid/rb",'
    '"summary":"Web is down"},"externalURL":"http://vm:26000","version":"4","groupKey":"{}:{alertname=\\"Test\\"}",'
    '"truncatedAlerts":0}\n'
)
RESOLVED_BODY = (
    '{"receiver":"chatops","status":"resolved","alerts":[{"status":"resolved","labels":{"alertname":"Test",'
    '"service":"web","severity":"critical"},"annotations":{"runbook":"https://example.invalid/rb",'
    '"summary":"Web is down"},"startsAt":"2026-11-22T21:07:53.881284Z","endsAt":"2026-11-22T21:08:52.881284Z",'
    '"generatorURL":"","fingerprint":"f92edf5dab463ba1"}],"groupLabels":{"alertname":"Test"},"commonLabels":'
    '{"alertname":"Test","service":"web","severity":"critical"},"commonAnnotations":{"runbook":'
    '"https://example.invalid/rb","summary":"Web is down"},"externalURL":"http://vm:26000","version":"4",'
    '"groupKey":"{}:{alertname=\\"Test\\"}","truncatedAlerts":0}\n'
)


def sample_bodies(name: str) -> list[bytes]:
    """The embedded body, plus the captured file when ../shared/samples is there."""
    embedded = {"firing": FIRING_BODY, "resolved": RESOLVED_BODY}[name].encode()
    path = SAMPLES / f"alertmanager-{name}.json"
    return [embedded, path.read_bytes()] if path.is_file() else [embedded]


def source(**overrides: Any) -> AlertmanagerSource:
    settings = AlertmanagerSettings(token_env="ALERTMANAGER_TOKEN", **overrides)
    return build(settings, environ={"ALERTMANAGER_TOKEN": TOKEN + "\n"}, http=None)


def request(
    body: bytes | str | dict[str, Any], *, token: str | None = TOKEN, headers: dict[str, str] | None = None
) -> WebhookRequest:
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    all_headers = {"Content-Type": "application/json", "User-Agent": "Alertmanager/0.25.0"}
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    all_headers.update(headers or {})
    return WebhookRequest(headers=all_headers, body=body, remote="127.0.0.1", now=NOW)


async def receive(body: bytes | str | dict[str, Any], **kwargs: Any) -> Accepted:
    result = await source().receive(request(body, **kwargs))
    assert isinstance(result, Accepted)
    return result


async def rejected(body: bytes | str | dict[str, Any], **kwargs: Any) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as caught:
        await source().receive(request(body, **kwargs))
    return caught.value


def firing() -> dict[str, Any]:
    return json.loads(FIRING_BODY)


def test_embedded_bodies_are_the_captured_ones() -> None:
    if not SAMPLES.is_dir():
        pytest.skip("../shared/samples is not there; the embedded copies are used alone")
    for name in ("firing", "resolved"):
        embedded, captured = sample_bodies(name)
        assert json.loads(embedded) == json.loads(captured)


def test_source_satisfies_the_protocol() -> None:
    assert isinstance(source(), AlertSource)
    assert source().name == "alertmanager"


@pytest.mark.parametrize("body", sample_bodies("firing"))
async def test_firing_sample(body: bytes) -> None:
    result = await receive(body)
    assert result.truncated == 0
    assert result.reply == "accepted 1 alert"
    (alert,) = result.alerts
    assert alert.source == "alertmanager"
    assert alert.fingerprint == "f92edf5dab463ba1"
    assert alert.status == "firing"
    assert alert.title == "Test"
    assert alert.severity == "critical"
    assert alert.labels == {"alertname": "Test", "service": "web", "severity": "critical"}
    assert alert.annotations == {"runbook": "https://example.invalid/rb", "summary": "Web is down"}
    assert alert.summary == "Web is down"
    assert alert.starts_at == datetime(2026, 11, 22, 21, 8, 48, 827902, tzinfo=UTC)
    assert alert.ends_at is None  # 0001-01-01T00:00:00Z
    assert alert.group_key == '{}:{alertname="Test"}'
    assert "source" not in alert.links  # generatorURL is empty
    assert alert.links["runbook"] == "https://example.invalid/rb"
    assert alert.links["silence"] == (
        "http://vm:26000/#/silences/new?filter=%7Balertname%3D%22Test%22%2C"
        "service%3D%22web%22%2Cseverity%3D%22critical%22%7D"
    )


@pytest.mark.parametrize("body", sample_bodies("resolved"))
async def test_resolved_sample_is_the_same_alert_ended(body: bytes) -> None:
    (alert,) = (await receive(body)).alerts
    (fired,) = (await receive(FIRING_BODY)).alerts
    assert alert.status == "resolved"
    assert alert.fingerprint == fired.fingerprint
    assert alert.starts_at == datetime(2026, 11, 22, 21, 7, 53, 881284, tzinfo=UTC)
    assert alert.ends_at == datetime(2026, 11, 22, 21, 8, 52, 881284, tzinfo=UTC)


async def test_each_alert_of_a_group_has_its_own_status() -> None:
    body = firing()
    second = copy.deepcopy(body["alerts"][0])
    second.update(
        status="resolved",
        fingerprint="0a1b2c3d4e5f6071",
        endsAt="2026-11-22T21:09:00.5+01:00",
        labels={"alertname": "Test", "service": "api", "severity": "warning"},
        generatorURL="http://prometheus:9090/graph?g0.expr=up+%3D%3D+0",
    )
    body["alerts"].append(second)
    result = await receive(body)
    assert [(a.fingerprint, a.status, a.severity) for a in result.alerts] == [
        ("f92edf5dab463ba1", "firing", "critical"),
        ("0a1b2c3d4e5f6071", "resolved", "warning"),
    ]
    assert result.alerts[1].ends_at == datetime(2026, 11, 22, 20, 9, 0, 500000, tzinfo=UTC)
    assert result.alerts[1].links["source"] == "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0"
    assert result.reply == "accepted 2 alerts"


async def test_a_firing_alert_never_has_an_end_even_when_alertmanager_sends_one() -> None:
    body = firing()
    body["alerts"][0]["endsAt"] = "2026-11-22T21:12:48Z"  # Prometheus's "resolve unless renewed" time
    (alert,) = (await receive(body)).alerts
    assert alert.ends_at is None


async def test_truncated_groups_say_how_many_were_left_out() -> None:
    body = firing()
    body["truncatedAlerts"] = 7
    result = await receive(body)
    assert result.truncated == 7
    assert result.reply == "accepted 1 alert (7 truncated by the sender)"


async def test_duplicates_in_one_body_collapse_to_the_last() -> None:
    body = firing()
    again = copy.deepcopy(body["alerts"][0])
    again["annotations"]["summary"] = "Web is still down"
    body["alerts"].append(again)
    result = await receive(body)
    assert [a.summary for a in result.alerts] == ["Web is still down"]
    assert result.reply == "accepted 1 alert (1 duplicate dropped)"


async def test_the_same_body_twice_gives_equal_alerts() -> None:
    first, second = await receive(FIRING_BODY), await receive(FIRING_BODY)
    assert first == second
    assert Alert.from_json(first.alerts[0].to_json()) == first.alerts[0]


async def test_severity_spellings_and_the_default() -> None:
    for label, expected in [
        ("page", "critical"),
        ("P1", "critical"),
        ("error", "critical"),
        ("warn", "warning"),
        ("P3", "warning"),
        ("low", "info"),
        ("none", "info"),
        ("bogus", "warning"),
    ]:
        body = firing()
        body["alerts"][0]["labels"]["severity"] = label
        (alert,) = (await receive(body)).alerts
        assert alert.severity == expected, label
        assert alert.labels["severity"] == label  # the sender's labels are kept as sent
    body = firing()
    del body["alerts"][0]["labels"]["severity"]
    settings = AlertmanagerSettings(token_env="T", default_severity="info")
    quiet = build(settings, environ={"T": TOKEN}, http=None)
    result = await quiet.receive(request(body))
    assert isinstance(result, Accepted) and result.alerts[0].severity == "info"


async def test_missing_fingerprint_and_alertname_have_stable_fallbacks() -> None:
    body = firing()
    alert = body["alerts"][0]
    del alert["fingerprint"]
    alert["labels"] = {"job": "node", "instance": "db1:9100"}
    alert["annotations"] = {}
    first = (await receive(body)).alerts[0]
    alert["labels"] = {"instance": "db1:9100", "job": "node"}  # same labels, other order
    second = (await receive(body)).alerts[0]
    assert first.fingerprint == second.fingerprint and len(first.fingerprint) == 64
    assert first.title == "unnamed alert" and first.summary == "unnamed alert"


async def test_long_titles_and_summaries_are_clipped() -> None:
    body = firing()
    body["alerts"][0]["labels"]["alertname"] = "A" * 500
    body["alerts"][0]["annotations"]["summary"] = "s" * 5000
    (alert,) = (await receive(body)).alerts
    assert len(alert.title) == 200 and alert.title.endswith("…")
    assert len(alert.summary) == 1000


# -- authentication -----------------------------------------------------------------------------------------------


async def test_bearer_token_is_required_and_checked() -> None:
    assert (await rejected(FIRING_BODY, token=None)).reason == "missing bearer token"
    assert (
        await rejected(FIRING_BODY, token=None, headers={"Authorization": f"Basic {TOKEN}"})
    ).reason == "missing bearer token"
    wrong = await rejected(FIRING_BODY, token=TOKEN[:-1] + "x")
    assert (wrong.status, wrong.reason) == (401, "bad bearer token")
    assert TOKEN not in repr(wrong)
    assert (await rejected(FIRING_BODY, token="tökén")).reason == "bad bearer token"  # non-ASCII: no TypeError
    result = await source().receive(request(FIRING_BODY, token=None, headers={"authorization": f"bearer {TOKEN}"}))
    assert isinstance(result, Accepted)


async def test_the_token_is_checked_before_the_body_is_read() -> None:
    assert (await rejected(b"not json", token="wrong")).reason == "bad bearer token"


def test_build_needs_the_token_variable_and_never_shows_a_value() -> None:
    settings = AlertmanagerSettings(token_env="ALERTMANAGER_TOKEN")
    for environ in ({}, {"ALERTMANAGER_TOKEN": ""}, {"ALERTMANAGER_TOKEN": "  \n"}):
        with pytest.raises(SourceConfigError, match="ALERTMANAGER_TOKEN"):
            build(settings, environ=environ, http=None)


def test_settings_are_strict() -> None:
    with pytest.raises(ValueError, match="Extra inputs"):
        AlertmanagerSettings(token_env="T", tokn_env="T")
    with pytest.raises(ValueError, match="not an environment variable name"):
        AlertmanagerSettings(token_env="my token")


# -- malformed bodies -----------------------------------------------------------------------------------------------


def mutated(change: Any) -> dict[str, Any]:
    body = firing()
    change(body)
    return body


def _four_alerts_third_labels_list(body: dict[str, Any]) -> None:
    body["alerts"] = [copy.deepcopy(body["alerts"][0]) for _ in range(4)]
    body["alerts"][3]["labels"] = ["alertname", "Test"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not JSON: Expecting value at line 1 column 1"),
        (b'{"alerts": [}', "not JSON: Expecting value at line 1 column 13"),
        (b"\xff\xfe{}", "not JSON: the body is not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON: nested too deeply"),
        (b"[]", "body must be an object"),
        (mutated(lambda b: b.pop("alerts")), "alerts must be a list"),
        (mutated(lambda b: b.update(alerts={"0": {}})), "alerts must be a list"),
        (mutated(lambda b: b.update(version="3")), "unsupported payload version '3' (expected \"4\")"),
        (mutated(lambda b: b.update(truncatedAlerts=-1)), "truncatedAlerts must be a non-negative integer"),
        (mutated(lambda b: b.update(truncatedAlerts="2")), "truncatedAlerts must be a non-negative integer"),
        (mutated(lambda b: b.update(groupKey=5)), "groupKey must be a string"),
        (mutated(lambda b: b["alerts"].append("x")), "alerts[1] must be an object"),
        (mutated(_four_alerts_third_labels_list), "alerts[3].labels must be an object"),
        (mutated(lambda b: b["alerts"][0]["labels"].update(severity=2)), "alerts[0].labels.severity must be a string"),
        (mutated(lambda b: b["alerts"][0]["labels"].update({"a b": None})), 'alerts[0].labels["a b"] must be a string'),
        (
            mutated(lambda b: b["alerts"][0]["annotations"].update(summary=[])),
            "alerts[0].annotations.summary must be a string",
        ),
        (mutated(lambda b: b["alerts"][0].update(status="pending")), 'alerts[0].status must be "firing" or "resolved"'),
        (mutated(lambda b: b["alerts"][0].pop("startsAt")), "alerts[0].startsAt is missing"),
        (
            mutated(lambda b: b["alerts"][0].update(startsAt="yesterday")),
            "alerts[0].startsAt must be an RFC 3339 time like 2024-05-01T12:00:00Z",
        ),
        (
            mutated(lambda b: b["alerts"][0].update(endsAt="2026-13-40T00:00:00Z")),
            "alerts[0].endsAt must be an RFC 3339 time like 2024-05-01T12:00:00Z",
        ),
        (mutated(lambda b: b["alerts"][0].update(generatorURL=3)), "alerts[0].generatorURL must be a string"),
    ],
)
async def test_malformed_bodies_get_a_precise_400(body: bytes | dict[str, Any], reason: str) -> None:
    problem = await rejected(body)
    assert (problem.status, problem.reason) == (400, reason)


async def test_bodies_over_5_mb_get_413_before_anything_else() -> None:
    problem = await rejected(b" " * (MAX_BODY_BYTES + 1), token=None)
    assert (problem.status, problem.reason) == (413, "body is larger than 5 MB")


async def test_unsafe_links_are_dropped() -> None:
    body = firing()
    body["alerts"][0]["generatorURL"] = "javascript:alert(1)"
    body["externalURL"] = "ftp://vm"
    (alert,) = (await receive(body)).alerts
    assert set(alert.links) == {"runbook"}


def test_parsing_is_a_pure_function_of_the_json() -> None:
    result = parse_payload(firing(), now=NOW)
    assert result.alerts[0].fingerprint == "f92edf5dab463ba1"


# -- anything at all ----------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)
alert_like = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(["firing", "resolved"]) | json_values,
        "labels": st.dictionaries(
            st.sampled_from(["alertname", "severity", "service"]) | st.text(max_size=10),
            st.sampled_from(["", " \n", "critical"]) | st.text(max_size=10),
        )
        | json_values,
        "annotations": st.dictionaries(st.sampled_from(["summary", "description", "runbook_url"]), st.text(max_size=30))
        | json_values,
        "startsAt": st.sampled_from(
            [
                "2026-11-22T21:08:48.827902876Z",
                "0001-01-01T00:00:00Z",
                "0001-01-01T00:00:00+01:00",
                "9999-12-31T23:59:59-01:00",
            ]
        )
        | json_values,
        "endsAt": st.sampled_from(["0001-01-01T00:00:00Z", "2026-11-22T21:08:52Z"]) | json_values,
        "generatorURL": st.sampled_from(["", "http://x/", "javascript:x", "http://[::1"]) | json_values,
        "fingerprint": st.text(max_size=140) | json_values,
    },
)
payload_like = st.fixed_dictionaries(
    {"alerts": st.lists(alert_like, max_size=4) | json_values},
    optional={
        "version": st.just("4") | json_values,
        "groupKey": st.text(max_size=20) | json_values,
        "truncatedAlerts": st.integers() | json_values,
        "externalURL": st.sampled_from(["http://vm:26000", "http://[bad"]) | json_values,
        "commonLabels": json_values,
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | payload_like.map(lambda v: json.dumps(v).encode())
)
async def test_any_body_is_accepted_or_rejected_never_a_crash(body: bytes) -> None:
    try:
        result = await source().receive(request(body))
    except WebhookRejected as problem:
        assert problem.status in (400, 413)
        assert problem.reason != UNEXPECTED_REASON
    else:
        assert isinstance(result, Accepted)
        for alert in result.alerts:
            assert Alert.from_json(alert.to_json()) == alert


# -- over real HTTP -------------------------------------------------------------------------------------------------


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[Alert]]]:
    """A bare aiohttp app doing what the pipeline's route will do with a source."""
    got: list[Alert] = []
    sources = {"alertmanager": source()}

    async def handle(http_request: web.Request) -> web.Response:
        alert_source = sources.get(http_request.match_info["source"])
        if alert_source is None:
            return web.Response(status=404, text="no such source")
        body = await http_request.content.read(MAX_BODY_BYTES + 1)
        try:
            result = await alert_source.receive(
                WebhookRequest(headers=http_request.headers, body=body, remote=http_request.remote)
            )
        except WebhookRejected as problem:
            return web.Response(status=problem.status, text=problem.reason)
        assert isinstance(result, Accepted)
        got.extend(result.alerts)
        return web.Response(text=result.reply)

    app = web.Application()
    app.router.add_post("/alerts/{source}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/alerts/alertmanager", got
    finally:
        await runner.cleanup()


async def test_over_http_with_alertmanagers_headers(receiver: tuple[str, list[Alert]]) -> None:
    url, got = receiver
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Alertmanager/0.25.0",
        "Authorization": f"Bearer {TOKEN}",
    }
    async with aiohttp.ClientSession() as http:
        for body in (FIRING_BODY, RESOLVED_BODY):
            async with http.post(url, data=body.encode(), headers=headers) as response:
                assert (response.status, await response.text()) == (200, "accepted 1 alert")
        async with http.post(url, data=FIRING_BODY.encode(), headers={"Authorization": "Bearer nope"}) as response:
            assert (response.status, await response.text()) == (401, "bad bearer token")
    assert [a.status for a in got] == ["firing", "resolved"]


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=12), min_size=1, max_size=4),
    st.sampled_from(["http://am:9093", "http://am:9093/", "https://alerts.example.com/am"]),
)
def test_a_remembered_silence_link_is_the_one_worked_out(labels: dict[str, str], external: str) -> None:
    """silence_url remembers its links (bounded): asked twice, or after the memo was filled and cleared, it gives
    exactly the link built from the labels, escapes and all."""
    expected = alertmanager._silence_url(external, tuple(sorted(labels.items())))
    assert alertmanager.silence_url(external, labels) == expected
    assert alertmanager.silence_url(external, dict(reversed(list(labels.items())))) == expected
    for n in range(alertmanager._SILENCE_URLS_MAX + 1):  # fills the memo past its bound: it is cleared, not grown
        alertmanager.silence_url(external, {"n": str(n)})
    assert len(alertmanager._SILENCE_URLS) <= alertmanager._SILENCE_URLS_MAX
    assert alertmanager.silence_url(external, labels) == expected
