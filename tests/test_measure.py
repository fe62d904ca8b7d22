"""Measurement plumbing: repeat policy, warm-up accounting, the peak-memory-vs-transfer metric (issue 6).

Counts and record contents only: no test asserts a duration."""

import sys
import time

import pytest
import torch
import yaml

from svbench.errors import UserError
from svbench.measure import paired_timing, time_callable, timed_call, warm_timing
from svbench.methods.base import LayerSpec
from svbench.suite.runner import rfft_transfer_bytes, run_suite
from svbench.suite.schema import TimingSpec


def _slow():
    time.sleep(0.01)


@pytest.mark.parametrize("slow_repeats", [1, 3])
def test_slow_operations_get_slow_repeats(slow_repeats):
    t = time_callable(_slow, warmup=0, min_repeats=10, max_repeats=20, budget_s=0.001, slow_repeats=slow_repeats)
    assert t.repeats == slow_repeats == len(t.samples_ms)


def test_slow_repeats_never_exceed_max_repeats():
    t = time_callable(_slow, warmup=0, min_repeats=2, max_repeats=2, budget_s=0.001, slow_repeats=5)
    assert t.repeats == 2


def test_warm_timing_counts_the_checked_call_as_warmup():
    assert warm_timing(TimingSpec(warmup=2))["warmup"] == 1
    assert warm_timing(TimingSpec(warmup=0))["warmup"] == 0
    with pytest.raises(ValueError, match="slow_repeats"):
        TimingSpec(slow_repeats=0)


def test_rfft_transfer_bytes():
    assert rfft_transfer_bytes(LayerSpec(64, 64, 3, 16), torch.float32) == 16 * 9 * 64 * 64 * 8
    assert rfft_transfer_bytes(LayerSpec(64, 64, 3, 16, 2), torch.float64) == 8 * 5 * 64 * 256 * 16
    assert rfft_transfer_bytes(LayerSpec(64, 64, 3, 16, groups=4), torch.float32) == 16 * 9 * 64 * 64 * 8 // 4


def test_sv_cells_record_peak_memory_relative_to_the_transfer_size(tmp_path):
    suite = {
        "name": "mem",
        "tasks": [{"name": "layers", "kind": "sv", "methods": ["sedghi"], "measure_memory": True,
                   "timing": {"warmup": 0, "min_repeats": 1, "max_repeats": 1, "budget_s": 0.01},
                   "shapes": [{"c_in": 8, "c_out": 8, "k": 3, "n": 8}]}],
    }
    path = tmp_path / "mem.yaml"
    path.write_text(yaml.safe_dump(suite))
    res = run_suite(str(path), out_root=tmp_path, progress=False)
    recs = [r for r in res.records if r["status"] == "ok"]
    peak = next(r for r in recs if r["metric"] == "sv_peak_mem_bytes")
    assert peak["extra"]["rfft_transfer_bytes"] == 8 * 5 * 8 * 8 * 8
    ratio = [r for r in recs if r["metric"] == "sv_peak_mem_vs_transfer"]
    if peak["value"] is None:
        assert not ratio
    else:
        assert ratio[0]["value"] == pytest.approx(peak["value"] / peak["extra"]["rfft_transfer_bytes"])
    assert next(r for r in recs if r["metric"] == "sv_time_ms")["backend"] == "svdvals (auto)"
    assert all(r["malloc"] == recs[0]["malloc"] for r in recs)  # one recorded allocator configuration per run
    if sys.platform.startswith("linux"):
        assert recs[0]["malloc"].startswith("glibc mmap_threshold=32MiB")


def test_a_slow_first_call_is_one_of_the_samples():
    calls = []

    def fn():
        calls.append(1)

    t = time_callable(fn, warmup=3, min_repeats=10, max_repeats=20, budget_s=0.001, slow_repeats=2, prior_ms=50.0)
    assert t.first_call_timed and t.warmup == 0 and t.repeats == 2 and len(calls) == 1
    assert t.samples_ms[0] == 50.0
    fast = time_callable(fn, warmup=1, min_repeats=3, max_repeats=3, budget_s=10.0, prior_ms=0.001)
    assert not fast.first_call_timed and fast.repeats == 3


def test_timed_call_returns_the_result():
    out, ms = timed_call(lambda: 41 + 1)
    assert out == 42 and ms >= 0


def test_paired_timing_alternates_and_reports_the_ratio():
    order = []
    t = paired_timing(lambda: order.append("a"), lambda: (order.append("b"), time.sleep(0.002)), repeats=4,
                      warmup=1)
    assert order == ["a", "b"] + ["a", "b", "b", "a"] * 2
    assert t.a.repeats == t.b.repeats == 4 and t.ratio_b_over_a > 1
    with pytest.raises(ValueError):
        paired_timing(lambda: None, lambda: None, repeats=0)


