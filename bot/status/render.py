"""Block Kit for /status: the one-message overview with its Refresh button, and the headline rule."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.status.service import Checked
from bot.text.blocks import Block, actions, button, context, escape, header, section
from bot.text.humanize import duration
from bot.text.humanize import duration as human_duration

REFRESH = "status.refresh"
STATE_EMOJI = {
    "up": ":large_green_circle:",
    "slow": ":large_yellow_circle:",
    "down": ":red_circle:",
    "timeout": ":red_circle:",
}


@dataclass(frozen=True)
class Overview:
    """Everything the overview shows, gathered by the command."""

    checked: Sequence[Checked]
    running: dict[str, str] = field(default_factory=dict)  # target name -> "`v1.2` by <@U> 3h ago"
    activity: dict[str, str] = field(default_factory=dict)  # target name -> locks and deploys in progress
    unprobed: Sequence[str] = ()  # service environments without a health check, with their version line
    incidents: Sequence[str] = ()
    alerts_by_severity: dict[str, int] = field(default_factory=dict)
    on_call: Sequence[str] = ()
    checked_at: datetime | None = None
    took_seconds: float = 0.0
    public: Sequence[str] = ()  # the public status page's component lines (the same data the page shows)


def headline(overview: Overview) -> tuple[str, str]:
    """("down" | "degraded" | "all good", the header text): down when a target does not answer right, degraded
    when one is slow or a critical alert fires or an incident is open."""
    states = {item.state for item in overview.checked}
    if states & {"down", "timeout"}:
        return "down", "🔴 Down"
    if "slow" in states or overview.alerts_by_severity.get("critical") or overview.incidents:
        return "degraded", "🟡 Degraded"
    return "all good", "🟢 All good"


def overview_message(overview: Overview) -> tuple[str, list[Block]]:
    """The /status message."""
    word, title = headline(overview)
    lines = []
    for item in overview.checked:
        extra = " · ".join(
            part
            for part in (overview.running.get(item.target.name, ""), overview.activity.get(item.target.name, ""))
            if part
        )
        more = f" · {extra}" if extra else ""
        lines.append(f"{STATE_EMOJI[item.state]} *{escape(item.target.name)}* — {escape(item.text)}{more}")
    lines += list(overview.unprobed)
    blocks: list[Block] = [header(f"Status: {title}")]
    blocks.append(
        section("\n".join(lines) if lines else "Nothing to probe: add `health:` to an environment or `status.probes`.")
    )
    alerts = (
        ", ".join(f"{count} {severity}" for severity, count in sorted(overview.alerts_by_severity.items()) if count)
        or "none"
    )
    # More than one incident: a bulleted list, so the second starts under the first, not under the label.
    incidents = (
        "".join(f"\n• {line}" for line in overview.incidents)
        if len(overview.incidents) > 1
        else (f" {overview.incidents[0]}" if overview.incidents else " none")
    )
    on_call = " · ".join(overview.on_call) if overview.on_call else "no rotations"
    blocks.append(section(f"*Incidents:*{incidents}\n*Alerts firing:* {alerts}\n*On call:* {on_call}"))
    if overview.public:
        blocks.append(section("*Public status page:* " + " · ".join(escape(line) for line in overview.public)))
    blocks.append(actions(button("Refresh", REFRESH, "all"), block_id="status"))
    when = f"{overview.checked_at:%H:%M:%S} UTC" if overview.checked_at else "now"
    took = duration(timedelta(seconds=overview.took_seconds))
    blocks.append(context(f"Checked {when} in {took} · `/status &lt;service&gt;` for details · `/status slo`"))
    down = sum(item.state in ("down", "timeout") for item in overview.checked)
    answering = f"{len(overview.checked) - down}/{len(overview.checked)} answering"
    text = f"Status: {word} ({answering}; alerts {alerts}; incidents {len(overview.incidents)})"
    return text, blocks


def deploy_line(version: str | None, by: str | None, when: datetime | None, now: datetime) -> str:
    """ "`v1.4.2` by <@U> 3h ago" (or what is known of it)."""
    if version is None:
        return "no version deployed by chatops"
    who = f" by <@{by}>" if by else ""
    ago = f" {human_duration(now - when)} ago" if when else ""
    return f"`{escape(version)}`{who}{ago}"
