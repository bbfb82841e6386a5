"""Deploys by dispatching a GitHub Actions workflow (`workflow_dispatch`) and following the run it creates.

1. `POST {api_url}/repos/{repo}/actions/workflows/{workflow}/dispatches` with `ref` and the rendered `inputs`
   (and `return_run_details: true`, which makes current GitHub answer 200 with the run's id; older servers
   answer 204, or reject the flag, in which case it is sent again without it).
2. Without a run id in the answer, list the workflow's `workflow_dispatch` runs on that branch and take the oldest
   run created at or after the dispatch (by the server's clock: its `Date` header, less the request's duration and
   the header's one-second resolution) that no other step of this process has claimed; `run_name_contains`
   narrows it further for workflows whose `run-name` holds the deploy id.
3. Poll `GET /repos/{repo}/actions/runs/{id}` until `status == "completed"`; ok iff `conclusion == "success"`.

Rate limits (403/429 with `retry-after`, or `x-ratelimit-remaining: 0` with `x-ratelimit-reset`) are waited out
within the step's timeout; transient errors while polling are retried. The token is read from `environ[token_env]`
when a step runs and never appears in messages. `api_url` points at GitHub Enterprise Server's `/api/v3` too.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
from pydantic import Field, field_validator

from integrations.deploy.base import (
    DeployError,
    DeployStep,
    Emit,
    PositiveDuration,
    StepResult,
    check_template,
    clip,
    format_duration,
    render_template,
    safe_emit,
)
from integrations.types import StrictModel

log = logging.getLogger(__name__)

API_VERSION = "2022-11-28"
_REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)
_FIND_POLL_SECONDS = 2.0  # at most this long between looks for the dispatched run (it appears in seconds)
_DEFAULT_RATE_LIMIT_WAIT = 60.0  # GitHub's advice when a secondary rate limit gives no header: wait a minute
_DATE_RESOLUTION = timedelta(seconds=1)  # an HTTP Date header names whole seconds
_MAX_BACKOFF = 30.0
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")

# Runs already followed by a step of this process, so two deploys dispatching the same workflow at the same time
# each follow their own run. Keyed by (api_url, repo); bounded, since only recent runs can be candidates.
_CLAIMED: OrderedDict[tuple[str, str, int], None] = OrderedDict()
_CLAIMED_MAX = 1000


class GithubActionsSettings(StrictModel):
    """`deployer: {kind: github_actions, repo: acme/web, workflow: deploy.yml, ref: main, inputs: {...}}`."""

    kind: Literal["github_actions"]
    repo: str = Field(description="owner/name")
    workflow: str = Field(min_length=1, description="Workflow file name (deploy.yml) or numeric id.")
    ref: str = Field("main", min_length=1, description="Branch or tag to run on; may use placeholders.")
    inputs: dict[str, str] = Field(default_factory=dict, description="workflow_dispatch inputs; may use placeholders.")
    token_env: str = "GITHUB_TOKEN"
    api_url: str = "https://api.github.com"
    poll_interval: PositiveDuration = timedelta(seconds=5)
    timeout: PositiveDuration = timedelta(minutes=30)
    find_run_timeout: PositiveDuration = Field(timedelta(minutes=2), description="How long to look for the run.")
    run_name_contains: str | None = Field(None, description="Text (with placeholders) the run's title must hold.")
    return_run_details: bool = True

    @field_validator("repo")
    @classmethod
    def _repo_shape(cls, repo: str) -> str:
        if not _REPO.match(repo):
            raise ValueError("must be owner/name, like acme/web")
        return repo

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, url: str) -> str:
        if not url.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL, like https://api.github.com")
        return url.rstrip("/")

    @field_validator("ref", "run_name_contains")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        return None if value is None else check_template(value)

    @field_validator("inputs")
    @classmethod
    def _input_templates(cls, inputs: dict[str, str]) -> dict[str, str]:
        for value in inputs.values():
            check_template(value)
        return inputs


class _StepFailed(Exception):
    """Ends a step with ok=False and this summary."""


@dataclass
class _Run:
    """What is known about the run being followed."""

    id: int
    url: str | None = None


class GithubActionsDeployer:
    """Dispatches the workflow for each step and follows its run; see the module docstring."""

    def __init__(
        self, settings: GithubActionsSettings, *, environ: Mapping[str, str], http: aiohttp.ClientSession
    ) -> None:
        self._settings = settings
        self._environ = environ
        self._http = http
        self._send_run_details = settings.return_run_details
        self._repo_path = "/repos/" + "/".join(quote(part, safe="") for part in settings.repo.split("/"))
        self._workflow_path = f"{self._repo_path}/actions/workflows/{quote(settings.workflow, safe='')}"

    async def apply(self, step: DeployStep, emit: Emit) -> StepResult:
        """Dispatches the workflow, finds its run and waits for it to complete."""
        settings = self._settings
        headers = self._headers()
        ref = render_template(settings.ref, step)
        inputs = {name: render_template(value, step) for name, value in settings.inputs.items()}
        title = render_template(settings.run_name_contains, step) if settings.run_name_contains else None
        deadline = time.monotonic() + settings.timeout.total_seconds()
        run: _Run | None = None
        try:
            run, dispatched_at = await self._dispatch(headers, ref, inputs, deadline)
            if run is None:
                run = await self._find_run(headers, ref, title, dispatched_at, deadline)
            return await self._follow(headers, run, emit, deadline)
        except _StepFailed as failure:
            return StepResult(
                ok=False, summary=str(failure), external_id=str(run.id) if run else None, url=run.url if run else None
            )

    async def resume(self, step: DeployStep, external_id: str, emit: Emit) -> StepResult | None:
        """Follows run `external_id` (a run id) to completion; the timeout counts from now."""
        if not (external_id.isascii() and external_id.isdigit()):
            return StepResult(ok=False, summary=f"not a GitHub Actions run id: {clip(external_id, 60)}")
        headers = self._headers()
        run = _Run(id=int(external_id))
        deadline = time.monotonic() + self._settings.timeout.total_seconds()
        try:
            return await self._follow(headers, run, emit, deadline)
        except _StepFailed as failure:
            return StepResult(ok=False, summary=str(failure), external_id=external_id, url=run.url)

    async def aclose(self) -> None:
        """Nothing to release: the HTTP session belongs to the caller."""

    # -- the three phases ----------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        token = self._environ.get(self._settings.token_env)
        if not token:
            raise DeployError(f"environment variable {self._settings.token_env} (the GitHub token) is not set")
        return {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {token}",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "chatops-deploy",
        }

    async def _dispatch(
        self, headers: dict[str, str], ref: str, inputs: dict[str, str], deadline: float
    ) -> tuple[_Run | None, datetime]:
        """POSTs the dispatch; returns the run when GitHub names it, and when GitHub received the dispatch."""
        body: dict[str, Any] = {"ref": ref, "inputs": inputs}
        if self._send_run_details:
            body["return_run_details"] = True
        sent_at = datetime.now(UTC)
        started = time.monotonic()
        # A POST whose answer was lost may still have started a deploy: only rate limits and refused
        # connections, where GitHub certainly did nothing, are retried.
        status, data, response_headers = await self._request(
            "POST", f"{self._workflow_path}/dispatches", headers, deadline, json=body, idempotent=False
        )
        took = timedelta(seconds=time.monotonic() - started)
        if status in (400, 422) and "return_run_details" in body and "return_run_details" in _message(data):
            self._send_run_details = False  # an older GitHub Enterprise Server: ask again without the flag
            return await self._dispatch(headers, ref, inputs, deadline)
        if status == 404:
            raise DeployError(
                f"GitHub found no workflow {self._settings.workflow} in {self._settings.repo} "
                f"(or the token in {self._settings.token_env} cannot see it)"
            )
        if status == 422:
            raise _StepFailed(f"GitHub refused the dispatch (422): {_message(data) or 'unprocessable'}")
        if status not in (200, 201, 204):
            raise _StepFailed(f"GitHub answered the dispatch with {status}: {_message(data) or 'no message'}")
        answered_at = _server_time(response_headers)
        # The run was created after GitHub received the POST. Its clock, not ours, stamps the run; its Date header
        # has whole seconds (a run created at 12.9 s can be answered at "13 s"), and the request took `took`.
        dispatched_at = answered_at - took - _DATE_RESOLUTION if answered_at else sent_at - timedelta(seconds=5)
        if isinstance(data, dict) and isinstance(data.get("workflow_run_id"), int):
            run = _Run(
                id=data["workflow_run_id"], url=data.get("html_url") if isinstance(data.get("html_url"), str) else None
            )
            _claim(self._settings, run.id)
            return run, dispatched_at
        return None, dispatched_at

    async def _find_run(
        self, headers: dict[str, str], ref: str, title: str | None, dispatched_at: datetime, deadline: float
    ) -> _Run:
        """The run the dispatch created: the oldest unclaimed dispatch run on the branch since `dispatched_at`."""
        settings = self._settings
        branch = ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
        params = {"event": "workflow_dispatch", "branch": branch, "per_page": "30"}
        give_up = min(deadline, time.monotonic() + settings.find_run_timeout.total_seconds())
        pause = min(settings.poll_interval.total_seconds(), _FIND_POLL_SECONDS)
        while True:
            status, data, _ = await self._request("GET", f"{self._workflow_path}/runs", headers, give_up, params=params)
            if status != 200 or not isinstance(data, dict):
                raise _StepFailed(f"GitHub answered the runs list with {status}: {_message(data) or 'no message'}")
            candidates = []
            for item in data.get("workflow_runs") or []:
                created = _parse_time(item.get("created_at"))
                run_id = item.get("id")
                if not isinstance(run_id, int) or created is None or created < dispatched_at:
                    continue
                if (settings.api_url, settings.repo, run_id) in _CLAIMED:
                    continue
                if title is not None and title not in str(item.get("display_title") or item.get("name") or ""):
                    continue
                candidates.append((created, run_id, item))
            if candidates:
                _, run_id, item = min(candidates, key=lambda candidate: (candidate[0], candidate[1]))
                _claim(settings, run_id)
                url = item.get("html_url")
                return _Run(id=run_id, url=url if isinstance(url, str) else None)
            if time.monotonic() + pause > give_up:
                raise _StepFailed(
                    f"the workflow was dispatched but no run appeared within "
                    f"{format_duration(settings.find_run_timeout)}"
                )
            await asyncio.sleep(pause)

    async def _follow(self, headers: dict[str, str], run: _Run, emit: Emit, deadline: float) -> StepResult:
        """Polls the run until it completes; ok iff its conclusion is success."""
        settings = self._settings
        last_status: str | None = None
        while True:
            status, data, _ = await self._request("GET", f"{self._repo_path}/actions/runs/{run.id}", headers, deadline)
            if status == 404:
                raise _StepFailed(f"GitHub Actions run {run.id} not found (deleted, or not visible to the token)")
            if status != 200 or not isinstance(data, dict):
                raise _StepFailed(f"GitHub answered with {status} for run {run.id}: {_message(data) or 'no message'}")
            if isinstance(data.get("html_url"), str):
                run.url = data["html_url"]
            name = f"run #{data['run_number']}" if isinstance(data.get("run_number"), int) else f"run {run.id}"
            run_status = str(data.get("status") or "unknown")
            conclusion = str(data.get("conclusion") or "unknown")
            if run_status != last_status:
                shown = f"completed, {conclusion}" if run_status == "completed" else run_status.replace("_", " ")
                link = f" {run.url}" if last_status is None and run.url else ""
                await safe_emit(emit, f"GitHub Actions {name}: {shown}{link}")
                last_status = run_status
            if run_status == "completed":
                ok = conclusion == "success"
                summary = f"GitHub Actions {name} succeeded" if ok else f"GitHub Actions {name} ended: {conclusion}"
                sha = data.get("head_sha") if isinstance(data.get("head_sha"), str) else None
                return StepResult(
                    ok=ok,
                    summary=summary,
                    external_id=str(run.id),
                    url=run.url,
                    commit_sha=sha,
                    commit_repo=settings.repo if sha else None,
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _StepFailed(
                    f"timed out after {format_duration(settings.timeout)} waiting for GitHub Actions "
                    f"{name} ({run_status.replace('_', ' ')})"
                )
            await asyncio.sleep(min(settings.poll_interval.total_seconds(), remaining))

    # -- HTTP ----------------------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        deadline: float,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        idempotent: bool = True,
    ) -> tuple[int, Any, Mapping[str, str]]:
        """One API call; waits out rate limits, retries transient failures of idempotent calls, until deadline."""
        url = self._settings.api_url + path
        backoff = 1.0
        while True:
            try:
                async with self._http.request(
                    method,
                    url,
                    headers=headers,
                    json=json,
                    params=params,
                    timeout=_REQUEST_TIMEOUT,
                    allow_redirects=True,
                ) as response:
                    status = response.status
                    response_headers = response.headers
                    data = await _json_or_none(response)
            except asyncio.CancelledError:
                raise
            except (TimeoutError, aiohttp.ClientError) as error:
                retryable = idempotent or isinstance(error, aiohttp.ClientConnectorError)
                reason = _network_reason(error)
                if not retryable:
                    raise _StepFailed(
                        f"GitHub request failed ({reason}); the dispatch may or may not have "
                        f"started a run, check the workflow's runs"
                    ) from None
                await self._pause(backoff, deadline, f"GitHub unreachable ({reason})")
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            if status == 401:
                raise DeployError(
                    f"GitHub rejected the token in {self._settings.token_env} "
                    f"(401 {_message(data) or 'Bad credentials'})"
                )
            wait = _rate_limit_wait(status, response_headers, data)
            if wait is not None:
                log.info("GitHub rate limit: waiting %.0fs", wait)
                await self._pause(wait, deadline, "GitHub rate limit")
                continue
            if status == 403:
                raise DeployError(
                    f"GitHub denied access (403): {_message(data) or 'forbidden'}; check the "
                    f"permissions of the token in {self._settings.token_env}"
                )
            if status >= 500 and idempotent:
                await self._pause(backoff, deadline, f"GitHub answered {status}")
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            return status, data, response_headers

    async def _pause(self, seconds: float, deadline: float, why: str) -> None:
        if time.monotonic() + seconds > deadline:
            raise _StepFailed(
                f"{why}; gave up: waiting {format_duration(timedelta(seconds=round(seconds)))} "
                f"more would pass the timeout"
            )
        await asyncio.sleep(seconds)


def _claim(settings: GithubActionsSettings, run_id: int) -> None:
    _CLAIMED[(settings.api_url, settings.repo, run_id)] = None
    while len(_CLAIMED) > _CLAIMED_MAX:
        _CLAIMED.popitem(last=False)


async def _json_or_none(response: aiohttp.ClientResponse) -> Any:
    if response.status == 204:
        return None
    try:
        return await response.json(content_type=None)
    except (ValueError, aiohttp.ClientPayloadError, UnicodeDecodeError):
        return None


def _message(data: Any) -> str:
    """GitHub's error `message`, clipped (it never contains the token)."""
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return clip(data["message"], 200)
    return ""


