"""Block Kit helpers: usage placeholders survive Slack's mrkdwn, Slack's own markup is left alone."""

from __future__ import annotations

from bot.text.blocks import show_placeholders
from commands.framework import Reply


def test_placeholders_are_escaped_and_slack_markup_is_not() -> None:
    text = (
        "`/oncall schedule <rotation>` for <@U1|al> in <#C1|general>, <!here>, <https://x.example/a|docs> until <time>"
    )
    assert show_placeholders(text) == (
        "`/oncall schedule &lt;rotation&gt;` for <@U1|al> in <#C1|general>, <!here>, <https://x.example/a|docs> until "
        "&lt;time&gt;"
    )


def test_replies_show_placeholders_in_mrkdwn_but_not_in_plain_text() -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "<title>"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "`/status <service>`"}], "block_id": "<keep>"},
    ]
    reply = Reply(text="see `/alerts ack <id>`", blocks=blocks)
    assert reply.text == "see `/alerts ack &lt;id&gt;`"
    assert reply.blocks == [
        {"type": "header", "text": {"type": "plain_text", "text": "<title>"}},
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": "`/status &lt;service&gt;`"}],
            "block_id": "<keep>",
        },
    ]
