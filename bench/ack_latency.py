"""How fast `chatops serve` acknowledges Slack, against a bare Bolt app measured in the same run.

Drives signed `/chatops help` slash commands (signature and age verified, help rendered from the registry) at
concurrency 1 and 32, and signed `/status` reads (the real overview: health checks, deploys, incidents, alerts,
on-call, from Redis) at concurrency 1 (its anchor: the bare app's ack at concurrency 1), against:
  - chatops serve (a real process, real Redis, the Slack emulator as Slack's Web API),
  - a bare Bolt AsyncApp whose only listener acks, with Bolt's defaults,
  - the same bare app with process_before_response=True (chatops's setting: no 10 ms ack polling): the anchor.
The targets take turns in short rounds (the machine is shared: load that comes and goes hits all of them alike);
rps is over all rounds, p50 and p99 are the medians of the rounds'. The load generator is wrk when installed
(a Python client on the same two cores measures itself as much as the servers), cycling through pre-signed
requests with distinct trigger_ids; `--driver python` signs each request as it sends it.
Run: python bench/ack_latency.py [--seconds 3] [--rounds 3] [--driver wrk|python] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.emulator import SlackEmulator, Workspace
from bot.platform.embedded_redis import EmbeddedRedis, free_port

BOT_TOKEN = "xoxb-bench-token"
CHATOPS = "chatops serve"
BARE = "bare Bolt (defaults)"
ANCHOR = "bare Bolt (process_before_response)"
SIGNED_BODIES = 2000  # distinct trigger_ids per wrk run


def command_body(n: int, command: str = "/chatops", text: str = "help") -> str:
    """A slash command's form body as Slack sends it, with a distinct trigger_id."""
    return urlencode(
        {
            "token": "x",
            "team_id": "T0CHATOPS",
            "team_domain": "acme",
            "channel_id": "C0GENERAL",
            "channel_name": "general",
            "user_id": "U0DEMO",
            "user_name": "demo",
            "command": command,
            "text": text,
            "api_app_id": "A0",
            "response_url": "http://127.0.0.1:9/r",
            "trigger_id": f"{n}.{secrets.token_hex(6)}",
        }
    )


async def drive_python(
    url: str, secret: str, command: tuple[str, str], *, concurrency: int, seconds: float
) -> dict[str, float]:
    """Signed commands from `concurrency` aiohttp workers for `seconds`: rps, p50, p99 (ms), errors."""
    verifier = SignatureVerifier(secret)
    latencies: list[float] = []
    counter = iter(range(10**9))
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            body = command_body(next(counter), *command)
            ts = str(int(time.time()))
            headers = {
                "X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": verifier.generate_signature(timestamp=ts, body=body),
                "Content-Type": "application/x-www-form-urlencoded",
            }
            started = time.perf_counter()
            async with session.post(url, data=body.encode(), headers=headers) as response:
                await response.read()
                if response.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - started)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        started = time.perf_counter()
        await asyncio.gather(*[worker(session) for _ in range(concurrency)])
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000,
        "errors": errors,
    }


def wrk_script(secret: str, command: tuple[str, str], directory: Path) -> Path:
    """A wrk Lua script cycling through freshly signed command requests (Slack accepts five minutes of age)."""
    verifier = SignatureVerifier(secret)
    ts = str(int(time.time()))
    bodies = [command_body(n, *command) for n in range(SIGNED_BODIES)]
    rows = ",\n".join(f'{{{json.dumps(b)}, "{verifier.generate_signature(timestamp=ts, body=b)}"}}' for b in bodies)
    path = directory / f"signed-{secrets.token_hex(4)}.lua"
    path.write_text(
        f"local signed = {{\n{rows}\n}}\nlocal i = 0\n"
        "request = function()\n  i = i % #signed + 1\n"
        f'  return wrk.format("POST", nil, {{["Content-Type"] = "application/x-www-form-urlencoded", '
        f'["X-Slack-Request-Timestamp"] = "{ts}", ["X-Slack-Signature"] = signed[i][2]}}, signed[i][1])\nend\n'
    )
    return path


