"""Deploys end to end: signed slash commands and button clicks through the emulator, real Redis, the real command
provider running a script, and a real HTTP health target."""

from __future__ import annotations

import asyncio
import html
import re

import pytest

from bot.deploys.model import DeployRecord, DeployState
from bot.shell.config import ChatopsConfig, parse_config
from tests.conftest import BotHarness, Target, fake_deploy_argv
from tests.deploy_messages import shown_message
from tests.state import state
from tests.waiting import eventually


def deploy_config(target: Target, *, expires: str = "30m", freeze: str = "") -> str:
    argv = fake_deploy_argv()
    env = f'{{DEPLOY_LOG: "{target.log}", STATE_DIR: "{target.state}"}}'
    return f"""
slack: {{announce_channel: "#general"}}
roles:
  admins: [U0DEMO]
  deployers: ["@platform", U0BOB]
  approvers: [U0ALICE, U0BOB]
deploys: {{lock_ttl: 3s}}
services:
  web:
    channel: "#deploys"
    environments:
      staging:
        deployer: {{kind: command, argv: {argv}, env: {env}, timeout: 30s}}
        health: {{url: "{target.url}/healthz/staging", checks: 2, interval: 50ms, timeout: 1s}}
      production:
        deployer: {{kind: command, argv: {argv}, env: {env}, timeout: 30s}}
        approval: {{required: 1, approvers: approvers, allow_self_approval: false, expires_after: {expires}, \
                    checklist: ["Migrations applied"]}}
        rollback_approval: false
        canary: [10, 50, 100]
        health: {{url: "{target.url}/healthz/production", checks: 2, interval: 50ms, timeout: 1s}}
        auto_rollback: true
        {f'freeze: [{{cron: "{freeze}", reason: "change freeze"}}]' if freeze else ""}
"""


@pytest.fixture
def bot_config(target: Target) -> ChatopsConfig:
    return parse_config(deploy_config(target), "deploys.yaml")


async def command(bot: BotHarness, text: str, user: str, command: str = "/deploy") -> str:
    result = await bot.emulator.send_command(command=command, text=text, user_id=user, channel_id="C0GENERAL")
    assert result.status == 200 and result.json is not None, result
    return html.unescape(result.json["text"])


async def wait_state(bot: BotHarness, deploy_id: str, *states: DeployState) -> DeployRecord:
    """The deploy's record once it is in one of `states` (and, for a final state, its message says so too)."""

    async def in_state() -> DeployRecord | None:
        record = await bot.deps.deploys.get(deploy_id)
        return record if record is not None and record.state in states else None

    record = await eventually(in_state, f"{deploy_id} to be {' or '.join(state.value for state in states)}")
    if record.terminal and record.message_ts:
        await shown_message(bot.emulator, record)  # the record is written first, its message edited after
    return record


def deploy_id_of(ack: str) -> str:
    return ack.split("`")[1]


async def click(bot: BotHarness, record: DeployRecord, action: str, user: str) -> None:
    assert record.channel and record.message_ts
    result = await bot.emulator.send_block_action(
        channel=record.channel,
        message_ts=record.message_ts,
        action_id=f"deploy.{action}",
        value=record.id,
        user_id=user,
    )
    assert result.status == 200


async def until_message(bot: BotHarness, deploy_id: str) -> DeployRecord:
    """The deploy's record once its message is posted."""

    async def posted() -> DeployRecord | None:
        record = await bot.deps.deploys.get(deploy_id)
        return record if record and record.message_ts else None

    return await eventually(posted, f"the message of {deploy_id} posted")


def direct_messages(bot: BotHarness, user: str) -> list[str]:
    channel = bot.emulator.workspace.im_with(user, create=False)
    return [str(m.get("text")) for m in bot.emulator.messages(channel.id)] if channel else []


