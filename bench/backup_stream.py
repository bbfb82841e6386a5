"""Backup streaming: throughput of a `/backup run` of a PostgreSQL database (the service's path: pg_dump -Fc read in
parts, encrypted with AES-256-GCM under a fresh data key (`encryption: {key_env: …}`; `--no-encryption` to leave it
out), hashed, uploaded as an S3 multipart upload to a local SeaweedFS) against `pg_dump -Fc > /dev/null` of the same
database in the same run, and the peak RSS of the process running the service.

It starts its own PostgreSQL (initdb, as the postgres user when root), `weed mini` and redis-server, fills a table
with `--gb` GB of rows, then times the baseline and the service path (each `--runs` times, best of) and prints the
figures and the ratios. Targets: throughput >= 0.9x the baseline, peak RSS <= 150 MB.
Run: python bench/backup_stream.py [--gb 1] [--runs 1] [--no-encryption]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.rows import emit, row
from bot.platform.embedded_redis import EmbeddedRedis
from tests.backups.servers import PG_PASSWORD, Postgres, postgres_server, seaweed

ROW_BYTES = 136  # three md5 hex strings + an int + the tuple header, as PostgreSQL stores them


def fill(pg: Postgres, database: str, gb: float) -> int:
    rows = int(gb * 1024**3 / ROW_BYTES)
    pg.psql(f"CREATE DATABASE {database}")
    step = 2_000_000
    pg.psql("CREATE TABLE big (id bigint, a text, b text, c text)", database)
    for start in range(0, rows, step):
        end = min(rows, start + step)
        pg.psql(
            f"INSERT INTO big SELECT g, md5(g::text), md5((g * 31)::text), md5((g * 17 + 3)::text) "
            f"FROM generate_series({start + 1}, {end}) g",
            database,
        )
    return int(pg.psql(f"SELECT pg_database_size('{database}')"))


def baseline(pg: Postgres, database: str) -> tuple[float, int]:
    env = dict(os.environ, PGPASSWORD=PG_PASSWORD)
    started = time.monotonic()
    with open(os.devnull, "wb") as null:
        subprocess.run(
            [
                f"{pg.bin_dir}/pg_dump",
                "--format=custom",
                "--no-password",
                f"--dbname=postgresql://postgres@127.0.0.1:{pg.port}/{database}",
            ],
            env=env,
            stdout=null,
            check=True,
        )
    return time.monotonic() - started, 0


async def drive(config_path: str, redis_url: str) -> None:
    """The service path, in this (child) process: prints one JSON line with the result and the peak RSS."""
    import redis.asyncio as aioredis
    from slack_sdk.web.async_client import AsyncWebClient

    from bot.alerts.pipeline import AlertPipeline
    from bot.alerts.store import AlertStore
    from bot.backups.service import BackupService
    from bot.backups.store import BackupStore
    from bot.platform.audit import AuditLog
    from bot.platform.keys import Keys
    from bot.platform.metrics import Metrics
    from bot.platform.store import Store
    from bot.platform.tasks import BackgroundTasks
    from bot.shell.config import load_config
    from bot.shell.deps import utc_now

    config = load_config(config_path)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    store = Store(client, Keys("bench"), Metrics())
    slack = AsyncWebClient(
        token="xoxb-unused", base_url="http://127.0.0.1:9/"
    )  # no channel is configured: never called
    audit = AuditLog(store, utc_now)
    service = BackupService(
        config.backups,
        announce_channel=config.slack.announce_channel,
        records=BackupStore(store),
        slack=slack,
        audit=audit,
        alerts=AlertPipeline(config=config.alerts, store=AlertStore(store), slack=slack, audit=audit, clock=utc_now),
        tasks=BackgroundTasks(),
        clock=utc_now,
    )
    started = time.monotonic()
    record = await service.run_scheduled("bench")
    seconds = time.monotonic() - started
    await service.aclose()
    await client.aclose()
    assert record is not None
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "state": record.state.value,
                "detail": record.detail,
                "size": record.size,
                "seconds": seconds,
                "peak_rss_mb": peak_kib / 1024,
            }
        )
    )


def service_run(config_path: Path, redis_url: str, env: dict[str, str]) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, __file__, "--drive", str(config_path), redis_url],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    outcome: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    if outcome["state"] != "succeeded":
        raise SystemExit(f"the backup failed: {outcome['detail']}")
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=1.0, help="size of the generated table in GB (default 1)")
    parser.add_argument("--runs", type=int, default=1, help="runs of each side; the best is reported")
    parser.add_argument("--no-encryption", action="store_true", help="store the dump unencrypted")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON rows last (bench/run_all.py)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="chatops-bench-"))
    base.chmod(0o755)  # the PostgreSQL server runs as the postgres user and must reach its folder inside
    (base / "pg").mkdir()
    (base / "weed").mkdir()
    try:
        with postgres_server(base / "pg") as pg, seaweed(base / "weed") as s3:
            if isinstance(pg, str) or isinstance(s3, str):
                raise SystemExit(f"cannot run: {pg if isinstance(pg, str) else s3}")
            redis = EmbeddedRedis(base / "redis").start()
            try:
                print(f"generating {args.gb:g} GB of rows…", flush=True)
                size = fill(pg, "bench", args.gb)
                print(f"database size: {size / 1024**3:.2f} GiB", flush=True)
                s3.client().create_bucket(Bucket="bench-backups")
                config = base / "bench.yaml"
                encryption = "" if args.no_encryption else ", encryption: {key_env: BENCH_BACKUP_KEY}"
                config.write_text(f"""
