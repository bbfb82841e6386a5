"""The consumer applies the events of one stream entry that share a group in one update (bot/alerts/membership.py):
whatever the events, that gives exactly the group that applying them one at a time gives, stopping where the
group resolves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.alerts.membership import apply_events, newer
from bot.alerts.model import AlertGroup, Member
from integrations.alerts.model import Alert

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def alert(fingerprint: str, status: str, summary: str = "") -> Alert:
    return Alert(
        source="alertmanager",
        fingerprint=fingerprint,
        status=status,  # type: ignore[arg-type]
        title=f"Disk full on {fingerprint}",
        severity="warning",
        labels={"alertname": "DiskFull", "instance": fingerprint},
        annotations={},
        summary=summary,
        starts_at=NOW - timedelta(minutes=5),
        ends_at=None,
        links={},
    )


def open_group(*firing: str) -> AlertGroup:
    return AlertGroup(
        id="g1",
        group_key="k",
        channel="C0ALERTS",
        members={fp: Member.from_alert(alert(fp, "firing"), now=NOW, event_id="5-0-0") for fp in firing},
        created_at=NOW,
        updated_at=NOW,
    )


def one_at_a_time(group: AlertGroup, events: list[tuple[str, Alert]]) -> tuple[AlertGroup, list[str], int]:
    """The group after applying events singly, as the consumer did before batching (a resolved group is not open:
    the events after it go elsewhere), the outcomes, and how many events it took."""
    outcomes: list[str] = []
    for used, event in enumerate(events, start=1):
        group, (applied,) = apply_events(group, [event], NOW)
        outcomes.append(applied.outcome)
        if group.state == "resolved":
            return group, outcomes, used
    return group, outcomes, len(events)


event_strategy = st.tuples(
    st.integers(min_value=4, max_value=7),  # stream id, around the members' "5-0-0"
    st.integers(min_value=0, max_value=3),  # index in its entry
    st.sampled_from(["a", "b", "c"]),  # fingerprint: a and b start firing, c is new
    st.sampled_from(["firing", "resolved"]),
    st.sampled_from(["", "new summary"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(event_strategy, min_size=1, max_size=12))
def test_a_batch_gives_the_same_group_as_its_events_one_at_a_time(raw: list[tuple[int, int, str, str, str]]) -> None:
    events = [(f"{stream}-0-{index}", alert(fp, status, summary)) for stream, index, fp, status, summary in raw]
    start = open_group("a", "b")
    batched, applied = apply_events(start, events, NOW)
    single, outcomes, used = one_at_a_time(start, events)
    assert batched == single
    assert [a.outcome for a in applied] == outcomes and len(applied) == used


def test_a_batch_stops_after_the_event_that_resolves_its_group() -> None:
    events = [
        ("6-0-0", alert("a", "firing")),
        ("6-0-1", alert("a", "resolved")),
        ("6-0-2", alert("a", "firing")),  # fires again: a new group, not this resolved one
    ]
    group, applied = apply_events(open_group("a"), events, NOW)
    assert [a.outcome for a in applied] == ["deduplicated", "resolved"]
    assert group.state == "resolved" and group.resolved_at == NOW
    assert group.members["a"].count == 2 and group.members["a"].status == "resolved"


def test_a_redelivered_batch_changes_nothing() -> None:
    events = [("6-0-0", alert("a", "firing")), ("6-0-1", alert("c", "firing"))]
    once, _ = apply_events(open_group("a"), events, NOW)
    twice, applied = apply_events(once, events, NOW + timedelta(seconds=30))
    assert twice is once and [a.outcome for a in applied] == ["stale", "stale"]


def test_out_of_order_events_are_ignored() -> None:
    assert newer("5-0-1", "5-0-0") and newer("6-0-0", "5-9-9")
    assert not newer("5-0-0", "5-0-0") and not newer("4-1-0", "5-0-0")
