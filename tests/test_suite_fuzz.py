"""Seeded mutation fuzzing of the bundled suites: whatever a suite file holds, `svbench validate` answers with exit
0, or exit 2 and one line -- never a traceback (non-negotiable 4). Found: `kind: []` raised a TypeError."""

import copy
import random
from pathlib import Path

import pytest
import yaml

from svbench.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
SUITES = ("smoke", "default", "sv-speed-gpu-quick", "tt-speedup", "cifar10-vgg19", "sv-speed-cpu")
BAD_VALUES = [None, -1, 0, 1.5, "x", "", [], {}, [1, "a"], {"a": 1}, True, 10**12, float("nan"), "all", [0], 3,
              "__DELETE__"]


def _paths(obj, prefix=()):
    if prefix:
        yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


def _set(obj, path, value):
    for p in path[:-1]:
        obj = obj[p]
    if value == "__DELETE__":
        obj.pop(path[-1])
    else:
        obj[path[-1]] = copy.deepcopy(value)


@pytest.mark.parametrize("seed", range(4))
def test_mutated_suites_never_traceback(tmp_path, capsys, seed):
    rng = random.Random(seed)
    bases = [yaml.safe_load((ROOT / "suites" / f"{name}.yaml").read_text()) for name in SUITES]
    for trial in range(50):
        suite = copy.deepcopy(rng.choice(bases))
        for _ in range(rng.randint(1, 3)):
            _set(suite, rng.choice(list(_paths(suite))), rng.choice(BAD_VALUES))
        path = tmp_path / f"s{trial}.yaml"
        path.write_text(yaml.safe_dump(suite))
        code = main(["validate", str(path)])
        err = capsys.readouterr().err
        lines = [x for x in err.splitlines() if x.strip()]
        assert "Traceback" not in err and code in (0, 2), (yaml.safe_dump(suite), err)
        if code == 2:
            assert len(lines) == 1 and lines[0].startswith("svbench: error:"), err


def test_task_kind_of_the_wrong_type_is_one_line(tmp_path, capsys):
    path = tmp_path / "k.yaml"
    path.write_text("name: k\ntasks:\n  - {name: a, kind: [sv], shapes: [{c_in: 2, c_out: 2, k: 3, n: 4}]}\n")
    code = main(["validate", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and "tasks[0].kind: unknown task kind ['sv']" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def smoke_records(tmp_path_factory):
    from svbench.results.io import load_results
    from svbench.suite.runner import run_suite

    root = tmp_path_factory.mktemp("smoke")
    res = run_suite("smoke", tasks="layers", out_root=root, progress=False)
    return load_results(res.run_dir), res.run_dir / "results.jsonl"


RECORD_BAD = [None, -1, 1.5, "x", "", [], {}, True, 1e308, float("nan"), float("inf"), "ok", {"c_in": "a"}, [1, 2]]


@pytest.mark.parametrize("seed", range(2))
def test_mutated_results_never_traceback(tmp_path, capsys, smoke_records, seed):
    """report and compare on records with fields of the wrong type: exit 0/1, or 2 with one line."""
    import json

    records, baseline = smoke_records
    rng = random.Random(seed)
    for trial in range(15):
        recs = copy.deepcopy(records)
        for _ in range(rng.randint(1, 4)):
            rec = rng.choice(recs)
            key = rng.choice([*rec, "extra", "shape"])
            if isinstance(rec.get(key), dict) and rec[key] and rng.random() < 0.5:
                rec[key][rng.choice(list(rec[key]))] = copy.deepcopy(rng.choice(RECORD_BAD))
            else:
                rec[key] = copy.deepcopy(rng.choice(RECORD_BAD))
        run = tmp_path / f"r{trial}"
        run.mkdir()
        (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        for args in (["report", str(run), "--out", str(run / "rep")],
                     ["compare", str(run), "--baseline", str(baseline), "--out", str(run / "ci")]):
            code = main(args)
            err = capsys.readouterr().err
            lines = [x for x in err.splitlines() if x.strip() and not x.startswith("svbench: warning")]
            assert "Traceback" not in err and code in (0, 1, 2), (args[0], err)
            if code == 2:
                assert len(lines) == 1 and lines[0].startswith("svbench: error:"), err


def test_record_field_of_the_wrong_type_is_one_line(tmp_path, capsys, smoke_records):
    import json

    records, _ = smoke_records
    bad = dict(records[0], suite=["smoke"])
    (tmp_path / "results.jsonl").write_text(json.dumps(bad) + "\n")
    code = main(["report", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "results.jsonl:1: field 'suite' is list ['smoke'], expected a string" in err
