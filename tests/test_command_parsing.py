"""Issue 16 item 4: one lexer and one flag parser for every command that takes flags, with one set of errors, and
command modules declared with an explicit `Command` object whose typos fail at import (pure, no network)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.platform.errors import UsageError
from commands import alerts, oncall
from commands.backup_grammar import parse_backup
from commands.deploy_grammar import parse_deploy, parse_rollback
from commands.framework import Command
from commands.lexer import NO_FLAGS


def _reason_of(result: object) -> str:
    if isinstance(result, tuple):  # (words, flags) of /alerts and /oncall
        return str(result[1].get("reason", ""))
    return str(getattr(result, "reason", ""))


# Every command that takes a flag: how to parse a text after its command word, and a text its flag may follow.
COMMANDS: dict[str, tuple[Callable[[str], object], str]] = {
    "/deploy": (parse_deploy, "web v1 to prod"),
    "/rollback": (parse_rollback, "web prod"),
    "/backup run": (parse_backup, "run appdb"),
    "/backup restore": (parse_backup, "restore appdb appdb-1 into RESTORE_URL"),
    "/alerts silence": (alerts.parse_args, "silence service=web 2h"),
    "/oncall override": (oncall.parse_args, "override primary @bob for 4h"),
}

SPELLINGS = [
    '--reason "two words"',
    '--reason="two words"',
    "--reason 'two words'",
    "--reason “two words”",  # the curly quotes Slack clients substitute
    '—reason "two words"',  # em dash: Slack turns -- into it
    '–reason "two words"',  # en dash: some clients turn -- into it
    '–reason="two words"',
    '--REASON "two  words"',
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("spelling", SPELLINGS)
def test_every_spelling_of_a_flag_works_in_every_command(command: str, spelling: str) -> None:
    parse, text = COMMANDS[command]
    assert _reason_of(parse(f"{text} {spelling}")) == "two words"
    assert _reason_of(parse(f"{spelling} {text}")) == "two words", "a flag may come first"


ERRORS = [
    ("--reason a --reason b", "`--reason` is given twice"),
    ("--reason a —reason b", "`--reason` is given twice"),
    ("--reason=a –reason=b", "`--reason` is given twice"),
    ("--reason", '`--reason` needs a value, e.g. `--reason "why you are doing this"`'),
    ('--reason "  "', '`--reason` needs a value, e.g. `--reason "why you are doing this"`'),
    ("--reason=", '`--reason` needs a value, e.g. `--reason "why you are doing this"`'),
    ("--frobnicate", "unknown option `--frobnicate`: `{slash}` takes"),
    ("—frobnicate", "unknown option `--frobnicate`: `{slash}` takes"),
    ("-x", "unknown option `-x`: `{slash}` takes"),
    ('--reason "unclosed', "A quote is not closed: put a matching quote at the end of the text."),
    (f"--reason {'x' * 301}", "the reason is too long (301 characters; at most 300)"),
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("flags", "message"), ERRORS)
def test_every_command_answers_flag_mistakes_with_the_same_errors(command: str, flags: str, message: str) -> None:
    parse, text = COMMANDS[command]
    with pytest.raises(UsageError) as caught:
        parse(f"{text} {flags}")
    assert caught.value.message.startswith(message.format(slash=command)), caught.value.message


@pytest.mark.parametrize(
    ("parse", "text", "slash"),
    [
        (parse_backup, "list appdb --reason x", "/backup list"),
        (parse_backup, "show appdb-1 —reason x", "/backup show"),
        (parse_deploy, "status —reason x", "/deploy status"),
        (alerts.parse_args, "ack a-1b2c3d --reason x", "/alerts ack"),
        (oncall.parse_args, "schedule primary –reason x", "/oncall schedule"),
    ],
)
def test_a_flag_where_it_does_not_apply_is_an_error_naming_it(
    parse: Callable[[str], object], text: str, slash: str
) -> None:
    with pytest.raises(UsageError) as caught:
        parse(text)
    assert caught.value.message == f"`--reason` does not apply here: `{slash}` takes no options"


def test_commands_without_flags_refuse_them_by_name_and_keep_words_and_quotes() -> None:
    assert NO_FLAGS.parse('"web" production', slash="/status").positional == ("web", "production")
    assert NO_FLAGS.parse("history -5", slash="/x").positional == ("history", "-5")  # a number, not a flag
    with pytest.raises(UsageError) as caught:
        NO_FLAGS.parse("web —verbose", slash="/status")
    assert caught.value.message == "unknown option `--verbose`: `/status` takes no options"


def _handler() -> None:
    """Stands in for a handler: the declaration is checked before anything runs."""


DOC = "Does a thing.\n\nUsage:\n  /thing <x>\n"


def test_a_misspelt_part_of_a_declaration_fails() -> None:
    with pytest.raises(TypeError, match="action"):
        Command(name="thing", doc=DOC, handler=None, action={})
    with pytest.raises(ValueError, match="read-only actions"):
        Command(name="thing", doc=DOC, handler=None, actions={}, read_only_actions=frozenset({"thing.show"}))
    with pytest.raises(ValueError, match="Usage: section"):
        Command(name="thing", doc="Does a thing.", handler=None)
    with pytest.raises(ValueError, match="slash command name"):
        Command(name="Thing!", doc=DOC, handler=None)


def test_a_command_module_with_a_typo_fails_at_import(tmp_path: Path) -> None:
    module = tmp_path / "typo_command.py"
    module.write_text(
        '"""Does a thing.\n\nUsage:\n  /typo <x>\n"""\n'
        "from commands.framework import Command\n\n"
        "async def handle(ctx): ...\n\n"
        "COMMAND = Command(name='typo', doc=__doc__, handler=handle, ACTION={'typo.go': handle})\n"
    )
    spec = importlib.util.spec_from_file_location("typo_command", module)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    try:
        with pytest.raises(TypeError, match="ACTION"):
            spec.loader.exec_module(loaded)
    finally:
        sys.modules.pop("typo_command", None)
