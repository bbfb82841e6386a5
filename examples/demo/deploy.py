"""The deploy script of the demo service: what the `command` deploy provider runs for each step of a deploy.

    python examples/demo/deploy.py <service> <version> <environment> <weight>

It (re)starts `app.py` for that environment on the environment's port (staging 8081, production 8082, or
$DEMO_PORT), detached from this script so it outlives it, with its output in a log file. Its pid and version are
kept in $DEMO_STATE_DIR (default `.chatops-dev/demo/`), so the next deploy stops the old version first (SIGTERM,
then SIGKILL; a stale pid is ignored). It exits 0 once the new version answers on its port (any HTTP status: the
health check is the bot's job), and non-zero with a message when the version is `broken` (a deploy script that
fails) or the app does not come up within 5 s. A weight under 100 is a canary step: the demo has one instance, so
it runs the new version and prints the traffic split; later steps of the same canary do not restart it.
Progress lines go to stdout, flushed, for the bot to stream into Slack.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

APP = Path(__file__).resolve().with_name("app.py")
PORTS = {"staging": 8081, "production": 8082}
"""The port of each environment, unless $DEMO_PORT says otherwise."""
DEFAULT_STATE_DIR = ".chatops-dev/demo"
START_TIMEOUT = 5.0
STOP_GRACE = 2.0
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


class DeployFailed(Exception):
    """The deploy did not happen; the message says why."""


@dataclass(frozen=True)
class Running:
    """What the state dir says runs for a service in an environment."""

    pid: int
    version: str
    port: int
    weight: int
    replaced: str | None = None  # the version this one took over from, for the canary's traffic split


def say(line: str) -> None:
    """One progress line, flushed at once so the bot streams it as it happens."""
    print(line, flush=True)


def main(argv: list[str]) -> int:
    """Runs one deploy step; the exit status is what the command provider reports."""
    if len(argv) != 4:
        print("usage: deploy.py <service> <version> <environment> <weight>", file=sys.stderr, flush=True)
        return 2
    service, version, environment, weight_text = argv
    try:
        weight = _check_arguments(service, version, environment, weight_text)
        deploy(service, version, environment, weight)
    except DeployFailed as failure:
        print(f"deploy failed: {failure}", file=sys.stderr, flush=True)
        return 1
    return 0


def deploy(service: str, version: str, environment: str, weight: int) -> None:
    """Stops what runs, starts `version`, waits for it to answer and reports the traffic split."""
    port = _port(environment)
    state = Path(os.environ.get("DEMO_STATE_DIR") or DEFAULT_STATE_DIR)
    state.mkdir(parents=True, exist_ok=True)
    key = f"{service}-{environment}"
    previous = _read_state(state / f"{key}.json")
    if previous is not None and not _is_alive(previous.pid):
        previous = None  # stale: that process is gone (or is not ours any more)

    action = "rolling back" if os.environ.get("ROLLBACK") == "true" else "deploying"
    say(f"{action} {service} {version} to {environment} (port {port}, {weight}% of traffic)")
    if version == "broken":
        say(f"fetching {service} {version}")
        raise DeployFailed(f"{service} {version} cannot be installed: the release is broken (simulated failure)")

    if previous is not None and previous.version == version and previous.port == port and previous.weight < 100:
        say(f"{version} already runs on :{port} (pid {previous.pid}) from the previous canary step")
        pid, replaced = previous.pid, previous.replaced
        _wait_until_answering(None, port, version, state / f"{key}.log")
    else:
        if previous is not None:
            say(f"stopping {previous.version} on :{previous.port} (pid {previous.pid})")
            _stop(previous.pid)
        say(f"starting {version} on :{port}")
        started = time.monotonic()
        replaced = previous.version if previous is not None else os.environ.get("PREVIOUS_VERSION") or None
        proc = _start(version, environment, port, state / f"{key}.log")
        _write_state(state / f"{key}.json", Running(proc.pid, version, port, weight, replaced))
        _wait_until_answering(proc, port, version, state / f"{key}.log")
        pid = proc.pid
        say(f"{version} answers on :{port} (pid {pid}) after {time.monotonic() - started:.2f}s")
    _write_state(state / f"{key}.json", Running(pid, version, port, weight, replaced))

    if weight < 100:
        old = replaced if replaced and replaced != version else "the previous version"
        say(f"shifting {weight}% of traffic to {version} ({100 - weight}% stays on {old})")
    else:
        say(f"shifting 100% of traffic to {version}")
    say(f"{service} {version} is live in {environment}" if weight == 100 else f"canary step at {weight}% done")


def _check_arguments(service: str, version: str, environment: str, weight_text: str) -> int:
    if not _NAME.fullmatch(service):
        raise DeployFailed(f"{service!r} is not a service name")
    if not _NAME.fullmatch(environment):
        raise DeployFailed(f"{environment!r} is not an environment name")
    if not _VERSION.fullmatch(version):
        raise DeployFailed(f"{version!r} is not a version")
    if not (weight_text.isascii() and weight_text.isdigit() and 0 <= int(weight_text) <= 100):
        raise DeployFailed(f"the weight must be a whole number from 0 to 100, not {weight_text!r}")
    return int(weight_text)


def _port(environment: str) -> int:
    override = os.environ.get("DEMO_PORT")
    if override:
        if not (override.isascii() and override.isdigit() and 0 < int(override) < 65536):
            raise DeployFailed(f"DEMO_PORT must be a port number, not {override!r}")
        return int(override)
    if environment not in PORTS:
        known = ", ".join(f"{name} ({port})" for name, port in PORTS.items())
        raise DeployFailed(f"the demo has no port for {environment!r}: use {known}, or set DEMO_PORT")
    return PORTS[environment]


# --- state -------------------------------------------------------------------------------------------------------


def _read_state(path: Path) -> Running | None:
    try:
        data = json.loads(path.read_text())
        replaced = data.get("replaced")
        return Running(
            int(data["pid"]),
            str(data["version"]),
            int(data["port"]),
            int(data.get("weight", 100)),
            None if replaced is None else str(replaced),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # none yet, or unreadable: nothing to stop


def _write_state(path: Path, running: Running) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(running.__dict__) + "\n")
    temporary.replace(path)  # atomic: a reader never sees half a file


# --- processes ---------------------------------------------------------------------------------------------------


def _is_alive(pid: int) -> bool:
    """Whether `pid` is a running (not zombie) demo app; a reused pid that runs something else is not ours."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process: the pid was reused
    proc = Path(f"/proc/{pid}")
    if Path("/proc/self").exists():
        try:
            status = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            return False
        return status != "Z" and str(APP).encode() in cmdline
    try:  # no /proc (macOS): ask ps
        shown = subprocess.run(
            ["ps", "-o", "stat=,command=", "-p", str(pid)], check=False, capture_output=True, text=True, timeout=2
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return True
    return bool(shown) and not shown.startswith("Z") and str(APP) in shown


def _stop(pid: int) -> None:
    """SIGTERM, up to STOP_GRACE seconds to exit, then SIGKILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_GRACE
    while time.monotonic() < deadline:
        if not _is_alive(pid):
            return
        time.sleep(0.01)
    say(f"pid {pid} did not stop within {STOP_GRACE:.0f}s: killing it")
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 1.0
    while _is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)


def _start(version: str, environment: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    """app.py in its own session (it outlives this script), output appended to `log`."""
    with log.open("ab") as output:
        output.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {version} on :{port}\n".encode())
        output.flush()
        try:
            return subprocess.Popen(
                [sys.executable, str(APP), "--port", str(port), "--version", version, "--env", environment],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as error:
            raise DeployFailed(f"could not start {APP.name}: {error.strerror or error}") from None


def _wait_until_answering(proc: subprocess.Popen[bytes] | None, port: int, version: str, log: Path) -> None:
    """Until the app on `port` answers as `version` (any HTTP status); DeployFailed after START_TIMEOUT."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            why = _last_line(log, version)
            if "in use" in why:
                why += " (is another process, or a demo whose state was lost, holding the port?)"
            raise DeployFailed(f"{version} exited with status {proc.returncode} on start: {why}")
        if _answers_as(port, version):
            return
        time.sleep(0.02)
    if proc is not None:
        _stop(proc.pid)
    raise DeployFailed(f"{version} did not answer on :{port} within {START_TIMEOUT:.0f}s: {_last_line(log, version)}")


def _answers_as(port: int, version: str) -> bool:
    """Whether something on `port` answers HTTP and says it is `version` (not some other process)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
    try:
        connection.request("GET", "/healthz")
        body = connection.getresponse().read()
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()
    try:
        return json.loads(body).get("version") == version
    except (ValueError, AttributeError):
        return False


def _last_line(log: Path, version: str) -> str:
    """The last thing the app of `version` said about itself (an older app may share the log), else the last line."""
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    own = [line for line in lines if line.startswith(f"demo {version} ")]
    return (own or lines or ["no output"])[-1][-200:]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
