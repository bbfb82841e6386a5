"""The consumer applies the events of one stream entry that share a group in one update (bot/alerts/membership.py):
whatever the events, that gives exactly the group that applying them one at a time gives, stopping where the
group resolves. In a backlog it delivers entries in runs (`delivery_runs`); a run that fails part-way is delivered
again from its start, and that ends with the same alerts firing as delivering each entry once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.alerts.membership import apply_events, delivery_runs, newer
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


Entry = tuple[str, Sequence[Alert]]


def deliver(groups: list[AlertGroup], events: list[tuple[str, Alert]]) -> None:
    """The consumer's `_deliver_to_group` for one key, in memory: events go into the open group (the last, while
    firing), and a firing event with no open group opens one."""
    pending = list(events)
    while pending:
        if groups and groups[-1].state == "firing":
            groups[-1], applied = apply_events(groups[-1], pending, NOW)
            pending = pending[len(applied) :]
            continue
        event_id, first = pending.pop(0)
        if first.status == "firing":
            member = Member.from_alert(first, now=NOW, event_id=event_id)
            groups.append(
                AlertGroup(
                    id=f"g{len(groups)}",
                    group_key="k",
                    channel="C0ALERTS",
                    members={first.fingerprint: member},
                    created_at=NOW,
                    updated_at=NOW,
                )
            )


def events_of(entries: Sequence[Entry]) -> list[tuple[str, Alert]]:
    return [(f"{entry_id}-{index}", a) for entry_id, alerts in entries for index, a in enumerate(alerts)]


def outcome(groups: list[AlertGroup]) -> tuple[int, set[str]]:
    """How many groups were opened (each one a Slack message, perhaps a page), and the fingerprints firing in the
    open one (what Slack shows as firing for this key)."""
    if not groups or groups[-1].state != "firing":
        return len(groups), set()
    return len(groups), {fp for fp, m in groups[-1].members.items() if m.status == "firing"}


def with_a_failure(
    entries: list[Entry], fail_run: int, applied_before_failing: int, runs: Callable[[list[Entry]], list[list[Entry]]]
) -> tuple[int, set[str]]:
    """Delivers the entries in runs; run `fail_run` fails after `applied_before_failing` of its events went in (its
    entries stay pending), and is then retried entry by entry, as the consumer does."""
    groups: list[AlertGroup] = []
    for number, run in enumerate(runs(entries)):
        if number == fail_run:
            deliver(groups, events_of(run)[:applied_before_failing])
            for entry in run:
                deliver(groups, events_of([entry]))
        else:
            deliver(groups, events_of(run))
    return outcome(groups)


entries_strategy = st.lists(  # an entry is one webhook: each alert in it at most once
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["firing", "resolved"])),
        max_size=3,
        unique_by=lambda pair: pair[0],
    ),
    min_size=1,
    max_size=8,
)


def as_entries(raw: list[list[tuple[str, str]]]) -> list[Entry]:
    return [(f"{10 + n}-0", [alert(fp, status) for fp, status in alerts]) for n, alerts in enumerate(raw)]


def reference(entries: list[Entry]) -> tuple[int, set[str]]:
    """Each entry delivered once, one at a time, nothing failing."""
    groups: list[AlertGroup] = []
    for entry in entries:
        deliver(groups, events_of([entry]))
    return outcome(groups)


@settings(max_examples=400, deadline=None)
@given(entries_strategy, st.integers(min_value=0, max_value=7), st.integers(min_value=0, max_value=24))
def test_a_run_that_fails_part_way_and_is_redelivered_ends_as_delivering_once(
    raw: list[list[tuple[str, str]]], fail_run: int, applied_before_failing: int
) -> None:
    entries = as_entries(raw)
    runs = delivery_runs(entries)
    assert [entry for run in runs for entry in run] == entries
    assert with_a_failure(entries, fail_run, applied_before_failing, delivery_runs) == reference(entries)


def test_one_run_for_everything_would_fire_a_resolved_alert_again() -> None:
    """Why runs end before a resolve: redelivered after its resolve, an alert's older firing event opens a second
    group (a second message, a page) for an alert the source has resolved."""
    entries: list[Entry] = [("10-0", [alert("a", "firing")]), ("11-0", [alert("a", "resolved")])]
    assert [[entry_id for entry_id, _ in run] for run in delivery_runs(entries)] == [["10-0"], ["11-0"]]
    assert with_a_failure(entries, 1, 1, delivery_runs) == (1, set()) == reference(entries)
    assert with_a_failure(entries, 0, 2, lambda all_entries: [all_entries]) == (2, set())


def test_a_storm_of_resolves_or_of_firing_alerts_is_one_run() -> None:
    """Runs split only where an alert resolves after firing in the same run: a storm of either kind batches."""
    firing: list[Entry] = [(f"{10 + n}-0", [alert(f"f{n}", "firing"), alert("a", "firing")]) for n in range(5)]
    resolving: list[Entry] = [(f"{20 + n}-0", [alert(f"f{n}", "resolved")]) for n in range(5)]
    assert len(delivery_runs(firing)) == 1 and len(delivery_runs(resolving)) == 1
    assert [len(run) for run in delivery_runs(firing + resolving)] == [5, 5]
    assert [len(run) for run in delivery_runs(resolving + firing)] == [10]
