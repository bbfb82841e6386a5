"""bot.oncall.rotation: the example rotations, DST changes, gaps and overlaps, bad input, and properties over real
zones (30-minute DST, +5:45, +12:45, a skipped day) across 2000-2100."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.oncall import rotation
from bot.oncall.rotation import (
    Override,
    RotationSpec,
    Shift,
    next_handoff,
    on_call,
    parse_rotation,
    shift_at,
    shifts_between,
    upcoming,
)

HOUR = timedelta(hours=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def primary() -> RotationSpec:
    return parse_rotation(
        "primary",
        members=["U0AAA", "U0BBB", "U0CCC"],
        shift="1w",
        handoff="monday 09:00",
        timezone="Europe/Berlin",
        start="2026-01-05",
    )


@pytest.fixture
def secondary() -> RotationSpec:
    return parse_rotation(
        "secondary",
        members=("U0DDD", "U0EEE"),
        shift="1d",
        handoff="09:00",
        timezone="America/New_York",
        start=date(2026, 1, 5),
    )


def daily(zone: str, at: str, start: str, members: tuple[str, ...] = ("U0A", "U0B")) -> RotationSpec:
    return parse_rotation("r", members=members, shift="1d", handoff=at, timezone=zone, start=start)


# --- examples --------------------------------------------------------------------------------------------------


def test_parse_rotation_gives_the_spec(primary: RotationSpec, secondary: RotationSpec) -> None:
    assert primary == RotationSpec(
        "primary", ("U0AAA", "U0BBB", "U0CCC"), 7, time(9, 0), 0, "Europe/Berlin", date(2026, 1, 5)
    )
    assert secondary == RotationSpec(
        "secondary", ("U0DDD", "U0EEE"), 1, time(9, 0), None, "America/New_York", date(2026, 1, 5)
    )
    assert parse_rotation("x", members=["U1"], shift="2W", handoff="Fri 17:30", timezone="UTC", start="2026-01-09")
    assert parse_rotation("x", members=["U1"], shift="7d", handoff="friday 17:30", timezone="UTC", start="2026-01-09")


def test_primary_first_shifts(primary: RotationSpec) -> None:
    assert shift_at(primary, utc(2026, 1, 5, 7, 59)) is None
    first = shift_at(primary, utc(2026, 1, 5, 8))  # 09:00 CET
    assert first == Shift("primary", "U0AAA", 0, utc(2026, 1, 5, 8), utc(2026, 1, 12, 8))
    assert [s.member for s in shifts_between(primary, utc(2026, 1, 1), utc(2026, 2, 1))] == [
        "U0AAA",
        "U0BBB",
        "U0CCC",
        "U0AAA",
    ]
    assert next_handoff(primary, utc(2025, 12, 1)) == utc(2026, 1, 5, 8)
    assert next_handoff(primary, utc(2026, 1, 5, 8)) == utc(2026, 1, 12, 8)


def test_weekly_shifts_across_berlin_dst_changes(primary: RotationSpec) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    spring = shift_at(primary, utc(2026, 3, 29, 12))
    assert spring == Shift("primary", "U0CCC", 11, utc(2026, 3, 23, 8), utc(2026, 3, 30, 7))
    assert spring.ends - spring.starts == 167 * HOUR
    autumn = shift_at(primary, utc(2026, 10, 25, 12))
    assert autumn is not None and (autumn.starts, autumn.ends) == (utc(2026, 10, 19, 7), utc(2026, 10, 26, 8))
    assert autumn.ends - autumn.starts == 169 * HOUR
    for shift in shifts_between(primary, utc(2026, 1, 1), utc(2027, 1, 1)):
        local = shift.starts.astimezone(berlin)
        assert (local.weekday(), local.time()) == (0, time(9, 0))


def test_daily_shifts_across_new_york_dst_changes(secondary: RotationSpec) -> None:
    spring = shift_at(secondary, utc(2026, 3, 8, 12))
    assert spring is not None and (spring.starts, spring.ends) == (utc(2026, 3, 7, 14), utc(2026, 3, 8, 13))
    assert spring.ends - spring.starts == 23 * HOUR
    autumn = shift_at(secondary, utc(2026, 11, 1, 12))
    assert autumn is not None and (autumn.starts, autumn.ends) == (utc(2026, 10, 31, 13), utc(2026, 11, 1, 14))
    assert autumn.ends - autumn.starts == 25 * HOUR
    assert next_handoff(secondary, utc(2026, 3, 8, 12)) == utc(2026, 3, 8, 13)  # 09:00 EDT


def test_handoff_in_a_dst_gap_is_the_first_valid_instant_after_it() -> None:
    spec = daily("Europe/Berlin", "02:30", "2026-03-27")
    starts = [s.starts for s in shifts_between(spec, utc(2026, 3, 27), utc(2026, 3, 31))]
    # 02:30 CET; 02:30 does not exist on the 29th, so 03:00 CEST (the jump itself); 02:30 CEST
    assert starts == [utc(2026, 3, 27, 1, 30), utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30)]
    assert starts[2].astimezone(ZoneInfo("Europe/Berlin")).time() == time(3, 0)


def test_handoff_in_a_dst_overlap_is_the_first_occurrence() -> None:
    spec = daily("Europe/Berlin", "02:30", "2026-10-24")
    starts = [s.starts for s in shifts_between(spec, utc(2026, 10, 24), utc(2026, 10, 27))]
    assert starts == [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]  # 02:30 CEST twice
    assert [b - a for a, b in pairwise(starts)] == [24 * HOUR, 25 * HOUR]


def test_half_hour_dst_gap_on_lord_howe() -> None:
    spec = daily("Australia/Lord_Howe", "02:15", "2026-10-03")
    shift = shift_at(spec, utc(2026, 10, 4))
    # 02:00 +10:30 jumps to 02:30 +11:00 on 2026-10-04: 02:15 is skipped, the hand-off is at 02:30
    assert shift is not None and shift.starts == utc(2026, 10, 3, 15, 30)
    assert shift.starts - shift_at(spec, utc(2026, 10, 3)).starts == timedelta(hours=23, minutes=45)


def test_skipped_day_in_apia() -> None:
    """Samoa skipped 2011-12-30 entirely: that day's 09:00 hand-off happens at the next valid instant, 31st 00:00."""
    spec = daily("Pacific/Apia", "09:00", "2011-12-28")
    starts = [s.starts for s in shifts_between(spec, utc(2011, 12, 28), utc(2012, 1, 1))]
    assert starts == [
        utc(2011, 12, 28, 19),
        utc(2011, 12, 29, 19),
        utc(2011, 12, 30, 10),
        utc(2011, 12, 30, 19),
        utc(2011, 12, 31, 19),
    ]


