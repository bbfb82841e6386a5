"""The pure parts of on-call: the escalation walk's timing, deadline names, times people type, acknowledgement
figures, the hand-off trigger across DST, and the `oncall:` config's errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.alerts import escalation
from bot.alerts.escalation import Deadline
from bot.oncall.config import EscalationPolicy
from bot.oncall.rotation import parse_rotation
from bot.oncall.stats import figures_by, percentile, within
from bot.oncall.trigger import HandoffTrigger
from bot.oncall.when import format_local, parse_when
from bot.shell.config import ConfigError, parse_config

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def policy(*afters: str, repeat: int = 0, repeat_after: str | None = None) -> EscalationPolicy:
    steps = [{"notify": f"#step-{n}", "after": after} for n, after in enumerate(afters)]
    return EscalationPolicy.model_validate({"steps": steps, "repeat": repeat, "repeat_after": repeat_after})


def test_the_issue_policy_walks_three_steps_twice_more() -> None:
    walk = policy("0m", "5m", "15m", repeat=2)
    assert escalation.total_slots(walk) == 9
    dues = [escalation.slot(walk, START, n).due - START for n in range(9)]
    minutes = [int(d.total_seconds() // 60) for d in dues]
    assert minutes == [0, 5, 15, 25, 30, 40, 50, 55, 65]
    assert escalation.slot(walk, START, 9) is None and escalation.slot(walk, START, -1) is None


@pytest.mark.parametrize(
    ("afters", "repeat_after", "length"),
    [
        (("0m",), None, timedelta(minutes=5)),
        (("10m",), None, timedelta(minutes=20)),
        (("0m", "0m"), None, timedelta(minutes=5)),
        (("0m", "5m", "15m"), "30m", timedelta(minutes=45)),
    ],
)
def test_round_length(afters: tuple[str, ...], repeat_after: str | None, length: timedelta) -> None:
    assert policy(*afters, repeat_after=repeat_after).round_length == length


@given(st.lists(st.integers(0, 600), min_size=1, max_size=5), st.integers(0, 4))
def test_slots_are_in_time_order_and_never_early(afters: list[int], repeat: int) -> None:
    walk = policy(*(f"{a}s" for a in sorted(afters)), repeat=repeat)
    dues = [escalation.slot(walk, START, n).due for n in range(escalation.total_slots(walk))]
    assert dues == sorted(dues) and dues[0] >= START


def test_deadline_names_round_trip_and_reject_junk() -> None:
    deadline = Deadline("page", "a-23456789", 3, 7)
    assert Deadline.parse(str(deadline)) == deadline
    for junk in ("", "page|a|1", "nap|a|1|2", "page|a|x|2", "page|a|1|2|3"):
        assert Deadline.parse(junk) is None


NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # Monday 11:00 in Berlin


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("18:00", datetime(2026, 11, 23, 17, 0, tzinfo=UTC)),
        ("09:00", datetime(2026, 11, 24, 8, 0, tzinfo=UTC)),  # already past today: tomorrow
        ("6pm", datetime(2026, 11, 23, 17, 0, tzinfo=UTC)),
        ("tomorrow", datetime(2026, 11, 24, 8, 0, tzinfo=UTC)),
        ("tomorrow 7:30", datetime(2026, 11, 24, 6, 30, tzinfo=UTC)),
        ("friday 17:30", datetime(2026, 11, 27, 16, 30, tzinfo=UTC)),
        ("monday 09:00", datetime(2026, 11, 30, 8, 0, tzinfo=UTC)),  # today's has passed: next week
        ("Mon 12:00", datetime(2026, 11, 23, 11, 0, tzinfo=UTC)),
        ("2026-12-24 08:00", datetime(2026, 12, 24, 7, 0, tzinfo=UTC)),
        ("2026-12-24T08:00", datetime(2026, 12, 24, 7, 0, tzinfo=UTC)),
        ("2026-12-24", datetime(2026, 12, 24, 8, 0, tzinfo=UTC)),
    ],
)
def test_times_people_type_are_read_in_their_zone(text: str, expected: datetime) -> None:
    assert parse_when(text, NOW, BERLIN) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "is not a time"),
        ("5", "is not a time"),
        ("25:00", "is not a time"),
        ("13pm", "is not a time"),
        ("someday", "is not a time"),
        ("2026-02-30", "is not a time"),
        ("next friday 09:00 please", "is not a time"),
        ("2026-01-01 09:00", "is in the past"),
        ("today 08:00", "is in the past"),
    ],
)
def test_times_that_are_not_get_a_precise_error(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_when(text, NOW, BERLIN)


def test_a_time_in_a_dst_gap_is_the_moment_of_the_jump() -> None:
    before = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)  # Berlin jumps 02:00 → 03:00 on 29 March
    assert parse_when("02:30", before, BERLIN) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert format_local(datetime(2026, 3, 29, 1, 0, tzinfo=UTC), BERLIN) == "Sun 29 Mar 03:00 CEST"


def test_percentile_is_nearest_rank() -> None:
    assert percentile([5.0], 0.9) == 5.0
    assert percentile([float(n) for n in range(1, 11)], 0.9) == 9.0
    assert percentile([float(n) for n in range(1, 12)], 0.9) == 10.0
    with pytest.raises(ValueError):
        percentile([], 0.9)


def test_figures_group_and_skip_unreadable_records() -> None:
    acks = [
        {"user": "U1", "rotation": "primary", "seconds_to_ack": "60", "at": "2026-11-20T10:00:00+00:00"},
        {"user": "U1", "rotation": "primary", "seconds_to_ack": "180", "at": "2026-11-21T10:00:00+00:00"},
        {"user": "U2", "rotation": "", "seconds_to_ack": "600", "at": "2026-11-22T10:00:00+00:00"},
        {"user": "U2", "seconds_to_ack": "nan", "at": "2026-11-22T10:00:00+00:00"},
        {"user": "U3", "seconds_to_ack": "oops", "at": "bad"},
    ]
    by_user = {f.who: (f.count, f.mean, f.p90) for f in figures_by(acks, "user")}
    assert by_user == {
        "U1": (2, timedelta(minutes=2), timedelta(minutes=3)),
        "U2": (1, timedelta(minutes=10), timedelta(minutes=10)),
    }
    assert [f.who for f in figures_by(acks, "rotation")] == ["primary"]
    assert len(within(acks, datetime(2026, 11, 21, tzinfo=UTC))) == 3  # the bad date is left out
    assert len(within(acks, datetime(2026, 11, 1, tzinfo=UTC), "U1")) == 2


def test_the_handoff_trigger_follows_local_time_across_dst() -> None:
    spec = parse_rotation(
        "p", members=["U1"], shift="1w", handoff="sunday 02:30", timezone="Europe/Berlin", start="2026-03-22"
    )
    trigger = HandoffTrigger(spec)
    first = trigger.get_next_fire_time(None, datetime(2026, 3, 22, 1, 30, tzinfo=UTC))
    assert first == datetime(2026, 3, 22, 1, 30, tzinfo=UTC)  # exactly now counts
    second = trigger.get_next_fire_time(first, first)
    assert second == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 02:30 does not exist that night: 03:00 CEST
    third = trigger.get_next_fire_time(second, second)
    assert third == datetime(2026, 4, 5, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert str(trigger) == "handoff[p]"


BASE = """
oncall:
  rotations:
    primary: {members: [U0AAA], shift: 1w, handoff: "monday 09:00", timezone: Europe/Berlin, start: 2026-01-05}
  escalation_policies:
    default:
      steps:
