"""The GitHub Actions deployer against a local aiohttp server that answers the documented REST shapes: dispatch
(204, or 200 with the run's id), the workflow's runs list, a run going queued -> in_progress -> completed, rate
limits with retry-after and x-ratelimit-reset, and resuming a run by id after a restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from integrations.deploy.base import DeployError, DeployStep
from integrations.deploy.github_actions import API_VERSION, GithubActionsSettings, build

TOKEN = "ghp_test_token_not_real_0123456789"
REPO = "acme/web"
WORKFLOW = "deploy.yml"


def make_step(**overrides: object) -> DeployStep:
    values: dict[str, object] = {
        "deploy_id": "d-42",
        "service": "web",
        "environment": "production",
        "version": "v1.4.2",
        "previous_version": "v1.4.1",
        "weight": None,
        "rollback": False,
        "requested_by": "U0ALICE",
    }
    values.update(overrides)
    return DeployStep(**values)


@dataclass
class FakeRun:
    id: int
    created_at: datetime
    branch: str
    title: str
    statuses: list[str]
    conclusion: str
    polls: int = 0

    def body(self, origin: str) -> dict[str, Any]:
        status = self.statuses[min(self.polls, len(self.statuses) - 1)]
        return {
            "id": self.id,
            "name": "Deploy",
            "display_title": self.title,
            "run_number": self.id - 1000,
            "event": "workflow_dispatch",
            "head_branch": self.branch,
            "status": status,
            "conclusion": self.conclusion if status == "completed" else None,
            "created_at": self.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "head_sha": "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
            "html_url": f"{origin}/{REPO}/actions/runs/{self.id}",
            "url": f"{origin}/repos/{REPO}/actions/runs/{self.id}",
        }


@dataclass
class FakeGitHub:
    """Just enough of GitHub's Actions API, recording every request."""

    origin: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    runs: dict[int, FakeRun] = field(default_factory=dict)
    next_id: int = 1001
    dispatch_mode: str = "204"  # "204", "details" (200 with the run id), "old-ghes" (422 for the new flag)
    statuses: list[str] = field(default_factory=lambda: ["queued", "in_progress", "completed"])
    conclusion: str = "success"
    rate_limit_run_polls: list[dict[str, str]] = field(default_factory=list)  # headers of 403/429s to answer first
    expected_token: str = TOKEN
    run_created_after: timedelta = timedelta(0)  # how long after its dispatch GitHub says a run was created
    dispatch_answered_after: timedelta | None = None  # the dispatch answer's Date: this long after run creation

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches", self.dispatch)
        app.router.add_get("/repos/{owner}/{repo}/actions/workflows/{workflow}/runs", self.list_runs)
        app.router.add_get("/repos/{owner}/{repo}/actions/runs/{run_id}", self.get_run)
        return app

    async def record(self, request: web.Request) -> dict[str, Any] | None:
        body = await request.json() if request.can_read_body else None
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "headers": dict(request.headers),
                "json": body,
            }
        )
        if request.headers.get("Authorization") != f"Bearer {self.expected_token}":
            raise web.HTTPUnauthorized(text='{"message": "Bad credentials"}', content_type="application/json")
        return body

    def add_run(self, *, branch: str, title: str, created_at: datetime | None = None) -> FakeRun:
        run = FakeRun(
            id=self.next_id,
            created_at=created_at or datetime.now(UTC),
            branch=branch,
            title=title,
            statuses=list(self.statuses),
            conclusion=self.conclusion,
        )
        self.runs[run.id] = run
        self.next_id += 1
        return run

    async def dispatch(self, request: web.Request) -> web.Response:
        body = await self.record(request)
        assert body is not None
        if self.dispatch_mode == "old-ghes" and "return_run_details" in body:
            return web.json_response(
                {"message": 'Invalid request.\n\n"return_run_details" is not a permitted key.'}, status=422
            )
        run = self.add_run(
            branch=body["ref"],
            title=f"Deploy {body['inputs'].get('version', '')}",
            created_at=datetime.now(UTC) + self.run_created_after,
        )
        if self.dispatch_mode == "details" and body.get("return_run_details"):
            return web.json_response(
                {
                    "workflow_run_id": run.id,
                    "run_url": f"{self.origin}/repos/{REPO}/actions/runs/{run.id}",
                    "html_url": f"{self.origin}/{REPO}/actions/runs/{run.id}",
                }
            )
        headers = {}
        if self.dispatch_answered_after is not None:
            headers["Date"] = format_datetime(run.created_at + self.dispatch_answered_after, usegmt=True)
        return web.Response(status=204, headers=headers)

    async def list_runs(self, request: web.Request) -> web.Response:
        await self.record(request)
        runs = [
            run
            for run in self.runs.values()
            if request.query.get("branch") in (None, run.branch)
            and request.query.get("event") in (None, "workflow_dispatch")
        ]
        runs.sort(key=lambda run: run.created_at, reverse=True)
        return web.json_response({"total_count": len(runs), "workflow_runs": [run.body(self.origin) for run in runs]})

    async def get_run(self, request: web.Request) -> web.Response:
        await self.record(request)
        if self.rate_limit_run_polls:
            headers = self.rate_limit_run_polls.pop(0)
            status = int(headers.pop("status", "429"))
            return web.json_response(
                {"message": "You have exceeded a secondary rate limit."}, status=status, headers=headers
            )
        run = self.runs.get(int(request.match_info["run_id"]))
        if run is None:
            return web.json_response({"message": "Not Found"}, status=404)
        body = run.body(self.origin)
        run.polls += 1
        return web.json_response(body)


