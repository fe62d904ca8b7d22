"""``svbench report RUN_DIR... [--out DIR]``: markdown, CSV and a self-contained HTML page with plots."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("report", help="tables and plots (md, csv, html) from one or more run folders")
    p.add_argument("runs", nargs="+", help="run folders or results.jsonl files")
    p.add_argument("--out", default=None, help="output folder (default: the first run folder's report/)")
    return p


def main(args: argparse.Namespace) -> int:
    from svbench.report.render import build_report

    first = Path(args.runs[0])
    out = Path(args.out) if args.out else (first if first.is_dir() else first.parent) / "report"
    paths = build_report(args.runs, out)
    print(paths["markdown"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
