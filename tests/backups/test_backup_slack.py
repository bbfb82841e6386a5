"""`/backup` end to end: signed slash commands and button clicks through the emulator into the real bot, with the
backup landing in real S3 and the restore running pg_restore; bad input and missing roles change nothing."""

from __future__ import annotations

import html

import pytest

from bot.backups.model import BackupState, RestoreState
from bot.shell.config import ChatopsConfig, parse_config
from tests.backups.harness import backup_yaml, set_environment
from tests.backups.servers import Postgres, S3Server
from tests.conftest import BotHarness
from tests.state import state
from tests.waiting import eventually


@pytest.fixture
def bot_config(
    monkeypatch: pytest.MonkeyPatch,
    postgres: Postgres,
    appdb: str,
    s3_server: S3Server,
    bucket: str,
    redis_url: str,
    moto_url: str,
) -> ChatopsConfig:
    set_environment(
        monkeypatch, postgres=postgres, database=appdb, s3=s3_server, redis_url=redis_url, moto_url=moto_url
    )
    return parse_config(backup_yaml(bucket, postgres.bin_dir), "backups.yaml")


async def command(bot: BotHarness, text: str, user: str) -> str:
    result = await bot.emulator.send_command(command="/backup", text=text, user_id=user, channel_id="C0GENERAL")
    assert result.status == 200 and result.json is not None, result
    assert result.json.get("response_type", "ephemeral") == "ephemeral"
    return html.unescape(result.json["text"])


def ephemeral_texts(bot: BotHarness, user: str) -> list[str]:
    return [
        html.unescape(str(m.get("text")))
        for channel in ("#backups", "C0GENERAL")
        for m in bot.emulator.messages(channel)
        if m.get("ephemeral_to") == user
    ]


async def test_run_list_show_and_restore_with_approval(bot: BotHarness, postgres: Postgres, appdb: str) -> None:
    service = bot.deps.backups
    ack = await command(bot, "run appdb --reason 'before the migration'", "U0BOB")
    assert "Backup of `appdb` started" in ack and "<#C0BACKUPS>" in ack
    backup_id = ack.split("`")[3]

    async def finished() -> bool:
        record = await service.get(backup_id)
        return record is not None and record.state != BackupState.RUNNING and record.message_ts is not None

    await eventually(finished, "the backup run to finish")
    record = await service.get(backup_id)
    assert record is not None and record.state == BackupState.SUCCEEDED, record.detail
    assert record.channel and record.message_ts

    async def reported() -> bool:  # the message is updated right after the state is written
        message = bot.emulator.find_message(record.channel, record.message_ts)
        return message is not None and "Succeeded" in str(message["blocks"])

    await eventually(reported, "the result reported in Slack")
    message = bot.emulator.find_message(record.channel, record.message_ts)
    assert message is not None and "Succeeded" in str(message["blocks"]) and record.sha256 in str(message["blocks"])
    assert record.location in str(message["blocks"]) and "before the migration" in str(message["blocks"])
    assert len([m for m in bot.emulator.messages(record.channel) if "Backup of appdb" in str(m.get("text"))]) == 1

    listing = await command(bot, "list appdb 5", "U0CAROL")
    assert backup_id in listing and "<@U0BOB>" in listing
    shown = await command(bot, f"show {backup_id}", "U0CAROL")
    assert record.sha256 in shown and record.location in shown

    before = postgres.psql("SELECT count(*) FROM orders", database=appdb)
    postgres.psql("DELETE FROM orders WHERE id > 100", database=appdb)
    asked = await command(bot, f"restore appdb {backup_id}", "U0BOB")
    assert "needs 1 approval from `approvers`" in asked
    restore_id = asked.split("`")[1]
    restore = await service.get_restore(restore_id)
    assert restore is not None and restore.channel and restore.message_ts
    posted = bot.emulator.find_message(restore.channel, restore.message_ts)
    assert posted is not None and "backup.approve" in str(posted)

    async def click(user: str, action: str = "approve") -> None:
        result = await bot.emulator.send_block_action(
            channel=restore.channel,
            message_ts=restore.message_ts,
            action_id=f"backup.{action}",
            value=restore_id,
            user_id=user,
        )
        assert result.status == 200

    await click("U0BOB")  # the requester, and not an approver
    await eventually(
        lambda: _has(bot, "U0BOB", "Only members of `approvers` can approve this restore"),
        "U0BOB told only approvers may approve",
    )
    await click("U0ALICE")  # an approver, but also an operator who did not ask: allowed

    async def restored() -> bool:
        current = await service.get_restore(restore_id)
        return current is not None and current.terminal

    await eventually(restored, "the restore to complete")
    done = await service.get_restore(restore_id)
    assert done is not None and done.state == RestoreState.SUCCEEDED and done.approved_by == ("U0ALICE",), done.detail
    assert postgres.psql("SELECT count(*) FROM orders", database=appdb) == before

    async def updated() -> bool:  # the message is updated right after the state is written
        final = bot.emulator.find_message(restore.channel, restore.message_ts)
        return final is not None and "Restored" in str(final["blocks"]) and "backup.approve" not in str(final)

    await eventually(updated, "the restore message updated")
    audit = {(r.actor, r.action, r.result) for r in await bot.deps.audit.recent(50)}
    assert ("U0BOB", "backup.restore.approve", "denied") in audit
    assert ("U0ALICE", "backup.restore.approve", "ok") in audit and ("U0BOB", "backup.restore.finish", "ok") in audit


