"""Splits slash-command text into words and `--flags`, the way people type them in Slack.

Quotes group words ("…", '…', and the curly quotes Slack clients substitute: “…”, ‘…’). Slack's own markup
arrives escaped (&lt; &gt; &amp;) and is unescaped. Nothing here ever raises anything but UsageError."""

from __future__ import annotations

import html
from collections.abc import Collection
from dataclasses import dataclass, field

from bot.errors import UsageError

_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "”": "”", "’": "’"}
MAX_TEXT = 4000


@dataclass(frozen=True)
class Words:
    """Positional words and flags (`--name value` or bare `--name` = "true") of one command text."""

    positional: tuple[str, ...]
    flags: dict[str, str] = field(default_factory=dict)


def tokenize(text: str) -> list[str]:
    """The words of `text`, honouring quotes; UsageError on an unclosed quote."""
    if len(text) > MAX_TEXT:
        raise UsageError(f"That text is too long ({len(text)} characters; at most {MAX_TEXT}).")
    text = html.unescape(text)
    words: list[str] = []
    current: list[str] = []
    quote: str | None = None
    started = False
    for char in text:
        if quote is not None:
            if char == quote:
                quote = None
            else:
                current.append(char)
        elif char in _QUOTES:
            quote = _QUOTES[char]
            started = True
        elif char.isspace():
            if started or current:
                words.append("".join(current))
            current, started = [], False
        else:
            current.append(char)
    if quote is not None:
        raise UsageError("A quote is not closed: put a matching quote at the end of the text.")
    if started or current:
        words.append("".join(current))
    return words


def split_flags(text: str, *, valued: Collection[str] = (), switches: Collection[str] = ()) -> Words:
    """Separates `--flag value` (for `valued`) and `--switch` (for `switches`) from positional words."""
    tokens = tokenize(text)
    positional: list[str] = []
    flags: dict[str, str] = {}
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token.startswith(("--", "—")) and len(token.lstrip("-—")) > 0:
            # Slack turns "--" into an em dash on some clients.
            name, _, inline = token.lstrip("-—").partition("=")
            if name in valued:
                if inline:
                    value = inline
                elif index + 1 < len(tokens):
                    index += 1
                    value = tokens[index]
                else:
                    raise UsageError(f"`--{name}` needs a value, e.g. `--{name} \"…\"`.")
                if not value.strip():
                    raise UsageError(f"`--{name}` needs a value that is not empty.")
                flags[name] = value.strip()
            elif name in switches and not inline:
                flags[name] = "true"
            else:
                known = ", ".join(f"`--{n}`" for n in [*valued, *switches]) or "none"
                raise UsageError(f"`--{name}` is not an option here (options: {known}).")
            if name in [*valued, *switches] and list(flags).count(name) > 1:
                raise UsageError(f"`--{name}` is given twice.")
        else:
            positional.append(token)
        index += 1
    return Words(tuple(positional), flags)
