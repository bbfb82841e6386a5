"""Block Kit to HTML for the dev page: the body of a message (blocks, else its mrkdwn text, plus files and legacy
attachments) and the blocks of a modal. Interactive elements carry data attributes (`data-action-id`,
`data-block-id`, ...) that the page's script turns into block_actions; inputs carry what a view submission needs.
Pure functions: a message dict and the workspace's names in, an HTML string out."""

from __future__ import annotations

import html
from typing import Any

from bot.emulator.mrkdwn import Names, emojify, plain_to_html, to_html


def esc(value: Any) -> str:
    """HTML-escapes a value for text or an attribute."""
    return html.escape(str(value), quote=True)


def text_html(obj: Any, names: Names) -> str:
    """A text object (plain_text or mrkdwn) as HTML."""
    if not isinstance(obj, dict):
        return esc(obj) if isinstance(obj, str) else ""
    text = str(obj.get("text", ""))
    if obj.get("type") == "mrkdwn":
        return to_html(text, names)
    return plain_to_html(text, emoji=obj.get("emoji", True) is not False)


def text_plain(obj: Any) -> str:
    """The raw text of a text object."""
    return str(obj.get("text", "")) if isinstance(obj, dict) else str(obj or "")


def render_message(message: dict[str, Any], names: Names) -> str:
    """The body of one message: its blocks (or its text), attachments and files."""
    parts: list[str] = []
    blocks = message.get("blocks")
    if isinstance(blocks, list) and blocks:
        parts.append(render_blocks(blocks, names))
    elif message.get("text"):
        body = (
            to_html(str(message["text"]), names)
            if message.get("mrkdwn", True) is not False
            else plain_to_html(str(message["text"]))
        )
        parts.append(f'<div class="msg-text mrkdwn">{body}</div>')
    for attachment in message.get("attachments") or []:
        if isinstance(attachment, dict):
            parts.append(render_attachment(attachment, names))
    files = message.get("files") or []
    if files:
        parts.append('<div class="files">' + "".join(render_file(f) for f in files if isinstance(f, dict)) + "</div>")
    reactions = [r for r in message.get("reactions") or [] if isinstance(r, dict)]
    if reactions:
        pills = "".join(
            f'<span class="reaction" title=":{esc(r.get("name", ""))}:">{emojify(":" + esc(r.get("name", "")) + ":")}'
            f'<span class="reaction-count">{int(r.get("count", 0))}</span></span>'
            for r in reactions
        )
        parts.append(f'<div class="reactions">{pills}</div>')
    return "".join(parts)


def render_file(file: dict[str, Any]) -> str:
    """A file shared in a message: a download link with its name and size."""
    size = int(file.get("size") or 0)
    human = (
        f"{size} B" if size < 1024 else f"{size / 1024:.1f} KB" if size < 1024 * 1024 else f"{size / 1048576:.1f} MB"
    )
    href = f"/emulator/files/{esc(file.get('id', ''))}"
    name = file.get("title") or file.get("name") or file.get("id")
    return (
        f'<a class="file" data-testid="file" href="{href}" download="{esc(file.get("name") or name)}">'
        f'<span class="file-icon">📄</span><span class="file-meta"><span class="file-name">{esc(name)}</span>'
        f'<span class="file-size">{esc(file.get("pretty_type") or file.get("filetype") or "file")} · {human}'
        "</span></span></a>"
    )


def render_attachment(attachment: dict[str, Any], names: Names) -> str:
    """A legacy attachment: colour bar, pretext, title, text, fields, blocks, footer."""
    colour = str(attachment.get("color") or "#dddddd")
    colour = {"good": "#2eb67d", "warning": "#ecb22e", "danger": "#e01e5a"}.get(colour, colour)
    if not colour.startswith("#"):
        colour = "#" + colour
    parts: list[str] = []
    if attachment.get("pretext"):
        parts.append(f'<div class="att-pretext">{to_html(str(attachment["pretext"]), names)}</div>')
    inner: list[str] = []
    if attachment.get("title"):
        title = esc(attachment["title"])
        link = attachment.get("title_link")
        if link and str(link).startswith(("http://", "https://", "/")):
            title = f'<a class="link" href="{esc(link)}" target="_blank" rel="noopener">{title}</a>'
        inner.append(f'<div class="att-title">{title}</div>')
    if attachment.get("text"):
        inner.append(f'<div class="att-text">{to_html(str(attachment["text"]), names)}</div>')
    if attachment.get("fields"):
        cells = "".join(
            f'<div class="field"><div class="field-title">{esc(f.get("title", ""))}</div>'
            f"<div>{to_html(str(f.get('value', '')), names)}</div></div>"
            for f in attachment["fields"]
            if isinstance(f, dict)
        )
        inner.append(f'<div class="sec-fields">{cells}</div>')
    if isinstance(attachment.get("blocks"), list):
        inner.append(render_blocks(attachment["blocks"], names))
    if attachment.get("footer"):
        inner.append(f'<div class="blk-context">{to_html(str(attachment["footer"]), names)}</div>')
    parts.append(f'<div class="attachment" style="border-left-color:{esc(colour)}">{"".join(inner)}</div>')
    return "".join(parts)


