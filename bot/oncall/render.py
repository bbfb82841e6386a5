"""Block Kit for paging: the DM (or channel post) a page is, with Acknowledge and Resolve (what it becomes once
someone acted is the alert pipeline's: `bot.alerts.render.page_closed`)."""

from __future__ import annotations

from datetime import datetime

from bot.alerts.model import AlertGroup
from bot.alerts.render import ACK, RESOLVE, SEVERITY_EMOJI
from bot.text.blocks import (
    Block,
    actions,
    button,
    channel_link,
    context,
    external_text,
    header,
    section,
)
from bot.text.humanize import duration as human_duration


def page_message(
    group: AlertGroup, *, step_text: str, reason: str, now: datetime, mention: str = ""
) -> tuple[str, list[Block]]:
    """A page: what fires, since when, why you, and the buttons."""
    emoji = SEVERITY_EMOJI.get(group.severity, ":rotating_light:")
    firing = group.firing
    summary = firing[0].summary if len(firing) == 1 and firing[0].summary else ""
    where = channel_link(group.message_channel or group.channel)
    lead = f"{mention} " if mention else ""
    text = f"{lead}Paged: {group.severity.upper()} {external_text(group.title)} ({group.id})"
    blocks: list[Block] = [
        header(f"📟 {group.title}"),
        section(
            f"{lead}{emoji} *{group.severity.upper()}* for {human_duration(now - group.created_at)} in {where}"
            + (f"\n{external_text(summary)}" if summary else "")
        ),
        context(f"`{group.id}` · {external_text(step_text)} · {external_text(reason)}"),
        actions(
            button("Acknowledge", ACK, group.id, style="primary"),
            button("Resolve", RESOLVE, group.id),
            block_id=f"page:{group.id}",
        ),
    ]
    return text, blocks
