"""Deploy providers behind one Protocol (`Deployer`): a local command, a GitHub Actions workflow, AWS ECS and a
deploy webhook. `build_deployer` turns a validated `deployer:` section (`DeployerSettings`) into one."""

from integrations.deploy.base import (
    Deployer,
    DeployError,
    DeployStep,
    Emit,
    StepResult,
    render_template,
)
from integrations.deploy.registry import DeployerSettings, build_deployer

__all__ = [
    "DeployError",
    "DeployStep",
    "Deployer",
    "DeployerSettings",
    "Emit",
    "StepResult",
    "build_deployer",
    "render_template",
]
