"""Incident channel names, as pure functions: `inc-20261123-checkout-errors-on-web`, then `-2`, `-3`… when Slack
says the name is taken. Slack channel names are at most 80 characters of lowercase letters, digits, - and _."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime

MAX_CHANNEL_NAME = 80
MAX_SLUG = 40


def slugify(title: str, limit: int = MAX_SLUG) -> str:
    """`Checkout errors on Web!` -> `checkout-errors-on-web`: ASCII, lowercase, words joined by -, cut at a word
    boundary within `limit`; "incident" when nothing usable is left."""
    ascii_text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    words = [word for word in re.split(r"[^a-z0-9]+", ascii_text.lower()) if word]
    slug = ""
    for word in words:
        candidate = f"{slug}-{word}" if slug else word
        if len(candidate) > limit:
            if not slug:
                slug = word[:limit]
            break
        slug = candidate
    return slug or "incident"


def channel_name(prefix: str, declared_at: datetime, title: str) -> str:
    """The first choice of channel name: `<prefix>-<yyyymmdd>-<slug>`, within Slack's 80 characters."""
    head = f"{prefix}-{declared_at:%Y%m%d}-"
    return head + slugify(title, min(MAX_SLUG, MAX_CHANNEL_NAME - len(head) - 4))


def candidate(base: str, attempt: int) -> str:
    """The name to try on attempt `attempt` (0 = `base`, then `base-2`, `base-3`…)."""
    return base if attempt == 0 else f"{base}-{attempt + 1}"
