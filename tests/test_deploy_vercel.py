"""Vercel deploys end to end: signed slash commands and button clicks through the emulator, real Redis, the Vercel
deployer against the local Vercel stand-in (tests/vercel_api.py), the health gate against the stand-in's production
domain, and lead time from the local GitHub commit API stand-in (tests/github_api.py)."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bot.deploys.model import DeployRecord, DeployState
from bot.deploys.store import DeployStore
from bot.emulator import SlackEmulator
from bot.platform.embedded_redis import free_port
from bot.platform.keys import Keys
from bot.platform.metrics import Metrics
from bot.platform.store import Store
from bot.shell.config import ChatopsConfig, parse_config
from tests import github_api
from tests.conftest import BotHarness, fake_deploy_argv, serve_environment, wait_ready
from tests.deploy_messages import request_deploy, shown_message
from tests.github_api import FakeGitHubCommits, running_github
from tests.test_deploys import (
    click,
    command,
    deploy_id_of,
    until_message,
    wait_state,
)
from tests.vercel_api import TOKEN, FakeVercel, running_vercel
from tests.waiting import eventually

SHA = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
BYPASS = "bypass_secret_not_real_0123456789abcdef"


def vercel_config(vercel: FakeVercel, github: FakeGitHubCommits | None = None) -> str:
    deployer = (
        f"kind: vercel, project: prj_site, team_id: team_acme, token_env: VERCEL_TOKEN, "
        f'api_url: "{vercel.origin}", poll_interval: 20ms, max_poll_interval: 100ms, timeout: 30s, '
        f'git: {{provider: github, repo: acme/site, ref: "{{version}}"}}'
    )
    health = f'health: {{url: "{vercel.origin}/_domain/healthz", checks: 2, interval: 50ms, timeout: 1s}}'
    # Blue-green: the gate checks the staged deployment's own URL, not the production domain (still the old one).
    staged_health = (
        'health: {url: "http://{deployment_url}/healthz", checks: 2, interval: 50ms, timeout: 1s, '
        "headers_env: {x-vercel-protection-bypass: VERCEL_AUTOMATION_BYPASS_SECRET}}"
    )
    lead = f'lead_time: {{api_url: "{github.origin}", token_env: LEAD_TIME_TOKEN}}' if github else ""
    return f"""
slack: {{announce_channel: "#general"}}
roles:
  admins: [U0DEMO]
  deployers: ["@platform", U0BOB]
  approvers: [U0ALICE, U0BOB]
deploys: {{lock_ttl: 3s, {lead}}}
services:
  site:
    channel: "#deploys"
    environments:
      preview:
        deployer: {{{deployer}, target: preview}}
      production:
        deployer: {{{deployer}, target: production}}
        approval: {{required: 1, approvers: approvers}}
        rollback_approval: false
        {health}
        auto_rollback: true
      live:
        deployer: {{{deployer}, target: production, promote: true}}
        {staged_health}
