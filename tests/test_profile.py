"""The task option ``profile`` (issue 6): one extra call of a cell's timed operation under torch.profiler, a
summary record per profiled operation, the full table under RUN_DIR/profiles/, a report section. No test asserts a
duration; they check what is recorded, where, and that a profiler failure never costs the cell its numbers."""

import pytest
import torch

from svbench.cli.main import main
from svbench.measure.profile import profile_call, profile_text, summarise
from svbench.report.render import build_report
from svbench.results.io import load_results
from svbench.suite.runner import run_suite

SUITE = """
name: prof
tasks:
  - name: layers
    kind: sv
    methods: [sedghi, gram]
    profile: [gram]
    timing: {warmup: 0, min_repeats: 1, max_repeats: 2, budget_s: 0.01}
    shapes: [{c_in: 4, c_out: 4, k: 3, n: 4}]
  - name: nets
    kind: network
    models: [small_cnn]
    input_shape: [3, 8, 8]
    methods: [sedghi, gram]
    profile: [sedghi]
    clip_to: 1.0
    check_error: false
    measure_memory: false
    timing: {warmup: 0, min_repeats: 1, max_repeats: 2, budget_s: 0.01}
"""


def test_profile_call_breaks_one_call_down_by_operator(capfd):
    a = torch.randn(8, 16, 16)
    p = profile_call(lambda: torch.linalg.svdvals(a @ a), torch.device("cpu"))
    assert p.clock == "cpu" and p.busy_ms > 0 and p.wall_ms > 0
    ops = [o["op"] for o in p.top]
    assert "aten::bmm" in ops and any("svd" in o for o in ops)
    assert all(o["self_ms"] >= 0 and 0 <= o["share"] <= 1 for o in p.top)
    assert sorted((o["self_ms"] for o in p.top), reverse=True) == [o["self_ms"] for o in p.top]
    assert "profiler_start" not in capfd.readouterr().err  # kineto's start/stop lines are captured, not printed
    text = profile_text(p, "title line")
    assert text.startswith("title line\n") and "aten::bmm" in text


def test_cuda_busy_time_counts_every_kernel_once():
    """On a GPU an operator's self device time is the time of the kernels it launched, and the kernels are events of
    their own: busy = the device events only; the rows are the operators, ranked by their kernels' time."""
    from types import SimpleNamespace as E

    events = [
        E(key="aten::_linalg_svd", count=2, device_type="DeviceType.CPU", self_device_time_total=7000.0,
          self_cpu_time_total=900.0),
        E(key="aten::bmm", count=6, device_type="DeviceType.CPU", self_device_time_total=2000.0,
          self_cpu_time_total=50.0),
        E(key="gesvda_kernel", count=2, device_type="DeviceType.CUDA", self_device_time_total=7000.0,
          self_cpu_time_total=0.0),
        E(key="sgemm_128x64", count=6, device_type="DeviceType.CUDA", self_device_time_total=2000.0,
          self_cpu_time_total=0.0),
        E(key="## lane ##", count=1, device_type="DeviceType.CUDA", self_device_time_total=5000.0,
          self_cpu_time_total=0.0, is_user_annotation=True),
    ]
    busy, rows, attr = summarise(events, cuda=True)
    assert attr == "self_device_time_total" and busy == 9.0
    assert [r[0] for r in rows] == ["aten::_linalg_svd", "aten::bmm"] and rows[0] == ("aten::_linalg_svd", 2, 7.0)
    busy, rows, attr = summarise(events[:2], cuda=False)
    assert attr == "self_cpu_time_total" and busy == 0.95 and rows[0][0] == "aten::_linalg_svd"


def test_cuda_rows_are_the_kernels_when_operators_explain_under_half_the_busy_time():
    """Kernels the profiler did not tie to any operator (cuSOLVER's own launches, lane threads: the H200 run-5
    profiles of gesvda showed every operator at 0 %) make the kernels themselves the rows."""
    from types import SimpleNamespace as E

    events = [
        E(key="aten::sort", count=13, device_type="DeviceType.CPU", self_device_time_total=300.0),
        E(key="aten::copy_", count=60, device_type="DeviceType.CPU", self_device_time_total=100.0),
        E(key="cuds_symv_lower<double2>", count=892, device_type="DeviceType.CUDA", self_device_time_total=49000.0),
        E(key="gemv2N_kernel", count=848, device_type="DeviceType.CUDA", self_device_time_total=26000.0),
        E(key="sort_kernel", count=13, device_type="DeviceType.CUDA", self_device_time_total=400.0),
    ]
    busy, rows, _ = summarise(events, cuda=True)
    assert busy == 75.4
    assert rows[0] == ("kernel: cuds_symv_lower<double2>", 892, 49.0) and rows[1][0] == "kernel: gemv2N_kernel"
    events[0].self_device_time_total = 40000.0  # operators now hold more than half: they stay the rows
    _, rows, _ = summarise(events, cuda=True)
    assert rows[0][0] == "aten::sort"


