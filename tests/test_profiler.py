"""The profiler: measurement discipline, max-batch search, and a real (tiny) CPU profile end to end."""
import math
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest

from profiler.timing import PointStats, Settings, budget_shortfall, find_max_batch, measure, median_ci

from .conftest import ROOT, run_cli

TINY = ["--threads", "1", "--model", "mlp", "--model-arg", "layers=3", "--model-arg", "in_features=16", "--model-arg", "hidden=32", "--model-arg", "out_features=4",
        "--batch-sizes", "1,2,4,8", "--budget-s", "0.05", "--min-samples", "5", "--warmup", "2", "--no-peaks"]


def test_median_ci_covers_the_true_median():
    rng = np.random.default_rng(0)
    n_rep, covered = 400, 0
    true_median = np.log(2)  # exponential(1)
    for _ in range(n_rep):
        lo, hi = median_ci(rng.exponential(1.0, 60))
        covered += lo <= true_median <= hi
    assert 0.92 <= covered / n_rep <= 0.995  # distribution-free: at least nominal 95% (discreteness makes it >=)


@pytest.mark.parametrize("limit,cap", [(37, 4096), (1, 64), (64, 64), (100, 64), (513, 1000)])
def test_find_max_batch_doubles_then_bisects(limit, cap):
    calls = []

    def fits(b):
        calls.append(b)
        return b <= limit

    best, record = find_max_batch(fits, cap)
    assert best == min(limit, cap)
    assert len(calls) == len(set(calls))  # each size tried once
    assert len(calls) <= 2 * int(np.log2(cap)) + 3
    if limit < cap:
        assert record["first_failure"] == limit + 1 or record["first_failure"] > limit


def test_find_max_batch_refuses_when_nothing_fits():
    with pytest.raises(RuntimeError):
        find_max_batch(lambda b: False, 64)


def test_measure_warms_up_first_then_interleaves_shuffled_rounds():
    log = []

    def step(b):
        log.append(b)
        return 1.0 + 0.001 * b + 0.0001 * (len(log) % 3)  # small deterministic jitter

    settings = Settings(warmup=2, min_samples=6, max_samples=30, target_ci_rel=0.02, budget_s=10, per_round=2, seed=1)
    stats = measure(step, [1, 2, 4], settings)
    assert log[:6] == [1, 1, 2, 2, 4, 4]  # warm-ups, kept apart (not in the samples)
    first_round = log[6:12]
    assert sorted(first_round) == [1, 1, 2, 2, 4, 4]
    orders = {tuple(dict.fromkeys(log[6 + 6 * r: 12 + 6 * r])) for r in range(3)}
    assert len(orders) > 1  # the order changes from round to round
    for b, s in stats.items():
        assert len(s.samples_ms) >= 6 and s.stop_reason == "ci"
        p = s.summary()
        assert p["median_ms"] == pytest.approx(1 + 0.001 * b, abs=0.001)
        assert len(p["ratio_quantiles"]) == 21


def test_measure_stops_on_budget_when_noisy():
    rng = np.random.default_rng(0)
    settings = Settings(warmup=0, min_samples=5, max_samples=10_000, target_ci_rel=0.001, budget_s=0.05, per_round=1)
    stats = measure(lambda b: float(rng.exponential(5.0)), [1], settings)
    assert stats[1].stop_reason == "budget" and len(stats[1].samples_ms) < 100


