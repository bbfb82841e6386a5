"""The `/deploy` and `/rollback` grammar: good texts and the exact commands they give, bad texts and the exact
messages they get, and properties over any text (a command or UsageError, nothing else) and round trips."""

from __future__ import annotations

import html
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bot.platform.errors import UsageError
from commands.deploy_grammar import (
    DEPLOY_USAGE,
    KEYWORDS,
    MAX_REASON,
    ROLLBACK_USAGE,
    CancelCmd,
    DeployRequestCmd,
    HistoryCmd,
    LockCmd,
    LocksCmd,
    RollbackCmd,
    StatusCmd,
    UnlockCmd,
    parse_deploy,
    parse_rollback,
)
from integrations.types import format_duration

COMMANDS = (DeployRequestCmd, StatusCmd, HistoryCmd, CancelCmd, LockCmd, UnlockCmd, LocksCmd)
REQUEST_USAGE = DEPLOY_USAGE.splitlines()[0] + "\n" + DEPLOY_USAGE.splitlines()[1]

# --- good inputs -------------------------------------------------------------------------------------------------

GOOD_DEPLOYS = [
    ("web v1.2.3 to production", DeployRequestCmd("web", "v1.2.3", "production", "", False)),
    ("WEB V1.2.3 TO Production", DeployRequestCmd("web", "V1.2.3", "production", "", False)),
    ("  web   v1.2.3  to  staging  ", DeployRequestCmd("web", "v1.2.3", "staging", "", False)),
    ("web 3f9c2ab to staging", DeployRequestCmd("web", "3f9c2ab", "staging", "", False)),
    ("web 2026.11.23-1 to prod --force", DeployRequestCmd("web", "2026.11.23-1", "prod", "", True)),
    ("api-gw 1.0.0+build.5 to eu_west.prod", DeployRequestCmd("api-gw", "1.0.0+build.5", "eu_west.prod", "", False)),
    (
        'web@v1.4.2 production --reason "fix checkout"',
        DeployRequestCmd("web", "v1.4.2", "production", "fix checkout", False),
    ),
    ("web@v1.4.2 to staging", DeployRequestCmd("web", "v1.4.2", "staging", "", False)),
    ("Web@V2 Staging --force", DeployRequestCmd("web", "V2", "staging", "", True)),
    ("--force web v1 to prod", DeployRequestCmd("web", "v1", "prod", "", True)),
    ('--reason "late fix" --force web@v1 prod', DeployRequestCmd("web", "v1", "prod", "late fix", True)),
    # What Slack clients send: curly quotes, em and en dashes, escaped markup.
    ("web v1 to prod —reason “fix checkout” —force", DeployRequestCmd("web", "v1", "prod", "fix checkout", True)),
    ("web v1 to prod –force", DeployRequestCmd("web", "v1", "prod", "", True)),
    ("web v1 to prod —reason ‘hotfix’", DeployRequestCmd("web", "v1", "prod", "hotfix", False)),
    ("web v1 to prod --reason=“inline value”", DeployRequestCmd("web", "v1", "prod", "inline value", False)),
    ("web v1 to prod --reason='single quotes'", DeployRequestCmd("web", "v1", "prod", "single quotes", False)),
    ('web v1 to prod --reason "a &amp; b &lt;3"', DeployRequestCmd("web", "v1", "prod", "a & b <3", False)),
    ('web v1 to prod --reason "  lots   of\tspace  "', DeployRequestCmd("web", "v1", "prod", "lots of space", False)),
    (
        'web v1 to prod --reason "--no-cache broke it"',
        DeployRequestCmd("web", "v1", "prod", "--no-cache broke it", False),
    ),
    ("web v1 to prod --REASON oops", DeployRequestCmd("web", "v1", "prod", "oops", False)),
    ("web to to prod", DeployRequestCmd("web", "to", "prod", "", False)),  # four words: the version is `to`
    ("web@v1 to to", DeployRequestCmd("web", "v1", "to", "", False)),
    ("status", StatusCmd(None)),
    ("STATUS Web", StatusCmd("web")),
    ("status status", StatusCmd("status")),  # keywords are reserved in the first position only
    ("history web", HistoryCmd("web", None, 10)),
    ("history web production", HistoryCmd("web", "production", 10)),
    ("history web 25", HistoryCmd("web", None, 25)),
    ("history web production 50", HistoryCmd("web", "production", 50)),
    ("history web 5 1", HistoryCmd("web", "5", 1)),  # three words: the middle one is the environment
    ("cancel d-7k2m9x", CancelCmd("d-7k2m9x")),
    ("cancel D-7K2M9X", CancelCmd("d-7k2m9x")),
    ('lock production --reason "release freeze"', LockCmd("production", None, "release freeze", timedelta(hours=2))),
    (
        "lock production web --reason migration --for 30m",
        LockCmd("production", "web", "migration", timedelta(minutes=30)),
    ),
    ("lock prod —for 1d —reason “big launch”", LockCmd("prod", None, "big launch", timedelta(days=1))),
    ("lock prod --for=7d --reason=x", LockCmd("prod", None, "x", timedelta(days=7))),
    ("lock prod --reason x --for 1h30m", LockCmd("prod", None, "x", timedelta(hours=1, minutes=30))),
    ("unlock production", UnlockCmd("production", None)),
    ("UNLOCK production Web", UnlockCmd("production", "web")),
    ("locks", LocksCmd()),
]

