"""Cost flat in history size: the read commands on a Redis full of history against the same commands on a Redis
that holds only the live set, measured side by side in one run.

Two embedded Redis servers, two bots (the real web app, in this process, against the project's Slack emulator):
  - anchor: only the live set (20 firing alert groups, 10 recent deploys of web, 10 recent backups of appdb, 20 audit
    entries), so both answers show the same things;
  - filled: the same live set plus history written through the real stores' public write methods (AlertStore.
    create_group/update_group/queue_ack/count, DeployStore.create/update, BackupStore.create/update, AuditLog.record;
    audit records through a Redis pipeline to keep the fill short): 100,000 alert groups over 85 days (30% acked),
    1,000,000 audit entries over 400 days, 20,000 deploys over 400 days (10 services x 2 environments), 5,000
    backups (5 targets), all times `--scale`d.
Server-side time: for slash commands, an aiohttp middleware in the bot times the signed POST /slack/events the
emulator sends (signature check, Bolt, the handler, the reply: commands answer in the ack); for the App Home, the
registered `app_home_opened` handler is awaited directly (it runs after the ack), views.publish included.
Requests alternate between the two bots; p50/p99 over `--reps` each. Targets: p99 <= 50 ms and <= 1.2x the anchor.

Run: python bench/history.py [--scale 0.1] [--reps 2000] [--json]   (--scale 1 for the issue's full history)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.alerts.model import AlertGroup, Member
from bot.alerts.store import AlertStore
from bot.backups.model import BackupRecord, BackupState
from bot.backups.store import BackupStore
from bot.deploys.model import DeployRecord, DeployState
from bot.deploys.store import DeployStore
from bot.emulator import SlackEmulator, Workspace
from bot.platform.audit import AuditLog
from bot.platform.embedded_redis import EmbeddedRedis
from bot.platform.metrics import Metrics
from bot.platform.store import Store
from bot.shell.composition import DEPS, build_catalog, create_web_app
from bot.shell.config import ChatopsConfig, parse_config
from bot.shell.deps import Deps
from bot.shell.settings import Settings
from bot.shell.web import STORE

BOT_TOKEN = "xoxb-bench-token"
SERVICES = [f"svc{n}" for n in range(9)] + ["web"]
# Recent deploys of web and backups of appdb in the live set: one page of `/deploy history` and `/backup list` (10
# by default), so that both bots render as many rows (with 5, the filled bot rendered twice the anchor's rows).
LIVE_PAGE = 10
TARGETS = ["appdb"] + [f"db{n}" for n in range(4)]
COMMANDS = [
    ("/alerts", "/alerts", ""),
    ("/alerts stats 30d", "/alerts", "stats 30d"),
    ("/deploy history web", "/deploy", "history web"),
    ("/backup list appdb", "/backup", "list appdb"),
    ("/chatops audit", "/chatops", "audit"),
    ("/status", "/status", ""),
]
CONCURRENCY = 48


def config_text(backup_dir: Path) -> str:
    """Ten services with two environments each (a no-op deployer), five backup targets, no health checks."""
    services = "\n".join(
        f"  {name}:\n    environments:\n"
        + "".join(
            f'      {env}:\n        deployer: {{kind: command, argv: ["true"]}}\n' for env in ("staging", "production")
        )
        for name in SERVICES
    )
    targets = "\n".join(f"    {name}: {{kind: redis, url_env: BENCH_REDIS_URL, storage: local}}" for name in TARGETS)
    return (
        f'slack: {{announce_channel: "#general"}}\nroles:\n  admins: [U0DEMO]\n  deployers: '
        f"[U0DEMO]\nservices:\n{services}\n"
        f'backups:\n  channel: "#backups"\n  storage:\n    local: {{kind: local, path: "{backup_dir}"}}\n'
        f"  targets:\n{targets}\n"
    )


@asynccontextmanager
async def running_bot(
    emulator: SlackEmulator, redis_url: str, config: ChatopsConfig, timings: dict[str, list[float]]
) -> AsyncIterator[tuple[web.Application, str]]:
    """The bot's real web app, with a middleware that times every POST /slack/events (server-side)."""

    @web.middleware
    async def timer(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            return await handler(request)
        finally:
            timings.setdefault("last", []).append(time.perf_counter() - started)

    settings = Settings.model_validate(
        {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": emulator.signing_secret,
            "SLACK_API_URL": emulator.api_url,
            "REDIS_URL": redis_url,
            "LOG_LEVEL": "WARNING",
        }
    )
    app = create_web_app(settings, config, mount=lambda a: a.middlewares.append(timer))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield app, f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
    finally:
        await runner.cleanup()


async def gather_bounded(jobs: list[Callable[[], Awaitable[Any]]], limit: int = CONCURRENCY) -> None:
    """Runs the jobs with at most `limit` in flight."""
    queue = iter(jobs)

    async def worker() -> None:
        for job in queue:
            await job()

    await asyncio.gather(*[worker() for _ in range(limit)])


def alert_group(n: int, created: datetime, *, firing: bool) -> AlertGroup:
    member = Member(
        fingerprint=f"fp{n}",
        title=f"HighLatency {n % 50}",
        severity="critical" if n % 7 == 0 else "warning",
        status="firing" if firing else "resolved",
        labels={"alertname": f"HighLatency{n % 50}", "service": SERVICES[n % len(SERVICES)]},
        starts_at=created,
        last_seen=created,
    )
    return AlertGroup(
        id=f"a-{n:08x}",
        group_key=f"k{n}",
        channel="#alerts",
        members={member.fingerprint: member},
        created_at=created,
        updated_at=created,
        message_channel="C0ALERTS",
        message_ts=f"{created.timestamp():.6f}",
    )


@dataclass(frozen=True)
class Seed:
    """A bot's stores over its own Redis, for filling history (the services keep theirs private)."""

    store: Store
    alerts: AlertStore
    deploys: DeployStore
    backups: BackupStore
    audit: AuditLog
    metrics: Metrics

    @classmethod
    def of(cls, app: web.Application) -> Seed:
        """The stores of the bot `app` runs."""
        store = app[STORE]
        deps = app[DEPS]
        history_keep = deps.config.backups.history_keep
        return cls(
            store=store,
            alerts=AlertStore(store),
            deploys=DeployStore(store),
            backups=BackupStore(store, history_keep=history_keep),
            audit=deps.audit,
            metrics=deps.metrics,
        )


async def fill_live(deps: Seed, now: datetime) -> None:
    """The live set both bots hold: firing groups, recent deploys and backups, a few audit entries."""
    for n in range(20):
        group = alert_group(10_000_000 + n, now - timedelta(minutes=n), firing=True)
        await deps.alerts.create_group(group, post_at=now + timedelta(days=3650))
    for n in range(LIVE_PAGE):
        await write_deploy(deps, f"d-live{n}", "web", "production", now - timedelta(hours=n + 1), n)
        await write_backup(deps, f"b-live{n}", "appdb", now - timedelta(hours=n + 1), n)
    for n in range(20):
        await deps.audit.record(actor="U0DEMO", action="deploy.request", result="ok", target=f"web v{n}")


async def write_deploy(deps: Seed, deploy_id: str, service: str, env: str, at: datetime, n: int) -> None:
    state = DeployState.FAILED if n % 10 == 3 else DeployState.SUCCEEDED
    record = DeployRecord(
        id=deploy_id,
        kind="deploy",
        service=service,
        environment=env,
        version=f"v1.{n}.0",
        previous_version=f"v1.{n - 1}.0",
        requested_by="U0DEMO",
        state=DeployState.RUNNING,
        created_at=at,
        updated_at=at,
        started_at=at,
    )
    await deps.deploys.create(record)
    done = at + timedelta(minutes=4)
    await deps.deploys.update(
        deploy_id, lambda r: r.model_copy(update={"state": state, "finished_at": done, "updated_at": done})
    )


async def write_backup(deps: Seed, backup_id: str, target: str, at: datetime, n: int) -> None:
    state = BackupState.FAILED if n % 20 == 7 else BackupState.SUCCEEDED
    record = BackupRecord(
        id=backup_id, target=target, kind="redis", state=BackupState.RUNNING, requested_by="schedule", created_at=at
    )
    await deps.backups.create(record)
    done = at + timedelta(seconds=30)
    await deps.backups.update(
        backup_id,
        lambda r: r.model_copy(
            update={
                "state": state,
                "finished_at": done,
                "size": 10_000_000 + n,
                "seconds": 30.0,
                "storage": "local",
                "key": f"{target}/{backup_id}.rdb.zst",
            }
        ),
    )


async def fill_history(deps: Seed, now: datetime, scale: float) -> dict[str, float]:
    """History through the stores' write methods; returns seconds spent per kind."""
    took: dict[str, float] = {}
    store = deps.alerts
    groups = int(100_000 * scale)
    started = time.perf_counter()

    async def one_group(n: int) -> None:
        created = now - timedelta(days=85) + timedelta(seconds=85 * 86400 * n / max(groups, 1))
        group = alert_group(n, created, firing=False)
        await store.create_group(group, post_at=now + timedelta(days=3650))
        resolved_at = created + timedelta(minutes=12)
        acked = n % 10 < 3

        def resolve(g: AlertGroup) -> AlertGroup:
            members = {
                fp: m.model_copy(update={"status": "resolved", "ends_at": resolved_at}) for fp, m in g.members.items()
            }
            return g.model_copy(
                update={
                    "members": members,
                    "state": "resolved",
                    "resolved_at": resolved_at,
                    "updated_at": resolved_at,
                    "resolved_by": "U0DEMO",
                    **({"acked_by": "U0DEMO", "acked_at": created + timedelta(minutes=3)} if acked else {}),
                }
            )

        def ack(pipe: Any, g: AlertGroup) -> None:
            if acked:
                at = created + timedelta(minutes=3)
                store.queue_ack(
                    pipe,
                    {
                        "group": g.id,
                        "fingerprints": ",".join(g.members),
                        "user": "U0DEMO",
                        "at": at.isoformat(),
                        "seconds_to_ack": "180.000",
                        "via": "button",
                        "title": g.title,
                        "escalation": "",
                        "step": "0",
                        "round": "0",
                        "pages": "0",
                        "rotation": "",
                        "paged": "",
                        "severity": g.severity,
                    },
                )

        await store.update_group(group.id, resolve, dirty=False, also=ack)
        await store.drop_post(group.id)
        await store.count(created, "received")
        await store.count(created, "posted")
        await store.count(resolved_at, "resolved")

    await gather_bounded([lambda n=n: one_group(n) for n in range(groups)])
    took["alert groups"] = time.perf_counter() - started

    started = time.perf_counter()
    deploys = int(20_000 * scale)
    keys = [(service, env) for service in SERVICES for env in ("staging", "production")]
    await gather_bounded(
        [
            lambda n=n: write_deploy(
                deps,
                f"d-{n:07d}",
                *keys[n % len(keys)],
                now - timedelta(days=400) + timedelta(seconds=(400 * 86400 - 7200) * n / max(deploys, 1)),
                n,
            )
            for n in range(deploys)
        ]
    )
    took["deploys"] = time.perf_counter() - started

    started = time.perf_counter()
    backups = int(5_000 * scale)
    await gather_bounded(
        [
            lambda n=n: write_backup(
                deps,
                f"b-{n:07d}",
                TARGETS[n % len(TARGETS)],
                now - timedelta(days=400) + timedelta(seconds=(400 * 86400 - 7200) * n / max(backups, 1)),
                n,
            )
            for n in range(backups)
        ]
    )
    took["backups"] = time.perf_counter() - started

    started = time.perf_counter()
    entries = int(1_000_000 * scale)
    first = now - timedelta(days=400)
    step = timedelta(seconds=400 * 86400 / max(entries, 1))
    batch = 2000
    for offset in range(0, entries, batch):
        # AuditLog.record, its XADD queued on a pipeline (Store over the pipeline) rather than one round trip each.
        async with deps.store.redis.pipeline(transaction=False) as pipe:
            times = iter([first + step * (offset + i) for i in range(batch)])
            log = AuditLog(Store(pipe, deps.store.keys, deps.metrics), clock=lambda times=times: next(times))
            for i in range(min(batch, entries - offset)):
                await log.record(
                    actor="U0DEMO",
                    action="deploy.request",
                    result="ok",
                    target=f"svc{i % 9} v1.{i}.0",
                    channel="C0GENERAL",
                    detail="to production",
                )
            await pipe.execute()
    took["audit entries"] = time.perf_counter() - started
    return took


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p * len(ordered)) - 1))]


