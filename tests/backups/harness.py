"""The backup tests' configuration and environment: every target pointed at the tests' own servers."""

from __future__ import annotations

import pytest

from tests.backups.servers import Postgres, S3Server


def backup_yaml(
    bucket: str,
    pg_bin: str,
    *,
    restore_approval: str = "{required: 1, approvers: approvers, allow_self_approval: false}",
) -> str:
    return f"""
slack: {{announce_channel: "#general"}}
roles:
  admins: [U0DEMO]
  operators: [U0BOB, U0ALICE]
  approvers: [U0ALICE, U0CAROL]
backups:
  channel: "#backups"
  operators: operators
  lock_ttl: 3s
  storage:
    main: {{kind: s3, bucket: "{bucket}", prefix: "chatops/", region: eu-west-1, endpoint_url_env: S3_ENDPOINT_URL, \
            storage_class: STANDARD_IA, sse: AES256, part_size_mib: 5}}
  targets:
    appdb: {{kind: postgres, dsn_env: APPDB_URL, bin_dir: "{pg_bin}", storage: main, schedule: "0 2 * * *", \
             retention: {{daily: 7, weekly: 4, monthly: 6}}, rpo: 26h, verify_schedule: "0 4 * * 0", \
             restore_into: [RESTORE_URL]}}
    cache: {{kind: redis, url_env: CACHE_REDIS_URL, storage: main, schedule: "0 */6 * * *", \
             retention: {{max_age: 30d}}}}
    rds-prod: {{kind: rds_snapshot, instance: prod-db, region: eu-west-1, endpoint_url_env: RDS_ENDPOINT_URL, \
                poll_interval: 100ms, schedule: "30 2 * * *", retention: {{max_age: 30d}}}}
  restore_approval: {restore_approval}
"""


def set_environment(
    monkeypatch: pytest.MonkeyPatch, *, postgres: Postgres, database: str, s3: S3Server, redis_url: str, moto_url: str
) -> None:
    """The variables the configuration names (the bot reads its environment when it starts)."""
    monkeypatch.setenv("APPDB_URL", postgres.url(database))
    monkeypatch.setenv("RESTORE_URL", postgres.url(database + "_copy"))
    monkeypatch.setenv("S3_ENDPOINT_URL", s3.url)
    monkeypatch.setenv("CACHE_REDIS_URL", redis_url)
    monkeypatch.setenv("RDS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