"""


@pytest.fixture
async def vercel() -> AsyncIterator[FakeVercel]:
    async with running_vercel() as fake:
        yield fake


@pytest.fixture
async def github() -> AsyncIterator[FakeGitHubCommits]:
    async with running_github() as fake:
        yield fake


@pytest.fixture
def bot_config(vercel: FakeVercel, github: FakeGitHubCommits, monkeypatch: pytest.MonkeyPatch) -> ChatopsConfig:
    # The engine reads provider secrets from the process environment, as `chatops serve` does.
    monkeypatch.setenv("VERCEL_TOKEN", TOKEN)
    monkeypatch.setenv("VERCEL_AUTOMATION_BYPASS_SECRET", BYPASS)
    monkeypatch.setenv("LEAD_TIME_TOKEN", github_api.TOKEN)
    return parse_config(vercel_config(vercel, github), "vercel.yaml")


def thread(bot: BotHarness, record: DeployRecord) -> list[str]:
    return [
        str(m.get("text"))
        for m in bot.emulator.messages(record.channel or "")
        if m.get("thread_ts") == record.message_ts and m.get("ts") != record.message_ts
    ]


def everything_posted(bot: BotHarness) -> str:
    return json.dumps([bot.emulator.messages(channel) for channel in ("#deploys", "#general", "C0GENERAL")])


async def approved_production(bot: BotHarness, version: str, *states: DeployState) -> DeployRecord:
    ack = await command(bot, f"site {version} to production", "U0BOB")
    assert "needs 1 approval" in ack, ack
    record = await until_message(bot, deploy_id_of(ack))
    assert record.state == DeployState.AWAITING_APPROVAL and not record.external_id
    await click(bot, record, "approve", "U0ALICE")
    return await wait_state(bot, record.id, *(states or (DeployState.SUCCEEDED,)))


async def test_a_production_deploy_with_approval_builds_on_vercel_and_records_the_deployment(
    bot: BotHarness, vercel: FakeVercel, github: FakeGitHubCommits
) -> None:
    vercel.commits["v1"] = (SHA, "")
    github.commits[SHA] = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    done = await approved_production(bot, "v1")
    (deployment,) = vercel.deployments.values()
    assert done.external_id == deployment.id and done.external_url == f"https://{deployment.url}"
    assert done.commit_sha == SHA and done.commit_repo == "acme/site" and done.commit_at is not None
    assert vercel.serving_version() == "v1"
    create = next(r for r in vercel.requests if r["method"] == "POST")
    assert create["json"]["target"] == "production" and create["query"] == {"teamId": "team_acme"}
    assert create["json"]["gitSource"] == {"type": "github", "org": "acme", "repo": "site", "ref": "v1"}

    message = bot.emulator.find_message(done.channel, done.message_ts)
    assert message is not None and "Succeeded" in str(message["blocks"])
    assert f"<https://{deployment.url}|{deployment.id}>" in str(message["blocks"])
    await eventually(
        lambda: any("site v1 is live in production" in t for t in thread(bot, done)),
        "the thread to say site v1 is live in production",
    )
    states = [t.split(": ", 1)[1].split()[0] for t in thread(bot, done) if t.startswith("Vercel deployment")]
    assert states == ["QUEUED", "BUILDING", "READY"]
    assert TOKEN not in everything_posted(bot)

    history = await command(bot, "history site production", "U0BOB")
    assert re.search(r"lead time 2h(\d+m)?(\d+s)? \(median of 1\)", history), history
    assert github.requests[0]["path"] == f"/repos/acme/site/commits/{SHA}"


async def test_a_failing_vercel_build_fails_or_rolls_back_instantly(bot: BotHarness, vercel: FakeVercel) -> None:
    preview = await wait_state(
        bot, deploy_id_of(await command(bot, "site broken-1 to preview", "U0BOB")), DeployState.FAILED
    )
    assert 'failed: Command "npm run build" exited with 1' in preview.detail
    assert preview.external_id in vercel.deployments

    good = await approved_production(bot, "v1")
    failed = await approved_production(bot, "broken-2", DeployState.ROLLED_BACK)
    assert "deploy failed: Vercel deployment" in failed.detail and "Rolled back to v1 automatically" in failed.detail
    # The failed build never served: production still is v1's deployment, so Vercel is asked for nothing.
    assert not [r for r in vercel.requests if r["method"] == "POST" and "/rollback/" in r["path"]]
    assert vercel.serving_version() == "v1"

    unhealthy = await approved_production(bot, "bad-3", DeployState.ROLLED_BACK)
    assert "health gate failed" in unhealthy.detail and "Rolled back to v1 automatically" in unhealthy.detail
    rollbacks = [r["path"] for r in vercel.requests if r["method"] == "POST" and "/rollback/" in r["path"]]
    assert rollbacks == [f"/v1/projects/prj_site/rollback/{good.external_id}"]  # the deployment chatops recorded
    assert not [r for r in vercel.requests if r["path"] == "/v6/deployments"]  # so Vercel's list was not needed
    assert vercel.serving_version() == "v1"
    assert await bot.deps.deploys.current_version("site", "production") == "v1"


async def test_rollback_to_a_named_version_is_a_vercel_instant_rollback(bot: BotHarness, vercel: FakeVercel) -> None:
    first = await approved_production(bot, "v1")
    await approved_production(bot, "v2")
    assert vercel.serving_version() == "v2"
    ack = await command(bot, "site production to v1 --reason 'v2 is slow'", "U0BOB", command="/rollback")
    assert "Rollback site to v1 in production" in ack and "starting now" in ack
    done = await wait_state(bot, deploy_id_of(ack), DeployState.SUCCEEDED)
    assert done.kind == "rollback" and done.external_id == first.external_id
    assert vercel.serving_version() == "v1" and len(vercel.deployments) == 2  # nothing was built again
    assert [r["path"] for r in vercel.requests if r["method"] == "POST" and "/rollback/" in r["path"]] == [
        f"/v1/projects/prj_site/rollback/{first.external_id}"
    ]
    assert not [r for r in vercel.requests if r["path"] == "/v6/deployments"]  # chatops's own record named it
    await eventually(
        lambda: any("rolled back to deployment" in t for t in thread(bot, done)),
        "the thread to say it rolled back to the deployment",
    )
    # An unknown version is refused by Vercel's own list, and nothing changes.
    missing = await wait_state(
        bot, deploy_id_of(await command(bot, "site production to v0", "U0BOB", command="/rollback")), DeployState.FAILED
    )
    assert "no READY production deployment of prj_site carries v0" in missing.detail
    assert vercel.serving_version() == "v1"


async def test_promote_serves_a_staged_production_deployment_only_after_its_own_health_gate(
    bot: BotHarness, vercel: FakeVercel
) -> None:
    vercel.protection_bypass = BYPASS  # deployment URLs are protected, as Vercel's Standard Protection does
    first = await wait_state(bot, deploy_id_of(await command(bot, "site v1 to live", "U0BOB")), DeployState.SUCCEEDED)
    assert vercel.serving_version() == "v1"

    # A staged deployment whose own URL fails its checks is never promoted: production keeps serving v1.
    bad = await wait_state(bot, deploy_id_of(await command(bot, "site bad-2 to live", "U0BOB")), DeployState.FAILED)
    staged_bad = vercel.deployments[bad.external_id or ""]
    assert not staged_bad.assign_domains and staged_bad.meta["chatopsVersion"] == "bad-2"
    assert "health gate failed at deploy: 2 checks failed in a row: expected 200, got 500" in bad.detail, bad.detail
    assert "`v1` was never replaced and is still running" in bad.detail and "/rollback" not in bad.detail, bad.detail
    assert staged_bad.checks and set(staged_bad.checks) == {first.external_id}  # it, not production, was checked
    assert not [
        r for r in vercel.requests if r["method"] == "POST" and "/promote/" in r["path"] and staged_bad.id in r["path"]
    ]
    assert vercel.serving_version() == "v1"
    await eventually(
        lambda: any(
            f"checking the deployment itself at http://{staged_bad.url}/healthz" in t for t in thread(bot, bad)
        ),
        "the thread to say the staged deployment itself was checked",
    )

    # A healthy one is checked at its own URL while v1 still serves, and promoted once its gate has passed.
    done = await wait_state(bot, deploy_id_of(await command(bot, "site v3 to live", "U0BOB")), DeployState.SUCCEEDED)
    staged = vercel.deployments[done.external_id or ""]
    assert not staged.assign_domains and vercel.serving_version() == "v3"
    assert len(staged.checks) >= 2 and set(staged.checks) == {first.external_id}
    posts = [r["path"] for r in vercel.requests if r["method"] == "POST"]
    assert posts[-1] == f"/v10/projects/prj_site/promote/{staged.id}"
    await eventually(
        lambda: any("promoted deployment" in t for t in thread(bot, done)),
        "the thread to say the deployment was promoted",
    )
    lines = thread(bot, done)
    gate = max(i for i, t in enumerate(lines) if " done: " in t and " · health ✓✓" in t)  # the gate's verdict
    promoted = next(i for i, t in enumerate(lines) if "promoted deployment" in t)
    assert gate < promoted  # promoted only once the gate had passed
    assert BYPASS not in everything_posted(bot)


def test_check_config_names_bad_vercel_settings(vercel: FakeVercel) -> None:
    from bot.shell.config import ConfigError

    good = vercel_config(vercel)
    for change, expected in [
        (
            ("team_id: team_acme", "team_id: acme"),
            "services.site.environments.preview.deployer.team_id: must be the team's id, team_…",
        ),
        (
            ("target: production, promote: true", "target: preview, promote: true"),
            "promote: true needs target: production",
        ),
        (
            ("token_env: VERCEL_TOKEN", 'token_env: "vercel abc123"'),
            "deployer.token_env: must be the name of an environment variable holding the token",
        ),
        (("repo: acme/site", "repo: site"), "deployer.git: repo must be owner/name for github"),
        (('ref: "{version}"', 'ref: "{verison}"'), "deployer.git.ref: unknown placeholder {verison}"),
        (
            ("kind: vercel, project: prj_site", "kind: vercel, project: acme/site"),
            "deployer.project: must be the project's id (prj_…",
        ),
    ]:
        with pytest.raises(ConfigError) as caught:
            parse_config(good.replace(*change, 1), "vercel.yaml")
        assert expected in str(caught.value), (change, str(caught.value))


def test_check_config_knows_only_the_deployment_url_placeholder_and_only_where_a_provider_fills_it(
    vercel: FakeVercel,
) -> None:
    from bot.shell.config import ConfigError
    from integrations.health.http import GateHealthSettings

    good = vercel_config(vercel)
    parse_config(good.replace("http://{deployment_url}/healthz", "https://{deployment_url}/healthz?full=1"), "v.yaml")
    command = f"kind: command, argv: {fake_deploy_argv()}"
    for change, expected in [
        (
            ("http://{deployment_url}/healthz", "http://{deployment}/healthz"),
            "environments.live.health.url: unknown placeholder {deployment} in 'http://{deployment}/healthz'; the only "
            "one known is {deployment_url}",
        ),
        (
            ("http://{deployment_url}/healthz", "https://check.example.com/?u={deployment_url}"),
            "environments.live.health.url: {deployment_url} is the deployment's host (like "
            "site-abc123-acme.vercel.app):"
            " write it as the whole host, like https://{deployment_url}/healthz",
        ),
        (("http://{deployment_url}/healthz", "http://{deployment_url}/{{x}}"), "a stray '{' in"),
        (
            (
                f"deployer: {{kind: vercel, project: prj_site, team_id: team_acme, token_env: VERCEL_TOKEN, "
                f'api_url: "{vercel.origin}", poll_interval: 20ms, max_poll_interval: 100ms, timeout: 30s, '
                f'git: {{provider: github, repo: acme/site, ref: "{{version}}"}}, target: production, promote: true}}',
                f"deployer: {{{command}}}",
            ),
            "services.site.environments.live: health.url uses {deployment_url}, but kind: command reports no "
            "deployment "
            "URL to check (kind: vercel does)",
        ),
        (
            ("VERCEL_AUTOMATION_BYPASS_SECRET}", '"Xy9-bypass/secret"}'),
            "environments.live.health.headers_env: x-vercel-protection-bypass: must be the name of an environment "
            "variable holding the header's value",
        ),
        (
            ("headers_env: {x-vercel-protection-bypass:", "headers_env: {'x vercel':"),
            "environments.live.health.headers_env: 'x vercel' is not an HTTP header name",
        ),
        (
            (
                "deploys: {lock_ttl: 3s, }",
                'deploys: {lock_ttl: 3s}\nstatus: {probes: [{name: site, url: "https://{deployment_url}/healthz"}]}',
            ),
            "status.probes[0].url: {deployment_url} is not allowed here: "
            "only a deploy's health.url takes a placeholder",
        ),
    ]:
        with pytest.raises(ConfigError) as caught:
            parse_config(good.replace(*change, 1), "vercel.yaml")
        assert expected in str(caught.value), (change, str(caught.value))

    # Rendered when the gate runs: only a plain host[:port] from the provider enters the URL.
    gate = GateHealthSettings(url="https://{deployment_url}/healthz")
    assert gate.for_deployment("https://site-0001-acme.vercel.app").url == "https://site-0001-acme.vercel.app/healthz"
    assert gate.for_deployment("127.0.0.1:8080").url == "https://127.0.0.1:8080/healthz"
    for bad in (None, "", "https://user@evil.example/x", "evil.example/x?y", "a b"):
        with pytest.raises(ValueError, match="deployment URL"):
            gate.for_deployment(bad)
    protected = GateHealthSettings(url=gate.url, headers_env={"x-vercel-protection-bypass": "BYPASS_SECRET"})
    assert protected.headers({"BYPASS_SECRET": BYPASS}) == {"x-vercel-protection-bypass": BYPASS}
    with pytest.raises(
        ValueError,
        match=r"^environment variable BYPASS_SECRET \(the health check's "
        r"x-vercel-protection-bypass header\) is not set$",
    ):
        protected.headers({})


async def _serve(emulator: SlackEmulator, redis_url: str, config: Path) -> asyncio.subprocess.Process:
    port = free_port()
    environment = serve_environment(emulator, redis_url, config, port) | {"VERCEL_TOKEN": TOKEN}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "serve",
        env=environment,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await wait_ready(f"http://127.0.0.1:{port}")
    emulator.app_url = f"http://127.0.0.1:{port}/slack/events"
    return process


async def test_a_deploy_whose_process_was_killed_is_resumed_by_its_vercel_deployment_id(
    emulator: SlackEmulator, redis_url: str, vercel: FakeVercel, tmp_path: Path
) -> None:
    config = tmp_path / "chatops.yaml"
    config.write_text(vercel_config(vercel))
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    deploys = DeployStore(Store(client, Keys("chatops"), Metrics()))
    vercel.hold_builds = True  # the build stays QUEUED while the first process dies
    first = await _serve(emulator, redis_url, config)
    second = None
    try:
        deploy_id = await request_deploy(emulator, "site v7 to preview", "U0BOB")

        async def recorded() -> DeployRecord | None:
            record = await deploys.get(deploy_id)
            return record if record and record.state == DeployState.RUNNING and record.external_id else None

        record = await eventually(recorded, f"{deploy_id} running with its Vercel deployment id recorded")
        assert record.external_id in vercel.deployments, "the deployment id was never recorded"
        first.kill()
        await first.wait()
        vercel.release()
        second = await _serve(emulator, redis_url, config)

        async def ended() -> DeployRecord | None:
            record = await deploys.get(deploy_id)
            return record if record and record.terminal else None

        record = await eventually(ended, f"{deploy_id} finished by the restarted process")
        assert record.state == DeployState.SUCCEEDED, record
        assert len(vercel.deployments) == 1  # followed again, not built again
        assert [r["method"] for r in vercel.requests].count("POST") == 1
        message = await shown_message(emulator, record)
        assert "Succeeded" in str(message["blocks"])
        texts = [str(m.get("text")) for m in emulator.messages(record.channel or "")]
        assert any("Following deploy again after a chatops restart" in t for t in texts)
        assert TOKEN not in json.dumps(emulator.messages(record.channel or ""))
    finally:
        for process in (first, second):
            if process is not None and process.returncode is None:
                process.terminate()
                await process.wait()
        await client.aclose()