async def drive_wrk(url: str, script: Path, *, concurrency: int, seconds: float) -> dict[str, float]:
    """The same load from wrk: requests, seconds, p50 and p99 in ms, errors (non-2xx and socket errors)."""
    proc = await asyncio.create_subprocess_exec(
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "-s",
        str(script),
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out = (await proc.communicate())[0].decode()

    def millis(label: str) -> float:
        match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if match is None:
            raise RuntimeError(f"wrk said:\n{out}")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    done = re.search(r"(\d+) requests in ([\d.]+)(ms|s)", out)
    if done is None:
        raise RuntimeError(f"wrk said:\n{out}")
    elapsed = float(done.group(2)) / (1000 if done.group(3) == "ms" else 1)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, socket_errors.groups())) if socket_errors else 0)
    return {
        "requests": int(done.group(1)),
        "seconds": elapsed,
        "p50": millis("50"),
        "p99": millis("99"),
        "errors": errors,
    }


def combine(rounds: list[dict[str, float]]) -> dict[str, float]:
    """rps over all rounds; p50 and p99 as the medians of the rounds'."""
    return {
        "rps": sum(r["requests"] for r in rounds) / sum(r["seconds"] for r in rounds),
        "p50": statistics.median(r["p50"] for r in rounds),
        "p99": statistics.median(r["p99"] for r in rounds),
        "errors": sum(r["errors"] for r in rounds),
    }


async def wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} never answered")


async def profile(
    pid: int, url: str, secret: str, command: tuple[str, str], tmp: Path, args: argparse.Namespace
) -> None:
    """py-spy's samples of `pid` while it answers `command` at concurrency 32 for 10 s."""
    spy = await asyncio.create_subprocess_exec(
        "py-spy",
        "record",
        "--pid",
        str(pid),
        "--duration",
        "10",
        "--rate",
        "250",
        "--format",
        "raw",
        "--output",
        args.py_spy,
        "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL,
    )
    await asyncio.sleep(0.5)
    if args.driver == "wrk":
        await drive_wrk(url, wrk_script(secret, command, tmp), concurrency=32, seconds=10)
    else:
        await drive_python(url, secret, command, concurrency=32, seconds=10)
    await spy.wait()