def test_tiny_cpu_profile_end_to_end(tmp_path):
    pytest.importorskip("torch")
    from profiler.profile import main
    import sim

    out = tmp_path / "tiny.yaml"
    assert main([*TINY, "--out", str(out), "--quiet"]) == 0
    prof = sim.load_profile(out)
    assert [p.batch_size for p in prof.points] == [1, 2, 4, 8]
    assert prof.device.kind == "cpu" and prof.dtype == "fp32" and prof.model.params == 16 * 32 + 32 + 32 * 32 + 32 + 32 * 4 + 4
    assert prof.model.flops_per_item == 2 * (16 * 32 + 32 * 32 + 32 * 4)
    assert (tmp_path / "tiny.png").stat().st_size > 0
    assert prof.settings["timer"] == "perf_counter+synchronize" and prof.settings["warmup"] == 2
    assert prof.version == 2 and prof.points_count == 4 and out.read_text().index("points_count:") < out.read_text().index("\npoints:")
    # profile -> scenario -> run, through the real console script
    (tmp_path / "s.yaml").write_text("name: p\nrequests: 2000\nworkload: {arrival: {process: poisson, rate_rps: 50}}\n"
                                     "cost_model: {profile: tiny.yaml}\nserver: {batching: {policy: dynamic, max_queue_delay_ms: 1}}\n")
    proc = run_cli("run", tmp_path / "s.yaml", "--out", tmp_path / "o", "--no-plots")
    assert proc.returncode == 0, proc.stderr
    fit = run_cli("fit", out, "--plot", tmp_path / "fit.png")
    assert fit.returncode == 0 and "\nfit: " in fit.stdout and "leave-one-out" in fit.stdout and (tmp_path / "fit.png").exists()


