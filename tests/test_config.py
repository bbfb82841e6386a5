"""The configuration file: every problem reported at once, in people's words, with its line and key path; any text
gives a ChatopsConfig or a ConfigError; durations and Slack references validate and round-trip."""

from __future__ import annotations

import os
import string
from datetime import timedelta
from pathlib import Path
from typing import Literal

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field

from bot.shell.config import (
    ChatopsConfig,
    ConfigError,
    ConfigProblem,
    load_config,
    parse_config,
    parse_model,
    summary,
)
from integrations.types import (
    Duration,
    RoleMember,
    SlackChannelRef,
    SlackUserId,
    StrictModel,
    describe_value,
    format_duration,
    parse_duration,
)

REPO_ROOT = Path(__file__).resolve().parent.parent

FULL_CONFIG = """\
# Everything chatops.yaml holds today.
slack:
  announce_channel: "#general"
redis:
  key_prefix: chatops-prod
roles:
  admins: [U0123ADMIN]
  deployers: [U0DEV1, W0GRID2, "@platform"]
  approvers:
    - U0LEAD1
    - S0GROUP1
  responders: ["@sre", "@on-call.team_2"]
  auditors: []
"""


class Check(StrictModel):
    """A nested model as other sections will have them."""

    url: str
    every: Duration = timedelta(minutes=1)


class Service(StrictModel):
    kind: Literal["k8s", "ecs"] = "k8s"
    replicas: int = Field(default=1, ge=1)
    checks: list[Check] = Field(default_factory=list)
    channel: SlackChannelRef | None = None
    owner: SlackUserId | None = None


class Sections(StrictModel):
    """A tiny stand-in for future sections: durations, dicts of models, lists of models."""

    timeout: Duration = timedelta(seconds=5)
    services: dict[str, Service] = Field(default_factory=dict)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "chatops.yaml")
    return [str(problem) for problem in caught.value.problems]


def model_problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_model(text, Sections, "t.yaml")
    return [str(problem) for problem in caught.value.problems]


# --- valid files -------------------------------------------------------------------------------------------------


def test_a_full_config_is_read() -> None:
    config = parse_config(FULL_CONFIG, "chatops.yaml")
    assert config.slack.announce_channel == "#general"
    assert config.redis.key_prefix == "chatops-prod"
    assert config.role_members("deployers") == ("U0DEV1", "W0GRID2", "@platform")
    assert config.role_members("approvers") == ("U0LEAD1", "S0GROUP1")
    assert config.role_members("auditors") == ()
    assert config.role_members("nobody") == ()
    assert summary(config, "chatops.yaml") == "chatops.yaml: OK (5 roles, 8 members; announce channel #general)"


def test_the_example_config_is_valid() -> None:
    config = load_config(REPO_ROOT / "examples" / "chatops.yaml")
    assert config.role_members("admins") == ("U0DEMO",)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "~\n", "{}\n"])
def test_an_empty_file_is_the_default_config(text: str) -> None:
    config = parse_config(text)
    assert config == ChatopsConfig()
    assert config.redis.key_prefix == "chatops"
    assert config.slack.announce_channel is None
    assert summary(config, "c.yaml") == "c.yaml: OK (0 roles, 0 members; no announce channel)"


def test_summary_counts_distinct_members_in_the_singular_too() -> None:
    config = parse_config("roles:\n  admins: [U0A1]\n  deployers: [U0A1]\nslack: {announce_channel: C0123}\n")
    assert summary(config, "x.yaml") == "x.yaml: OK (2 roles, 1 member; announce channel C0123)"


def test_channel_ids_and_anchors_are_accepted() -> None:
    config = parse_config("roles:\n  approvers: &leads [U0LEAD1]\n  deployers: *leads\n")
    assert config.role_members("deployers") == ("U0LEAD1",)
    for channel in ("C024BE91L", "G0PRIVATE", "D0DIRECT", "#ops-alerts_2"):
        assert parse_config(f"slack: {{announce_channel: '{channel}'}}").slack.announce_channel == channel


