"""The supervisor a command deploy runs under, so that nothing a step starts outlives the bot that started it.

    python -I supervise.py --parent PID --timeout SECONDS --grace SECONDS -- PROGRAM [ARG...]

The bot starts this file (by path, standard library only, never through a shell); it starts PROGRAM in a
process group of its own, copies the group's output (stdout and stderr merged) to its stdout, and reports on
its stderr, one JSON object a line: `{"event": "started", "pid": N, "pgid": N}`, then `{"event": "exit",
"returncode": N, "timed_out": bool, "stopped": bool}`, or `{"event": "error", "kind": ..., "detail": ...}`
when PROGRAM cannot be started.

The group is stopped (SIGTERM, then SIGKILL after the grace period, then waited for until no process of it is
left) when the step's timeout passes, when the supervisor gets SIGTERM, and when the bot dies, even by
SIGKILL: Linux's PR_SET_PDEATHSIG sends this process SIGTERM then, and the parent pid is also polled in case
the bot died before that was set. So the step's work is over by its start + timeout + grace (plus a moment),
which is what a replica recovering the deploy relies on before it releases the lock.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time

_POLL = 0.05
_DRAIN = 2.0  # after the command exits, how long its leftovers may keep the output pipe open
_GONE_WAIT = 10.0  # after SIGKILL, how long to wait for the group to disappear (zombies wait for their reaper)
_PR_SET_PDEATHSIG = 1


class _StopRequest:
    """Set by the SIGTERM handler, read by the polling loop. A plain attribute, not a `threading.Event`: a handler
    that takes a lock deadlocks when a second SIGTERM arrives while the first handler holds it (CI caught a
    supervisor stuck that way for good, its command a zombie it never reaped, so the deploy's lock stayed taken)."""

    requested = False


def _request_stop(_signum: int, _frame: object) -> None:
    """The SIGTERM handler: safe to run again inside itself, as it is when SIGTERMs arrive close together."""
    _StopRequest.requested = True


def _install_signal_handlers() -> None:
    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def _report(**event: object) -> None:
    with contextlib.suppress(OSError):
        os.write(2, (json.dumps(event) + "\n").encode())


def _die_with_parent() -> None:
    """Asks Linux for SIGTERM when the parent dies; elsewhere the parent-pid poll does the job, a little later."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` is left (a zombie not yet reaped counts)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _stop_group(child: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM to the group, SIGKILL to whatever is left after `grace`, then waits until the group is gone."""
    _signal(child.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(grace)
    _signal(child.pid, signal.SIGKILL)  # the rest of the group, the command itself or not
    child.wait()
    end = time.monotonic() + _GONE_WAIT
    while group_alive(child.pid) and time.monotonic() < end:
        time.sleep(_POLL)


def _forward(source: int) -> None:
    """Copies the command's output to our stdout until every writer closed it; keeps reading if the bot is gone,
    so the command never blocks on a full pipe while it is being stopped."""
    sink_open = True
    while chunk := os.read(source, 65536):
        while sink_open and chunk:
            try:
                chunk = chunk[os.write(1, chunk) :]
            except OSError:
                sink_open = False


def _told_to_stop(parent: int) -> bool:
    return _StopRequest.requested or os.getppid() != parent


def _arguments(argv: list[str]) -> tuple[dict[str, float], list[str]]:
    """`--name value` pairs before `--`, the command after it (taken verbatim: it may hold `--` itself)."""
    split = argv.index("--")
    options = dict(zip(argv[:split:2], argv[1:split:2], strict=True))
    values = {name: float(options[f"--{name}"]) for name in ("parent", "timeout", "grace")}
    command = argv[split + 1 :]
    if not command:
        raise ValueError("no command after --")
    return values, command


def main(argv: list[str]) -> int:
    """Runs one command under supervision; see the module docstring."""
    try:
        options, command = _arguments(argv)
    except (ValueError, KeyError) as error:
        print(f"usage: supervise.py --parent PID --timeout S --grace S -- PROGRAM [ARG...] ({error})", file=sys.stderr)
        return 2
    parent, timeout, grace = int(options["parent"]), options["timeout"], options["grace"]

    _install_signal_handlers()
    _die_with_parent()
    if _told_to_stop(parent):  # the bot died (or asked us to stop) before we could watch it
        return 0

    read_end, write_end = os.pipe()
    try:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=write_end, stderr=write_end, process_group=0)
    except FileNotFoundError:
        _report(event="error", kind="not_found")
        return 0
    except PermissionError:
        _report(event="error", kind="not_executable")
        return 0
    except OSError as error:
        _report(event="error", kind="oserror", detail=error.strerror or type(error).__name__)
        return 0
    finally:
        os.close(write_end)
    _report(event="started", pid=child.pid, pgid=child.pid)
    forwarder = threading.Thread(target=_forward, args=(read_end,), daemon=True)
    forwarder.start()

    deadline = time.monotonic() + timeout
    timed_out = stopped = False
    while child.poll() is None:
        if _told_to_stop(parent):
            stopped = True
            _stop_group(child, grace)
        elif time.monotonic() >= deadline:
            timed_out = True
            _stop_group(child, grace)
        else:
            time.sleep(_POLL)

    forwarder.join(_DRAIN)
    if forwarder.is_alive():
        # A step is over when its command exits: what it left behind holding the output is killed.
        _signal(child.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.write(1, b"\n(killed processes the command left running with its output open)\n")
        forwarder.join(_DRAIN)
    _report(event="exit", returncode=child.returncode, timed_out=timed_out, stopped=stopped)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
