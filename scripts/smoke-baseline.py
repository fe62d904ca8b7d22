"""Put this machine's records into the smoke baseline (baselines/cpu-1thread/smoke.jsonl): the smoke suite run
``--runs`` times at 1 thread, every timing the median of the runs (one run's timings jump ~1.9x on the first cells),
every other value from the first run; this machine's earlier records (same ``device_name``) are replaced, other
machines' records kept. Run it with nothing else running, and say why in the commit message.

    OMP_NUM_THREADS=1 python scripts/smoke-baseline.py [--runs 3] [--baseline baselines/cpu-1thread/smoke.jsonl]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from svbench.report.compare import TIME_METRICS
from svbench.suite.runner import run_suite


def median_records(runs: list[list[dict]]) -> list[dict]:
    """The first run's records with each ok timing replaced by its median over the runs (same cell and metric)."""
    by_key = [{(r["cell_id"], r["metric"]): r for r in run} for run in runs]
    out = []
    for r in runs[0]:
        r = dict(r)
        if r["metric"] in TIME_METRICS and r.get("value") is not None and r["status"] == "ok":
            key = (r["cell_id"], r["metric"])
            values = [m[key]["value"] for m in by_key if m.get(key, {}).get("value") is not None]
            r["value"] = statistics.median(values)
            r["extra"] = dict(r.get("extra") or {}, baseline_note=f"median of {len(values)} smoke runs")
        out.append(r)
    return out


def merge(existing: list[dict], mine: list[dict]) -> list[dict]:
    """Other machines' records as they were, then this machine's (replacing any it had)."""
    names = {r["device_name"] for r in mine}
    return [r for r in existing if r.get("device_name") not in names] + mine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", default="baselines/cpu-1thread/smoke.jsonl")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run_suite("smoke", out_root=Path(tmp) / str(i), progress=False).records for i in range(args.runs)]
    path = Path(args.baseline)
    existing = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    records = merge(existing, median_records(runs))
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    first = runs[0][0]
    print(f"{path}: {len(records) - len(runs[0])} records of other machines kept, {len(runs[0])} of "
          f"{first['device_name']} ({first['num_threads']} thread(s), timings the median of {args.runs} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
