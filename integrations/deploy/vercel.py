"""Deploys to Vercel through its REST API: a git deployment per deploy, instant rollback, and staged production
deployments promoted after the health gate (blue-green).

Shapes follow Vercel's REST API reference (vercel.com/docs/rest-api) and its SDK's models:
- deploy: `POST /v13/deployments?teamId=…` with `name`, `project`, `target` and `gitSource` (`{type: github, org,
  repo, ref}`, `{type: gitlab, projectId, ref}` or `{type: bitbucket, owner, slug, ref}`), then
  `GET /v13/deployments/{id}` until `readyState` is READY (or ERROR / CANCELED), polled with backoff;
- rollback: `POST /v1/projects/{projectId}/rollback/{deploymentId}` to the deployment chatops recorded for the
  version, else the READY production deployment `GET /v6/deployments?projectId=…&target=production&state=READY`
  lists as carrying it (chatops tags its deployments with `meta.chatopsVersion`);
- promote: with `promote: true` a production deployment is built staged (`autoAssignCustomDomains: false`, what
  `vercel deploy --prod --skip-domain` sends) and `POST /v10/projects/{projectId}/promote/{deploymentId}` serves it;
- rollback and promote are asynchronous in Vercel: both are followed until `GET /v9/projects/{projectId}` names
  the deployment as `targets.production`.

4xx answers end the step with Vercel's own `error.message`; 429 waits for `Retry-After`; 5xx and dropped
connections are retried with backoff (the create call only when Vercel certainly did nothing). The token is read
from `environ[token_env]` when a step runs and never appears in a message or a log line.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, ClassVar, Literal, Self
from urllib.parse import quote

import aiohttp
from pydantic import Field, field_validator, model_validator

from integrations.deploy.base import (
    DeployError,
    DeployStep,
    Emit,
    OnRun,
    PositiveDuration,
    StepResult,
    check_template,
    clip,
    format_duration,
    render_template,
    safe_emit,
)
from integrations.types import StrictModel, json_object

log = logging.getLogger(__name__)

_REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)
_MAX_BACKOFF = 30.0
_DEFAULT_RETRY_AFTER = 10.0
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_TEAM = re.compile(r"^team_[A-Za-z0-9]{1,64}$")
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_FAILED_STATES = {"ERROR": "failed", "CANCELED": "was canceled"}
_REMEMBERED = 200


class VercelGitSettings(StrictModel):
    """`git: {provider: github, repo: acme/site, ref: "{version}"}`: what Vercel builds."""

    provider: Literal["github", "gitlab", "bitbucket"] = "github"
    repo: str = Field(description="owner/name on GitHub and Bitbucket; the project id or path on GitLab.")
    ref: str = Field("{version}", min_length=1, description="Branch, tag or commit to build; may use placeholders.")

    @field_validator("repo")
    @classmethod
    def _repo(cls, repo: str) -> str:
        if not repo.strip():
            raise ValueError("name the repository, like acme/site")
        return repo

    @field_validator("ref")
    @classmethod
    def _ref(cls, ref: str) -> str:
        return check_template(ref)

    @model_validator(mode="after")
    def _repo_shape(self) -> Self:
        if self.provider in ("github", "bitbucket") and not _REPO.match(self.repo):
            raise ValueError(f"repo must be owner/name for {self.provider}, like acme/site")
        return self


class VercelSettings(StrictModel):
    """`deployer: {kind: vercel, project: prj_…, team_id: team_…, token_env: VERCEL_TOKEN, target: production,
    git: {provider: github, repo: acme/site, ref: "{version}"}, promote: false}`."""

    # Every deployment has its own URL (its `url`, like site-abc123-acme.vercel.app) serving exactly that build,
    # so a health gate can check a staged deployment as `https://{deployment_url}/healthz` before it is promoted.
    has_deployment_url: ClassVar[bool] = True

    kind: Literal["vercel"]
    project: str = Field(description="The project's id (prj_…) or name.")
    team_id: str | None = Field(None, description="The team's id (team_…), for projects owned by a team.")
    token_env: str = "VERCEL_TOKEN"
    target: Literal["preview", "production"] = "preview"
    git: VercelGitSettings
    promote: bool = Field(False, description="Build production staged; promote it once the health gate passes.")
    name: str | None = Field(None, description="The deployment's name (default: the project).")
    api_url: str = "https://api.vercel.com"
    poll_interval: PositiveDuration = timedelta(seconds=3)
    max_poll_interval: PositiveDuration = timedelta(seconds=30)
    timeout: PositiveDuration = timedelta(minutes=30)

    @field_validator("project")
    @classmethod
    def _project(cls, project: str) -> str:
        if not _PROJECT.match(project):
            raise ValueError("must be the project's id (prj_…, under Project → Settings → General) or its name")
        return project

    @field_validator("team_id")
    @classmethod
    def _team(cls, team_id: str | None) -> str | None:
        if team_id is not None and not _TEAM.match(team_id):
            raise ValueError("must be the team's id, team_… (Team → Settings → General → Team ID), not its name")
        return team_id

    @field_validator("token_env")
    @classmethod
    def _token_env(cls, name: str) -> str:
        if not _ENV_NAME.match(name):
            raise ValueError(
                "must be the name of an environment variable holding the token, like VERCEL_TOKEN "
                "(never the token itself)"
            )
        return name

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, url: str) -> str:
        if not url.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL, like https://api.vercel.com")
        return url.rstrip("/")

    @model_validator(mode="after")
    def _promote_needs_production(self) -> Self:
        if self.promote and self.target != "production":
            raise ValueError(
                "promote: true needs target: production (a staged production deployment is what gets promoted)"
            )
        return self


class _StepFailed(Exception):
    """Ends a step with ok=False and this summary."""


@dataclass(frozen=True)
class _Deployment:
    """What one `GET /v13/deployments/{id}` said."""

    id: str
    state: str
    url: str | None
    inspector_url: str | None
    error: str | None
    sha: str | None

    @classmethod
    def parse(cls, data: Any, fallback_id: str) -> _Deployment:
        body = json_object(data)
        meta = json_object(body.get("meta"))
        git = json_object(body.get("gitSource"))
        host = _text(body.get("url"))
        sha = _text(git.get("sha")) or _text(meta.get("githubCommitSha"))
        error = _text(body.get("errorMessage")) or _text(body.get("errorCode"))
        return cls(
            id=_text(body.get("id")) or fallback_id,
            state=_text(body.get("readyState")) or "UNKNOWN",
            url=f"https://{host}" if host else None,
            inspector_url=_text(body.get("inspectorUrl")),
            error=error,
            sha=sha,
        )


class VercelDeployer:
    """Creates and follows Vercel deployments, rolls back and promotes; see the module docstring."""

    def __init__(self, settings: VercelSettings, *, environ: Mapping[str, str], http: aiohttp.ClientSession) -> None:
        self._settings = settings
        self._environ = environ
        self._http = http
        self._project_path = f"/projects/{quote(settings.project, safe='')}"
        # deploy id -> the deployment built for it, so later canary steps and retries do not build again.
        self._built: OrderedDict[str, StepResult] = OrderedDict()

    # -- the Protocol ----------------------------------------------------------------------------------------

    async def apply(self, step: DeployStep, emit: Emit) -> StepResult:
        """Builds (or rolls back to) the step's version and waits until it is ready."""
        return await self.apply_reporting(step, emit, _ignore_run)

    async def apply_reporting(self, step: DeployStep, emit: Emit, on_run: OnRun) -> StepResult:
        """`apply`, telling `on_run` the deployment's id and URL as soon as Vercel has created it."""
        headers = self._headers()
        deadline = time.monotonic() + self._settings.timeout.total_seconds()
        deployment_id: str | None = None
        try:
            if step.rollback:
                deployment_id = await self._rollback_target(headers, step, emit, deadline)
                await on_run(deployment_id, None)
                return await self._switch(headers, "rollback", deployment_id, step, emit, deadline)
            built = self._built.get(step.deploy_id)
            if built is not None:
                if step.weight is not None and step.weight < 100:
                    await safe_emit(
                        emit,
                        f"Vercel has no traffic weights: {step.weight}% is the deployment built for the first step",
                    )
                return built
            deployment_id, url = await self._create(headers, step, emit, deadline)
            await on_run(deployment_id, url)
            result = await self._follow(headers, deployment_id, emit, deadline)
            if result.ok:
                self._remember(step.deploy_id, result)
            return result
        except _StepFailed as failure:
            return StepResult(ok=False, summary=str(failure), external_id=deployment_id)

    async def resume(self, step: DeployStep, external_id: str, emit: Emit) -> StepResult | None:
        """Follows deployment `external_id` again after a restart (a rollback: makes sure it serves)."""
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", external_id):
            return StepResult(ok=False, summary=f"not a Vercel deployment id: {clip(external_id, 60)}")
        headers = self._headers()
        deadline = time.monotonic() + self._settings.timeout.total_seconds()
        try:
            if step.rollback:
                return await self._switch(headers, "rollback", external_id, step, emit, deadline)
            result = await self._follow(headers, external_id, emit, deadline)
            if result.ok:
                self._remember(step.deploy_id, result)
            return result
        except _StepFailed as failure:
            return StepResult(ok=False, summary=str(failure), external_id=external_id)

    def promotes(self, step: DeployStep) -> bool:
        """True for the deploy steps of `promote: true`: they build staged and are promoted after the gate."""
        return self._settings.promote and not step.rollback

    async def promote(self, step: DeployStep, built: StepResult, emit: Emit) -> StepResult:
        """Points production at the staged deployment `built.external_id` and waits until it serves."""
        if not built.external_id:
            return StepResult(ok=False, summary="there is no staged Vercel deployment to promote")
        headers = self._headers()
        deadline = time.monotonic() + self._settings.timeout.total_seconds()
        try:
            result = await self._switch(headers, "promote", built.external_id, step, emit, deadline)
        except _StepFailed as failure:
            return StepResult(ok=False, summary=str(failure), external_id=built.external_id, url=built.url)
        return replace(result, url=built.url or result.url, commit_sha=built.commit_sha, commit_repo=built.commit_repo)

    async def aclose(self) -> None:
        """Nothing to release: the HTTP session belongs to the caller."""

    # -- deploy ----------------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        token = self._environ.get(self._settings.token_env)
        if not token:
            raise DeployError(f"environment variable {self._settings.token_env} (the Vercel token) is not set")
        return {"Authorization": f"Bearer {token}", "User-Agent": "chatops-deploy", "Accept": "application/json"}

    def _git_source(self, step: DeployStep) -> dict[str, Any]:
        git = self._settings.git
        ref = render_template(git.ref, step)
        if git.provider == "github":
            org, repo = git.repo.split("/", 1)
            return {"type": "github", "org": org, "repo": repo, "ref": ref}
        if git.provider == "bitbucket":
            owner, slug = git.repo.split("/", 1)
            return {"type": "bitbucket", "owner": owner, "slug": slug, "ref": ref}
        return {"type": "gitlab", "projectId": git.repo, "ref": ref}

    async def _create(
        self, headers: dict[str, str], step: DeployStep, emit: Emit, deadline: float
    ) -> tuple[str, str | None]:
        settings = self._settings
        body: dict[str, Any] = {
            "name": settings.name or settings.project,
            "project": settings.project,
            "gitSource": self._git_source(step),
            "meta": {"chatopsDeployId": step.deploy_id, "chatopsVersion": step.version},
        }
        if settings.target == "production":
            body["target"] = "production"  # no target means a preview deployment
        if self.promotes(step):
            body["autoAssignCustomDomains"] = False
        status, data = await self._request(
            "POST", "/v13/deployments", headers, deadline, json=body, idempotent=False, what="the deployment"
        )
        if status not in (200, 201, 202) or not isinstance(data, dict) or not _text(data.get("id")):
            raise _StepFailed(f"Vercel did not create the deployment ({status}): {_message(data) or 'no id'}")
        deployment = _Deployment.parse(data, "")
        staged = " (staged: production domains stay on the current deployment)" if self.promotes(step) else ""
        await safe_emit(
            emit,
            f"Vercel: created deployment {deployment.id} of {_safe(settings.project)} from "
            f"{_safe(body['gitSource']['ref'])}{staged}",
        )
        return deployment.id, deployment.url

    async def _follow(self, headers: dict[str, str], deployment_id: str, emit: Emit, deadline: float) -> StepResult:
        """Polls the deployment until READY, ERROR or CANCELED, waiting longer while nothing changes."""
        settings = self._settings
        pause = settings.poll_interval.total_seconds()
        last_state: str | None = None
        while True:
            status, data = await self._request(
                "GET",
                f"/v13/deployments/{quote(deployment_id, safe='')}",
                headers,
                deadline,
                what=f"deployment {deployment_id}",
            )
            if status != 200:
                raise _StepFailed(
                    f"Vercel answered {status} for deployment {deployment_id}: {_message(data) or 'no message'}"
                )
            deployment = _Deployment.parse(data, deployment_id)
            if deployment.state != last_state:
                link = (
                    f" {deployment.inspector_url or deployment.url}"
                    if last_state is None and (deployment.inspector_url or deployment.url)
                    else ""
                )
                await safe_emit(emit, f"Vercel deployment {deployment.id}: {deployment.state}{_safe(link)}")
                last_state = deployment.state
                pause = settings.poll_interval.total_seconds()
            else:
                pause = min(pause * 1.5, max(settings.max_poll_interval.total_seconds(), pause))
            repo = settings.git.repo if settings.git.provider == "github" else None
            if deployment.state == "READY":
                return StepResult(
                    ok=True,
                    summary=f"Vercel deployment {deployment.id} is ready at {deployment.url}",
                    external_id=deployment.id,
                    url=deployment.url,
                    commit_sha=deployment.sha,
                    commit_repo=repo if deployment.sha else None,
                )
            if deployment.state in _FAILED_STATES:
                why = f": {_safe(clip(deployment.error, 200))}" if deployment.error else ""
                return StepResult(
                    ok=False,
                    summary=f"Vercel deployment {deployment.id} {_FAILED_STATES[deployment.state]}{why}",
                    external_id=deployment.id,
                    url=deployment.inspector_url or deployment.url,
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _StepFailed(
                    f"timed out after {format_duration(settings.timeout)} waiting for Vercel "
                    f"deployment {deployment.id} ({deployment.state})"
                )
            await asyncio.sleep(min(pause, remaining))

    def _remember(self, deploy_id: str, result: StepResult) -> None:
        self._built[deploy_id] = result
        while len(self._built) > _REMEMBERED:
            self._built.popitem(last=False)

    # -- rollback and promote ----------------------------------------------------------------------------

    async def _rollback_target(self, headers: dict[str, str], step: DeployStep, emit: Emit, deadline: float) -> str:
        """The deployment to roll back to: the one chatops recorded for the version, else the READY production
        deployment Vercel lists as carrying it."""
        if step.target_external_id:
            await safe_emit(
                emit,
                f"Vercel: rolling back to deployment {step.target_external_id}, which chatops "
                f"deployed as {_safe(step.version)}",
            )
            return step.target_external_id
        params = {"projectId": self._settings.project, "target": "production", "state": "READY", "limit": "100"}
        status, data = await self._request(
            "GET", "/v6/deployments", headers, deadline, params=params, what="the deployment list"
        )
        if status != 200 or not isinstance(data, dict):
            raise _StepFailed(f"Vercel answered {status} listing deployments: {_message(data) or 'no message'}")
        items = [item for item in data.get("deployments") or [] if isinstance(item, dict)]
        ref = self._git_source(step)["ref"]
        for test in (
            lambda meta: meta.get("chatopsVersion") == step.version,
            lambda meta: (
                meta.get("githubCommitRef") == ref
                or meta.get("gitlabCommitRef") == ref
                or meta.get("bitbucketCommitRef") == ref
            ),
            lambda meta: len(step.version) >= 7 and str(meta.get("githubCommitSha", "")).startswith(step.version),
        ):
            for item in items:  # newest first, as Vercel lists them
                meta = item.get("meta") if isinstance(item.get("meta"), dict) else {}
                found = _text(item.get("uid")) or _text(item.get("id"))
                if found and test(meta):
                    await safe_emit(
                        emit,
                        f"Vercel: rolling back to deployment {found}, the newest production "
                        f"deployment of {_safe(step.version)}",
                    )
                    return found
        raise _StepFailed(
            f"no READY production deployment of {self._settings.project} carries "
            f"{clip(step.version, 60)} (Vercel keeps the ones it lists under Deployments)"
        )

    async def _switch(
        self,
        headers: dict[str, str],
        action: Literal["rollback", "promote"],
        deployment_id: str,
        step: DeployStep,
        emit: Emit,
        deadline: float,
    ) -> StepResult:
        """Asks Vercel to serve `deployment_id` in production and waits until the project says it does."""
        quoted = quote(deployment_id, safe="")
        if not await self._serving(headers, deployment_id, deadline):
            path = (
                f"/v1{self._project_path}/rollback/{quoted}"
                if action == "rollback"
                else f"/v10{self._project_path}/promote/{quoted}"
            )
            body: dict[str, Any] | None = {} if action == "promote" else None
            status, data = await self._request("POST", path, headers, deadline, json=body, what=f"the {action}")
            if status not in (200, 201, 202, 204):
                raise _StepFailed(
                    f"Vercel refused the {action} to {deployment_id} ({status}): {_message(data) or 'no message'}"
                )
            await safe_emit(emit, f"Vercel: {action} to deployment {deployment_id} requested")
            pause = self._settings.poll_interval.total_seconds()
            while not await self._serving(headers, deployment_id, deadline):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _StepFailed(
                        f"timed out after {format_duration(self._settings.timeout)} waiting for "
                        f"production to serve deployment {deployment_id}"
                    )
                await asyncio.sleep(min(pause, remaining))
                pause = min(pause * 1.5, self._settings.max_poll_interval.total_seconds())
        status, data = await self._request(
            "GET", f"/v13/deployments/{quoted}", headers, deadline, what=f"deployment {deployment_id}"
        )
        deployment = _Deployment.parse(data if status == 200 else None, deployment_id)
        verb = "rolled back to" if action == "rollback" else "promoted"
        return StepResult(
            ok=True,
            summary=f"Vercel production {verb} deployment {deployment_id}",
            external_id=deployment_id,
            url=deployment.url,
        )

    async def _serving(self, headers: dict[str, str], deployment_id: str, deadline: float) -> bool:
        """True when the project's production target is `deployment_id`."""
        status, data = await self._request("GET", f"/v9{self._project_path}", headers, deadline, what="the project")
        if status != 200 or not isinstance(data, dict):
            raise _StepFailed(
                f"Vercel answered {status} for project {self._settings.project}: {_message(data) or 'no message'}"
            )
        production = json_object(json_object(data.get("targets")).get("production"))
        return production.get("id") == deployment_id

    # -- HTTP --------------------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        deadline: float,
        *,
        what: str,
        json: Any = None,
        params: dict[str, str] | None = None,
        idempotent: bool = True,
    ) -> tuple[int, Any]:
        """One API call: waits out 429s (Retry-After), retries 5xx and network errors of idempotent calls with
        backoff until `deadline`; other 4xx end the step with Vercel's message."""
        url = self._settings.api_url + path
        query = dict(params or {})
        if self._settings.team_id:
            query["teamId"] = self._settings.team_id
        backoff = 1.0
        while True:
            try:
                async with self._http.request(
                    method, url, headers=headers, json=json, params=query, timeout=_REQUEST_TIMEOUT
                ) as response:
                    status = response.status
                    retry_after = response.headers.get("Retry-After")
                    data = await _json_or_none(response)
            except asyncio.CancelledError:
                raise
            except (TimeoutError, aiohttp.ClientError) as error:
                if not idempotent and not isinstance(error, aiohttp.ClientConnectorError):
                    raise _StepFailed(
                        f"the request for {what} to Vercel failed ({type(error).__name__}); it may "
                        "or may not have been created, check the project's deployments"
                    ) from None
                await self._pause(backoff, deadline, f"Vercel unreachable ({type(error).__name__})")
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            if status == 429:
                wait = _seconds(retry_after)
                log.info("Vercel rate limit: waiting %.0fs", wait)
                await self._pause(wait, deadline, "Vercel rate limit")
                continue
            if status >= 500 and idempotent:
                await self._pause(backoff, deadline, f"Vercel answered {status}")
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            if status in (401, 403):
                raise _StepFailed(
                    f"Vercel refused the token in {self._settings.token_env} ({status}): "
                    f"{_message(data) or 'not authorized'}"
                )
            if status == 404 and what in ("the deployment", "the project", "the deployment list"):
                raise _StepFailed(
                    f"Vercel found no project {self._settings.project}"
                    f"{' in team ' + self._settings.team_id if self._settings.team_id else ''} "
                    f"(404): {_message(data) or 'not found'}"
                )
            if 400 <= status < 500 and status != 404:
                raise _StepFailed(f"Vercel refused {what} ({status}): {_message(data) or 'no message'}")
            return status, data

    async def _pause(self, seconds: float, deadline: float, why: str) -> None:
        if time.monotonic() + seconds > deadline:
            raise _StepFailed(
                f"{why}; gave up: waiting {format_duration(timedelta(seconds=round(seconds)))} "
                "more would pass the timeout"
            )
        await asyncio.sleep(seconds)


