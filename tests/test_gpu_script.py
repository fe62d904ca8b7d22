"""scripts/gpu-measure.sh dry-runs on CPU with tiny shapes: the one-call GPU measurement must work before device
time is spent on it, including when its time budget cuts the suite short."""

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import triton_interpreter_or_skip

ROOT = Path(__file__).resolve().parent.parent


# Installed here but absent on the GPU machine (it has torch, pandas, pyyaml, rich, matplotlib, torchmetrics only):
# the one-call script must not need any of them. Import names, then distribution names.
NOT_ON_GPU_MACHINE = ("tabulate", "mlxtend", "torchvision", "scipy", "sklearn", "pyautoattack", "autoattack",
                      "foolbox", "hypothesis", "asv", "pytest")
DISTS_NOT_ON_GPU_MACHINE = ("tabulate", "mlxtend", "torchvision", "scipy", "scikit-learn", "pyautoattack",
                            "foolbox", "hypothesis", "asv", "pytest")

# sys.modules[name] = None: `import name` fails and importlib.util.find_spec(name) answers None, as for a package
# that is not installed; importlib.metadata answers PackageNotFoundError for the distributions, so optional-
# dependency probes (torchmetrics asks the metadata for scipy) take their "absent" branch as on that machine.
BLOCKER = """
import importlib.metadata as _md
import sys
import tarfile
for _name in {names!r}:
    sys.modules[_name] = None
_DISTS = {dists!r}
def _blocked(real):
    def call(name, *args, **kwargs):
        if str(name).lower().replace("_", "-") in _DISTS:
            raise _md.PackageNotFoundError(name)
        return real(name, *args, **kwargs)
    return call
_md.version = _blocked(_md.version)
_md.distribution = _blocked(_md.distribution)
_md.metadata = _blocked(_md.metadata)
_md.requires = _blocked(_md.requires)
"""


def _gpu_machine_pythonpath(tmp_path) -> str:
    """A folder whose sitecustomize.py makes the packages the GPU machine lacks unimportable."""
    site = tmp_path / "gpu_machine_site"
    site.mkdir()
    blocker = BLOCKER.format(names=set(NOT_ON_GPU_MACHINE), dists=set(DISTS_NOT_ON_GPU_MACHINE))
    (site / "sitecustomize.py").write_text(blocker)
    return str(site)


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash + timeout")
@pytest.mark.parametrize("budget,suite", [("600", "gpu-dry-run"), ("4", "gpu-dry-run"),
                                          ("600", "gpu-followup-dry-run"), ("600", "gpu-next-dry-run"),
                                          ("600", "gpu-check-dry-run"), ("600", "gpu-run5-dry-run"),
                                          ("600", "gpu-run6-dry-run"), ("600", "gpu-run7-dry-run"),
                                          ("600", "gpu-run8-dry-run"), ("600", "gpu-run9-dry-run")])
