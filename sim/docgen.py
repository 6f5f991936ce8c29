"""Scenario reference generator: every scenario key with its type, default, allowed values and description,
read from the pydantic models that validate scenario files, rendered as Markdown.

    python -m sim.docgen              print the reference to stdout
    python -m sim.docgen --write      write docs/scenario-reference.md
    python -m sim.docgen --check      exit 1 when docs/scenario-reference.md differs from what is generated now
    python -m sim.docgen --missing    list the fields declared without a description (file, class, field)

The walk starts at `sim.scenario.Scenario` and follows every field whose type holds a model: plain nested
models (Workload, Server, StepNoise, GpuSpec, ...) get a section each, discriminated unions (the
arrival, batching and cost-model registries, the token distributions) a section with one table per member.
A model reached from several keys (the token distributions) is documented once.
"""
from __future__ import annotations

import argparse
import inspect
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from . import arrivals, batching, cost, sizes
from .fleet import routers
from .scenario import DEFAULT_REQUESTS, MAX_TOTAL_REQUESTS, Scenario

ROOT = Path(__file__).resolve().parent.parent
DOC_PATH = ROOT / "docs" / "scenario-reference.md"
WRITE_COMMAND = "python -m sim.docgen --write"
from .fleet import autoscaling  # noqa: E402

REGISTRIES = (arrivals.REGISTRY, batching.REGISTRY, cost.REGISTRY, routers.REGISTRY, autoscaling.REGISTRY)
TOKEN_DISTS = (sizes.FixedTokens, sizes.UniformTokens, sizes.LognormalTokens, sizes.EmpiricalTokens)
# what each discriminator selects, for union sections and tag rows
_WHAT = {**{reg.tag: reg.what for reg in REGISTRIES[:3]}, "dist": "token distribution"}


def _what(members: tuple, tag: Optional[str]) -> str:
    """Returns what a union's tag selects ("router", "batching policy"): routers and batching policies
    share the tag `policy`, so the registry holding the members decides."""
    for reg in REGISTRIES:
        if members and reg.tag == tag and members[0] in (reg.get(n) for n in reg.names()):
            return reg.what
    if tag == "dist" and members and members[0].__module__ == "sim.durations":
        return "duration distribution"
    return _WHAT.get(tag, "one of several models")
# cross-field rules the field declarations cannot show, keyed by the section's dotted path ("" = top level)
_NOTES = {
    "": (f"Run length: give `requests` or `duration_s`, not both. With neither, a scenario runs "
         f"{DEFAULT_REQUESTS} requests, and a trace replays whole. At most {MAX_TOTAL_REQUESTS} requests "
         "in all (`replications` included)."),
    "workload": ("Give `arrival` (open loop: requests come at their own rate) or `clients` (closed loop: each client "
                 "sends its next request when the last is answered or rejected), not both. A closed loop has no offered "
                 "rate: its summary reports `closed_loop` (the response-time law R = N/X - Z) and `load_definition`."),
    "cost_model": "A mapping with `profile` and no `kind` is short for `{kind: profile, profile: ...}`.",
}
_NONE = type(None)


