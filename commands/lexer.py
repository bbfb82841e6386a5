"""The one lexer and flag parser of every command: splits slash-command text into words and `--flags`, the way
people type them in Slack, with one set of error messages.

Quotes group words ("…", '…', and the curly quotes Slack clients substitute: “…”, ‘…’). Slack's own markup
arrives escaped (&lt; &gt; &amp;) and is unescaped. A flag is a dash of any kind (`-`, `--`, or the en dash `–` and
em dash `—` Slack clients turn `--` into) then a letter: `--reason "…"`, `--reason="…"`, `—reason …`, `–force`;
`-5` and a lone `--` are words. A flag given twice is an error, everywhere. Parsing is two steps because a command
knows which flags apply only once it has read its subcommand: `split` (words and flags, in order), then
`FlagSet.check` (each flag allowed here, given once, with a value when it takes one). Nothing here ever raises
anything but UsageError."""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from bot.platform.errors import UsageError
from bot.text.blocks import external_text

_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "”": "”", "’": "’"}
MAX_TEXT = 4000
DASHES = "-—–"  # Slack clients turn "--" into an em dash (—), some into an en dash (–)
MAX_REASON = 300
_SHOWN = 40


@dataclass(frozen=True)
class Flag:
    """One flag a command may take: `--name value` (`takes_value`) or a bare switch `--name`."""

    name: str
    takes_value: bool = True
    example: str = '"…"'  # shown in "`--name` needs a value, e.g. `--name …`"
    clean: Callable[[str, str], str] | None = None  # (value, usage) -> the value, or UsageError


@dataclass(frozen=True)
class Option:
    """A flag as typed: its name (lower case, without dashes), how to show it, and its value if one was given."""

    name: str
    shown: str  # `--name`, or `-x` when typed with a single hyphen
    value: str | None  # None: no value given
    inline: bool  # written `--name=value`


@dataclass(frozen=True)
class Words:
    """Positional words and flags (name -> value; `"true"` for a switch) of one command text."""

    positional: tuple[str, ...]
    flags: dict[str, str] = field(default_factory=dict)


def tokenize(text: str) -> list[str]:
    """The words of `text`, honouring quotes; UsageError on an unclosed quote or a text over MAX_TEXT."""
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


def is_flag(token: str) -> bool:
    """`--reason`, `—force`, `–for=2h`, `-x`: a dash (of any kind) then a letter. `-5` and a lone `--` are words."""
    body = token.lstrip(DASHES)
    return len(body) < len(token) and body[:1].isalpha()


def show(text: str) -> str:
    """User text safe to put between backticks in a message: one line, no backticks, at most 40 characters, and
    escaped (`external_text`), so `<!channel>` typed as an argument is shown, never broadcast."""
    flat = "".join(" " if unicodedata.category(char) in ("Cc", "Zl", "Zp") else char for char in text)
    flat = flat.replace("`", "'")
    if not flat:
        return '""'
    return external_text(flat if len(flat) <= _SHOWN else flat[: _SHOWN - 1] + "…")


def reason_text(text: str, usage: str) -> str:
    """A `--reason`: one line of plain text, at most MAX_REASON characters."""
    reason = " ".join(text.split())
    if any(unicodedata.category(char) == "Cc" for char in reason):
        raise UsageError("the reason contains a control character: write it as plain text", usage)
    if len(reason) > MAX_REASON:
        raise UsageError(f"the reason is too long ({len(reason)} characters; at most {MAX_REASON})", usage)
    return reason


REASON = Flag("reason", example='"why you are doing this"', clean=reason_text)
"""`--reason "…"`, the same flag with the same rules in every command that takes it."""


class FlagSet:
    """Every flag a command knows (whichever of its forms takes it): how `split` reads them."""

    def __init__(self, *flags: Flag) -> None:
        self.flags = {flag.name: flag for flag in flags}
        if len(self.flags) != len(flags):
            raise ValueError("a flag is declared twice")

    def split(self, text: str, usage: str = "") -> tuple[list[str], list[Option]]:
        """Positional words and the flags in order of appearance; raises only for the lexer's own problems. A flag
        that takes a value takes the next word, unless that word is a flag this command knows."""
        try:
            tokens = tokenize(text)
        except UsageError as error:
            raise UsageError(error.message, usage) from None
        positional: list[str] = []
        options: list[Option] = []
        index = 0
        while index < len(tokens):
            token = tokens[index]
            index += 1
            if not is_flag(token):
                positional.append(token)
                continue
            body = token.lstrip(DASHES)
            raw_name, equals, inline = body.partition("=")
            name = raw_name.lower()
            shown = f"-{raw_name}" if len(token) - len(body) == 1 and token[0] == "-" else f"--{raw_name}"
            known = self.flags.get(name)
            if equals:
                options.append(Option(name, shown, inline, inline=True))
            elif known is not None and known.takes_value:
                value = None
                if index < len(tokens) and not self._known_flag(tokens[index]):
                    value = tokens[index]
                    index += 1
                options.append(Option(name, shown, value, inline=False))
            else:
                options.append(Option(name, shown, None, inline=False))
        return positional, options

    def _known_flag(self, token: str) -> bool:
        """A flag this command knows (`--force`, `—for=2h`): it ends a flag still waiting for its value, while
        anything else, even `-x` or a quoted "--no-cache broke it", is taken as that value."""
        return is_flag(token) and token.lstrip(DASHES).partition("=")[0].lower() in self.flags

    def check(
        self, options: Sequence[Option], *, allowed: Collection[str], slash: str, usage: str = ""
    ) -> dict[str, str]:
        """The flags' values by name (`"true"` for a switch), after checking that each is one `slash` takes here
        (`allowed`), is given once, and has a value exactly when it takes one."""
        flags: dict[str, str] = {}
        for option in options:
            if option.name not in allowed:
                if not allowed:
                    listing = f"`{slash}` takes no options"
                else:
                    listing = f"`{slash}` takes " + " and ".join(f"`--{name}`" for name in allowed)
                problem = (
                    f"`{show(option.shown)}` does not apply here"
                    if option.name in self.flags
                    else f"unknown option `{show(option.shown)}`"
                )
                raise UsageError(f"{problem}: {listing}", usage)
            if option.name in flags:
                raise UsageError(f"`--{option.name}` is given twice", usage)
            flag = self.flags[option.name]
            if not flag.takes_value:
                if option.inline:
                    raise UsageError(f"`--{flag.name}` takes no value: write just `--{flag.name}`", usage)
                flags[flag.name] = "true"
                continue
            if option.value is None or not option.value.strip():
                raise UsageError(f"`--{flag.name}` needs a value, e.g. `--{flag.name} {flag.example}`", usage)
            flags[flag.name] = flag.clean(option.value, usage) if flag.clean else option.value.strip()
        return flags

    def parse(self, text: str, *, allowed: Collection[str] | None = None, slash: str, usage: str = "") -> Words:
        """`split` then `check` in one step, for commands whose flags do not depend on the subcommand."""
        positional, options = self.split(text, usage)
        chosen = self.flags if allowed is None else allowed
        return Words(tuple(positional), self.check(options, allowed=chosen, slash=slash, usage=usage))


NO_FLAGS = FlagSet()
"""For commands that take no flags: `NO_FLAGS.parse(text, slash=…)` gives the words, and a clear error for any
`--flag`."""