async def _ignore_run(external_id: str, url: str | None) -> None:
    return None


async def _json_or_none(response: aiohttp.ClientResponse) -> Any:
    if response.status == 204:
        return None
    try:
        return await response.json(content_type=None)
    except (ValueError, aiohttp.ClientPayloadError, UnicodeDecodeError):
        return None


def _message(data: Any) -> str:
    """Vercel's error text, `{"error": {"code", "message"}}`, clipped and made inert for Slack."""
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            text = _text(error.get("message")) or _text(error.get("code"))
            if text:
                return _safe(clip(text, 200))
        if _text(data.get("message")):
            return _safe(clip(str(data["message"]), 200))
    return ""


def _safe(text: str) -> str:
    """Text from Vercel with Slack's markup characters escaped (no mention or link can hide in it)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _seconds(retry_after: str | None) -> float:
    """Seconds a 429 asks us to wait (Retry-After is seconds for Vercel); a sane default without it."""
    try:
        return max(1.0, float(retry_after)) if retry_after is not None else _DEFAULT_RETRY_AFTER
    except ValueError:
        return _DEFAULT_RETRY_AFTER


def build(settings: VercelSettings, *, environ: Mapping[str, str], http: aiohttp.ClientSession) -> VercelDeployer:
    """The Vercel deployer for `settings`, sharing the caller's HTTP session."""
    return VercelDeployer(settings, environ=environ, http=http)