@dataclass
class Section:
    """One model (tag None) or discriminated union of models (members sorted by registered name), and the
    dotted YAML keys where it appears ("" is the top level)."""

    members: tuple[type[BaseModel], ...]
    tag: Optional[str]
    paths: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        if self.paths == [""]:
            return "Top level"
        keys = ", ".join(f"`{p}`" for p in self.paths)
        return f"{keys}: {_what(self.members, self.tag)}" if self.tag else keys

    @property
    def anchor(self) -> str:
        """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
        text = self.title.lower()
        return "".join(ch for ch in text if ch.isalnum() or ch in " -_").replace(" ", "-")


def sections() -> list[Section]:
    """Returns every section reachable from Scenario, depth first in field order, each model once; registered
    classes and token distributions that Scenario does not reach are appended so none goes undocumented."""
    found: dict[tuple, Section] = {}
    order: list[Section] = []

    def visit(members: tuple, tag: Optional[str], path: str) -> None:
        sec = found.get((members, tag))
        if sec is not None:
            if path not in sec.paths:
                sec.paths.append(path)
            return
        sec = found[(members, tag)] = Section(members, tag, [path])
        order.append(sec)
        for cls in members:
            for name, info in cls.model_fields.items():
                for sub_members, sub_tag in _nested(info.annotation, info.discriminator):
                    visit(sub_members, sub_tag, _join(path, name))

    visit((Scenario,), None, "")
    seen = {cls for sec in order for cls in sec.members}
    for reg in REGISTRIES:
        missed = tuple(reg.get(n) for n in reg.names() if reg.get(n) not in seen)
        if missed:
            visit(missed, reg.tag, f"(unreachable {reg.what})")
    missed = tuple(c for c in TOKEN_DISTS if c not in seen)
    if missed:
        visit(missed, "dist", "(unreachable token distribution)")
    return order


def render() -> str:
    """Returns the Markdown reference (docs/scenario-reference.md)."""
    secs = sections()
    links = {(s.members, s.tag): s for s in secs}
    out = [
        "# Scenario reference",
        "",
        f"<!-- Generated by `{WRITE_COMMAND}` from the scenario models; do not edit by hand. -->",
        "",
        "Generated from the pydantic models that validate scenario YAML files (`sim/scenario.py`, `sim/arrivals/`, "
        f"`sim/batching/`, `sim/cost/`, `sim/sizes.py`) by `{WRITE_COMMAND}`; do not edit it by hand. To change "
        "a default, range or description, edit the field's `Field(...)` in the file named under its table and "
        "regenerate. `python -m sim.docgen --check` and `tests/test_docs.py` fail while this file is stale.",
        "",
        "Each table lists a dotted YAML key, its type, its default (*required* when the key must be given; "
        "`{}` means the mapping with every key at its default), the values allowed by the field's constraints, "
        "and the field's description. Cross-field rules (e.g. LLM policies need an LLM cost model and token "
        "sizes) are checked after these; `servesim check SCENARIO` applies them all.",
        "",
        "## Contents",
        "",
    ]
    out += [f"- [{_plain(s.title)}](#{s.anchor})" for s in secs]
    for sec in secs:
        out += ["", f"## {sec.title}", ""]
        note = _NOTES.get(sec.paths[0])
        if len(sec.paths) > 1:
            out += [f"The same keys apply under {', '.join(f'`{p}`' for p in sec.paths[1:])}.", ""]
        if sec.tag:
            names = ", ".join(f"`{_tag_value(c, sec.tag)}`" for c in sec.members)
            out += [f"`{_join(sec.paths[0], sec.tag)}` selects the {_what(sec.members, sec.tag)}: one of {names}.", ""]
        if note:
            out += [note, ""]
        for cls in sec.members:
            if sec.tag:
                out += [f"### `{sec.tag}: {_tag_value(cls, sec.tag)}`", ""]
            out += _class_table(cls, sec, links)
            if sec.tag and cls is not sec.members[-1]:
                out.append("")
    return "\n".join(out) + "\n"


def missing_descriptions() -> list[tuple[str, str, str]]:
    """Returns (file, class, field) for each documented field declared without a description (tags excluded:
    the generator describes those), in document order, each declaration once."""
    out: list[tuple[str, str, str]] = []
    for sec in sections():
        for cls in sec.members:
            for name, info in cls.model_fields.items():
                if name == sec.tag or info.description:
                    continue
                owner = _declaring_class(cls, name)
                row = (_source_file(owner), owner.__name__, name)
                if row not in out:
                    out.append(row)
    return out


# ---- one table ----

def _class_table(cls: type[BaseModel], sec: Section, links: dict) -> list[str]:
    lines = []
    doc = _class_doc(cls)
    if doc:
        lines += [doc, ""]
    lines += [f"Declared in `{_source_file(cls)}` (`{cls.__name__}`).", ""]
    lines += ["| Key | Type | Default | Allowed | Description |", "|---|---|---|---|---|"]
    names = list(cls.model_fields)
    if sec.tag in names:
        names.remove(sec.tag)
        names.insert(0, sec.tag)
    for name in names:
        info = cls.model_fields[name]
        yaml_key = info.validation_alias if isinstance(info.validation_alias, str) else name  # the key users write
        key = f"`{_join(sec.paths[0], yaml_key)}`"
        if name == sec.tag:
            value = _tag_value(cls, name)
            row = [key, "str", "*required*", f"`{value}`", f"selects this {_what(sec.members, name)}"]
        else:
            row = [key, _type_cell(info, links), _default(info), _allowed(info), info.description or ""]
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return lines


def _type_cell(info: FieldInfo, links: dict) -> str:
    text = _type_text(info.annotation, info.discriminator)
    nested = _nested(info.annotation, info.discriminator)
    if nested:
        refs = []
        for members, tag in nested:
            sec = links[(members, tag)]
            refs.append(f"[{_plain(sec.title)}](#{sec.anchor})")
        text += f" (see {', '.join(refs)})"
    return text


def _type_text(ann: Any, disc: Optional[str] = None) -> str:
    origin, args = get_origin(ann), get_args(ann)
    if ann is _NONE:
        return "null"
    if origin is Annotated:
        return _type_text(args[0], _discriminator(args[1:]) or disc)
    if origin is Union or origin is types.UnionType:
        rest = [a for a in args if a is not _NONE]
        if disc and all(_is_model(a) for a in rest):
            return f"mapping with `{disc}`"
        parts = []
        for a in rest:
            t = _type_text(a)
            if t not in parts:
                parts.append(t)
        return " or ".join(parts)  # a None member shows as the default `null`
    if origin is Literal:
        return " or ".join(sorted({"bool" if isinstance(a, bool) else type(a).__name__ for a in args}))
    if origin in (list, tuple, set, frozenset):
        return f"list of {_type_text(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping {_type_text(args[0])} → {_type_text(args[1])}" if args else "mapping"
    if _is_model(ann):
        return "mapping"
    return getattr(ann, "__name__", str(ann))


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "*required*"
    value = info.default_factory() if info.default_factory is not None else info.default
    if isinstance(value, BaseModel):
        return f"`{_flow(_compact(value))}`"
    return f"`{_flow(value)}`"


def _allowed(info: FieldInfo) -> str:
    lo = hi = None  # (value, strict)
    short = long = None
    parts = []
    for m in info.metadata:
        if isinstance(m, at.Ge):
            lo = (m.ge, False)
        elif isinstance(m, at.Gt):
            lo = (m.gt, True)
        elif isinstance(m, at.Le):
            hi = (m.le, False)
        elif isinstance(m, at.Lt):
            hi = (m.lt, True)
        elif isinstance(m, at.MinLen):
            short = m.min_length
        elif isinstance(m, at.MaxLen):
            long = m.max_length
        elif isinstance(m, at.MultipleOf):
            parts.append(f"multiple of {_num(m.multiple_of)}")
    if lo and hi:
        parts.insert(0, f"{_num(lo[0])} {'<' if lo[1] else '≤'} x {'<' if hi[1] else '≤'} {_num(hi[0])}")
    elif lo:
        parts.insert(0, f"{'>' if lo[1] else '≥'} {_num(lo[0])}")
    elif hi:
        parts.insert(0, f"{'<' if hi[1] else '≤'} {_num(hi[0])}")
    if short is not None and long is not None:
        parts.append(f"{short} ≤ length ≤ {long}")
    elif short is not None or long is not None:
        parts.append(f"length ≥ {short}" if long is None else f"length ≤ {long}")
    literals = _literals(info.annotation) or _registered(info)
    if literals:
        parts.append("one of " + ", ".join(f"`{_flow(v)}`" for v in literals))
    for members, tag in _nested(info.annotation, info.discriminator):
        if tag:
            parts.append(f"`{tag}`: " + ", ".join(f"`{_tag_value(c, tag)}`" for c in members))
    return "; ".join(parts)


def _registered(info) -> list:
    """The registered names a string field takes (`json_schema_extra={"choices_from": "module:function"}`, for
    a registry that plugins extend, such as the LLM step schedulers)."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if "choices_from" not in extra:
        return []
    module, func = str(extra["choices_from"]).split(":")
    from importlib import import_module

    return list(getattr(import_module(module), func)())


