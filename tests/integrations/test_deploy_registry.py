"""The provider registry: each `deployer:` shape from the configuration validates to its provider's settings by
`kind`, builds a `Deployer`, and an unknown kind or a misspelt key is a validation error."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from pydantic import TypeAdapter, ValidationError

from integrations.deploy import Deployer, DeployerSettings, build_deployer
from integrations.deploy.command import CommandDeployer
from integrations.deploy.ecs import EcsDeployer
from integrations.deploy.github_actions import GithubActionsDeployer
from integrations.deploy.webhook import WebhookDeployer

ADAPTER: TypeAdapter[DeployerSettings] = TypeAdapter(DeployerSettings)

SECTIONS = [
    (
        {
            "kind": "command",
            "argv": ["./scripts/deploy.sh", "{service}", "{version}", "{environment}", "{weight}"],
            "timeout": "10m",
        },
        CommandDeployer,
    ),
    (
        {
            "kind": "github_actions",
            "repo": "acme/web",
            "workflow": "deploy.yml",
            "ref": "main",
            "inputs": {"version": "{version}", "env": "{environment}"},
            "token_env": "GITHUB_TOKEN",
            "api_url": "https://api.github.com",
        },
        GithubActionsDeployer,
    ),
    (
        {
            "kind": "ecs",
            "cluster": "prod",
            "service": "web",
            "container": "web",
            "region": "eu-west-1",
            "endpoint_url_env": "AWS_ENDPOINT_URL",
        },
        EcsDeployer,
    ),
    (
        {
            "kind": "webhook",
            "url_env": "RENDER_DEPLOY_HOOK",
            "status_url": "https://api.example.com/deploys/{deploy_id}",
        },
        WebhookDeployer,
    ),
]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.mark.parametrize(("section", "kind"), SECTIONS)
async def test_each_section_builds_its_deployer(
    section: dict[str, object], kind: type, http: aiohttp.ClientSession
) -> None:
    settings = ADAPTER.validate_python(section)
    deployer = build_deployer(settings, environ={}, http=http)
    assert type(deployer) is kind
    assert isinstance(deployer, Deployer)
    await deployer.aclose()


def test_unknown_kinds_and_keys_are_errors() -> None:
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        ADAPTER.validate_python({"kind": "heroku", "app": "web"})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ADAPTER.validate_python({"kind": "command", "argv": ["x"], "timout": "1m"})
    with pytest.raises(ValidationError, match="must be a duration"):
        ADAPTER.validate_python({"kind": "command", "argv": ["x"], "timeout": "ten minutes"})