def ephemeral_texts(bot: BotHarness, user: str) -> list[str]:
    return [
        html.unescape(str(m.get("text")))
        for m in bot.emulator.messages("#deploys") + bot.emulator.messages("C0GENERAL")
        if m.get("ephemeral_to") == user
    ]


async def successful_production(bot: BotHarness, version: str) -> DeployRecord:
    ack = await command(bot, f"web {version} to production", "U0BOB")
    record = await until_message(bot, deploy_id_of(ack))
    await click(bot, record, "approve", "U0ALICE")
    return await wait_state(bot, record.id, DeployState.SUCCEEDED)


async def test_staging_deploy_runs_once_and_reports(bot: BotHarness, target: Target) -> None:
    ack = await command(bot, "web v1.0.0 to staging --reason 'first'", "U0ALICE")
    assert "Deploy web v1.0.0 to staging" in ack and "starting now" in ack
    record = await wait_state(bot, deploy_id_of(ack), DeployState.SUCCEEDED)
    assert target.calls() == ["web v1.0.0 staging 100 rollback=false"]
    message = bot.emulator.find_message(record.channel or "", record.message_ts or "")
    assert message is not None and "Succeeded" in str(message["blocks"])

    def thread() -> list[str]:
        return [
            m["text"]
            for m in bot.emulator.messages(record.channel)
            if m.get("thread_ts") == record.message_ts and m["ts"] != record.message_ts
        ]

    await eventually(
        lambda: any("<@U0ALICE> web v1.0.0 is live in staging" in t for t in thread()),
        "the thread to say v1.0.0 is live in staging",
    )
    assert any("deploying web v1.0.0 to staging" in t for t in thread())
    assert await bot.deps.deploys.current_version("web", "staging") == "v1.0.0"
    await bot.idle()  # the lock is released right after the final state is written, by the deploy's task
    assert await state(bot).deploys.lock_holder("web", "staging") is None


async def test_production_needs_another_approver(bot: BotHarness, target: Target) -> None:
    ack = await command(bot, "web@v2 production", "U0BOB")
    assert "needs 1 approval from `approvers`" in ack
    record = await until_message(bot, deploy_id_of(ack))
    assert record.state == DeployState.AWAITING_APPROVAL
    message = bot.emulator.find_message(record.channel, record.message_ts)
    assert "Migrations applied" in str(message) and "deploy.approve" in str(message)
    await click(bot, record, "approve", "U0BOB")
    await click(bot, record, "approve", "U0CAROL")
    await bot.idle()  # both clicks handled: a deploy they started would have run by now
    assert (await bot.deps.deploys.get(record.id)).state == DeployState.AWAITING_APPROVAL
    assert target.calls() == []
    await eventually(
        lambda: any("someone else has to approve it" in t for t in ephemeral_texts(bot, "U0BOB")),
        "U0BOB told someone else has to approve",
    )
    await eventually(
        lambda: any("Only members of `approvers` can approve" in t for t in ephemeral_texts(bot, "U0CAROL")),
        "U0CAROL told only approvers may approve",
    )
    await click(bot, record, "approve", "U0ALICE")
    done = await wait_state(bot, record.id, DeployState.SUCCEEDED)
    assert done.approved_by == ("U0ALICE",)
    assert target.calls() == [f"web v2 production {w} rollback=false" for w in (10, 50, 100)]
    audit = [(r.actor, r.action, r.result) for r in await bot.deps.audit.recent(20)]
    assert ("U0CAROL", "deploy.approve", "denied") in audit and ("U0ALICE", "deploy.approve", "ok") in audit


async def test_rejected_and_cancelled_requests_never_run(bot: BotHarness, target: Target) -> None:
    record = await until_message(bot, deploy_id_of(await command(bot, "web v3 to production", "U0BOB")))
    await click(bot, record, "reject", "U0ALICE")
    assert (await wait_state(bot, record.id, DeployState.REJECTED)).detail == "Rejected by <@U0ALICE>."
    second = await until_message(bot, deploy_id_of(await command(bot, "web v4 to production", "U0BOB")))
    assert "Cancelled" in await command(bot, f"cancel {second.id}", "U0BOB")
    await bot.idle()
    assert (await bot.deps.deploys.get(record.id)).state == DeployState.REJECTED
    assert target.calls() == []