def test_config_is_immutable() -> None:
    config = parse_config(FULL_CONFIG)
    with pytest.raises(Exception):  # noqa: B017 - pydantic's ValidationError for a frozen instance
        config.redis = None


# --- every message, exactly ----------------------------------------------------------------------------------------

BAD_CONFIGS = [
    pytest.param("slak: {}\n", ["line 1, slak: unknown key; did you mean 'slack'?"], id="unknown-top-level-key"),
    pytest.param(
        "wat: 1\n",
        [
            "line 1, wat: unknown key; expected one of: slack, roles, redis, services, deploys, alerts, backups, "
            "oncall, incidents, scheduler, status, status_page, retention, integrations"
        ],
        id="unknown-key-no-hint",
    ),
    pytest.param(
        "slack:\n  announce_chanel: '#ops'\n",
        ["line 2, slack.announce_chanel: unknown key; did you mean 'announce_channel'?"],
        id="unknown-nested-key",
    ),
    pytest.param(
        "redis:\n  prefix: x\n", ["line 2, redis.prefix: unknown key; did you mean 'key_prefix'?"], id="redis-key"
    ),
    pytest.param(
        "roles:\n  admins: [bob]\n",
        ["line 2, roles.admins[0]: 'bob' is not a Slack user ID (U…/W…), usergroup ID (S…) or @usergroup handle"],
        id="bad-role-member",
    ),
    pytest.param(
        "roles:\n  deployers:\n    - U0OK\n    - '@Platform'\n",
        [
            (
                "line 4, roles.deployers[1]: '@Platform' is not a Slack user ID (U…/W…), usergroup ID (S…) or "
                "@usergroup handle; did you mean '@platform'?"
            )
        ],
        id="handle-case",
    ),
    pytest.param(
        "slack:\n  announce_channel: general\n",
        [
            (
                "line 2, slack.announce_channel: 'general' is not a Slack channel (#name or channel ID C…/G…/D…); "
                "did you mean '#general'?"
            )
        ],
        id="channel-without-hash",
    ),
    pytest.param(
        "slack:\n  announce_channel: 'no such channel'\n",
        [("line 2, slack.announce_channel: 'no such channel' is not a Slack channel (#name or channel ID C…/G…/D…)")],
        id="bad-channel",
    ),
    pytest.param(
        "slack:\n  announce_channel: #general\n",
        ['line 2, slack.announce_channel: YAML reads #general as a comment, so this value is empty; write "#general"'],
        id="channel-read-as-comment",
    ),
    pytest.param(
        "roles:\n  Admins: [U0A1]\n  admin: [U0A1]\n",
        [
            (
                "line 2, roles.Admins: 'Admins' is not a valid role name (lowercase letters, digits, - and _, "
                "starting with a letter); did you mean 'admins'?"
            ),
            "line 3, roles.admin: role 'admin' looks like a typo; did you mean 'admins'?",
        ],
        id="role-names",
    ),
    pytest.param(
        "redis:\n  key_prefix: Chat Ops\n",
        ["line 2, redis.key_prefix: must be 1 to 32 lowercase letters, digits, - or _ (got 'Chat Ops')"],
        id="key-prefix",
    ),
    pytest.param(
        "roles:\n  admins: U0A1\n  deployers: [12, null]\n",
        [
            "line 2, roles.admins: must be a list (got 'U0A1')",
            "line 3, roles.deployers[0]: must be a string (got 12)",
            "line 3, roles.deployers[1]: must be a string (got nothing)",
        ],
        id="wrong-types",
    ),
    pytest.param(
        "slack: [a]\nroles: yes\nredis:\n",
        [
            "line 1, slack: must be a mapping (got a list)",
            "line 2, roles: must be a mapping (got true)",
            "line 3, redis: must be a mapping (got nothing)",
        ],
        id="sections-of-the-wrong-type",
    ),
    pytest.param(
        "1: x\n",
        ["line 1, 1: key must be a string (got 1)"],
        id="non-string-key",
    ),
    pytest.param(
        "roles:\n  admins: [@platform]\n",
        [
            (
                "line 2: YAML syntax error: found character '@' that cannot start any token; "
                'put the value in quotes: "@platform"'
            )
        ],
        id="syntax-at-sign",
    ),
    pytest.param(
        "slack:\n  announce_channel: '#a'\n roles: {}\n",
        ["line 3: YAML syntax error: expected <block end>, but found '<block mapping start>'"],
        id="syntax-indentation",
    ),
    pytest.param(
        "roles:\n\tadmins: []\n",
        ["line 2: YAML syntax error: found character '\\t' that cannot start any token; indent with spaces, not tabs"],
        id="syntax-tab",
    ),
    pytest.param(
        "slack: {}\nroles: {}\nroles: {}\n", ["line 3: duplicate key 'roles' (first at line 2)"], id="duplicate-key"
    ),
    pytest.param(
        "roles:\n  admins: [U0A1]\n  deployers: []\n  admins: [U0A2]\n",
        ["line 4, roles: duplicate key 'admins' (first at line 2)"],
        id="duplicate-nested-key",
    ),
    pytest.param(
        "- slack\n- roles\n",
        [
            "line 1: the file must be a mapping of sections such as slack:, roles:, redis:, services:, deploys:, "
            "alerts:, backups:, oncall:, incidents:, scheduler:, status:, status_page:, retention:, integrations: "
            "(got a list)"
        ],
        id="top-level-list",
    ),
    pytest.param(
        "hello\n",
        [
            "line 1: the file must be a mapping of sections such as slack:, roles:, redis:, services:, deploys:, "
            "alerts:, backups:, oncall:, incidents:, scheduler:, status:, status_page:, retention:, integrations: "
            "(got 'hello')"
        ],
        id="top-level-scalar",
    ),
    pytest.param(
        "a: 1\n---\nb: 2\n",
        ["line 2: YAML syntax error: expected a single document in the stream, but found another document"],
        id="two-documents",
    ),
    pytest.param(
        "when: 2024-02-30\n", ["line 1: cannot read '2024-02-30' as a date: day is out of range for month"], id="date"
    ),
    pytest.param("n: !!int\n", ["line 1: cannot read '' as a whole number"], id="empty-tagged-int"),
    pytest.param(
        "roles: &r {admins: *r}\n",
        ["line 1, roles.admins: an alias here refers to a value that contains it"],
        id="recursive-alias",
    ),
    pytest.param("a: \x00\n", ["line 1: character U+0000 is not allowed in a YAML file"], id="control-character"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_CONFIGS)
def test_each_bad_config_is_reported_exactly(text: str, expected: list[str]) -> None:
    assert problems(text) == expected


def test_all_problems_are_reported_at_once_in_file_order() -> None:
    text = "# chatops.yaml\nroles:\n  approvers: [U0A1]\n  admins: [bob]\n  deployers: [U0A2]\n\nslak: {}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "chatops.yaml")
    assert str(caught.value) == (
        "chatops.yaml: 2 problems\n"
        "  line 4, roles.admins[0]: "
        "'bob' is not a Slack user ID (U…/W…), usergroup ID (S…) or @usergroup handle\n"
        "  line 7, slak: unknown key; did you mean 'slack'?"
    )
    assert caught.value.source == "chatops.yaml"
    assert caught.value.problems[0] == ConfigProblem(
        "roles.admins[0]",
        "'bob' is not a Slack user ID (U…/W…), usergroup ID (S…) or @usergroup handle",
        4,
    )
    assert caught.value.problems[1].line == 7


def test_duplicates_and_invalid_values_are_reported_together() -> None:
    assert problems("roles:\n  admins: [x]\nroles:\n  admins: [y]\n") == [
        "line 3: duplicate key 'roles' (first at line 1)",
        "line 4, roles.admins[0]: 'y' is not a Slack user ID (U…/W…), usergroup ID (S…) or @usergroup handle",
    ]


def test_one_problem_is_singular() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("slak: {}\n", "c.yaml")
    assert str(caught.value) == "c.yaml: 1 problem\n  line 1, slak: unknown key; did you mean 'slack'?"


def test_line_numbers_follow_block_and_flow_styles() -> None:
    text = (
        "slack:\n"  # 1
        "  announce_channel: '#ok'\n"  # 2
        "roles:\n"  # 3
        "  admins:\n"  # 4
        "    - U0A1\n"  # 5
        "    - bad one\n"  # 6
        "  responders: {x: 1}\n"  # 7
        "redis: {key_prefix: ok, port: 1}\n"  # 8
    )
    assert problems(text) == [
        ("line 6, roles.admins[1]: 'bad one' is not a Slack user ID (U…/W…), usergroup ID (S…) or @usergroup handle"),
        "line 7, roles.responders: must be a list (got a mapping)",
        "line 8, redis.port: unknown key; expected one of: key_prefix, max_connections, pool_timeout, "
        "min_replicas_acked, "
        "wait_timeout",
    ]


# --- nested sections, as other engineers will add them --------------------------------------------------------------


def test_nested_models_dicts_and_lists_get_paths_hints_and_lines() -> None:
    text = (
        "services:\n"  # 1
        "  web:\n"  # 2
        "    kind: lambda\n"  # 3
        "    replicas: 0\n"  # 4
        "    chekcs: []\n"  # 5
        "    checks:\n"  # 6
        "      - url: /health\n"  # 7
        "        evrey: 5m\n"  # 8
        "      - every: 30s\n"  # 9
        "  api:\n"  # 10
        "    replicas: many\n"  # 11
        "    owner: bob\n"  # 12
    )
    assert model_problems(text) == [
        "line 3, services.web.kind: must be one of: k8s, ecs",
        "line 4, services.web.replicas: must be ≥ 1",
        "line 5, services.web.chekcs: unknown key; did you mean 'checks'?",
        "line 8, services.web.checks[0].evrey: unknown key; did you mean 'every'?",
        "line 9, services.web.checks[1].url: required key is missing",
        "line 11, services.api.replicas: must be a whole number (got 'many')",
        "line 12, services.api.owner: 'bob' is not a Slack user ID (U…/W…)",
    ]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("abc", "'abc'"),
        ("-5s", "'-5s'"),
        ("-5", "-5"),
        ("1.5", "1.5"),
        ("yes", "true"),
        ("30m1h", "'30m1h'"),
        ("[1]", "a list"),
        ("5 minutes", "'5 minutes'"),
    ],
)
def test_a_bad_duration_is_reported(value: str, shown: str) -> None:
    assert model_problems(f"timeout: {value}\n") == [
        f"line 1, timeout: must be a duration like 30s, 5m, 2h or 1d (got {shown})"
    ]


