"""The webhook deployer against a local server: the JSON body and its HMAC signature (checked by the server), the
provider's id taken from the answer, status polling to success and to failure, resume, and the hook URL (a
secret) kept out of every summary, progress line and error."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import ValidationError

from integrations.deploy.base import DeployError, DeployStep, StepResult
from integrations.deploy.webhook import WebhookSettings, build, verify

SECRET = "whsec-test-secret"
HOOK_KEY = "SUPERSECRETHOOKKEY"


def make_step(**overrides: object) -> DeployStep:
    values: dict[str, object] = {
        "deploy_id": "d-9",
        "service": "web",
        "environment": "staging",
        "version": "v3",
        "previous_version": "v2",
        "weight": 25,
        "rollback": False,
        "requested_by": "U0ALICE",
    }
    values.update(overrides)
    return DeployStep(**values)


@dataclass
class FakeHost:
    """A deploy host: takes hooks at /deploy/<key>, reports deploys at /deploys/<id>."""

    origin: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    status_requests: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[str] = field(default_factory=lambda: ["queued", "build_in_progress", "live"])
    hook_status: int = 202
    not_found_first: int = 1  # the deploy is not visible for this many status requests

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/deploy/{key}", self.hook)
        app.router.add_get("/deploys/{id}", self.status)
        return app

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        self.received.append(
            {
                "key": request.match_info["key"],
                "body": json.loads(body),
                "signature_ok": hmac.compare_digest(expected, request.headers.get("X-Chatops-Signature-256", "")),
                "headers": dict(request.headers),
            }
        )
        if request.match_info["key"] != HOOK_KEY:
            return web.json_response({"error": "unknown hook"}, status=404)
        if self.hook_status >= 300:
            return web.json_response({"error": f"broken hook at {request.url}"}, status=self.hook_status)
        return web.json_response({"deploy": {"id": "dep-123", "status": "created"}}, status=self.hook_status)

    async def status(self, request: web.Request) -> web.Response:
        self.status_requests.append({"id": request.match_info["id"], "headers": dict(request.headers)})
        if self.not_found_first > 0:
            self.not_found_first -= 1
            return web.json_response({"message": "not found"}, status=404)
        state = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return web.json_response({"deploy": {"id": request.match_info["id"], "status": state}})


@pytest.fixture
async def host() -> AsyncIterator[FakeHost]:
    fake = FakeHost()
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


def environ(host: FakeHost) -> dict[str, str]:
    return {
        "DEPLOY_HOOK": f"{host.origin}/deploy/{HOOK_KEY}?key={HOOK_KEY}",
        "HOOK_SECRET": SECRET,
        "HOST_API_KEY": "api-key-123",
    }


def settings(host: FakeHost, **overrides: object) -> WebhookSettings:
    values: dict[str, object] = {
        "kind": "webhook",
        "url_env": "DEPLOY_HOOK",
        "secret_env": "HOOK_SECRET",
        "status_url": host.origin + "/deploys/{external_id}",
        "id_field": "deploy.id",
        "status_field": "deploy.status",
        "auth_env": "HOST_API_KEY",
        "poll_interval": "50ms",
        "timeout": "10s",
    }
    values.update(overrides)
    return WebhookSettings.model_validate(values)


def assert_secret_free(result: StepResult | None, emit: Lines) -> None:
    text = repr(result) + "\n".join(emit.lines)
    assert HOOK_KEY not in text


async def test_the_hook_gets_signed_json_and_the_status_is_followed_to_success(
    host: FakeHost, http: aiohttp.ClientSession
) -> None:
    emit = Lines()
    result = await build(settings(host), environ=environ(host), http=http).apply(make_step(), emit)
    assert result.ok, result
    assert result.external_id == "dep-123"
    assert result.summary == "deploy live"

    (received,) = host.received
    assert received["signature_ok"]
    assert received["body"] == {
        "service": "web",
        "environment": "staging",
        "version": "v3",
        "weight": 25,
        "deploy_id": "d-9",
        "previous_version": "v2",
        "rollback": False,
    }
    assert received["headers"]["Authorization"] == "Bearer api-key-123"
    assert [r["id"] for r in host.status_requests] == ["dep-123"] * 4  # one 404, then queued, building, live
    assert emit.lines == [
        "deploy hook accepted (202), id dep-123",
        "deploy status: queued",
        "deploy status: build_in_progress",
        "deploy status: live",
    ]
    assert_secret_free(result, emit)


async def test_a_failure_status_fails_the_step(host: FakeHost, http: aiohttp.ClientSession) -> None:
    host.statuses = ["build_in_progress", "build_failed"]
    emit = Lines()
    result = await build(settings(host), environ=environ(host), http=http).apply(make_step(), emit)
    assert not result.ok and result.summary == "deploy build_failed" and result.external_id == "dep-123"
    assert_secret_free(result, emit)


async def test_without_a_status_url_a_2xx_is_success(host: FakeHost, http: aiohttp.ClientSession) -> None:
    emit = Lines()
    result = await build(settings(host, status_url=None, auth_env=None), environ=environ(host), http=http).apply(
        make_step(), emit
    )
    assert result.ok and result.summary == "deploy hook accepted (202)" and result.external_id == "dep-123"
    assert host.status_requests == []
    assert "Authorization" not in host.received[0]["headers"]
    assert (
        await build(settings(host, status_url=None), environ=environ(host), http=http).resume(
            make_step(), "dep-1", emit
        )
        is None
    )


async def test_resume_polls_the_status_of_a_known_deploy(host: FakeHost, http: aiohttp.ClientSession) -> None:
    host.not_found_first = 0
    result = await build(settings(host), environ=environ(host), http=http).resume(make_step(), "dep-77", Lines())
    assert result is not None and result.ok and result.external_id == "dep-77"
    assert host.received == []
    assert {r["id"] for r in host.status_requests} == {"dep-77"}


async def test_the_hook_url_never_appears_in_failures(host: FakeHost, http: aiohttp.ClientSession) -> None:
    host.hook_status = 500
    emit = Lines()
    result = await build(settings(host), environ=environ(host), http=http).apply(make_step(), emit)
    assert not result.ok and result.summary == "deploy hook answered 500"
    assert_secret_free(result, emit)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    refused = {**environ(host), "DEPLOY_HOOK": f"http://127.0.0.1:{closed}/deploy/{HOOK_KEY}"}
    result = await build(settings(host), environ=refused, http=http).apply(make_step(), emit)
    assert not result.ok and result.summary.startswith("deploy hook request failed: cannot connect")
    assert_secret_free(result, emit)

    bad = {**environ(host), "DEPLOY_HOOK": f"http://[::1:{HOOK_KEY}/x"}
    with pytest.raises(DeployError) as caught:
        await build(settings(host), environ={**bad, "DEPLOY_HOOK": f"ftp://{HOOK_KEY}"}, http=http).apply(
            make_step(), emit
        )
    assert HOOK_KEY not in str(caught.value)
    result = await build(settings(host), environ=bad, http=http).apply(make_step(), emit)
    assert not result.ok
    assert_secret_free(result, emit)

    with pytest.raises(DeployError, match="DEPLOY_HOOK") as caught:
        await build(settings(host), environ={"HOOK_SECRET": SECRET}, http=http).apply(make_step(), emit)
    with pytest.raises(ValidationError) as invalid:
        WebhookSettings(kind="webhook", url=f"{host.origin}/deploy/{HOOK_KEY}/{{nope}}")
    assert HOOK_KEY not in str(invalid.value.errors(include_input=False))
    assert HOOK_KEY not in repr(WebhookSettings(kind="webhook", url=f"{host.origin}/deploy/{HOOK_KEY}"))


async def test_a_url_setting_renders_placeholders_url_quoted(host: FakeHost, http: aiohttp.ClientSession) -> None:
    s = WebhookSettings(kind="webhook", url=host.origin + "/deploy/{service}", secret_env="HOOK_SECRET")
    result = await build(s, environ={"HOOK_SECRET": SECRET}, http=http).apply(make_step(service=HOOK_KEY), Lines())
    assert result.ok and host.received[0]["key"] == HOOK_KEY
    await build(s, environ={"HOOK_SECRET": SECRET}, http=http).apply(make_step(service="../x"), Lines())
    assert host.received[1]["key"] == "../x"  # one path segment, not a traversal


async def test_a_deploy_that_never_finishes_times_out(host: FakeHost, http: aiohttp.ClientSession) -> None:
    host.statuses = ["build_in_progress"]
    result = await build(settings(host, timeout="1s"), environ=environ(host), http=http).apply(make_step(), Lines())
    assert not result.ok
    assert result.summary == "timed out after 1s waiting for the deploy (status build_in_progress)"


def test_signature_helpers_and_settings_validation() -> None:
    body = b'{"a":1}'
    signature = "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert verify(b"k", body, signature) and not verify(b"k", body + b" ", signature)
    with pytest.raises(ValidationError, match="exactly one of url and url_env"):
        WebhookSettings(kind="webhook")
    with pytest.raises(ValidationError, match="set id_field"):
        WebhookSettings(kind="webhook", url_env="X", status_url="https://h/{external_id}")
    with pytest.raises(ValidationError, match="both"):
        WebhookSettings(kind="webhook", url_env="X", success_values=["done"], failure_values=["DONE"])