async def test_expired_requests_never_run(emulator, redis_url, target: Target) -> None:
    from tests.conftest import start_bot

    bot, runner = await start_bot(emulator, redis_url, parse_config(deploy_config(target, expires="1s")))
    try:
        record = await until_message(bot, deploy_id_of(await command(bot, "web v5 to production", "U0BOB")))
        expired = await wait_state(bot, record.id, DeployState.EXPIRED)
        assert expired.detail == "Nobody approved it in time."

        # The record changes first, the Slack message a moment after (the soak caught the moment between).
        def updated() -> dict[str, object] | None:
            message = bot.emulator.find_message(expired.channel or "", expired.message_ts or "")
            return message if message and "Expired" in str(message) else None

        message = await eventually(updated, "the request's message updated to Expired")
        assert "deploy.approve" not in str(message)
        assert target.calls() == []
    finally:
        await runner.cleanup()


async def test_one_deploy_at_a_time(bot: BotHarness, target: Target) -> None:
    first = await until_message(bot, deploy_id_of(await command(bot, "web v6 to production", "U0BOB")))
    refusal = await command(bot, "web v7 to production", "U0ALICE")
    assert f"`{first.id}`" in refusal and "by <@U0BOB>" in refusal and "already in progress" in refusal


async def test_failing_health_gate_rolls_back_automatically(bot: BotHarness, target: Target) -> None:
    await successful_production(bot, "v1")
    record = await until_message(bot, deploy_id_of(await command(bot, "web bad to production", "U0BOB")))
    await click(bot, record, "approve", "U0ALICE")
    done = await wait_state(bot, record.id, DeployState.ROLLED_BACK)
    assert "health gate failed at step 1/3 (10%)" in done.detail and "Rolled back to v1 automatically" in done.detail
    assert target.calls()[-2:] == ["web bad production 10 rollback=false", "web v1 production 100 rollback=true"]
    assert await bot.deps.deploys.current_version("web", "production") == "v1"
    await eventually(
        lambda: any("Rolled back to v1" in t for t in direct_messages(bot, "U0BOB")),
        "U0BOB's DM saying it rolled back to v1",
    )


async def test_rollback_picks_the_last_good_version(bot: BotHarness, target: Target) -> None:
    for version in ("v1", "v2"):
        await wait_state(
            bot, deploy_id_of(await command(bot, f"web {version} to staging", "U0ALICE")), DeployState.SUCCEEDED
        )
    ack = await command(bot, "web staging --reason 'v2 is slow'", "U0ALICE", command="/rollback")
    assert "Rollback web to v1 in staging" in ack
    done = await wait_state(bot, deploy_id_of(ack), DeployState.SUCCEEDED)
    assert done.kind == "rollback" and done.previous_version == "v2"
    assert await bot.deps.deploys.current_version("web", "staging") == "v1"
    assert "already at `v1`" in await command(bot, "web staging to v1", "U0ALICE", command="/rollback")


async def test_rollback_of_production_needs_no_approval_when_configured(bot: BotHarness, target: Target) -> None:
    await successful_production(bot, "v1")
    await successful_production(bot, "v2")
    ack = await command(bot, "web production", "U0BOB", command="/rollback")
    assert "starting now" in ack
    await wait_state(bot, deploy_id_of(ack), DeployState.SUCCEEDED)
    assert target.calls()[-1] == "web v1 production 100 rollback=true"