def test_durations_in_a_model() -> None:
    assert parse_model("timeout: 1h30m\n", Sections).timeout == timedelta(hours=1, minutes=30)
    assert parse_model("timeout: 90\n", Sections).timeout == timedelta(seconds=90)
    assert parse_model("timeout: '500ms'\n", Sections).timeout == timedelta(milliseconds=500)
    assert parse_model("", Sections).timeout == timedelta(seconds=5)
    assert Sections(timeout=timedelta(days=2)).model_dump(mode="json") == {"timeout": "2d", "services": {}}


# --- files ---------------------------------------------------------------------------------------------------------


def test_a_missing_file_is_a_problem_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: 1 problem\n  no such file ({path})"


def test_a_directory_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(str(tmp_path))
    assert caught.value.problems == (ConfigProblem("", f"this is a directory, not a file ({tmp_path})"),)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_file_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "secret.yaml"
    path.write_text("roles: {}\n")
    path.chmod(0)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems[0].message == f"cannot read the file: permission denied ({path})"


def test_a_file_that_is_not_utf8_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("slack: {}\nroles:\n  admins: [Jos\u00e9]\n".encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: 1 problem\n  line 3: the file is not UTF-8 text (byte 0xe9); save it as UTF-8"


def test_a_file_is_loaded_with_its_name_as_source(tmp_path: Path) -> None:
    path = tmp_path / "chatops.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + FULL_CONFIG.encode())  # a BOM, as some editors write
    assert load_config(path) == parse_config(FULL_CONFIG)
    path.write_text("slak: {}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert caught.value.source == str(path)


# --- hostile input -------------------------------------------------------------------------------------------------


def test_an_alias_bomb_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    assert problems("\n".join(lines) + "\n") == [
        "line 1: the file holds more than 100000 values once its aliases are expanded"
    ]


def test_deep_nesting_is_refused() -> None:
    deep = "a: " + "[" * 100 + "]" * 100 + "\n"
    assert problems(deep) == ["line 1, a" + "[0]" * 64 + ": nested more than 64 levels deep"]
    assert problems("[" * 5000) == ["the file is nested more than 64 levels deep"]


def test_unsafe_tags_are_refused() -> None:
    assert problems("x: !!python/object/apply:os.system [echo hi]\n") == [
        "line 1: unsupported YAML tag '!!python/object/apply:os.system'"
    ]


def test_huge_numbers_are_described_safely() -> None:
    assert problems("redis: {key_prefix: 0x" + "f" * 5000 + "}\n") == [
        "line 1, redis.key_prefix: must be a string (got a very large number)"
    ]


def _assert_config_or_error(text: str) -> None:
    try:
        result = parse_config(text, "fuzz.yaml")
    except ConfigError as error:
        assert error.problems
        assert str(error).startswith("fuzz.yaml: ")
    else:
        assert isinstance(result, ChatopsConfig)
        summary(result, "fuzz.yaml")


@settings(max_examples=300, deadline=None, database=None)
@given(st.text())
def test_any_text_gives_a_config_or_a_config_error(text: str) -> None:
    _assert_config_or_error(text)


YAML_ALPHABET = st.sampled_from(list(":-[]{},#&*!|>'\"%@`?\n\t ") + list(string.ascii_letters[:6]) + ["U0A1", "S0B"])


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(YAML_ALPHABET, max_size=60).map("".join))
def test_yaml_looking_text_gives_a_config_or_a_config_error(text: str) -> None:
    _assert_config_or_error(text)


scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
member_like = st.sampled_from(["U0A1", "W0B2", "S0C3", "@sre", "bob", "#general", "general", "C0123", ""])
keys = st.sampled_from(["slack", "roles", "redis", "admins", "announce_channel", "key_prefix", "slak"]) | st.text(
    max_size=10
)
json_like = st.recursive(
    scalars | member_like,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys | st.integers(), children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, database=None)
@given(json_like)
def test_any_data_dumped_to_yaml_gives_a_config_or_a_config_error(data: object) -> None:
    _assert_config_or_error(yaml.safe_dump(data, allow_unicode=True))


@settings(max_examples=200, deadline=None, database=None)
@given(
    st.fixed_dictionaries(
        {}, optional={"slack": json_like, "roles": st.dictionaries(keys, st.lists(member_like)), "redis": json_like}
    )
)
def test_config_shaped_data_gives_a_config_or_a_config_error(data: object) -> None:
    _assert_config_or_error(yaml.safe_dump(data, allow_unicode=True, default_flow_style=False))


# --- the value types -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1w", timedelta(weeks=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("500ms", timedelta(milliseconds=500)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("0s", timedelta(0)),
        ("90", timedelta(seconds=90)),
        (" 5m ", timedelta(minutes=5)),
        ("1m5s", timedelta(minutes=1, seconds=5)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "-5s", "1.5h", "5M", "1h1h", "30m1h", "s", "5 minutes", "9" * 80 + "d"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"^must be a duration like 30s, 5m, 2h or 1d \(got "):
        parse_duration(text)


def test_parse_duration_message_and_overflow() -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration("abc")
    assert str(caught.value) == "must be a duration like 30s, 5m, 2h or 1d (got 'abc')"
    with pytest.raises(ValueError):
        parse_duration("999999999999999d")


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(seconds=45), "45s"),
        (timedelta(days=2), "2d"),
        (timedelta(days=9), "1w2d"),
        (timedelta(0), "0s"),
        (timedelta(milliseconds=1500), "1s500ms"),
        (timedelta(microseconds=3), "3us"),
    ],
)
def test_format_duration(td: timedelta, text: str) -> None:
    assert format_duration(td) == text


