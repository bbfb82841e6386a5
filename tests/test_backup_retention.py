"""Retention (pure): the exact grandfather-father-son set on a known history, and properties for any history and
policy: the newest good backup is always kept, kept and pruned split the input, GFS counts bound the kept set,
and max_age never keeps anything older (but the newest)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from bot.backups.config import RetentionConfig
from bot.backups.retention import Candidate, kept, pruned

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def nightly(days: int, per_day: int = 1) -> list[Candidate]:
    return [
        Candidate(f"b{d:03d}-{i}", NOW - timedelta(days=d, hours=2 + 3 * i))
        for d in range(days)
        for i in range(per_day)
    ]


def test_gfs_keeps_exactly_the_newest_per_day_week_and_month() -> None:
    history = nightly(400, per_day=2)
    policy = RetentionConfig(daily=7, weekly=4, monthly=6)
    keep = kept(history, policy, NOW)
    by_id = {c.id: c.at for c in history}
    days = sorted({by_id[i].date() for i in keep}, reverse=True)
    expected: set[str] = set()
    ordered = sorted(history, key=lambda c: c.at, reverse=True)
    for bucket, count in (
        (lambda t: t.date(), 7),
        (lambda t: tuple(t.isocalendar()[:2]), 4),
        (lambda t: (t.year, t.month), 6),
    ):
        seen: list[object] = []
        for c in ordered:
            key = bucket(c.at)
            if key not in seen and len(seen) < count:
                seen.append(key)
                expected.add(c.id)
    assert keep == expected
    assert all(i.endswith("-0") for i in keep)  # the newest of two backups on a day
    assert len([d for d in days if (NOW.date() - d).days < 7]) == 7
    assert len(keep) <= 7 + 4 + 6
    assert set(pruned(history, policy, NOW)) == {c.id for c in history} - keep


def test_max_age_and_the_last_good_backup() -> None:
    history = nightly(60)
    keep = kept(history, RetentionConfig(max_age=timedelta(days=30)), NOW)
    assert keep == {c.id for c in history if NOW - c.at <= timedelta(days=30)}
    ancient = [Candidate("only", NOW - timedelta(days=400))]
    assert kept(ancient, RetentionConfig(max_age=timedelta(days=1)), NOW) == {"only"}
    assert pruned(ancient, RetentionConfig(daily=1, max_age=timedelta(days=1)), NOW) == []
    assert kept(history, RetentionConfig(), NOW) == {c.id for c in history}
    assert kept([], RetentionConfig(daily=1), NOW) == set()


policies = st.builds(
    RetentionConfig,
    daily=st.none() | st.integers(1, 10),
    weekly=st.none() | st.integers(1, 6),
    monthly=st.none() | st.integers(1, 4),
    max_age=st.none() | st.integers(1, 90).map(lambda d: timedelta(days=d)),
)
histories = st.lists(st.integers(0, 200 * 24 * 60), min_size=0, max_size=80, unique=True).map(
    lambda minutes: [Candidate(f"b{m}", NOW - timedelta(minutes=m)) for m in minutes]
)


@given(histories, policies)
def test_retention_properties(history: list[Candidate], policy: RetentionConfig) -> None:
    keep = kept(history, policy, NOW)
    gone = pruned(history, policy, NOW)
    ids = {c.id for c in history}
    assert keep | set(gone) == ids and not keep & set(gone)
    if history:
        newest = max(history, key=lambda c: (c.at, c.id))
        assert newest.id in keep
    counts = [n for n in (policy.daily, policy.weekly, policy.monthly) if n]
    if counts:
        assert len(keep) <= max(1, sum(counts))
    if policy.max_age is not None and history:
        newest = max(history, key=lambda c: (c.at, c.id))
        assert all(NOW - c.at <= policy.max_age for c in history if c.id in keep and c.id != newest.id)
    assert kept(list(reversed(history)), policy, NOW) == keep  # order of the input does not matter