def render_blocks(blocks: list[Any], names: Names, *, view: bool = False) -> str:
    """A list of blocks as HTML (`view` renders input blocks as form fields)."""
    return "".join(render_block(block, names, view=view) for block in blocks if isinstance(block, dict))


def render_block(block: dict[str, Any], names: Names, *, view: bool = False) -> str:
    """One block as HTML."""
    kind = block.get("type")
    block_id = esc(block.get("block_id", ""))
    attrs = f'data-block-id="{block_id}" data-block-type="{esc(kind)}"'
    if kind == "header":
        return f'<div class="blk blk-header" {attrs}>{text_html(block.get("text"), names)}</div>'
    if kind == "divider":
        return f'<hr class="blk blk-divider" {attrs}>'
    if kind == "section":
        main: list[str] = []
        if block.get("text"):
            main.append(f'<div class="sec-text mrkdwn">{text_html(block["text"], names)}</div>')
        if block.get("fields"):
            cells = "".join(f'<div class="field mrkdwn">{text_html(f, names)}</div>' for f in block["fields"])
            main.append(f'<div class="sec-fields">{cells}</div>')
        accessory = ""
        if isinstance(block.get("accessory"), dict):
            accessory = f'<div class="sec-accessory">{render_element(block["accessory"], block, names)}</div>'
        return f'<div class="blk blk-section" {attrs}><div class="sec-main">{"".join(main)}</div>{accessory}</div>'
    if kind == "context":
        items = []
        for element in block.get("elements") or []:
            if isinstance(element, dict) and element.get("type") == "image":
                alt = esc(element.get("alt_text", ""))
                items.append(
                    f'<img class="ctx-img" src="{esc(element.get("image_url", ""))}" alt="{alt}" title="{alt}">'
                )
            else:
                items.append(f'<span class="ctx-text mrkdwn">{text_html(element, names)}</span>')
        return f'<div class="blk blk-context" {attrs}>{"".join(items)}</div>'
    if kind == "actions":
        elements = "".join(render_element(e, block, names) for e in block.get("elements") or [] if isinstance(e, dict))
        return f'<div class="blk blk-actions" {attrs}>{elements}</div>'
    if kind == "image":
        title = f'<div class="img-title">{text_html(block["title"], names)}</div>' if block.get("title") else ""
        return (
            f'<div class="blk blk-image" {attrs}>{title}<img src="{esc(block.get("image_url", ""))}" '
            f'alt="{esc(block.get("alt_text", ""))}" loading="lazy"></div>'
        )
    if kind == "input":
        return (
            render_input(block, names)
            if view
            else f'<div class="blk blk-input" {attrs}>{text_html(block.get("label"), names)}</div>'
        )
    if kind == "rich_text":
        rich = "".join(render_rich(e, names) for e in block.get("elements") or [])
        return f'<div class="blk blk-rich-text mrkdwn" {attrs}>{rich}</div>'
    if kind == "file":
        return f'<div class="blk blk-file" {attrs}>📎 {esc(block.get("external_id", "file"))}</div>'
    if kind == "markdown":
        return f'<div class="blk blk-markdown mrkdwn" {attrs}>{plain_to_html(str(block.get("text", "")))}</div>'
    return f'<div class="blk blk-unknown" {attrs}>[{esc(kind)} block]</div>'


def _options(element: dict[str, Any]) -> list[tuple[str | None, list[dict[str, Any]]]]:
    """(group label or None, options) pairs of a select."""
    if isinstance(element.get("option_groups"), list):
        return [
            (text_plain(g.get("label")), list(g.get("options") or []))
            for g in element["option_groups"]
            if isinstance(g, dict)
        ]
    return [(None, list(element.get("options") or []))]


def _option_tags(element: dict[str, Any], selected: str | None) -> str:
    out: list[str] = []
    for label, options in _options(element):
        tags = "".join(
            f'<option value="{esc(o.get("value", ""))}"'
            f"{' selected' if selected is not None and o.get('value') == selected else ''}>"
            f"{esc(text_plain(o.get('text')))}</option>"
            for o in options
            if isinstance(o, dict)
        )
        out.append(f'<optgroup label="{esc(label)}">{tags}</optgroup>' if label is not None else tags)
    return "".join(out)


