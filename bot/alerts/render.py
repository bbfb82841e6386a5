"""Block Kit for alerts: the one message an alert group is, with Acknowledge / Resolve / Silence (or, while a
silence made from it holds, who silenced it, until when, and Unsilence), and the Custom… silence form."""

from __future__ import annotations

import json
from datetime import datetime

from bot.alerts.model import AlertGroup, Member, Page, is_chatops_page
from bot.text.blocks import (
    Block,
    actions,
    button,
    channel_link,
    context,
    external_text,
    fields,
    header,
    link,
    plain,
    section,
    static_select,
)
from bot.text.humanize import duration as human_duration

ACK = "alerts.ack"
UNACK = "alerts.unack"
RESOLVE = "alerts.resolve"
SILENCE = "alerts.silence"
UNSILENCE = "alerts.unsilence"
SILENCE_VIEW = "alerts.silence_form"
DECLARE = "incidents.declare_from_alert"
SILENCE_CHOICES = (("Silence 1h", "1h"), ("Silence 4h", "4h"), ("Silence 24h", "24h"), ("Custom…", "custom"))
SEVERITY_EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}


def member_line(member: Member) -> str:
    """One alert in a list: severity, title, the labels that tell it apart, summary, repeat count."""
    emoji = ":white_check_mark:" if member.status == "resolved" else SEVERITY_EMOJI[member.severity]
    service = f" `{external_text(member.labels['service'])}`" if member.labels.get("service") else ""
    instance = f" `{external_text(member.labels['instance'])}`" if member.labels.get("instance") else ""
    repeat = f" (×{member.count})" if member.count > 1 else ""
    summary = f" — {external_text(member.summary[:200])}" if member.summary else ""
    return f"{emoji} *{external_text(member.title)}*{service}{instance}{summary}{repeat}"


def alert_message(group: AlertGroup, *, now: datetime, max_lines: int = 20) -> tuple[str, list[Block]]:
    """The group's message: headline, who acted, its alerts, and the buttons while it fires. External text is
    escaped in the mrkdwn parts and the `text` fallback (which Slack parses too), not in the plain_text header."""
    resolved = group.state == "resolved"
    badge = ":white_check_mark: RESOLVED" if resolved else f"{SEVERITY_EMOJI[group.severity]} {group.severity.upper()}"
    silenced = not resolved and group.silenced(now)
    if silenced:
        badge += " · :no_bell: SILENCED"
    blocks: list[Block] = [header(f"{'✅' if resolved else '🚨'} {group.title}")]
    members = sorted(group.members.values(), key=lambda m: (m.status != "firing", m.title))
    if len(members) == 1:
        only = members[0]
        blocks.append(section(f"{badge}  {external_text(only.summary or only.title)}"))
    else:
        firing = len(group.firing)
        blocks.append(section(f"{badge}  {firing} of {len(members)} firing"))
        lines = [member_line(m) for m in members[:max_lines]]
        if len(members) > max_lines:
            lines.append(f"… and {len(members) - max_lines} more")
        blocks.append(section("\n".join(lines)))
    last_seen = max(m.last_seen for m in members) if members else now
    pairs = [("Started", f"{group.created_at:%Y-%m-%d %H:%M:%S}Z"), ("Last seen", f"{last_seen:%H:%M:%S}Z")]
    repeats = sum(m.count for m in members)
    if repeats > len(members):
        pairs.append(("Notifications", str(repeats)))
    if group.acked_by and group.acked_at:
        took = human_duration(group.acked_at - group.created_at)
        pairs.append(("Acknowledged", f"by {group.acked_by_text} after {took}"))
    if group.pages and not group.acked_by and not resolved:
        last = group.pages[-1]
        who = " ".join(f"<@{user}>" for user in last.targets) or (
            f"PagerDuty `{last.pagerduty}`" if last.pagerduty else _paged_channel(last)
        )
        rounds = f", round {last.round + 1}" if last.round else ""
        ended = " — last step, nobody acknowledged" if group.escalation_state == "exhausted" else ""
        pairs.append(("Paged", f"{who} (step {last.step + 1}{rounds}){ended}"))
    if silenced and group.silenced_until is not None:
        pairs.append(("Silenced", silence_line(group, now)))
    if resolved and group.resolved_at:
        who = f"by {group.resolved_by_text} " if group.resolved_by else ""
        pairs.append(("Resolved", f"{who}after {human_duration(group.resolved_at - group.created_at)}"))
    blocks.append(fields(pairs))
    if not resolved:
        ack = (
            button("Unacknowledge", UNACK, group.id)
            if group.acked_by
            else button("Acknowledge", ACK, group.id, style="primary")
        )
        elements = [
            ack,
            button("Resolve", RESOLVE, group.id),
            button("Unsilence", UNSILENCE, group.id)
            if silenced
            else static_select(
                "Silence…", SILENCE, [(label, f"{group.id}:{value}") for label, value in SILENCE_CHOICES]
            ),
        ]
        if not is_chatops_page(group):  # an incident's own page needs no second incident
            elements.append(button("Declare incident", DECLARE, group.id, style="danger"))
        blocks.append(actions(*elements, block_id=f"alert:{group.id}"))
    notes = [f"`{group.id}`"]
    if len(members) == 1:
        labels = " ".join(f"`{external_text(k)}={external_text(v)}`" for k, v in sorted(members[0].labels.items())[:12])
        if labels:
            notes.append(labels)
        notes.extend(
            link(url, name) for name, url in sorted(members[0].links.items()) if url.startswith(("http://", "https://"))
        )
    blocks.append(context(" · ".join(notes)))
    text = f"{'RESOLVED' if resolved else group.severity.upper()}: {external_text(group.title)}"
    return text, blocks


