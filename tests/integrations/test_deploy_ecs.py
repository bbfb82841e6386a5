"""The ECS deployer against moto's server on a free port: a new revision with the version's image tag, the service
pointed at it and waited for, canary steps after the first, rollbacks (remembered, and found again after a
restart), resume by task definition ARN, a rollout that never finishes, and configuration errors."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from integrations.deploy.base import DeployError, DeployStep
from integrations.deploy.ecs import EcsSettings, build, image_repository

REGION = "eu-west-1"


def make_step(**overrides: object) -> DeployStep:
    values: dict[str, object] = {
        "deploy_id": "d-7",
        "service": "web",
        "environment": "production",
        "version": "v2",
        "previous_version": "v1",
        "weight": None,
        "rollback": False,
        "requested_by": "U0ALICE",
    }
    values.update(overrides)
    return DeployStep(**values)


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{server._server.server_port}"
    finally:
        server.stop()


@pytest.fixture
def environ(moto_url: str) -> dict[str, str]:
    """What the deployer sees as its environment: dummy credentials and the endpoint, nothing global."""
    request = urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request) as answer:  # every test starts from an empty AWS
        answer.read()
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ENDPOINT_URL_TEST": moto_url}


@pytest.fixture
def ecs(environ: dict[str, str]) -> Iterator[Any]:
    client = boto3.client(
        "ecs",
        region_name=REGION,
        endpoint_url=environ["AWS_ENDPOINT_URL_TEST"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    yield client
    client.close()


def create_service(
    ecs: Any, monkeypatch: pytest.MonkeyPatch, *, running: bool = True, image: str = "repo/web:v1"
) -> str:
    """Cluster prod, task definition web:1 running `image`, service web with two tasks; returns web:1's ARN."""
    # moto reports a service's tasks as running (its rollout COMPLETED) per this variable, read at creation.
    monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", "2" if running else "0")
    ecs.create_cluster(clusterName="prod")
    arn = ecs.register_task_definition(
        family="web",
        containerDefinitions=[
            {
                "name": "web",
                "image": image,
                "memory": 256,
                "essential": True,
                "environment": [{"name": "MODE", "value": "prod"}],
                "portMappings": [{"containerPort": 8080}],
            },
            {"name": "sidecar", "image": "envoy:1.30", "memory": 64},
        ],
        tags=[{"key": "team", "value": "platform"}],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster="prod", serviceName="web", taskDefinition=arn, desiredCount=2)
    return str(arn)


def settings(**overrides: object) -> EcsSettings:
    values: dict[str, object] = {
        "kind": "ecs",
        "cluster": "prod",
        "service": "web",
        "container": "web",
        "region": REGION,
        "endpoint_url_env": "AWS_ENDPOINT_URL_TEST",
        "poll_interval": "100ms",
        "timeout": "10s",
    }
    values.update(overrides)
    return EcsSettings.model_validate(values)


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    async def __call__(self, text: str) -> None:
        self.lines.append(text)


@pytest.fixture
async def deployer(environ: dict[str, str]) -> AsyncIterator[Any]:
    d = build(settings(), environ=environ, http=None)
    yield d
    await d.aclose()


def service_task_definition(ecs: Any) -> str:
    return str(ecs.describe_services(cluster="prod", services=["web"])["services"][0]["taskDefinition"])


def container(ecs: Any, arn: str, name: str = "web") -> dict[str, Any]:
    definition = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
    return next(c for c in definition["containerDefinitions"] if c["name"] == name)