def render_element(element: dict[str, Any], block: dict[str, Any], names: Names) -> str:
    """An interactive element (button, select, overflow, ...) or an image accessory."""
    kind = element.get("type")
    action_id = esc(element.get("action_id", ""))
    block_id = esc(block.get("block_id", ""))
    common = f'data-action-id="{action_id}" data-block-id="{block_id}"'
    if kind == "button":
        style = element.get("style")
        css = "sk-btn" + (f" sk-btn-{esc(style)}" if style in {"primary", "danger"} else "")
        url = f' data-url="{esc(element["url"])}"' if element.get("url") else ""
        confirm = ""
        if isinstance(element.get("confirm"), dict):
            confirm = f' data-confirm="{esc(text_plain(element["confirm"].get("text")))}"'
        return (
            f'<button type="button" class="{css}" data-testid="button" data-kind="button" {common} '
            f'data-value="{esc(element.get("value", ""))}"{url}{confirm}>'
            f"{text_html(element.get('text'), names)}</button>"
        )
    if kind in {"static_select", "multi_static_select", "overflow"}:
        initial_option = element.get("initial_option") or {}
        selected = initial_option.get("value") if isinstance(initial_option, dict) else None
        placeholder = "⋯" if kind == "overflow" else text_plain(element.get("placeholder")) or "Select an item"
        css = "sk-overflow" if kind == "overflow" else "sk-select"
        first = f'<option value="" disabled{" selected" if selected is None else ""} hidden>{esc(placeholder)}</option>'
        return (
            f'<select class="{css}" data-testid="select" data-kind="{esc(kind)}" {common}>{first}'
            f"{_option_tags(element, selected)}</select>"
        )
    if kind == "image":
        return (
            f'<img class="acc-img" src="{esc(element.get("image_url", ""))}" alt="{esc(element.get("alt_text", ""))}">'
        )
    if kind in {"users_select", "conversations_select", "channels_select"}:
        return _directory_select(element, common, names)
    if kind == "datepicker":
        initial_date = esc(element.get("initial_date", ""))
        return f'<input type="date" class="sk-input sk-date" data-kind="datepicker" {common} value="{initial_date}">'
    label = text_plain(element.get("placeholder")) or str(kind)
    return f'<span class="sk-unsupported" title="{esc(kind)}">[{esc(label)}]</span>'


def _directory_select(element: dict[str, Any], common: str, names: Names) -> str:
    kind = element.get("type")
    if kind == "users_select":
        items = names.users.items()
        initial = element.get("initial_user")
    else:
        items = names.channels.items()
        initial = element.get("initial_conversation") or element.get("initial_channel")
    placeholder = text_plain(element.get("placeholder")) or "Select"
    first = f'<option value="" disabled{" selected" if not initial else ""} hidden>{esc(placeholder)}</option>'
    options = "".join(
        f'<option value="{esc(i)}"{" selected" if i == initial else ""}>{esc(n)}</option>' for i, n in items
    )
    return f'<select class="sk-select" data-testid="select" data-kind="{esc(kind)}" {common}>{first}{options}</select>'