def test_shift_at_is_constant_time_decades_away(monkeypatch: pytest.MonkeyPatch, secondary: RotationSpec) -> None:
    calls = 0
    real = rotation._handoff

    def counting(spec: RotationSpec, index: int) -> datetime:
        nonlocal calls
        calls += 1
        return real(spec, index)

    monkeypatch.setattr(rotation, "_handoff", counting)
    shift = shift_at(secondary, utc(2099, 7, 1, 14))  # 10:00 EDT
    assert shift is not None and shift.starts.astimezone(ZoneInfo("America/New_York")).date() == date(2099, 7, 1)
    assert calls <= 6


def test_inputs_in_other_zones_and_naive_inputs(secondary: RotationSpec) -> None:
    tokyo = datetime(2026, 3, 9, 3, tzinfo=ZoneInfo("Asia/Tokyo"))  # 2026-03-08 18:00 UTC
    assert shift_at(secondary, tokyo) == shift_at(secondary, utc(2026, 3, 8, 18))
    with pytest.raises(ValueError, match="at must be a timezone-aware datetime"):
        shift_at(secondary, datetime(2026, 3, 9))


# --- overrides -------------------------------------------------------------------------------------------------


def test_override_in_the_middle_of_a_shift(primary: RotationSpec) -> None:
    cover = Override("o1", "primary", "U0ZZZ", utc(2026, 1, 7, 8), utc(2026, 1, 9, 8))
    other = Override("o2", "secondary", "U0YYY", utc(2026, 1, 1), utc(2026, 2, 1))  # another rotation: ignored
    overrides = [cover, other]
    assert on_call(primary, utc(2026, 1, 6), overrides) == ("U0AAA", utc(2026, 1, 7, 8), None)
    assert on_call(primary, utc(2026, 1, 7, 8), overrides) == ("U0ZZZ", utc(2026, 1, 9, 8), "o1")
    assert on_call(primary, utc(2026, 1, 10), overrides) == ("U0AAA", utc(2026, 1, 12, 8), None)
    assert upcoming(primary, utc(2026, 1, 6), utc(2026, 1, 13), overrides) == [
        Shift("primary", "U0AAA", 0, utc(2026, 1, 5, 8), utc(2026, 1, 7, 8)),
        Shift("primary", "U0ZZZ", 0, utc(2026, 1, 7, 8), utc(2026, 1, 9, 8)),
        Shift("primary", "U0AAA", 0, utc(2026, 1, 9, 8), utc(2026, 1, 12, 8)),
        Shift("primary", "U0BBB", 1, utc(2026, 1, 12, 8), utc(2026, 1, 19, 8)),
    ]


