"""Block Kit and text for incidents, as pure functions: the pinned summary, the announce-channel message, timeline
lines, list lines, the declare modal and the figures in replies."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from bot.alerts.model import AlertGroup
from bot.incidents.config import IncidentsSection
from bot.incidents.model import Incident, TimelineEntry
from bot.text.blocks import (
    Block,
    clip,
    context,
    external_text,
    fields,
    header,
    mrkdwn,
    plain,
    section,
)
from bot.text.blocks import user_text as blocks_user_text
from bot.text.humanize import duration as human_duration

DECLARE_VIEW = "incidents.declare"
STATUS_EMOJI = {
    "investigating": ":mag:",
    "identified": ":bulb:",
    "monitoring": ":eyes:",
    "resolved": ":white_check_mark:",
}
KIND_EMOJI = {
    "declared": ":rotating_light:",
    "update": ":speech_balloon:",
    "status": ":arrows_counterclockwise:",
    "severity": ":warning:",
    "commander": ":crown:",
    "role": ":bust_in_silhouette:",
    "note": ":memo:",
    "page": ":pager:",
    "escalation": ":alarm_clock:",
    "resolved": ":white_check_mark:",
    "alert": ":link:",
    "public": ":globe_with_meridians:",
    "statuspage": ":satellite_antenna:",
}


def user_text(text: str) -> str:
    """People's text (updates, notes, resolutions, and timeline lines that carry our own `<@U…>` mentions) made
    safe for mrkdwn: the one rule, `bot.text.blocks.user_text`."""
    return blocks_user_text(text)


def _headline(incident: Incident) -> str:
    """`INC-7 SEV2 investigating: <title>` as markup, for `text` fallbacks and the topic."""
    return f"{incident.id} {incident.severity.upper()} {incident.status}: {external_text(incident.title)}"


def channel_link(incident: Incident) -> str:
    """`<#C…>` once the channel exists, its name before."""
    return f"<#{incident.channel_id}>" if incident.channel_id else f"#{incident.channel_name}"


def topic(incident: Incident, commander_name: str | None = None) -> str:
    """The incident channel's topic (Slack allows 250 characters). Topics show mentions as typed, so the commander
    is named by `commander_name`, their display name."""
    commander = f" · IC {commander_name or incident.commander}" if incident.commander else " · no commander yet"
    return clip(_headline(incident), 200) + commander


def _figures(incident: Incident, now: datetime) -> list[tuple[str, str]]:
    pairs = [
        ("Severity", incident.severity.upper()),
        ("Status", f"{STATUS_EMOJI[incident.status]} {incident.status}"),
        ("Commander", f"<@{incident.commander}>" if incident.commander else "_nobody yet_: `/incident commander @you`"),
        ("Started", f"{incident.declared_at:%Y-%m-%d %H:%M}Z by <@{incident.declared_by}>"),
    ]
    if incident.roles:
        pairs.append(
            ("Roles", ", ".join(f"{external_text(name)}: <@{user}>" for name, user in sorted(incident.roles.items())))
        )
    if incident.service:
        pairs.append(("Service", f"`{external_text(incident.service)}`"))
    if incident.resolved_at is not None:
        took = human_duration(incident.resolved_at - incident.declared_at)
        pairs.append(("Resolved", f"{incident.resolved_at:%Y-%m-%d %H:%M}Z after {took}"))
    else:
        pairs.append(("Open for", human_duration(now - incident.declared_at)))
    return pairs


def summary_message(incident: Incident, *, now: datetime, announce_link: str = "") -> tuple[str, list[Block]]:
    """The message pinned in the incident channel, updated on every change."""
    blocks: list[Block] = [header(f"{incident.id}: {incident.title}"), fields(_figures(incident, now))]
    if incident.last_update:
        blocks.append(section(f"*Latest update*\n{user_text(incident.last_update)}"))
    if incident.resolution:
        blocks.append(section(f"*Resolution*\n{user_text(incident.resolution)}"))
    links = []
    if announce_link:
        links.append(f"<{announce_link}|announcement>")
    if incident.alert_ids:
        links.append("alerts " + ", ".join(f"`{a}`" for a in incident.alert_ids))
    if incident.page_ids:
        links.append("pages " + ", ".join(f"`{p}`" for p in incident.page_ids))
    links.append("`/incident update &lt;text&gt;` · `/incident timeline` · `/incident postmortem`")
    blocks.append(context(" · ".join(links)))
    return _headline(incident), blocks


def announce_message(incident: Incident, *, now: datetime) -> tuple[str, list[Block]]:
    """The top message in the announce channel (one per incident; updates go in its thread)."""
    emoji = STATUS_EMOJI[incident.status] if not incident.open else ":rotating_light:"
    blocks: list[Block] = [
        section(
            f"{emoji} *{incident.id} {incident.severity.upper()}* — {external_text(incident.title)}\n"
            f"Status: *{incident.status}* · join {channel_link(incident)}"
        ),
        fields(_figures(incident, now)),
    ]
    if incident.last_update:
        blocks.append(context(f"Latest: {user_text(incident.last_update[:300])}"))
    return _headline(incident), blocks


def entry_line(entry: TimelineEntry) -> str:
    """One timeline entry as a Slack line: time, who, what."""
    by = f"<@{entry.by}>" if entry.by and entry.by != "chatops" else "chatops"
    author = f" (message by <@{entry.author}>)" if entry.author and entry.author != entry.by else ""
    label = "public update: " if entry.kind == "public" else ""
    return f"{KIND_EMOJI.get(entry.kind, '•')} `{entry.at:%H:%M:%S}Z` {by}{author}: {label}{user_text(entry.text)}"


def timeline_text(incident: Incident, entries: Sequence[TimelineEntry], limit: int = 60) -> str:
    """The timeline for `/incident timeline` (the newest `limit` entries)."""
    shown = list(entries)[-limit:]
    more = f"_… {len(entries) - limit} earlier entries: see `/incident postmortem`_\n" if len(entries) > limit else ""
    return f"*{incident.id} timeline*\n" + more + "\n".join(entry_line(e) for e in shown)


def list_line(incident: Incident, now: datetime) -> str:
    """One incident in `/incident list` and in the on-call hand-off."""
    age = human_duration((incident.resolved_at or now) - incident.declared_at)
    commander = f"IC <@{incident.commander}>" if incident.commander else "no commander"
    return (
        f"{STATUS_EMOJI[incident.status]} *{incident.id}* {incident.severity.upper()} "
        f"{external_text(incident.title)} — "
        f"{incident.status}, {commander}, {age} · {channel_link(incident)}"
    )


def declare_modal(
    config: IncidentsSection,
    *,
    title: str = "",
    severity: str = "",
    service: str = "",
    metadata: dict[str, object] | None = None,
) -> dict[str, object]:
    """The Declare incident modal, optionally pre-filled (from an alert)."""
    options = [
        {"text": plain(f"{name.upper()}: {spec.description}", 75), "value": name}
        for name, spec in config.severities.items()
    ]
    severity_element: dict[str, object] = {
        "type": "static_select",
        "action_id": "severity",
        "options": options,
        "placeholder": plain("How bad is it?", 150),
    }
    chosen = next((option for option in options if option["value"] == severity), None)
    if chosen is not None:
        severity_element["initial_option"] = chosen
    title_element: dict[str, object] = {
        "type": "plain_text_input",
        "action_id": "title",
        "max_length": 150,
        "placeholder": plain("What is broken, for whom?", 150),
    }
    if title:
        title_element["initial_value"] = title[:150]
    service_element: dict[str, object] = {"type": "plain_text_input", "action_id": "service", "max_length": 60}
    if service:
        service_element["initial_value"] = service[:60]
    return {
        "type": "modal",
        "callback_id": DECLARE_VIEW,
        "title": plain("Declare an incident", 24),
        "submit": plain("Declare", 24),
        "close": plain("Cancel", 24),
        "private_metadata": json.dumps(metadata or {}),
        "blocks": [
            {"type": "input", "block_id": "title", "label": plain("Title"), "element": title_element},
            {"type": "input", "block_id": "severity", "label": plain("Severity"), "element": severity_element},
            {
                "type": "input",
                "block_id": "service",
                "label": plain("Service"),
                "element": service_element,
                "optional": True,
            },
            {
                "type": "input",
                "block_id": "public",
                "optional": True,
                "label": plain("Public status"),
                "element": {
                    "type": "checkboxes",
                    "action_id": "public",
                    "options": [{"text": plain("Post publicly", 75), "value": "yes"}],
                },
            },
            {
                "type": "input",
                "block_id": "public_text",
                "optional": True,
                "label": plain("Public message"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": "public_text",
                    "multiline": True,
                    "max_length": 3000,
                    "placeholder": plain("What customers see: no names, no internal details", 150),
                },
            },
            {
                "type": "context",
                "elements": [
                    mrkdwn("Declaring opens a channel, pages the on-call people of the severity and announces it.")
                ],
            },
        ],
    }


def durations(incident: Incident) -> str:
    """ "commander after 4m, resolved after 1h 2m" for the resolve reply."""
    parts = []
    if incident.commander_at:
        parts.append(f"commander after {human_duration(incident.commander_at - incident.declared_at)}")
    else:
        parts.append("no commander was named")
    if incident.resolved_at:
        parts.append(f"resolved after {human_duration(incident.resolved_at - incident.declared_at)}")
    return ", ".join(parts)


def page_acks(groups: Sequence[AlertGroup]) -> str:
    """Who acknowledged the incident's pages, for replies."""
    return ", ".join(f"`{g.id}` by <@{g.acked_by}>" for g in groups if g.acked_by) or "not acknowledged"
