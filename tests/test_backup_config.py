"""The `backups:` section: the issue's shape validates; a wrong storage, role, cron, duration or kind is reported
with its key path; and the `/backup` grammar answers any text with a command or a UsageError, never a crash."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.backups.config import PostgresTarget, RdsTarget, RedisTarget
from bot.platform.errors import UsageError
from bot.shell.config import ConfigError, parse_config
from commands.backup_grammar import ListCmd, RestoreCmd, RunCmd, VerifyCmd, parse_backup

ISSUE = """
roles:
  admins: [U0DEMO]
  approvers: [U0ALICE]
backups:
  channel: "#backups"
  storage:
    main: {kind: s3, bucket: "acme-backups", prefix: "chatops/", region: eu-west-1, \
           endpoint_url_env: S3_ENDPOINT_URL, storage_class: STANDARD_IA, sse: AES256}
    local: {kind: local, path: "./backups"}
  targets:
    appdb:   {kind: postgres, dsn_env: APPDB_URL, storage: main, schedule: "0 2 * * *", \
              retention: {daily: 7, weekly: 4, monthly: 6}, rpo: 26h, verify_schedule: "0 4 * * 0"}
    cache:   {kind: redis, url_env: CACHE_REDIS_URL, storage: main, schedule: "0 */6 * * *", retention: {max_age: 30d}}
    rds-prod: {kind: rds_snapshot, instance: prod-db, region: eu-west-1, schedule: "30 2 * * *", \
               retention: {max_age: 30d}}
  restore_approval: {required: 1, approvers: approvers, allow_self_approval: false}
"""


def test_the_issue_configuration_validates() -> None:
    config = parse_config(ISSUE, "chatops.yaml").backups
    assert isinstance(config.targets["appdb"], PostgresTarget) and config.targets["appdb"].rpo == timedelta(hours=26)
    assert isinstance(config.targets["cache"], RedisTarget) and config.targets["cache"].retention.max_age == timedelta(
        days=30
    )
    assert isinstance(config.targets["rds-prod"], RdsTarget)
    assert config.operators == "admins" and config.restore_approval.approvers == "approvers"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ('storage: main, schedule: "0 2', 'storage: mian, schedule: "0 2'),
            "targets.appdb.storage: storage 'mian' is not defined (storages: main, local)",
        ),
        (
            ("approvers: approvers", "approvers: releasers"),
            "backups.restore_approval.approvers: role 'releasers' is not defined under roles",
        ),
        (
            ('channel: "#backups"', 'channel: "#backups"\n  operators: dbas'),
            "backups.operators: role 'dbas' is not defined under roles",
        ),
        (
            ('"0 4 * * 0"', '"0 25 * * 0"'),
            "line 11, backups.targets.appdb.verify_schedule: cron hour: '25' is not a number from 0 to 23",
        ),
        (
            ('"0 2 * * *"', '"0 2 1 * 1"'),
            "backups.targets.appdb.schedule: restrict either the day of month or the day of week",
        ),
        (
            ("rpo: 26h", "rpo: soon"),
            "line 11, backups.targets.appdb.rpo: must be a duration like 30s, 5m, 2h or 1d (got 'soon')",
        ),
        (
            ("dsn_env: APPDB_URL", "dsn_env: postgres://x"),
            "backups.targets.appdb.dsn_env: 'postgres://x' is not an environment variable name",
        ),
        (("retention: {daily: 7,", "retention: {daily: 0,"), "backups.targets.appdb.retention.daily: must be ≥ 1"),
        (('bucket: "acme-backups"', 'bucket: "Acme Backups"'), "backups.storage.main.bucket: must match"),
        (("sse: AES256", "sse: rot13"), "backups.storage.main.sse: must be one of: 'AES256' or 'aws:kms'"),
        (("    cache:", "    run:"), "backups.targets.run: 'run' is a /backup keyword and cannot name a target"),
        (
            ('storage: main, schedule: "0 */6', 'schedule: "0 */6'),
            "backups.targets.cache.storage: required key is missing",
        ),
    ],
)
def test_config_errors_name_the_key(change: tuple[str, str], expected: str) -> None:
    old, new = change
    assert old in ISSUE
    with pytest.raises(ConfigError) as caught:
        parse_config(ISSUE.replace(old, new, 1), "chatops.yaml")
    assert any(expected in str(problem) for problem in caught.value.problems), str(caught.value)


def test_grammar_examples() -> None:
    assert parse_backup("run appdb --reason 'pre-migration'") == RunCmd("appdb", "pre-migration")
    assert parse_backup("list appdb 3") == ListCmd("appdb", 3)
    assert parse_backup("verify appdb") == VerifyCmd("appdb", None)
    assert parse_backup("restore appdb appdb-1 into STAGING_URL") == RestoreCmd("appdb", "appdb-1", "STAGING_URL")


@given(st.text(max_size=200))
def test_grammar_never_crashes(text: str) -> None:
    try:
        parse_backup(text)
    except UsageError as error:
        assert error.message and "Traceback" not in error.message