GOOD_ROLLBACKS = [
    ("web production", RollbackCmd("web", "production", None, "")),
    ("Web Staging to v1.4.1", RollbackCmd("web", "staging", "v1.4.1", "")),
    ('web staging to v1.4.1 --reason "bad migration"', RollbackCmd("web", "staging", "v1.4.1", "bad migration")),
    ("web prod —reason “error rate”", RollbackCmd("web", "prod", None, "error rate")),
    ("web prod TO 3f9c2ab", RollbackCmd("web", "prod", "3f9c2ab", "")),
    ("status prod", RollbackCmd("status", "prod", None, "")),  # /rollback has no subcommands
    ("web to to v1", RollbackCmd("web", "to", "v1", "")),
]


@pytest.mark.parametrize(("text", "expected"), GOOD_DEPLOYS)
def test_good_deploy_texts(text: str, expected: object) -> None:
    assert parse_deploy(text) == expected


@pytest.mark.parametrize(("text", "expected"), GOOD_ROLLBACKS)
def test_good_rollback_texts(text: str, expected: RollbackCmd) -> None:
    assert parse_rollback(text) == expected


def test_commands_are_frozen() -> None:
    command = parse_deploy("web v1 to prod")
    with pytest.raises(AttributeError):
        command.service = "api"


def test_longest_reason_is_accepted() -> None:
    reason = "x" * MAX_REASON
    assert parse_deploy(f"web v1 to prod --reason {reason}") == DeployRequestCmd("web", "v1", "prod", reason, False)


# --- bad inputs --------------------------------------------------------------------------------------------------

USAGE = {form: line for line in DEPLOY_USAGE.splitlines() for form in [line.split()[1]]}
STATUS, HISTORY, CANCEL, LOCK, UNLOCK, LOCKS = (
    USAGE["status"],
    USAGE["history"],
    USAGE["cancel"],
    USAGE["lock"],
    USAGE["unlock"],
    USAGE["locks"],
)
NAME_RULE = "use lower-case letters, digits, `.`, `_` and `-`, starting with a letter or digit (at most 63 characters)"
VERSION_RULE = "use letters, digits, `.`, `_`, `+` and `-`, starting with a letter or digit (at most 128 characters)"

