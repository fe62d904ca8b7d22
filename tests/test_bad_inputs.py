"""More bad inputs: each gets one clear line and exit code 2 (or a recorded cell status), nothing lost."""

import errno
import os

import pytest
import torch

from svbench.cli.main import main
from svbench.results.io import load_results
from svbench.suite.runner import run_suite

TINY = """
name: tiny
tasks:
  - name: layers
    kind: sv
    methods: [sedghi, none]
    timing: {warmup: 0, min_repeats: 1, max_repeats: 2, budget_s: 0.01}
    shapes:
      - {c_in: 2, c_out: 3, k: 3, n: 4}
      - {c_in: 2, c_out: 2, k: 3, n: 4}
"""


def _run(capsys, *args):
    code = main(list(args))
    err = capsys.readouterr().err
    return code, err


def _one_line(err):
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_threads_must_be_positive(capsys):
    code, err = _run(capsys, "run", "smoke", "--threads", "0")
    assert code == 2 and "--threads must be >= 1" in _one_line(err)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_requested_without_gpu(capsys):
    code, err = _run(capsys, "run", "smoke", "--device", "cuda")
    assert code == 2 and "no GPU is available; use --device cpu" in _one_line(err)


def test_unknown_device(capsys):
    code, err = _run(capsys, "run", "smoke", "--device", "tpu")
    assert code == 2 and "unknown device 'tpu'" in _one_line(err)


def test_nan_weights_in_checkpoint(tmp_path, capsys):
    w = torch.randn(2, 2, 3, 3)
    w[0, 0, 1, 1] = float("nan")
    torch.save({"conv.weight": w}, tmp_path / "nan.pt")
    code, err = _run(capsys, "spectrum", str(tmp_path / "nan.pt"), "--input-size", "8")
    assert code == 2 and "NaN or Inf weights" in _one_line(err)


