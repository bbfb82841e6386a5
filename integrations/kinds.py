"""Settings unions whose members are imported only when a configuration names them.

A registry declares its kinds as `tag -> "module:Class"` strings; `LazyKinds` is the pydantic annotation that
validates the discriminator (`kind:`) first and then imports and validates the chosen kind's own model. The errors
are pydantic's own for a discriminated union (an unknown tag, a missing one, a bad key under the chosen tag), so a
configuration reads the same whether or not its kinds were imported; what it saves is importing (and building the
models of) every vendor module at start-up whatever the configuration uses. `LazyModel` is the same for one optional
section (an alert source). Everything here is pure: no I/O besides the import of the module a string names.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Union

from pydantic import BaseModel, GetCoreSchemaHandler
from pydantic_core import core_schema

__all__ = ["LazyKinds", "LazyModel", "load"]


@functools.cache
def load(path: str) -> Any:
    """The object a `"package.module:Name"` string names, imported on first use."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _validator(path: str) -> Callable[[Any], Any]:
    """A plain validator that validates with the model `path` names; pydantic-core turns the ValidationError it
    raises into line errors under the caller's location, exactly as an inline model's errors would be."""

    def validate(value: Any) -> Any:
        model: type[BaseModel] = load(path)
        return model.model_validate(value)

    return validate


@dataclass(frozen=True)
class LazyKinds:
    """`Annotated[Any, LazyKinds("kind", {"command": "integrations.deploy.command:CommandDeployerSettings", …})]`:
    a discriminated union by `discriminator` whose members are imported when a value names their tag."""

    discriminator: str
    members: Mapping[str, str]

    def __hash__(self) -> int:
        return hash((self.discriminator, tuple(self.members.items())))

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        """A tagged union like pydantic's own for `Field(discriminator=...)`, with lazy members."""
        choices: dict[Any, core_schema.CoreSchema] = {
            tag: core_schema.no_info_plain_validator_function(_validator(path)) for tag, path in self.members.items()
        }
        return core_schema.tagged_union_schema(choices, discriminator=self.discriminator)

    def model(self, tag: str) -> type[BaseModel]:
        """The settings model of `tag` (imported now); KeyError for a tag that is not a member."""
        model: type[BaseModel] = load(self.members[tag])
        return model

    def declared(self) -> Any:
        """The union of every member model, as an eager registry would declare it (imports them all): for code
        that walks declared types, such as the configuration's error hints, which need it only to explain an error."""
        return Union[tuple(load(path) for path in self.members.values())]  # noqa: UP007 - built at run time


@dataclass(frozen=True)
class LazyModel:
    """`Annotated[Any, LazyModel("integrations.alerts.sns:SnsSettings")]`: one model, imported when a value is
    validated against it."""

    path: str

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        """A plain validator that imports the model on first use."""
        return core_schema.no_info_plain_validator_function(_validator(self.path))

    def declared(self) -> Any:
        """The model itself (imported now), for code that walks declared types."""
        return load(self.path)
