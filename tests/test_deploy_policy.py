"""Pure deploy logic: crontab freeze windows, approvals, rollback targets, figures, the state machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.deploys.config import FreezeWindow
from bot.deploys.figures import compute_figures
from bot.deploys.model import DeployRecord, DeployState, IllegalTransition
from bot.deploys.policy import active_freeze, check_approval, rollback_target
from bot.platform.cron import Cron

NOW = datetime(2026, 11, 27, 15, 30, tzinfo=UTC)  # a Friday


def record(**changes: object) -> DeployRecord:
    base = {
        "id": "d-abcdefgh",
        "kind": "deploy",
        "service": "web",
        "environment": "production",
        "version": "v2",
        "previous_version": "v1",
        "requested_by": "U0BOB",
        "state": DeployState.AWAITING_APPROVAL,
        "created_at": NOW,
        "updated_at": NOW,
        "required_approvals": 2,
        "approvers_role": "approvers",
    }
    return DeployRecord.model_validate(base | changes)


def test_crontab_weekdays_count_from_sunday() -> None:
    weekend = Cron.parse("* * * * 5-6")
    assert weekend.matches(NOW)  # Friday
    assert weekend.matches(NOW + timedelta(days=1))  # Saturday
    assert not weekend.matches(NOW + timedelta(days=2))  # Sunday
    assert not weekend.matches(NOW - timedelta(days=1))  # Thursday
    assert Cron.parse("0 9 * * mon").matches(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
    assert Cron.parse("*/15 * * * *").matches(datetime(2026, 11, 23, 9, 45, tzinfo=UTC))
    assert Cron.parse("* * * * 7").matches(datetime(2026, 11, 29, 9, 45, tzinfo=UTC))  # 7 is Sunday too


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "a cron expression has 5 fields"),
        ("60 * * * *", "cron minute: '60' is not a number from 0 to 59"),
        ("* * * * 5-3", "cron day of week: range '5-3' runs backwards"),
        ("*/0 * * * *", "cron minute: bad step '0'"),
    ],
)
def test_bad_crontab_is_explained(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Cron.parse(expression)


@given(st.text(max_size=40))
def test_any_crontab_text_parses_or_says_why(text: str) -> None:
    try:
        Cron.parse(text)
    except ValueError as error:
        assert str(error)


def test_freeze_window_and_when_it_ends() -> None:
    freeze = active_freeze([FreezeWindow(cron="* * * * 5-6", reason="weekend")], NOW)
    assert freeze is not None and freeze.window.reason == "weekend"
    assert freeze.until == datetime(2026, 11, 29, 0, 0, tzinfo=UTC)
    assert active_freeze([FreezeWindow(cron="* * * * 5-6", reason="x")], NOW + timedelta(days=2)) is None
    berlin = FreezeWindow(cron="* 16 * * *", reason="tea", timezone="Europe/Berlin")
    assert active_freeze([berlin], NOW) is not None  # 15:30 UTC is 16:30 in Berlin


def test_approval_rules() -> None:
    waiting = record()
    assert (
        check_approval(waiting, "U0BOB", is_approver=True).refusal
        == "You requested this deploy; someone else has to approve it."
    )
    assert "Only members of `approvers`" in str(check_approval(waiting, "U0CAROL", is_approver=False).refusal)
    first = check_approval(waiting, "U0ALICE", is_approver=True)
    assert first.refusal is None and not first.enough
    from bot.deploys.model import Decision

    once = waiting.model_copy(update={"decisions": (Decision(user="U0ALICE", at=NOW, decision="approve"),)})
    assert check_approval(once, "U0ALICE", is_approver=True).duplicate
    assert check_approval(once, "U0LEAD", is_approver=True).enough
    assert check_approval(record(allow_self_approval=True, required_approvals=1), "U0BOB", is_approver=True).enough
    assert "already succeeded" in str(
        check_approval(record(state=DeployState.SUCCEEDED), "U0ALICE", is_approver=True).refusal
    )


def test_rollback_target_is_the_last_good_other_version() -> None:
    history = [
        record(id="d-3", version="v3", state=DeployState.ROLLED_BACK),
        record(id="d-2", version="v2", state=DeployState.SUCCEEDED),
        record(id="d-x", version="vx", state=DeployState.FAILED),
        record(id="d-1", version="v1", state=DeployState.SUCCEEDED),
    ]
    assert rollback_target(history, "v2") == "v1"
    assert rollback_target(history[:2], "v2") is None


def test_state_machine_refuses_stale_moves() -> None:
    done = record(state=DeployState.SUCCEEDED)
    with pytest.raises(IllegalTransition):
        done.moved(DeployState.RUNNING, NOW)
    running = record().moved(DeployState.RUNNING, NOW)
    assert running.moved(DeployState.SUCCEEDED, NOW).finished_at == NOW


def test_figures() -> None:
    hour = timedelta(hours=1)
    records = [
        record(
            id="d-1",
            state=DeployState.SUCCEEDED,
            started_at=NOW - 10 * hour,
            finished_at=NOW - 10 * hour + timedelta(minutes=2),
        ),
        record(
            id="d-2",
            state=DeployState.FAILED,
            started_at=NOW - 5 * hour,
            finished_at=NOW - 5 * hour + timedelta(minutes=1),
        ),
        record(id="d-3", state=DeployState.SUCCEEDED, started_at=NOW - 4 * hour, finished_at=NOW - 4 * hour),
        record(
            id="d-4",
            state=DeployState.ROLLED_BACK,
            started_at=NOW - hour,
            finished_at=NOW - hour + timedelta(minutes=4),
        ),
    ]
    figures = compute_figures(records, NOW)
    assert figures.deploys == 4 and figures.success_rate == 0.5 and figures.change_failure_rate == 0.5
    assert figures.mean_time_to_restore == (hour + timedelta(minutes=4)) / 2  # d-2 restored by d-3 after 1h; d-4 in 4m
    assert "4 finished deploys" in figures.describe() and "MTTR 32m" in figures.describe()


def test_lead_time_is_the_median_from_commit_to_successful_deploy() -> None:
    hour = timedelta(hours=1)
    records = [
        record(
            id="d-1",
            state=DeployState.SUCCEEDED,
            started_at=NOW - 10 * hour,
            finished_at=NOW - 9 * hour,
            commit_at=NOW - 12 * hour,
        ),  # 3h
        record(
            id="d-2",
            state=DeployState.SUCCEEDED,
            started_at=NOW - 5 * hour,
            finished_at=NOW - 5 * hour,
            commit_at=NOW - 6 * hour,
        ),  # 1h
        record(
            id="d-3",
            state=DeployState.FAILED,
            started_at=NOW - 4 * hour,
            finished_at=NOW - 4 * hour,
            commit_at=NOW - 40 * hour,
        ),  # failed: not a change delivered
        record(id="d-4", state=DeployState.SUCCEEDED, started_at=NOW - hour, finished_at=NOW - hour),  # commit unknown
    ]
    figures = compute_figures(records, NOW)
    assert figures.lead_time == 2 * hour and figures.lead_time_deploys == 2
    assert figures.describe().endswith("lead time 2h (median of 2)")
    assert "lead time" not in compute_figures(records[3:], NOW).describe()