BAD_DEPLOYS = [
    (
        "",
        "`/deploy` needs a service, a version and an environment: write `/deploy <service> <version> to <env>`",
        DEPLOY_USAGE,
    ),
    ("help", "`help` is a reserved word, not a service: `/deploy help` shows the usage", DEPLOY_USAGE),
    ("web v1.2.3 prod", "`prod` is missing `to`: write `/deploy web v1.2.3 to prod`", REQUEST_USAGE),
    ("web", "`/deploy web` needs a version and an environment: write `/deploy web <version> to <env>`", REQUEST_USAGE),
    ("web v1", "`/deploy web v1` needs an environment: write `/deploy web v1 to <env>`", REQUEST_USAGE),
    ("web v1 to", "`to` needs an environment after it: write `/deploy web v1 to <env>`", REQUEST_USAGE),
    ("web to prod", "`/deploy web` is missing the version: write `/deploy web <version> to prod`", REQUEST_USAGE),
    ("web v1 on prod", "expected `to` after the version, not `on`: write `/deploy web v1 to <env>`", REQUEST_USAGE),
    ("web v1 to prod now please", "unexpected `now please` after `prod`", REQUEST_USAGE),
    ("web@v1", "`/deploy web@v1` needs an environment: write `/deploy web@v1 <env>`", REQUEST_USAGE),
    ("web@v1 to", "`to` needs an environment after it: write `/deploy web@v1 to <env>`", REQUEST_USAGE),
    ("web@v1 prod staging", "unexpected `staging` after `prod`", REQUEST_USAGE),
    ("web@ prod", "`web@` needs the version after `@`: write `/deploy web@<version> <env>`", REQUEST_USAGE),
    ("@v1 prod", "`@v1` needs the service before `@`: write `/deploy <service>@v1 <env>`", REQUEST_USAGE),
    ("status@v1 prod", "`status` is a reserved word and cannot be a service name here", REQUEST_USAGE),
    ('web "v1 2" to prod', f"version `v1 2` is not valid: {VERSION_RULE}", REQUEST_USAGE),
    ("web -v1 to prod", "unknown option `-v1`: `/deploy` takes `--reason` and `--force`", REQUEST_USAGE),
    ("web .v1 to prod", f"version `.v1` is not valid: {VERSION_RULE}", REQUEST_USAGE),
    ("web v1 to pröd", f"environment `pröd` is not a valid name: {NAME_RULE}", REQUEST_USAGE),
    ("web_! v1 to prod", f"service `web_!` is not a valid name: {NAME_RULE}", REQUEST_USAGE),
    ('"" v1 to prod', f'service `""` is not a valid name: {NAME_RULE}', REQUEST_USAGE),
    ("w`b v1 to prod", f"service `w'b` is not a valid name: {NAME_RULE}", REQUEST_USAGE),
    ("a" * 64 + " v1 to prod", f"service `{'a' * 39}…` is not a valid name: {NAME_RULE}", REQUEST_USAGE),
    ("web v1 to prod --force=yes", "`--force` takes no value: write just `--force`", REQUEST_USAGE),
    ("web v1 to prod --fast", "unknown option `--fast`: `/deploy` takes `--reason` and `--force`", REQUEST_USAGE),
    ("web v1 to prod —fast", "unknown option `--fast`: `/deploy` takes `--reason` and `--force`", REQUEST_USAGE),
    ("web v1 to prod --for 2h", "`--for` does not apply here: `/deploy` takes `--reason` and `--force`", REQUEST_USAGE),
    ("web v1 to prod --force --force", "`--force` is given twice", REQUEST_USAGE),
    ("web v1 to prod --reason a --reason b", "`--reason` is given twice", REQUEST_USAGE),
    ("web v1 to prod --reason", '`--reason` needs a value, e.g. `--reason "why you are doing this"`', REQUEST_USAGE),
    (
        "web v1 to prod --reason --force",
        '`--reason` needs a value, e.g. `--reason "why you are doing this"`',
        REQUEST_USAGE,
    ),
    (
        'web v1 to prod --reason "   "',
        '`--reason` needs a value, e.g. `--reason "why you are doing this"`',
        REQUEST_USAGE,
    ),
    ("web v1 to prod --reason=", '`--reason` needs a value, e.g. `--reason "why you are doing this"`', REQUEST_USAGE),
    (f"web v1 to prod --reason {'x' * 301}", "the reason is too long (301 characters; at most 300)", REQUEST_USAGE),
    (
        'web v1 to prod --reason "a\x1bb"',
        "the reason contains a control character: write it as plain text",
        REQUEST_USAGE,
    ),
    (
        'web v1 to prod --reason "unclosed',
        "A quote is not closed: put a matching quote at the end of the text.",
        DEPLOY_USAGE,
    ),
    ("web " * 1001, "That text is too long (4004 characters; at most 4000).", DEPLOY_USAGE),
    ("status web api", "unexpected `api` after `web`", STATUS),
    ("status --force", "`--force` does not apply here: `/deploy status` takes no options", STATUS),
    ("history", "`/deploy history` needs a service: write `/deploy history <service>`", HISTORY),
    ("history web 51", "`history` takes at most 50 (got 51)", HISTORY),
    ("history web prod 99999999999", "`history` takes at most 50 (got 99999999999)", HISTORY),
    ("history web 0", "`history` takes at least 1 (got 0)", HISTORY),
    ("history web -5", "`history` takes at least 1 (got -5)", HISTORY),
    ("history web prod many", "`many` is not a number: `history` ends with how many deploys to show, 1 to 50", HISTORY),
    ("history web prod 5 6", "unexpected `6` after `5`", HISTORY),
    ("history web --reason x", "`--reason` does not apply here: `/deploy history` takes no options", HISTORY),
    ("cancel", "`/deploy cancel` needs the deploy id: write `/deploy cancel d-…`", CANCEL),
    ("cancel 1234", "`1234` is not a deploy id: they look like `d-7k2m9x`", CANCEL),
    ("cancel d-abc", "`d-abc` is not a deploy id: they look like `d-7k2m9x`", CANCEL),
    ("cancel d-abcd d-efgh", "unexpected `d-efgh` after `d-abcd`", CANCEL),
    ("lock", '`/deploy lock` needs an environment: write `/deploy lock <env> --reason "…"`', LOCK),
    ("lock prod", 'a lock needs a reason: write `/deploy lock prod --reason "…"`', LOCK),
    ("lock prod web --for 1h", 'a lock needs a reason: write `/deploy lock prod web --reason "…"`', LOCK),
    ("lock prod web api --reason x", "unexpected `api` after `web`", LOCK),
    ("lock prod --reason x --for 8d", "`--for` can be at most 7d, not `8d`", LOCK),
    ("lock prod --reason x --for 2w", "`--for` can be at most 7d, not `2w`", LOCK),
    ("lock prod --reason x --for 0s", "`--for` must be longer than 0s", LOCK),
    ("lock prod --reason x --for soon", "`--for` takes a duration like 30m, 2h or 1d, not `soon`", LOCK),
    ("lock prod --reason x --for", "`--for` needs a value, e.g. `--for 2h`", LOCK),
    (
        "lock prod --reason x --force",
        "`--force` does not apply here: `/deploy lock` takes `--reason` and `--for`",
        LOCK,
    ),
    ("unlock", "`/deploy unlock` needs an environment: write `/deploy unlock <env>`", UNLOCK),
    ("unlock prod --reason x", "`--reason` does not apply here: `/deploy unlock` takes no options", UNLOCK),
    ("locks prod", "unexpected `prod` after `locks`", LOCKS),
]