def test_suite_profiles_only_the_named_methods_and_keeps_the_tables(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(SUITE)
    res = run_suite(str(path), out_root=tmp_path, progress=False)
    recs = load_results(res.run_dir)
    prof = [r for r in recs if r["metric"] and "profile" in r["metric"]]
    assert {(r["task"], r["method"], r["metric"]) for r in prof} == {
        ("layers", "gram", "sv_profile_busy_ms"),
        ("nets", "sedghi", "network_profile_busy_ms"),
        ("nets", "sedghi", "network_clip_profile_busy_ms"),
    }
    for r in prof:
        assert r["status"] == "ok" and r["value"] > 0 and r["unit"] == "ms"
        assert r["extra"]["clock"] == "cpu" and r["extra"]["top"] and r["extra"]["wall_ms"] > 0
        f = res.run_dir / r["extra"]["file"]
        assert f.is_file() and r["cell_id"] in f.read_text().splitlines()[0]
    # the timed metrics are still there for every cell, profiled or not
    assert {r["method"] for r in recs if r["metric"] == "sv_time_ms"} == {"sedghi", "gram"}
    assert {r["method"] for r in recs if r["metric"] == "network_sv_time_ms"} == {"sedghi", "gram"}
    table = (res.run_dir / "table.md").read_text()
    assert "### Profiles" in table and "nets · small_cnn@8 · sedghi · seed=0" in table
    md = build_report([res.run_dir], tmp_path / "rep")["markdown"].read_text()
    assert "### Profiles" in md and "clipping pass" in md


def test_a_profiler_failure_is_recorded_and_the_cell_keeps_its_numbers(tmp_path, monkeypatch):
    import svbench.suite.profiling as profiling

    def broken(*a, **k):
        raise RuntimeError("CUPTI_ERROR_INSUFFICIENT_PRIVILEGES")

    monkeypatch.setattr(profiling, "profile_call", broken)
    path = tmp_path / "s.yaml"
    path.write_text(SUITE)
    res = run_suite(str(path), out_root=tmp_path, progress=False, tasks="layers")
    recs = load_results(res.run_dir)
    (p,) = [r for r in recs if r["metric"] == "sv_profile_busy_ms"]
    assert p["value"] is None and "CUPTI" in p["extra"]["error"]
    assert any(r["metric"] == "sv_time_ms" and r["method"] == "gram" and r["value"] > 0 for r in recs)
    assert "profiler failed: RuntimeError" in (res.run_dir / "table.md").read_text()


@pytest.mark.parametrize("profile,words", [
    ("[gramm]", "profile[0]: unknown method 'gramm'"),
    ("[tt]", "profile[0]: 'tt' is not one of this task's methods (sedghi, gram)"),
    ("gram", "profile"),
])
def test_bad_profile_option_is_one_line(tmp_path, capsys, profile, words):
    path = tmp_path / "s.yaml"
    path.write_text(SUITE.replace("profile: [gram]", f"profile: {profile}"))
    code = main(["run", str(path), "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err and words in lines[0], err
    assert not (tmp_path / "runs").exists()


def test_cli_profile_flag_sets_every_task_and_resumes_with_it(tmp_path, capsys):
    import argparse

    from svbench.cli.run import resume_command

    path = tmp_path / "s.yaml"
    path.write_text(SUITE)
    code = main(["run", str(path), "--tasks", "layers", "--profile", "sedghi", "--out", str(tmp_path / "runs"),
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    (run_dir,) = (tmp_path / "runs" / "prof").iterdir()
    recs = load_results(run_dir)
    # the suite's profile: [gram] is replaced
    assert {r["method"] for r in recs if r["metric"] == "sv_profile_busy_ms"} == {"sedghi"}
    args = argparse.Namespace(suite="s.yaml", methods=None, tasks="layers", device=None, threads=None, profile="sedghi")
    assert resume_command(args, run_dir).endswith(f"--tasks layers --profile sedghi --resume {run_dir}")


@pytest.mark.parametrize("flag,words", [("gramm", "--profile: unknown method 'gramm'. Did you mean 'gram'?"),
                                        (" , ", "--profile is empty")])
def test_bad_profile_flag_is_one_line(tmp_path, capsys, flag, words):
    path = tmp_path / "s.yaml"
    path.write_text(SUITE)
    code = main(["run", str(path), "--profile", flag, "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1 and words in lines[0], err
    assert not (tmp_path / "runs").exists()
