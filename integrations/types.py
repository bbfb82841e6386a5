"""Value types shared by every layer: the strict base model of configuration sections, durations and Slack
references. They live here because `integrations` may not import from `bot`; each validator raises ValueError with
a message a person can act on, and never echoes more than a short excerpt of the value it rejects."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    PlainSerializer,
    PlainValidator,
)

__all__ = [
    "Duration",
    "RoleMember",
    "SlackChannelRef",
    "SlackUserId",
    "StrictModel",
    "describe_value",
    "format_duration",
    "parse_duration",
]

_MAX_SHOWN = 40


class StrictModel(BaseModel):
    """Base of every configuration section: unknown keys are errors and instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def json_object(value: object) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one: for reading optional nested fields of an API's answer."""
    return value if isinstance(value, dict) else {}


def describe_value(value: object) -> str:
    """A short, safe rendering of a configuration value for error messages: `'abc'`, `42`, `true`, `a list`."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return repr(value) if value.bit_length() <= 64 else "a very large number"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return repr(value if len(value) <= _MAX_SHOWN else value[: _MAX_SHOWN - 1] + "…")
    if isinstance(value, dt.timedelta):
        return format_duration(value) if value >= dt.timedelta(0) else "a negative duration"
    if isinstance(value, dt.date):  # datetime too
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return "binary data"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, (set, frozenset)):
        return "a set"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


# --- durations -------------------------------------------------------------------------------------------------

_UNITS: dict[str, dt.timedelta] = {
    "w": dt.timedelta(weeks=1),
    "d": dt.timedelta(days=1),
    "h": dt.timedelta(hours=1),
    "m": dt.timedelta(minutes=1),
    "s": dt.timedelta(seconds=1),
    "ms": dt.timedelta(milliseconds=1),
    "us": dt.timedelta(microseconds=1),
}
_UNIT_ORDER = tuple(_UNITS)
_DURATION_SHAPE = re.compile(r"(?:[0-9]+(?:ms|us|w|d|h|m|s)\s*)+")
_DURATION_PART = re.compile(r"([0-9]+)(ms|us|w|d|h|m|s)")
_MAX_DURATION_TEXT = 64


def _duration_problem(value: object) -> ValueError:
    return ValueError(f"must be a duration like 30s, 5m, 2h or 1d (got {describe_value(value)})")


def parse_duration(text: str) -> dt.timedelta:
    """ "1h30m", "500ms", "2d" or a whole number of seconds ("90") as a timedelta; ValueError on anything else."""
    if not isinstance(text, str):
        raise _duration_problem(text)
    stripped = text.strip()
    if not stripped or len(stripped) > _MAX_DURATION_TEXT:
        raise _duration_problem(text)
    try:
        if stripped.isascii() and stripped.isdigit():
            return dt.timedelta(seconds=int(stripped))
        if not _DURATION_SHAPE.fullmatch(stripped):
            raise _duration_problem(text)
        total = dt.timedelta(0)
        last_unit = -1
        for number, unit in _DURATION_PART.findall(stripped):
            position = _UNIT_ORDER.index(unit)
            if position <= last_unit:  # "30m1h", "1h1h": units must go from largest to smallest, once each
                raise _duration_problem(text)
            last_unit = position
            total += int(number) * _UNITS[unit]
        return total
    except OverflowError:
        raise _duration_problem(text) from None


def format_duration(td: dt.timedelta) -> str:
    """The shortest canonical text for a non-negative timedelta: "1h30m", "45s", "2d", "1w", "0s"."""
    if td < dt.timedelta(0):
        raise ValueError(f"cannot format a negative duration ({td})")
    remaining = td // dt.timedelta(microseconds=1)
    parts = []
    for unit in _UNIT_ORDER:
        size = _UNITS[unit] // dt.timedelta(microseconds=1)
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _validate_duration(value: Any) -> dt.timedelta:
    if isinstance(value, dt.timedelta):
        if value < dt.timedelta(0):
            raise _duration_problem(value)
        return value
    if isinstance(value, bool):  # YAML's `yes` is a bool, and a bool is an int
        raise _duration_problem(value)
    if isinstance(value, int):
        if value < 0:
            raise _duration_problem(value)
        try:
            return dt.timedelta(seconds=value)
        except OverflowError:
            raise _duration_problem(value) from None
    return parse_duration(value)


Duration = Annotated[
    dt.timedelta,
    PlainValidator(_validate_duration, json_schema_input_type=str | int),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
"""A non-negative span of time written "30s", "5m", "2h", "1d", "1w", "1h30m", "500ms", or as whole seconds."""


# --- Slack references ------------------------------------------------------------------------------------------

_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
_USERGROUP_ID = re.compile(r"S[A-Z0-9]{2,}")
_USERGROUP_HANDLE = re.compile(r"@[a-z0-9._-]+")
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,}")
_CHANNEL_NAME = re.compile(r"#[a-z0-9_-]{1,80}")


def _check_user_id(value: str) -> str:
    if not _USER_ID.fullmatch(value):
        raise ValueError(f"{describe_value(value)} is not a Slack user ID (U…/W…)")
    return value


def _check_channel(value: str) -> str:
    if _CHANNEL_ID.fullmatch(value) or _CHANNEL_NAME.fullmatch(value):
        return value
    message = f"{describe_value(value)} is not a Slack channel (#name or channel ID C…/G…/D…)"
    guess = "#" + value.lstrip("#").lower()
    if _CHANNEL_NAME.fullmatch(guess):
        message += f"; did you mean {guess!r}?"
    return _fail(message)


def _check_role_member(value: str) -> str:
    if _USER_ID.fullmatch(value) or _USERGROUP_ID.fullmatch(value) or _USERGROUP_HANDLE.fullmatch(value):
        return value
    message = f"{describe_value(value)} is not a Slack user ID (U…/W…), usergroup ID (S…) or @usergroup handle"
    if value.startswith("@") and _USERGROUP_HANDLE.fullmatch(value.lower()):
        message += f"; did you mean {value.lower()!r}?"
    return _fail(message)


def _fail(message: str) -> str:
    raise ValueError(message)


SlackUserId = Annotated[str, AfterValidator(_check_user_id)]
"""A Slack user ID: U… or W… (Enterprise Grid)."""

SlackChannelRef = Annotated[str, AfterValidator(_check_channel)]
"""A channel by name ("#general", quoted in YAML) or by ID (C…, G… private, D… direct message)."""

RoleMember = Annotated[str, AfterValidator(_check_role_member)]
"""Who may hold a role: a Slack user ID (U…/W…), a usergroup ID (S…) or a usergroup handle ("@platform")."""
