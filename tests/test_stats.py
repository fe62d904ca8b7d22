"""Confidence intervals over seeds use Student's t, not the normal 1.96 (2.2x too narrow for 3 seeds)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from svbench.results.stats import mean_ci95_halfwidth, t_quantile_975
from svbench.results.tables import train_table


def test_t_quantiles_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for dof in range(1, 400):
        assert t_quantile_975(dof) == pytest.approx(float(stats.t.ppf(0.975, dof)), rel=1e-6), dof
    with pytest.raises(ValueError):
        t_quantile_975(0)


def _record(seed: int, metric: str, value: float) -> dict:
    return {"schema_version": 1, "suite": "s", "task": "t", "task_kind": "train",
            "cell_id": f"t|small_cnn@mnist|x|s{seed}", "method": "none", "method_label": "none", "metric": metric,
            "value": value, "status": "ok", "seed": seed, "unit": "fraction", "higher_is_better": True,
            "run_id": "r", "git_sha": "a" * 40, "device": "cpu", "device_name": "cpu", "torch_version": "2",
            "reason": None}


def test_train_table_ci_uses_student_t():
    acc = [0.80, 0.90, 0.85]
    table = train_table([_record(s, "test_accuracy", a) for s, a in enumerate(acc)])
    row = table.iloc[0]
    assert row["seeds"] == 3 and row["test_accuracy"] == pytest.approx(0.85)
    expected = 4.302653 * np.std(acc, ddof=1) / math.sqrt(3)
    assert row["test_accuracy_ci95"] == pytest.approx(expected, rel=1e-6)
    assert mean_ci95_halfwidth(np.array(acc)) == pytest.approx(expected, rel=1e-6)
    assert row["test_accuracy_ci95"] > 2 * 1.96 * np.std(acc, ddof=1) / math.sqrt(3)  # the old, normal interval