@pytest.fixture
async def github() -> AsyncIterator[FakeGitHub]:
    fake = FakeGitHub()
    runner = web.AppRunner(fake.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.origin = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield fake
    await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    async def __call__(self, text: str) -> None:
        self.lines.append(text)


def settings(github: FakeGitHub, **overrides: object) -> GithubActionsSettings:
    values: dict[str, object] = {
        "kind": "github_actions",
        "repo": REPO,
        "workflow": WORKFLOW,
        "ref": "main",
        "inputs": {"version": "{version}", "env": "{environment}"},
        "token_env": "GITHUB_TOKEN",
        "api_url": github.origin,
        "poll_interval": "50ms",
        "timeout": "20s",
    }
    values.update(overrides)
    return GithubActionsSettings.model_validate(values)


ENV = {"GITHUB_TOKEN": TOKEN}


async def test_dispatch_then_find_the_run_then_follow_it_to_success(
    github: FakeGitHub, http: aiohttp.ClientSession
) -> None:
    old = github.add_run(branch="main", title="an older deploy", created_at=datetime.now(UTC) - timedelta(hours=1))
    deployer = build(settings(github), environ=ENV, http=http)
    emit = Lines()
    result = await deployer.apply(make_step(), emit)

    assert result.ok, result
    run_id = max(github.runs)
    assert run_id != old.id
    assert result.external_id == str(run_id)
    assert result.url == f"{github.origin}/{REPO}/actions/runs/{run_id}"
    assert result.summary == f"GitHub Actions run #{run_id - 1000} succeeded"
    assert result.commit_sha == "4b825dc642cb6eb9a060e54bf8d69288fbee4904" and result.commit_repo == REPO

    dispatch = github.requests[0]
    assert dispatch["method"] == "POST"
    assert dispatch["path"] == f"/repos/{REPO}/actions/workflows/{WORKFLOW}/dispatches"
    assert dispatch["json"] == {
        "ref": "main",
        "inputs": {"version": "v1.4.2", "env": "production"},
        "return_run_details": True,
    }
    for request in github.requests:
        assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
        assert request["headers"]["X-GitHub-Api-Version"] == API_VERSION
        assert request["headers"]["Accept"] == "application/vnd.github+json"
    listing = github.requests[1]
    assert listing["path"] == f"/repos/{REPO}/actions/workflows/{WORKFLOW}/runs"
    assert listing["query"]["event"] == "workflow_dispatch" and listing["query"]["branch"] == "main"

    assert emit.lines == [
        f"GitHub Actions run #{run_id - 1000}: queued {result.url}",
        f"GitHub Actions run #{run_id - 1000}: in progress",
        f"GitHub Actions run #{run_id - 1000}: completed, success",
    ]
    assert all(TOKEN not in line for line in emit.lines)


async def test_a_run_created_in_the_second_before_the_dispatch_answer_is_found(
    github: FakeGitHub, http: aiohttp.ClientSession
) -> None:
    # GitHub stamps the run at 12.9 s and answers the POST at 13.0 s: the Date header says 13, created_at 12.
    github.dispatch_answered_after = timedelta(seconds=1)
    result = await build(settings(github, timeout="5s"), environ=ENV, http=http).apply(make_step(), Lines())
    assert result.ok, result
    assert result.external_id == str(max(github.runs))


async def test_a_failed_run_fails_the_step(github: FakeGitHub, http: aiohttp.ClientSession) -> None:
    github.conclusion = "failure"
    result = await build(settings(github), environ=ENV, http=http).apply(make_step(), Lines())
    assert not result.ok
    assert result.summary.endswith("ended: failure")
    assert result.external_id == str(max(github.runs))


async def test_a_run_id_in_the_dispatch_answer_is_used_directly(
    github: FakeGitHub, http: aiohttp.ClientSession
) -> None:
    github.dispatch_mode = "details"
    result = await build(settings(github), environ=ENV, http=http).apply(make_step(), Lines())
    assert result.ok and result.external_id == str(max(github.runs))
    assert not any(request["path"].endswith("/runs") for request in github.requests)


async def test_an_older_server_that_rejects_return_run_details_gets_the_dispatch_again_without_it(
    github: FakeGitHub, http: aiohttp.ClientSession
) -> None:
    github.dispatch_mode = "old-ghes"
    deployer = build(settings(github), environ=ENV, http=http)
    assert (await deployer.apply(make_step(), Lines())).ok
    dispatches = [request for request in github.requests if request["method"] == "POST"]
    assert [("return_run_details" in request["json"]) for request in dispatches] == [True, False]
    assert len(github.runs) == 1
    # It remembers: the next step sends one dispatch.
    github.requests.clear()
    assert (await deployer.apply(make_step(weight=100), Lines())).ok
    assert [("return_run_details" in r["json"]) for r in github.requests if r["method"] == "POST"] == [False]


async def test_rate_limits_are_waited_out(github: FakeGitHub, http: aiohttp.ClientSession) -> None:
    reset = str(int(time.time()) + 1)
    github.rate_limit_run_polls = [
        {"status": "429", "retry-after": "1"},
        {"status": "403", "x-ratelimit-remaining": "0", "x-ratelimit-reset": reset},
    ]
    emit = Lines()
    started = time.monotonic()
    result = await build(settings(github), environ=ENV, http=http).apply(make_step(), emit)
    assert result.ok, result
    assert time.monotonic() - started >= 1.0
    polls = [request for request in github.requests if "/actions/runs/" in request["path"]]
    assert len(polls) == 2 + 3  # the two rate-limited answers, then queued, in progress, completed


async def test_a_rate_limit_longer_than_the_timeout_fails_the_step(
    github: FakeGitHub, http: aiohttp.ClientSession
) -> None:
    github.rate_limit_run_polls = [{"status": "429", "retry-after": "3600"}]
    result = await build(settings(github, timeout="2s"), environ=ENV, http=http).apply(make_step(), Lines())
    assert not result.ok
    assert "rate limit" in result.summary and result.external_id == str(max(github.runs))


async def test_resume_follows_a_run_by_id(github: FakeGitHub, http: aiohttp.ClientSession) -> None:
    run = github.add_run(branch="main", title="started before the restart")
    run.polls = 1  # already in progress
    emit = Lines()
    result = await build(settings(github), environ=ENV, http=http).resume(make_step(), str(run.id), emit)
    assert result is not None and result.ok
    assert result.external_id == str(run.id)
    assert not any(request["method"] == "POST" for request in github.requests)
    assert emit.lines[0].startswith(f"GitHub Actions run #{run.id - 1000}: in progress")

    missing = await build(settings(github), environ=ENV, http=http).resume(make_step(), "999999", Lines())
    assert missing is not None and not missing.ok and "not found" in missing.summary
    bogus = await build(settings(github), environ=ENV, http=http).resume(make_step(), "not-a-number", Lines())
    assert bogus is not None and not bogus.ok


async def test_a_run_that_never_completes_times_out(github: FakeGitHub, http: aiohttp.ClientSession) -> None:
    github.statuses = ["queued", "in_progress"]
    result = await build(settings(github, timeout="1s"), environ=ENV, http=http).apply(make_step(), Lines())
    assert not result.ok
    assert result.summary.startswith("timed out after 1s")
    assert result.external_id == str(max(github.runs))


async def test_two_deploys_of_one_workflow_at_once_follow_their_own_runs(
    github: FakeGitHub, http: aiohttp.ClientSession
) -> None:
    one = build(settings(github), environ=ENV, http=http)
    two = build(settings(github), environ=ENV, http=http)
    results = await asyncio.gather(
        one.apply(make_step(deploy_id="a"), Lines()), two.apply(make_step(deploy_id="b", service="api"), Lines())
    )
    assert all(result.ok for result in results)
    assert len({result.external_id for result in results}) == 2


async def test_run_name_contains_picks_the_run_by_title(github: FakeGitHub, http: aiohttp.ClientSession) -> None:
    # Someone else's run, created after our dispatch but before ours: the oldest candidate, unless titles decide.
    github.run_created_after = timedelta(seconds=3)
    decoy = github.add_run(
        branch="main", title="Deploy someone-else", created_at=datetime.now(UTC) + timedelta(seconds=1)
    )
    result = await build(settings(github, run_name_contains="Deploy {version}"), environ=ENV, http=http).apply(
        make_step(), Lines()
    )
    assert result.ok
    assert github.runs[int(result.external_id or 0)].title == "Deploy v1.4.2"

    unfiltered = await build(settings(github), environ=ENV, http=http).apply(make_step(deploy_id="d-43"), Lines())
    assert unfiltered.external_id == str(decoy.id)


async def test_credentials_problems_are_deploy_errors_without_the_token(
    github: FakeGitHub, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(DeployError, match="GITHUB_TOKEN"):
        await build(settings(github), environ={}, http=http).apply(make_step(), Lines())
    with pytest.raises(DeployError, match="401") as caught:
        await build(settings(github), environ={"GITHUB_TOKEN": "wrong-secret-token"}, http=http).apply(
            make_step(), Lines()
        )
    assert "wrong-secret-token" not in str(caught.value)


async def test_a_missing_workflow_is_a_deploy_error(github: FakeGitHub, http: aiohttp.ClientSession) -> None:
    with pytest.raises(DeployError, match="no workflow"):
        await build(settings(github, api_url=github.origin + "/nothing-here"), environ=ENV, http=http).apply(
            make_step(), Lines()
        )


async def test_an_unreachable_github_is_retried_until_the_timeout(http: aiohttp.ClientSession) -> None:
    with socket_closed_port() as port:
        s = GithubActionsSettings(
            kind="github_actions", repo=REPO, workflow=WORKFLOW, api_url=f"http://127.0.0.1:{port}", timeout="2s"
        )
        result = await build(s, environ=ENV, http=http).apply(make_step(), Lines())
    assert not result.ok and "unreachable" in result.summary


class socket_closed_port:
    """A port nothing listens on (bound, then closed)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None


def test_settings_validation() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="owner/name"):
        GithubActionsSettings(kind="github_actions", repo="not a repo", workflow="deploy.yml")
    with pytest.raises(ValidationError, match="unknown placeholder"):
        GithubActionsSettings(kind="github_actions", repo=REPO, workflow="d.yml", inputs={"v": "{verison}"})
    enterprise = GithubActionsSettings(
        kind="github_actions", repo=REPO, workflow="d.yml", api_url="https://github.example.com/api/v3/"
    )
    assert enterprise.api_url == "https://github.example.com/api/v3"
