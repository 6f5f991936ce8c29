"""Property tests: whatever a user writes, the CLI answers 0 or a clean exit 2, never a traceback."""
import copy
import io
from contextlib import redirect_stderr, redirect_stdout

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.cli import main

from .conftest import BASE

junk = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                 st.sampled_from([0, 1, 1e-300, 1e300, float("inf"), "1e3", ".inf"]),
                 st.text(max_size=8), st.lists(st.integers(-3, 3), max_size=3),
                 st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


def _paths(d, prefix=()):
    for k, v in d.items():
        yield prefix + (k,)
        if isinstance(v, dict):
            yield from _paths(v, prefix + (k,))


PATHS = list(_paths(BASE))


@st.composite
def mutated(draw):
    d = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        node = d
        for k in path[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                break
        else:
            op = draw(st.sampled_from(["replace", "delete", "add"]))
            if op == "replace":
                node[path[-1]] = draw(junk)
            elif op == "delete":
                node.pop(path[-1], None)
            else:
                node[draw(st.text(min_size=1, max_size=6))] = draw(junk)
    return d


def _check(tmp_path, text, argv_extra=()):
    p = tmp_path / "fuzz.yaml"
    p.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["check", str(p), *argv_extra])
    assert code in (0, 2), (code, err.getvalue())
    if code == 2:
        msg = err.getvalue()
        assert "Traceback" not in msg
        assert str(p) in msg or "--set" in msg or "usage" in msg or "error:" in msg
        assert msg.strip()
    return code


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutated())
def test_mutated_scenarios_give_clean_errors(tmp_path, raw):
    _check(tmp_path, yaml.safe_dump(raw))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200))
def test_arbitrary_text_gives_clean_errors(tmp_path, text):
    _check(tmp_path, text)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=40), st.sampled_from(["-x", "--", "=", "a..b=1", ".=1", "seed=-1", "name.x=1"])))
def test_arbitrary_overrides_give_clean_errors(tmp_path, assignment):
    _check(tmp_path, yaml.safe_dump(BASE), ["--set", assignment])
