"""How fast `chatops serve` starts, against the bare Bolt app of bench/bare_bolt.py started the same way.

Starts the Slack emulator and a Redis once, then, several times each and alternating: `python -m bot serve` with
the example configuration (examples/chatops.yaml, as bench/ack_latency.py runs it) and `python bench/bare_bolt.py`.
For each run: the time from spawning the process to its first 200 on GET /healthz (polled every 5 ms), and, for
chatops, its resident memory (VmRSS) once idle (a few seconds after it answered, background loops running).
Prints the medians, the ratio to the bare app, and the targets (healthz within 1.0 s, idle RSS <= 100 MB).
Both start as an installed deployment would: with compiled bytecode (an editable install under
PYTHONDONTWRITEBYTECODE, as on this machine, would recompile every module of ours at each start and of neither
library), kept in a private PYTHONPYCACHEPREFIX and written by one unmeasured start of each first.
Run: python bench/startup.py [--runs 5] [--idle 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.emulator import SlackEmulator, Workspace
from bot.platform.embedded_redis import EmbeddedRedis, free_port

BOT_TOKEN = "xoxb-bench-token"
HEALTHZ_TARGET_SECONDS = 1.0
RSS_TARGET_MB = 100.0
POLL_SECONDS = 0.005


def rss_mb(pid: int) -> float:
    """The process's resident set size in MB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def time_to_healthz(argv: list[str], env: dict[str, str], port: int, *, idle: float) -> tuple[float, float]:
    """Spawns `argv`, returns (seconds until /healthz answered 200, RSS in MB `idle` seconds later)."""
    url = f"http://127.0.0.1:{port}/healthz"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            *argv, env=env, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            while True:
                if process.returncode is not None:
                    raise RuntimeError(f"{argv} exited with {process.returncode} before answering /healthz")
                try:
                    async with session.get(url) as response:
                        if response.status == 200:
                            elapsed = time.perf_counter() - started
                            break
                except aiohttp.ClientConnectionError:
                    pass
                if time.perf_counter() - started > 60:
                    raise RuntimeError(f"{url} did not answer within 60 s")
                await asyncio.sleep(POLL_SECONDS)
            await asyncio.sleep(idle)
            return elapsed, rss_mb(process.pid)
        finally:
            process.terminate()
            await asyncio.wait_for(process.wait(), 30)


def row(figure: str, ours: float, anchor: float | None, unit: str, target: str, met: bool | None) -> dict[str, object]:
    """One row of the --json output (see bench/README.md)."""
    ratio = round(ours / anchor, 3) if anchor else None
    return {
        "figure": figure,
        "ours": round(ours, 4),
        "anchor": None if anchor is None else round(anchor, 4),
        "ratio": ratio,
        "unit": unit,
        "target": target,
        "met": met,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="starts of each process (default 5)")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds after /healthz before reading RSS")
    parser.add_argument("--json", action="store_true", help="print the result rows as JSON on the last line")
    args = parser.parse_args()
    secret = secrets.token_hex(16)
    emulator = SlackEmulator(signing_secret=secret, bot_token=BOT_TOKEN, workspace=Workspace.demo())
    runner = web.AppRunner(emulator.make_app(page=False), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    emulator.origin = f"http://127.0.0.1:{runner.addresses[0][1]}"
    tmp = Path(tempfile.mkdtemp(prefix="chatops-bench-"))
    redis = EmbeddedRedis(tmp / "redis").start()
    base_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "REDIS_", "CHATOPS_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    base_env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    ours: list[tuple[float, float]] = []
    bare: list[tuple[float, float]] = []
    try:
        for run in range(args.runs + 1):  # run 0 writes the bytecode caches and is not counted
            port = free_port()
            env = base_env | {
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
            measured = await time_to_healthz(
                [sys.executable, "-m", "bot", "serve"], env, port, idle=args.idle if run else 0
            )
            port = free_port()
            bare_argv = [
                sys.executable,
                str(ROOT / "bench" / "bare_bolt.py"),
                str(port),
                secret,
                emulator.api_url,
                BOT_TOKEN,
                "--process-before-response",
            ]
            bare_measured = await time_to_healthz(bare_argv, base_env, port, idle=0.5 if run else 0)
            if run:
                ours.append(measured)
                bare.append(bare_measured)
    finally:
        redis.stop()
        await runner.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    ours_s, bare_s = statistics.median(t for t, _ in ours), statistics.median(t for t, _ in bare)
    ours_rss, bare_rss = statistics.median(r for _, r in ours), statistics.median(r for _, r in bare)
    print(f"{'process':36} {'healthz s (median)':>19} {'runs':>28} {'RSS MB':>8}")
    print(f"{'chatops serve':36} {ours_s:19.3f} {' '.join(f'{t:.2f}' for t, _ in ours):>28} {ours_rss:8.1f}")
    print(
        f"{'bare Bolt (process_before_response)':36} {bare_s:19.3f} {' '.join(f'{t:.2f}' for t, _ in bare):>28} "
        f"{bare_rss:8.1f}"
    )
    print(f"ratio chatops/bare Bolt: time to /healthz {ours_s / bare_s:.2f}, RSS {ours_rss / bare_rss:.2f}")
    print(
        f"targets: /healthz <= {HEALTHZ_TARGET_SECONDS:g} s: "
        f"{'met' if ours_s <= HEALTHZ_TARGET_SECONDS else 'NOT met'}; "
        f"idle RSS <= {RSS_TARGET_MB:g} MB: {'met' if ours_rss <= RSS_TARGET_MB else 'NOT met'}"
    )
    if args.json:
        print(
            json.dumps(
                [
                    row(
                        "start-up: time to /healthz",
                        ours_s,
                        bare_s,
                        "s",
                        f"<= {HEALTHZ_TARGET_SECONDS:g} s",
                        ours_s <= HEALTHZ_TARGET_SECONDS,
                    ),
                    row(
                        "start-up: idle RSS",
                        ours_rss,
                        bare_rss,
                        "MB",
                        f"<= {RSS_TARGET_MB:g} MB",
                        ours_rss <= RSS_TARGET_MB,
                    ),
                ]
            )
        )


if __name__ == "__main__":
    asyncio.run(main())
