"""A backup program stopped mid-stream (a cancelled or failed backup) leaves no pipe open behind it: the dump's
stdout, unread past the stream reader's limit, is closed by `Subprocess.kill` at once rather than by the garbage
collector later (whose unclosed-transport warning then failed some unrelated test)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from integrations.backups.base import READ_LIMIT, Subprocess
from tests.waiting import eventually, within

pytestmark = [
    pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to see open descriptors"),
    pytest.mark.timeout(150),  # past the waits' 60 s, so a failure names what was awaited
]


def open_pipes() -> set[str]:
    """The pipes this process holds open, each as its inode ("pipe:[1234]")."""
    pipes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:  # the descriptor listdir itself used
            continue
        if target.startswith("pipe:"):
            pipes.add(target)
    return pipes


def bytes_written(pid: int) -> int:
    """How many bytes `pid` has written so far (its /proc/<pid>/io wchar)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


async def test_a_dump_stopped_mid_stream_leaves_no_pipe_open() -> None:
    before = open_pipes()
    # A dump that never ends, read by nobody: as a backup cancelled while its upload waits.
    dump = await Subprocess.start(
        [sys.executable, "-c", "import sys\nwhile True: sys.stdout.buffer.write(b'x' * 65536)"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        stdout=True,
    )
    assert open_pipes() - before, "the dump's pipes are open while it runs"
    # Once it has written more than the stream reader buffers before it pauses (twice its limit), the reader stops
    # short of the end of the stream: nothing will read the end, so only kill() can close the pipe.
    enough = 2 * READ_LIMIT
    await eventually(
        lambda: bytes_written(dump.process.pid) > enough, f"the dump to write more than {enough} bytes nobody reads"
    )
    await within(dump.kill(), "kill() to end the dump whose output nobody reads")
    assert dump.process.returncode is not None
    await eventually(lambda: not (open_pipes() - before), "the stopped dump's pipes to be closed")