BAD_ROLLBACKS = [
    ("", "`/rollback` needs a service and an environment: write `/rollback <service> <env>`"),
    ("web", "`/rollback web` needs an environment: write `/rollback web <env>`"),
    ("web to v1", "`/rollback web` needs the environment before `to`: write `/rollback web <env> to <version>`"),
    ("web prod v1", "`v1` is missing `to`: write `/rollback web prod to v1`"),
    ("web prod to", "`to` needs a version after it: write `/rollback web prod to <version>`"),
    ("web prod at v1", "expected `to` after the environment, not `at`: write `/rollback web prod to <version>`"),
    ("web prod to v1 now", "unexpected `now` after `v1`"),
    ("web@v1 prod", "`/rollback` takes the version after `to`: write `/rollback web prod to v1`"),
    ("web prod to v1!", f"version `v1!` is not valid: {VERSION_RULE}"),
    ("web prod --force", "`--force` does not apply here: `/rollback` takes `--reason`"),
    ("web prod --yes", "unknown option `--yes`: `/rollback` takes `--reason`"),
    ("web prod --reason", '`--reason` needs a value, e.g. `--reason "why you are doing this"`'),
]


@pytest.mark.parametrize(("text", "message", "usage"), BAD_DEPLOYS)
def test_bad_deploy_texts(text: str, message: str, usage: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_deploy(text)
    assert caught.value.message == message
    assert caught.value.usage == usage


@pytest.mark.parametrize(("text", "message"), BAD_ROLLBACKS)
def test_bad_rollback_texts(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_rollback(text)
    assert caught.value.message == message
    assert caught.value.usage == ROLLBACK_USAGE


# --- any text ----------------------------------------------------------------------------------------------------

WORDS = [
    "web",
    "WEB",
    "v1.2.3",
    "web@v1",
    "@",
    "to",
    "TO",
    "prod",
    "status",
    "history",
    "cancel",
    "lock",
    "unlock",
    "locks",
    "help",
    "d-abcd",
    "0",
    "10",
    "51",
    "-5",
    "--reason",
    "—reason",
    "--reason=",
    "--force",
    "—force",
    "--force=1",
    "--for",
    "--for=2h",
    "2h",
    "8d",
    "--fast",
    "-x",
    "--",
    "—",
    '"',
    "“",
    "”",
    "'",
    "&amp;",
    "x" * 70,
]
ANY_TEXT = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=8)), max_size=10).map(" ".join),
)


