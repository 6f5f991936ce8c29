"""Sweep grids from `--grid` flags: `KEY=V1,V2,...`, `KEY=LO..HI:N` (N evenly spaced values) or
`KEY=LO..HI:N:log` (N values evenly spaced on a log scale). KEY is any dotted scenario key, as with `--set`.
Integer bounds give integer values (rounded, duplicates dropped)."""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

import yaml

from ..config import load_yaml
from ..errors import ScenarioError

_RANGE = re.compile(r"^\s*(?P<lo>.+?)\s*\.\.\s*(?P<hi>[^:]+?)\s*:\s*(?P<n>\d+)\s*(?::\s*(?P<scale>\w+))?\s*$")


@dataclass(frozen=True)
class Axis:
    key: str          # dotted scenario key
    values: tuple     # in the order given (ranges ascending)
    flag: str         # the `--grid KEY=...` it came from, for messages


def _scalar(text: str, flag: str, key: str):
    try:
        value = load_yaml(text) if text.strip() else None
    except yaml.YAMLError:
        raise ScenarioError(flag, key, f"value {text!r} is not valid YAML") from None
    if value is None or isinstance(value, (dict, list)):
        raise ScenarioError(flag, key, f"value {text!r} must be a number, string or boolean")
    return value


def parse_axis(spec: str) -> Axis:
    """Returns the Axis of one `--grid` flag value; raises ScenarioError naming the flag for bad syntax."""
    flag = f"--grid {spec.strip()}"
    key, sep, rest = spec.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")) or not rest.strip():
        raise ScenarioError(flag, key, "expected KEY=V1,V2,... or KEY=LO..HI:N[:log], e.g. "
                            "server.batching.max_batch_size=1,8,32")
    m = _RANGE.match(rest) if ".." in rest else None
    if m:
        lo, hi = _scalar(m["lo"], flag, key), _scalar(m["hi"], flag, key)
        n, scale = int(m["n"]), (m["scale"] or "linear")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi)):
            raise ScenarioError(flag, key, "a range needs numeric bounds, e.g. 1..64:7")
        if n < 1 or (n > 1 and hi <= lo) or (n == 1 and hi < lo):
            raise ScenarioError(flag, key, f"empty range {lo}..{hi}:{n}: give LO < HI and N >= 1")
        if scale not in ("linear", "log"):
            raise ScenarioError(flag, key, f"unknown scale {scale!r}; allowed: log (or nothing, for linear)")
        if scale == "log" and lo <= 0:
            raise ScenarioError(flag, key, "a log range needs LO > 0")
        values = _spaced(lo, hi, n, scale == "log")
    else:
        values = tuple(_scalar(v, flag, key) for v in rest.split(","))
        if len(set(map(repr, values))) != len(values):
            raise ScenarioError(flag, key, "a value is given twice")
    return Axis(key, values, flag)


def _spaced(lo, hi, n: int, log: bool) -> tuple:
    if n == 1:
        xs = [float(lo)]
    elif log:
        xs = [math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / (n - 1)) for i in range(n)]
    else:
        xs = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
    if isinstance(lo, int) and isinstance(hi, int):
        out: list = []
        for x in xs:
            v = int(round(x))
            if v not in out:
                out.append(v)
        return tuple(out)
    return tuple(float(f"{x:.12g}") for x in xs)  # 0.1..0.3:3 gives 0.2, not 0.20000000000000004


def expand(axes: list[Axis]) -> list[dict]:
    """Returns every combination of the axes' values as {key: value}, the last axis varying fastest."""
    keys = [a.key for a in axes]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ScenarioError(next(a.flag for a in axes if a.key == dup), dup, "this key has two --grid flags; give one")
    return [dict(zip(keys, combo)) for combo in itertools.product(*(a.values for a in axes))]
