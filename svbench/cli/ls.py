"""``svbench ls methods|suites|metrics|models``: what is available."""

from __future__ import annotations

import argparse
import dataclasses


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("ls", help="list methods, suites, metrics or models")
    p.add_argument("what", nargs="?", default="methods", choices=["methods", "suites", "metrics", "models"])
    p.add_argument("pattern", nargs="?", default="*",
                   help="glob filter on names; one method also lists its config options")
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
            grids = (("; h x w grids" if cls.rectangular_grids else "; square grids")
                     + ("; stride / dilation per axis" if cls.anisotropic else ""))
            t.add_row(name, cls.provides, PROVIDES_HELP[cls.provides], cls.supports.describe() + grids, cls.summary,
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
        for name in _matching(available_suites(), args.pattern, "suite"):
            s = load_suite(name)
            t.add_row(name, ", ".join(f"{x.name} ({x.kind})" for x in s.tasks), s.description)
        console.print(t)
    elif args.what == "models":
        console.print(_models_table(args.pattern))
        console.print("Also torchvision:NAME (spectrum --model, network tasks): torchvision's classification "
                      "architectures, no weights, 3-channel inputs; and your own, FILE.py:NAME or MODULE:NAME with "
                      "literal arguments if needed (nets/resnet.py:ResNet(depth=20); train tasks too).")
    else:
        from svbench.results.schema import METRICS

        t = Table("metric", "unit", "better", "description")
        for name in _matching(list(METRICS), args.pattern, "metric"):
            info = METRICS[name]
            t.add_row(name, info.unit, "higher" if info.higher_is_better else "lower", info.description)
        console.print(t)
    return 0


def _matching(names: list[str], pattern: str, kind: str) -> list[str]:
    """``names`` that match the glob ``pattern``; none is one clear error naming what there is."""
    import fnmatch

    from svbench.errors import UserError

    found = [n for n in names if fnmatch.fnmatch(n, pattern)]
    if not found:
        raise UserError(f"no {kind} matches {pattern!r}; available: {', '.join(names)}")
    return found


def _models_table(pattern: str):  # type: ignore[no-untyped-def]
    """Registered models at their default arguments (what ``--model NAME`` and a suite's ``model:`` build): default
    input, conv layers, parameters, how ``lipschitz_bound`` composes its certified bound (along the fx graph; the
    chain product when fx cannot trace a chain model; "no" when neither applies), and what they are. Built on the
    meta device: nothing is allocated or initialised."""
    import inspect

    import torch
    from rich.table import Table
    from torch import nn

    from svbench.metrics.lipschitz_graph import UntraceableModel, trace
    from svbench.models import MODELS

    def route(model: nn.Module) -> str:
        try:
            trace(model)
            return "graph"
        except UntraceableModel:
            return "chain" if getattr(model, "is_chain", False) else "no (untraceable)"

    t = Table("model", "default input", "convs", "parameters", "certified bound", "description")
    for name in _matching(MODELS.names(), pattern, "model"):
        factory = MODELS.get(name)
        defaults = {k: p.default for k, p in inspect.signature(factory).parameters.items()}
        with torch.device("meta"):
            model = factory()
        convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
        params = sum(p.numel() for p in model.parameters())
        doc = inspect.getdoc(factory) or ""
        size = defaults.get("image_size", "?")
        side = f"{size[0]} x {size[1]}" if isinstance(size, tuple) else f"{size}^2"
        shape = f"{defaults.get('in_channels', '?')} x {side}"
        t.add_row(name, shape, str(convs), f"{params / 1e6:.2f} M", route(model),
                  doc.replace("\n", " ").split(". ")[0].rstrip(".") + ".")
    return t
