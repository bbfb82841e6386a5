"""Alert ingest: how many alerts/s `chatops serve` accepts durably, how fast they reach Slack, and a storm.

1. Sustained load: Alertmanager-style webhook bodies (50 alerts each, as Alertmanager batches a group) posted at
   concurrency 16 for a few seconds; every 2xx means the alerts are in the Redis Stream. Prints alerts/s.
2. Latency: single new alerts at a modest rate; time from the webhook POST to the emulator receiving the
   chat.postMessage (its message ts is its clock). Emulator without a rate limit. Prints p50/p99.
3. Storm: 10,000 alerts in 10 s over 50 groups with the emulator's 1 message/s/channel limit; waits until the
   stream is delivered; prints messages posted, alerts stored, alerts lost (must be 0).
A baseline in the same run: an aiohttp app that answers 200 to the same bodies without storing anything.
Run: python bench/alert_ingest.py
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import ResponseError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.platform.embedded_redis import EmbeddedRedis, free_port
from bot.emulator import SlackEmulator, Workspace

TOKEN = "bench-am-token"
BOT_TOKEN = "xoxb-bench-alerts"
CONFIG = """
roles: {admins: [U0DEMO]}
alerts:
  default_channel: "#alerts"
  group_by: [alertname]
  group_wait: 0s
  sources:
    alertmanager: {token_env: BENCH_AM_TOKEN}
"""


def body(alerts: list[tuple[str, str]], status: str = "firing") -> bytes:
    """An Alertmanager v4 webhook body for (alertname, instance) pairs."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return json.dumps({
        "version": "4", "groupKey": "{}:{}", "status": status, "receiver": "chatops", "truncatedAlerts": 0,
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
        "alerts": [{
            "status": status, "labels": {"alertname": name, "instance": instance, "severity": "warning"},
            "annotations": {"summary": f"{name} on {instance}"}, "startsAt": now, "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "", "fingerprint": f"{abs(hash((name, instance))):016x}",
        } for name, instance in alerts],
    }).encode()


async def post_many(url: str, bodies: list[bytes], concurrency: int) -> tuple[float, int]:
    """Posts the bodies with `concurrency` in flight; returns (seconds, non-2xx count)."""
    queue = list(reversed(bodies))
    failures = 0
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while queue:
            data = queue.pop()
            async with session.post(url, data=data, headers=headers) as response:
                await response.read()
                failures += response.status >= 300

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        started = time.perf_counter()
        await asyncio.gather(*[worker(session) for _ in range(concurrency)])
        return time.perf_counter() - started, failures


