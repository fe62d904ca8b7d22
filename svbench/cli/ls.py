"""``svbench ls methods|suites|metrics``: what is available."""

from __future__ import annotations

import argparse
import dataclasses


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("ls", help="list methods, suites or metrics")
    p.add_argument("what", nargs="?", default="methods", choices=["methods", "suites", "metrics"])
    p.add_argument("pattern", nargs="?", default="*",
                   help="glob filter on names (methods); one method also lists its config options")
    return p


def _options_table(cls: type):  # type: ignore[no-untyped-def]
    """The method's config options (name, type, default): what a suite's ``variants`` entry may set."""
    from rich.table import Table

    t = Table("option", "type", "default", title=f"{cls.name} options (suite: variants: {{{cls.name}: [{{...}}]}})")
    for f in dataclasses.fields(cls.Config):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        t.add_row(f.name, kind, repr(default))
    return t


def main(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True)
    if not console.is_terminal:  # piped or redirected: rich would squeeze the tables into 80 columns
        console = Console(soft_wrap=True, width=180)
    if args.what == "methods":
        from svbench.errors import UserError
        from svbench.methods import METHODS
        from svbench.methods.base import PROVIDES_HELP

        names = METHODS.names(args.pattern)
        if not names:
            raise UserError(f"no method matches {args.pattern!r}; available: {', '.join(METHODS.names())}")
        t = Table("method", "provides", "what it gives", "supports", "summary", "reference")
        for name in names:
            cls = METHODS.get(name)
            t.add_row(name, cls.provides, PROVIDES_HELP[cls.provides], cls.supports.describe(), cls.summary,
                      cls.reference)
        console.print(t)
        if len(names) == 1:
            cls = METHODS.get(names[0])
            if dataclasses.fields(cls.Config):
                console.print(_options_table(cls))
            else:
                console.print(f"{cls.name} has no options")
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
