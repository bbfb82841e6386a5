"""Slack mrkdwn to safe HTML for the dev page: *bold*, _italic_, ~strike~, `code`, ```pre```, > quotes, links
(<url|label>, bare URLs), mentions (<@U..>, <#C..|name>, <!here>, <!subteam^S..>), :emoji: shortcodes and newlines.
Pure functions; everything that is not markup is HTML-escaped."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from bot.emulator.workspace import Workspace

EMOJI: dict[str, str] = {
    "raised_hand": "✋",
    "stethoscope": "🩺",
    "heavy_multiplication_x": "✖️",
    "white_check_mark": "✅",
    "heavy_check_mark": "✔️",
    "ballot_box_with_check": "☑️",
    "x": "❌",
    "negative_squared_cross_mark": "❎",
    "warning": "⚠️",
    "rotating_light": "🚨",
    "rocket": "🚀",
    "hourglass": "⌛",
    "hourglass_flowing_sand": "⏳",
    "tada": "🎉",
    "fire": "🔥",
    "boom": "💥",
    "no_entry": "⛔",
    "no_entry_sign": "🚫",
    "stop_sign": "🛑",
    "information_source": "ℹ️",
    "question": "❓",
    "grey_question": "❔",
    "exclamation": "❗",
    "heavy_exclamation_mark": "❗",
    "bangbang": "‼️",
    "+1": "👍",
    "thumbsup": "👍",
    "-1": "👎",
    "thumbsdown": "👎",
    "eyes": "👀",
    "wave": "👋",
    "red_circle": "🔴",
    "large_green_circle": "🟢",
    "green_circle": "🟢",
    "large_yellow_circle": "🟡",
    "yellow_circle": "🟡",
    "large_orange_circle": "🟠",
    "large_blue_circle": "🔵",
    "blue_circle": "🔵",
    "white_circle": "⚪",
    "black_circle": "⚫",
    "purple_circle": "🟣",
    "lock": "🔒",
    "unlock": "🔓",
    "key": "🔑",
    "bell": "🔔",
    "no_bell": "🔕",
    "pager": "📟",
    "package": "📦",
    "floppy_disk": "💾",
    "card_file_box": "🗃️",
    "calendar": "📅",
    "spiral_calendar_pad": "🗓️",
    "stopwatch": "⏱️",
    "alarm_clock": "⏰",
    "clock3": "🕒",
    "memo": "📝",
    "pencil": "📝",
    "pencil2": "✏️",
    "link": "🔗",
    "mag": "🔍",
    "gear": "⚙️",
    "wrench": "🔧",
    "hammer_and_wrench": "🛠️",
    "construction": "🚧",
    "arrows_counterclockwise": "🔄",
    "repeat": "🔁",
    "leftwards_arrow_with_hook": "↩️",
    "arrow_right": "➡️",
    "arrow_left": "⬅️",
    "arrow_up": "⬆️",
    "arrow_down": "⬇️",
    "back": "🔙",
    "chart_with_upwards_trend": "📈",
    "chart_with_downwards_trend": "📉",
    "bar_chart": "📊",
    "bulb": "💡",
    "speech_balloon": "💬",
    "bust_in_silhouette": "👤",
    "busts_in_silhouette": "👥",
    "robot_face": "🤖",
    "fire_engine": "🚒",
    "ambulance": "🚑",
    "sos": "🆘",
    "heavy_plus_sign": "➕",
    "heavy_minus_sign": "➖",
    "pushpin": "📌",
    "round_pushpin": "📍",
    "scroll": "📜",
    "clipboard": "📋",
    "page_facing_up": "📄",
    "zzz": "💤",
    "sunny": "☀️",
    "cloud": "☁️",
    "ok": "🆗",
    "new": "🆕",
    "sparkles": "✨",
    "star": "⭐",
    "skull": "💀",
    "thinking_face": "🤔",
    "smile": "😄",
    "slightly_smiling_face": "🙂",
    "sweat_smile": "😅",
    "pray": "🙏",
    "muscle": "💪",
    "raised_hands": "🙌",
    "clap": "👏",
    "ok_hand": "👌",
    "heart": "❤️",
    "100": "💯",
    "checkered_flag": "🏁",
    "traffic_light": "🚥",
    "vertical_traffic_light": "🚦",
    "satellite": "📡",
    "desktop_computer": "🖥️",
    "computer": "💻",
    "shield": "🛡️",
    "broom": "🧹",
    "toolbox": "🧰",
    "inbox_tray": "📥",
    "outbox_tray": "📤",
    "file_folder": "📁",
    "open_file_folder": "📂",
    "rewind": "⏪",
    "fast_forward": "⏩",
    "arrow_forward": "▶️",
    "double_vertical_bar": "⏸️",
    "black_square_for_stop": "⏹️",
    "recycle": "♻️",
    "label": "🏷️",
    "bookmark": "🔖",
    "scales": "⚖️",
    "mega": "📣",
    "loudspeaker": "📢",
    "point_right": "👉",
    "point_up": "☝️",
    "crossed_fingers": "🤞",
    "see_no_evil": "🙈",
    "dart": "🎯",
    "trophy": "🏆",
    "medal": "🏅",
    "globe_with_meridians": "🌐",
    "earth_americas": "🌎",
    "house": "🏠",
    "calling": "📲",
    "phone": "☎️",
    "telephone_receiver": "📞",
    "email": "📧",
    "envelope": "✉️",
    "large_orange_diamond": "🔶",
    "large_blue_diamond": "🔷",
    "small_orange_diamond": "🔸",
    "small_blue_diamond": "🔹",
    "white_large_square": "⬜",
    "black_large_square": "⬛",
    "date": "📅",
    "timer_clock": "⏲️",
    "hourglass_done": "⌛",
    "cry": "😢",
    "sob": "😭",
    "joy": "😂",
    "grimacing": "😬",
    "face_with_monocle": "🧐",
    "partying_face": "🥳",
    "coffee": "☕",
    "beers": "🍻",
    "siren": "🚨",
    "red_siren": "🚨",
    "crown": "👑",
    "satellite_antenna": "📡",
    "wastebasket": "🗑️",
}

_PRE = re.compile(r"```\n?(.*?)```", re.DOTALL)
_CODE = re.compile(r"`([^`\n]+)`")
_ENTITY = re.compile(r"<([^<>\n]+)>")
_URL = re.compile(r"\bhttps?://[^\s<>\"']+")
_EMOJI = re.compile(r":([a-z0-9_+'\-]+):(?::skin-tone-\d:)?")
_BEFORE = r"(?<![^\s(\[{\x00\"'.,;:!?/-])"
_AFTER = r"(?![^\s)\]}\x00\"'.,;:!?/-])"
_BOLD = re.compile(_BEFORE + r"\*(?=\S)([^*\n]+?)(?<=\S)\*" + _AFTER)
_ITALIC = re.compile(_BEFORE + r"_(?=\S)([^_\n]+?)(?<=\S)_" + _AFTER)
_STRIKE = re.compile(_BEFORE + r"~(?=\S)([^~\n]+?)(?<=\S)~" + _AFTER)
_SLOT = re.compile(r"\x00(\d+)\x00")
_SAFE_HREF = re.compile(r"^(https?://|mailto:|/)", re.IGNORECASE)


@dataclass
class Names:
    """How the page names users, channels and usergroups in mentions."""

    users: dict[str, str] = field(default_factory=dict)
    channels: dict[str, str] = field(default_factory=dict)
    usergroups: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, workspace: Workspace) -> Names:
        """The names of everything in `workspace`."""
        return cls(
            users={u.id: u.label() for u in workspace.users},
            channels={c.id: c.name for c in workspace.channels if not c.is_im},
            usergroups={g.id: g.handle for g in workspace.usergroups},
        )


def escape(text: str) -> str:
    """Slack's three escapes (& < > to &amp; &lt; &gt;), as Slack's client applies them to what a person types:
    typed `<b>` or `<@U1>` is text, never markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    """Slack's three escapes (&amp; &lt; &gt;) back to characters."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def emojify(escaped: str) -> str:
    """Replaces known :shortcodes: with their emoji, leaving unknown ones as text."""

    def one(match: re.Match[str]) -> str:
        emoji = EMOJI.get(match.group(1))
        return f'<span class="emoji" title=":{match.group(1)}:">{emoji}</span>' if emoji else match.group(0)

    return _EMOJI.sub(one, escaped)


def plain_to_html(text: str, *, emoji: bool = True) -> str:
    """A plain_text object's text as HTML: escaped, optional emoji, line breaks."""
    escaped = html.escape(text, quote=False)
    if emoji:
        escaped = emojify(escaped)
    return escaped.replace("\n", "<br>")


