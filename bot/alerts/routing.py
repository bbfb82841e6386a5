"""Routing and silences as pure functions: which channels an alert goes to, and whether a silence covers it.
Regexes people supply are RE2 patterns (`patterns.py`): matching them is linear in the label's length."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from bot.alerts.config import AlertsSection, RouteConfig
from bot.alerts.patterns import compile_pattern, full_match


@dataclass(frozen=True)
class Destination:
    """A channel an alert is posted to, and the escalation policy that route names."""

    channel: str
    escalation: str | None


def _matches(route: RouteConfig, labels: Mapping[str, str]) -> bool:
    for label, value in route.match.items():
        if labels.get(label) != value:
            return False
    return all(full_match(pattern, labels.get(label, "")) for label, pattern in route.match_re.items())


def route(config: AlertsSection, labels: Mapping[str, str]) -> list[Destination]:
    """Walks the rules in order; a match stops the walk unless it says `continue`; no match: the default channel."""
    found: list[Destination] = []
    for rule in config.routes:
        if _matches(rule, labels):
            destination = Destination(rule.channel or config.default_channel, rule.escalation)
            if destination.channel not in [d.channel for d in found]:
                found.append(destination)
            if not rule.continue_:
                break
    return found or [Destination(config.default_channel, None)]


def group_key(config: AlertsSection, source: str, fingerprint: str, labels: Mapping[str, str]) -> str:
    """Alerts with the same `group_by` label values share a key; with no `group_by`, each alert is its own group."""
    if not config.group_by:
        return f"fp:{fingerprint}"
    parts = [source] + [f"{label}={labels.get(label, '')}" for label in config.group_by]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Matcher:
    """`label=value`, `label!=value`, `label=~regex` or `label!~regex`."""

    label: str
    op: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether these labels satisfy the matcher."""
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = full_match(self.value, actual)
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f"{self.label}{self.op}{self.value}"


_MATCHER = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(=~|!~|!=|=)(.*)$")


def silence_matchers(silence: Mapping[str, object]) -> list[str]:
    """A stored silence's matchers, as text (bot/alerts/store.py keeps silences as JSON objects)."""
    matchers = silence.get("matchers", [])
    return [str(m) for m in matchers] if isinstance(matchers, list) else []


def parse_matcher(text: str) -> Matcher:
    """Parses one matcher; ValueError saying what is wrong."""
    found = _MATCHER.match(text.strip())
    if not found:
        raise ValueError(f"`{text}` is not a matcher: write label=value, label!=value or label=~regex")
    label, op, value = found.groups()
    value = value.strip().strip('"')
    if not value and op in ("=~", "!~"):
        raise ValueError(f"`{text}` needs a regular expression after {op}")
    if op in ("=~", "!~"):
        try:
            compile_pattern(value)
        except ValueError as error:
            raise ValueError(f"`{text}`: {error}") from None
    return Matcher(label, op, value)


def silenced_by(
    silences: Sequence[tuple[str, Sequence[Matcher], datetime]], labels: Mapping[str, str], now: datetime
) -> str | None:
    """The id of a live silence whose matchers all hold for these labels, if any."""
    for silence_id, matchers, expires_at in silences:
        if expires_at > now and matchers and all(m.matches(labels) for m in matchers):
            return silence_id
    return None