def test_format_duration_refuses_negatives() -> None:
    with pytest.raises(ValueError):
        format_duration(timedelta(seconds=-1))


UNITS = [("w", None), ("d", 7), ("h", 24), ("m", 60), ("s", 60), ("ms", 1000), ("us", 1000)]


@st.composite
def canonical_durations(draw: st.DrawFn) -> str:
    """Durations as format_duration writes them: units largest first, each below the next unit up, no zeros."""
    chosen = draw(st.lists(st.sampled_from(range(len(UNITS))), min_size=1, max_size=len(UNITS), unique=True))
    parts = []
    for index in sorted(chosen):
        unit, limit = UNITS[index]
        upper = 10_000 if limit is None else limit - 1
        parts.append(f"{draw(st.integers(1, upper))}{unit}")
    return "".join(parts)


@settings(database=None)
@given(canonical_durations())
def test_duration_text_round_trips(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


@settings(database=None)
@given(st.timedeltas(min_value=timedelta(0)))
def test_duration_values_round_trip(td: timedelta) -> None:
    assert parse_duration(format_duration(td)) == td


def test_duration_type_accepts_ints_and_timedeltas_only_when_not_negative() -> None:
    assert Sections.model_validate({"timeout": 30}).timeout == timedelta(seconds=30)
    assert Sections.model_validate({"timeout": timedelta(minutes=2)}).timeout == timedelta(minutes=2)
    assert model_problems("timeout: -30\n") == ["line 1, timeout: must be a duration like 30s, 5m, 2h or 1d (got -30)"]
    assert model_problems("timeout: 1e400\n") == [
        "line 1, timeout: must be a duration like 30s, 5m, 2h or 1d (got '1e400')"
    ]


class People(StrictModel):
    user: SlackUserId | None = None
    channel: SlackChannelRef | None = None
    members: tuple[RoleMember, ...] = ()


@pytest.mark.parametrize("member", ["U0123ABC", "W0GRID", "S0GROUP", "@platform", "@on-call.team_2"])
def test_role_members_accepted(member: str) -> None:
    assert People(members=(member,)).members == (member,)


@pytest.mark.parametrize("member", ["bob", "u0123", "U1", "@", "@Platform", "<@U0123>", "S", " U0123"])
def test_role_members_rejected(member: str) -> None:
    with pytest.raises(ValueError, match="is not a Slack user ID"):
        People(members=(member,))


def test_slack_references() -> None:
    assert People(user="U0ABC", channel="#general").channel == "#general"
    with pytest.raises(ValueError, match=r"'S0ABC' is not a Slack user ID \(U…/W…\)"):
        People(user="S0ABC")
    with pytest.raises(ValueError, match="did you mean '#general'"):
        People(channel="General")
    with pytest.raises(ValueError, match=r"is not a Slack channel \(#name or channel ID C…/G…/D…\) \["):
        People(channel="#" + "x" * 81)


def test_describe_value() -> None:
    assert [describe_value(v) for v in (None, True, 3, 1.5, "abc", [1], {"a": 1}, b"x", timedelta(minutes=5))] == [
        "nothing",
        "true",
        "3",
        "1.5",
        "'abc'",
        "a list",
        "a mapping",
        "binary data",
        "5m",
    ]
    assert describe_value("x" * 100) == "'" + "x" * 39 + "…'"
    assert describe_value(10**100) == "a very large number"
