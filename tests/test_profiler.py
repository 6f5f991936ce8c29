"""The profiler: measurement discipline, max-batch search, and a real (tiny) CPU profile end to end."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from profiler.timing import Settings, find_max_batch, measure, median_ci

from .conftest import ROOT, run_cli

TINY = ["--model", "mlp", "--model-arg", "layers=3", "--model-arg", "in_features=16", "--model-arg", "hidden=32", "--model-arg", "out_features=4",
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
    # profile -> scenario -> run, through the real console script
    (tmp_path / "s.yaml").write_text("name: p\nrequests: 2000\nworkload: {arrival: {process: poisson, rate_rps: 50}}\n"
                                     "cost_model: {profile: tiny.yaml}\nserver: {batching: {policy: dynamic, max_queue_delay_ms: 1}}\n")
    proc = run_cli("run", tmp_path / "s.yaml", "--out", tmp_path / "o", "--no-plots")
    assert proc.returncode == 0, proc.stderr
    fit = run_cli("fit", out, "--plot", tmp_path / "fit.png")
    assert fit.returncode == 0 and "chosen by leave-one-out" in fit.stdout and (tmp_path / "fit.png").exists()


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
    from profiler.llm_serve import SlotCache

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