async def test_double_clicks_and_races_run_nothing_twice(bot: BotHarness, target: Target) -> None:
    record = await until_message(bot, deploy_id_of(await command(bot, "web v8 to production", "U0BOB")))
    await asyncio.gather(*[click(bot, record, "approve", user) for user in ("U0ALICE", "U0ALICE", "U0ALICE")])
    done = await wait_state(bot, record.id, DeployState.SUCCEEDED)
    assert done.approved_by == ("U0ALICE",)
    assert target.calls() == [f"web v8 production {w} rollback=false" for w in (10, 50, 100)]


async def test_permissions_freeze_and_locks(emulator, redis_url, target: Target) -> None:
    from tests.conftest import start_bot

    bot, runner = await start_bot(emulator, redis_url, parse_config(deploy_config(target, freeze="* * * * *")))
    try:
        assert "You need the `deployers` role to deploy web in production" in await command(
            bot, "web v1 to production", "U0CAROL"
        )
        frozen = await command(bot, "web v1 to production", "U0BOB")
        assert "`production` is frozen" in frozen and "change freeze" in frozen
        assert "You need the `admins` role to use --force" in await command(
            bot, "web v1 to production --force", "U0BOB"
        )
        forced = await command(bot, "web v1 to production --force --reason hotfix", "U0DEMO")
        record = await bot.deps.deploys.get(deploy_id_of(forced))
        assert record is not None and record.forced
        assert "locked `staging`" in await command(bot, 'lock staging --reason "db migration" --for 1h', "U0ALICE")
        locked = await command(bot, "web v1 to staging", "U0ALICE")
        assert "`staging` is locked by <@U0ALICE>" in locked and "db migration" in locked
        assert "db migration" in await command(bot, "locks", "U0BOB")
        assert "unlocked `staging`" in await command(bot, "unlock staging", "U0ALICE")
        assert "starting now" in await command(bot, "web v1 to staging", "U0ALICE")
        results = {(r.actor, r.result) for r in await bot.deps.audit.recent(50)}
        assert ("U0CAROL", "denied") in results and ("U0BOB", "refused") in results
    finally:
        await runner.cleanup()


async def test_bad_input_gets_usage_and_changes_nothing(bot: BotHarness, target: Target) -> None:
    assert "There is no service `api`" in await command(bot, "api v1 to staging", "U0ALICE")
    assert "`web` has no environment `qa`" in await command(bot, "web v1 to qa", "U0ALICE")
    missing_to = await command(bot, "web v1 staging", "U0ALICE")
    assert "Usage:" in missing_to
    assert await bot.deps.deploys.active() == []


async def test_history_and_status(bot: BotHarness, target: Target) -> None:
    await wait_state(bot, deploy_id_of(await command(bot, "web v1 to staging", "U0ALICE")), DeployState.SUCCEEDED)
    await wait_state(bot, deploy_id_of(await command(bot, "web broken to staging", "U0ALICE")), DeployState.FAILED)
    history = await command(bot, "history web staging", "U0BOB")
    assert "v1 → broken" in history and "∅ → v1" in history
    assert "2 finished deploys" in history and "success 50%" in history and "change failure 50%" in history
    status = await command(bot, "status", "U0BOB")
    assert "*web* in *staging*: `v1`" in status and "*web* in *production*: `nothing deployed yet`" in status


def thread_replies(bot: BotHarness, record: DeployRecord) -> list[str]:
    """The replies in a deploy message's thread, oldest first."""
    return [
        html.unescape(str(m["text"]))
        for m in bot.emulator.messages(record.channel or "")
        if m.get("thread_ts") == record.message_ts and m["ts"] != record.message_ts
    ]


def is_provider_output(reply: str) -> bool:
    """A reply carrying tests/fixtures/fake_deploy.py's own output ("deploying … at 10%", "done")."""
    return all(line.startswith("deploying web ") or line == "done" for line in reply.splitlines())