@settings(max_examples=400, deadline=None)
@given(ANY_TEXT)
def test_any_text_gives_a_deploy_command_or_a_usage_error(text: str) -> None:
    try:
        result = parse_deploy(text)
    except UsageError as error:
        assert error.message and error.usage
    else:
        assert isinstance(result, COMMANDS)


@settings(max_examples=400, deadline=None)
@given(ANY_TEXT)
def test_any_text_gives_a_rollback_or_a_usage_error(text: str) -> None:
    try:
        result = parse_rollback(text)
    except UsageError as error:
        assert error.message and error.usage == ROLLBACK_USAGE
    else:
        assert isinstance(result, RollbackCmd)


# --- round trips: a valid command written as a person (or Slack) would write it parses back to itself -----------

names = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,62}", fullmatch=True)
first_names = names.filter(lambda name: name not in KEYWORDS)
versions = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}", fullmatch=True)
deploy_ids = st.from_regex(r"d-[a-z0-9]{4,32}", fullmatch=True)
reasons = (
    st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=MAX_REASON)
    .map(lambda text: " ".join(text.split()))
    .filter(bool)
)
durations = st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=7))
QUOTES = [('"', '"'), ("'", "'"), ("“", "”"), ("‘", "’")]


class Writer:
    """Writes commands back to text, drawing the free choices (case, dashes, quotes, option places) at random."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw

    def name(self, name: str) -> str:
        return name.upper() if self.draw(st.booleans()) else name

    def to(self) -> str:
        return self.draw(st.sampled_from(["to", "TO", "To"]))

    def option(self, name: str, value: str | None = None) -> list[str]:
        dash = self.draw(st.sampled_from(["--", "—", "–"]))
        if value is None:
            return [f"{dash}{name}"]
        usable = [(open_, close) for open_, close in QUOTES if close not in value]
        assume(usable)
        open_, close = self.draw(st.sampled_from(usable))
        quoted = f"{open_}{value}{close}"
        if value[0] in "-—–" or self.draw(st.booleans()):  # a value that looks like an option goes inline
            return [f"{dash}{name}={quoted}"]
        return [f"{dash}{name}", quoted]

    def text(self, words: list[str], options: list[list[str]]) -> str:
        """The words in order with each option inserted at a drawn place, escaped as Slack escapes text."""
        units = [[word] for word in words]
        for option in options:  # an option and its value stay together
            at = self.draw(st.integers(0, len(units)))
            units.insert(at, option)
        return html.escape(" ".join(word for unit in units for word in unit), quote=False)


@st.composite
def deploy_cases(draw: st.DrawFn) -> tuple[str, object]:
    w = Writer(draw)
    kind = draw(st.sampled_from(["request", "status", "history", "cancel", "lock", "unlock", "locks"]))
    if kind == "request":
        cmd = DeployRequestCmd(
            draw(first_names), draw(versions), draw(names), draw(st.just("") | reasons), draw(st.booleans())
        )
        shape = draw(st.sampled_from(["to", "at", "at-to"]))
        if shape == "at" and cmd.environment == "to":
            shape = "at-to"  # `web@v1 to` reads as a missing environment
        if shape == "to":
            words = [w.name(cmd.service), cmd.version, w.to(), w.name(cmd.environment)]
        else:
            words = [
                f"{w.name(cmd.service)}@{cmd.version}",
                *([w.to()] if shape == "at-to" else []),
                w.name(cmd.environment),
            ]
        options = ([w.option("reason", cmd.reason)] if cmd.reason else []) + ([w.option("force")] if cmd.force else [])
        return w.text(words, options), cmd
    if kind == "status":
        status = StatusCmd(draw(st.none() | names))
        return w.text(["status", *([w.name(status.service)] if status.service else [])], []), status
    if kind == "history":
        history = HistoryCmd(draw(names), draw(st.none() | names), draw(st.integers(1, 50)))
        words = ["history", w.name(history.service)]
        if history.environment is not None:
            words.append(w.name(history.environment))
        # A lone number after the service is the count, so an all-digit environment needs the count after it.
        digits_env = history.environment is not None and history.environment.isdigit()
        if history.limit != 10 or digits_env or draw(st.booleans()):
            words.append(str(history.limit))
        return w.text(words, []), history
    if kind == "cancel":
        cancel = CancelCmd(draw(deploy_ids))
        return w.text(["cancel", w.name(cancel.deploy_id)], []), cancel
    if kind == "lock":
        lock = LockCmd(draw(names), draw(st.none() | names), draw(reasons), draw(durations))
        options = [w.option("reason", lock.reason)]
        if lock.duration != timedelta(hours=2) or draw(st.booleans()):
            options.append(w.option("for", format_duration(lock.duration)))
        return w.text(
            ["lock", w.name(lock.environment), *([w.name(lock.service)] if lock.service else [])], options
        ), lock
    if kind == "unlock":
        unlock = UnlockCmd(draw(names), draw(st.none() | names))
        return w.text(
            ["unlock", w.name(unlock.environment), *([w.name(unlock.service)] if unlock.service else [])], []
        ), unlock
    return w.text([w.draw(st.sampled_from(["locks", "LOCKS"]))], []), LocksCmd()


@st.composite
def rollback_cases(draw: st.DrawFn) -> tuple[str, RollbackCmd]:
    w = Writer(draw)
    cmd = RollbackCmd(draw(names), draw(names), draw(st.none() | versions), draw(st.just("") | reasons))
    assume(not (cmd.environment == "to" and cmd.version is None))  # `/rollback web to` reads as incomplete
    words = [w.name(cmd.service), w.name(cmd.environment)]
    if cmd.version is not None:
        words += [w.to(), cmd.version]
    return w.text(words, [w.option("reason", cmd.reason)] if cmd.reason else []), cmd


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(deploy_cases())
def test_deploy_commands_round_trip(case: tuple[str, object]) -> None:
    text, command = case
    assert parse_deploy(text) == command


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(rollback_cases())
def test_rollbacks_round_trip(case: tuple[str, RollbackCmd]) -> None:
    text, command = case
    assert parse_rollback(text) == command
