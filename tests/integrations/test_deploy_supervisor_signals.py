"""The command supervisor's SIGTERM handler survives SIGTERMs that arrive while it runs.

CI once left a supervisor stuck for good: its handler called `threading.Event.set`, a second SIGTERM arrived while
the first handler held the Event's lock, and the nested handler waited on that lock forever. The supervisor never
reaped its command, the zombie kept the command's process group alive, and the restarted bot waited for the step's
whole timeout before it released the deploy lock. The probe below runs the real handler and, at every line executed
inside it (its callees too), raises SIGTERM once more: the way a burst of signals would land, but at each point."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import integrations.deploy.supervise as supervise

PROBE = textwrap.dedent(
    """
    import os
    import signal
    import sys

    sys.path.insert(0, sys.argv[1])
    import supervise

    supervise._install_signal_handlers()
    handler = signal.getsignal(signal.SIGTERM)
    depth = 0
    raised_at = set()

    def tracer(frame, event, arg):
        global depth
        if event == "call" and frame.f_code is handler.__code__:
            depth += 1
        if depth == 1 and event == "line" and (frame.f_code, frame.f_lineno) not in raised_at:
            raised_at.add((frame.f_code, frame.f_lineno))
            signal.raise_signal(signal.SIGTERM)  # handled at the next check, inside the running handler
        if event == "return" and frame.f_code is handler.__code__:
            depth -= 1
        return tracer

    sys.settrace(tracer)
    signal.raise_signal(signal.SIGTERM)
    for _ in range(1000):  # Python code, so pending handlers run
        pass
    sys.settrace(None)
    print("requested" if supervise._told_to_stop(os.getppid()) else "lost", len(raised_at))
    """
)


def test_sigterm_inside_the_sigterm_handler_neither_deadlocks_nor_is_lost() -> None:
    folder = str(Path(supervise.__file__).parent)
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", PROBE, folder], capture_output=True, text=True, timeout=30, check=False
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(
            "the supervisor's SIGTERM handler deadlocked on a SIGTERM that arrived inside it"
        ) from None
    assert done.returncode == 0, done.stderr
    verdict, signals_inside = done.stdout.split()
    assert verdict == "requested", "the stop was lost"
    assert int(signals_inside) >= 1, "the probe raised no signal inside the handler: it tests nothing"