async def baseline_rate(bodies: list[bytes]) -> float:
    """alerts/s of an aiohttp app that reads each body and answers 200 without storing it."""
    async def accept(request: web.Request) -> web.Response:
        json.loads(await request.read())
        return web.json_response({"accepted": True})

    app = web.Application()
    app.router.add_post("/alerts/alertmanager", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    seconds, _ = await post_many(f"http://127.0.0.1:{port}/alerts/alertmanager", bodies, 16)
    await runner.cleanup()
    return 50 * len(bodies) / seconds


async def wait_delivered(client: aioredis.Redis, stream: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            groups = await client.xinfo_groups(stream)
        except ResponseError:  # the group does not exist yet
            groups = []
        last = (await client.xinfo_stream(stream))["last-generated-id"]
        if groups and groups[0]["pending"] == 0 and groups[0]["last-delivered-id"] == last:
            return True
        await asyncio.sleep(0.2)
    return False


async def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="chatops-alert-bench-"))
    redis = EmbeddedRedis(tmp / "redis").start()
    emulator = SlackEmulator(signing_secret="bench", bot_token=BOT_TOKEN, workspace=Workspace.demo())
    runner = web.AppRunner(emulator.make_app(page=False), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    emulator.origin = f"http://127.0.0.1:{runner.addresses[0][1]}"
    config = tmp / "chatops.yaml"
    config.write_text(CONFIG)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "REDIS_"))} | {
        "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": "bench", "SLACK_API_URL": emulator.api_url,
        "REDIS_URL": redis.url, "CHATOPS_CONFIG": str(config), "HOST": "127.0.0.1", "PORT": str(port),
        "LOG_LEVEL": "WARNING", "BENCH_AM_TOKEN": TOKEN,
    }
    bot = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "serve", env=env, cwd=ROOT)
    client = aioredis.Redis.from_url(redis.url, decode_responses=True)
    url = f"http://127.0.0.1:{port}/alerts/alertmanager"
    stream = "chatops:{alerts}:stream"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)

        # 1. sustained ingest: 40 groups of alerts, repeated (dedup after the first round)
        bodies = [body([(f"Load{n % 40}", f"host-{i}") for i in range(50)]) for n in range(400)]
        base = await baseline_rate(bodies)
        seconds, failures = await post_many(url, bodies, 16)
        accepted = 50 * len(bodies) / seconds
        stored = await client.xlen(stream)
        print(f"ingest: {50 * len(bodies)} alerts in {seconds:.2f}s = {accepted:,.0f} alerts/s accepted durably "
              f"({failures} non-2xx; {stored} stream entries, one per webhook); baseline (parse, answer, store nothing): {base:,.0f} alerts/s; "
              f"ratio {accepted / base:.2f}")
        await wait_delivered(client, stream, 120)

        # 2. latency to Slack, no rate limit
        latencies = []
        async with aiohttp.ClientSession() as session:
            for n in range(200):
                name = f"Latency{n}"
                sent = time.time()
                async with session.post(url, data=body([(name, "h")]), headers={"Authorization": f"Bearer {TOKEN}"}) as response:
                    await response.read()
                for _ in range(400):
                    posts = [c for c in emulator.calls_to("chat.postMessage") if c.ok and name == str(c.args.get("text", "")).split(": ", 1)[-1]]
                    if posts:
                        latencies.append(float(posts[0].response["ts"]) - sent)
                        break
                    await asyncio.sleep(0.002)
                await asyncio.sleep(0.02)
        latencies.sort()
        print(f"webhook → Slack post: n={len(latencies)} p50 {statistics.median(latencies) * 1000:.1f} ms, "
              f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.1f} ms")

        # 3. storm with the 1 msg/s/channel limit
        emulator.set_rate_limit(1.0)
        before_posts = len([c for c in emulator.calls_to("chat.postMessage") if c.ok])
        before_len = await client.xlen(stream)
        storm = [body([(f"Storm{g}", f"s{n}-{i}") for i in range(20) for g in [(n * 20 + i) % 50]]) for n in range(500)]
        started = time.perf_counter()
        for chunk in range(10):  # 10,000 alerts over 10 s
            await post_many(url, storm[chunk * 50:(chunk + 1) * 50], 8)
            await asyncio.sleep(max(0.0, (chunk + 1) - (time.perf_counter() - started)))
        stored = 20 * (await client.xlen(stream) - before_len)
        delivered = await wait_delivered(client, stream, 300)
        await asyncio.sleep(3)
        posts = len([c for c in emulator.calls_to("chat.postMessage") if c.ok]) - before_posts
        limited = len([c for c in emulator.calls_to("chat.postMessage") + emulator.calls_to("chat.update") if c.status == 429])
        groups = await client.smembers("chatops:{alerts}:firing")
        members = 0
        for group_id in groups:
            raw = await client.get(f"chatops:{{alerts}}:group:{group_id}")
            if raw and json.loads(raw)["group_key"]:
                members += len([m for m in json.loads(raw)["members"].values() if m["labels"]["alertname"].startswith("Storm")])
        print(f"storm: 10,000 alerts sent, {stored} stored, delivered={delivered}, {posts} messages posted, "
              f"{limited} answers were 429, {members} storm alerts in groups, lost {10_000 - members}")
    finally:
        bot.terminate()
        try:
            await asyncio.wait_for(bot.wait(), 30)
        except TimeoutError:
            print("chatops serve did not stop within 30 s of SIGTERM")
            bot.kill()
        await client.aclose()
        redis.stop()
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