def test_negative_input_size(tmp_path, capsys):
    torch.save({"conv.weight": torch.randn(2, 2, 3, 3)}, tmp_path / "c.pt")
    code, err = _run(capsys, "spectrum", str(tmp_path / "c.pt"), "--input-size", "-3")
    assert code == 2 and "--input-size must be a positive integer N or HxW" in _one_line(err)
    for bad in ("8x", "0x8", "4x4x4", "eight"):
        code, err = _run(capsys, "spectrum", str(tmp_path / "c.pt"), "--input-size", bad)
        assert code == 2 and f"got '{bad}'" in _one_line(err)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_triton_gram_products_on_a_cpu(tmp_path, capsys, monkeypatch):
    """The experimental fused Gram step runs on CUDA only: one line, exit 2, the run folder kept for a resume."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    p = tmp_path / "t.yaml"
    p.write_text("name: t\ntasks:\n  - {name: l, kind: sv, shapes: [{c_in: 4, c_out: 4, k: 3, n: 4}], methods: [gram],"
                 " variants: {gram: [{products: triton}]}}\n")
    code, err = _run(capsys, "run", str(p), "--out", str(tmp_path / "runs"), "--device", "cpu", "--no-progress")
    line = _one_line(err)
    assert code == 2 and "run on a CUDA device" in line and "resume with" in line


def test_missing_dataset_in_a_suite(tmp_path, capsys):
    p = tmp_path / "t.yaml"
    p.write_text("name: t\ntasks:\n  - {name: c, kind: train, dataset: cifar10, data_root: " + str(tmp_path) +
                 ", methods: [none], epochs: 1}\n")
    code, err = _run(capsys, "run", str(p), "--out", str(tmp_path / "runs"))
    assert code == 2 and "cifar-10-batches-py" in _one_line(err)


def test_gpu_out_of_memory_is_recorded_and_the_suite_goes_on(tmp_path, monkeypatch):
    from svbench.methods.sedghi import SedghiMethod

    def boom(self, layer, n):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80 GiB")

    monkeypatch.setattr(SedghiMethod, "layer_svs", boom)
    p = tmp_path / "t.yaml"
    p.write_text(TINY)
    res = run_suite(str(p), out_root=tmp_path / "runs", progress=False)
    status = {(r["method"], r["status"]) for r in res.records}
    assert ("sedghi", "oom") in status and ("none", "ok") in status
    assert "oom" in res.table_md


def test_nonfinite_method_output_is_recorded(tmp_path, monkeypatch):
    from svbench.methods.sedghi import SedghiMethod

    def nan(self, layer, n):
        return torch.full((min(layer.out_channels, layer.in_channels) * n * n,), float("nan"))

    monkeypatch.setattr(SedghiMethod, "layer_svs", nan)
    p = tmp_path / "t.yaml"
    p.write_text(TINY)
    res = run_suite(str(p), out_root=tmp_path / "runs", progress=False)
    assert any(r["method"] == "sedghi" and r["status"] == "nonfinite" for r in res.records)


def test_disk_full_keeps_finished_cells(tmp_path, monkeypatch, capsys):
    p = tmp_path / "t.yaml"
    p.write_text(TINY)
    real_write = os.write
    calls = {"n": 0}

    def flaky_write(fd, data):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", flaky_write)
    code, err = _run(capsys, "run", str(p), "--out", str(tmp_path / "runs"), "--no-progress")
    line = _one_line(err)
    assert code == 2 and "No space left on device" in line and "--resume" in line
    monkeypatch.setattr(os, "write", real_write)
    run_dir = next((tmp_path / "runs" / "tiny").iterdir())
    kept = {r["cell_id"] for r in load_results(run_dir)}
    assert len(kept) == 2  # the two cells written before the failure are intact
    res = run_suite(str(p), resume=run_dir, progress=False)
    assert res.cells_skipped_resume == 2 and len({r["cell_id"] for r in res.records}) == 4


def test_resume_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    code, err = _run(capsys, "run", "smoke", "--resume", str(tmp_path))
    assert code == 2 and "not a run folder" in _one_line(err)


def test_report_of_a_folder_without_results(tmp_path, capsys):
    code, err = _run(capsys, "report", str(tmp_path))
    assert code == 2 and "no results found" in _one_line(err)


def test_unknown_tolerance_in_suite(tmp_path):
    from svbench.errors import UserError
    from svbench.report.compare import compare

    with pytest.raises(UserError, match="unknown tolerance"):
        compare([], [], {"accuracy_dorp": 0.1})


def test_spectrum_input_shape_without_model(tmp_path, capsys):
    torch.save({"conv.weight": torch.randn(2, 2, 3, 3)}, tmp_path / "c.pt")
    code, err = _run(capsys, "spectrum", str(tmp_path / "c.pt"), "--input-size", "8", "--input-shape", "2,8,8")
    assert code == 2 and "pass either --input-size N (every conv on N x N) or --input-shape C,H,W" in _one_line(err)
    # alone, --input-shape reads a pickled model's geometry (session 20): a state dict has none
    code, err = _run(capsys, "spectrum", str(tmp_path / "c.pt"), "--input-shape", "2,8,8")
    assert code == 2 and "--input-shape without --model reads the geometry from the model a checkpoint pickles" \
        in _one_line(err)


def test_spectrum_input_size_and_model_together(tmp_path, capsys):
    torch.save({"conv.weight": torch.randn(2, 2, 3, 3)}, tmp_path / "c.pt")
    code, err = _run(capsys, "spectrum", str(tmp_path / "c.pt"), "--input-size", "8", "--model", "small_cnn",
                     "--input-shape", "1,28,28")
    assert code == 2 and "not both" in _one_line(err)


def test_spectrum_method_tt_on_checkpoint_kernels(tmp_path, capsys):
    torch.save({"conv.weight": torch.randn(2, 2, 3, 3)}, tmp_path / "c.pt")
    code, err = _run(capsys, "spectrum", str(tmp_path / "c.pt"), "--input-size", "8", "--method", "tt",
                     "--out", str(tmp_path / "o"))
    line = _one_line(err)
    assert code == 2 and "use --method sedghi" in line and "wrap()" not in line
    assert not (tmp_path / "o").exists()


def test_spectrum_cayley_layer_on_a_grid_smaller_than_its_kernel(tmp_path, capsys):
    """A Cayley layer (weight + scalar alpha) whose kernel does not fit the input size: one line naming the layer."""
    torch.save({"c.weight": torch.randn(4, 4, 3, 3), "c.alpha": torch.tensor(2.0)}, tmp_path / "c.pt")
    code, err = _run(capsys, "spectrum", str(tmp_path / "c.pt"), "--input-size", "2", "--out", str(tmp_path / "o"))
    line = _one_line(err)
    assert code == 2 and "layer 'c'" in line and "Cayley kernel is larger than the 2x2 grid" in line
    assert not (tmp_path / "o").exists()


def test_spectrum_cayley_layer_with_a_nan_scale(tmp_path, capsys):
    torch.save({"c.weight": torch.randn(4, 4, 3, 3), "c.alpha": torch.tensor(float("nan"))}, tmp_path / "c.pt")
    code, err = _run(capsys, "spectrum", str(tmp_path / "c.pt"), "--input-size", "8", "--out", str(tmp_path / "o"))
    assert code == 2 and "layer 'c' has NaN or Inf weights" in _one_line(err)


def test_report_on_a_file_that_is_not_results(tmp_path, capsys):
    junk = tmp_path / "model.pt"
    junk.write_bytes(b"PK\x03\x04 not json at all")
    code, err = _run(capsys, "report", str(junk))
    assert code == 2 and "is it a svbench results file" in _one_line(err)


def test_report_warns_in_one_line_about_a_cut_last_record(tmp_path, capsys):
    import json

    good = json.loads(open("baselines/cpu-1thread/smoke.jsonl").readline())
    f = tmp_path / "results.jsonl"
    f.write_text(json.dumps(good) + "\n" + '{"schema_version": 1, "run_id"')
    code = main(["report", str(f), "--out", str(tmp_path / "rep")])
    err = capsys.readouterr().err
    warn = [x for x in err.splitlines() if "partial last line" in x]
    assert code == 0 and warn and warn[0].startswith("svbench: warning: ") and "warnings.warn" not in err


@pytest.mark.parametrize("record, words", [
    ({"schema_version": 1, "run_id": "r", "metric": "sv_time_ms", "value": 1.0}, "lacks suite, task"),
    ([1, 2, 3], "not a JSON object"),
    ("SCHEMA9", "schema_version 9; this svbench reads up to 1"),
])
def test_report_rejects_records_it_cannot_read(tmp_path, capsys, record, words):
    import json

    if record == "SCHEMA9":
        record = dict(json.loads(open("baselines/cpu-1thread/smoke.jsonl").readline()), schema_version=9)
    f = tmp_path / "results.jsonl"
    f.write_text(json.dumps(record) + "\n")
    code, err = _run(capsys, "report", str(f), "--out", str(tmp_path / "rep"))
    line = _one_line(err)
    assert code == 2 and words in line and "results.jsonl:1:" in line


def test_resume_with_another_suite_is_refused_and_the_run_untouched(tmp_path, capsys):
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY)
    res = run_suite(str(p), out_root=tmp_path / "runs", progress=False)
    before = (res.run_dir / "results.jsonl").read_bytes()
    code, err = _run(capsys, "run", "smoke", "--methods", "none", "--resume", str(res.run_dir))
    assert code == 2 and "that run is of suite 'tiny', not 'smoke'" in _one_line(err)
    assert (res.run_dir / "results.jsonl").read_bytes() == before


def test_compare_with_a_baseline_of_another_suite(tmp_path, capsys):
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY)
    res = run_suite(str(p), out_root=tmp_path / "runs", progress=False)
    code, err = _run(capsys, "compare", str(res.run_dir), "--baseline", "baselines/cpu-1thread/smoke.jsonl",
                     "--out", str(tmp_path / "ci"))
    assert code == 2 and "nothing to compare: the run is of suite tiny and the baseline of smoke" in _one_line(err)


def test_resume_on_another_device_kind_is_refused(tmp_path):
    from svbench.errors import UserError
    from svbench.suite.runner import _check_resumable

    gpu_run = [{"suite": "tiny", "device": "cuda", "cell_id": "c"}]
    _check_resumable(tmp_path, gpu_run, "tiny", "cuda")  # same suite, same device: fine
    with pytest.raises(UserError, match="measured on cuda, this one would run on cpu"):
        _check_resumable(tmp_path, gpu_run, "tiny", "cpu")


@pytest.mark.parametrize("name", ["../evil", "a/b", ".hidden", ""])
def test_suite_name_cannot_leave_the_runs_folder(tmp_path, capsys, name):
    p = tmp_path / "s.yaml"
    p.write_text(TINY.replace("name: tiny", f"name: '{name}'"))
    code, err = _run(capsys, "run", str(p), "--out", str(tmp_path / "runs"))
    assert code == 2 and "it names the run folder" in _one_line(err)
    assert not (tmp_path / "evil").exists()


def test_resume_of_a_run_stopped_before_its_first_cell_checks_the_suite_too(tmp_path):
    import json

    from svbench.errors import UserError
    from svbench.suite.runner import _check_resumable

    (tmp_path / "meta.json").write_text(json.dumps({"suite": {"name": "tiny"}}))
    _check_resumable(tmp_path, [], "tiny", "cpu")
    with pytest.raises(UserError, match="that run is of suite 'tiny', not 'smoke'"):
        _check_resumable(tmp_path, [], "smoke", "cpu")


_HOST_OOM = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to "
             "allocate 68719509504 bytes. Error code 12 (Cannot allocate memory)")


def test_host_out_of_memory_is_recorded_and_the_suite_goes_on(tmp_path, monkeypatch):
    """torch reports a failed host allocation as a RuntimeError, not MemoryError: still an ``oom`` cell."""
    from svbench.methods.sedghi import SedghiMethod

    def boom(self, layer, n):
        raise RuntimeError(_HOST_OOM)

    monkeypatch.setattr(SedghiMethod, "layer_svs", boom)
    p = tmp_path / "t.yaml"
    p.write_text(TINY)
    res = run_suite(str(p), out_root=tmp_path / "runs", progress=False)
    oom = [r for r in res.records if r["status"] == "oom"]
    assert oom and all(r["method"] == "sedghi" and "64.0 GiB" in r["reason"] for r in oom)
    assert ("none", "ok") in {(r["method"], r["status"]) for r in res.records}


def test_other_runtime_errors_are_not_called_out_of_memory(tmp_path, monkeypatch):
    from svbench.methods.sedghi import SedghiMethod

    def bug(self, layer, n):
        raise RuntimeError("shape mismatch: a bug, not a resource problem")

    monkeypatch.setattr(SedghiMethod, "layer_svs", bug)
    p = tmp_path / "t.yaml"
    p.write_text(TINY)
    res = run_suite(str(p), out_root=tmp_path / "runs", progress=False)
    failed = [r for r in res.records if r["status"] == "error"]
    assert failed and all(r["method"] == "sedghi" for r in failed)
    assert all(r["reason"] == "RuntimeError: shape mismatch: a bug, not a resource problem (traceback in errors.log)"
               for r in failed)
    assert not any(r["status"] == "oom" for r in res.records)
    assert ("none", "ok") in {(r["method"], r["status"]) for r in res.records}  # the suite went on
    assert res.cells_failed == len({r["cell_id"] for r in failed})
    log = (res.run_dir / "errors.log").read_text()
    assert "Traceback" in log and "shape mismatch" in log and "=== cell " in log


def test_a_failed_cell_makes_run_exit_1_with_one_line(tmp_path, capsys, monkeypatch):
    """An unexpected exception in one cell: the other cells run and are saved, the run says so in one line and
    exits 1 (a failure, not bad input: exit 2 stays for what the user can fix)."""
    from svbench.methods.sedghi import SedghiMethod

    def bug(self, layer, n):
        raise ValueError("solver returned garbage")

    monkeypatch.setattr(SedghiMethod, "layer_svs", bug)
    p = tmp_path / "t.yaml"
    p.write_text(TINY)
    code, err = _run(capsys, "run", str(p), "--out", str(tmp_path / "runs"), "--no-progress")
    line = _one_line(err)
    assert code == 1 and "cell(s) failed (status 'error'; tracebacks in" in line and "errors.log" in line


def test_spectrum_out_of_memory_is_one_line(tmp_path, capsys, monkeypatch):
    import svbench.checkpoint.spectrum as spec

    def boom(*a, **k):
        raise RuntimeError(_HOST_OOM)

    monkeypatch.setattr(spec, "layer_spectrum", boom)
    torch.save({"conv.weight": torch.randn(2, 2, 3, 3)}, tmp_path / "c.pt")
    code, err = _run(capsys, "spectrum", str(tmp_path / "c.pt"), "--input-size", "8", "--out", str(tmp_path / "o"))
    line = _one_line(err)
    assert code == 2 and "host out of memory (tried to allocate 64.0 GiB); use smaller shapes" in line


TWO_TASKS = TINY + """
  - name: other
    kind: sv
    methods: [none]
    timing: {warmup: 0, min_repeats: 1, max_repeats: 1, budget_s: 0.01}
    shapes:
      - {c_in: 2, c_out: 2, k: 1, n: 4}
