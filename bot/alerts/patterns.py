"""Regular expressions people and configurations supply (silence matchers, routes' `match_re`), compiled with
RE2: matching takes time linear in the text, so no pattern can stall the event loop on an alert's labels (Python's
`re` backtracks: `(a+)+$` against 30 a's and a `!` takes minutes). RE2 refuses what needs backtracking
(backreferences, lookaround); such patterns are refused here, naming the pattern and the reason."""

from __future__ import annotations

from functools import lru_cache

import re2

MAX_PATTERN = 512


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> re2._Regexp:
    """The compiled pattern; ValueError saying which pattern and why when RE2 cannot take it or it is too long."""
    if len(pattern) > MAX_PATTERN:
        raise ValueError(
            f"the regular expression `{pattern[:40]}…` is {len(pattern)} characters; keep it within {MAX_PATTERN}"
        )
    options = re2.Options()
    options.log_errors = False  # the ValueError says it; RE2 would also print it to stderr
    try:
        return re2.compile(pattern, options)
    except re2.error as error:
        first = error.args[0] if error.args else ""
        reason = first.decode(errors="replace") if isinstance(first, bytes) else str(first or error)
        raise ValueError(
            f"`{pattern}` is not a regular expression chatops can use ({reason}); RE2 syntax is needed, without"
            " backreferences (`\\1`) or lookaround (`(?=…)`, `(?!…)`, `(?<=…)`)"
        ) from None


def full_match(pattern: str, text: str) -> bool:
    """Whether `pattern` (already accepted by `compile_pattern`) matches all of `text`."""
    return compile_pattern(pattern).fullmatch(text) is not None