async def _has(bot: BotHarness, user: str, text: str) -> bool:
    return any(text in t for t in ephemeral_texts(bot, user))


async def test_self_approval_is_refused(bot: BotHarness) -> None:
    record = await bot.deps.backups.run_scheduled("appdb")
    assert record is not None
    asked = await command(bot, f"restore appdb {record.id}", "U0ALICE")
    restore = await bot.deps.backups.get_restore(asked.split("`")[1])
    assert restore is not None and restore.channel and restore.message_ts
    await bot.emulator.send_block_action(
        channel=restore.channel,
        message_ts=restore.message_ts,
        action_id="backup.approve",
        value=restore.id,
        user_id="U0ALICE",
    )
    await eventually(
        lambda: _has(bot, "U0ALICE", "You requested this restore; someone else has to approve it."),
        "U0ALICE told someone else has to approve",
    )
    current = await bot.deps.backups.get_restore(restore.id)
    assert current is not None and current.state == RestoreState.AWAITING_APPROVAL


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "Say what to do: `run`, `list`, `show`, `verify`, `restore`, `drill` or `drills`."),
        ("run", "`/backup run` needs a target. Targets: `appdb`, `cache`, `rds-prod`."),
        ("list", "`/backup list` needs a target. Targets: `appdb`, `cache`, `rds-prod`."),
        ("run nosuch", "There is no backup target `nosuch`. Targets: `appdb`, `cache`, `rds-prod`."),
        ("run appdb extra", "`/backup run` takes <target>; `extra` is one word too many."),
        ("list appdb 0", "N must be a whole number from 1 to 50 (got `0`)."),
        ("list appdb many", "N must be a whole number from 1 to 50 (got `many`)."),
        ("show", "`/backup show` needs <id>."),
        (
            "show appdb-19990101-000000-xxxx",
            "There is no backup `appdb-19990101-000000-xxxx`. See `/backup list <target>`.",
        ),
        ("show bad/id", "`bad/id` is not a valid backup id"),
        ("verify appdb", "`appdb` has no complete backup to verify yet. Make one with `/backup run appdb`."),
        ("restore appdb", "`/backup restore` needs <target> <id> [into <ENV_VAR> | as <new-instance>]."),
        ("restore appdb nope", "There is no backup `nope` of `appdb`. See `/backup list appdb`."),
        (
            "restore appdb x onto DB",
            "After the backup id, only `into <ENV_VAR>` (the variable that holds the destination's URL) or `as "
            "<new-instance>`",
        ),
        ("restore appdb x into 9DB", "`9DB` is not an environment variable name"),
        (
            "restore appdb x into SLACK_BOT_TOKEN",
            "`appdb` cannot be restored into `SLACK_BOT_TOKEN`. Allowed: `APPDB_URL`, `RESTORE_URL`",
        ),
        (
            "restore rds-prod x",
            "`rds-prod` is an RDS snapshot: it is restored as a NEW instance, never over one. Name it: `/backup "
            "restore rds-prod <id> as <new-instance-name>`.",
        ),
        (
            "backup appdb",
            "`backup` is not a /backup subcommand (use one of: run, list, show, verify, restore, drill, drills).",
        ),
        ("list appdb --reason x", "`--reason` does not apply here: `/backup list` takes no options"),
        ("run appdb --reason a --reason b", "`--reason` is given twice"),
        ("run appdb --reason a –reason b", "`--reason` is given twice"),
    ],
)
async def test_bad_input_gets_a_precise_ephemeral_error(bot: BotHarness, text: str, expected: str) -> None:
    answer = await command(bot, text, "U0BOB")
    assert expected in answer
    assert "Traceback" not in answer
    assert await bot.deps.backups.history("appdb", 10) == []
    assert await bot.deps.backups.recent_restores(10) == []


async def test_roles_are_checked(bot: BotHarness) -> None:
    for text in ("run appdb", "verify appdb", "restore appdb x"):
        answer = await command(bot, text, "U0CAROL")
        assert "You need the `operators` role" in answer, answer
    assert await bot.deps.backups.history("appdb", 10) == []
    denied = [r for r in await bot.deps.audit.recent(10) if r.result == "denied"]
    assert len(denied) == 3 and {r.actor for r in denied} == {"U0CAROL"}
    assert "No backups of `appdb` yet" in await command(bot, "list appdb", "U0CAROL")


async def test_one_backup_per_target_at_a_time(bot: BotHarness) -> None:
    service = bot.deps.backups
    lock, _ = await state(bot).backups.acquire_lock(
        "appdb",
        holder="U0ALICE",
        reason="backup of appdb",
        run_id="",
        now=bot.deps.clock(),
        ttl=service.section.lock_ttl,
    )
    assert lock is not None
    answer = await command(bot, "run appdb", "U0BOB")
    assert "`appdb` is busy: backup of appdb by <@U0ALICE>" in answer
    await state(bot).backups.release_lock("appdb", lock.token)
