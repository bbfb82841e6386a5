"""A local stand-in for GitHub's "get a commit" REST endpoint (`GET /repos/{owner}/{repo}/commits/{ref}`), answering
the documented shape (docs.github.com/rest/commits/commits#get-a-commit): `sha`, `html_url` and `commit.author` /
`commit.committer` with ISO 8601 dates; 404 `{"message": "No commit found for SHA: …"}` for an unknown one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.conftest import start_site

TOKEN = "ghp_lead_time_token_not_real_0123"


@dataclass
class FakeGitHubCommits:
    """Commits by sha, with their committer dates; records every request."""

    origin: str = ""
    commits: dict[str, str] = field(default_factory=dict)  # sha -> committer date
    requests: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/repos/{owner}/{repo}/commits/{ref}", self.commit)
        return app

    async def commit(self, request: web.Request) -> web.Response:
        self.requests.append({"path": request.path, "headers": dict(request.headers)})
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"message": "Bad credentials", "status": "401"}, status=401)
        sha = request.match_info["ref"]
        date = self.commits.get(sha)
        if date is None:
            return web.json_response({"message": f"No commit found for SHA: {sha}", "status": "422"}, status=422)
        owner, repo = request.match_info["owner"], request.match_info["repo"]
        person = {"name": "Alice", "email": "alice@example.com", "date": date}
        return web.json_response(
            {
                "sha": sha,
                "html_url": f"https://github.com/{owner}/{repo}/commit/{sha}",
                "commit": {"author": person, "committer": person, "message": "Fix checkout"},
            }
        )


@asynccontextmanager
async def running_github() -> AsyncIterator[FakeGitHubCommits]:
    """The stand-in, served on 127.0.0.1 and a free port."""
    fake = FakeGitHubCommits()
    runner, fake.origin = await start_site(fake.app())
    try:
        yield fake
    finally:
        await runner.cleanup()
