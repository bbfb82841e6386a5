"""The command catalog: docstrings become help, text routes to the right command, no text crashes routing."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from bot.platform.errors import UsageError
from commands.catalog import parse_docstring
from commands.chatops import parse_audit_count
from commands.registry import COMMANDS, build_catalog

CATALOG = build_catalog()


def test_every_module_has_help_and_a_hint() -> None:
    assert len(CATALOG.specs) == len(COMMANDS) == 8
    for spec in CATALOG.specs:
        assert spec.summary.endswith(".")
        assert spec.usage and all(line.startswith(spec.slash) for line in spec.usage)
        assert spec.usage_hint


def test_commands_registered() -> None:
    assert [s.slash for s in CATALOG.specs] == [
        "/deploy",
        "/rollback",
        "/backup",
        "/status",
        "/oncall",
        "/incident",
        "/alerts",
        "/chatops",
    ]


def test_routing() -> None:
    route = CATALOG.route("/chatops", "deploy web v1 to staging")
    assert (route.spec.name, route.help, route.args) == ("deploy", False, "web v1 to staging")
    assert CATALOG.route("/deploy", "help").help
    assert CATALOG.route("/chatops", "help rollback").spec.name == "rollback"
    assert CATALOG.route("/chatops", "").help
    assert CATALOG.route("/chatops", "audit 3").args == "audit 3"


def test_docstring_sections() -> None:
    summary, description, sections = parse_docstring(
        "Does X.\n\nMore words.\n\nUsage:\n  /x a\n  /x b\nExamples:\n  /x a\n"
    )
    assert summary == "Does X."
    assert description == "More words."
    assert sections == {"usage": ["/x a", "/x b"], "examples": ["/x a"]}


@given(st.sampled_from([s.slash for s in CATALOG.specs] + ["/unknown"]), st.text())
def test_any_text_routes_somewhere(command: str, text: str) -> None:
    route = CATALOG.route(command, text)
    assert route.spec in CATALOG.specs


@given(st.lists(st.text(), max_size=3))
@example(["¹"])  # str.isdigit() is true for superscripts, int() refuses them: found by this test
@example(["٣"])
def test_audit_count_is_a_number_or_a_usage_error(words: list[str]) -> None:
    try:
        count = parse_audit_count(words)
    except UsageError as error:
        assert "audit" in error.message
    else:
        assert 1 <= count <= 100


def test_a_command_announced_but_not_built_says_so() -> None:
    from commands.framework import Command
    from commands.help import not_available

    spec = Command(name="pager", doc="Page someone by hand.\n\nUsage:\n  /pager @user <text>\n", handler=None).spec
    assert not spec.available
    assert not_available(spec).text.startswith(
        "`/pager` is not available yet in this version of chatops. It will: page someone by hand."
    )
