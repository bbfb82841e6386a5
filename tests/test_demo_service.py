"""The demo service of `chatops dev`, for real: examples/demo/deploy.py starts, replaces and stops examples/demo/app.py
on a free port with a temporary state dir, exactly as the `command` deploy provider runs it. Every process a test
starts is killed by the fixture's finalizer."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.waiting import DEFAULT_DEADLINE_SECONDS, eventually_blocking

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo"
DEPLOY = DEMO / "deploy.py"
APP = DEMO / "app.py"


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, exited but not reaped, does not count)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return not Path("/proc/self").exists()  # no /proc (macOS): kill(0) is all we have


def wait_gone(pid: int, what: str) -> None:
    """Returns once `pid` no longer runs; fails naming `what` after the default deadline."""
    eventually_blocking(lambda: not alive(pid), f"{what} (pid {pid}) to be gone")


def health(port: int) -> tuple[int, str] | None:
    """GET /healthz of the app on `port`, or None while nothing answers there yet."""
    try:
        return get(port, "/healthz")
    except OSError:
        return None


def get(port: int, path: str) -> tuple[int, str]:
    """Status and body of GET http://127.0.0.1:<port><path> (no proxy, unlike urllib with $http_proxy set)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


@dataclass
class Demo:
    """Runs deploy.py against one state dir and port, and remembers every pid it saw started."""

    state: Path
    port: int
    pids: set[int] = field(default_factory=set)

    def env(self, **extra: str) -> dict[str, str]:
        environ = {k: v for k, v in os.environ.items() if k not in {"ROLLBACK", "PREVIOUS_VERSION"}}
        return {**environ, "DEMO_STATE_DIR": str(self.state), "DEMO_PORT": str(self.port), **extra}

    def deploy(
        self, version: str, weight: int = 100, *, environment: str = "staging", env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Runs one deploy step. capture_output also proves the app does not keep our pipes open: run() would
        wait for it until the timeout."""
        # run() returns only once every holder of the captured pipes closed them: a hang here means the detached
        # app kept the script's output open (the timeout turns that into a failure, not a slow test).
        result = subprocess.run(
            [sys.executable, str(DEPLOY), "demo", version, environment, str(weight)],
            env=self.env() if env is None else env,
            cwd=self.state.parent,
            capture_output=True,
            text=True,
            check=False,
            timeout=20,
        )
        if (pid := self.pid(environment)) is not None:
            self.pids.add(pid)
        return result

    def pid(self, environment: str = "staging") -> int | None:
        """The pid the state dir records, if any."""
        try:
            return int(json.loads((self.state / f"demo-{environment}.json").read_text())["pid"])
        except (OSError, ValueError, KeyError):
            return None

    def health(self) -> tuple[int, dict[str, str]]:
        status, body = get(self.port, "/healthz")
        return status, json.loads(body)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    """A state dir and free port of its own; afterwards, every app it started is killed."""
    harness = Demo(state=tmp_path / "state", port=free_port())
    yield harness
    for pid in harness.pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
            wait_gone(pid, "a demo app killed after its test")


def test_v1_deploys_and_reports_its_version(demo: Demo) -> None:
    result = demo.deploy("v1")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert f"starting v1 on :{demo.port}" in lines
    assert "shifting 100% of traffic to v1" in lines
    assert demo.health() == (200, {"status": "ok", "version": "v1"})
    status, page = get(demo.port, "/")
    assert status == 200 and "v1" in page and "staging" in page
    assert get(demo.port, "/nope")[0] == 404
    assert (demo.state / "demo-staging.log").read_text()  # the app's output went to the log, not to us


def test_v2_replaces_v1(demo: Demo) -> None:
    assert demo.deploy("v1").returncode == 0
    old = demo.pid()
    assert old is not None and alive(old)
    result = demo.deploy("v2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"stopping v1 on :{demo.port} (pid {old})" in result.stdout.splitlines()
    new = demo.pid()
    assert new is not None and new != old
    wait_gone(old, "the old version")
    assert demo.health() == (200, {"status": "ok", "version": "v2"})


@pytest.mark.parametrize("version", ["bad", "bad-2"])
def test_bad_version_deploys_but_fails_its_health_check(demo: Demo, version: str) -> None:
    result = demo.deploy(version)
    assert result.returncode == 0, result.stdout + result.stderr
    assert demo.health() == (500, {"status": "failing", "version": version})


def test_broken_version_fails_the_deploy_and_leaves_the_old_one_running(demo: Demo) -> None:
    assert demo.deploy("v1").returncode == 0
    old = demo.pid()
    result = demo.deploy("broken")
    assert result.returncode != 0
    assert "deploy failed: demo broken cannot be installed: the release is broken (simulated failure)" in result.stderr
    assert demo.pid() == old
    assert demo.health() == (200, {"status": "ok", "version": "v1"})


def test_canary_steps_print_the_split_and_do_not_restart(demo: Demo) -> None:
    assert demo.deploy("v1").returncode == 0
    first = demo.deploy("v2", 10)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "shifting 10% of traffic to v2 (90% stays on v1)" in first.stdout.splitlines()
    assert demo.health() == (200, {"status": "ok", "version": "v2"})  # the health check sees the new version
    canary = demo.pid()
    last = demo.deploy("v2", 100)
    assert last.returncode == 0, last.stdout + last.stderr
    assert "shifting 100% of traffic to v2" in last.stdout.splitlines()
    assert demo.pid() == canary


def record(demo: Demo, pid: int) -> None:
    """Writes a state record that says `pid` runs v0 of the demo in staging."""
    demo.state.mkdir(parents=True, exist_ok=True)
    state = {"pid": pid, "version": "v0", "port": demo.port, "weight": 100}
    (demo.state / "demo-staging.json").write_text(json.dumps(state))


def test_a_stale_pid_is_ignored(demo: Demo) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], check=False, capture_output=True, text=True
    )
    record(demo, int(finished.stdout))
    result = demo.deploy("v1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stopping" not in result.stdout
    assert demo.health() == (200, {"status": "ok", "version": "v1"})


def test_a_reused_pid_is_not_signalled(demo: Demo) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        record(demo, bystander.pid)  # the pid now belongs to some other process
        result = demo.deploy("v1")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "stopping" not in result.stdout
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_an_app_that_cannot_start_fails_the_deploy(demo: Demo) -> None:
    with socket.socket() as squatter:  # something else holds the port
        squatter.bind(("127.0.0.1", demo.port))
        squatter.listen()
        result = demo.deploy("v1")
    assert result.returncode != 0
    assert "deploy failed: v1 exited with status 1 on start: demo v1: cannot listen on" in result.stderr
    assert "holding the port?" in result.stderr


def test_an_environment_without_a_port_is_refused(demo: Demo) -> None:
    env = demo.env()
    del env["DEMO_PORT"]
    result = demo.deploy("v1", environment="qa", env=env)
    assert result.returncode != 0
    assert "the demo has no port for 'qa'" in result.stderr
    assert demo.pid("qa") is None


def test_app_exits_cleanly_on_sigterm() -> None:
    port = free_port()
    app = subprocess.Popen(
        [sys.executable, str(APP), "--port", str(port), "--version", "v9", "--env", "production"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert eventually_blocking(lambda: health(port), "the app to start and answer /healthz") == (
            200,
            '{"status": "ok", "version": "v9"}',
        )
        app.send_signal(signal.SIGTERM)
        assert app.wait(timeout=DEFAULT_DEADLINE_SECONDS) == 0
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