async def test_a_canary_thread_says_only_what_matters_and_the_checks_are_edited_into_the_message(
    bot: BotHarness, target: Target
) -> None:
    done = await successful_production(bot, "v2")
    await eventually(
        lambda: any("v2 is live in production" in t for t in thread_replies(bot, done)),
        "the thread to say v2 is live in production",
    )
    replies = thread_replies(bot, done)
    assert not [t for t in replies if "health check" in t], "a thread reply per health check:\n" + "\n".join(replies)
    ours = [t for t in replies if not is_provider_output(t)]
    # Per step one reply when it starts and one when it is through, then the verdict: nothing per check.
    assert len(ours) == 2 * 3 + 1, "\n".join(replies)
    finished = [t for t in ours if " done: command succeeded" in t]
    assert len(finished) == 3 and all(re.search(r"health ✓✓ 200 in (<1|\d+(–\d+)?) ms$", t) for t in finished), finished
    message = bot.emulator.find_message(done.channel, done.message_ts)
    assert message is not None
    steps = [
        html.unescape(b["text"]["text"])
        for b in message["blocks"]
        if b["type"] == "section" and "text" in b and b["text"]["text"].startswith("*Step ")
    ]
    assert [s.split("*")[1] for s in steps] == ["Step 1/3 (10%)", "Step 2/3 (50%)", "Step 3/3 (100%)"], steps
    for step in steps:
        assert ":white_check_mark: done" in step and "command succeeded" in step, step
        assert re.search(r"^Health: ✓✓ 200 in (<1|\d+(–\d+)?) ms$", step, re.M), step


async def test_a_failed_deploy_that_replaced_nothing_offers_no_rollback(bot: BotHarness, target: Target) -> None:
    await wait_state(bot, deploy_id_of(await command(bot, "web v1 to staging", "U0ALICE")), DeployState.SUCCEEDED)
    failed = await wait_state(
        bot, deploy_id_of(await command(bot, "web broken to staging", "U0ALICE")), DeployState.FAILED
    )
    assert "deploy failed: command failed with exit code 1" in failed.detail, failed.detail
    assert "`v1` was never replaced and is still running: there is nothing to roll back." in failed.detail
    assert "/rollback" not in failed.detail
    message = bot.emulator.find_message(failed.channel, failed.message_ts)
    assert message is not None and "/rollback" not in str(message["blocks"])
    assert "never replaced" in str(message["blocks"])
    await eventually(
        lambda: any("never replaced" in t for t in direct_messages(bot, "U0ALICE")),
        "U0ALICE's DM saying nothing was replaced",
    )
    assert not [t for t in direct_messages(bot, "U0ALICE") + thread_replies(bot, failed) if "/rollback" in t]
    # What the message says is true: there is nothing to roll back to.
    assert "no earlier successful version" in await command(bot, "web staging", "U0ALICE", command="/rollback")


async def test_a_failed_deploy_that_went_live_says_how_to_put_the_old_version_back(
    bot: BotHarness, target: Target
) -> None:
    await wait_state(bot, deploy_id_of(await command(bot, "web v1 to staging", "U0ALICE")), DeployState.SUCCEEDED)
    failed = await wait_state(
        bot, deploy_id_of(await command(bot, "web bad to staging", "U0ALICE")), DeployState.FAILED
    )
    assert "health gate failed at deploy: 2 checks failed in a row" in failed.detail, failed.detail
    advice = "To put `v1` back: `/deploy web v1 to staging`."
    assert advice in failed.detail and "/rollback" not in failed.detail
    message = bot.emulator.find_message(failed.channel, failed.message_ts)
    assert message is not None and "Health: ✗✗ expected 200, got 500" in html.unescape(str(message["blocks"]))
    # The advice leads somewhere: following it puts v1 back.
    back = advice.split("`/deploy ")[1].rstrip("`.")
    await wait_state(bot, deploy_id_of(await command(bot, back, "U0ALICE")), DeployState.SUCCEEDED)
    assert await bot.deps.deploys.current_version("web", "staging") == "v1"
    assert (target.state / "staging.version").read_text() == "v1"