async def test_deploy_registers_a_revision_with_the_new_tag_and_points_the_service_at_it(
    ecs: Any, deployer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1 = create_service(ecs, monkeypatch)
    emit = Lines()
    result = await deployer.apply(make_step(), emit)

    assert result.ok, result
    assert result.external_id is not None and result.external_id.endswith(":task-definition/web:2")
    assert service_task_definition(ecs) == result.external_id
    web = container(ecs, result.external_id)
    assert web["image"] == "repo/web:v2"
    assert web["environment"] == [{"name": "MODE", "value": "prod"}] and web["memory"] == 256
    assert container(ecs, result.external_id, "sidecar")["image"] == "envoy:1.30"  # other containers untouched
    assert ecs.describe_task_definition(taskDefinition=result.external_id, include=["TAGS"])["tags"] == [
        {"key": "team", "value": "platform"}
    ]
    assert container(ecs, v1)["image"] == "repo/web:v1"
    assert any("registered web:2 with image repo/web:v2" in line for line in emit.lines)
    assert "2/2 tasks running" in result.summary
    assert result.url is None  # not AWS, so no console link


async def test_canary_steps_after_the_first_find_the_service_already_there(
    ecs: Any, deployer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_service(ecs, monkeypatch)
    first_emit = Lines()
    first = await deployer.apply(make_step(weight=10), first_emit)
    second = await deployer.apply(make_step(weight=50), Lines())
    assert first.ok and second.ok
    assert first.external_id == second.external_id
    assert any("no traffic weights" in line for line in first_emit.lines)
    assert len(ecs.list_task_definitions(familyPrefix="web")["taskDefinitionArns"]) == 2


async def test_rollback_redeploys_the_task_definition_the_deploy_replaced(
    ecs: Any, deployer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1 = create_service(ecs, monkeypatch)
    assert (await deployer.apply(make_step(), Lines())).ok
    emit = Lines()
    result = await deployer.apply(make_step(version="v1", previous_version="v2", rollback=True), emit)
    assert result.ok, result
    assert result.external_id == v1
    assert service_task_definition(ecs) == v1
    assert any("which this deploy replaced" in line for line in emit.lines)
    assert len(ecs.list_task_definitions(familyPrefix="web")["taskDefinitionArns"]) == 2


async def test_after_a_restart_rollback_finds_the_revision_running_the_old_version(
    ecs: Any, environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    v1 = create_service(ecs, monkeypatch)
    before = build(settings(), environ=environ, http=None)
    assert (await before.apply(make_step(), Lines())).ok
    await before.aclose()

    after = build(settings(), environ=environ, http=None)
    result = await after.apply(make_step(version="v1", previous_version="v2", rollback=True), Lines())
    await after.aclose()
    assert result.ok and result.external_id == v1 and service_task_definition(ecs) == v1

    # A version no revision runs any more gets a new revision.
    again = build(settings(), environ=environ, http=None)
    result = await again.apply(make_step(deploy_id="d-8", version="v0", previous_version="v1", rollback=True), Lines())
    await again.aclose()
    assert result.ok and result.external_id is not None and result.external_id.endswith("web:3")
    assert container(ecs, result.external_id)["image"] == "repo/web:v0"


async def test_the_image_setting_overrides_the_repository(
    ecs: Any, environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    create_service(ecs, monkeypatch)
    d = build(settings(image="123456789012.dkr.ecr.eu-west-1.amazonaws.com/web"), environ=environ, http=None)
    result = await d.apply(make_step(version="2024.06.01-abc"), Lines())
    await d.aclose()
    assert result.ok and result.external_id
    assert (
        container(ecs, result.external_id)["image"] == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/web:2024.06.01-abc"
    )


async def test_resume_waits_for_a_task_definition(ecs: Any, deployer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    create_service(ecs, monkeypatch)
    started = await deployer.apply(make_step(), Lines())
    assert started.external_id
    resumed = await deployer.resume(make_step(), started.external_id, Lines())
    assert resumed is not None and resumed.ok and resumed.external_id == started.external_id
    other = await deployer.resume(make_step(), started.external_id.replace("web:2", "web:1"), Lines())
    assert other is not None and not other.ok and "moved on" in other.summary
    bogus = await deployer.resume(make_step(), "deploy-123", Lines())
    assert bogus is not None and not bogus.ok


async def test_a_rollout_that_never_completes_times_out(
    ecs: Any, environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    create_service(ecs, monkeypatch, running=False)
    d = build(settings(timeout="1s"), environ=environ, http=None)
    emit = Lines()
    result = await d.apply(make_step(), emit)
    await d.aclose()
    assert not result.ok
    assert result.summary.startswith("timed out after 1s waiting for ECS")
    assert result.external_id is not None and result.external_id.endswith("web:2")
    assert any("0/2 tasks running" in line for line in emit.lines)


async def test_a_version_that_is_not_an_image_tag_is_refused(
    ecs: Any, deployer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1 = create_service(ecs, monkeypatch)
    result = await deployer.apply(make_step(version="; rm -rf /"), Lines())
    assert not result.ok and "not a valid image tag" in result.summary
    assert service_task_definition(ecs) == v1


async def test_configuration_problems_are_deploy_errors(
    ecs: Any, environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    create_service(ecs, monkeypatch)
    for wrong, message in (
        (settings(service="nope"), "service nope not found"),
        (settings(cluster="nope"), "nope"),
        (settings(container="app"), "no container app (it has: web, sidecar)"),
    ):
        d = build(wrong, environ=environ, http=None)
        with pytest.raises(DeployError, match=message.replace("(", r"\(").replace(")", r"\)")):
            await d.apply(make_step(), Lines())
        await d.aclose()
    no_region = build(settings(region=None), environ={k: v for k, v in environ.items()}, http=None)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    with pytest.raises(DeployError, match="no AWS region"):
        await no_region.apply(make_step(), Lines())


def test_image_repository() -> None:
    assert image_repository("repo/web:v1") == "repo/web"
    assert image_repository("localhost:5000/web:v1") == "localhost:5000/web"
    assert image_repository("localhost:5000/web") == "localhost:5000/web"
    assert image_repository("web@sha256:" + "a" * 64) == "web"
    assert image_repository("web") == "web"


def test_settings_round_trip_from_yaml_shape() -> None:
    s = EcsSettings.model_validate(
        json.loads(
            '{"kind": "ecs", "cluster": "prod", "service": "web", "container": "web", "region": "eu-west-1",'
            ' "endpoint_url_env": "AWS_ENDPOINT_URL"}'
        )
    )
    assert s.timeout.total_seconds() == 900 and s.image is None
    with pytest.raises(ValueError, match="without a tag"):
        EcsSettings(kind="ecs", cluster="c", service="s", container="c", image="repo/web:v1")
