"""scripts/gpu-measure.sh dry-runs on CPU with tiny shapes: the one-call GPU measurement must work before device
time is spent on it, including when its time budget cuts the suite short."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash + timeout")
@pytest.mark.parametrize("budget", ["600", "4"])
def test_gpu_script_dry_run(tmp_path, budget):
    env = dict(os.environ, OUT=str(tmp_path / "out"), SVBENCH_DEVICE="cpu", SVBENCH_BUDGET_S=budget,
               SVBENCH_SUITE="tests/data/gpu-dry-run.yaml", PYTHON=sys.executable, OMP_NUM_THREADS="1")
    res = subprocess.run(["bash", "scripts/gpu-measure.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    out = tmp_path / "out"
    results = list(out.glob("runs/*/*/results.jsonl"))
    assert len(results) == 1
    records = [json.loads(line) for line in results[0].read_text().splitlines()]
    assert records and all(r["device"] == "cpu" for r in records)
    assert (out / "env.txt").read_text().startswith("python")
    assert (out / "report" / "report.md").exists()
    if budget == "600":
        methods = {r["method_label"] for r in records if r["task"] == "layers"}
        assert len([m for m in methods if m.startswith("sedghi")]) == 6  # every backend/driver variant ran
        assert any(r["metric"] == "network_clip_time_ms" for r in records)


def test_dry_run_suite_mirrors_the_gpu_suite():
    import yaml

    gpu = yaml.safe_load((ROOT / "suites" / "sv-speed-gpu-quick.yaml").read_text())
    dry = yaml.safe_load((ROOT / "tests" / "data" / "gpu-dry-run.yaml").read_text())
    gpu_tasks = {t["name"]: t for t in gpu["tasks"]}
    for task in dry["tasks"]:
        ref = gpu_tasks[task["name"]]
        assert task["kind"] == ref["kind"] and task["methods"] == ref["methods"]
        assert {k: len(v) for k, v in task.get("variants", {}).items()} == \
            {k: len(v) for k, v in ref.get("variants", {}).items()}
        if "sedghi" in ref.get("variants", {}):
            assert task["variants"]["sedghi"] == ref["variants"]["sedghi"]
