"""Block Kit for backups: the one message a backup run is (progress, then result, updated in place), a restore
request with its Approve/Reject buttons, and the answers of `/backup list` and `/backup show`. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from bot.backups.model import (
    BackupRecord,
    BackupState,
    DrillRecord,
    RestoreRecord,
    RestoreState,
)
from bot.platform.approvals import rejection_text
from bot.text.blocks import Block, actions, button, context, escape, fields, header, section
from bot.text.humanize import duration as human_duration

APPROVE = "backup.approve"
REJECT = "backup.reject"
CANCEL = "backup.cancel"

BACKUP_LABELS = {
    BackupState.RUNNING: ":hourglass_flowing_sand: Running",
    BackupState.SUCCEEDED: ":white_check_mark: Succeeded",
    BackupState.FAILED: ":x: Failed",
    BackupState.INTERRUPTED: ":warning: Interrupted",
    BackupState.PRUNED: ":wastebasket: Pruned",
}
RESTORE_LABELS = {
    RestoreState.AWAITING_APPROVAL: ":raised_hand: Waiting for approval",
    RestoreState.RUNNING: ":hourglass_flowing_sand: Restoring",
    RestoreState.SUCCEEDED: ":white_check_mark: Restored",
    RestoreState.FAILED: ":x: Failed",
    RestoreState.REJECTED: ":no_entry: Rejected",
    RestoreState.EXPIRED: ":hourglass: Expired",
    RestoreState.CANCELLED: ":heavy_multiplication_x: Cancelled",
    RestoreState.INTERRUPTED: ":warning: Interrupted",
}


def human_bytes(count: float) -> str:
    """`512 B`, `3.4 MiB`, `1.02 GiB`."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"  # pragma: no cover - the loop returns


def progress_text(size: int, elapsed: float, note: str = "") -> str:
    """`1.2 GiB in 42s (29.3 MiB/s)`."""
    rate = size / elapsed if elapsed > 0 else 0.0
    text = f"{human_bytes(size)} in {human_duration(timedelta(seconds=elapsed))} ({human_bytes(rate)}/s)"
    return f"{text}, {note}" if note else text


def backup_message(record: BackupRecord, *, progress: str | None = None) -> tuple[str, list[Block]]:
    """The run's message: state, then progress while running, or id, size, checksum, duration and location."""
    pairs = [("State", BACKUP_LABELS[record.state]), ("Requested by", _who(record.requested_by))]
    if record.state == BackupState.RUNNING and progress:
        pairs.append(("Progress", progress))
    if record.size is not None and record.state != BackupState.RUNNING:
        pairs.append(("Size", human_bytes(record.size)))
    if record.seconds is not None:
        pairs.append(("Duration", human_duration(timedelta(seconds=record.seconds))))
    if record.reason:
        pairs.append(("Reason", escape(record.reason)))
    blocks: list[Block] = [header(f"💾 Backup of {record.target}"), fields(pairs)]
    if record.state == BackupState.SUCCEEDED:
        lines = [f"*Id* `{record.id}`"]
        if record.sha256:
            lines.append(f"*sha256* `{record.sha256}`")
        if record.location:
            lines.append(f"*Stored at* `{escape(record.location)}`")
        if record.encryption:
            lines.append(
                f"*Encrypted* {escape(record.encryption.scheme)}, data key wrapped by "
                f"`{escape(record.encryption.key_ref)}`"
            )
        if record.retain_until:
            lines.append(f"*Object Lock* until {record.retain_until:%Y-%m-%d %H:%M}Z")
        blocks.append(section("\n".join(lines)))
    if record.detail:
        blocks.append(section(escape(record.detail)))
    blocks.append(context(f"`{record.id}` · started {record.created_at:%Y-%m-%d %H:%M:%S}Z"))
    text = f"Backup of {record.target} ({record.id}): {BACKUP_LABELS[record.state].split(' ', 1)[1]}"
    if record.state == BackupState.SUCCEEDED and record.size is not None:
        text += f", {human_bytes(record.size)}"
    return text, blocks


def restore_destination(record: RestoreRecord, *, own_variable: str | None, environ: Mapping[str, str]) -> str:
    """Where a restore writes, plainly: "`appdb_staging` from `STAGING_DB_URL`" (the database, or the Redis
    server, that the variable names; never its credentials), or the new instance of an RDS restore."""
    if record.as_instance:
        return record.destination
    variable = record.into_env or own_variable
    if variable is None:
        return f"`{record.target}`"
    return f"{_place(environ.get(variable, ''))} from `{variable}`"


