"""Name -> config class registries for pluggable pieces (arrival processes, batching policies, cost models).

Each piece is a frozen pydantic model whose tag field (`process`, `policy`, `kind`) is a Literal with
its registered name, so the YAML names it and the Python API takes the object itself.
"""
from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field


class Registry:
    def __init__(self, what: str, tag: str):
        self.what = what
        self.tag = tag
        self._classes: dict[str, type] = {}

    def register(self, cls: type) -> type:
        """Class decorator: registers `cls` under the default of its tag field."""
        name = cls.model_fields[self.tag].default
        if not isinstance(name, str) or not name:
            raise TypeError(f"{cls.__name__}.{self.tag} needs a string default to be registered")
        if name in self._classes:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._classes[name] = cls
        return cls

    def names(self) -> list[str]:
        return sorted(self._classes)

    def get(self, name: str) -> type:
        return self._classes[name]

    def union(self):
        """A pydantic type accepting any registered class, chosen by the tag field."""
        classes = tuple(self._classes.values())
        if len(classes) == 1:
            return classes[0]
        return Annotated[Union[classes], Field(discriminator=self.tag)]  # type: ignore[valid-type]