def test_latest_override_wins_and_same_person_pieces_merge(primary: RotationSpec) -> None:
    early = Override("o1", "primary", "U0BBB", utc(2026, 1, 10), utc(2026, 1, 14))  # BBB takes over early
    later = Override("o2", "primary", "U0ZZZ", utc(2026, 1, 11), utc(2026, 1, 12))
    overrides = [early, later]
    assert on_call(primary, utc(2026, 1, 11, 12), overrides) == ("U0ZZZ", utc(2026, 1, 12), "o2")
    # BBB stays on call from the end of o2 through their own shift: one stretch
    assert on_call(primary, utc(2026, 1, 12), overrides) == ("U0BBB", utc(2026, 1, 19, 8), "o1")
    assert upcoming(primary, utc(2026, 1, 11, 12), utc(2026, 1, 13), overrides) == [
        Shift("primary", "U0ZZZ", 0, utc(2026, 1, 11), utc(2026, 1, 12)),
        Shift("primary", "U0BBB", 0, utc(2026, 1, 12), utc(2026, 1, 19, 8)),
    ]
    assert upcoming(primary, utc(2026, 1, 9), utc(2026, 1, 10, 12), overrides)[-1] == Shift(
        "primary", "U0BBB", 0, utc(2026, 1, 10), utc(2026, 1, 11)
    )


def test_one_member_rotation_keeps_its_handoffs_but_merges_overrides() -> None:
    spec = daily("UTC", "09:00", "2026-01-01", members=("U0A",))
    assert upcoming(spec, utc(2026, 1, 1), utc(2026, 1, 3), []) == shifts_between(
        spec, utc(2026, 1, 1), utc(2026, 1, 3)
    )
    same = Override("o", "r", "U0A", utc(2026, 1, 1, 12), utc(2026, 1, 2, 12))
    assert [(s.starts, s.ends) for s in upcoming(spec, utc(2026, 1, 1), utc(2026, 1, 3), [same])] == [
        (utc(2026, 1, 1, 9), utc(2026, 1, 3, 9)),
    ]


def test_before_the_rotation_starts(primary: RotationSpec) -> None:
    with pytest.raises(ValueError, match="nobody is on call for 'primary'"):
        on_call(primary, utc(2026, 1, 1), [])
    early = Override("o", "primary", "U0ZZZ", utc(2026, 1, 1), utc(2026, 1, 2))
    assert on_call(primary, utc(2026, 1, 1, 12), [early]) == ("U0ZZZ", utc(2026, 1, 2), "o")
    assert upcoming(primary, utc(2025, 12, 1), utc(2026, 1, 6), [early]) == [
        Shift("primary", "U0ZZZ", -1, utc(2026, 1, 1), utc(2026, 1, 2)),
        Shift("primary", "U0AAA", 0, utc(2026, 1, 5, 8), utc(2026, 1, 12, 8)),
    ]


def test_bad_overrides() -> None:
    with pytest.raises(ValueError, match=r"override 'o' ends \(2026-01-01T00:00:00\+00:00\) before it starts"):
        Override("o", "r", "U0A", utc(2026, 1, 2), utc(2026, 1, 1))
    with pytest.raises(ValueError, match="override starts must be a timezone-aware datetime"):
        Override("o", "r", "U0A", datetime(2026, 1, 1), utc(2026, 1, 2))


# --- bad input -------------------------------------------------------------------------------------------------

