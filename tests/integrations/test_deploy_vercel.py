"""The Vercel deployer against the local Vercel stand-in (tests/vercel_api.py): a git deployment followed through
QUEUED -> BUILDING -> READY, an ERROR build, a bad token, an unknown project, 429 with Retry-After and 5xx
retried, instant rollback by recorded id and by the production deployment list, promote, and resume by id."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from pydantic import ValidationError

from integrations.deploy.base import (
    DeployError,
    DeployStep,
    PromotingDeployer,
    RunReportingDeployer,
)
from integrations.deploy.vercel import VercelSettings, build
from tests.vercel_api import PROJECT_ID, TEAM_ID, TOKEN, FakeVercel, running_vercel

ENV = {"VERCEL_TOKEN": TOKEN}


def make_step(**overrides: object) -> DeployStep:
    values: dict[str, object] = {
        "deploy_id": "d-42",
        "service": "site",
        "environment": "production",
        "version": "v1.4.2",
        "previous_version": "v1.4.1",
        "weight": None,
        "rollback": False,
        "requested_by": "U0ALICE",
    }
    values.update(overrides)
    return DeployStep(**values)


def settings(vercel: FakeVercel, **overrides: object) -> VercelSettings:
    values: dict[str, object] = {
        "kind": "vercel",
        "project": PROJECT_ID,
        "team_id": TEAM_ID,
        "target": "production",
        "git": {"provider": "github", "repo": "acme/site", "ref": "{version}"},
        "api_url": vercel.origin,
        "poll_interval": "20ms",
        "max_poll_interval": "100ms",
        "timeout": "20s",
    }
    values.update(overrides)
    return VercelSettings.model_validate(values)


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    async def __call__(self, text: str) -> None:
        self.lines.append(text)


@pytest.fixture
async def vercel() -> AsyncIterator[FakeVercel]:
    async with running_vercel() as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_a_git_deployment_is_created_and_followed_to_ready(
    vercel: FakeVercel, http: aiohttp.ClientSession
) -> None:
    vercel.commits["v1.4.2"] = ("a" * 40, "2024-05-01T10:00:00Z")
    deployer = build(settings(vercel), environ=ENV, http=http)
    assert isinstance(deployer, RunReportingDeployer) and isinstance(deployer, PromotingDeployer)
    runs: list[tuple[str, str | None]] = []

    async def on_run(external_id: str, url: str | None) -> None:
        runs.append((external_id, url))

    emit = Lines()
    result = await deployer.apply_reporting(make_step(), emit, on_run)
    assert result.ok, result
    (deployment,) = vercel.deployments.values()
    assert runs == [(deployment.id, f"https://{deployment.url}")]
    assert result.external_id == deployment.id and result.url == f"https://{deployment.url}"
    assert result.commit_sha == "a" * 40 and result.commit_repo == "acme/site"
    create = vercel.requests[0]
    assert create["method"] == "POST" and create["path"] == "/v13/deployments"
    assert create["query"] == {"teamId": TEAM_ID}
    assert create["json"] == {
        "name": PROJECT_ID,
        "project": PROJECT_ID,
        "target": "production",
        "gitSource": {"type": "github", "org": "acme", "repo": "site", "ref": "v1.4.2"},
        "meta": {"chatopsDeployId": "d-42", "chatopsVersion": "v1.4.2"},
    }
    states = [line for line in emit.lines if line.startswith("Vercel deployment")]
    assert [line.split(": ")[1].split()[0] for line in states] == ["QUEUED", "BUILDING", "READY"]
    assert "https://vercel.com/acme/site/" in states[0]
    assert vercel.serving_version() == "v1.4.2"
    assert all(TOKEN not in line for line in [*emit.lines, result.summary])
    # A later canary step of the same deploy does not build again.
    again = await deployer.apply(make_step(weight=100), Lines())
    assert again.ok and again.external_id == deployment.id and len(vercel.deployments) == 1


async def test_a_failing_build_fails_the_step_with_vercels_error(
    vercel: FakeVercel, http: aiohttp.ClientSession
) -> None:
    result = await build(settings(vercel), environ=ENV, http=http).apply(make_step(version="broken-1"), Lines())
    assert not result.ok
    assert result.summary.endswith('failed: Command "npm run build" exited with 1')
    assert result.external_id in vercel.deployments


async def test_a_bad_token_and_an_unknown_project_fail_with_vercels_message(
    vercel: FakeVercel, http: aiohttp.ClientSession
) -> None:
    wrong = await build(settings(vercel), environ={"VERCEL_TOKEN": "wrong-secret"}, http=http).apply(
        make_step(), Lines()
    )
    assert not wrong.ok and wrong.summary == "Vercel refused the token in VERCEL_TOKEN (401): Not authorized"
    assert "wrong-secret" not in wrong.summary
    unknown = await build(settings(vercel, project="prj_nope"), environ=ENV, http=http).apply(make_step(), Lines())
    assert not unknown.ok and 'Project "prj_nope" not found' in unknown.summary
    bad_ref = await build(settings(vercel), environ=ENV, http=http).apply(make_step(version="missing-branch"), Lines())
    assert not bad_ref.ok and "does not contain the requested branch" in bad_ref.summary
    with pytest.raises(DeployError, match="VERCEL_TOKEN"):
        await build(settings(vercel), environ={}, http=http).apply(make_step(), Lines())
    assert not vercel.deployments


async def test_rate_limits_and_server_errors_are_waited_out(vercel: FakeVercel, http: aiohttp.ClientSession) -> None:
    vercel.rate_limits = ["1"]
    vercel.server_errors = 2
    started = time.monotonic()
    result = await build(settings(vercel), environ=ENV, http=http).apply(make_step(), Lines())
    assert result.ok, result
    assert time.monotonic() - started >= 1.0  # Retry-After: 1 was honoured
    polls = [r for r in vercel.requests if r["method"] == "GET" and r["path"].startswith("/v13/deployments/")]
    assert len(polls) == 1 + 2 + 3  # the 429, the two 502s, then QUEUED, BUILDING, READY


async def test_a_rate_limit_longer_than_the_timeout_fails_the_step(
    vercel: FakeVercel, http: aiohttp.ClientSession
) -> None:
    vercel.rate_limits = ["3600"]
    result = await build(settings(vercel, timeout="2s"), environ=ENV, http=http).apply(make_step(), Lines())
    assert not result.ok and "rate limit" in result.summary


async def test_instant_rollback_to_a_recorded_deployment_and_by_version(
    vercel: FakeVercel, http: aiohttp.ClientSession
) -> None:
    deployer = build(settings(vercel), environ=ENV, http=http)
    first = await deployer.apply(make_step(deploy_id="d-1", version="v1"), Lines())
    second = await deployer.apply(make_step(deploy_id="d-2", version="v2"), Lines())
    assert first.ok and second.ok and vercel.serving_version() == "v2"

    emit = Lines()
    back = await deployer.apply(
        make_step(
            deploy_id="d-3", version="v1", previous_version="v2", rollback=True, target_external_id=first.external_id
        ),
        emit,
    )
    assert back.ok and back.external_id == first.external_id, back
    assert vercel.serving_version() == "v1"
    rollbacks = [r for r in vercel.requests if r["method"] == "POST" and "/rollback/" in r["path"]]
    assert [r["path"] for r in rollbacks] == [f"/v1/projects/{PROJECT_ID}/rollback/{first.external_id}"]
    assert not any(r["path"] == "/v6/deployments" for r in vercel.requests)

    # Without a recorded id, the production deployment list names the one that carried the version.
    forward = await deployer.apply(
        make_step(deploy_id="d-4", version="v2", previous_version="v1", rollback=True), Lines()
    )
    assert forward.ok and forward.external_id == second.external_id and vercel.serving_version() == "v2"
    listing = next(r for r in vercel.requests if r["path"] == "/v6/deployments")
    assert listing["query"] == {
        "projectId": PROJECT_ID,
        "target": "production",
        "state": "READY",
        "limit": "100",
        "teamId": TEAM_ID,
    }
    unknown = await deployer.apply(make_step(deploy_id="d-5", version="v0", rollback=True), Lines())
    assert not unknown.ok and "no READY production deployment" in unknown.summary


async def test_promote_builds_staged_then_serves_it(vercel: FakeVercel, http: aiohttp.ClientSession) -> None:
    plain = build(settings(vercel), environ=ENV, http=http)
    assert (await plain.apply(make_step(deploy_id="d-1", version="v1"), Lines())).ok
    deployer = build(settings(vercel, promote=True), environ=ENV, http=http)
    step = make_step(deploy_id="d-2", version="v2")
    assert deployer.promotes(step) and not deployer.promotes(make_step(rollback=True))
    built = await deployer.apply(step, Lines())
    assert built.ok and vercel.serving_version() == "v1"  # staged: production still serves v1
    assert vercel.requests[-4]["json"]["autoAssignCustomDomains"] is False
    emit = Lines()
    promoted = await deployer.promote(step, built, emit)
    assert promoted.ok and promoted.external_id == built.external_id and vercel.serving_version() == "v2"
    assert any(r["path"] == f"/v10/projects/{PROJECT_ID}/promote/{built.external_id}" for r in vercel.requests)


async def test_resume_follows_a_deployment_by_id(vercel: FakeVercel, http: aiohttp.ClientSession) -> None:
    vercel.hold_builds = True
    deployer = build(settings(vercel), environ=ENV, http=http)
    runs: list[str] = []

    async def on_run(external_id: str, url: str | None) -> None:
        runs.append(external_id)
        vercel.release()

    assert (await deployer.apply_reporting(make_step(), Lines(), on_run)).ok
    vercel.deployments[runs[0]].polls = 1  # as if a restart found it building
    result = await build(settings(vercel), environ=ENV, http=http).resume(make_step(), runs[0], Lines())
    assert result is not None and result.ok and result.external_id == runs[0]
    missing = await build(settings(vercel), environ=ENV, http=http).resume(make_step(), "dpl_nope", Lines())
    assert missing is not None and not missing.ok and "404" in missing.summary
    bogus = await build(settings(vercel), environ=ENV, http=http).resume(make_step(), "../x", Lines())
    assert bogus is not None and not bogus.ok


def test_settings_errors_are_precise() -> None:
    base = {"kind": "vercel", "project": "prj_site", "git": {"repo": "acme/site"}}
    with pytest.raises(ValidationError, match="team's id, team_"):
        VercelSettings.model_validate(base | {"team_id": "acme"})
    with pytest.raises(ValidationError, match="name of an environment variable"):
        VercelSettings.model_validate(base | {"token_env": "vercel_abc-123 secret"})
    with pytest.raises(ValidationError, match="promote: true needs target: production"):
        VercelSettings.model_validate(base | {"promote": True})
    with pytest.raises(ValidationError, match="owner/name for github"):
        VercelSettings.model_validate(base | {"git": {"repo": "site"}})
    with pytest.raises(ValidationError, match="unknown placeholder"):
        VercelSettings.model_validate(base | {"git": {"repo": "acme/site", "ref": "{verison}"}})
    with pytest.raises(ValidationError, match="project's id"):
        VercelSettings.model_validate(base | {"project": "acme/site"})
    assert VercelSettings.model_validate(base | {"api_url": "http://proxy:8080/"}).api_url == "http://proxy:8080"
