"""Block Kit for deploys: the one message a deploy is (updated in place), and the history and status answers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from bot.deploys.figures import Figures
from bot.deploys.model import AnalysisView, DeployRecord, DeployState, StepProgress
from bot.platform.approvals import rejection_text
from bot.text.blocks import (
    Block,
    actions,
    button,
    context,
    escape,
    fields,
    header,
    link,
    section,
)
from bot.text.humanize import duration as human_duration

APPROVE = "deploy.approve"
REJECT = "deploy.reject"
CANCEL = "deploy.cancel"

STATE_LABELS = {
    DeployState.REQUESTED: (":hourglass_flowing_sand:", "Requested"),
    DeployState.AWAITING_APPROVAL: (":raised_hand:", "Waiting for approval"),
    DeployState.RUNNING: (":rocket:", "Running"),
    DeployState.VERIFYING: (":stethoscope:", "Verifying health"),
    DeployState.SUCCEEDED: (":white_check_mark:", "Succeeded"),
    DeployState.FAILED: (":x:", "Failed"),
    DeployState.ROLLED_BACK: (":rewind:", "Rolled back"),
    DeployState.REJECTED: (":no_entry:", "Rejected"),
    DeployState.EXPIRED: (":hourglass:", "Expired"),
    DeployState.CANCELLED: (":heavy_multiplication_x:", "Cancelled"),
    DeployState.INTERRUPTED: (":warning:", "Interrupted"),
}


def state_label(state: DeployState) -> str:
    """Emoji and words for a state."""
    emoji, words = STATE_LABELS[state]
    return f"{emoji} {words}"


def steps_text(record: DeployRecord) -> str:
    """`10% → *50%* → 100%`, the current step in bold while running."""
    if record.steps == (None,):
        return "all at once"
    parts = []
    for index, weight in enumerate(record.steps):
        label = f"{weight}%"
        running = record.state in (DeployState.RUNNING, DeployState.VERIFYING)
        parts.append(f"*{label}*" if running and index == record.step_index else label)
    return " → ".join(parts)


def title(record: DeployRecord) -> str:
    """One line naming what the deploy does."""
    if record.kind == "rollback":
        return f"Rollback {record.service} to {record.version} in {record.environment}"
    return f"Deploy {record.service} {record.version} to {record.environment}"


def deploy_message(record: DeployRecord, *, now: datetime, checklist: Sequence[str] = ()) -> tuple[str, list[Block]]:
    """The deploy's message: plan, state, approvals and, while waiting, the Approve/Reject/Cancel buttons."""
    versions = f"{record.previous_version or '(none)'} → *{record.version}*"
    pairs = [
        ("State", state_label(record.state)),
        ("Versions", versions),
        ("Requested by", f"<@{record.requested_by}>"),
        ("Steps", steps_text(record)),
    ]
    if record.required_approvals:
        approvers = ", ".join(f"<@{u}>" for u in record.approved_by) or "none yet"
        pairs.append(("Approvals", f"{len(record.approved_by)}/{record.required_approvals}: {approvers}"))
    if record.reason:
        pairs.append(("Reason", escape(record.reason)))
    if record.started_at is not None:
        end = record.finished_at or now
        pairs.append(("Elapsed", human_duration(end - record.started_at)))
    if record.external_url:
        pairs.append(("Run", link(record.external_url, record.external_id or record.external_url)))
    blocks: list[Block] = [header(("⏪ " if record.kind == "rollback" else "🚀 ") + title(record)), fields(pairs)]
    blocks.extend(section(progress_text(step)) for step in record.progress)
    if record.analysis is not None:
        blocks.append(section(analysis_text(record.analysis)))
    if record.detail:
        rejected = rejection_text(record.decisions) if record.state == DeployState.REJECTED else None
        blocks.append(section(rejected or escape(record.detail)))
    if record.state == DeployState.AWAITING_APPROVAL:
        if checklist:
            blocks.append(section("*Before approving*\n" + "\n".join(f"• {escape(item)}" for item in checklist)))
        blocks.append(
            actions(
                button("Approve", APPROVE, record.id, style="primary"),
                button("Reject", REJECT, record.id, style="danger"),
                button("Cancel", CANCEL, record.id),
                block_id=f"deploy:{record.id}",
            )
        )
    notes = [f"`{record.id}`"]
    if record.forced:
        notes.append(":warning: forced past a freeze or lock")
    if record.state == DeployState.AWAITING_APPROVAL and record.expires_at is not None:
        notes.append(f"expires in {human_duration(record.expires_at - now)}")
    for decision in record.decisions:
        verb = "approved" if decision.decision == "approve" else "rejected"
        notes.append(f"{verb} by <@{decision.user}> at {decision.at:%H:%M:%S}Z")
    if record.cancelled_by:
        notes.append(f"cancelled by <@{record.cancelled_by}>")
    blocks.append(context(" · ".join(notes)))
    text = f"{title(record)}: {STATE_LABELS[record.state][1]}"
    return text, blocks


