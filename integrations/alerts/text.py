"""The text of an alert: lone surrogates made safe (`clean`), clipping to a limit with an ellipsis, the one-line
title, the best summary line, and the links worth keeping (http(s) URLs only).
"""

from __future__ import annotations

from collections.abc import Mapping

from integrations.alerts.model import MAX_SUMMARY_CHARS, MAX_TITLE_CHARS, is_http_url

__all__ = ["best_summary", "clean", "clip", "http_links", "make_title"]


def clean(text: str) -> str:
    """`text` with lone surrogates (which JSON allows and UTF-8 cannot encode) replaced by U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def make_title(text: str | None, fallback: str = "unnamed alert") -> str:
    """`text` on one line (runs of whitespace, newlines included, become one space) and clipped to MAX_TITLE_CHARS;
    `fallback` when nothing is left."""
    line = " ".join((text or "").split())
    return clip(line or fallback, MAX_TITLE_CHARS)


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def best_summary(annotations: Mapping[str, str], fallback: str) -> str:
    """The best human line: the summary, description or message annotation, else `fallback` (clipped)."""
    for key in ("summary", "description", "message"):
        text = annotations.get(key, "").strip()
        if text:
            return clip(text, MAX_SUMMARY_CHARS)
    return clip(fallback, MAX_SUMMARY_CHARS)


def http_links(candidates: Mapping[str, object]) -> dict[str, str]:
    """The candidates that are non-empty http(s) URLs (anything else, including javascript:, is dropped)."""
    return {name: url for name, url in candidates.items() if isinstance(url, str) and is_http_url(url)}
