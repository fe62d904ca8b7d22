"""``svbench ls methods|suites|metrics``: what is available."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("ls", help="list methods, suites or metrics")
    p.add_argument("what", nargs="?", default="methods", choices=["methods", "suites", "metrics"])
    p.add_argument("pattern", nargs="?", default="*", help="glob filter on names (methods)")
    return p


def main(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True)
    if args.what == "methods":
        from svbench.methods import METHODS
        from svbench.methods.base import PROVIDES_HELP

        t = Table("method", "provides", "what it gives", "supports", "summary", "reference")
        for name in METHODS.names(args.pattern):
            cls = METHODS.get(name)
            t.add_row(name, cls.provides, PROVIDES_HELP[cls.provides], cls.supports.describe(), cls.summary,
                      cls.reference)
        console.print(t)
    elif args.what == "suites":
        from svbench.suite.loader import available_suites, load_suite

        t = Table("suite", "tasks", "description")
        for name in available_suites():
            s = load_suite(name)
            t.add_row(name, ", ".join(f"{x.name} ({x.kind})" for x in s.tasks), s.description)
        console.print(t)
    else:
        from svbench.results.schema import METRICS

        t = Table("metric", "unit", "better", "description")
        for name, info in METRICS.items():
            t.add_row(name, info.unit, "higher" if info.higher_is_better else "lower", info.description)
        console.print(t)
    return 0