"""


@pytest.mark.parametrize(
    ("steps", "problem"),
    [
        ("        - {notify: primray}\n", "'primray' is not a rotation, #channel or user ID; did you mean 'primary'?"),
        (
            "        - {notify: primary, after: 10m}\n        - {notify: U0BBB, after: 5m}\n",
            "steps must be in order of `after`",
        ),
        ("        - {notify: primary, mention: everyone}\n", "mention 'everyone': expected @here"),
        ("        - {notify: primary, after: soon}\n", "must be a duration"),
    ],
)
def test_bad_escalation_policies_are_explained(steps: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(").replace("?", r"\?")):
        parse_config(BASE + steps, "oncall.yaml")


def test_routes_must_name_a_defined_policy() -> None:
    text = (
        BASE
        + "        - {notify: primary}\nalerts:\n  routes:\n    - {match: {severity: critical}, escalation: defualt}\n"
    )
    with pytest.raises(ConfigError, match="there is no escalation policy 'defualt'; did you mean 'default'"):
        parse_config(text, "oncall.yaml")


@pytest.mark.parametrize(
    ("rotation", "problem"),
    [
        (
            '{members: [U0AAA], shift: 12h, handoff: "09:00", timezone: UTC, start: 2026-01-05}',
            "shifts are whole days or weeks",
        ),
        (
            '{members: [U0AAA], shift: 1w, handoff: "munday 09:00", timezone: UTC, start: 2026-01-05}',
            "did you mean 'monday'",
        ),
        (
            '{members: [U0AAA], shift: 1d, handoff: "09:00", timezone: Mars/Olympus, start: 2026-01-05}',
            "not an IANA time zone",
        ),
        ('{members: [alice], shift: 1d, handoff: "09:00", timezone: UTC, start: 2026-01-05}', "not a Slack user ID"),
        ('{members: [], shift: 1d, handoff: "09:00", timezone: UTC, start: 2026-01-05}', "at least 1 item"),
    ],
)
def test_bad_rotations_are_explained(rotation: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_config(f"oncall:\n  rotations:\n    primary: {rotation}\n", "oncall.yaml")