def render_input(block: dict[str, Any], names: Names) -> str:
    """An input block of a modal: label, the field, hint, and a slot for the error Slack shows."""
    raw_element = block.get("element")
    element: dict[str, Any] = raw_element if isinstance(raw_element, dict) else {}
    kind = element.get("type")
    block_id = esc(block.get("block_id", ""))
    action_id = esc(element.get("action_id", ""))
    common = (
        f'data-input data-kind="{esc(kind)}" data-action-id="{action_id}" data-block-id="{block_id}" id="in-{block_id}"'
    )
    placeholder = esc(text_plain(element.get("placeholder")))
    if kind in {"plain_text_input", "email_text_input", "url_text_input", "number_input"}:
        initial = esc(element.get("initial_value", ""))
        if kind == "plain_text_input" and element.get("multiline"):
            field = f'<textarea class="sk-input" rows="4" {common} placeholder="{placeholder}">{initial}</textarea>'
        else:
            html_type = {"email_text_input": "email", "url_text_input": "url", "number_input": "number"}.get(
                str(kind), "text"
            )
            field = (
                f'<input type="{html_type}" class="sk-input" {common} placeholder="{placeholder}" value="{initial}">'
            )
    elif kind in {"static_select", "multi_static_select"}:
        initial_option = element.get("initial_option") or {}
        selected = initial_option.get("value") if isinstance(initial_option, dict) else None
        first = (
            f'<option value=""{" selected" if selected is None else ""}>{placeholder or "Select an option"}</option>'
        )
        multiple = " multiple" if kind == "multi_static_select" else ""
        field = (
            f'<select class="sk-select sk-input" {common}{multiple}>{first}{_option_tags(element, selected)}</select>'
        )
    elif kind in {"checkboxes", "radio_buttons"}:
        html_type = "checkbox" if kind == "checkboxes" else "radio"
        boxes = "".join(
            f'<label class="sk-choice">'
            f'<input type="{html_type}" name="in-{block_id}" value="{esc(o.get("value", ""))}"> '
            f"{text_html(o.get('text'), names)}</label>"
            for o in element.get("options") or []
            if isinstance(o, dict)
        )
        field = f'<div class="sk-choices" {common}>{boxes}</div>'
    elif kind in {"users_select", "conversations_select", "channels_select"}:
        field = _directory_select(element, common, names).replace('class="sk-select"', 'class="sk-select sk-input"', 1)
    elif kind == "datepicker":
        field = f'<input type="date" class="sk-input" {common} value="{esc(element.get("initial_date", ""))}">'
    elif kind == "timepicker":
        field = f'<input type="time" class="sk-input" {common} value="{esc(element.get("initial_time", ""))}">'
    else:
        field = f'<span class="sk-unsupported">[{esc(kind)}]</span>'
    optional = ' <span class="optional">(optional)</span>' if block.get("optional") else ""
    hint = f'<div class="input-hint">{text_html(block["hint"], names)}</div>' if block.get("hint") else ""
    return (
        f'<div class="blk blk-input" data-testid="input-block" data-block-id="{block_id}">'
        f'<label class="input-label" for="in-{block_id}">{text_html(block.get("label"), names)}{optional}</label>'
        f"{field}{hint}"
        f'<div class="input-error" data-testid="input-error" data-error-for="{block_id}"></div></div>'
    )


def render_view(view: dict[str, Any], names: Names) -> str:
    """The blocks of a modal, with input blocks as form fields."""
    return render_blocks(list(view.get("blocks") or []), names, view=True)


def render_rich(element: Any, names: Names) -> str:
    """A rich_text sub-element (section, list, preformatted, quote) as HTML."""
    if not isinstance(element, dict):
        return ""
    kind = element.get("type")
    children = element.get("elements") or []
    if kind == "rich_text_section":
        return f'<div class="rt-section">{"".join(_rich_inline(c, names) for c in children)}</div>'
    if kind == "rich_text_list":
        tag = "ol" if element.get("style") == "ordered" else "ul"
        items = "".join(
            f"<li>{''.join(_rich_inline(c, names) for c in (item.get('elements') or []))}</li>"
            for item in children
            if isinstance(item, dict)
        )
        return f'<{tag} class="rt-list">{items}</{tag}>'
    if kind == "rich_text_preformatted":
        return f'<pre class="pre">{"".join(_rich_inline(c, names, code=True) for c in children)}</pre>'
    if kind == "rich_text_quote":
        return f'<blockquote class="quote">{"".join(_rich_inline(c, names) for c in children)}</blockquote>'
    return ""


def _rich_inline(element: Any, names: Names, *, code: bool = False) -> str:
    if not isinstance(element, dict):
        return ""
    kind = element.get("type")
    if kind == "text":
        out = esc(element.get("text", "")).replace("\n", "<br>")
    elif kind == "link":
        url = str(element.get("url", ""))
        label = esc(element.get("text") or url)
        out = (
            f'<a class="link" href="{esc(url)}" target="_blank" rel="noopener">{label}</a>'
            if url.startswith(("http://", "https://", "mailto:", "/"))
            else label
        )
    elif kind == "user":
        user_id = element.get("user_id", "")
        out = f'<span class="mention">@{esc(names.users.get(user_id, user_id))}</span>'
    elif kind == "usergroup":
        group_id = element.get("usergroup_id", "")
        out = f'<span class="mention">@{esc(names.usergroups.get(group_id, group_id))}</span>'
    elif kind == "channel":
        channel_id = element.get("channel_id", "")
        out = f'<span class="channel-link">#{esc(names.channels.get(channel_id, channel_id))}</span>'
    elif kind == "broadcast":
        out = f'<span class="mention mention-broadcast">@{esc(element.get("range", "here"))}</span>'
    elif kind == "emoji":
        out = to_html(f":{element.get('name', '')}:", names)
    else:
        out = ""
    style = element.get("style") or {}
    if not code and isinstance(style, dict):
        if style.get("code"):
            out = f'<code class="code">{out}</code>'
        if style.get("bold"):
            out = f"<b>{out}</b>"
        if style.get("italic"):
            out = f"<i>{out}</i>"
        if style.get("strike"):
            out = f"<s>{out}</s>"
    return out
