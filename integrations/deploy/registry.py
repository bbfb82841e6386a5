"""Which deploy providers exist: the settings union the configuration validates `deployer:` against, and the
factory that builds the configured one. Adding a provider is one new module plus one line in `_BUILDERS` and one
member of `DeployerSettings`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

import aiohttp
from pydantic import Field

from integrations.deploy import command, ecs, github_actions, vercel, webhook
from integrations.deploy.base import Deployer
from integrations.deploy.command import CommandDeployerSettings
from integrations.deploy.ecs import EcsSettings
from integrations.deploy.github_actions import GithubActionsSettings
from integrations.deploy.vercel import VercelSettings
from integrations.deploy.webhook import WebhookSettings

DeployerSettings = Annotated[
    CommandDeployerSettings | GithubActionsSettings | EcsSettings | WebhookSettings | VercelSettings,
    Field(discriminator="kind"),
]
"""A `deployer:` section: one provider's settings, chosen by `kind`."""

_BUILDERS: dict[type[Any], Callable[..., Deployer]] = {
    CommandDeployerSettings: command.build,
    GithubActionsSettings: github_actions.build,
    EcsSettings: ecs.build,
    WebhookSettings: webhook.build,
    VercelSettings: vercel.build,
}


def build_deployer(
    settings: CommandDeployerSettings | GithubActionsSettings | EcsSettings | WebhookSettings | VercelSettings,
    *,
    environ: Mapping[str, str],
    http: aiohttp.ClientSession,
) -> Deployer:
    """The `Deployer` for a validated `DeployerSettings` value."""
    try:
        factory = _BUILDERS[type(settings)]
    except KeyError:
        raise TypeError(f"no deploy provider for {type(settings).__name__}") from None
    return factory(settings, environ=environ, http=http)


def has_deployment_url(settings: Any) -> bool:
    """True when the provider reports each step's own deployment URL (a settings model's `has_deployment_url`), so
    a health gate may check it as `{deployment_url}`; providers whose link is a run page or console say nothing."""
    return bool(getattr(type(settings), "has_deployment_url", False))