def row(figure: str, ours: float, anchor: float | None, unit: str, target: str, met: bool | None) -> dict[str, object]:
    """One row of the --json output (see bench/README.md)."""
    return {
        "figure": figure,
        "ours": round(ours, 3),
        "anchor": None if anchor is None else round(anchor, 3),
        "ratio": round(ours / anchor, 3) if anchor else None,
        "unit": unit,
        "target": target,
        "met": met,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3, help="length of one round per target (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per target and concurrency (default 3)")
    parser.add_argument(
        "--driver",
        choices=["wrk", "python"],
        default="wrk" if shutil.which("wrk") else "python",
        help="the load generator (wrk when installed: apt-get install wrk)",
    )
    parser.add_argument("--json", action="store_true", help="print the result rows as JSON on the last line")
    parser.add_argument(
        "--py-spy",
        metavar="FILE",
        help="first profile chatops serve under 10 s of /chatops help at "
        "concurrency 32 with py-spy (pip install py-spy), writing collapsed stacks to FILE",
    )
    args = parser.parse_args()
    secret = secrets.token_hex(16)
    emulator = SlackEmulator(signing_secret=secret, bot_token=BOT_TOKEN, workspace=Workspace.demo())
    runner = web.AppRunner(emulator.make_app(page=False), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    emulator.origin = f"http://127.0.0.1:{runner.addresses[0][1]}"
    tmp = Path(tempfile.mkdtemp(prefix="chatops-bench-"))
    redis = EmbeddedRedis(tmp / "redis").start()
    processes: list[asyncio.subprocess.Process] = []
    try:
        targets: dict[str, str] = {}
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "REDIS_", "CHATOPS_"))} | {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": secret,
            "SLACK_API_URL": emulator.api_url,
            "REDIS_URL": redis.url,
            "CHATOPS_CONFIG": str(ROOT / "examples" / "chatops.yaml"),
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "LOG_LEVEL": "WARNING",
            "CHATOPS_DEMO_ALERT_TOKEN": "bench-alert-token",
        }
        processes.append(await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "serve", env=env, cwd=ROOT))
        targets[CHATOPS] = f"http://127.0.0.1:{port}"
        for label, flag in ((BARE, []), (ANCHOR, ["--process-before-response"])):
            bare_port = free_port()
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    str(ROOT / "bench" / "bare_bolt.py"),
                    str(bare_port),
                    secret,
                    emulator.api_url,
                    BOT_TOKEN,
                    *flag,
                )
            )
            targets[label] = f"http://127.0.0.1:{bare_port}"
        await wait_ready(targets[CHATOPS] + "/readyz")
        for origin in targets.values():
            await wait_ready(origin + "/healthz")
        help_command, status_command = ("/chatops", "help"), ("/status", "")
        if args.py_spy:
            await profile(processes[0].pid, targets[CHATOPS] + "/slack/events", secret, help_command, tmp, args)
        # (what, target, concurrency, command): the bare apps ack whatever command they get.
        cases = [
            (name, label, conc, help_command)
            for conc in (1, 32)
            for label in targets
            for name in [f"/chatops help c={conc}"]
        ]
        cases.append(("/status c=1", CHATOPS, 1, status_command))
        rounds: dict[tuple[str, str], list[dict[str, float]]] = {}
        for round_no in range(args.rounds + 1):  # round 0 warms every target up and is not counted
            for name, label, conc, command in cases:
                url = targets[label] + "/slack/events"
                seconds = args.seconds if round_no else 1
                if args.driver == "wrk":
                    result = await drive_wrk(url, wrk_script(secret, command, tmp), concurrency=conc, seconds=seconds)
                else:
                    result = await drive_python(url, secret, command, concurrency=conc, seconds=seconds)
                if round_no:
                    rounds.setdefault((name, label), []).append(result)
        results = {key: combine(value) for key, value in rounds.items()}
        print(f"driver {args.driver}, {args.rounds} rounds of {args.seconds:g} s per target and case")
        print(f"{'case':22} {'target':38} {'rps':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
        for (name, label), r in results.items():
            print(f"{name:22} {label:38} {r['rps']:8.0f} {r['p50']:8.2f} {r['p99']:8.2f} {r['errors']:>6.0f}")
        for baseline in (BARE, ANCHOR):
            for conc in (1, 32):
                name = f"/chatops help c={conc}"
                ours, base = results[(name, CHATOPS)], results[(name, baseline)]
                print(
                    f"ratio chatops/{baseline} c={conc}: p50 {ours['p50'] / base['p50']:.2f}  "
                    f"p99 {ours['p99'] / base['p99']:.2f}  rps {ours['rps'] / base['rps']:.2f}"
                )
        ours_status, anchor_ack = results[("/status c=1", CHATOPS)], results[("/chatops help c=1", ANCHOR)]
        print(f"ratio chatops /status read / {ANCHOR} ack c=1: p50 {ours_status['p50'] / anchor_ack['p50']:.2f}")
        c1, c32 = results[("/chatops help c=1", CHATOPS)], results[("/chatops help c=32", CHATOPS)]
        a1, a32 = results[("/chatops help c=1", ANCHOR)], results[("/chatops help c=32", ANCHOR)]
        rows = [
            row("ack /chatops help c=32 p99", c32["p99"], a32["p99"], "ms", "<= 1.0x anchor", c32["p99"] <= a32["p99"]),
            row(
                "ack /chatops help c=32 throughput",
                c32["rps"],
                a32["rps"],
                "req/s",
                ">= 0.9x anchor",
                c32["rps"] >= 0.9 * a32["rps"],
            ),
            row("ack /chatops help c=1 p50", c1["p50"], a1["p50"], "ms", "<= 1.0 ms", c1["p50"] <= 1.0),
            row("ack /status read c=1 p50", ours_status["p50"], anchor_ack["p50"], "ms", "none (reads Redis)", None),
        ]
        errors = sum(r["errors"] for r in results.values())
        if errors:
            print(f"WARNING: {errors} requests failed (non-2xx or socket errors)")
        if args.json:
            print(json.dumps(rows))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            await asyncio.wait_for(process.wait(), 30)
        redis.stop()
        await runner.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