def entity_label(body: str, names: Names) -> tuple[str, str | None, str]:
    """(label, href, css class) of the inside of a `<...>` entity."""
    target, _, label = body.partition("|")
    if target.startswith("@"):
        user_id = target[1:]
        return "@" + (names.users.get(user_id) or label or user_id), None, "mention"
    if target.startswith("#"):
        channel_id = target[1:]
        return "#" + (label or names.channels.get(channel_id) or channel_id), None, "channel-link"
    if target.startswith("!subteam^"):
        group_id = target[len("!subteam^") :]
        handle = names.usergroups.get(group_id)
        return (f"@{handle}" if handle else label or "@" + group_id), None, "mention"
    if target.startswith("!date^"):
        return label or target, None, "date"
    if target.startswith("!"):
        return "@" + target[1:].split("^")[0], None, "mention mention-broadcast"
    href = target if _SAFE_HREF.match(unescape(target)) else None
    return label or (target.removeprefix("mailto:")), href, "link"


def to_html(text: str, names: Names | None = None) -> str:
    """Renders a mrkdwn string to HTML."""
    names = names or Names()
    slots: list[str] = []

    def keep(fragment: str) -> str:
        slots.append(fragment)
        return f"\x00{len(slots) - 1}\x00"

    def code_text(raw: str) -> str:
        # Entities inside code show as their labels, unlinked; formatting is not applied.
        plain = _ENTITY.sub(lambda m: entity_label(m.group(1), names)[0], raw)
        return html.escape(unescape(plain), quote=False)

    def pre(match: re.Match[str]) -> str:
        return keep(f'<pre class="pre">{code_text(match.group(1))}</pre>')

    def code(match: re.Match[str]) -> str:
        return keep(f'<code class="code">{code_text(match.group(1))}</code>')

    def entity(match: re.Match[str]) -> str:
        label, href, css = entity_label(match.group(1), names)
        label_html = emojify(html.escape(unescape(label), quote=False))
        if href is None:
            return keep(f'<span class="{css if css != "link" else "text"}">{label_html}</span>')
        return keep(
            f'<a class="{css}" href="{html.escape(unescape(href))}" target="_blank" rel="noopener">{label_html}</a>'
        )

    def bare_url(match: re.Match[str]) -> str:
        url = match.group(0)
        trail = ""
        while url and url[-1] in ".,;:!?)":
            trail = url[-1] + trail
            url = url[:-1]
        safe = html.escape(unescape(url))
        return keep(f'<a class="link" href="{safe}" target="_blank" rel="noopener">{safe}</a>') + trail

    work = _PRE.sub(pre, text)
    work = _CODE.sub(code, work)
    work = _ENTITY.sub(entity, work)
    work = _URL.sub(bare_url, work)
    escaped = html.escape(unescape(work), quote=False)
    escaped = _BOLD.sub(r"<b>\1</b>", escaped)
    escaped = _ITALIC.sub(r"<i>\1</i>", escaped)
    escaped = _STRIKE.sub(r"<s>\1</s>", escaped)
    escaped = emojify(escaped)
    rendered = _quotes_and_lines(escaped)
    for _ in range(2):  # slots may hold slots (none today); two passes are plenty
        rendered = _SLOT.sub(lambda m: slots[int(m.group(1))], rendered)
    return rendered


def _quotes_and_lines(escaped: str) -> str:
    """Groups lines starting with `>` into blockquotes and joins the rest with <br>."""
    out: list[str] = []
    quote: list[str] = []
    lines = escaped.split("\n")

    def flush() -> None:
        if quote:
            out.append('<blockquote class="quote">' + "<br>".join(quote) + "</blockquote>")
            quote.clear()

    plain: list[str] = []
    for line in lines:
        if line.startswith("&gt;"):
            if plain:
                out.append("<br>".join(plain))
                plain = []
            quote.append(line[4:].removeprefix(" "))
        else:
            flush()
            plain.append(line)
    flush()
    if plain:
        out.append("<br>".join(plain))
    return "".join(out)


def to_text(text: str, names: Names | None = None) -> str:
    """mrkdwn reduced to what a reader sees, without markup (entities become their labels)."""
    names = names or Names()
    return unescape(_ENTITY.sub(lambda m: entity_label(m.group(1), names)[0], text))
