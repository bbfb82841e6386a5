"""The configuration's YAML read with its source positions: the data, the line of every key (keyed by the path
pydantic reports, so a validation error can name its line), and what the text itself gets wrong before any schema
sees it: syntax, duplicate keys, aliases that contain themselves or expand into a bomb, excessive nesting, and
`key: #name` where YAML silently read a channel as a comment.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bot.shell.config_problems import ConfigError, ConfigProblem, KeyPath, format_path, ordered_problems
from integrations.types import describe_value

MAX_NODES = 100_000
"""More values than this (counting every alias expansion) is refused: a config is small, a YAML bomb is not."""
MAX_DEPTH = 64
"""Nesting deeper than this is refused."""

_MERGE_TAG = "tag:yaml.org,2002:merge"
_NULL_TAG = "tag:yaml.org,2002:null"
_NO_CONSTRUCTOR = "could not determine a constructor for the tag "
_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")
_COMMENTED_CHANNEL = re.compile(r"(?::|^\s*-)\s+(#[a-z0-9][a-z0-9._-]*)\s*(?:#.*)?$")


class _Loader(yaml.SafeLoader):
    """SafeLoader whose value errors (a date like 2024-02-30, `!!int x`) become YAML errors with a position."""

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (yaml.YAMLError, RecursionError):
            raise
        except Exception as error:
            raise ConstructorError(None, None, _unreadable(node, error), node.start_mark) from None


_TAG_KINDS = {
    "tag:yaml.org,2002:timestamp": "a date",
    "tag:yaml.org,2002:int": "a whole number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "true or false",
    "tag:yaml.org,2002:binary": "base64 data",
}


def _short_tag(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")


def _unreadable(node: Node, error: Exception) -> str:
    """ "cannot read '2024-02-30' as a date: day is out of range for month" for a scalar its tag cannot build."""
    shown = describe_value(node.value) if isinstance(node, ScalarNode) else "this value"
    kind = _TAG_KINDS.get(node.tag, _short_tag(node.tag))
    reason = f": {error}" if node.tag == "tag:yaml.org,2002:timestamp" and isinstance(error, ValueError) else ""
    return f"cannot read {shown} as {kind}{reason}"


@dataclass
class Document:
    data: Any = None
    lines: dict[KeyPath, int] = dataclasses.field(default_factory=dict)
    problems: list[ConfigProblem] = dataclasses.field(default_factory=list)


def read_yaml(text: str, source: str) -> Document:
    if not isinstance(text, str):
        raise ConfigError(source, [ConfigProblem("", f"the configuration is not text (got {describe_value(text)})")])
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            return Document()
        walk = _NodeWalk(text)
        walk.check(node, (), 0)
        if walk.fatal:
            raise ConfigError(source, ordered_problems(walk.problems))
        data = loader.construct_document(node)
        document = Document(data, problems=walk.problems)
        _record_lines(loader, node, data, (), document.lines, 0)
        return document
    except yaml.YAMLError as error:
        raise ConfigError(source, [_syntax_problem(error, text)]) from None
    except RecursionError:
        message = f"the file is nested more than {MAX_DEPTH} levels deep"
        raise ConfigError(source, [ConfigProblem("", message)]) from None
    finally:
        if loader is not None:
            loader.dispose()


def _syntax_problem(error: yaml.YAMLError, text: str) -> ConfigProblem:
    if isinstance(error, yaml.reader.ReaderError):
        line = text.count("\n", 0, error.position) + 1
        return ConfigProblem("", f"character U+{error.character:04X} is not allowed in a YAML file", line)
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "cannot be read"
        if error.context and problem.startswith("but "):  # "expected a single document…, but found another"
            problem = f"{error.context}, {problem}"
        if problem.startswith(_NO_CONSTRUCTOR):
            problem = "unsupported YAML tag " + _short_tag(problem.removeprefix(_NO_CONSTRUCTOR))
        message = problem if isinstance(error, ConstructorError) else f"YAML syntax error: {problem}"
        if mark is not None and "that cannot start any token" in problem:
            token = _token_at(text, mark.line, mark.column)
            if "'\\t'" in problem:
                message += "; indent with spaces, not tabs"
            elif token:
                message += f'; put the value in quotes: "{token}"'
        return ConfigProblem("", message, mark.line + 1 if mark is not None else None)
    return ConfigProblem("", f"YAML error: {error}")


def _yaml_lines(text: str) -> list[str]:
    """The text split where YAML counts lines (not at form feeds and the other breaks str.splitlines knows)."""
    return _LINE_BREAK.split(text)


def _token_at(text: str, line: int, column: int) -> str:
    lines = _yaml_lines(text)
    if line >= len(lines):
        return ""
    match = re.match(r"[^\s,\]}\"']+", lines[line][column:])
    token = match.group(0) if match else ""
    return token if len(token) <= 40 else ""


class _NodeWalk:
    """Checks the composed node graph before anything is built: duplicate keys, aliases that contain themselves,
    alias bombs, excessive nesting, and `key: #name` where YAML silently read the channel as a comment."""

    def __init__(self, text: str) -> None:
        self.lines = _yaml_lines(text)
        self.problems: list[ConfigProblem] = []
        self.fatal = False
        self.count = 0
        self.active: set[int] = set()

    def check(self, node: Node, path: KeyPath, depth: int) -> None:
        if self.fatal:
            return
        self.count += 1
        line = node.start_mark.line + 1
        if self.count > MAX_NODES:
            self._fatal((), f"the file holds more than {MAX_NODES} values once its aliases are expanded", line)
            return
        if depth > MAX_DEPTH:
            self._fatal(path, f"nested more than {MAX_DEPTH} levels deep", line)
            return
        if id(node) in self.active:
            self._fatal(path, "an alias here refers to a value that contains it", line)
            return
        if isinstance(node, ScalarNode):
            return
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                for index, item in enumerate(node.value):
                    self._commented_channel(item, (*path, index), item.start_mark.line)
                    self.check(item, (*path, index), depth + 1)
            elif isinstance(node, MappingNode):
                self._mapping(node, path, depth)
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: MappingNode, path: KeyPath, depth: int) -> None:
        seen: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag != _MERGE_TAG:
                identity = (key_node.tag, key_node.value)
                key_line = key_node.start_mark.line + 1
                if identity in seen:
                    self.problems.append(
                        ConfigProblem(
                            format_path(path),
                            f"duplicate key {describe_value(key_node.value)} (first at line {seen[identity]})",
                            key_line,
                        )
                    )
                else:
                    seen[identity] = key_line
                child = (*path, key_node.value)
                self._commented_channel(value_node, child, key_node.end_mark.line)
            else:
                child = (*path, "?")
                self.check(key_node, child, depth + 1)
            self.check(value_node, child, depth + 1)

    def _commented_channel(self, node: Node, path: KeyPath, line_index: int) -> None:
        """`announce_channel: #general` is a key with no value and a comment; say so instead of ignoring it."""
        if not (isinstance(node, ScalarNode) and node.tag == _NULL_TAG and node.value == "" and node.style is None):
            return
        if line_index >= len(self.lines):
            return
        match = _COMMENTED_CHANNEL.search(self.lines[line_index])
        if match:
            name = match.group(1)
            self.problems.append(
                ConfigProblem(
                    format_path(path),
                    f'YAML reads {name} as a comment, so this value is empty; write "{name}"',
                    line_index + 1,
                )
            )

    def _fatal(self, path: KeyPath, message: str, line: int) -> None:
        self.fatal = True
        self.problems.append(ConfigProblem(format_path(path), message, line))


def _record_lines(loader: _Loader, node: Node, data: Any, path: KeyPath, lines: dict[KeyPath, int], depth: int) -> None:
    """Maps each key path, with keys as built (so they match pydantic's locations), to the line of its key."""
    lines.setdefault(path, node.start_mark.line + 1)
    if depth > MAX_DEPTH:
        return
    if isinstance(node, SequenceNode) and isinstance(data, list):
        for index, (item_node, item) in enumerate(zip(node.value, data, strict=False)):
            lines[(*path, index)] = item_node.start_mark.line + 1
            _record_lines(loader, item_node, item, (*path, index), lines, depth + 1)
    elif isinstance(node, MappingNode) and isinstance(data, dict):
        for key_node, value_node in node.value:  # merges (<<) are already flattened in place by the constructor
            try:
                key = loader.construct_object(key_node, deep=True)
                hash(key)
            except Exception:
                continue
            if key not in data:
                continue
            lines[(*path, key)] = key_node.start_mark.line + 1
            _record_lines(loader, value_node, data[key], (*path, key), lines, depth + 1)
