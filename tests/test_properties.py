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

LLM_BASE = {
    "name": "llm", "seed": 1, "requests": 150,
    "workload": {"arrival": {"process": "poisson", "rate_rps": 20},
                 "prompt_tokens": {"dist": "lognormal", "mean": 200, "cv": 1.0, "min": 1, "max": 2000},
                 "output_tokens": {"dist": "uniform", "low": 1, "high": 80}, "token_correlation": 0.3},
    "cost_model": {"kind": "llm", "base_ms": 5, "prefill_token_ms": 0.02, "decode_seq_ms": 0.1,
                   "decode_context_ms": 1e-4},
    "server": {"batching": {"policy": "continuous", "max_num_seqs": 16, "max_num_batched_tokens": 512,
                            "kv_cache_tokens": 20000, "block_size": 16}},
    "slo": {"ttft_p99_ms": 500, "tpot_p99_ms": 50},
}
LLM_PATHS = list(_paths(LLM_BASE))


@st.composite
def mutated(draw, base=BASE, paths=PATHS):
    d = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
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


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutated(LLM_BASE, LLM_PATHS))
def test_mutated_llm_scenarios_give_clean_errors(tmp_path, raw):
    _check(tmp_path, yaml.safe_dump(raw))
