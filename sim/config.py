"""Shared base for every config model (frozen, strict types, unknown keys and inf/nan rejected) and the
YAML loader every input file goes through."""
from __future__ import annotations

import re

import yaml
from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class YamlLoader(yaml.SafeLoader):
    """SafeLoader that reads YAML 1.2 floats too (`1e3` and `2.5e-4` are numbers, not strings) and
    refuses a key given twice in one mapping (plain YAML silently keeps the last one)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: its keys may be overridden here
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: let the base class report it
                continue
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (first on line {first.start_mark.line + 1}); "
                    "give each key once", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+][0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def load_yaml(text: str):
    """Parses YAML text with YamlLoader; raises yaml.YAMLError."""
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506 - YamlLoader is a SafeLoader


def read_yaml_mapping(path, what: str) -> dict:
    """Returns the top-level mapping of the YAML file at `path` (an empty file gives {}); raises
    ScenarioError naming the file for a missing file, bad encoding, invalid YAML (with line and column)
    or a top level that is not a mapping. `what` names the kind of file in messages ("scenario")."""
    from pathlib import Path

    from .errors import ScenarioError

    src, p = str(path), Path(path)
    if not p.is_file():
        raise ScenarioError(src, "", f"{what} file not found")
    try:
        raw = load_yaml(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ScenarioError(src, "", "not a UTF-8 text file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ScenarioError(src, "", f"invalid YAML: {where}{problem}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ScenarioError(src, "", f"the top level of a {what} must be a mapping of keys, got a {type(raw).__name__}")
    return raw