GOOD = {
    "members": ["U0AAA", "U0BBB"],
    "shift": "1w",
    "handoff": "monday 09:00",
    "timezone": "Europe/Berlin",
    "start": "2026-01-05",
}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"handoff": "munday 09:00"}, "handoff 'munday 09:00': unknown weekday 'munday'; did you mean 'monday'?"),
        ({"handoff": "09:00"}, "shift '1w' needs a weekday in handoff, e.g. 'monday 09:00'"),
        ({"start": "2026-01-06"}, "start 2026-01-06 is a Tuesday but handoff is on Monday"),
        ({"timezone": "Europe/Berln"}, "timezone 'Europe/Berln' is not an IANA time zone"),
        ({"timezone": "../etc/passwd"}, "timezone '../etc/passwd' is not an IANA time zone"),
        ({"timezone": ""}, "timezone '' is not an IANA time zone"),
        ({"members": []}, "members must not be empty"),
        ({"members": ["U0AAA", "U0BBB", "U0AAA"]}, "members: 'U0AAA' is listed more than once"),
        ({"members": "U0AAA"}, "members must be a list of Slack user ids, not the string 'U0AAA'"),
        ({"members": ["U0AAA", ""]}, "members must be Slack user ids, got ''"),
        (
            {"shift": "12h"},
            "shift '12h': shifts are whole days or weeks (hand-offs happen once a day at most), e.g. '1d' or '1w'",
        ),
        ({"shift": "weekly"}, "shift 'weekly': expected a whole number of days or weeks, e.g. '1d', '2d', '1w', '2w'"),
        ({"shift": "0w"}, "shift '0w': must be at least one day"),
        (
            {"shift": "1d"},
            "handoff 'monday 09:00' names a weekday but shift '1d' is not a whole number of weeks; give only the time, "
            "e.g. '09:00'",
        ),
        ({"handoff": "monday 9am"}, "handoff 'monday 9am': '9am' is not a 24-hour time (HH:MM)"),
        ({"handoff": "monday 24:00"}, "handoff 'monday 24:00': '24:00' is not a 24-hour time (HH:MM)"),
        (
            {"handoff": "every monday 09:00"},
            "handoff 'every monday 09:00': expected a time, optionally after a weekday, e.g. '09:00' or 'monday 09:00'",
        ),
        ({"handoff": "xyz 09:00"}, "handoff 'xyz 09:00': unknown weekday 'xyz'; expected monday to sunday"),
        ({"start": "2026-13-01"}, "start '2026-13-01' is not a date (YYYY-MM-DD)"),
        (
            {"start": datetime(2026, 1, 5, 9)},
            "start must be a date (YYYY-MM-DD), not a date and time: 2026-01-05T09:00:00",
        ),
    ],
)
def test_bad_input_gets_a_precise_message(changes: dict, message: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_rotation("primary", **{**GOOD, **changes})
    assert str(error.value) == message


def test_weekday_hint_uses_the_start_day_and_time() -> None:
    with pytest.raises(ValueError) as error:
        parse_rotation("p", members=["U1"], shift="2w", handoff="17:30", timezone="UTC", start="2026-01-09")
    assert str(error.value) == "shift '2w' needs a weekday in handoff, e.g. 'friday 17:30'"


# --- properties ------------------------------------------------------------------------------------------------

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Pacific/Chatham",
    "America/Sao_Paulo",
    "Pacific/Apia",
    "Asia/Tehran",
    "Africa/Casablanca",
    "Europe/London",
]
# Times that fall in DST gaps or overlaps somewhere in ZONES, and any other minute.
TIMES = st.one_of(
    st.sampled_from(
        [
            time(0, 0),
            time(0, 30),
            time(1, 0),
            time(1, 30),
            time(2, 0),
            time(2, 15),
            time(2, 30),
            time(2, 45),
            time(3, 0),
            time(23, 30),
        ]
    ),
    st.builds(time, st.integers(0, 23), st.integers(0, 59)),
)
INSTANTS = st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC))


@st.composite
def specs(draw: st.DrawFn) -> RotationSpec:
    zone = draw(st.sampled_from(ZONES))
    start = draw(st.dates(date(2000, 1, 1), date(2090, 1, 1)))
    at = draw(TIMES)
    members = draw(
        st.lists(st.text("ABCDEFGHIJ0123456789", min_size=1, max_size=4), min_size=1, max_size=5, unique=True)
    )
    if draw(st.booleans()):
        shift, handoff = f"{draw(st.integers(1, 3))}w", f"{rotation.WEEKDAYS[start.weekday()]} {at:%H:%M}"
    else:
        shift, handoff = f"{draw(st.integers(1, 10))}d", f"{at:%H:%M}"
    return parse_rotation(
        "r", members=["U" + m for m in members], shift=shift, handoff=handoff, timezone=zone, start=start
    )


def local_wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def scheduled_wall(spec: RotationSpec, index: int) -> datetime:
    return datetime.combine(spec.start + timedelta(days=index * spec.shift_days), spec.handoff_time)


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(specs(), INSTANTS)
def test_exactly_one_shift_covers_any_instant_after_the_start(spec: RotationSpec, at: datetime) -> None:
    first = next_handoff(spec, utc(1999, 1, 1))  # specs start in 2000 or later
    shift = shift_at(spec, at)
    if shift is None:
        assert at < first
        assert shifts_between(spec, at, at + timedelta(microseconds=1)) == []
        return
    assert shift.starts <= at < shift.ends
    assert shifts_between(spec, at, at + timedelta(microseconds=1)) == [shift]
    assert shift.member == spec.members[shift.index % len(spec.members)]