# ---- annotations ----

def _nested(ann: Any, disc: Optional[str] = None) -> list[tuple[tuple, Optional[str]]]:
    """Returns the models a field's type holds: ((cls,), None) for a plain model, (members, tag) for a
    discriminated union of models."""
    origin, args = get_origin(ann), get_args(ann)
    if origin is Annotated:
        return _nested(args[0], _discriminator(args[1:]) or disc)
    if origin is Union or origin is types.UnionType:
        rest = [a for a in args if a is not _NONE]
        if disc and rest and all(_is_model(a) for a in rest):
            return [(tuple(sorted(rest, key=lambda c: _tag_value(c, disc))), disc)]
        return [n for a in rest for n in _nested(a)]
    if origin in (list, tuple, set, frozenset, dict):
        return [n for a in args for n in _nested(a)]
    if _is_model(ann):
        return [((ann,), None)]
    return []


def _literals(ann: Any) -> list:
    origin, args = get_origin(ann), get_args(ann)
    if origin is Literal:
        return list(args)
    if origin is Annotated:
        return _literals(args[0])
    if origin is Union or origin is types.UnionType:
        return [v for a in args for v in _literals(a)]
    return []


def _discriminator(meta) -> Optional[str]:
    return next((m.discriminator for m in meta if isinstance(m, FieldInfo) and isinstance(m.discriminator, str)), None)


