"""Approval decisions shared by everything that needs N distinct approvers before it runs (deploys, rollbacks,
backup restores): who may approve, whether a click is a duplicate, and whether it completes the count. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict


class Decision(BaseModel):
    """One approval or rejection: who, when."""

    model_config = ConfigDict(frozen=True)

    user: str
    at: datetime
    decision: Literal["approve", "reject"]


def approved_by(decisions: Sequence[Decision]) -> tuple[str, ...]:
    """The distinct users who approved, in order."""
    return tuple(dict.fromkeys(d.user for d in decisions if d.decision == "approve"))


def rejection_text(decisions: Sequence[Decision]) -> str | None:
    """ "Rejected by <@U…>." as mrkdwn for a rejected request (the stored detail is plain text, escaped when shown)."""
    rejecter = next((d.user for d in reversed(decisions) if d.decision == "reject"), None)
    return f"Rejected by <@{rejecter}>." if rejecter else None


@dataclass(frozen=True)
class ApprovalCheck:
    """The outcome of a click on Approve: refused with a reason, already counted, or counted (and maybe enough)."""

    refusal: str | None = None
    duplicate: bool = False
    enough: bool = False


@dataclass(frozen=True)
class Approvable:
    """What an approval decision needs to know about a request, whatever it asks for."""

    noun: str  # "deploy", "restore": used in refusals
    waiting: bool  # still awaiting approval
    state_label: str  # "succeeded", "rejected"… when it is not waiting
    requested_by: str
    approvers_role: str | None
    allow_self_approval: bool
    required_approvals: int
    approved_by: tuple[str, ...]


def check_approval(request: Approvable, user: str, *, is_approver: bool) -> ApprovalCheck:
    """Whether `user` may approve `request` now, and whether their approval completes it."""
    if not request.waiting:
        return ApprovalCheck(refusal=f"This request is already {request.state_label}.")
    if not is_approver:
        return ApprovalCheck(refusal=f"Only members of `{request.approvers_role}` can approve this {request.noun}.")
    if user == request.requested_by and not request.allow_self_approval:
        return ApprovalCheck(refusal=f"You requested this {request.noun}; someone else has to approve it.")
    if user in request.approved_by:
        return ApprovalCheck(duplicate=True)
    return ApprovalCheck(enough=len(request.approved_by) + 1 >= request.required_approvals)