def test_user_factory_and_bad_arguments(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    from profiler.profile import main

    (tmp_path / "my_models.py").write_text(textwrap.dedent("""
        import torch
        def make(width=8):
            return torch.nn.Linear(width, 2), lambda b: torch.randn(b, width)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "mine.yaml"
    assert main(["--model", "my_models:make", "--model-arg", "width=4", "--batch-sizes", "1,2,3", "--budget-s", "0.02",
                 "--min-samples", "3", "--no-plot", "--no-peaks", "--quiet", "--out", str(out)]) == 0
    assert "my_models:make" in out.read_text()
    for argv, words in ((["--model", "nope", "--out", str(out)], "not a built-in model"),
                        (["--model", "mlp", "--device", "cuda", "--out", str(out)], "no CUDA device"),
                        (["--model", "mlp", "--out", str(tmp_path / "x.txt")], ".yaml"),
                        (["--model", "mlp", "--batch-sizes", "a,b", "--out", str(out)], "integers"),
                        (["--model", "mlp"], "required")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, (argv, err)
    assert main(["--list-models"]) == 0
    assert "resnet50" in capsys.readouterr().out


def test_profiler_runs_without_simpy_or_pydantic(tmp_path):
    pytest.importorskip("torch")
    code = textwrap.dedent(f"""
        import sys
        sys.modules["simpy"] = None      # GPU hosts have torch, numpy, pyyaml, matplotlib only
        sys.modules["pydantic"] = None
        sys.modules["pandas"] = None
        from profiler.profile import main
        sys.exit(main({[*TINY, "--out", str(tmp_path / "p.yaml"), "--quiet"]!r}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "p.yaml").exists()


def test_slot_cache_serving_matches_the_contiguous_decoder():
    torch = pytest.importorskip("torch")
    from profiler.llm import GptKV
    from profiler.llm import SlotCache

    torch.manual_seed(0)
    m = GptKV(layers=2, hidden=64, heads=4, kv_heads=2, vocab=500, max_len=128).eval()
    with torch.inference_mode():
        ids = torch.randint(0, 500, (1, 20))
        cache = m.new_cache(1, 64, "cpu", torch.float32)
        ref = m(ids, cache, 0)
        whole = SlotCache(m, 3, 64, "cpu", torch.float32)
        chunked = SlotCache(m, 3, 64, "cpu", torch.float32)
        a = whole.prefill(2, ids[0], 0)
        chunked.prefill(0, ids[0][:7], 0)
        b = chunked.prefill(0, ids[0][7:], 7)
        assert a.item() == b.item() == ref.argmax(-1).item()
        nxt = ref.argmax(-1)
        ref2 = m(nxt[:, None], cache, 20)
        d = whole.decode([2], nxt, torch.tensor([20]))
        assert d.item() == ref2.argmax(-1).item()


def test_warm_up_continues_until_lazy_initialisation_has_settled():
    # the first runs of each size are slow (kernel selection, allocator growth): 2 fixed warm-ups are not enough
    lazy = [50.0, 20.0, 8.0, 3.0]
    calls = {1: 0, 2: 0}

    def step(b):
        calls[b] += 1
        return lazy[calls[b] - 1] if calls[b] <= len(lazy) else 1.0

    settings = Settings(warmup=2, min_samples=6, max_samples=12, target_ci_rel=0.02, budget_s=10, per_round=3)
    stats = measure(step, [1, 2], settings)
    for st in stats.values():
        assert st.samples_ms == [1.0] * len(st.samples_ms) and st.summary()["cv"] == 0.0
        assert st.warmup_runs == 6 and st.summary()["warmup_runs"] == 6  # 4 slow ones, then two that agree


def test_warm_up_zero_means_none_and_a_settled_step_needs_no_extra_runs():
    log = []
    settings = Settings(warmup=0, min_samples=6, max_samples=6, target_ci_rel=0.5, budget_s=10, per_round=3)
    measure(lambda b: log.append(b) or 1.0, [1], settings)
    assert len(log) == 6
    log.clear()
    stats = measure(lambda b: log.append(b) or 1.0, [1], Settings(**{**settings.as_dict(), "warmup": 3}))
    assert stats[1].warmup_runs == 3 and len(log) == 9


def fake_runner(step_ms):
    import torch  # only for the dtype table measure_profile reads

    return SimpleNamespace(step_ms=step_ms, peak_memory_bytes=lambda b: None, cuda=False, dtype=torch.float32,
                           torch=torch)


def test_too_small_a_budget_is_reported_once_with_points_samples_and_ci(capsys):
    pytest.importorskip("torch")
    from profiler.profile import measure_profile

    calls = []

    def step(b):  # 10 ms steps with every third one stalled to 100 ms: a 50 ms budget ends after 3 samples
        calls.append(b)
        return 100.0 if len(calls) % 3 == 0 else 10.0

    settings = Settings(warmup=0, min_samples=10, max_samples=200, target_ci_rel=0.02, budget_s=0.05, per_round=3)
    prof = measure_profile(fake_runner(step), [1, 2], settings)
    budget = [w for w in prof["warnings"] if "--budget-s" in w]
    assert len(budget) == 1
    w = budget[0]
    assert w.startswith("--budget-s 0.05 is too small: 2 of 2 points ran out of time")
    assert "within +-2% with at least 10 samples: batch 1, batch 2 (3 samples each, too few for a 95% median CI)." in w
    assert "Raise --budget-s to about 0.1 s" in w  # 10 samples x 10 ms
    assert "Single steps stalled (batch 1 10x, batch 2 10x the median)" in w and "first timed step" not in w
    assert capsys.readouterr().err.count("--budget-s 0.05 is too small") == 1
    assert all(p["stop_reason"] == "budget" for p in prof["points"])


def test_no_budget_warning_when_the_ci_target_was_met():
    st = PointStats(1, [1.0] * 20, "ci")
    assert budget_shortfall([("batch 1", st)], Settings()) is None
    wide = PointStats(4, [1.0, 1.5] * 10, "budget")  # enough samples, CI half-width 0.25 / 1.25
    w = budget_shortfall([("batch 4", wide)], Settings(target_ci_rel=0.02, budget_s=0.01))
    assert "batch 4 (20 samples, median CI +-20%)" in w and "few samples" not in w and "stalled" not in w
    cold = PointStats(2, [40.0, 10.0, 10.0], "budget")  # the first timed step still slow: warm-up too short
    w = budget_shortfall([("batch 2", cold)], Settings(budget_s=0.05))
    assert "The first timed step was the slowest (batch 2 4x the median)" in w and "raise --warmup" in w


def test_search_summary_says_no_failure_instead_of_none():
    from profiler.profile import describe_search

    _, record = find_max_batch(lambda b: True, 64)
    text = describe_search(record)
    assert text == "largest batch that fits: 64 (cap 64; no failure up to the cap)" and "None" not in text
    _, record = find_max_batch(lambda b: b <= 24, 64)
    record.update(first_failure_reason="out of memory", max_memory_gb=None)
    assert describe_search(record) == "largest batch that fits: 24 (cap 64; first failure at 25: out of memory)"


class FakeCuda:
    """torch.cuda's peak-memory counters for a step whose peak is weights + per_item x batch (bytes)."""

    def __init__(self, weights, per_item):
        self.weights, self.per_item, self.peak = weights, per_item, weights

    def reset_peak_memory_stats(self, device):
        self.peak = self.weights

    def max_memory_allocated(self, device):
        return self.peak

    def synchronize(self, device):
        pass

    def step(self, b):
        self.peak = max(self.peak, self.weights + self.per_item * b)
        return 1.0


def cuda_runner(max_memory_bytes, cuda):
    from profiler.profile import Runner

    runner = Runner.__new__(Runner)  # no torch model: the memory check is what is tested
    runner.torch, runner.device, runner.cuda = SimpleNamespace(cuda=cuda), "cuda:0", True
    runner.max_step_s, runner.max_memory_bytes, runner.rejected = math.inf, max_memory_bytes, {}
    runner.prepare = runner.release = lambda b: None
    runner.step_ms = cuda.step
    return runner


def test_memory_budget_stops_the_max_batch_search():
    pytest.importorskip("torch")
    gb = 10 ** 9
    cuda = FakeCuda(weights=2 * gb, per_item=gb // 20)  # 2 GB of weights + 50 MB per item
    runner = cuda_runner(10 * gb, cuda)
    best, record = find_max_batch(runner.fits, 4096)
    assert best == 160  # (10 - 2) GB / 50 MB
    assert record["first_failure"] == 161
    assert runner.rejected[161] == "peak allocated memory 10.1 GB > --max-memory-gb 10"
    assert all(b > 160 for b in runner.rejected)
    unlimited, _ = find_max_batch(cuda_runner(None, FakeCuda(2 * gb, gb // 20)).fits, 4096)
    assert unlimited == 4096


def test_memory_budget_counts_what_a_cuda_graph_capture_allocates():
    # with CUDA graphs the memory is taken while preparing (warm-up and capture); a replay allocates nothing
    pytest.importorskip("torch")
    gb = 10 ** 9
    cuda = FakeCuda(weights=2 * gb, per_item=gb // 20)
    runner = cuda_runner(10 * gb, cuda)
    runner.prepare = cuda.step                          # the capture reaches the peak ...
    runner.step_ms = lambda b: 1.0                      # ... the replay adds nothing
    best, _ = find_max_batch(runner.fits, 4096)
    assert best == 160


def test_memory_budget_is_refused_on_cpu_and_where_it_has_no_effect(tmp_path, capsys):
    pytest.importorskip("torch")
    from profiler.profile import main

    out = str(tmp_path / "p.yaml")
    assert main(["--model", "mlp", "--max-memory-gb", "10", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "--max-memory-gb needs --device cuda" in err and "Traceback" not in err
    assert main(["--model", "mlp", "--max-memory-gb", "0", "--out", out]) == 2
    assert "--max-memory-gb 0.0: must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "p.yaml").exists()


def test_cuda_graph_serving_replays_what_was_timed():
    # only where a GPU is at hand (the calibration kit's host): CI has none, and skips it
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from profiler.models import build
    from profiler.profile import Runner

    module, make_batch, _ = build("mlp", {"in_features": 32, "hidden": 64, "layers": 2, "out_features": 8})
    eager = Runner(torch, module, make_batch, "cuda", "fp32", False, False, math.inf)
    graphs = Runner(torch, module, make_batch, "cuda", "fp32", False, True, math.inf)
    for b in (4, 3, 1):
        graphs.prepare(b)
    x = graphs.cast(make_batch(3))
    with torch.inference_mode():
        assert torch.allclose(graphs.run(x), eager.run(x), atol=1e-5)
    assert set(graphs.graphs) == {1, 3, 4} and graphs.pool is not None
