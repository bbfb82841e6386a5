"""The commit time lookup behind lead time, against the local GitHub commit API stand-in (tests/github_api.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest

from integrations.deploy.github_commits import (
    CommitLookupError,
    LeadTimeSettings,
    commit_time,
)
from tests.github_api import TOKEN, FakeGitHubCommits, running_github

SHA = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


@pytest.fixture
async def github() -> AsyncIterator[FakeGitHubCommits]:
    async with running_github() as fake:
        yield fake


async def test_commit_time_reads_the_committer_date(github: FakeGitHubCommits) -> None:
    github.commits[SHA] = "2026-05-01T10:00:00Z"
    async with aiohttp.ClientSession() as http:
        when = await commit_time(http, github.origin, "acme/site", SHA, token=TOKEN)
        assert when == datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
        with pytest.raises(CommitLookupError, match="422") as unknown:
            await commit_time(http, github.origin, "acme/site", "f" * 40, token=TOKEN)
        refusal = "answered 401 for acme/site@4b825dc642cb: Bad credentials"
        with pytest.raises(CommitLookupError, match=refusal) as refused:
            await commit_time(http, github.origin, "acme/site", SHA, token="wrong-secret")
        with pytest.raises(CommitLookupError, match="not a GitHub repository and commit"):
            await commit_time(http, github.origin, "acme/site", "../../x", token=TOKEN)
    assert "wrong-secret" not in str(refused.value) and TOKEN not in str(unknown.value)
    assert github.requests[0]["path"] == f"/repos/acme/site/commits/{SHA}"
    assert github.requests[0]["headers"]["Authorization"] == f"Bearer {TOKEN}"


def test_lead_time_settings() -> None:
    from pydantic import ValidationError

    assert LeadTimeSettings().environments == ("production",)
    with pytest.raises(ValidationError, match="name of an environment variable"):
        LeadTimeSettings(token_env="ghp_secret value")
    with pytest.raises(ValidationError, match="http"):
        LeadTimeSettings(api_url="api.github.com")
