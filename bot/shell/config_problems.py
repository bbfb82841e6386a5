"""Problems in a configuration file, for the people who wrote it: `ConfigProblem` (a key path, a line, what is
wrong) and `ConfigError` (every problem at once), and pydantic's validation errors translated into them.

The translation walks pydantic's error location through the data and the declared model types together, so a
message can name the key as written in the file, its line, and the fix: "did you mean" for an unknown key, the
allowed values of a choice, the limits of a range. Nothing here knows a particular section: new sections need no
change.
"""

from __future__ import annotations

import difflib
import enum
import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, RootModel, ValidationError

from integrations.kinds import LazyKinds, LazyModel
from integrations.types import describe_value, format_duration

KeyPath: TypeAlias = tuple[Any, ...]
"""Where a value is in the file: mapping keys and list positions from the top."""


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the file: the dotted key path ("roles.admins[0]", "" for the file), what, and where."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = ", ".join(part for part in (f"line {self.line}" if self.line else "", self.path) if part)
        return f"{where}: {self.message}" if where else self.message


class ConfigError(Exception):
    """The configuration cannot be used; `problems` lists every reason, `str()` is the report for people."""

    def __init__(self, source: str, problems: Sequence[ConfigProblem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__(source, self.problems)

    def __str__(self) -> str:
        count = len(self.problems)
        header = f"{self.source}: {count} problem{'' if count == 1 else 's'}"
        return "\n".join([header, *(f"  {problem}" for problem in self.problems)])


def ordered_problems(problems: Sequence[ConfigProblem]) -> list[ConfigProblem]:
    """The problems without repeats, in the order of their lines (those without a line last)."""
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.line is None, p.line or 0))


# --- pydantic errors as problems for people --------------------------------------------------------------------

_KINDS = {
    "string_type": "a string",
    "string_unicode": "a string",
    "string_sub_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "decimal_type": "a number",
    "decimal_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "tuple_type": "a list",
    "set_type": "a list",
    "frozen_set_type": "a list",
    "iterable_type": "a list",
    "dict_type": "a mapping",
    "mapping_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "dataclass_type": "a mapping",
    "date_type": "a date (YYYY-MM-DD)",
    "date_parsing": "a date (YYYY-MM-DD)",
    "datetime_type": "a date and time",
    "datetime_parsing": "a date and time",
    "url_type": "a URL",
    "url_parsing": "a URL",
}
_COMPARISONS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", "≥"),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "≤"),
    "multiple_of": ("multiple_of", "a multiple of"),
}
_PREFIXES = ("Value error, ", "Assertion failed, ")
_MISSING = object()


def problems_from(
    error: ValidationError, model: type[BaseModel], data: Any, lines: Mapping[KeyPath, int]
) -> Iterator[ConfigProblem]:
    for detail in error.errors(include_url=False):
        try:
            yield _problem_from(detail, model, data, lines)
        except Exception:
            yield ConfigProblem(".".join(str(part) for part in detail.get("loc", ())), str(detail.get("msg")))


@dataclass
class _Location:
    keys: list[Any]  # as in the data: the path to look lines up by
    segments: list[tuple[bool, Any]]  # (is_index, key) for printing
    model_type: Any  # the declared type at the end of the path, or None when it cannot be told
    parent_type: Any
    about_key: bool  # the error is about the mapping key itself, not its value


def _problem_from(
    detail: Mapping[str, Any], model: type[BaseModel], data: Any, lines: Mapping[KeyPath, int]
) -> ConfigProblem:
    where = _locate(tuple(detail["loc"]), model, data)
    kind = detail["type"]
    if kind == "invalid_key":  # a non-string key where the model expects field names
        where.about_key = True
    message = _message(kind, detail, where)
    return ConfigProblem(_render(where.segments), message, _line_for(tuple(where.keys), lines))