_LINE_ERROR_CHARS = 150
_MARKS_SHOWN = 20

PROGRESS_LABELS = {
    "running": ":hourglass_flowing_sand: running",
    "checking": ":stethoscope: health checks",
    "passed": ":white_check_mark: done",
    "failed": ":x: failed",
}


def health_line(step: StepProgress) -> str:
    """The health checks of a step as one compact line: `✓✓✓ 200 in 4–8 ms`, `✓✗ 200 in 5 ms · last: refused`."""
    if not step.marks:
        return ""
    marks = step.marks if len(step.marks) <= _MARKS_SHOWN else "…" + step.marks[-_MARKS_SHOWN:]
    parts = [marks]
    if step.fastest_ms is not None and step.slowest_ms is not None:
        # Whole milliseconds: a local answer in 0.4 ms reads "<1 ms", never "0 ms".
        fastest, slowest = max(1, round(step.fastest_ms)), round(step.slowest_ms)
        spread = "<1" if step.slowest_ms < 1 else str(slowest) if fastest >= slowest else f"{fastest}–{slowest}"
        parts.append(f"{step.status} in {spread} ms")
    if step.error and step.marks.endswith("✗"):
        error = step.error if len(step.error) <= _LINE_ERROR_CHARS else step.error[: _LINE_ERROR_CHARS - 1] + "…"
        parts.append(f"· last: {error}" if step.fastest_ms is not None else error)
    return " ".join(parts)


def progress_text(step: StepProgress) -> str:
    """A step's block in the deploy message: its state, what the provider said and its health checks."""
    lines = [f"*{escape(step.label[:1].upper() + step.label[1:])}* · {PROGRESS_LABELS[step.state]}"]
    if step.summary:
        lines.append(escape(step.summary))
    checks = health_line(step)
    if checks:
        lines.append(f"Health: {escape(checks)}")
    return "\n".join(lines)


def failure_advice(record: DeployRecord) -> str:
    """What to do after a deploy failed and was not rolled back automatically, only when it leads somewhere:
    `/rollback` goes back from the last *successful* version, never to it, so it cannot undo a failed deploy."""
    previous = record.previous_version
    if previous is None:
        return ""
    if not record.went_live:
        nothing = ": there is nothing to roll back" if record.kind == "deploy" else ""
        return f"`{previous}` was never replaced and is still running{nothing}."
    if record.kind == "deploy":
        return (
            f"`{record.version}` may be partly live. To put `{previous}` back: "
            f"`/deploy {record.service} {previous} to {record.environment}`."
        )
    return ""


def analysis_text(view: AnalysisView) -> str:
    """The metric gate of the baking step: a heading and one line per metric, edited in place on every check."""
    every = human_duration(timedelta(seconds=view.interval_seconds))
    if view.verdict == "running":
        where = f"check {view.checks_done} of {view.checks}, every {every}"
    else:
        where = f"{view.verdict} after {view.checks_done} of {view.checks} checks"
    lines = [f"*Metric gate* · {escape(view.step)} · {where}"]
    for line in view.lines:
        name = f"*{escape(line.name)}*"
        if line.value is None:
            lines.append(f":hourglass_flowing_sand: {name} waiting for the first check")
            continue
        mark = ":white_check_mark:" if line.ok else ":x:"
        text = f"{mark} {name} {escape(line.value)}"
        if line.limit:
            text += f" (limit: {escape(line.limit)})"
        if line.error and line.error != line.value:
            error = line.error if len(line.error) <= _LINE_ERROR_CHARS else line.error[: _LINE_ERROR_CHARS - 1] + "…"
            text += f" · {escape(error)}"
        if line.failures:
            text += f" · {line.failures}/{view.failure_limit} failed"
        lines.append(text)
    return "\n".join(lines)


def history_message(service: str, records: Sequence[DeployRecord], figures: Figures) -> tuple[str, list[Block]]:
    """`/deploy history`: the newest deploys and the delivery figures."""
    lines = []
    for r in records:
        took = f" in {human_duration(r.finished_at - r.started_at)}" if r.finished_at and r.started_at else ""
        approvers = f", approved by {', '.join(f'<@{u}>' for u in r.approved_by)}" if r.approved_by else ""
        lines.append(
            f"{STATE_LABELS[r.state][0]} `{r.id}` {r.created_at:%Y-%m-%d %H:%M}Z *{r.environment}* "
            f"{'rollback to ' if r.kind == 'rollback' else ''}{r.previous_version or '∅'} → {r.version} "
            f"by <@{r.requested_by}>{approvers}{took}"
        )
    body = "\n".join(lines) if lines else "No deploys yet."
    stats = figures.describe()
    return f"Deploy history of {service}:\n{body}\n{stats}", [
        header(f"Deploy history: {service}"),
        section(body),
        context(stats),
    ]
