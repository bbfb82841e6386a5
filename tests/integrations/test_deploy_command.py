"""The command deployer against real scripts written to a temp folder: argv and environment, streamed and batched
output, exit codes, the timeout that kills the whole process group, a missing program, and proof that no shell
ever sees the user's text."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import time
from pathlib import Path

import pytest

from integrations.deploy.base import DeployStep, ThrottledEmit
from integrations.deploy.command import CommandDeployerSettings, build
from tests.waiting import eventually


def make_step(**overrides: object) -> DeployStep:
    values: dict[str, object] = {
        "deploy_id": "d-1",
        "service": "web",
        "environment": "production",
        "version": "v1.4.2",
        "previous_version": "v1.4.1",
        "weight": 10,
        "rollback": False,
        "requested_by": "U0ALICE",
    }
    values.update(overrides)
    return DeployStep(**values)


def write_script(folder: Path, name: str, body: str) -> Path:
    """An executable Python script (argv and environment are easiest to record exactly from Python)."""
    path = folder / name
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return path


def write_sh(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


class Lines:
    """An `emit` that keeps every message it was given."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    async def __call__(self, text: str) -> None:
        self.messages.append(text)

    @property
    def lines(self) -> list[str]:
        return [line for message in self.messages for line in message.split("\n")]


def deployer(argv: list[str], **settings: object):
    environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PARENT_ONLY": "from-parent"}
    return build(CommandDeployerSettings(kind="command", argv=argv, **settings), environ=environ, http=None)


RECORD = """
import json, os, sys
with open(os.environ["RECORD"], "w") as f:
    json.dump({"argv": sys.argv[1:], "env": dict(os.environ), "cwd": os.getcwd()}, f)
print("recorded")
"""


async def test_argv_is_rendered_element_by_element_and_the_step_is_in_the_environment(tmp_path: Path) -> None:
    script = write_script(tmp_path, "deploy.py", RECORD)
    record = tmp_path / "record.json"
    d = deployer(
        [
            str(script),
            "{service}",
            "{version}",
            "{environment}",
            "{weight}",
            "--id={deploy_id}",
            "{previous_version}",
            "literal {{braces}}",
        ],
        env={"RECORD": str(record), "TARGET": "{service}@{environment}"},
        cwd=str(tmp_path),
    )
    emit = Lines()
    result = await d.apply(make_step(), emit)
    assert result.ok, result
    assert result.summary.startswith("command succeeded")
    seen = json.loads(record.read_text())
    assert seen["argv"] == ["web", "v1.4.2", "production", "10", "--id=d-1", "v1.4.1", "literal {braces}"]
    env = seen["env"]
    assert {
        name: env[name]
        for name in (
            "SERVICE",
            "VERSION",
            "ENVIRONMENT",
            "WEIGHT",
            "DEPLOY_ID",
            "PREVIOUS_VERSION",
            "ROLLBACK",
            "REQUESTED_BY",
        )
    } == {
        "SERVICE": "web",
        "VERSION": "v1.4.2",
        "ENVIRONMENT": "production",
        "WEIGHT": "10",
        "DEPLOY_ID": "d-1",
        "PREVIOUS_VERSION": "v1.4.1",
        "ROLLBACK": "false",
        "REQUESTED_BY": "U0ALICE",
    }
    assert env["PARENT_ONLY"] == "from-parent"  # added to the parent environment, not instead of it
    assert env["TARGET"] == "web@production"
    assert Path(seen["cwd"]) == tmp_path
    assert "recorded" in emit.lines
    assert await d.resume(make_step(), "anything", emit) is None
    await d.aclose()


async def test_weight_none_renders_as_100_and_previous_version_none_as_empty(tmp_path: Path) -> None:
    script = write_script(tmp_path, "deploy.py", RECORD)
    record = tmp_path / "record.json"
    d = deployer([str(script), "{weight}", "{previous_version}"], env={"RECORD": str(record)})
    assert (await d.apply(make_step(weight=None, previous_version=None, rollback=True), Lines())).ok
    seen = json.loads(record.read_text())
    assert seen["argv"] == ["100", ""]
    assert (
        seen["env"]["WEIGHT"] == "100" and seen["env"]["PREVIOUS_VERSION"] == "" and seen["env"]["ROLLBACK"] == "true"
    )


@pytest.mark.parametrize(
    "version",
    [
        "; rm -rf /",
        "$(touch PWNED)",
        "`touch PWNED`",
        "v1 && touch PWNED",
        "a b\tc\nd",
        "'\"{service}",
        "| touch PWNED",
        "*",
    ],
)
async def test_user_text_is_one_literal_argument_never_a_shell(tmp_path: Path, version: str) -> None:
    script = write_script(tmp_path, "deploy.py", RECORD)
    record = tmp_path / "record.json"
    d = deployer(
        [str(script), "{service}", "{version}", "--v={version}"], env={"RECORD": str(record)}, cwd=str(tmp_path)
    )
    result = await d.apply(make_step(version=version), Lines())
    assert result.ok, result
    seen = json.loads(record.read_text())
    assert seen["argv"] == ["web", version, f"--v={version}"]
    assert seen["env"]["VERSION"] == version
    assert not (tmp_path / "PWNED").exists()
    # The deploy has finished: listing a small tmp directory blocks nothing worth a thread.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy.py", "record.json"]  # noqa: ASYNC240


