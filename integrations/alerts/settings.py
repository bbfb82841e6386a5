"""Configuration helpers for the sources' settings: `EnvVarName` (a setting that names the environment variable
holding a secret, never the secret itself), `read_secret` to read it when a source is built, `PositiveDuration`,
and the `SourceConfigError` a source that cannot be built raises.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator

from integrations.types import Duration, describe_value

__all__ = ["EnvVarName", "PositiveDuration", "SourceConfigError", "read_secret"]


class SourceConfigError(Exception):
    """A source cannot be built (a missing environment variable, an unreadable file); names the variable or file,
    never a secret's value."""


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _check_env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(f"{describe_value(value)} is not an environment variable name")
    return value


EnvVarName = Annotated[str, AfterValidator(_check_env_name)]
"""The name of an environment variable that holds a secret (the secret itself never goes in the config file)."""


def read_secret(environ: Mapping[str, str], variable: str, what: str, *, strip: bool = False) -> str:
    """The non-empty value of `variable` (without surrounding whitespace when `strip`, as tokens read from files
    have a trailing newline); SourceConfigError naming the variable (never a value) otherwise."""
    value = environ.get(variable)
    if value is not None and strip:
        value = value.strip()
    if not value:
        raise SourceConfigError(f"environment variable {variable} ({what}) is not set")
    return value


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
"""A duration setting that must be longer than zero (a tolerance, a timeout, a maximum age)."""