def _message(kind: str, detail: Mapping[str, Any], where: _Location) -> str:
    value = detail.get("input")
    ctx = detail.get("ctx") or {}
    msg = str(detail.get("msg", ""))
    subject = "key " if where.about_key else ""
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return _unknown_key(where)
    if kind == "invalid_key":
        return f"key must be a string (got {describe_value(value)})"
    if kind == "union_tag_invalid":  # `kind: <unknown>` in a section chosen by kind (deployer, metric, ...)
        tags = re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
        tag = str(ctx.get("tag", ""))
        close = difflib.get_close_matches(tag, tags, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        field = str(ctx.get("discriminator", "kind")).strip("'")
        return f"unknown {field} {tag!r}; expected one of: {', '.join(tags)}{hint}"
    if kind in ("value_error", "assertion_error"):
        for prefix in _PREFIXES:
            if msg.startswith(prefix):
                return msg[len(prefix) :]
        return msg
    if kind in _KINDS:
        return f"{subject}must be {_KINDS[kind]} (got {describe_value(value)})"
    if kind in _COMPARISONS:
        name, symbol = _COMPARISONS[kind]
        return f"{subject}must be {symbol} {_limit(ctx.get(name))}"
    if kind in ("literal_error", "enum"):
        choices = _choices(where.model_type) or [ctx.get("expected", "")]
        return f"{subject}must be one of: {', '.join(str(choice) for choice in choices)}"
    if kind == "string_too_short":
        return f"{subject}must be at least {_count(ctx.get('min_length'), 'character')} long"
    if kind == "string_too_long":
        return f"{subject}must be at most {_count(ctx.get('max_length'), 'character')} long"
    if kind == "too_short":
        return f"must have at least {_count(ctx.get('min_length'), 'item')}"
    if kind == "too_long":
        return f"must have at most {_count(ctx.get('max_length'), 'item')}"
    if kind == "string_pattern_mismatch":
        return f"{subject}must match {ctx.get('pattern')} (got {describe_value(value)})"
    if kind == "finite_number":
        return f"{subject}must be a finite number (got {describe_value(value)})"
    if kind == "recursion_loop":
        return "refers to itself"
    if kind == "union_tag_invalid":  # a discriminated union's `kind:` names nothing we know
        return (
            f"{ctx.get('discriminator', 'kind').strip(chr(39))} {describe_value(ctx.get('tag'))} is not known; "
            f"use one of: {str(ctx.get('expected_tags', '')).replace(chr(39), '')}"
        )
    return subject + msg[:1].lower() + msg[1:]


def _unknown_key(where: _Location) -> str:
    allowed = allowed_keys(where.parent_type)
    key = where.keys[-1] if where.keys else ""
    if allowed and isinstance(key, str):
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        if close:
            return f"unknown key; did you mean {close[0]!r}?"
    if allowed:
        return f"unknown key; expected one of: {', '.join(allowed)}"
    return "unknown key"


def _limit(value: Any) -> str:
    return format_duration(value) if isinstance(value, timedelta) and value >= timedelta(0) else str(value)


def _count(number: Any, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _line_for(keys: KeyPath, lines: Mapping[KeyPath, int]) -> int | None:
    """The line of the key at `keys`, or of its nearest ancestor that is in the file (a missing key's parent)."""
    for end in range(len(keys), -1, -1):
        try:
            line = lines.get(keys[:end])
        except TypeError:  # an unhashable part
            continue
        if line is not None:
            return line
    return None


def _locate(loc: tuple[Any, ...], model: type[BaseModel], data: Any) -> _Location:
    """Walks pydantic's error location through the data and the declared types together: list positions become
    `[0]`, union member tags and `[key]` markers are dropped, and the model type at each step is known."""
    where = _Location(keys=[], segments=[], model_type=model, parent_type=None, about_key=False)
    current: Any = data
    for part in loc:
        if part == "[key]":
            where.about_key = True
            continue
        declared = _unwrap(where.model_type)
        members = _union_members(declared)
        in_data = isinstance(current, Mapping) and _find_key(current, part) is not _MISSING
        if members is not None and isinstance(part, str) and not in_data:
            where.model_type = _union_member(members, part)  # a tag naming the member that failed
            continue
        if isinstance(current, (list, tuple)) and isinstance(part, int):
            where.segments.append((True, part))
            where.keys.append(part)
            current = current[part] if -len(current) <= part < len(current) else _MISSING
        else:
            key = _find_key(current, part) if isinstance(current, Mapping) else _MISSING
            key = part if key is _MISSING else key
            is_index = isinstance(part, int) and not isinstance(current, Mapping) and _item_type(declared) is not None
            where.segments.append((is_index, key))
            where.keys.append(key)
            current = current.get(key, _MISSING) if isinstance(current, Mapping) else _MISSING
        where.parent_type = declared
        where.model_type = _child_type(declared, part)
    return where


def _find_key(mapping: Mapping[Any, Any], part: Any) -> Any:
    """The data key pydantic named `part` (pydantic writes a key it cannot show as str/int as its str())."""
    try:
        if part in mapping:
            return part
    except TypeError:
        return _MISSING
    for key in mapping:
        if isinstance(part, str) and not isinstance(key, str) and str(key) == part:
            return key
    return _MISSING


def _render(segments: list[tuple[bool, Any]]) -> str:
    text = ""
    for is_index, key in segments:
        if is_index:
            text += f"[{key}]"
        elif isinstance(key, str) and re.fullmatch(r"[A-Za-z0-9_-]+", key):
            text += f".{key}" if text else key
        elif isinstance(key, str):
            text += f"[{describe_value(key)}]"
        else:
            shown = "null" if key is None else describe_value(key)
            text += f".{shown}" if text else shown
    return text


def format_path(path: KeyPath) -> str:
    return _render([(isinstance(part, int) and not isinstance(part, bool), part) for part in path])


# --- walking declared types ------------------------------------------------------------------------------------


_TYPE_ALIAS: Any = getattr(typing, "TypeAliasType", None)


def _unwrap(tp: Any) -> Any:
    """Strips Annotated, `type X = ...` aliases, Optional and RootModel down to the type that holds the data."""
    for _ in range(32):
        if _TYPE_ALIAS is not None and isinstance(tp, _TYPE_ALIAS):  # `type X = ...` (Python 3.12+)
            tp = tp.__value__
        elif typing.get_origin(tp) is Annotated:
            # A lazily imported kind (integrations/kinds.py) declares what an eager annotation would have.
            lazy = next((m for m in tp.__metadata__ if isinstance(m, (LazyKinds, LazyModel))), None)
            tp = lazy.declared() if lazy is not None else typing.get_args(tp)[0]
        elif _is_union(tp):
            members = [arg for arg in typing.get_args(tp) if arg is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        elif isinstance(tp, type) and issubclass(tp, RootModel):
            tp = tp.model_fields["root"].annotation
        else:
            return tp
    return tp


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _union_members(tp: Any) -> list[Any] | None:
    if not _is_union(tp):
        return None
    return [arg for arg in typing.get_args(tp) if arg is not type(None)]


def _union_member(members: list[Any], tag: str) -> Any:
    for member in members:
        plain = _unwrap(member)
        if getattr(plain, "__name__", None) == tag:
            return member
    return None


def _model_fields(tp: Any) -> dict[str, Any] | None:
    """Field name as written in the file -> declared type, for a pydantic model; None for anything else."""
    if not (isinstance(tp, type) and issubclass(tp, BaseModel)):
        return None
    fields = {}
    for name, info in tp.model_fields.items():
        alias = info.validation_alias if isinstance(info.validation_alias, str) else info.alias
        lazy = next((m for m in info.metadata if isinstance(m, (LazyKinds, LazyModel))), None)
        fields[alias or name] = lazy.declared() if lazy is not None else info.annotation
    return fields


def allowed_keys(tp: Any) -> list[str]:
    fields = _model_fields(_unwrap(tp))
    return list(fields) if fields else []


def _item_type(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (list, set, frozenset) or (isinstance(origin, type) and issubclass(origin, Sequence)):
        args = typing.get_args(tp)
        return args[0] if args else Any
    return None


def _child_type(tp: Any, part: Any) -> Any:
    """The declared type one step below `tp` along `part` (a field name, a dict key or a list position)."""
    fields = _model_fields(tp)
    if fields is not None:
        return fields.get(part)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
        return args[part] if isinstance(part, int) and 0 <= part < len(args) else None
    if origin is dict or (isinstance(origin, type) and issubclass(origin, Mapping)):
        return args[1] if len(args) == 2 else None
    return _item_type(tp)


def _choices(tp: Any) -> list[Any]:
    plain = _unwrap(tp)
    if typing.get_origin(plain) is Literal:
        return list(typing.get_args(plain))
    if isinstance(plain, type) and issubclass(plain, enum.Enum):
        return [member.value for member in plain]
    return []