def _place(url: str) -> str:
    """The database or server a DSN / Redis URL names, without user or password."""
    try:
        parts = urlsplit(url)
        host = f"{parts.hostname}:{parts.port}" if parts.port else (parts.hostname or "")
    except ValueError:  # a malformed port: say nothing rather than echo the value
        return "the server"
    name = parts.path.lstrip("/")
    if parts.scheme.startswith("postgres"):
        return f"`{escape(name)}`" + (f" on `{escape(host)}`" if host else "") if name else "the database"
    if parts.scheme in ("redis", "rediss", "unix"):
        database = f" (db {escape(name)})" if name and name != "0" else ""
        return f"the Redis at `{escape(host or parts.path)}`{database}" if host or parts.path else "the Redis"
    return "the server"


def restore_message(record: RestoreRecord, *, now: datetime, where: str | None = None) -> tuple[str, list[Block]]:
    """The restore request: what into where (`where`: restore_destination's text), approvals, and while waiting
    the buttons."""
    into = where or record.destination
    approvers = ", ".join(f"<@{u}>" for u in record.approved_by) or "none yet"
    pairs = [
        ("State", RESTORE_LABELS[record.state]),
        ("Backup", f"`{record.backup_id}`"),
        ("Into", into),
        ("Requested by", f"<@{record.requested_by}>"),
        (
            "Approvals",
            f"{len(record.approved_by)}/{record.required_approvals} from `{record.approvers_role}`: {approvers}",
        ),
    ]
    if record.reason:
        pairs.append(("Reason", escape(record.reason)))
    blocks: list[Block] = [header(f"♻️ Restore {record.target} from a backup"), fields(pairs)]
    if record.detail:
        rejected = rejection_text(record.decisions) if record.state == RestoreState.REJECTED else None
        blocks.append(section(rejected or escape(record.detail)))
    if record.state == RestoreState.AWAITING_APPROVAL:
        blocks.append(
            section(
                ":information_source: Restoring creates a new instance; nothing existing is overwritten."
                if record.as_instance
                else f":warning: Restoring replaces the data in {into} with the backup's."
            )
        )
        blocks.append(
            actions(
                button("Approve", APPROVE, record.id, style="primary"),
                button("Reject", REJECT, record.id, style="danger"),
                button("Cancel", CANCEL, record.id),
                block_id=f"restore:{record.id}",
            )
        )
    notes = [f"`{record.id}`"]
    if record.state == RestoreState.AWAITING_APPROVAL:
        notes.append(f"expires in {human_duration(record.expires_at - now)}")
    for decision in record.decisions:
        notes.append(f"{decision.decision}d by <@{decision.user}> at {decision.at:%H:%M:%S}Z")
    blocks.append(context(" · ".join(notes)))
    return (
        f"Restore of {record.target} from {record.backup_id}: {RESTORE_LABELS[record.state].split(' ', 1)[1]}",
        blocks,
    )


def list_message(target: str, records: Sequence[BackupRecord]) -> tuple[str, list[Block]]:
    """`/backup list`: good backups newest first, and the recent failed or interrupted runs apart."""
    good = [r for r in records if r.good]
    bad = [r for r in records if r.state in (BackupState.FAILED, BackupState.INTERRUPTED)]
    lines = [_line(r) for r in good]
    body = "\n".join(lines) if lines else f"No backups of `{target}` yet. Make one with `/backup run {target}`."
    blocks: list[Block] = [header(f"Backups of {target}"), section(body)]
    text = f"Backups of {target}:\n{body}"
    if bad:
        failed = "\n".join(
            f"{BACKUP_LABELS[r.state].split(' ')[0]} `{r.id}` {r.created_at:%Y-%m-%d %H:%M}Z: {escape(r.detail)[:200]}"
            for r in bad
        )
        blocks.append(context(f"Runs that made no backup:\n{failed}"))
        text += f"\nRuns that made no backup:\n{failed}"
    return text, blocks


def _line(r: BackupRecord) -> str:
    verified = ""
    if r.last_verification is not None:
        verified = " · verified ✓" if r.last_verification.ok else " · verification FAILED"
    size = human_bytes(r.size) if r.size is not None else "?"
    return f"`{r.id}` {r.created_at:%Y-%m-%d %H:%M}Z {size} by {_who(r.requested_by)}{verified}"


def show_message(record: BackupRecord) -> tuple[str, list[Block]]:
    """`/backup show`: everything recorded about one backup."""
    pairs = [
        ("Target", f"`{record.target}`"),
        ("State", BACKUP_LABELS[record.state]),
        ("Started", f"{record.created_at:%Y-%m-%d %H:%M:%S}Z"),
        ("Requested by", _who(record.requested_by)),
    ]
    if record.size is not None:
        pairs.append(("Size", human_bytes(record.size)))
    if record.seconds is not None:
        pairs.append(("Duration", human_duration(timedelta(seconds=record.seconds))))
    if record.reason:
        pairs.append(("Reason", escape(record.reason)))
    lines = []
    if record.sha256:
        lines.append(f"*sha256* `{record.sha256}`")
    if record.location:
        lines.append(f"*Stored at* `{escape(record.location)}`")
    if record.detail:
        lines.append(escape(record.detail))
    for v in record.verifications:
        lines.append(f"{'✅' if v.ok else '❌'} verified {v.at:%Y-%m-%d %H:%M}Z by {_who(v.by)}: {escape(v.detail)}")
    blocks: list[Block] = [header(f"Backup {record.id}"), fields(pairs)]
    if lines:
        blocks.append(section("\n".join(lines)))
    text = f"Backup {record.id} of {record.target}: {record.state.value}\n" + "\n".join(lines)
    return text, blocks


