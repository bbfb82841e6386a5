"""How fast `chatops serve` acknowledges Slack, against a bare Bolt app measured in the same run.

Drives signed `/chatops help` slash commands (signature verified, idempotency record written to Redis, help
rendered from the registry) at concurrency 1 and 32, against:
  - chatops serve (a real process, real Redis, the Slack emulator for auth.test),
  - a bare Bolt AsyncApp whose only listener acks, with Bolt's defaults,
  - the same bare app with process_before_response=True (chatops's setting: no 10 ms ack polling).
Prints rps, p50 and p99 for each and the ratios. Run: python bench/ack_latency.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
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

from bot.embedded_redis import EmbeddedRedis, free_port
from bot.emulator import SlackEmulator, Workspace

BOT_TOKEN = "xoxb-bench-token"


def command_body(n: int) -> str:
    return urlencode({
        "token": "x", "team_id": "T0CHATOPS", "team_domain": "acme", "channel_id": "C0GENERAL", "channel_name": "general",
        "user_id": "U0DEMO", "user_name": "demo", "command": "/chatops", "text": "help", "api_app_id": "A0",
        "response_url": "http://127.0.0.1:9/r", "trigger_id": f"{n}.{secrets.token_hex(6)}",
    })


async def drive(url: str, secret: str, *, concurrency: int, total: int) -> dict[str, float]:
    """Sends `total` signed commands with `concurrency` in flight; returns rps, p50, p99 (ms)."""
    verifier = SignatureVerifier(secret)
    latencies: list[float] = []
    counter = iter(range(10**9))
    errors = 0

    async def worker(session: aiohttp.ClientSession, count: int) -> None:
        nonlocal errors
        for _ in range(count):
            body = command_body(next(counter))
            ts = str(int(time.time()))
            headers = {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": verifier.generate_signature(timestamp=ts, body=body),
                       "Content-Type": "application/x-www-form-urlencoded"}
            started = time.perf_counter()
            async with session.post(url, data=body.encode(), headers=headers) as response:
                await response.read()
                if response.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*[worker(session, 20) for _ in range(concurrency)])  # warm-up
        latencies.clear()
        started = time.perf_counter()
        per_worker = total // concurrency
        await asyncio.gather(*[worker(session, per_worker) for _ in range(concurrency)])
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "errors": errors,
    }


async def wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            try:
                async with session.get(url) as response:
                    if response.status in (200, 404, 405):
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} never answered")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
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
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "REDIS_"))} | {
            "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": secret, "SLACK_API_URL": emulator.api_url,
            "REDIS_URL": redis.url, "CHATOPS_CONFIG": str(ROOT / "examples" / "chatops.yaml"),
            "HOST": "127.0.0.1", "PORT": str(port), "LOG_LEVEL": "WARNING",
            "CHATOPS_DEMO_ALERT_TOKEN": "bench-alert-token",
        }
        processes.append(await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "serve", env=env, cwd=ROOT))
        targets["chatops serve"] = f"http://127.0.0.1:{port}"
        for label, flag in (("bare Bolt (defaults)", []), ("bare Bolt (process_before_response)", ["--process-before-response"])):
            bare_port = free_port()
            processes.append(await asyncio.create_subprocess_exec(
                sys.executable, str(ROOT / "bench" / "bare_bolt.py"), str(bare_port), secret, emulator.api_url, BOT_TOKEN, *flag,
            ))
            targets[label] = f"http://127.0.0.1:{bare_port}"
        for origin in targets.values():
            await wait_ready(origin + "/slack/events")
        results: dict[tuple[str, int], dict[str, float]] = {}
        for concurrency in (1, 32):
            total = args.requests if concurrency == 32 else max(args.requests // 4, 200)
            for label, origin in targets.items():
                results[(label, concurrency)] = await drive(origin + "/slack/events", secret, concurrency=concurrency, total=total)
        print(f"{'target':40} {'conc':>4} {'rps':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
        for (label, concurrency), r in results.items():
            print(f"{label:40} {concurrency:>4} {r['rps']:8.0f} {r['p50']:8.2f} {r['p99']:8.2f} {r['errors']:>6.0f}")
        for baseline in ("bare Bolt (defaults)", "bare Bolt (process_before_response)"):
            for concurrency in (1, 32):
                ours, base = results[("chatops serve", concurrency)], results[(baseline, concurrency)]
                print(f"ratio chatops/{baseline} c={concurrency}: p50 {ours['p50'] / base['p50']:.2f}  "
                      f"p99 {ours['p99'] / base['p99']:.2f}  rps {ours['rps'] / base['rps']:.2f}")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            await asyncio.wait_for(process.wait(), 30)
        redis.stop()
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