roles: {{admins: [U0DEMO]}}
backups:
  storage:
    main: {{kind: s3, bucket: bench-backups, endpoint_url_env: S3_ENDPOINT_URL, region: eu-west-1{encryption}}}
  targets:
    bench: {{kind: postgres, dsn_env: BENCH_DB_URL, bin_dir: "{pg.bin_dir}", storage: main}}
""")
                env = dict(
                    os.environ,
                    BENCH_DB_URL=pg.url("bench"),
                    S3_ENDPOINT_URL=s3.url,
                    AWS_ACCESS_KEY_ID="bench",
                    AWS_SECRET_ACCESS_KEY="bench",
                    BENCH_BACKUP_KEY=base64.b64encode(os.urandom(32)).decode(),
                )
                base_times, runs = [], []
                for _ in range(args.runs):
                    base_times.append(baseline(pg, "bench")[0])
                    runs.append(service_run(config, redis.url, env))
                best_base = min(base_times)
                best = min(runs, key=lambda r: float(r["seconds"]))
                seconds = float(best["seconds"])
                dump = int(best["size"])
                peak = max(float(r["peak_rss_mb"]) for r in runs)
                print(
                    f"pg_dump -Fc > /dev/null : {best_base:7.1f} s  "
                    f"({size / best_base / 1024**2:6.1f} MiB/s of database)"
                )
                mode = "plain" if args.no_encryption else "AES-256-GCM"
                print(
                    f"/backup run ({mode:<11}): {seconds:7.1f} s  "
                    f"({size / seconds / 1024**2:6.1f} MiB/s of database, "
                    f"dump {dump / 1024**2:.0f} MiB uploaded at {dump / seconds / 1024**2:.1f} MiB/s)"
                )
                print(f"throughput ratio        : {best_base / seconds:.2f}x the baseline (target >= 0.90x)")
                print(f"peak RSS of the service : {peak:.0f} MB (target <= 150 MB)")
                if args.json:
                    emit(
                        [
                            row(
                                f"backup throughput ({args.gb:g} GB, {mode})",
                                size / seconds / 1024**2,
                                anchor=size / best_base / 1024**2,
                                unit="MiB/s",
                                target=">= 0.9x pg_dump",
                                met=best_base / seconds >= 0.9,
                            ),
                            row("backup peak RSS", peak, unit="MB", target="<= 150 MB", met=peak <= 150),
                        ]
                    )
            finally:
                redis.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--drive":
        asyncio.run(drive(sys.argv[2], sys.argv[3]))
    else:
        main()
