"""``svbench spectrum CKPT [CKPT ...] --input-size N|HxW [--method sedghi] [--device cpu|cuda|auto] [[--model NAME]
--input-shape C,H,W [--no-lipschitz]] [--trust-checkpoint] [--out DIR] [--no-progress]`` (``--input-shape`` without
``--model``: the model the checkpoint pickles)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from svbench.errors import UserError

if TYPE_CHECKING:
    from svbench.checkpoint.lipschitz import ModelBound
    from svbench.checkpoint.spectrum import LayerSpectrum, SpectrumPlan


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("spectrum", help="all SVs of a checkpoint's conv layers (CSV, markdown, plot); several "
                       "checkpoints side by side")
    p.add_argument("checkpoint", nargs="+", help="one or more checkpoints (.pt/.pth state dicts or pickled models, "
                   ".safetensors); with several, each gets "
                   "its own folder under --out and comparison.md / comparison.png set them side by side")
    p.add_argument("--input-size", default=None, help="input grid of every conv: N (N x N) or HxW (stride 1 assumed)")
    p.add_argument("--model", default=None, help="real per-layer sizes and strides from a model: a registered name "
                   "(svbench ls models), torchvision:NAME (e.g. torchvision:resnet50), or your own: FILE.py:NAME or "
                   "MODULE:NAME, with literal arguments if it needs them ('nets/resnet.py:ResNet(depth=20)')")
    p.add_argument("--input-shape", default=None, help="C,H,W of the model input, e.g. 3,32,32 (with --model; alone "
                   "for a checkpoint that pickles its model, torch.save(model), with --trust-checkpoint)")
    p.add_argument("--no-lipschitz", action="store_true", help="with a model (--model, or --input-shape for a "
                   "pickled one): skip the certified Lipschitz bound of the whole model (lipschitz.md)")
    p.add_argument("--method", default="sedghi", help="an all-SVs method (default: sedghi)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto: where the SVs are computed")
    p.add_argument("--out", default=None, help="output folder (default: reports/spectrum/<checkpoint name>)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow a checkpoint that needs to run code when loaded (only for files you trust)")
    p.add_argument("--layers", default=None, help="only these convs: names or shell-style patterns, comma-separated "
                   "(e.g. 'layer4.*,conv1'); the certified bound stays the whole model's")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it is shown on a terminal only)")
    return p


def _parse_shape(text: str | None) -> tuple[int, int, int] | None:
    if text is None:
        return None
    try:
        parts = tuple(int(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 1:
        raise UserError(f"--input-shape must be C,H,W of positive integers, e.g. 3,32,32 or 1,64,128; got {text!r}")
    return parts  # type: ignore[return-value]


def _parse_size(text: str | None) -> int | tuple[int, int] | None:
    """--input-size: N (an N x N grid) or HxW."""
    if text is None:
        return None
    try:
        parts = tuple(int(x) for x in text.lower().split("x"))
    except ValueError:
        parts = ()
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise UserError(f"--input-size must be a positive integer N or HxW (e.g. 32 or 64x128); got {text!r}")
    return parts[0] if len(parts) == 1 or parts[0] == parts[1] else parts  # type: ignore[return-value]


def main(args: argparse.Namespace) -> int:
    import warnings

    from svbench.checkpoint.spectrum import (
        compute_spectrum,
        depthwise_note,
        plan_spectrum,
        prepare_out,
        select_layers,
        spectrum_markdown,
        write_comparison,
        write_spectrum,
    )

    size = _parse_size(args.input_size)
    if args.input_size is not None and args.model is not None:
        raise UserError("pass either --input-size N (every conv on N x N) or --model NAME --input-shape C,H,W, "
                        "not both")
    if args.input_size is not None and args.input_shape is not None:
        raise UserError("pass either --input-size N (every conv on N x N) or --input-shape C,H,W (the geometry from "
                        "a model: --model NAME, or the one a checkpoint pickles), not both")
    if args.no_lipschitz and args.model is None and args.input_shape is None:
        raise UserError("--no-lipschitz only applies with a model (--model NAME --input-shape C,H,W, or --input-shape "
                        "for a pickled model); without one no bound is computed")
    shape = _parse_shape(args.input_shape)
    plans = [plan_spectrum(  # reads every checkpoint and checks every layer: bad input is said before any SV
        path, input_size=size, model=args.model, input_shape=shape, method=args.method,
        trust=args.trust_checkpoint, device=args.device, lipschitz=not args.no_lipschitz,
    ) for path in args.checkpoint]
    if args.layers is not None:  # after every checkpoint is read: a pattern matching nothing is said before any SV
        patterns = [pat.strip() for pat in args.layers.split(",") if pat.strip()]
        if not patterns:
            raise UserError("--layers is empty; pass layer names or shell-style patterns, e.g. 'layer4.*,conv1'")
        plans = [select_layers(plan, patterns, path) for plan, path in zip(plans, args.checkpoint)]
    paths = [Path(c) for c in args.checkpoint]
    several = len(paths) > 1
    root = Path(args.out) if args.out else Path("reports/spectrum") / "-vs-".join(p.stem for p in paths)
    folders = [root / name for name in _folder_names(paths)] if several else [root]
    made = [not folder.exists() for folder in folders]
    outs = [prepare_out(folder) for folder in folders]  # an unwritable folder is said before any SV, too
    results: list[tuple[str, list[LayerSpectrum]]] = []
    bounds: list[ModelBound] = []
    bar = _LayerProgress(sum(len(p.layers) for p in plans) + sum(p.model_name is not None for p in plans),
                         enabled=not args.no_progress and sys.stderr.isatty())
    for i, (path, plan, out) in enumerate(zip(paths, plans, outs)):
        spectra: list[LayerSpectrum] = []
        try:
            with bar:
                compute_spectrum(plan, into=spectra, progress=bar.layer)
        except BaseException as e:  # a failure mid-way (memory, a solver, Ctrl-C): the finished layers are written
            if spectra:
                _write_partial(spectra, plan, out, e)
            for later, new in zip(outs[i + (1 if spectra else 0):], made[i + (1 if spectra else 0):]):
                if new and not any(later.iterdir()):  # folders made for checkpoints never reached
                    later.rmdir()
            if results:
                warnings.warn(f"the checkpoint(s) finished before {str(path)!r} are written: "
                              f"{', '.join(str(f) for f in outs[:len(results)])}", stacklevel=1)
            raise
        csv_path, md_path = write_spectrum(spectra, out, selection=plan.selection)
        print(("" if not several else f"## {path}\n\n") + spectrum_markdown(spectra, selection=plan.selection))
        print(f"wrote {csv_path}, {md_path} and {md_path.with_suffix('.png')}")
        note = depthwise_note(spectra)
        if note:
            warnings.warn(note, stacklevel=1)
        results.append((str(path), spectra))
        if plan.model_name is not None:  # after the SVs are written: a refused bound costs none of them
            with bar:
                bar.step("certified Lipschitz bound")
                bound = _model_bound_value(plan)
            bounds.append(_report_bound(bound, out))
    if several:
        md_path, png_path = write_comparison(results, root, bounds)
        print(md_path.read_text())
        print(f"wrote {md_path} and {png_path}")
    return 0


def _folder_names(paths: list[Path]) -> list[str]:
    """One folder per checkpoint: its file stem, numbered where stems repeat (run1/model.pt, run2/model.pt)."""
    names: list[str] = []
    for p in paths:
        name, k = p.stem, 2
        while name in names:
            name, k = f"{p.stem}-{k}", k + 1
        names.append(name)
    return names


class _LayerProgress:
    """A transient progress bar on stderr (a terminal only: piped output and the tests see none): one step per
    layer and per certified bound, the current layer's name beside it. Entered around each computing stretch, so
    what is printed between them (each checkpoint's table) is not drawn over."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.done, self.bar, self.task = total, enabled, 0, None, None

    def __enter__(self) -> _LayerProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("[bold]svbench spectrum"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TextColumn("{task.description}"), transient=True,
                                console=Console(stderr=True))
            self.bar.__enter__()
            self.task = self.bar.add_task("", total=self.total, completed=self.done)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
            self.bar = None

    def step(self, what: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done, description=what)
        self.done += 1

    def layer(self, i: int, name: str) -> None:
        self.step(f"layer {name}")


def _model_bound_value(plan: SpectrumPlan) -> ModelBound:
    """The certified Lipschitz bound of the checkpoint's model (or why it is not computed)."""
    from svbench.checkpoint.lipschitz import model_bound

    assert plan.model_name is not None and plan.input_shape is not None
    return model_bound(plan.bound_model, plan.model_name, plan.input_shape, plan.device, plan.bound_note)


def _report_bound(bound: ModelBound, out: Path) -> ModelBound:
    """The bound written to lipschitz.md (and .csv); one line printed (a warning when it could not be computed)."""
    import warnings

    from svbench.checkpoint.lipschitz import write_lipschitz

    try:
        md = write_lipschitz(bound, out)
    except OSError as e:
        raise UserError(f"cannot write the Lipschitz bound into {out}: {e.strerror}; choose another folder with "
                        "--out") from None
    if bound.value is None:
        warnings.warn(f"no certified Lipschitz bound for the model ({bound.note}); the SVs are written", stacklevel=1)
    else:
        print(f"certified Lipschitz bound of the model: L = {bound.value:.6g} ({len(bound.layers)} layer calls); "
              f"wrote {md}")
    return bound


def _write_partial(spectra: list[LayerSpectrum], plan: SpectrumPlan, out: Path, error: BaseException) -> None:
    """The finished layers, marked INCOMPLETE, and one warning line saying where they are."""
    import warnings

    from svbench.checkpoint.spectrum import write_spectrum

    failed = plan.layers[len(spectra)][0].name if len(spectra) < len(plan.layers) else "(after the last)"
    why = "interrupted" if isinstance(error, KeyboardInterrupt) else f"stopped at layer {failed!r}"
    try:
        write_spectrum(spectra, out, incomplete=f"{why}; the {len(spectra)} of {len(plan.layers)} layers before it "
                                                f"are complete", selection=plan.selection)
    except Exception:  # noqa: BLE001 - the original error is what the user must see
        return
    warnings.warn(f"{why}: the {len(spectra)} of {len(plan.layers)} layers finished before it are written to {out} "
                  f"(spectrum.csv, spectrum.md, spectrum.png, marked INCOMPLETE)", stacklevel=1)