def test_gpu_script_dry_run(tmp_path, budget, suite):
    """The budget-600 runs also hide every package the GPU machine lacks, as there."""
    env = dict(os.environ, OUT=str(tmp_path / "out"), SVBENCH_DEVICE="cpu", SVBENCH_BUDGET_S=budget,
               SVBENCH_SUITE=f"tests/data/{suite}.yaml", PYTHON=sys.executable, OMP_NUM_THREADS="1")
    if budget == "600":
        env["PYTHONPATH"] = _gpu_machine_pythonpath(tmp_path)
    res = subprocess.run(["bash", "scripts/gpu-measure.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    out = tmp_path / "out"
    _assert_device_tool_returns_all(out)
    if budget == "4":
        # cut by the budget: wherever the cut lands, the script says so and returns what finished; on a loaded
        # machine it can land before the first cell (the runner keeping finished cells on SIGINT: test_report_compare)
        log = (out / "run.log").read_text()
        assert re.search(r"svbench run exit code: (124|130) ", log), log
        if not (out / "results.jsonl").exists():
            assert "no results were written" in res.stdout and not (out / "report.md").exists()
            return
    assert (out / "results.jsonl").exists() and (out / "report.md").exists()
    work = tmp_path / "unpacked"
    work.mkdir()
    with tarfile.open(out / "gpu-results.tar.gz") as tar:
        tar.extractall(work, filter="data")
    results = list(work.glob("runs/*/*/results.jsonl"))
    assert len(results) == 1
    assert results[0].read_bytes() == (out / "results.jsonl").read_bytes()
    records = [json.loads(line) for line in results[0].read_text().splitlines()]
    assert records and all(r["device"] == "cpu" for r in records)
    assert (work / "env.txt").read_text().startswith("python")
    assert (work / "report" / "report.md").exists()
    out = work
    if suite == "gpu-followup-dry-run":
        assert any(r["metric"] == "network_clip_err_rel" for r in records)
        assert {r["method_label"] for r in records if r["task"] == "wrn"} >= {"sedghi", "sedghi(chunks=4)",
                                                                               "gram(precision=3xtf32)", "reference"}
    elif suite == "gpu-next-dry-run":
        assert {r["method_label"] for r in records if r["task"] == "calls"} == {
            *(f"sedghi(chunks={c})" for c in (1, 4, 16, 64)), "sedghi(chunks=16, streams=4)",
            "sedghi(chunks=64, streams=8)", "sedghi(backend=svdvals, driver=gesvd)"}
        assert {r["method_label"] for r in records if r["task"] == "wrn"} >= {
            "gram", "gram(products=complex)", "sedghi", "sedghi(merge=pad)", "sedghi(merge=none)",
            "sedghi(streams=4)", "sedghi(merge=pad, streams=4)", "reference"}
        assert [r["task"] for r in records].index("calls") < [r["task"] for r in records].index("networks")
        assert any(r["metric"] == "network_clip_err_rel" for r in records)
    elif suite == "gpu-check-dry-run":
        assert {r["task"] for r in records} == {"networks", "wrn-tt", "memory"}
        assert {r["status"] for r in records} == {"ok"}
        assert any(r["metric"] == "network_clip_err_rel" for r in records if r["task"] == "networks")
    elif suite == "gpu-run5-dry-run":
        assert [r["task"] for r in records].index("wrn") < [r["task"] for r in records].index("networks")
        assert {r["status"] for r in records} == {"ok"}
        assert {r["method_label"] for r in records if r["task"] == "wrn"} >= {
            "reference", "sedghi", "sedghi(split=True)", "gram", "gram(products=real)"}
        assert not any(r["metric"] == "network_clip_err_rel" for r in records if r["task"] == "wrn")
        assert {r["method_label"] for r in records if r["metric"] == "network_profile_busy_ms"} >= {
            "sedghi", "sedghi(split=True)", "gram(products=real)"}
        assert list(work.glob("runs/*/*/profiles/wrn*.txt"))  # the full tables travel in the archive
        assert any(r["metric"] == "network_clip_err_rel" for r in records if r["task"] == "networks")
    elif suite == "gpu-run6-dry-run":
        assert {r["status"] for r in records} == {"ok"}
        assert {r["method_label"] for r in records} == {
            "reference", "sedghi", "tt(rank=8, init=orthogonal)", "gram", "gram(products=real)"}
        assert {r["method_label"] for r in records if r["metric"] == "network_profile_busy_ms"} == {
            "tt(rank=8, init=orthogonal)"}
    elif suite == "gpu-run7-dry-run":
        assert {r["status"] for r in records} == {"ok"}
        assert {r["method_label"] for r in records} == {"gram", "gram(products=complex)", "gram(products=real)"}
        assert any(r["metric"] == "network_min_bound_rel_err" for r in records)
    elif suite == "gpu-run8-dry-run":
        assert {r["status"] for r in records} == {"ok"}
        assert {r["method_label"] for r in records} == {"reference", "sedghi", "tt(rank=8, init=orthogonal)", "gram"}
        clipped = {r["method_label"] for r in records if r["metric"] == "network_clip_time_ms"}
        assert clipped == {"reference", "sedghi"}
    elif suite == "gpu-run9-dry-run":
        assert {r["status"] for r in records} == {"ok"}
        assert {r["metric"] for r in records} == {"network_sv_time_ms", "network_sigma_max"}  # timing only
        assert [r["method"] for r in records if r["metric"] == "network_sv_time_ms"] == ["reference", "tt", "sedghi"]
    elif budget == "600":
        methods = {r["method_label"] for r in records if r["task"] == "layers"}
        assert len([m for m in methods if m.startswith("sedghi")]) == 6  # every backend/driver variant ran
        assert any(r["metric"] == "network_clip_time_ms" for r in records)
        assert any(r["metric"] == "forward_vs_conv_paired" and r["method"] == "cayley" for r in records)
        assert "halted; None in sys.modules" not in (out / "run.log").read_text()


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash + timeout")
def test_gpu_script_runs_only_the_named_tasks(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path / "out"), SVBENCH_DEVICE="cpu", SVBENCH_BUDGET_S="600",
               SVBENCH_SUITE="tests/data/gpu-check-dry-run.yaml", SVBENCH_TASKS="memory", PYTHON=sys.executable,
               OMP_NUM_THREADS="1")
    res = subprocess.run(["bash", "scripts/gpu-measure.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert records and {r["task"] for r in records} == {"memory"}


def _assert_device_tool_returns_all(out: Path) -> None:
    """The device tool brings back at most 8 files, none more than 2 folders below $OUT, names of [A-Za-z0-9._-]."""
    files = [f for f in out.rglob("*") if f.is_file()]
    assert 0 < len(files) <= 8, files
    for f in files:
        rel = f.relative_to(out)
        assert len(rel.parts) <= 3, rel
        assert all(re.fullmatch(r"[A-Za-z0-9._-]+", part) for part in rel.parts), rel
        assert f.stat().st_size < 16 * 2**20, rel


def test_package_blocker_blocks(tmp_path):
    """The emulation above is real: with it, importing a blocked package fails in a fresh interpreter."""
    env = dict(os.environ, PYTHONPATH=_gpu_machine_pythonpath(tmp_path))
    for probe in ("import tabulate", "import scipy.signal", "import importlib.metadata as m; m.version('scipy')"):
        res = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
        assert res.returncode != 0 and "NotFoundError" in res.stderr, probe
    res = subprocess.run([sys.executable, "-c", "import pandas, yaml, rich, matplotlib, torchmetrics"], env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("gpu_suite,dry_suite", [("sv-speed-gpu-quick", "gpu-dry-run"),
                                                 ("sv-speed-gpu-followup", "gpu-followup-dry-run"),
                                                 ("sv-speed-gpu-next", "gpu-next-dry-run"),
                                                 ("sv-speed-gpu-check", "gpu-check-dry-run"),
                                                 ("sv-speed-gpu-run5", "gpu-run5-dry-run"),
                                                 ("sv-speed-gpu-run6", "gpu-run6-dry-run"),
                                                 ("sv-speed-gpu-run7", "gpu-run7-dry-run"),
                                                 ("sv-speed-gpu-run8", "gpu-run8-dry-run"),
                                                 ("sv-speed-gpu-run9", "gpu-run9-dry-run")])
def test_dry_run_suite_mirrors_the_gpu_suite(gpu_suite, dry_suite):
    import yaml

    gpu = yaml.safe_load((ROOT / "suites" / f"{gpu_suite}.yaml").read_text())
    dry = yaml.safe_load((ROOT / "tests" / "data" / f"{dry_suite}.yaml").read_text())
    gpu_tasks = {t["name"]: t for t in gpu["tasks"]}
    for task in dry["tasks"]:
        ref = gpu_tasks[task["name"]]
        assert task["kind"] == ref["kind"] and task["methods"] == ref["methods"]
        assert bool(task.get("paired_forward")) == bool(ref.get("paired_forward"))
        assert {k: len(v) for k, v in task.get("variants", {}).items()} == \
            {k: len(v) for k, v in ref.get("variants", {}).items()}
        if "sedghi" in ref.get("variants", {}):
            assert task["variants"]["sedghi"] == ref["variants"]["sedghi"]


def test_gram_products_paired_script_prints_its_table(capsys):
    """scripts/gram-products-paired.py (the crossover behind ``products: auto``) runs and prints one row per shape."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("paired", ROOT / "scripts" / "gram-products-paired.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(shapes=[(4, 4), (6, 4)], rounds=2, reps=1)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 2 and all(len(r.split("|")) == 10 for r in rows)
    assert float(rows[0].split("|")[5]) > 0


def test_svd_aspect_audit_script_prints_its_two_tables(capsys):
    """scripts/svd-aspect-audit.py (the CPU ``auto`` aspect crossover of reports/cpu-performance.md, session 10)
    runs with --quick: an accuracy row per shape within the float32 SVD's error range, and a timing row."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("aspect", ROOT / "scripts" / "svd-aspect-audit.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--quick"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 3
    assert all(0 < float(r.split("|")[3]) < 2e-6 for r in rows[:2])  # float32 SVD error, in the class at this size
    assert float(rows[2].split("|")[5]) > 0


def test_gram_real_step_paired_script_prints_its_rows(capsys):
    """scripts/gram-real-step-paired.py (the real-form step figures of reports/cpu-performance.md) runs with --quick:
    its new step is svbench's (the script asserts it), both timings positive, the bounds alike."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("step", ROOT / "scripts" / "gram-real-step-paired.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--quick"]) == 0
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]
    rows = [r for r in rows if r[1].strip().isdigit()]
    assert len(rows) == 2 and all(float(r[4]) > 0 and float(r[5]) > 0 and float(r[10]) < 1e-5 for r in rows)


def test_gram_first_paired_script_prints_its_rows(capsys):
    """scripts/gram-first-paired.py (the first-product figures of reports/cpu-performance.md) runs with --quick: a
    row per shape with both timings, the same bound both ways, and auto's choice."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("first", ROOT / "scripts" / "gram-first-paired.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--quick"]) == 0
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines() if "->" in line]
    assert len(rows) == 2
    assert all(float(r[2]) > 0 and float(r[3]) > 0 and float(r[8]) < 1e-5 for r in rows)
    assert [r[9].strip() for r in rows] == ["transfer", "kernel"]


def test_gram_screen_paired_script_prints_its_rows(capsys):
    """scripts/gram-screen-paired.py (the screening figures of reports/cpu-performance.md) runs with --quick: a row
    per model with both timings and no difference between the screened and unscreened bounds."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("screen", ROOT / "scripts" / "gram-screen-paired.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--quick"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| small CNN")]
    assert len(rows) == 2
    assert all(float(r.split("|")[2]) > 0 and float(r.split("|")[8]) == 0.0 for r in rows)


def test_frequency_free_paired_script_prints_its_table(capsys):
    """scripts/frequency-free-paired.py (the CPU figures of reports/frequency-free-cpu) runs and prints its two rows."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ffp", ROOT / "scripts" / "frequency-free-paired.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(model_name="small_cnn", image=16, rounds=1, reps=1)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| all SVs")
            or line.startswith("| clipping pass")]
    assert len(rows) == 2 and all(float(r.split("|")[4]) > 0 for r in rows)


def test_clip_correction_paired_script_prints_its_table(capsys):
    """scripts/clip-correction-paired.py (the CPU figures of the clipping correction) prints its four rows, with the
    two forms' kernels equal to float32 rounding."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ccp", ROOT / "scripts" / "clip-correction-paired.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(model_name="small_cnn", image=16, rounds=1, reps=1)
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith(("| first", "| second"))]
    assert len(rows) == 4 and all(float(r.split("|")[5]) > 0 and float(r.split("|")[6]) < 1e-5 for r in rows)
    (step,) = [line for line in lines if line.startswith("| sedghi_clip per layer")]
    assert float(step.split("|")[4]) > 0 and float(step.split("|")[6]) < 1e-5


def test_gpu_probe_runs_with_tiny_shapes_on_the_gpu_machines_packages(tmp_path):
    """scripts/gpu-probe.py (run 6's paired probes) on CPU with tiny shapes and only the GPU machine's packages:
    every section prints its table or says why it is skipped, none fails."""
    env = dict(os.environ, PYTHONPATH=f"{_gpu_machine_pythonpath(tmp_path)}{os.pathsep}{ROOT}", OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "scripts/gpu-probe.py", "--tiny", "--device", "cpu", "--rounds", "1",
                          "--reps", "1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "Traceback" not in out
    for section in ("tt-fold", "gram-products", "gesvda", "gram-graph", "overheads", "gram-networks", "gram-fused",
                    "gram-screen", "gram-first"):
        assert f"## {section}" in out
    (first,) = [line for line in out.splitlines() if line.startswith("| small_cnn | auto |")]
    assert float(first.split("|")[6]) < 1e-5  # kernel and transfer first products: the same bound
    assert "| fold (R factors + cores) |" in out and "| 8 | 8 | 34 |" in out and "| small_cnn |" in out
    assert out.count("skipped:") == 3  # gesvda, CUDA graphs and the fused Triton step are timed on a GPU


def test_gpu_probe_fused_gram_section_runs_in_the_triton_interpreter(tmp_path):
    """The fused-step section (timed on a GPU only) runs end to end through Triton's CPU interpreter."""
    triton_interpreter_or_skip()
    env = dict(os.environ, PYTHONPATH=f"{_gpu_machine_pythonpath(tmp_path)}{os.pathsep}{ROOT}", OMP_NUM_THREADS="1",
               TRITON_INTERPRET="1")
    res = subprocess.run([sys.executable, "scripts/gpu-probe.py", "--tiny", "--device", "cpu", "--rounds", "1",
                          "--reps", "1", "--sections", "gram-fused"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0 and "Traceback" not in res.stdout, res.stdout + res.stderr
    assert "| 20 | 4 |" in res.stdout and "small_cnn whole bound: real" in res.stdout