def _paged_channel(page: Page) -> str:
    """The channel a page went to, linked by the ID Slack answered the post with (DMs are `D…`), else as named."""
    if not page.channel:
        return "nobody"
    posted = next((c for c in page.dms if c[:1] in ("C", "G")), None)
    return channel_link(page.channel, posted)


def silence_line(group: AlertGroup, now: datetime) -> str:
    """ "by @alice until 14:05Z (1h left) · `s-1a2b3c4d`": the date too when the silence ends on another day."""
    until = group.silenced_until or now
    when = f"{until:%H:%M}Z" if until.date() == now.date() else f"{until:%Y-%m-%d %H:%M}Z"
    return f"by <@{group.silenced_by}> until {when} ({human_duration(until - now)} left) · `{group.silence_id}`"


def silence_modal(group: AlertGroup, matchers: str, *, channel: str) -> dict[str, object]:
    """The Custom… silence form: matchers (pre-filled with what the group's alerts share), a duration, a reason."""

    def text_input(block_id: str, label: str, placeholder: str, initial: str = "", hint: str = "") -> dict[str, object]:
        element: dict[str, object] = {
            "type": "plain_text_input",
            "action_id": block_id,
            "max_length": 2000,
            "placeholder": plain(placeholder, 150),
        }
        if initial:
            element["initial_value"] = initial
        block: dict[str, object] = {"type": "input", "block_id": block_id, "label": plain(label), "element": element}
        if hint:
            block["hint"] = plain(hint)
        return block

    return {
        "type": "modal",
        "callback_id": SILENCE_VIEW,
        "title": plain("Silence alerts", 24),
        "submit": plain("Silence", 24),
        "close": plain("Cancel", 24),
        "private_metadata": json.dumps({"channel": channel, "group": group.id}),
        "blocks": [
            section(
                f"Alerts that match every matcher are not posted until the silence ends. From `{group.id}`: "
                f"{external_text(group.title)}"
            ),
            text_input(
                "matchers",
                "Matchers",
                "service=web severity=critical",
                matchers,
                "Separated by spaces: label=value, label!=value, label=~regex, label!~regex.",
            ),
            text_input("duration", "Duration", "2h", "2h", "From 1m to 30d: 30m, 2h, 3d…"),
            text_input("reason", "Reason", "Why, for whoever sees these alerts missing"),
        ],
    }


def page_closed(group: AlertGroup, outcome: str) -> tuple[str, list[Block]]:
    """A page after someone acted on the alert: no buttons, who did what (`outcome` is mrkdwn we built)."""
    text = f"{external_text(group.title)} ({group.id}): {outcome}"
    return text, [header(f"📟 {group.title}"), section(outcome), context(f"`{group.id}`")]