def _run_sv_task(tmp_path, name, methods, shapes=({"c_in": 8, "c_out": 8, "k": 3, "n": 8},), **task):
    """Run a one-task SV suite with the shortest timing; extra task keys as keyword arguments."""
    suite = {"name": name, "tasks": [{
        "name": "layers", "kind": "sv", "methods": list(methods), "measure_memory": False, "shapes": list(shapes),
        "timing": {"warmup": 0, "min_repeats": 1, "max_repeats": 1, "budget_s": 0.01}, **task}]}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(suite))
    return run_suite(str(path), out_root=tmp_path, progress=False)


def test_paired_reference_metric_in_sv_cells(tmp_path):
    res = _run_sv_task(tmp_path, "paired", ["reference", "sedghi", "tt", "gram"], paired_reference=3)
    paired = {r["method"]: r for r in res.records if r["metric"] == "speedup_vs_reference_paired"}
    assert set(paired) == {"sedghi", "tt", "gram"}  # every method with a dense kernel, never reference itself
    assert all(r["value"] > 0 and r["repeats"] == 3 for r in paired.values())
    assert "paired" in res.table_md


def test_paired_forward_metric_in_sv_cells(tmp_path):
    """paired_forward times each layer's eval forward against the plain conv (`none`) on the same input."""
    res = _run_sv_task(tmp_path, "paired-forward", ["sedghi", "tt", "cayley", "none"], paired_forward=4,
                       forward_batch=2)
    paired = {r["method"]: r for r in res.records if r["metric"] == "forward_vs_conv_paired"}
    assert set(paired) == {"sedghi", "tt", "cayley"}  # never `none` against itself
    for r in paired.values():
        assert r["repeats"] == 4 and r["extra"]["batch"] == 2
        assert r["value"] > 0 and r["extra"]["method_ms"] > 0 and r["extra"]["conv_ms"] > 0
    assert "× conv)" in res.table_md
    with pytest.raises(UserError, match="paired_forward must be >= 0"):
        _run_sv_task(tmp_path, "paired-forward-bad", ["sedghi"], paired_forward=-1)


@pytest.mark.parametrize("oracle_max_dim", [0, 4096])  # float64 FFT oracle of the dense equivalent / dense oracle
def test_grouped_and_dilated_cells_end_to_end(tmp_path, oracle_max_dim):
    shapes = [{"c_in": 8, "c_out": 8, "k": 3, "n": 8, "groups": 8},
              {"c_in": 4, "c_out": 6, "k": 3, "n": 8, "stride": 2, "dilation": 2}]
    res = _run_sv_task(tmp_path, "grouped", ["reference", "sedghi", "gram", "tt", "power"], shapes,
                       paired_reference=2, oracle_max_dim=oracle_max_dim)
    by = {(r["method"], r["shape"]["groups"], r["metric"]): r for r in res.records}
    for groups in (8, 1):
        for m in ("reference", "sedghi"):
            err = by[(m, groups, "sv_max_abs_err_rel")]
            assert err["status"] == "ok" and err["value"] < 2e-6 and err["oracle"] != "none"
        assert by[("gram", groups, "sigma_max_rel_err")]["value"] >= -1e-6
    assert by[("sedghi", 8, "speedup_vs_reference_paired")]["value"] > 0
    for groups in (8, 1):
        assert -0.5 < by[("power", groups, "sigma_max_rel_err")]["value"] <= 1e-6  # an estimate, from below
    skipped = {(r["method"], r["shape"]["groups"]) for r in res.records if r["status"] == "skipped"}
    assert skipped == {("tt", 8), ("tt", 1)}  # declined with a reason, never computed wrongly


def test_git_sha_variable_wins_over_a_stale_checkout(monkeypatch):
    """The GPU machine's copy carried the session's first .git under a later tree: git said '<old>+dirty'. A SHA
    passed in SVBENCH_GIT_SHA is what the records must carry."""
    from svbench.measure.env import git_sha

    git_sha.cache_clear()
    monkeypatch.setenv("SVBENCH_GIT_SHA", "3d7c8e8b5b97c69d02eba438ed4d041cbcf98fab")
    try:
        assert git_sha() == "3d7c8e8b5b97c69d02eba438ed4d041cbcf98fab"
        monkeypatch.delenv("SVBENCH_GIT_SHA")
        git_sha.cache_clear()
        assert git_sha() != "3d7c8e8b5b97c69d02eba438ed4d041cbcf98fab"
    finally:
        git_sha.cache_clear()
