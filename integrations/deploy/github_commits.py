"""When a commit was made, from GitHub's REST API (`GET /repos/{owner}/{repo}/commits/{ref}`), for the lead time
for changes: the time from a commit to its successful production deploy (DORA).

The commit's `commit.committer.date` is used: the moment the change landed on its branch (the author date can be
days older for a rebased or cherry-picked change). `api_url` points at GitHub Enterprise Server's `/api/v3` too.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import Field, field_validator

from integrations.types import StrictModel, json_object

_REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=15)
_SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_ATTEMPTS = 3


class LeadTimeSettings(StrictModel):
    """`deploys.lead_time: {environments: [production], token_env: GITHUB_TOKEN, api_url: https://api.github.com}`."""

    environments: tuple[str, ...] = Field(("production",), description="Environments whose deploys count.")
    token_env: str | None = Field(
        "GITHUB_TOKEN",
        description="Environment variable with a token that can read "
        "the repositories (unset: public repositories only).",
    )
    api_url: str = "https://api.github.com"

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, url: str) -> str:
        if not url.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL, like https://api.github.com")
        return url.rstrip("/")

    @field_validator("token_env")
    @classmethod
    def _token_env(cls, name: str | None) -> str | None:
        if name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError("must be the name of an environment variable holding the token, like GITHUB_TOKEN")
        return name


class CommitLookupError(Exception):
    """The commit's time could not be had; the message names why and never holds the token."""


async def commit_time(http: aiohttp.ClientSession, api_url: str, repo: str, sha: str, *, token: str | None) -> datetime:
    """When commit `sha` of `repo` (owner/name) was committed; CommitLookupError otherwise."""
    if not _REPO.match(repo) or not _SHA.match(sha):
        raise CommitLookupError(f"not a GitHub repository and commit: {repo[:60]}@{sha[:64]}")
    owner, name = repo.split("/", 1)
    url = f"{api_url}/repos/{quote(owner, safe='')}/{quote(name, safe='')}/commits/{sha}"
    headers = {
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": "chatops-lead-time",
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    for attempt in range(_ATTEMPTS):
        try:
            async with http.get(url, headers=headers, timeout=_REQUEST_TIMEOUT) as response:
                status = response.status
                data: Any = await response.json(content_type=None) if status < 500 else None
        except asyncio.CancelledError:
            raise
        except (TimeoutError, aiohttp.ClientError, ValueError) as error:
            if attempt + 1 == _ATTEMPTS:
                raise CommitLookupError(f"GitHub unreachable ({type(error).__name__})") from None
            await asyncio.sleep(2**attempt)
            continue
        if status >= 500 and attempt + 1 < _ATTEMPTS:
            await asyncio.sleep(2**attempt)
            continue
        if status != 200 or not isinstance(data, dict):
            message = data.get("message") if isinstance(data, dict) else None
            raise CommitLookupError(f"GitHub answered {status} for {repo}@{sha[:12]}: {str(message or '')[:200]}")
        return _committed_at(data, repo, sha)
    raise CommitLookupError("GitHub did not answer")  # not reached: the loop returns or raises


def _committed_at(data: dict[str, Any], repo: str, sha: str) -> datetime:
    commit = json_object(data.get("commit"))
    for who in ("committer", "author"):
        person = json_object(commit.get(who))
        text = person.get("date")
        if isinstance(text, str):
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                continue
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise CommitLookupError(f"GitHub's answer for {repo}@{sha[:12]} has no commit date")
