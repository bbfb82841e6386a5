"""Which deploy providers exist: the settings union the configuration validates `deployer:` against, and the
factory that builds the configured one. Adding a provider is one new module plus one line in `_PROVIDERS`.

A provider's module is imported only when a configuration names its `kind` (integrations/kinds.py): start-up
imports none of the providers a configuration does not use."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

import aiohttp

from integrations.kinds import LazyKinds, load

if TYPE_CHECKING:
    from integrations.deploy.base import Deployer
    from integrations.deploy.command import CommandDeployerSettings
    from integrations.deploy.ecs import EcsSettings
    from integrations.deploy.github_actions import GithubActionsSettings
    from integrations.deploy.vercel import VercelSettings
    from integrations.deploy.webhook import WebhookSettings

    AnyDeployerSettings = (
        CommandDeployerSettings | GithubActionsSettings | EcsSettings | WebhookSettings | VercelSettings
    )
else:
    AnyDeployerSettings = Any

_PROVIDERS: dict[str, tuple[str, str]] = {  # kind -> (module, settings model); each module has `build`
    "command": ("integrations.deploy.command", "CommandDeployerSettings"),
    "github_actions": ("integrations.deploy.github_actions", "GithubActionsSettings"),
    "ecs": ("integrations.deploy.ecs", "EcsSettings"),
    "webhook": ("integrations.deploy.webhook", "WebhookSettings"),
    "vercel": ("integrations.deploy.vercel", "VercelSettings"),
}

DeployerSettings = Annotated[
    AnyDeployerSettings,
    LazyKinds("kind", {kind: f"{module}:{model}" for kind, (module, model) in _PROVIDERS.items()}),
]
"""A `deployer:` section: one provider's settings, chosen by `kind`."""


def build_deployer(
    settings: AnyDeployerSettings,
    *,
    environ: Mapping[str, str],
    http: aiohttp.ClientSession,
) -> Deployer:
    """The `Deployer` for a validated `DeployerSettings` value."""
    kind = getattr(settings, "kind", None)
    provider = _PROVIDERS.get(kind) if isinstance(kind, str) else None
    if provider is None or type(settings).__name__ != provider[1]:
        raise TypeError(f"no deploy provider for {type(settings).__name__}")
    factory: Callable[..., Deployer] = load(f"{provider[0]}:build")
    return factory(settings, environ=environ, http=http)


def has_deployment_url(settings: Any) -> bool:
    """True when the provider reports each step's own deployment URL (a settings model's `has_deployment_url`), so
    a health gate may check it as `{deployment_url}`; providers whose link is a run page or console say nothing."""
    return bool(getattr(type(settings), "has_deployment_url", False))
