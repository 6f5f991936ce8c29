"""Pydantic's validation errors rewritten for people: the dotted key path users write (union tags dropped), the
allowed keys of an unknown one, the registered names of an unknown piece, the value that was wrong."""
from __future__ import annotations

from typing import Annotated, Any, Optional, Union, get_args, get_origin

from pydantic import BaseModel

from . import arrivals, batching, cost, durations
from .errors import shown
from .fleet import routers

_TAGS = ("process", "policy", "kind", "dist")


def _describe(err: dict, raw: Any, source: str) -> tuple[str, str]:
    loc = _clean_loc(err["loc"], raw)
    path = ".".join(str(p) for p in loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1], raw)
        allowed = ", ".join(_key_names(n, f) for n, f in parent.model_fields.items() if n not in _TAGS) if parent else ""
        tag = next((t for t in _TAGS if parent and t in parent.model_fields), None)
        extra = f" (for {tag} '{parent.model_fields[tag].default}')" if tag else ""
        return path, f"unknown key '{loc[-1]}'; allowed keys{extra}: {allowed or '(none)'}"
    if kind == "missing":
        return path, "required key is missing"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = err.get("ctx", {}).get("discriminator", "").strip("'")
        reg = {"process": arrivals.REGISTRY, "policy": batching.REGISTRY, "kind": cost.REGISTRY}.get(tag)
        if tag == "policy" and loc and loc[-1] == "router":
            reg = routers.REGISTRY
        if tag == "policy" and loc and loc[-1] == "autoscaler":
            from .fleet.autoscaling import REGISTRY as autoscaling

            reg = autoscaling
        names = ", ".join(reg.names()) if reg else "fixed, uniform, lognormal, empirical"
        what = reg.what if reg else "token distribution"
        if tag == "dist" and loc and str(loc[-1]).endswith("_ms"):  # think_time_ms, time_ms: sim.durations
            names, what = ", ".join(durations.NAMES), "duration distribution"
        path = f"{path}.{tag}" if path else tag
        if kind == "union_tag_not_found":
            return path, f"required key is missing; allowed: {names}"
        return path, f"unknown {what} {err['input'].get(tag)!r}; allowed: {names}"
    if kind == "model_type" or kind == "dict_type":
        return path, f"expected a mapping of keys, got {shown(err['input'])}"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    else:
        msg = msg[0].lower() + msg[1:]
    if isinstance(err.get("input"), dict):  # a check across a section's keys: the message names them
        return path, msg
    return path, f"got {shown(err.get('input'))}: {msg}"


def _key_names(name: str, field) -> str:
    """Returns a field's YAML key with the other spellings it accepts: 'low (or min)'."""
    alias = field.validation_alias
    if isinstance(alias, str):
        return alias  # the key users write (trace's rate_rps; its field is target_rate_rps)
    others = [a for a in getattr(alias, "choices", ()) if isinstance(a, str) and a != name]
    return f"{name} (or {', '.join(others)})" if others else name


def _clean_loc(loc: tuple, raw: Any) -> list:
    """Drops the union tags pydantic puts in error locations (workload.arrival.poisson.rate_rps)."""
    out, node, skipped = [], raw, None
    for part in loc:
        # pydantic puts the tag right after the union's key, even where a key of the same name exists (the
        # autoscaler policy `schedule` and its `schedule` key)
        if isinstance(node, dict) and skipped is not node and any(node.get(t) == part for t in _TAGS):
            skipped = node
            continue
        out.append(part)
        node = node.get(part) if isinstance(node, dict) else (node[part] if isinstance(node, list) and isinstance(part, int) and part < len(node) else None)
    return out


def _model_at(loc: list, raw: Any) -> Optional[type[BaseModel]]:
    from .scenario import Scenario  # the top of the schema (imported late: sim.scenario imports this module)

    cls: Any = Scenario
    node = raw
    for part in loc:
        if isinstance(part, int) and get_origin(cls) is list:  # an item of a list (server.groups.0, classes.1)
            node = node[part] if isinstance(node, list) and part < len(node) else None
            cls = _pick(get_args(cls)[0], node)
            continue
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or part not in cls.model_fields:
            return None
        node = node.get(part) if isinstance(node, dict) else None
        cls = _pick(cls.model_fields[part].annotation, node)
    return _pick(cls, node) if cls is not None else None


def _pick(ann: Any, node: Any) -> Any:
    """Resolves Optional / discriminated unions to the model class that `node` selects."""
    origin = get_origin(ann)
    if origin is Annotated:
        return _pick(get_args(ann)[0], node)
    if origin is Union or str(origin) == "types.UnionType":
        members = [a for a in get_args(ann) if a is not type(None)]
        for m in members:
            m = _pick(m, node)
            if get_origin(m) is list:  # Optional[list[Model]]: _model_at steps into the item
                return m
            if isinstance(m, type) and issubclass(m, BaseModel):
                tag = next((t for t in _TAGS if t in m.model_fields), None)
                if tag is None or (isinstance(node, dict) and node.get(tag) == m.model_fields[tag].default):
                    return m
        return None
    return ann