@PROPERTY
@given(specs(), INSTANTS, st.integers(1, 120))
def test_shifts_are_contiguous_cycle_members_and_hand_off_at_the_local_time(
    spec: RotationSpec, since: datetime, days: int
) -> None:
    until = since + timedelta(days=days)
    zone = ZoneInfo(spec.timezone)
    shifts = shifts_between(spec, since, until)
    for shift, following in pairwise(shifts):
        assert shift.ends == following.starts
        assert following.index == shift.index + 1
    if shifts:
        assert shifts[0].ends > since and shifts[-1].starts < until <= shifts[-1].ends
        assert shifts[0].index == 0 or shifts[0].starts <= since
    for shift in shifts:
        assert shift.member == spec.members[shift.index % len(spec.members)]
        assert shift_at(spec, shift.starts) == shift
        wall = scheduled_wall(spec, shift.index)
        # the hand-off wall time itself, or (on a gap day) the first instant whose local time is past it
        assert local_wall(shift.starts, zone) >= wall > local_wall(shift.starts - timedelta(seconds=1), zone)
        if wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall:
            assert local_wall(shift.starts, zone) == wall and shift.starts.astimezone(zone).fold == 0


@PROPERTY
@given(specs(), INSTANTS)
def test_next_handoff_is_the_next_shift_start(spec: RotationSpec, after: datetime) -> None:
    handoff = next_handoff(spec, after)
    assert handoff > after
    shift = shift_at(spec, handoff)
    assert shift is not None and shift.starts == handoff
    current = shift_at(spec, after)
    assert (current.ends if current else shifts_between(spec, after, handoff + HOUR)[0].starts) == handoff


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[RotationSpec, datetime, datetime, list[Override], list[datetime]]:
    spec = draw(specs())
    base = datetime.combine(spec.start, time(), tzinfo=UTC) + timedelta(hours=draw(st.integers(-24 * 20, 24 * 60)))
    span = timedelta(hours=draw(st.integers(1, 24 * 40)))
    hours = st.integers(-24 * 10, int(span / HOUR) + 24 * 10)
    people = st.sampled_from([*spec.members, "U0ZZZ", "U0YYY"])
    overrides = []
    for number in range(draw(st.integers(0, 6))):
        starts = base + timedelta(hours=draw(hours))
        ends = starts + timedelta(hours=draw(st.integers(1, 24 * 10)))
        name = draw(st.sampled_from(["r", "r", "r", "other"]))
        overrides.append(Override(f"o{number}", name, draw(people), starts, ends))
    probes = draw(st.lists(st.integers(0, int(span / timedelta(minutes=1)) - 1), min_size=1, max_size=10))
    return spec, base, base + span, overrides, [base + timedelta(minutes=m) for m in probes]


def expected_on_call(spec: RotationSpec, at: datetime, overrides: list[Override]) -> tuple[str, str | None] | None:
    for override in reversed(overrides):
        if override.rotation == spec.name and override.starts <= at < override.ends:
            return override.member, override.id
    shift = shift_at(spec, at)
    return (shift.member, None) if shift else None


@PROPERTY
@given(scenarios())
def test_on_call_agrees_with_upcoming(scenario: tuple) -> None:
    spec, since, until, overrides, probes = scenario
    pieces = upcoming(spec, since, until, overrides)
    for piece, following in pairwise(pieces):
        assert piece.starts < piece.ends <= following.starts
        if piece.ends == following.starts and piece.member == following.member:
            # only a plain hand-off between two scheduled shifts separates the same person
            assert not any(o.rotation == "r" and o.starts <= piece.ends <= o.ends for o in overrides)
    if pieces:
        assert pieces[0].ends > since and pieces[-1].starts < until
    for at in probes:
        expected = expected_on_call(spec, at, overrides)
        covering = [p for p in pieces if p.starts <= at < p.ends]
        if expected is None:
            assert covering == []
            with pytest.raises(ValueError, match="nobody is on call"):
                on_call(spec, at, overrides)
            continue
        member, override_id = expected
        assert len(covering) == 1 and covering[0].member == member
        assert on_call(spec, at, overrides) == (member, covering[0].ends, override_id)
        # the person really stays on call until then, and not at the very instant after (unless a plain hand-off)
        assert expected_on_call(spec, covering[0].ends - timedelta(microseconds=1), overrides)[0] == member
    without = upcoming(spec, since, until, [o for o in overrides if o.rotation != "r"])
    assert without == shifts_between(spec, since, until)
