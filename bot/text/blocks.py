"""Block Kit builders: small pure functions that return Slack's JSON shapes, clipped to Slack's size limits."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal

Block = dict[str, Any]

SECTION_TEXT_LIMIT = 3000
HEADER_TEXT_LIMIT = 150
BUTTON_TEXT_LIMIT = 75
FIELD_TEXT_LIMIT = 2000
CONTEXT_ELEMENTS_LIMIT = 10


def clip(text: str, limit: int) -> str:
    """Shortens text to `limit` characters, marking the cut (never inside an `&amp;`-style entity)."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&", max(0, len(cut) - 4))
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]  # half an entity would show as `&am…`
    return cut + "…"


def external_text(text: str) -> str:
    """External text (alert titles, labels, summaries, what people typed) made safe for any Slack field parsed as
    markup: mrkdwn text objects and the top-level `text` of a message. &, < and > become entities, once, so Slack
    shows the text as written and never reads a mention, a broadcast (`<!channel>`) or a link in it. Not for
    plain_text fields (headers, buttons, options): Slack shows those literally, entities included."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# The same rule under its older, shorter name, which modules outside this change still use.
escape = external_text

# A person or channel mention, once escaped; never a broadcast (`<!here>`, `<!channel>`, `<!subteam^…>`).
_ESCAPED_MENTION = re.compile(r"&lt;([@#][UWCG][A-Z0-9]+)(?:\|[^&]*)?&gt;")


def user_text(text: str) -> str:
    """Text people wrote, or our own text naming people (`<@U…>`), made safe like `external_text` except that
    person and channel mentions (`<@U…>`, `<#C…>`) keep working: anyone may mention a colleague, but no text of
    theirs reaches Slack as `<!here>`, `<!channel>` or a link."""
    return _ESCAPED_MENTION.sub(lambda m: f"<{m.group(1)}>", external_text(text))


def link(url: str, text: str) -> str:
    """A mrkdwn link `<url|text>` to an http(s) URL with both parts escaped; only the text for any other URL."""
    if not url.startswith(("http://", "https://")):
        return external_text(text)
    return f"<{external_text(url).replace('|', '%7C')}|{external_text(text)}>"


# `<service>`, `<ENV_VAR>`, `<max age>`: not Slack's markup, which starts with @, #, ! or a URL scheme and a colon.
_PLACEHOLDER = re.compile(r"<([A-Za-z][A-Za-z0-9_.-]*(?: [A-Za-z0-9_.-]+)*)>")


def show_placeholders(value: Any) -> Any:
    """Turns usage placeholders like `<service>` or `<ENV_VAR>` in mrkdwn (text, or blocks, recursively) into
    `&lt;service&gt;`, which Slack shows as typed; without it Slack reads them as links and shows `service`.
    Slack's own markup (`<@U…>`, `<#C…>`, `<!here>`, `<https://…|…>`) never matches."""
    if isinstance(value, str):
        return _PLACEHOLDER.sub(r"&lt;\1&gt;", value)
    if isinstance(value, list):
        return [show_placeholders(item) for item in value]
    if isinstance(value, dict):
        if value.get("type") == "plain_text":
            return value  # shown literally by Slack
        return {
            key: show_placeholders(item) if key == "text" or isinstance(item, list | dict) else item
            for key, item in value.items()
        }
    return value


def channel_link(channel: str, channel_id: str | None = None) -> str:
    """A channel as a message names it: a link (`<#C…>`, which Slack shows as `#name`, clickable) when its ID is
    known (`channel` is one, or `channel_id` gives it), else the configured `#name` as plain text. Resolve names
    with `bot.platform.channels.ChannelDirectory.link`."""
    if channel_id:
        return f"<#{channel_id}>"
    return external_text(channel) if channel.startswith("#") else f"<#{channel}>"


def mrkdwn(text: str) -> dict[str, Any]:
    """A mrkdwn text object."""
    return {"type": "mrkdwn", "text": text}


def plain(text: str, limit: int = SECTION_TEXT_LIMIT) -> dict[str, Any]:
    """A plain_text text object."""
    return {"type": "plain_text", "text": clip(text, limit), "emoji": True}


def header(text: str) -> Block:
    """A header block."""
    return {"type": "header", "text": plain(text, HEADER_TEXT_LIMIT)}


def section(text: str, *, accessory: dict[str, Any] | None = None, block_id: str | None = None) -> Block:
    """A section block of mrkdwn text, optionally with a button or menu beside it."""
    block: Block = {"type": "section", "text": mrkdwn(clip(text, SECTION_TEXT_LIMIT))}
    if accessory is not None:
        block["accessory"] = accessory
    if block_id is not None:
        block["block_id"] = block_id
    return block


def fields(pairs: Sequence[tuple[str, str]]) -> Block:
    """A section of up to ten label/value fields, two columns wide."""
    return {
        "type": "section",
        "fields": [mrkdwn(clip(f"*{label}*\n{value}", FIELD_TEXT_LIMIT)) for label, value in pairs[:10]],
    }


def context(*texts: str) -> Block:
    """A context block: small grey lines."""
    return {
        "type": "context",
        "elements": [mrkdwn(clip(t, SECTION_TEXT_LIMIT)) for t in texts[:CONTEXT_ELEMENTS_LIMIT]],
    }


def divider() -> Block:
    """A divider block."""
    return {"type": "divider"}


def button(
    text: str, action_id: str, value: str = "", *, style: Literal["primary", "danger"] | None = None
) -> dict[str, Any]:
    """A button element."""
    element: dict[str, Any] = {"type": "button", "text": plain(text, BUTTON_TEXT_LIMIT), "action_id": action_id}
    if value:
        element["value"] = value
    if style is not None:
        element["style"] = style
    return element


def static_select(placeholder: str, action_id: str, options: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """A static_select menu of (label, value) options."""
    return {
        "type": "static_select",
        "action_id": action_id,
        "placeholder": plain(placeholder, 150),
        "options": [{"text": plain(label, 75), "value": value} for label, value in list(options)[:100]],
    }


def actions(*elements: dict[str, Any], block_id: str | None = None) -> Block:
    """An actions block holding buttons and menus."""
    block: Block = {"type": "actions", "elements": list(elements[:25])}
    if block_id is not None:
        block["block_id"] = block_id
    return block
