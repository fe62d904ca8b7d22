"""``svbench compare RUN_DIR --baseline FILE``: regression verdicts; exit 1 on a regression."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("compare", help="compare a run with baseline records; non-zero exit on a regression")
    p.add_argument("run", help="run folder")
    p.add_argument("--baseline", required=True, help="baseline JSONL file (e.g. baselines/cpu-1thread/smoke.jsonl)")
    p.add_argument("--out", default="reports/ci", help="folder for <run_id>.md (default: reports/ci)")
    return p


def main(args: argparse.Namespace) -> int:
    from svbench.report.compare import compare_run

    passed, path, md = compare_run(args.run, args.baseline, args.out)
    print(md)
    print(f"wrote {path}")
    return 0 if passed else 1
