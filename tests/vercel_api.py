"""A local stand-in for the parts of Vercel's REST API the Vercel deployer uses, answering the shapes Vercel's REST
reference and SDK models document (vercel.com/docs/rest-api): create a git deployment (POST /v13/deployments),
follow it (GET /v13/deployments/{id}: readyState QUEUED -> BUILDING -> READY, or ERROR with errorMessage), list
production deployments (GET /v6/deployments), read the project (GET /v9/projects/{id}: targets.production),
instant rollback (POST /v1/projects/{id}/rollback/{deploymentId}) and promote (POST /v10/projects/{id}/promote/…).
Errors are `{"error": {"code", "message"}}`; 401 for a bad token, 429 with Retry-After when told to.

It also serves the project's "production domain" at /_domain/healthz: 200 with the version production serves, or
500 while that version starts with "bad", so the deploy health gate sees what a rollback or promote changed. And,
as every Vercel deployment has its own URL serving exactly that build (the `url` field, a host without scheme, like
`site-abc123-acme.vercel.app`), each deployment here gets its own port on 127.0.0.1 and its `url` is that
`127.0.0.1:<port>`, whose /healthz answers the same way for that deployment's version (503 until it is READY),
recording which deployment production served at each check."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.conftest import start_site

TOKEN = "vercel_test_token_not_real_0123456789"
PROJECT_ID = "prj_site"
PROJECT_NAME = "site"
TEAM_ID = "team_acme"


@dataclass
class Deployment:
    """One deployment and where it is in its build."""

    id: str
    url: str
    target: str | None
    ref: str
    sha: str | None
    meta: dict[str, str]
    created: int
    states: list[str]
    error: str | None = None
    polls: int = 0
    assign_domains: bool = True
    hold: bool = False  # stays at its current state until released
    # Each GET of the deployment's own /healthz: the deployment production served at that moment.
    checks: list[str | None] = field(default_factory=list)

    @property
    def state(self) -> str:
        return self.states[min(self.polls, len(self.states) - 1)]

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "name": PROJECT_NAME,
            "url": self.url,
            "readyState": self.state,
            "target": self.target,
            "projectId": PROJECT_ID,
            "createdAt": self.created,
            "meta": self.meta,
            "inspectorUrl": f"https://vercel.com/acme/site/{self.id.removeprefix('dpl_')}",
            "gitSource": {"type": "github", "org": "acme", "repo": "site", "ref": self.ref, "sha": self.sha},
            "autoAssignCustomDomains": self.assign_domains,
        }
        if self.state == "ERROR":
            body["errorCode"] = "BUILD_FAILED"
            body["errorMessage"] = self.error or 'Command "npm run build" exited with 1'
        return body


@dataclass
class FakeVercel:
    """Just enough of Vercel, recording every request."""

    origin: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    deployments: dict[str, Deployment] = field(default_factory=dict)
    production: str | None = None  # the deployment the production domain serves
    pending_switch: tuple[str, int] | None = None  # (deployment, project reads left) of a rollback or promote
    commits: dict[str, tuple[str, str]] = field(default_factory=dict)  # ref -> (sha, committer date) for git refs
    rate_limits: list[str] = field(default_factory=list)  # Retry-After values of 429s to answer deployment polls
    server_errors: int = 0  # 502s to answer deployment polls first
    hold_builds: bool = False  # new deployments stay QUEUED/BUILDING until `release`
    # Deployment Protection: when set, deployment URLs answer 401 unless the request carries this secret in
    # `x-vercel-protection-bypass` (Protection Bypass for Automation, vercel.com/docs/deployment-protection).
    protection_bypass: str | None = None
    team_id: str = TEAM_ID
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _sites: list[web.AppRunner] = field(default_factory=list)  # one per deployment URL

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_post("/v13/deployments", self.create)
        app.router.add_get("/v13/deployments/{id}", self.get)
        app.router.add_get("/v6/deployments", self.list)
        app.router.add_get("/v9/projects/{project}", self.project)
        app.router.add_post("/v1/projects/{project}/rollback/{id}", self.rollback)
        app.router.add_post("/v10/projects/{project}/promote/{id}", self.promote)
        app.router.add_get("/_domain/healthz", self.domain_health)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_domain/"):
            return await handler(request)
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
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return _error(401, "forbidden", "Not authorized")
        if request.query.get("teamId") != self.team_id:
            return _error(403, "forbidden", "You don't have permission to access this resource.")
        return await handler(request)

    def release(self) -> None:
        """Lets held builds go on."""
        self.hold_builds = False
        for deployment in self.deployments.values():
            deployment.hold = False

    async def create(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("project") not in (PROJECT_ID, PROJECT_NAME):
            return _error(404, "not_found", f'Project "{body.get("project")}" not found')
        git = body.get("gitSource") or {}
        if not body.get("name") or git.get("type") != "github" or not all(git.get(k) for k in ("org", "repo", "ref")):
            return _error(400, "bad_request", "Invalid request: `gitSource` is missing required properties.")
        ref = git["ref"]
        if ref.startswith("missing"):
            return _error(
                400,
                "incorrect_git_source_info",
                "The provided GitHub repository does not contain the requested branch or commit reference."
                " Please ensure the repository is not empty.",
            )
        number = next(self._ids)
        deployment_id = f"dpl_{number:04d}{ref.replace('.', '')[:8]}"
        states = ["QUEUED", "BUILDING", "ERROR" if ref.startswith("broken") else "READY"]
        site, origin = await start_site(self._deployment_app(deployment_id))
        self._sites.append(site)
        deployment = Deployment(
            id=deployment_id,
            url=origin.removeprefix("http://"),
            target=body.get("target"),
            ref=ref,
            sha=self.commits.get(ref, (None, ""))[0],
            meta=dict(body.get("meta") or {}),
            created=int(time.time() * 1000),
            states=states,
            assign_domains=body.get("autoAssignCustomDomains", True) is not False,
            hold=self.hold_builds,
        )
        deployment.meta["githubCommitRef"] = ref
        if deployment.sha:
            deployment.meta["githubCommitSha"] = deployment.sha
        self.deployments[deployment_id] = deployment
        return web.json_response(deployment.body())

    async def get(self, request: web.Request) -> web.Response:
        if self.rate_limits:
            return _error(429, "rate_limited", "Rate limit exceeded", headers={"Retry-After": self.rate_limits.pop(0)})
        if self.server_errors:
            self.server_errors -= 1
            return _error(502, "bad_gateway", "An error occurred with your deployment")
        deployment = self.deployments.get(request.match_info["id"])
        if deployment is None:
            return _error(404, "not_found", "Deployment not found")
        body = deployment.body()
        if not deployment.hold and deployment.state not in ("READY", "ERROR", "CANCELED"):
            deployment.polls += 1
            if deployment.state == "READY" and deployment.target == "production" and deployment.assign_domains:
                self.production = deployment.id
        return web.json_response(body)

    async def list(self, request: web.Request) -> web.Response:
        query = request.query
        found = [
            d
            for d in sorted(self.deployments.values(), key=lambda d: d.created, reverse=True)
            if query.get("projectId") in (None, PROJECT_ID)
            and query.get("target") in (None, d.target)
            and query.get("state") in (None, d.state)
        ]
        items = [
            {
                "uid": d.id,
                "name": PROJECT_NAME,
                "url": d.url,
                "created": d.created,
                "state": d.state,
                "readyState": d.state,
                "target": d.target,
                "meta": d.meta,
            }
            for d in found
        ]
        return web.json_response(
            {"deployments": items, "pagination": {"count": len(items), "next": None, "prev": None}}
        )

    async def project(self, request: web.Request) -> web.Response:
        if request.match_info["project"] not in (PROJECT_ID, PROJECT_NAME):
            return _error(404, "not_found", "Project not found")
        if self.pending_switch is not None:  # rollbacks and promotes take effect a moment after they are accepted
            target, reads = self.pending_switch
            if reads <= 0:
                self.production, self.pending_switch = target, None
            else:
                self.pending_switch = (target, reads - 1)
        production = self.deployments.get(self.production or "")
        targets = (
            {"production": {"id": production.id, "url": production.url, "readyState": production.state}}
            if production
            else {}
        )
        return web.json_response({"id": PROJECT_ID, "name": PROJECT_NAME, "accountId": TEAM_ID, "targets": targets})

    async def rollback(self, request: web.Request) -> web.Response:
        return self._switch(request, rollback=True)

    async def promote(self, request: web.Request) -> web.Response:
        return self._switch(request, rollback=False)

    def _switch(self, request: web.Request, *, rollback: bool) -> web.Response:
        if request.match_info["project"] not in (PROJECT_ID, PROJECT_NAME):
            return _error(404, "not_found", "Project not found")
        deployment = self.deployments.get(request.match_info["id"])
        if deployment is None:
            return _error(404, "not_found", "Deployment not found")
        if deployment.state != "READY" or deployment.target != "production":
            return _error(400, "invalid_deployment", "The deployment is not a READY production deployment.")
        self.pending_switch = (deployment.id, 1)
        return web.Response(status=201) if rollback else web.Response(status=202)

    async def domain_health(self, request: web.Request) -> web.Response:
        deployment = self.deployments.get(self.production or "")
        version = deployment.meta.get("chatopsVersion", "none") if deployment else "none"
        return web.json_response({"version": version}, status=500 if version.startswith("bad") else 200)

    def _deployment_app(self, deployment_id: str) -> web.Application:
        """What the deployment's own URL serves: its /healthz, for its version only."""

        async def health(request: web.Request) -> web.Response:
            deployment = self.deployments[deployment_id]
            if self.protection_bypass and request.headers.get("x-vercel-protection-bypass") != self.protection_bypass:
                return web.Response(status=401, text="Authentication Required", content_type="text/html")
            deployment.checks.append(self.production)
            if deployment.state != "READY":
                return web.json_response({"error": {"code": "DEPLOYMENT_NOT_READY"}}, status=503)
            version = deployment.meta.get("chatopsVersion", "none")
            return web.json_response({"version": version}, status=500 if version.startswith("bad") else 200)

        app = web.Application()
        app.router.add_get("/healthz", health)
        return app

    async def aclose(self) -> None:
        """Stops the deployments' own URLs."""
        for site in self._sites:
            await site.cleanup()

    def serving_version(self) -> str | None:
        """The chatops version the production domain serves now."""
        deployment = self.deployments.get(self.production or "")
        return deployment.meta.get("chatopsVersion") if deployment else None


def _error(status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


@asynccontextmanager
async def running_vercel() -> AsyncIterator[FakeVercel]:
    """The stand-in, served on 127.0.0.1 and a free port."""
    fake = FakeVercel()
    runner, fake.origin = await start_site(fake.app())
    try:
        yield fake
    finally:
        await fake.aclose()
        await runner.cleanup()