def _network_reason(error: BaseException) -> str:
    if isinstance(error, asyncio.TimeoutError):
        return "timed out"
    if isinstance(error, aiohttp.ClientConnectorError):
        return "cannot connect"
    return type(error).__name__


def _rate_limit_wait(status: int, headers: Mapping[str, str], data: Any) -> float | None:
    """Seconds to wait when the answer is a rate limit (primary or secondary), else None."""
    if status not in (403, 429):
        return None
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        try:
            return max(1.0, float(retry_after))
        except ValueError:
            retry_at = _parse_http_date(retry_after)
            if retry_at is not None:
                return max(1.0, (retry_at - (_server_time(headers) or datetime.now(UTC))).total_seconds())
    reset_text = headers.get("x-ratelimit-reset", "")
    if headers.get("x-ratelimit-remaining") == "0" and reset_text.isascii() and reset_text.isdigit():
        reset = datetime.fromtimestamp(int(headers["x-ratelimit-reset"]), UTC)
        now = _server_time(headers) or datetime.now(UTC)
        return max(1.0, (reset - now).total_seconds() + 1)
    if status == 429 or "rate limit" in _message(data).lower():
        return _DEFAULT_RATE_LIMIT_WAIT
    return None


def _parse_http_date(value: str) -> datetime | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _server_time(headers: Mapping[str, str]) -> datetime | None:
    date = headers.get("date")
    return _parse_http_date(date) if date else None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def build(
    settings: GithubActionsSettings, *, environ: Mapping[str, str], http: aiohttp.ClientSession
) -> GithubActionsDeployer:
    """The GitHub Actions deployer for `settings`, sharing the caller's HTTP session."""
    return GithubActionsDeployer(settings, environ=environ, http=http)
