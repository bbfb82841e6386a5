"""Deploys to an AWS ECS service by registering a task definition revision with a new image tag.

A step reads the service's current task definition, copies it with the container's image set to
`{image}:{version}` (the repository from the `image` setting, or the current image without its tag),
registers it, points the service at it with `update_service`, and waits until that deployment's
`rolloutState` is COMPLETED (or, without a rollout state, until it runs all desired tasks alone). The
external id is the task definition ARN, which is what `resume` waits for after a restart.

ECS has no traffic weights of its own: the first step of a canary rolls out everything, and later steps find
the service already on the new image and return at once. A rollback step (whose `version` is the version to go
back to) redeploys the task definition the deploy replaced when this process remembers it, else the newest
active revision of the family running that version, else a new revision with that tag.

boto3 is synchronous: every call goes through `asyncio.to_thread`, on one client built when first needed.
Credentials come from the AWS environment (the `environ` given to `build`, then boto3's usual chain).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal

import aiohttp
from pydantic import Field, field_validator

from integrations.deploy.base import (
    DeployError,
    DeployStep,
    Emit,
    PositiveDuration,
    StepResult,
    clip,
    format_duration,
    safe_emit,
)
from integrations.types import StrictModel

# The keys of describe_task_definition's answer that register_task_definition accepts back.
_REGISTER_KEYS = (
    "family",
    "taskRoleArn",
    "executionRoleArn",
    "networkMode",
    "containerDefinitions",
    "volumes",
    "placementConstraints",
    "requiresCompatibilities",
    "cpu",
    "memory",
    "pidMode",
    "ipcMode",
    "proxyConfiguration",
    "inferenceAccelerators",
    "ephemeralStorage",
    "runtimePlatform",
    "enableFaultInjection",
)
_IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")  # Docker's tag grammar
_CREDENTIAL_ERRORS = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "AccessDeniedException",
    "AccessDenied",
}
_MISSING_ERRORS = {"ClusterNotFoundException", "ServiceNotFoundException", "ServiceNotActiveException"}
_TRANSIENT_ERRORS = {
    "ThrottlingException",
    "Throttling",
    "ServerException",
    "ServiceUnavailable",
    "RequestLimitExceeded",
    "TooManyRequestsException",
}
_REMEMBERED_DEPLOYS = 200
_REVISIONS_SEARCHED = 25


class EcsSettings(StrictModel):
    """`deployer: {kind: ecs, cluster: prod, service: web, container: web, region: eu-west-1}`."""

    kind: Literal["ecs"]
    cluster: str = Field(min_length=1)
    service: str = Field(min_length=1)
    container: str = Field(min_length=1, description="The container (by name) whose image is replaced.")
    region: str | None = Field(None, description="Default: AWS_REGION / AWS_DEFAULT_REGION from the environment.")
    image: str | None = Field(None, description="Image repository without tag; default: the current image's.")
    endpoint_url_env: str | None = Field(None, description="Variable holding an endpoint URL (LocalStack, tests).")
    timeout: PositiveDuration = timedelta(minutes=15)
    poll_interval: PositiveDuration = timedelta(seconds=5)

    @field_validator("image")
    @classmethod
    def _untagged(cls, image: str | None) -> str | None:
        if image is not None and (image_repository(image) != image or not image):
            raise ValueError("must be an image repository without a tag or digest, like 123.dkr.ecr.../web")
        return image


def image_repository(image: str) -> str:
    """`image` without its tag or digest: "reg:5000/web:v1" -> "reg:5000/web", "web@sha256:…" -> "web"."""
    image = image.split("@", 1)[0]
    slash = image.rfind("/")
    colon = image.rfind(":")
    return image[:colon] if colon > slash else image


class _StepFailed(Exception):
    """Ends a step with ok=False and this summary."""


class _Transient(_StepFailed):
    """A failure worth retrying while waiting (throttling, a dropped connection)."""


class EcsDeployer:
    """Rolls an ECS service to a new image tag per step; see the module docstring."""

    def __init__(self, settings: EcsSettings, *, environ: Mapping[str, str]) -> None:
        self._settings = settings
        self._environ = environ
        self._client: Any = None
        self._client_lock = asyncio.Lock()
        # deploy id -> the task definition the service ran before that deploy's first step, for its rollback.
        self._before: OrderedDict[str, str] = OrderedDict()

    # -- the Protocol ----------------------------------------------------------------------------------------

    async def apply(self, step: DeployStep, emit: Emit) -> StepResult:
        """Registers a revision with the step's image tag (or picks the rollback target) and rolls it out."""
        target: str | None = None
        try:
            service = await self._describe_service()
            current_arn = service["taskDefinition"]
            current = await self._call("describe_task_definition", taskDefinition=current_arn, include=["TAGS"])
            definition = current["taskDefinition"]
            container = self._container(definition)
            if step.rollback:
                target = await self._rollback_target(step, definition, current.get("tags") or [], emit)
            else:
                self._remember_before(step.deploy_id, current_arn)
                wanted = self._image_for(container["image"], step.version)
                if container["image"] == wanted:
                    target = current_arn  # a later canary step, or a retry: nothing new to register
                else:
                    target = await self._register(definition, current.get("tags") or [], wanted)
                    await safe_emit(emit, f"ECS: registered {_short_arn(target)} with image {wanted}")
                if step.weight is not None and step.weight < 100 and target != current_arn:
                    await safe_emit(emit, f"ECS has no traffic weights: step {step.weight}% rolls out to every task")
            if target != current_arn:
                await self._call(
                    "update_service",
                    cluster=self._settings.cluster,
                    service=self._settings.service,
                    taskDefinition=target,
                )
                await safe_emit(emit, f"ECS: service {self._settings.service} now on {_short_arn(target)}, rolling out")
            return await self._wait(target, emit)
        except _StepFailed as failure:
            return StepResult(ok=False, summary=str(failure), external_id=target, url=self._console_url())

    async def resume(self, step: DeployStep, external_id: str, emit: Emit) -> StepResult | None:
        """Waits again for the rollout of task definition `external_id`."""
        if not external_id.startswith("arn:") or ":task-definition/" not in external_id:
            return StepResult(ok=False, summary=f"not a task definition ARN: {clip(external_id, 80)}")
        try:
            return await self._wait(external_id, emit)
        except _StepFailed as failure:
            return StepResult(ok=False, summary=str(failure), external_id=external_id, url=self._console_url())

    async def aclose(self) -> None:
        """Closes the boto3 client's connection pool."""
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)

    # -- steps -----------------------------------------------------------------------------------------------

    async def _describe_service(self) -> dict[str, Any]:
        settings = self._settings
        answer = await self._call("describe_services", cluster=settings.cluster, services=[settings.service])
        for service in answer.get("services") or []:
            if service.get("status") == "ACTIVE":
                return service
        raise DeployError(f"ECS service {settings.service} not found (or not active) in cluster {settings.cluster}")

    def _container(self, definition: dict[str, Any]) -> dict[str, Any]:
        for container in definition.get("containerDefinitions") or []:
            if container.get("name") == self._settings.container:
                return container
        names = ", ".join(str(c.get("name")) for c in definition.get("containerDefinitions") or []) or "none"
        raise DeployError(
            f"task definition {_short_arn(definition.get('taskDefinitionArn', '?'))} has no container "
            f"{self._settings.container} (it has: {names})"
        )

    def _image_for(self, current_image: str, version: str) -> str:
        if not _IMAGE_TAG.match(version):
            raise _StepFailed(f"{clip(version, 60)!r} is not a valid image tag")
        return f"{self._settings.image or image_repository(current_image)}:{version}"

    def _remember_before(self, deploy_id: str, arn: str) -> None:
        if deploy_id not in self._before:
            self._before[deploy_id] = arn
            while len(self._before) > _REMEMBERED_DEPLOYS:
                self._before.popitem(last=False)

    async def _register(self, definition: dict[str, Any], tags: list[dict[str, str]], image: str) -> str:
        params = {key: definition[key] for key in _REGISTER_KEYS if definition.get(key) not in (None, [], {})}
        params["containerDefinitions"] = [
            {**container, "image": image} if container.get("name") == self._settings.container else container
            for container in definition["containerDefinitions"]
        ]
        if tags:
            params["tags"] = tags
        answer = await self._call("register_task_definition", **params)
        return str(answer["taskDefinition"]["taskDefinitionArn"])

    async def _rollback_target(
        self, step: DeployStep, definition: dict[str, Any], tags: list[dict[str, str]], emit: Emit
    ) -> str:
        """The task definition to roll back to (see the module docstring for the order)."""
        remembered = self._before.get(step.deploy_id)
        if remembered is not None:
            await safe_emit(emit, f"ECS: rolling back to {_short_arn(remembered)}, which this deploy replaced")
            return remembered
        wanted = self._image_for(self._container(definition)["image"], step.version)
        found = await self._find_revision(definition["family"], wanted)
        if found is not None:
            await safe_emit(emit, f"ECS: rolling back to {_short_arn(found)} ({wanted})")
            return found
        arn = await self._register(definition, tags, wanted)
        await safe_emit(emit, f"ECS: registered {_short_arn(arn)} with image {wanted} to roll back")
        return arn

    async def _find_revision(self, family: str, image: str) -> str | None:
        """The newest of the family's last active revisions whose container runs `image`."""
        answer = await self._call(
            "list_task_definitions", familyPrefix=family, status="ACTIVE", sort="DESC", maxResults=100
        )
        arns = [
            arn for arn in answer.get("taskDefinitionArns") or [] if arn.rsplit("/", 1)[-1].rsplit(":", 1)[0] == family
        ]
        arns.sort(key=_revision, reverse=True)  # not every ECS implementation honours sort=DESC
        for arn in arns[:_REVISIONS_SEARCHED]:
            definition = (await self._call("describe_task_definition", taskDefinition=arn))["taskDefinition"]
            for container in definition.get("containerDefinitions") or []:
                if container.get("name") == self._settings.container and container.get("image") == image:
                    return arn
        return None

    async def _wait(self, target: str, emit: Emit) -> StepResult:
        """Polls the service until the rollout of `target` completes, fails, is superseded or times out."""
        settings = self._settings
        deadline = time.monotonic() + settings.timeout.total_seconds()
        last_seen: tuple[Any, ...] | None = None
        while True:
            try:
                service = await self._describe_service()
            except _Transient:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise
                await asyncio.sleep(min(settings.poll_interval.total_seconds(), remaining))
                continue
            if service.get("taskDefinition") != target:
                raise _StepFailed(
                    f"the service moved on to {_short_arn(service.get('taskDefinition', '?'))} "
                    f"before {_short_arn(target)} finished rolling out"
                )
            deployments = service.get("deployments") or []
            primaries: list[dict[str, Any]] = [d for d in deployments if d.get("status") == "PRIMARY"]
            primary = next((d for d in primaries if d.get("taskDefinition") == target), None) or next(
                iter(primaries), {}
            )
            state = primary.get("rolloutState")
            running, desired = primary.get("runningCount", 0), primary.get("desiredCount", 0)
            seen = (state, running, desired, len(deployments))
            if seen != last_seen:
                await safe_emit(
                    emit,
                    f"ECS: {running}/{desired} tasks running"
                    + (f", rollout {state.lower().replace('_', ' ')}" if state else ""),
                )
                last_seen = seen
            if state == "FAILED":
                reason = clip(str(primary.get("rolloutStateReason") or "no reason given"), 200)
                raise _StepFailed(f"ECS rollout of {_short_arn(target)} failed: {reason}")
            if state == "COMPLETED" or (state is None and running == desired and len(deployments) == 1):
                return StepResult(
                    ok=True,
                    summary=f"ECS service {settings.service} runs {_short_arn(target)} "
                    f"({running}/{desired} tasks running)",
                    external_id=target,
                    url=self._console_url(),
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _StepFailed(
                    f"timed out after {format_duration(settings.timeout)} waiting for ECS to roll out "
                    f"{_short_arn(target)} ({running}/{desired} tasks running)"
                )
            await asyncio.sleep(min(settings.poll_interval.total_seconds(), remaining))

    # -- boto3 -----------------------------------------------------------------------------------------------

    async def _ecs(self) -> Any:
        async with self._client_lock:
            if self._client is None:
                self._client = await asyncio.to_thread(self._make_client)
            return self._client

    def _make_client(self) -> Any:
        import boto3
        import botocore.config
        import botocore.exceptions

        environ = self._environ
        region = self._settings.region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
        if not region:
            raise DeployError("no AWS region: set `region` in the ecs deployer or AWS_REGION in the environment")
        session_args: dict[str, str] = {"region_name": region}
        if environ.get("AWS_ACCESS_KEY_ID") and environ.get("AWS_SECRET_ACCESS_KEY"):
            session_args["aws_access_key_id"] = environ["AWS_ACCESS_KEY_ID"]
            session_args["aws_secret_access_key"] = environ["AWS_SECRET_ACCESS_KEY"]
            if environ.get("AWS_SESSION_TOKEN"):
                session_args["aws_session_token"] = environ["AWS_SESSION_TOKEN"]
        elif environ.get("AWS_PROFILE"):
            session_args["profile_name"] = environ["AWS_PROFILE"]
        endpoint = environ.get(self._settings.endpoint_url_env) if self._settings.endpoint_url_env else None
        try:
            session = boto3.session.Session(**session_args)
        except botocore.exceptions.ProfileNotFound:
            raise DeployError(f"AWS profile {environ.get('AWS_PROFILE')} not found") from None
        config = botocore.config.Config(
            retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10, read_timeout=30
        )
        return session.client("ecs", endpoint_url=endpoint or None, config=config)

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        """One ECS API call in a thread; credential and missing-resource problems become DeployError."""
        import botocore.exceptions

        client = await self._ecs()
        try:
            return await asyncio.to_thread(getattr(client, operation), **params)
        except botocore.exceptions.NoCredentialsError:
            raise DeployError(
                "no AWS credentials found (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile or an instance role)"
            ) from None
        except botocore.exceptions.ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", "Unknown"))
            message = clip(str(error.response.get("Error", {}).get("Message", "")), 200)
            if code in _CREDENTIAL_ERRORS:
                raise DeployError(f"AWS refused ECS {operation}: {code}") from None
            if code in _MISSING_ERRORS:
                raise DeployError(
                    f"ECS {operation}: {code} (cluster {self._settings.cluster}, service {self._settings.service})"
                ) from None
            failure = _Transient if code in _TRANSIENT_ERRORS else _StepFailed
            raise failure(f"ECS {operation} failed: {code}: {message}") from None
        except (
            botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectTimeoutError,
            botocore.exceptions.ReadTimeoutError,
        ) as error:
            raise _Transient(f"ECS {operation} failed: {type(error).__name__}") from None

    def _console_url(self) -> str | None:
        settings = self._settings
        if settings.endpoint_url_env and self._environ.get(settings.endpoint_url_env):
            return None  # not AWS: there is no console
        region = settings.region or self._environ.get("AWS_REGION") or self._environ.get("AWS_DEFAULT_REGION")
        if not region:
            return None
        return (
            f"https://{region}.console.aws.amazon.com/ecs/v2/clusters/{settings.cluster}/services/"
            f"{settings.service}/deployments?region={region}"
        )


def _short_arn(arn: str) -> str:
    """ "arn:aws:ecs:…:task-definition/web:7" -> "web:7"."""
    return arn.rsplit("/", 1)[-1]


def _revision(arn: str) -> int:
    tail = arn.rsplit(":", 1)[-1]
    return int(tail) if (tail.isascii() and tail.isdigit()) else -1


def build(settings: EcsSettings, *, environ: Mapping[str, str], http: aiohttp.ClientSession) -> EcsDeployer:
    """The ECS deployer for `settings` (it needs no HTTP session; its boto3 client is built on first use)."""
    return EcsDeployer(settings, environ=environ)