async def test_output_streams_in_order_and_the_exit_code_decides(tmp_path: Path) -> None:
    script = write_sh(tmp_path, "deploy.sh", 'echo "building $1"\necho "warning on stderr" >&2\necho done\nexit "$2"\n')
    ok = Lines()
    result = await deployer([str(script), "{service}", "0"]).apply(make_step(), ok)
    assert result.ok and result.external_id is None
    assert ok.lines == ["building web", "warning on stderr", "done"]

    failed = Lines()
    result = await deployer([str(script), "{service}", "3"]).apply(make_step(), failed)
    assert not result.ok
    assert result.summary == "command failed with exit code 3: done"


async def test_a_chatty_command_is_batched_not_dropped_and_long_lines_are_clipped(tmp_path: Path) -> None:
    script = write_script(
        tmp_path,
        "chatty.py",
        "import sys\nfor i in range(300):\n    print(f'line {i}')\nprint('x' * 2000)\nprint('y' * 100000, end='')\n",
    )
    emit = Lines()
    started = time.monotonic()
    result = await deployer([str(script)], output_per_second=5).apply(make_step(), emit)
    assert result.ok, result
    assert emit.lines[:300] == [f"line {i}" for i in range(300)]
    assert emit.lines[300] == "x" * 499 + "…"
    assert emit.lines[301] == "y" * 499 + "…"
    assert len(emit.lines) == 302
    # 300 lines in a few messages, not 300 messages; and the rate was respected.
    assert len(emit.messages) <= 6
    assert time.monotonic() - started >= (len(emit.messages) - 1) / 5 - 0.05


class HandTime:
    """A clock and a `sleep` for ThrottledEmit that only the test moves: a sleeper wakes when `advance` reaches it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Waits until the test advances the clock `seconds` past now."""
        woken = asyncio.get_running_loop().create_future()
        self.sleepers.append((self.now + seconds, woken))
        await woken

    def asleep_until(self) -> float | None:
        """When the one sleeper (the throttle) wants to wake, or None while nothing sleeps."""
        return self.sleepers[0][0] if self.sleepers else None

    def advance_to(self, when: float) -> None:
        """Moves the clock to `when`, waking every sleeper due by then."""
        self.now = when
        due = [sleeper for sleeper in self.sleepers if sleeper[0] <= when + 1e-9]
        self.sleepers = [sleeper for sleeper in self.sleepers if sleeper not in due]
        for _, woken in due:
            woken.set_result(None)


async def test_throttled_emit_sends_at_most_n_messages_a_second() -> None:
    time_ = HandTime()
    sent: list[tuple[float, str]] = []

    async def emit(text: str) -> None:
        sent.append((time_(), text))

    out = ThrottledEmit(emit, per_second=10, clock=time_, sleep=time_.sleep)
    out.add("a0")  # the first line goes at once
    await eventually(lambda: len(sent) == 1, "the first line to be sent at once")
    for when, line in ((0.03, "a1"), (0.06, "a2"), (0.09, "a3")):  # a line every 30 ms: faster than 10 a second
        time_.advance_to(when)
        out.add(line)
        wakes = await eventually(time_.asleep_until, "the throttle to wait for its next slot")
        assert wakes == pytest.approx(0.1)  # not before a tenth of a second after the last message
    time_.advance_to(0.1)
    await eventually(lambda: len(sent) == 2, "the waiting lines to be sent in the next slot")
    time_.advance_to(0.12)
    out.add("a4")
    assert await eventually(time_.asleep_until, "the throttle to wait for its next slot") == pytest.approx(0.2)
    time_.advance_to(0.2)
    await eventually(lambda: len(sent) == 3, "the last line to be sent in its slot")
    await out.aclose()
    assert [when for when, _ in sent] == pytest.approx([0.0, 0.1, 0.2])
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(sent)]
    assert all(gap >= 0.1 - 1e-9 for gap in gaps), gaps
    assert "\n".join(text for _, text in sent).split("\n") == [f"a{i}" for i in range(5)]
    assert len(sent) < 5  # some lines were batched together


async def test_a_backlog_beyond_its_limit_says_how_many_lines_it_skipped() -> None:
    sent: list[str] = []

    async def emit(text: str) -> None:
        sent.append(text)

    out = ThrottledEmit(emit, per_second=1000, max_chars=100, max_backlog=2)
    for i in range(100):
        out.add(f"line {i:03d}")  # 8 characters and a newline: 22 fit in the 200-character backlog
    await out.aclose()
    lines = "\n".join(sent).split("\n")
    assert lines[0] == "… 78 lines not shown"
    assert lines[1:] == [f"line {i:03d}" for i in range(78, 100)]


