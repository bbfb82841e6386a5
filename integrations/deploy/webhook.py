"""Deploys by POSTing to a deploy hook (Render, Railway, Coolify, a CI trigger, your own endpoint).

The hook gets JSON `{"service", "environment", "version", "weight", "deploy_id", "previous_version",
"rollback"}`, signed with HMAC-SHA256 over the exact body (`X-Chatops-Signature-256: sha256=<hex>`, as GitHub
signs its webhooks) when `secret_env` names a secret. A 2xx answer is success, unless `status_url` is set: then
that URL (a template that may also use `{external_id}`, the value of `id_field` in the hook's JSON answer) is
polled until `status_field` (a dotted path) holds one of `success_values` or `failure_values`.

Deploy hook URLs are secrets (whoever has one can deploy): the URL, and the status URL, never appear in a
summary, a progress line, an error or a log line.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal, Self

import aiohttp
from pydantic import Field, field_validator, model_validator

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
    template_fields,
    url_quote,
)
from integrations.types import StrictModel

log = logging.getLogger(__name__)

_REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)
_MAX_BACKOFF = 30.0
SIGNATURE_PREFIX = "sha256="


class WebhookSettings(StrictModel):
    """`deployer: {kind: webhook, url_env: RENDER_DEPLOY_HOOK, status_url: "https://…/{external_id}", ...}`."""

    kind: Literal["webhook"]
    url: str | None = Field(None, repr=False, description="The hook URL (prefer url_env: hook URLs are secrets).")
    url_env: str | None = Field(None, description="Environment variable holding the hook URL.")
    secret_env: str | None = Field(None, description="Environment variable holding the HMAC-SHA256 signing secret.")
    signature_header: str = "X-Chatops-Signature-256"
    auth_env: str | None = Field(None, description="Environment variable with a Bearer token for the hook and status.")
    status_url: str | None = Field(None, description="Template polled for the deploy's status; may use {external_id}.")
    status_field: str = Field("status", min_length=1, description="Dotted path of the status in the JSON answer.")
    success_values: list[str] = Field(default_factory=lambda: ["success", "succeeded", "live", "deployed", "completed"])
    failure_values: list[str] = Field(
        default_factory=lambda: [
            "failure",
            "failed",
            "error",
            "errored",
            "canceled",
            "cancelled",
            "build_failed",
            "update_failed",
            "pre_deploy_failed",
            "deactivated",
        ]
    )
    id_field: str | None = Field(None, description="Dotted path of the provider's deploy id in the hook's answer.")
    poll_interval: PositiveDuration = timedelta(seconds=5)
    timeout: PositiveDuration = timedelta(minutes=15)

    @field_validator("status_url")
    @classmethod
    def _status_template(cls, value: str | None) -> str | None:
        return None if value is None else check_template(value, extra=("external_id",))

    @field_validator("url")
    @classmethod
    def _url_template(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")  # never echo it: hook URLs are secrets
        try:
            check_template(value)
        except ValueError:
            raise ValueError("has an unknown placeholder or a stray brace") from None
        return value

    @model_validator(mode="after")
    def _one_url(self) -> Self:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("set exactly one of url and url_env")
        if (
            self.status_url
            and "external_id" in template_fields(self.status_url, extra=("external_id",))
            and not self.id_field
        ):
            raise ValueError("status_url uses {external_id}: set id_field to the field of the hook's answer holding it")
        overlap = {value.lower() for value in self.success_values} & {value.lower() for value in self.failure_values}
        if overlap:
            raise ValueError(f"{min(overlap)!r} is in both success_values and failure_values")
        return self


class _StepFailed(Exception):
    """Ends a step with ok=False and this summary."""


class WebhookDeployer:
    """POSTs the step to the hook and, with `status_url`, polls until the deploy finishes."""

    def __init__(self, settings: WebhookSettings, *, environ: Mapping[str, str], http: aiohttp.ClientSession) -> None:
        self._settings = settings
        self._environ = environ
        self._http = http
        self._success = {value.lower() for value in settings.success_values}
        self._failure = {value.lower() for value in settings.failure_values}

    async def apply(self, step: DeployStep, emit: Emit) -> StepResult:
        """Calls the hook; then follows `status_url` when one is configured."""
        settings = self._settings
        url = self._hook_url(step)
        body = json.dumps(payload(step), separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "chatops-deploy", **self._auth()}
        if settings.secret_env:
            headers[settings.signature_header] = sign(self._secret(), body)
        deadline = time.monotonic() + settings.timeout.total_seconds()
        try:
            async with self._http.post(
                url, data=body, headers=headers, timeout=_REQUEST_TIMEOUT, allow_redirects=False
            ) as response:
                status = response.status
                answer = await _json_or_none(response)
        except asyncio.CancelledError:
            raise
        except (TimeoutError, aiohttp.ClientError, ValueError) as error:
            return StepResult(ok=False, summary=f"deploy hook request failed: {_network_reason(error)}")
        if not 200 <= status < 300:
            return StepResult(ok=False, summary=f"deploy hook answered {status}")
        external_id = None
        if settings.id_field:
            found = dotted(answer, settings.id_field)
            if isinstance(found, str | int) and not isinstance(found, bool) and str(found):
                external_id = str(found)
        await safe_emit(
            emit, f"deploy hook accepted ({status})" + (f", id {clip(external_id, 80)}" if external_id else "")
        )
        if not settings.status_url:
            return StepResult(ok=True, summary=f"deploy hook accepted ({status})", external_id=external_id)
        if external_id is None and "external_id" in template_fields(settings.status_url, extra=("external_id",)):
            return StepResult(
                ok=False,
                summary=f"the deploy hook's answer has no {settings.id_field}: cannot follow the deploy's status",
            )
        try:
            return await self._follow(step, external_id, emit, deadline)
        except _StepFailed as failure:
            return StepResult(ok=False, summary=str(failure), external_id=external_id)

    async def resume(self, step: DeployStep, external_id: str, emit: Emit) -> StepResult | None:
        """Polls `status_url` again for `external_id`; None without a status_url (nothing to follow)."""
        if not self._settings.status_url:
            return None
        deadline = time.monotonic() + self._settings.timeout.total_seconds()
        try:
            return await self._follow(step, external_id, emit, deadline)
        except _StepFailed as failure:
            return StepResult(ok=False, summary=str(failure), external_id=external_id)

    async def aclose(self) -> None:
        """Nothing to release: the HTTP session belongs to the caller."""

    # -- internals -------------------------------------------------------------------------------------------

    def _hook_url(self, step: DeployStep) -> str:
        settings = self._settings
        if settings.url is not None:
            return render_template(settings.url, step, escape=url_quote)
        assert settings.url_env is not None
        url = self._environ.get(settings.url_env)
        if not url:
            raise DeployError(f"environment variable {settings.url_env} (the deploy hook URL) is not set")
        if not url.startswith(("https://", "http://")):
            raise DeployError(f"environment variable {settings.url_env} does not hold an http(s) URL")
        return url

    def _secret(self) -> bytes:
        assert self._settings.secret_env is not None
        secret = self._environ.get(self._settings.secret_env)
        if not secret:
            raise DeployError(f"environment variable {self._settings.secret_env} (the webhook secret) is not set")
        return secret.encode()

    def _auth(self) -> dict[str, str]:
        if not self._settings.auth_env:
            return {}
        token = self._environ.get(self._settings.auth_env)
        if not token:
            raise DeployError(f"environment variable {self._settings.auth_env} (the webhook token) is not set")
        return {"Authorization": f"Bearer {token}"}

    async def _follow(self, step: DeployStep, external_id: str | None, emit: Emit, deadline: float) -> StepResult:
        settings = self._settings
        assert settings.status_url is not None
        url = render_template(settings.status_url, step, extra={"external_id": external_id or ""}, escape=url_quote)
        headers = {"Accept": "application/json", "User-Agent": "chatops-deploy", **self._auth()}
        last: str | None = None
        poll = settings.poll_interval.total_seconds()
        backoff = poll
        while True:
            value, problem = await self._poll_once(url, headers)
            if value is not None:
                backoff = poll
                if value != last:
                    await safe_emit(emit, f"deploy status: {clip(value, 100)}")
                    last = value
                if value.lower() in self._success:
                    return StepResult(ok=True, summary=f"deploy {clip(value, 60)}", external_id=external_id)
                if value.lower() in self._failure:
                    return StepResult(ok=False, summary=f"deploy {clip(value, 60)}", external_id=external_id)
                wait = poll
            else:
                wait = backoff  # not there yet, or the endpoint is struggling: ask less often
                backoff = min(backoff * 2, max(poll, _MAX_BACKOFF))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                still = f"status {clip(last, 60)}" if last else (problem or "no status")
                raise _StepFailed(
                    f"timed out after {format_duration(settings.timeout)} waiting for the deploy ({still})"
                )
            await asyncio.sleep(min(wait, remaining))

    async def _poll_once(self, url: str, headers: dict[str, str]) -> tuple[str | None, str | None]:
        """(status value, None), or (None, why not) for an answer worth retrying; raises _StepFailed otherwise."""
        settings = self._settings
        try:
            async with self._http.get(url, headers=headers, timeout=_REQUEST_TIMEOUT) as response:
                status = response.status
                answer = await _json_or_none(response)
        except asyncio.CancelledError:
            raise
        except (TimeoutError, aiohttp.ClientError, ValueError) as error:
            return None, f"status request failed: {_network_reason(error)}"
        if status in (401, 403):
            raise DeployError(
                f"the deploy status endpoint refused us ({status}); check {settings.auth_env or 'auth_env'}"
            )
        if status == 404 or status == 429 or status >= 500:
            return None, f"status endpoint answered {status}"  # not there yet, busy, or down: ask again
        if not 200 <= status < 300:
            raise _StepFailed(f"the deploy status endpoint answered {status}")
        value = dotted(answer, settings.status_field)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value), None
        return None, f"status answer has no {settings.status_field}"


def payload(step: DeployStep) -> dict[str, Any]:
    """The JSON body the hook receives (weight and previous_version are null when the step has none)."""
    return {
        "service": step.service,
        "environment": step.environment,
        "version": step.version,
        "weight": step.weight,
        "deploy_id": step.deploy_id,
        "previous_version": step.previous_version,
        "rollback": step.rollback,
    }


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value: "sha256=" + hex HMAC-SHA256 of the exact body."""
    return SIGNATURE_PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, signature: str) -> bool:
    """Checks a signature made by `sign` in constant time (for receivers written in Python)."""
    return hmac.compare_digest(sign(secret, body), signature)


def dotted(data: Any, path: str) -> Any:
    """`data["a"]["b"]` for "a.b" (list indexes as numbers); None when any step is missing."""
    for part in path.split("."):
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and (part.isascii() and part.isdigit()) and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


async def _json_or_none(response: aiohttp.ClientResponse) -> Any:
    try:
        text = await response.text(errors="replace")
        return json.loads(text) if text.strip() else None
    except (ValueError, aiohttp.ClientPayloadError):
        return None


def _network_reason(error: BaseException) -> str:
    """Why a request failed, without the URL (aiohttp's messages include the host and path)."""
    if isinstance(error, asyncio.TimeoutError):
        return "timed out"
    if isinstance(error, aiohttp.ClientConnectorError):
        strerror = error.os_error.strerror if error.os_error else None
        return f"cannot connect ({strerror})" if strerror else "cannot connect"
    if isinstance(error, aiohttp.InvalidURL | ValueError):
        return "invalid URL"
    return type(error).__name__


def build(settings: WebhookSettings, *, environ: Mapping[str, str], http: aiohttp.ClientSession) -> WebhookDeployer:
    """The webhook deployer for `settings`, sharing the caller's HTTP session."""
    return WebhookDeployer(settings, environ=environ, http=http)
