"""Lazily imported kinds (integrations/kinds.py) validate exactly as pydantic's eager discriminated union of the same
models: same values, same errors (type, location, message) for an unknown kind, a missing one, a bad key, a value
that is not a mapping; and a kind's module is imported only when a value names it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import Field, TypeAdapter, ValidationError

from integrations.deploy.command import CommandDeployerSettings
from integrations.deploy.ecs import EcsSettings
from integrations.deploy.github_actions import GithubActionsSettings
from integrations.deploy.registry import DeployerSettings
from integrations.deploy.vercel import VercelSettings
from integrations.deploy.webhook import WebhookSettings

EAGER: TypeAdapter[Any] = TypeAdapter(
    Annotated[
        CommandDeployerSettings | GithubActionsSettings | EcsSettings | WebhookSettings | VercelSettings,
        Field(discriminator="kind"),
    ]
)
LAZY: TypeAdapter[Any] = TypeAdapter(DeployerSettings)

VALUES = [
    {"kind": "command", "argv": ["./deploy.sh", "{version}"], "timeout": "10m"},
    {"kind": "ecs", "cluster": "prod", "service": "web", "container": "web", "region": "eu-west-1"},
    {"kind": "heroku", "app": "web"},
    {"app": "web"},
    {"kind": "command", "argv": ["x"], "timout": "1m"},
    {"kind": "command", "argv": ["x"], "timeout": "ten minutes"},
    {"kind": "github_actions", "repo": "not a repo", "workflow": "deploy.yml"},
    {"kind": "vercel"},
    "command",
    12,
    None,
]


def _outcome(adapter: TypeAdapter[Any], value: object) -> object:
    try:
        return adapter.validate_python(value)
    except ValidationError as error:
        return [(e["type"], e["loc"], e["msg"]) for e in error.errors(include_url=False)]


@pytest.mark.parametrize("value", VALUES)
def test_lazy_kinds_validate_as_the_eager_union_does(value: object) -> None:
    assert _outcome(LAZY, value) == _outcome(EAGER, value)


def test_a_kind_is_imported_only_when_a_value_names_it(repo_root: Path) -> None:
    code = (
        "import sys\n"
        "from pydantic import TypeAdapter\n"
        "from integrations.deploy.registry import DeployerSettings\n"
        "adapter = TypeAdapter(DeployerSettings)\n"
        "before = 'integrations.deploy.ecs' in sys.modules\n"
        "adapter.validate_python({'kind': 'command', 'argv': ['x']})\n"
        "middle = 'integrations.deploy.ecs' in sys.modules\n"
        "adapter.validate_python({'kind': 'ecs', 'cluster': 'c', 'service': 's', 'container': 'c', 'region': 'r'})\n"
        "print(before, middle, 'integrations.deploy.ecs' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "True"]