async def test_a_failing_emit_does_not_change_the_outcome(tmp_path: Path) -> None:
    async def broken(text: str) -> None:
        raise RuntimeError("slack is down")

    script = write_sh(tmp_path, "deploy.sh", "echo hello\n")
    assert (await deployer([str(script)]).apply(make_step(), broken)).ok


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie left for init to reap counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def wait_dead(pid: int, what: str) -> None:
    """Returns once `pid` has ended; fails naming `what` (the process that survived)."""
    # Shorter than the default deadline on purpose: these scripts `sleep 60`, so a process that was never killed
    # would end by itself a minute after it started; 40 s proves the kill and is still generous under load.
    await eventually(lambda: not alive(pid), f"{what} (pid {pid}) to end", deadline=40)


def pid_written(pid_file: Path) -> bool:
    """Whether the script has written its pid into `pid_file`."""
    return pid_file.exists() and bool(pid_file.read_text().strip())


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # The child ignores SIGTERM, so only the SIGKILL after the grace period ends it.
    script = write_sh(
        tmp_path,
        "slow.sh",
        f"""
sh -c 'trap "" TERM; echo $$ > {pids}.child; while true; do sleep 0.1; done' &
echo $$ > {pids}.main
echo started
sleep 60
""",
    )
    emit = Lines()
    # Without the kill the script would sleep a minute: the suite's per-test timeout fails such a hang.
    result = await deployer([str(script)], timeout="1s", kill_grace="500ms").apply(make_step(), emit)
    assert not result.ok
    assert result.summary == "timed out after 1s"
    assert "started" in emit.lines
    for name in ("main", "child"):
        pid = int((tmp_path / f"pids.{name}").read_text())
        await wait_dead(pid, f"the {name} process")


async def test_processes_left_holding_the_output_are_killed_when_the_command_exits(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = write_sh(tmp_path, "leaves.sh", f"sh -c 'echo $$ > {pids}; sleep 60' &\necho bye\nexit 0\n")
    result = await deployer([str(script)]).apply(make_step(), Lines())
    assert result.ok
    await wait_dead(int(pids.read_text()), "the process left holding the output")


async def test_cancelling_the_step_kills_the_command(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = write_sh(tmp_path, "slow.sh", f"echo $$ > {pid_file}\nsleep 60\n")
    task = asyncio.create_task(deployer([str(script)], kill_grace="500ms").apply(make_step(), Lines()))
    await eventually(lambda: pid_written(pid_file), "the command to start and write its pid")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_dead(int(pid_file.read_text()), "the cancelled command")


async def test_aclose_kills_running_commands(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = write_sh(tmp_path, "slow.sh", f"echo $$ > {pid_file}\nsleep 60\n")
    d = deployer([str(script)], kill_grace="500ms")
    task = asyncio.create_task(d.apply(make_step(), Lines()))
    await eventually(lambda: pid_written(pid_file), "the command to start and write its pid")
    await d.aclose()
    result = await task
    assert not result.ok and "SIGTERM" in result.summary
    await wait_dead(int(pid_file.read_text()), "the command running when the deployer closed")


async def test_missing_and_unexecutable_programs(tmp_path: Path) -> None:
    result = await deployer(["./scripts/deploy.sh", "{service}"], cwd=str(tmp_path)).apply(make_step(), Lines())
    assert result == type(result)(ok=False, summary="command not found: ./scripts/deploy.sh")

    (tmp_path / "scripts").mkdir()
    plain = tmp_path / "scripts" / "deploy.sh"
    plain.write_text("#!/bin/sh\necho hi\n")  # not executable
    if os.geteuid() != 0 or not os.access(plain, os.X_OK):
        result = await deployer(["./scripts/deploy.sh"], cwd=str(tmp_path)).apply(make_step(), Lines())
        assert result.summary == "command not executable: ./scripts/deploy.sh"

    result = await deployer(["/bin/true"], cwd=str(tmp_path / "nowhere")).apply(make_step(), Lines())
    assert not result.ok and result.summary.startswith("working directory not found")


def test_settings_reject_bad_templates_and_empty_argv() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"unknown placeholder \{servce\}"):
        CommandDeployerSettings(kind="command", argv=["deploy", "{servce}"])
    with pytest.raises(ValidationError):
        CommandDeployerSettings(kind="command", argv=[])
    with pytest.raises(ValidationError):
        CommandDeployerSettings(kind="command", argv=["x"], env={"BAD=NAME": "v"})
    with pytest.raises(ValidationError, match="longer than 0s"):
        CommandDeployerSettings(kind="command", argv=["x"], timeout="0s")
    settings = CommandDeployerSettings(kind="command", argv=["x"], timeout="10m")
    assert settings.timeout.total_seconds() == 600
