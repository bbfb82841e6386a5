"""Several `chatops serve` workers on one port (`WEB_CONCURRENCY` or `chatops serve --workers N`).

One Python process answers on one core. Each worker is a whole replica (the Slack endpoint, the alert webhooks and
every background loop), exactly as separate replicas would run: they share Redis's consumer group, the scheduler's
leader lease and every lock, so nothing here coordinates them. Each worker listens on its own socket bound with
SO_REUSEPORT, and the kernel spreads new connections over them.

The supervisor (this module) only forks, watches and stops:
- it reserves the port first (bound, never listening, so it receives no connection), which makes a port in use a
  clear start-up error and lets `PORT=0` pick one port for all workers;
- a worker that dies (a crash, `kill -9`, the OOM killer) is started again, after a back-off if it keeps dying;
  what it had not finished stays in Redis and a surviving worker takes it over, as with any replica;
- a worker that cannot start (exit code 2) stops them all: the others would fail the same way;
- SIGTERM or SIGINT is passed to every worker, which finish their requests and loops as a single process does;
  one still running after `stop_timeout` is killed;
- a worker whose supervisor dies gets SIGTERM (Linux's parent-death signal), so none is left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_CANNOT_START = 2

POLL_SECONDS = 0.2
STOP_TIMEOUT_SECONDS = 30.0
FIRST_RESTART_DELAY_SECONDS = 0.5
MAX_RESTART_DELAY_SECONDS = 30.0
HEALTHY_AFTER_SECONDS = 60.0  # a worker that lived this long resets the back-off

RunWorker = Callable[[socket.socket, int], int]


class PortUnavailable(OSError):
    """The address cannot be bound; `strerror` says why."""


def reserve(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) with SO_REUSEPORT and not listening: it holds the port (resolving 0 to a
    free one) and receives no connection. PortUnavailable when the address cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        holder.bind((host, port))
    except OSError as error:
        holder.close()
        raise PortUnavailable(error.errno, error.strerror) from None
    return holder


def listener(host: str, port: int) -> socket.socket:
    """One worker's own listening socket on the shared port (SO_REUSEPORT: the kernel balances between them)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def restart_delay(failures_in_a_row: int) -> float:
    """How long to wait before starting a worker again after `failures_in_a_row` quick deaths (doubling, capped)."""
    if failures_in_a_row <= 0:
        return 0.0
    return min(MAX_RESTART_DELAY_SECONDS, FIRST_RESTART_DELAY_SECONDS * 2 ** (failures_in_a_row - 1))


@dataclass
class Slot:
    """One worker position: its current process, when it started, and how often it died quickly in a row."""

    index: int
    pid: int | None = None
    started: float = 0.0
    quick_deaths: int = 0
    start_at: float = 0.0


@dataclass
class Supervisor:
    """Forks `count` workers running `run_worker(listening socket, worker index)` and keeps them running until
    stopped; `on_exit(pid)` is told of every worker that ended (to drop its metric files)."""

    count: int
    host: str
    port: int
    run_worker: RunWorker
    on_exit: Callable[[int], None] = lambda pid: None
    stop_timeout: float = STOP_TIMEOUT_SECONDS
    slots: list[Slot] = field(default_factory=list)
    stopping: bool = False
    exit_code: int = EXIT_OK

    def run(self) -> int:
        """Runs until SIGTERM/SIGINT (exit 0) or a worker that cannot start (exit 2)."""
        self.slots = [Slot(index) for index in range(self.count)]
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            while not self.stopping:
                self._start_due()
                self._reap()
                time.sleep(POLL_SECONDS)
            self._stop_all()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.exit_code

    def pids(self) -> list[int]:
        """The running workers' process ids."""
        return [slot.pid for slot in self.slots if slot.pid is not None]

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _start_due(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.pid is None and now >= slot.start_at and not self.stopping:
                slot.pid = self._fork(slot.index)
                slot.started = now

    def _fork(self, index: int) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        supervisor = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the supervisor's loop
            code = EXIT_CANNOT_START
            try:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)
                _die_with_parent(supervisor=supervisor)
                try:
                    sock = listener(self.host, self.port)
                except OSError as error:
                    log.error("worker %d cannot listen: %s", index, error.strerror)
                else:
                    code = self.run_worker(sock, index)
            except BaseException as error:  # a worker must not return into the supervisor's loop
                log.exception("worker %d failed: %s", index, type(error).__name__)
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        return pid

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.on_exit(pid)
            slot = next((s for s in self.slots if s.pid == pid), None)
            if slot is None:
                continue
            slot.pid = None
            code = os.waitstatus_to_exitcode(status)
            if self.stopping:
                continue
            if code == EXIT_CANNOT_START:
                log.error("worker %d could not start; stopping every worker", slot.index)
                self.exit_code = EXIT_CANNOT_START
                self.stopping = True
                continue
            now = time.monotonic()
            lived = now - slot.started
            slot.quick_deaths = 0 if lived >= HEALTHY_AFTER_SECONDS else slot.quick_deaths + 1
            delay = restart_delay(slot.quick_deaths)
            slot.start_at = now + delay
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            log.error(
                "worker %d (pid %d) ended (%s) after %.0f s; starting it again in %.1f s",
                slot.index,
                pid,
                how,
                lived,
                delay,
            )

    def _stop_all(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while self.pids() and time.monotonic() < deadline:
            self._reap()
            time.sleep(POLL_SECONDS / 4)
        for pid in self.pids():
            log.error("worker pid %d still running %.0f s after SIGTERM; killing it", pid, self.stop_timeout)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        while self.pids():
            self._reap()
            time.sleep(POLL_SECONDS / 4)


PR_SET_PDEATHSIG = 1


def _die_with_parent(*, supervisor: int) -> None:
    """Linux: this process gets SIGTERM when the supervisor dies (even by kill -9); if it died before this was
    set, the worker stops now. Elsewhere nothing."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor:
        os.kill(os.getpid(), signal.SIGTERM)
