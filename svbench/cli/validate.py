"""``svbench validate SUITE...``: check suite files without running them."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("validate", help="check suite files without running them")
    p.add_argument("suites", nargs="+", help="suite YAML files or bundled names")
    return p


def main(args: argparse.Namespace) -> int:
    from svbench.errors import UserError
    from svbench.suite.loader import load_suite
    from svbench.suite.runner import plan_cells

    bad = 0
    for s in args.suites:
        try:
            suite = load_suite(s)
            cells = plan_cells(suite)
            print(f"ok: {s} ({len(suite.tasks)} task(s), {len(cells)} cell(s))")
        except UserError as e:
            bad += 1
            sys.stderr.write(f"svbench: error: {e}\n")
    return 2 if bad else 0
