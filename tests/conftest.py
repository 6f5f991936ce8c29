import copy
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent

BASE = {
    "name": "t",
    "seed": 3,
    "requests": 2000,
    "workload": {"arrival": {"process": "poisson", "rate_rps": 200}},
    "cost_model": {"kind": "affine", "base_ms": 2.0, "per_item_ms": 0.5, "max_batch_size": 32},
    "server": {"replicas": 1, "batching": {"policy": "dynamic", "max_batch_size": 8, "max_queue_delay_ms": 1}},
}


def scenario_dict(**changes):
    """A valid raw scenario dict with top-level keys replaced."""
    d = copy.deepcopy(BASE)
    d.update(copy.deepcopy(changes))
    return d


@pytest.fixture
def write_yaml(tmp_path):
    def _write(data, name="s.yaml"):
        p = tmp_path / name
        p.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
        return p
    return _write


def servesim_cmd():
    """The real console script installed by the README's install command."""
    exe = shutil.which("servesim")
    assert exe, "the servesim console script is not on PATH: run the README's install command"
    return [exe]


def run_cli(*args, cwd=None):
    return subprocess.run(servesim_cmd() + [str(a) for a in args], capture_output=True, text=True, cwd=cwd or ROOT,
                          timeout=300)


def replicated(raw_of_seed, seeds=range(8)) -> list:
    """Returns the summaries of independent replications, one per seed (raw_of_seed(seed) -> a raw scenario)."""
    import sim

    return [sim.run(sim.validate(raw_of_seed(seed))).summary for seed in seeds]


def within_ci(got, exact: float, what: str = "") -> None:
    """Asserts that the mean of independent estimates lies within 3 half-widths of its 95% interval of `exact`."""
    import numpy as np

    got = np.asarray(got, float)
    half = 2.365 * got.std(ddof=1) / np.sqrt(got.size)
    assert abs(got.mean() - exact) <= 3 * half + 1e-12, (what, got.mean(), half, exact)