async def measure(
    bots: dict[str, tuple[SlackEmulator, str, Deps, dict[str, list[float]]]], reps: int
) -> dict[str, dict[str, list[float]]]:
    """Per figure and bot, the server-side seconds of each repetition (the bots alternate, request by request)."""
    home = build_catalog().events()["app_home_opened"]
    results: dict[str, dict[str, list[float]]] = {}
    for label, command, text in COMMANDS:
        for rep in range(reps + 5):
            for name, (emulator, url, _, timings) in bots.items():
                emulator.app_url = url
                timings["last"] = []
                answer = await emulator.send_command(
                    command=command, text=text, user_id="U0DEMO", channel_id="C0GENERAL"
                )
                assert answer.status == 200, (label, answer)
                if rep >= 5:  # warm-up first
                    results.setdefault(label, {}).setdefault(name, []).append(timings["last"][0])
    for rep in range(reps + 5):
        for name, (_, _, deps, _) in bots.items():
            started = time.perf_counter()
            await home(deps, {"type": "app_home_opened", "user": "U0DEMO", "tab": "home"})
            if rep >= 5:
                results.setdefault("App Home", {}).setdefault(name, []).append(time.perf_counter() - started)
    return results


async def answers(emulator: SlackEmulator, url: str) -> dict[str, str]:
    """The first line of each answer, to show both bots answer the same kind of thing."""
    emulator.app_url = url
    found = {}
    for label, command, text in COMMANDS:
        answer = await emulator.send_command(command=command, text=text, user_id="U0DEMO", channel_id="C0GENERAL")
        found[label] = str((answer.json or {}).get("text", ""))[:110].replace("\n", " | ")
    return found


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--scale",
        type=float,
        default=0.1,
        help="history size: 1.0 = the issue's figures (about 10 minutes to fill here), default 0.1",
    )
    parser.add_argument(
        "--reps",
        type=int,
        default=2000,
        help="measured repetitions per figure and bot (default 2000: the p99 is then the 20th slowest request, so one "
        "pause on a shared machine does not decide it)",
    )
    parser.add_argument("--keep", action="store_true", help="print the Redis dirs and leave them (for bench/memory.py)")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON list on the last line")
    args = parser.parse_args()
    now = datetime.now(UTC)
    tmp = Path(tempfile.mkdtemp(prefix="chatops-history-"))
    servers = {name: EmbeddedRedis(tmp / name).start() for name in ("anchor", "filled")}
    try:
        config = parse_config(config_text(tmp / "backups"), "bench.yaml")
        bots: dict[str, tuple[SlackEmulator, str, Deps, dict[str, list[float]]]] = {}
        apps: dict[str, web.Application] = {}
        async with running_bots(servers, config, bots, apps):
            started = time.perf_counter()
            seeds = {name: Seed.of(app) for name, app in apps.items()}
            took = await fill_history(seeds["filled"], now, args.scale)
            print(
                f"filled in {time.perf_counter() - started:.0f}s: "
                + ", ".join(f"{k} {v:.0f}s" for k, v in took.items()),
                file=sys.stderr,
            )
            for seed in seeds.values():  # after the history: the newest records are the same in both
                await fill_live(seed, now)
            for seed in seeds.values():
                while not await seed.alerts.backfill_ack_counters(5000):  # what the retention job does first
                    pass
                pairs = [(service, env) for service in SERVICES for env in ("staging", "production")]
                while not await seed.deploys.backfill_figures(pairs, now, 5000):  # the retention job's, too
                    pass
            info = {}
            for name in servers:
                client = seeds[name].store.redis
                info[name] = (await client.dbsize(), (await client.info("memory"))["used_memory"])
            for name, (emulator, url, _, _) in bots.items():
                print(f"{name}: {info[name][0]:,} keys, {info[name][1] / 2**20:.0f} MiB; answers:", file=sys.stderr)
                for label, line in (await answers(emulator, url)).items():
                    print(f"  {label:22} {line}", file=sys.stderr)
            results = await measure(bots, args.reps)
    finally:
        for server in servers.values():
            if not args.keep:
                server.stop()
    rows = []
    print(f"\nHistory bench (scale {args.scale}, {args.reps} requests each; server-side ms)")
    print(f"{'figure':24} {'anchor p50':>10} {'p99':>7} {'filled p50':>11} {'p99':>7} {'ratio p99':>9}  met")
    for label, per in results.items():
        a50, a99 = percentile(per["anchor"], 0.5) * 1000, percentile(per["anchor"], 0.99) * 1000
        f50, f99 = percentile(per["filled"], 0.5) * 1000, percentile(per["filled"], 0.99) * 1000
        ratio = f99 / a99 if a99 else None
        met = f99 <= 50 and ratio is not None and ratio <= 1.2
        print(f"{label:24} {a50:10.2f} {a99:7.2f} {f50:11.2f} {f99:7.2f} {ratio or 0:9.2f}  {'yes' if met else 'NO'}")
        rows.append(
            {
                "figure": f"history {label} p99",
                "ours": round(f99, 3),
                "anchor": round(a99, 3),
                "ratio": round(ratio, 3) if ratio else None,
                "unit": "ms",
                "target": "p99 <= 50 ms and <= 1.2x empty history",
                "met": met,
            }
        )
        rows.append(
            {
                "figure": f"history {label} p50",
                "ours": round(f50, 3),
                "anchor": round(a50, 3),
                "ratio": round(f50 / a50, 3) if a50 else None,
                "unit": "ms",
                "target": "(info)",
                "met": None,
            }
        )
    if args.json:
        print(json.dumps(rows))


@asynccontextmanager
async def running_bots(
    servers: dict[str, EmbeddedRedis],
    config: ChatopsConfig,
    bots: dict[str, tuple[SlackEmulator, str, Deps, dict[str, list[float]]]],
    apps: dict[str, web.Application],
) -> AsyncIterator[None]:
    """An emulator and a bot per Redis, all in this process; all stopped on the way out."""
    async with AsyncExitStack() as stack:
        for name, server in servers.items():
            emulator = SlackEmulator(
                signing_secret=secrets.token_hex(16), bot_token=BOT_TOKEN, workspace=Workspace.demo()
            )
            runner = web.AppRunner(emulator.make_app(page=False), access_log=None)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            emulator.origin = f"http://127.0.0.1:{runner.addresses[0][1]}"
            timings: dict[str, list[float]] = {}
            app, url = await stack.enter_async_context(running_bot(emulator, server.url, config, timings))
            emulator.app_url = url
            bots[name] = (emulator, url, app[DEPS], timings)
            apps[name] = app
        yield


if __name__ == "__main__":
    asyncio.run(main())