def _who(user: str) -> str:
    return user if not user.startswith(("U", "W")) else f"<@{user}>"


def _seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value * 1000:.0f}ms" if value < 1 else human_duration(timedelta(seconds=round(value)))


def drill_text(record: DrillRecord) -> str:
    """One drill in a line: outcome, restore time against the RTO, backup age (the RPO then), checks."""
    mark = ":white_check_mark:" if record.good else (":warning:" if record.ok else ":x:")
    rto = ""
    if record.rto_seconds is not None and record.restore_seconds is not None:
        rto = f" ({'within' if record.within_rto else 'OVER'} the RTO of {_seconds(record.rto_seconds)})"
    age = f" · backup age {_seconds(record.backup_age_seconds)}" if record.backup_age_seconds is not None else ""
    checks = "; ".join(
        f"{'✓' if c.ok else '✗'} {escape(c.label)} = {c.value if c.value is not None else escape(c.detail)}"
        for c in record.checks
    )
    return (
        f"{mark} DR drill `{record.id}` of `{record.target}` from `{record.backup_id or 'no backup'}`: restore "
        f"{_seconds(record.restore_seconds)}{rto}{age}. {escape(record.detail)}"
        + (f" Checks: {checks}" if checks else "")
    )


def drills_message(target: str | None, records: Sequence[DrillRecord]) -> tuple[str, list[Block]]:
    """`/backup drills [target]`: the last drills, pass/fail, and the restore-time trend (oldest to newest)."""
    title = f"DR drills of {target}" if target else "DR drills"
    if not records:
        body = f"No drills yet. Run one with `/backup drill {target or '<target>'}` or set `verify_schedule`."
        return f"{title}: {body}", [header(title), section(body)]
    lines = []
    for r in records:
        state = "pass" if r.good else ("over RTO" if r.ok else "FAIL")
        rto = f" / RTO {_seconds(r.rto_seconds)}" if r.rto_seconds is not None else ""
        lines.append(
            f"{'✅' if r.good else '❌'} {r.started_at:%Y-%m-%d %H:%M}Z `{r.target}` {state}: restore "
            f"{_seconds(r.restore_seconds)}{rto} · backup age {_seconds(r.backup_age_seconds)}"
            + ("" if r.good else f" · {escape(r.detail)[:150]}")
        )
    trend_parts = []
    for name in sorted({r.target for r in records}):
        times = [_seconds(r.restore_seconds) for r in reversed(records) if r.target == name]
        trend_parts.append(f"`{name}`: {' → '.join(times)}")
    trend = "Restore time, oldest to newest: " + " · ".join(trend_parts)
    body = "\n".join(lines)
    return f"{title}:\n{body}\n{trend}", [header(title), section(body), context(trend)]


def dr_status_lines(
    rows: Sequence[tuple[str, datetime | None, timedelta | None, DrillRecord | None, timedelta | None]], now: datetime
) -> list[str]:
    """`/status`: per target, the last good backup's age against the RPO and the last drill's restore time
    against the RTO. Each row: (target, last good backup, rpo, last drill, rto)."""
    lines = []
    for target, last_good, rpo, drill, rto in rows:
        if last_good is None:
            backup = "no good backup yet"
            bad = rpo is not None
        else:
            age = now - last_good
            bad = rpo is not None and age > rpo
            backup = f"last good backup {human_duration(age)} ago" + (f" (RPO {human_duration(rpo)})" if rpo else "")
        if drill is None:
            drilled = "no drill yet" if rto is not None else ""
        elif not drill.ok:
            drilled, bad = f"last drill FAILED {drill.started_at:%Y-%m-%d}", True
        else:
            drilled = f"last drill restored in {_seconds(drill.restore_seconds)}" + (
                f" (RTO {human_duration(rto)})" if rto else ""
            )
            bad = bad or drill.within_rto is False
        # Nothing to judge yet is not healthy: grey, as /status marks a service without a health check.
        mark = ":red_circle:" if bad else ":white_circle:" if last_good is None else ":large_green_circle:"
        lines.append(f"{mark} *{escape(target)}* — {backup}" + (f" · {drilled}" if drilled else ""))
    return lines