def _is_model(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, BaseModel)


def _tag_value(cls: type[BaseModel], tag: str) -> str:
    return cls.model_fields[tag].default


# ---- classes and sources ----

def _declaring_class(cls: type[BaseModel], name: str) -> type:
    for base in cls.__mro__:
        if name in base.__dict__.get("__annotations__", {}):
            return base
    return cls


def _source_file(cls: type) -> str:
    path = Path(inspect.getsourcefile(cls)).resolve()
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return path.name


def _class_doc(cls: type) -> str:
    """The first paragraph of the class docstring; for a registered class without one, of its module's
    docstring (each registered piece lives in a module of its own)."""
    doc = cls.__dict__.get("__doc__")
    if not doc and any(cls in (reg.get(n) for n in reg.names()) for reg in REGISTRIES):
        doc = sys.modules[cls.__module__].__doc__
    if not doc:
        return ""
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


# ---- text ----

def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _compact(model: BaseModel) -> dict:
    """A model instance as the smallest mapping that gives it: its tag plus the keys that differ from defaults."""
    tags = {t: getattr(model, t) for t in _WHAT if t in type(model).model_fields}
    return {**tags, **model.model_dump(mode="json", exclude_defaults=True)}


def _flow(value: Any) -> str:
    """A value in YAML flow style."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _num(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flow(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return str(value)


def _num(v: float) -> str:
    if isinstance(v, int):
        return str(v)
    text = format(v, "g")
    if float(text) != v:
        text = repr(v)
    if "e" in text:
        mantissa, exp = text.split("e")
        text = f"{mantissa}e{int(exp)}"
    return text


def _plain(text: str) -> str:
    return text.replace("`", "")


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# ---- command line ----

def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.docgen", description="Generate the scenario reference (Markdown).")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help=f"write {DOC_PATH.relative_to(ROOT).as_posix()}")
    mode.add_argument("--check", action="store_true",
                      help=f"exit 1 when {DOC_PATH.relative_to(ROOT).as_posix()} differs from the generated text")
    mode.add_argument("--missing", action="store_true", help="list fields declared without a description")
    p.add_argument("--path", type=Path, default=DOC_PATH, help="the reference file for --write and --check")
    args = p.parse_args(argv)
    if args.missing:
        for file, cls, name in missing_descriptions():
            print(f"{file}: {cls}.{name}")
        return 0
    text = render()
    if args.check:
        current = args.path.read_text(encoding="utf-8") if args.path.is_file() else None
        if current != text:
            print(f"{args.path}: {'missing' if current is None else 'stale'}; regenerate it with `{WRITE_COMMAND}`",
                  file=sys.stderr)
            return 1
        print(f"{args.path}: up to date")
        return 0
    if args.write:
        args.path.parent.mkdir(parents=True, exist_ok=True)
        args.path.write_text(text, encoding="utf-8")
        print(f"wrote {args.path}")
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