"""


def test_tasks_selects_tasks_of_the_suite(tmp_path, capsys):
    path = tmp_path / "two.yaml"
    path.write_text(TWO_TASKS)
    code = main(["run", str(path), "--tasks", "other", "--out", str(tmp_path / "runs"), "--no-progress"])
    assert code == 0
    (results,) = list((tmp_path / "runs").glob("tiny/*/results.jsonl"))
    assert {r["task"] for r in load_results(results.parent)} == {"other"}


@pytest.mark.parametrize("tasks, what", [("layers,nope", "no task 'nope'"), (",", "no task named")])
def test_unknown_task_is_one_line(tmp_path, capsys, tasks, what):
    path = tmp_path / "two.yaml"
    path.write_text(TWO_TASKS)
    code, err = _run(capsys, "run", str(path), "--tasks", tasks, "--out", str(tmp_path / "runs"))
    line = _one_line(err)
    assert code == 2 and what in line and "its tasks are: layers, other" in line
    assert not (tmp_path / "runs").exists()  # refused before anything was written


def test_resume_hint_keeps_the_selection():
    """An interrupted `run --methods sedghi --tasks layers` must be resumed with the same selection, or the resumed
    run would add every other method and task of the suite."""
    import argparse

    from svbench.cli.run import resume_command

    args = argparse.Namespace(suite="my suite.yaml", methods="sedghi,none", tasks="layers", device="cpu",
                              threads=None)
    assert resume_command(args, "runs/x/1") == (
        "svbench run 'my suite.yaml' --methods sedghi,none --tasks layers --device cpu --resume runs/x/1"
    )


def test_spectrum_warns_about_weights_that_look_depthwise(tmp_path, capsys):
    """A state dict does not record groups: a (C, 1, k, k) weight after the first layer is read as a 1 -> C conv,
    which is another operator if it was depthwise -- said once on stderr and in spectrum.md, the run still ends 0."""
    torch.save({"first.weight": torch.randn(8, 1, 3, 3), "dw.weight": torch.randn(8, 1, 3, 3),
                "pw.weight": torch.randn(4, 8, 1, 1)}, tmp_path / "dw.pt")
    code, err = _run(capsys, "spectrum", str(tmp_path / "dw.pt"), "--input-size", "8", "--out", str(tmp_path / "o"))
    line = _one_line(err)
    assert code == 0 and line.startswith("svbench: warning: layer(s) dw have 1 input channel")
    assert "first" not in line.split("have")[0]  # a 1-channel FIRST layer (e.g. MNIST) is not flagged
    assert "depthwise or grouped" in (tmp_path / "o" / "spectrum.md").read_text()


@pytest.mark.parametrize("state, code, text", [
    ({"c.weight": torch.randn(0, 3, 3, 3)}, 2,
     "no readable conv weights: skipped 'c.weight' (empty, shape (0, 3, 3, 3))"),
    ({"c.weight": torch.randn(4, 3, 3, 5)}, 0, ""),  # non-square kernels are read since session 14
    ({"t.k1": torch.randn(3, 2), "t.k2": torch.randn(2, 2, 3, 3), "t.k3": torch.randn(5, 4)}, 2,
     "TT layer 't': cores k1 (3, 2), k2 (2, 2, 3, 3), k3 (5, 4) do not chain"),
    ({"c.weight": torch.empty(4, 3, 3, 3, device="meta")}, 2, "'c.weight' has no data (a meta-device tensor)"),
    ({"a.weight": torch.randn(4, 3, 3, 3), "b.weight": torch.randn(4, 4, 1, 7), "b.alpha": torch.tensor(1.0)}, 0,
     "svbench: warning: skipped 'b.weight' (a Cayley layer with a non-square 1x7 kernel"),
    ({"c.weight": torch.randn(4, 3, 3, 3).to_sparse()}, 0, ""),  # sparse layout: read densely
    ({"c.weight": torch.randn(4, 3, 3, 3).half()}, 0, ""),
    ({"c.weight": torch.randn(4, 3, 3, 3).bfloat16()}, 0, ""),
    ({"a.weight": torch.randn(4, 3, 3), "b.weight": torch.randn(4, 4, 3, 3), "c.weight": torch.randn(2, 4, 3, 3, 3)},
     0, "skipped 'a.weight' (3-D: a Conv1d kernel? svbench reads 2-D convs), 'c.weight' (5-D: a Conv3d kernel?"),
    ({"q.weight": torch.randint(-8, 8, (4, 3, 3, 3), dtype=torch.int8)}, 2,
     "no readable conv weights: skipped 'q.weight' (torch.int8 weights: quantized or complex kernels are not read"),
    ({"z.weight": torch.randn(4, 3, 3, 3, dtype=torch.complex64), "b.weight": torch.randn(4, 4, 3, 3)}, 0,
     "skipped 'z.weight' (torch.complex64 weights"),
], ids=["empty", "non-square", "tt-chain", "meta", "mixed", "sparse", "half", "bf16", "conv1d-3d", "int8", "complex"])
def test_odd_checkpoint_tensors(tmp_path, capsys, recwarn, state, code, text):
    """Found by feeding odd tensors to `spectrum`: each was a traceback (reshape, einsum, meta .item()); Conv1d /
    Conv3d, integer and complex weights were left out without a word (session 13)."""
    torch.save(state, tmp_path / "ck.pt")
    got, err = _run(capsys, "spectrum", str(tmp_path / "ck.pt"), "--input-size", "8", "--out", str(tmp_path / "o"))
    assert got == code and "Traceback" not in err, err
    if text:
        assert text in _one_line(err)
    else:  # nothing said: torch's two-line notice about validating sparse tensors is silenced too (found by fuzzing)
        assert "svbench:" not in err
        assert not [w for w in recwarn if "sparse" in str(w.message)], [str(w.message) for w in recwarn]


def test_sparse_checkpoint_tensor_with_an_index_beyond_its_size_is_refused(tmp_path, capsys):
    """torch 2.11 (the GPU machine's) loads such a tensor unchecked, and reading it densely writes out of bounds;
    svbench validates sparse tensors as they load, on every torch version."""
    with torch.sparse.check_sparse_tensor_invariants(enable=False):
        bad = torch.sparse_coo_tensor(torch.tensor([[0, 0, 0, 0], [0, 0, 0, 9], [0, 1, 2, 2], [0, 1, 2, 0]]),
                                      torch.ones(4), (4, 3, 3, 3), check_invariants=False)
    torch.save({"c.weight": bad}, tmp_path / "ck.pt")
    code, err = _run(capsys, "spectrum", str(tmp_path / "ck.pt"), "--input-size", "8")
    line = _one_line(err)
    assert code == 2 and line.startswith("svbench: error: cannot read checkpoint")
    assert "inconsistent with indices" in line


def test_bad_input_met_mid_run_keeps_the_finished_cells_and_says_how_to_resume(tmp_path, capsys):
    """A cell whose configuration cannot run (3xTF32 Gram products on float64 weights) stops the run with one line
    that names the cell, where the finished cells are and the resume command; fixing the suite and resuming works."""
    suite = """name: midway
dtype: float64
tasks:
  - name: first
    kind: sv
    methods: [sedghi]
    timing: {warmup: 0, min_repeats: 1, max_repeats: 1, budget_s: 0.01}
    shapes: [{c_in: 2, c_out: 2, k: 3, n: 4}]
  - name: second
    kind: sv
    methods: [gram]
    variants: {gram: [{precision: PRECISION}]}
    timing: {warmup: 0, min_repeats: 1, max_repeats: 1, budget_s: 0.01}
    shapes: [{c_in: 2, c_out: 2, k: 3, n: 4}]
"""
    p = tmp_path / "midway.yaml"
    p.write_text(suite.replace("PRECISION", "3xtf32"))
    code, err = _run(capsys, "run", str(p), "--out", str(tmp_path / "runs"), "--no-progress")
    line = _one_line(err)
    assert code == 2 and "needs float32 weights" in line and "(cell second|" in line
    run_dir = next((tmp_path / "runs" / "midway").iterdir())
    assert f"saved in {run_dir}" in line and f"--resume {run_dir}" in line
    kept = (run_dir / "results.jsonl").read_text().splitlines()
    assert kept and all('"task": "first"' in r for r in kept) and (run_dir / "table.md").exists()
    p.write_text(suite.replace("PRECISION", "float64"))
    code, err = _run(capsys, "run", str(p), "--resume", str(run_dir), "--no-progress")
    assert code == 0, err
    text = (run_dir / "results.jsonl").read_text()
    assert text.startswith("\n".join(kept)) and '"task": "second"' in text


@pytest.mark.parametrize("method, text", [
    ("nope", "unknown method 'nope'"), ("gram", "method 'gram' provides upper_bound, not all SVs; use --method sedghi"),
    ("tt", "method 'tt' needs its own layer type"),
])
def test_spectrum_method_is_checked_before_the_checkpoint(tmp_path, capsys, method, text):
    """Found by fuzzing: a wrong --method was reported as a problem of the first layer ("layer 'conv': unknown method
    ...") after the checkpoint was read; it is said first, whatever the checkpoint."""
    code, err = _run(capsys, "spectrum", str(tmp_path / "missing.pt"), "--method", method, "--input-size", "8")
    line = _one_line(err)
    assert code == 2 and text in line and "layer" not in line.split(":")[1] and "not found" not in line


@pytest.mark.parametrize("args, text", [
    (["--threads", "100000"], "--threads 100000: this machine gives the process"),  # was a libgomp crash, exit 1
    (["--out", ""], "--out is empty"),  # was: run folders in the current directory
    (["--methods", "all,none"], "'all' stands alone"),  # was: "unknown method 'all'"
    (["--tasks", "nope,nope"], "no task 'nope' in suite 'smoke'"),  # each unknown name once
], ids=["threads", "out", "methods-all", "tasks-twice"])
def test_run_flags_found_by_probing(tmp_path, capsys, monkeypatch, args, text):
    monkeypatch.chdir(tmp_path)
    out = [] if "--out" in args else ["--out", str(tmp_path / "runs")]
    code, err = _run(capsys, "run", "smoke", "--no-progress", *out, *args)
    assert code == 2 and text in _one_line(err)
    assert not list(tmp_path.rglob("results.jsonl"))  # refused before anything ran


def test_suite_asking_for_more_threads_than_cpus_is_refused(tmp_path, capsys):
    p = tmp_path / "greedy.yaml"
    p.write_text(TINY.replace("name: tiny", "name: greedy\nthreads: 100000"))
    code, err = _run(capsys, "run", str(p), "--out", str(tmp_path / "runs"), "--no-progress")
    assert code == 2 and "suite 'greedy' threads: 100000: this machine gives the process" in _one_line(err)


@pytest.mark.parametrize("command", [["compare", "RUN", "--baseline", "baselines/cpu-1thread/smoke.jsonl"],
                                     ["report", "RUN"], ["spectrum", "CK", "--input-size", "8"]])
def test_empty_out_is_refused_by_every_command(tmp_path, capsys, monkeypatch, command):
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY)
    res = run_suite(str(p), out_root=tmp_path / "runs", progress=False)
    torch.save({"c.weight": torch.randn(2, 2, 3, 3)}, tmp_path / "ck.pt")
    args = [str(res.run_dir) if a == "RUN" else str(tmp_path / "ck.pt") if a == "CK" else a for a in command]
    monkeypatch.chdir(tmp_path)
    before = sorted(x.name for x in tmp_path.iterdir())
    code, err = _run(capsys, *args, "--out", "")
    assert code == 2 and "--out is empty" in _one_line(err)
    assert sorted(x.name for x in tmp_path.iterdir()) == before  # nothing written into the current folder


def test_spectrum_device_option(tmp_path, capsys):
    """`spectrum --device`: cpu (default), cuda, auto; the device is written into spectrum.md."""
    torch.save({"c.weight": torch.randn(3, 2, 3, 3)}, tmp_path / "ck.pt")
    base = ["spectrum", str(tmp_path / "ck.pt"), "--input-size", "8"]
    code, err = _run(capsys, *base, "--device", "gpu", "--out", str(tmp_path / "x"))
    assert code == 2 and "unknown device 'gpu'; use cpu, cuda or auto" in _one_line(err)
    if not torch.cuda.is_available():
        code, err = _run(capsys, *base, "--device", "cuda", "--out", str(tmp_path / "x"))
        assert code == 2 and "no GPU is available; use --device cpu" in _one_line(err)
    code, err = _run(capsys, *base, "--device", "auto", "--out", str(tmp_path / "auto"))
    assert code == 0, err
    md = (tmp_path / "auto" / "spectrum.md").read_text()
    assert ("Computed on: cuda (" if torch.cuda.is_available() else "Computed on: cpu (") in md
    cpu_csv = tmp_path / "cpu" / "spectrum.csv"
    assert _run(capsys, *base, "--out", str(tmp_path / "cpu"))[0] == 0
    assert cpu_csv.read_text() == (tmp_path / "auto" / "spectrum.csv").read_text() or torch.cuda.is_available()


@pytest.mark.parametrize("tolerances,message", [
    ("{time_ratoi: 3}", "unknown tolerance(s) ['time_ratoi']; allowed: accuracy_drop"),
    ("{time_ratio: .nan}", "tolerance time_ratio must be a number >= 0, got nan"),
    ("{exact_tol: -1.0e-5}", "tolerance exact_tol must be a number >= 0"),
])
def test_suite_tolerances_are_checked_when_the_suite_is_read(tmp_path, capsys, tolerances, message):
    """A misspelt or impossible tolerance is said by `validate` and before `run` computes anything, not only when
    `compare` reads the finished run's meta.json."""
    path = tmp_path / "tol.yaml"
    path.write_text(TINY + f"tolerances: {tolerances}\n")
    code, err = _run(capsys, "validate", str(path))
    assert code == 2 and message in _one_line(err)
    code, err = _run(capsys, "run", str(path), "--out", str(tmp_path / "runs"), "--no-progress")
    assert code == 2 and message in _one_line(err) and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args,message", [
    (["run", "smoke", "--device", ""], "unknown device ''; use cpu, cuda or auto"),
    (["run", ""], "the suite name is empty; pass a suite YAML file or a bundled suite name"),
    (["validate", ""], "the suite name is empty"),
])
def test_empty_device_or_suite_name_is_said(tmp_path, capsys, monkeypatch, args, message):
    """An unset shell variable: `--device ''` ran the whole suite on its default device, `run ''` said '. is not a
    file'. Now one line, exit 2, nothing written."""
    monkeypatch.chdir(tmp_path)
    code, err = _run(capsys, *args)
    assert code == 2 and message in _one_line(err)
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize("extra,message", [
    ("seeds: [0, 1, 0]\n", "seeds repeats [0]; each seed runs once"),
    ("  - {name: nets, kind: network, models: [small_cnn, small_cnn], input_shape: [1, 8, 8]}\n",
     "models repeats ['small_cnn']; each model runs once"),
    ("  - {name: v, kind: sv, methods: [gram], variants: {gram: [{iters: 4}, {}, {iters: 4}]},"
     " shapes: [{c_in: 2, c_out: 2, k: 3, n: 4}]}\n",
     "task 'v' variants.gram[2] is the configuration of variants.gram[0] again"),
])
def test_a_repeated_seed_model_or_variant_is_said(tmp_path, capsys, extra, message):
    """Each ran the same cells twice and appended both records under one cell id (the table showed one, compare and
    --resume saw whichever came last)."""
    path = tmp_path / "rep.yaml"
    path.write_text(TINY + extra)
    code, err = _run(capsys, "validate", str(path))
    assert code == 2 and message in _one_line(err)
