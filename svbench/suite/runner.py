"""The suite runner: every (method variant x shape x seed) cell, records written as each cell finishes.

Cells are independent. A cell a method cannot handle is recorded as ``skipped`` with the reason; CUDA out of
memory is recorded as ``oom``; non-finite output as ``nonfinite``; the suite goes on. ``resume`` skips cells
already in the run folder's results. Ctrl-C stops after the current cell and says how to resume.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import secrets
import signal
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from svbench._validate import to_mapping
from svbench.errors import CellInputError, UnsupportedShape, UserError, first_line, out_of_memory_message
from svbench.functional.oracle import oracle_singular_values
from svbench.functional.spectrum import conv_singular_values
from svbench.functional.transfer import grid_div, grid_hw, grid_text, stride_area
from svbench.measure import (
    environment,
    fix_allocator,
    paired_timing,
    peak_memory,
    resolve_device,
    time_callable,
    timed_call,
    warm_timing,
)
from svbench.methods import METHODS, Method, create_method
from svbench.methods.base import LayerSpec
from svbench.results.io import RESULTS_FILE, ResultsWriter, load_results
from svbench.results.schema import SCHEMA_VERSION, metric_info
from svbench.results.tables import (
    network_markdown,
    network_table,
    profile_markdown,
    sv_markdown,
    sv_table,
    train_markdown,
    train_table,
)
from svbench.suite.loader import load_suite, select_methods
from svbench.suite.network_cell import run_network_cell
from svbench.suite.profiling import profile_item, wants_profile
from svbench.suite.schema import NetworkTask, Suite, SVTask, TrainTask
from svbench.suite.train_cell import run_train_cell

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class RunResult:
    run_dir: Path
    records: list[dict[str, Any]]
    cells_done: int
    cells_skipped_resume: int
    interrupted: bool = False
    table_md: str = ""
    cells_failed: int = 0  # cells recorded as ``error`` by an unexpected exception (tracebacks in errors.log)


@dataclass
class Cell:
    task: Any
    method: Method
    seed: int
    spec: LayerSpec | None = None
    model: str | None = None

    @property
    def cell_id(self) -> str:
        if self.spec is not None:
            what = self.spec.label
        elif self.model is not None:
            what = f"{self.model}@{grid_text(tuple(self.task.input_shape[1:]))}"  # 32, or 16x32
        else:
            what = f"{getattr(self.task, 'model', '-')}@{getattr(self.task, 'dataset', '-')}"
        return f"{self.task.name}|{what}|{self.method.label}|seed={self.seed}"


@dataclass
class _Ctx:
    suite: Suite
    run_id: str
    device: torch.device
    dtype: torch.dtype
    env: dict[str, Any]
    run_dir: Path | None = None
    oracle_cache: dict[tuple, tuple[Tensor | None, str]] = field(default_factory=dict)
    data_cache: dict[tuple, Any] = field(default_factory=dict)
    status: Callable[[str], None] | None = None


def new_run_id() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def _method_variants(task: Any, names: list[str]) -> list[Method]:
    out = []
    for name in names:
        cls = METHODS.get(name)
        configs = task.variants.get(name) or [{}]
        seen: dict[str, int] = {}
        for j, cfg in enumerate(configs):
            m = cls.from_options(cfg, f"task {task.name!r} variants.{name}[{j}]")
            if m.label in seen:  # the same configuration twice: the same cells, run twice, records under one id
                raise UserError(f"task {task.name!r} variants.{name}[{j}] is the configuration of "
                                f"variants.{name}[{seen[m.label]}] again ({m.label}); each variant runs once")
            seen[m.label] = j
            out.append(m)
    return out


def check_threads(n: int, what: str) -> None:
    """More CPU threads than this process may use only adds contention to every timing (and thousands end in
    libgomp failing to create them, a crash rather than a message): refuse before anything runs."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    if n > cpus:
        raise UserError(f"{what} {n}: this machine gives the process {cpus} CPUs; use at most {cpus} (CPU timings "
                        f"here are meant at 1 thread)")


def select_tasks(suite: Suite, tasks: str | list[str] | None) -> Suite:
    """The suite with only the named tasks (suite order kept); ``None`` keeps every task."""
    if tasks is None:
        return suite
    names = [t.strip() for t in tasks.split(",")] if isinstance(tasks, str) else [str(t).strip() for t in tasks]
    names = [n for n in names if n]
    known = [t.name for t in suite.tasks]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        what = f"no task {', '.join(map(repr, dict.fromkeys(unknown)))}" if unknown else "no task named"
        raise UserError(f"--tasks: {what} in suite '{suite.name}'; its tasks are: {', '.join(known)}")
    return dataclasses.replace(suite, tasks=[t for t in suite.tasks if t.name in names])


def with_profile(suite: Suite, profile: str | list[str] | None) -> Suite:
    """The suite with ``profile`` (``--profile``) as the profile option of every sv and network task; None keeps
    the suite's own."""
    if profile is None:
        return suite
    names = select_methods(profile, flag="--profile")
    tasks = [dataclasses.replace(t, profile=names) if isinstance(t, SVTask | NetworkTask) else t for t in suite.tasks]
    return dataclasses.replace(suite, tasks=tasks)


def plan_cells(suite: Suite, methods: str | list[str] | None = None) -> list[Cell]:
    cells: list[Cell] = []
    for task in suite.tasks:
        variants = _method_variants(task, select_methods(methods, task.methods))
        for seed in suite.seeds:
            if isinstance(task, SVTask):
                for spec in task.all_shapes():
                    cells += [Cell(task, m, seed, spec) for m in variants]
            elif isinstance(task, NetworkTask):
                cells += [Cell(task, m, seed, model=name) for name in task.models for m in variants
                          if m.provides in ("all_svs", "upper_bound", "estimate")]
            else:
                cells += [Cell(task, m, seed) for m in variants if m.trains]
    return cells


class _StopFlag:
    """SIGINT handler that lets the current cell finish (a second Ctrl-C aborts at once)."""

    def __init__(self) -> None:
        self.stop = False
        self._old: Any = None

    def __enter__(self) -> _StopFlag:
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def run_suite(
    suite: Suite | str,
    *,
    methods: str | list[str] | None = None,
    tasks: str | list[str] | None = None,
    device: str | None = None,
    out_root: str | Path = "reports/runs",
    resume: str | Path | None = None,
    threads: int | None = None,
    progress: bool = True,
    on_cell: Callable[[Cell, list[dict[str, Any]]], None] | None = None,
    profile: str | list[str] | None = None,
) -> RunResult:
    """Run a suite (object, file or bundled name); returns the run folder and all its records.

    ``tasks`` (names, or one comma-separated string) runs only those tasks of the suite, in the suite's order.
    ``profile`` (method names, or one comma-separated string) sets the ``profile`` option of every sv and network
    task: those methods' timed operations are also profiled once (``svbench.suite.profiling``).
    """
    if isinstance(suite, str):
        suite = load_suite(suite)
    suite = with_profile(select_tasks(suite, tasks), profile)
    dev = resolve_device(suite.device if device is None else device)  # '' (an unset shell variable) is said
    dtype = DTYPES[suite.dtype]
    cells = plan_cells(suite, methods)
    n_threads = threads or suite.threads
    if dev.type == "cpu":
        check_threads(n_threads, "--threads" if threads else f"suite '{suite.name}' threads:")

    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / RESULTS_FILE).exists() and not (run_dir / "meta.json").exists():
            raise UserError(f"--resume {run_dir}: not a run folder (no {RESULTS_FILE} or meta.json there)")
        run_id = run_dir.name
    else:
        run_id = new_run_id()
        run_dir = Path(out_root) / suite.name / run_id
    writer = ResultsWriter(run_dir)
    previous = load_results(run_dir) if (run_dir / RESULTS_FILE).exists() else []
    if resume is not None:
        _check_resumable(run_dir, previous, suite.name, dev.type)
    done_ids = {r.get("cell_id") for r in previous}

    old_threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(n_threads)
    try:
        env = environment(dev)
        env["malloc"] = fix_allocator()  # every timing of the run under one recorded allocator configuration
        ctx = _Ctx(suite, run_id, dev, dtype, env, run_dir=run_dir)
        _write_meta(run_dir, suite, ctx, methods)
        todo = [c for c in cells if c.cell_id not in done_ids]
        n_done = 0
        n_failed = 0
        interrupted = False
        bad_input: CellInputError | None = None
        with _StopFlag() as flag, _progress(progress, len(todo)) as (advance, describe):
            ctx.status = describe
            for cell in todo:
                try:
                    records = run_cell(cell, ctx)
                except UserError as e:  # stop here, keep what is done (tables too), say where it is
                    bad_input = CellInputError(f"{e} (cell {cell.cell_id})", run_dir)
                    break
                writer.append_cell(records)
                n_done += 1
                n_failed += any(r.get("status") == "error" for r in records)
                if on_cell is not None:
                    on_cell(cell, records)
                advance(cell)
                if flag.stop:
                    interrupted = True
                    break
    finally:
        torch.set_num_threads(old_threads)
    records = load_results(run_dir) if (run_dir / RESULTS_FILE).exists() else []
    table_md = write_tables(run_dir, records)
    if bad_input is not None:
        raise bad_input
    return RunResult(run_dir, records, n_done, len(cells) - len(todo), interrupted, table_md, n_failed)


def _check_resumable(run_dir: Path, records: list[dict[str, Any]], suite_name: str, device_type: str) -> None:
    """A run folder is resumed only by the suite that started it, on the same kind of device (no mixed runs)."""
    suites = {r.get("suite") for r in records} - {None}
    if not records and (run_dir / "meta.json").exists():  # stopped before its first cell finished
        try:
            suites = {json.loads((run_dir / "meta.json").read_text())["suite"]["name"]}
        except (ValueError, KeyError, TypeError, OSError):
            suites = set()
    if suites and suites != {suite_name}:
        theirs = ", ".join(sorted(map(str, suites)))
        raise UserError(f"--resume {run_dir}: that run is of suite {theirs!r}, not {suite_name!r}; resume it with "
                        f"'svbench run {theirs} --resume {run_dir}' or start a new run")
    devices = {r.get("device") for r in records} - {None}
    if devices and devices != {device_type}:
        theirs = ", ".join(sorted(map(str, devices)))
        raise UserError(f"--resume {run_dir}: that run was measured on {theirs}, this one would run on {device_type}; "
                        f"resume it with --device {theirs} or start a new run")


def write_tables(run_dir: Path, records: list[dict[str, Any]]) -> str:
    table = sv_table(records)
    md = sv_markdown(table) if not table.empty else ""
    ttable = train_table(records)
    if not ttable.empty:
        md += train_markdown(ttable)
    ntable = network_table(records)
    if not ntable.empty:
        md += network_markdown(ntable)
    md += profile_markdown(records)
    try:
        (run_dir / "table.md").write_text(md or "_no results_\n")
        table.to_csv(run_dir / "table.csv", index=False)
        if not ttable.empty:
            ttable.to_csv(run_dir / "train_table.csv", index=False)
        if not ntable.empty:
            ntable.to_csv(run_dir / "network_table.csv", index=False)
    except OSError as e:
        raise UserError(f"cannot write tables into {run_dir}: {e.strerror}; results.jsonl is intact") from None
    return md


def _write_meta(run_dir: Path, suite: Suite, ctx: _Ctx, methods: Any) -> None:
    meta_path = run_dir / "meta.json"
    if meta_path.exists():
        return
    meta = {
        "run_id": ctx.run_id,
        "suite": to_mapping(suite),
        "tasks": [t.name for t in suite.tasks],
        "methods": methods,
        "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "environment": ctx.env,
    }
    meta_path.write_text(json.dumps(meta, indent=2, default=str))


class _NullProgress:
    def __enter__(self) -> tuple[Callable[[Cell], None], Callable[[str], None]]:
        return (lambda cell: None), (lambda text: None)

    def __exit__(self, *exc: object) -> None:
        return None


class _RichProgress:
    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.p = Progress(
            TextColumn("[bold]svbench"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.description}"), transient=True,
        )
        self.total = total

    def __enter__(self) -> tuple[Callable[[Cell], None], Callable[[str], None]]:
        self.p.__enter__()
        tid = self.p.add_task("", total=self.total)
        return (lambda cell: self.p.update(tid, advance=1, description=cell.cell_id),
                lambda text: self.p.update(tid, description=text))

    def __exit__(self, *exc: object) -> None:
        self.p.__exit__(*exc)


def _progress(enabled: bool, total: int) -> Any:
    return _RichProgress(total) if enabled else _NullProgress()


# ---- one SV cell ---------------------------------------------------------------------------------------------


def _base_record(cell: Cell, ctx: _Ctx) -> dict[str, Any]:
    m = cell.method
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": ctx.run_id,
        "suite": ctx.suite.name,
        "task": cell.task.name,
        "task_kind": cell.task.kind,
        "cell_id": cell.cell_id,
        "method": m.name,
        "method_label": m.label,
        "method_config": m.config_dict(),
        "provides": m.provides,
        "backend": m.backend(cell.spec, ctx.device, ctx.dtype),
        "shape": cell.spec.as_dict() if cell.spec is not None else None,
        "model": cell.model,
        "seed": cell.seed,
        "metric": None,
        "value": None,
        "unit": None,
        "higher_is_better": None,
        "status": "ok",
        "reason": None,
        "iqr": None,
        "repeats": None,
        "dtype": str(ctx.dtype).removeprefix("torch."),
        "oracle": "none",
        "extra": {},
        "timestamp": None,
        **ctx.env,
    }


def _records(base: dict[str, Any], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    stamp = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    out = []
    for it in items:
        rec = dict(base, timestamp=stamp)
        rec.update(it)
        if rec.get("metric"):
            info = metric_info(rec["metric"])
            rec["unit"] = info.unit
            rec["higher_is_better"] = info.higher_is_better
        out.append(rec)
    return out


def _status_record(base: dict[str, Any], status: str, reason: str) -> list[dict[str, Any]]:
    return _records(base, [{"status": status, "reason": reason}])


def run_cell(cell: Cell, ctx: _Ctx) -> list[dict[str, Any]]:
    base = _base_record(cell, ctx)
    try:
        if isinstance(cell.task, SVTask):
            return _run_sv_cell(cell, ctx, base)
        if isinstance(cell.task, TrainTask):
            return run_train_cell(cell, ctx, base, _records)
        if isinstance(cell.task, NetworkTask):
            return run_network_cell(cell, ctx, base, _records)
        raise UserError(f"unknown task kind {cell.task.kind!r}")
    except UnsupportedShape as e:
        return _status_record(base, "skipped", str(e))
    except UserError:
        raise
    except Exception as e:  # out of memory (host or CUDA): ``oom``; anything else (a bug, a solver error): ``error``
        why = out_of_memory_message(e)
        if why is None:
            return _error_record(base, e, ctx)
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()
        return _status_record(base, "oom", why)


ERRORS_FILE = "errors.log"


def _error_record(base: dict[str, Any], exc: BaseException, ctx: _Ctx) -> list[dict[str, Any]]:
    """Status ``error`` with the exception's first line; the full traceback is appended to the run's errors.log."""
    first = first_line(exc, 300)
    where = ""
    if ctx.run_dir is not None:
        try:
            ctx.run_dir.mkdir(parents=True, exist_ok=True)
            with open(ctx.run_dir / ERRORS_FILE, "a", encoding="utf-8") as f:
                f.write(f"=== cell {base.get('cell_id')} ===\n")
                f.write("".join(traceback.format_exception(exc)))
            where = f" (traceback in {ERRORS_FILE})"
        except OSError:
            pass
    return _status_record(base, "error", f"{type(exc).__name__}: {first}{where}")


def _oracle(cell: Cell, layer: torch.nn.Module, ctx: _Ctx) -> tuple[Tensor | None, str]:
    """Exact SVs of the implemented operator: dense float64 if small, else float64 FFT for circular convs."""
    spec, task = cell.spec, cell.task
    key = (spec, cell.seed, cell.method.layer_key())
    if key in ctx.oracle_cache:
        return ctx.oracle_cache[key]
    if spec.c_in * spec.hw[0] * spec.hw[1] <= task.oracle_max_dim:
        res = (oracle_singular_values(layer, spec.in_shape, device=ctx.device).cpu(), "dense_float64")
    else:
        kernel = cell.method.dense_kernel(layer)
        if spec.padding == "circular" and kernel is not None:
            with torch.no_grad():
                sv = conv_singular_values(kernel.detach().double(), spec.grid, spec.stride, backend="svdvals64")
            res = (sv.cpu(), "fft_float64")
        else:
            res = (None, "none")
    ctx.oracle_cache[key] = res
    return res


def _run_sv_cell(cell: Cell, ctx: _Ctx, base: dict[str, Any]) -> list[dict[str, Any]]:
    method, spec, task = cell.method, cell.spec, cell.task
    reason = method.supports.why_not(spec)
    if reason is None and spec.width is not None and not method.rectangular_grids:
        reason = f"a rectangular {grid_text(spec.grid)} input not supported (square n x n only)"
    if reason:
        return _status_record(base, "skipped", f"{method.name}: {reason}")
    layer = method.make_layer(spec, seed=cell.seed, dtype=ctx.dtype, device=ctx.device)
    n = spec.grid

    def compute() -> Tensor:
        return method.layer_svs(layer, n)

    svs, first_ms = timed_call(compute, ctx.device)
    expected = method.expected_count(spec)
    if svs.numel() != expected:
        return _status_record(
            base, "error", f"{method.name} returned {svs.numel()} values, expected {expected} for {spec.label}"
        )
    if not torch.isfinite(svs).all():
        return _status_record(base, "nonfinite", f"{method.name} returned non-finite values (NaN or Inf)")
    t = time_callable(compute, ctx.device, **warm_timing(task.timing, first_ms))
    items: list[dict[str, Any]] = [
        {"metric": "sv_time_ms", "value": t.median_ms, "iqr": t.iqr_ms, "repeats": t.repeats,
         "extra": {"clock": t.clock, "warmup": t.warmup + (0 if t.first_call_timed else 1),
                   "first_call_timed": t.first_call_timed}},
    ]
    if task.measure_memory:
        mem = peak_memory(compute, ctx.device)
        transfer = rfft_transfer_bytes(spec, ctx.dtype)
        items.append({"metric": "sv_peak_mem_bytes", "value": mem.bytes,
                      "extra": {"how": mem.how, "rfft_transfer_bytes": transfer}})
        if mem.bytes is not None:
            items.append({"metric": "sv_peak_mem_vs_transfer", "value": mem.bytes / transfer,
                          "extra": {"how": mem.how, "rfft_transfer_bytes": transfer}})

    if wants_profile(cell):
        items.append(profile_item(cell, ctx, compute, "sv_profile_busy_ms"))

    if task.paired_reference and method.name != "reference":
        items.extend(_paired_with_reference(compute, method, layer, spec, ctx, task.paired_reference))

    gen = torch.Generator().manual_seed(10_000 + cell.seed)
    x = torch.randn(task.forward_batch, *spec.in_shape, generator=gen).to(ctx.device, ctx.dtype)
    layer.eval()

    def forward() -> Tensor:
        with torch.no_grad():
            return layer(x)

    ft = time_callable(forward, ctx.device, warmup=1, min_repeats=5, max_repeats=50,
                       budget_s=min(0.25, task.timing.budget_s))
    items.append({"metric": "forward_time_ms", "value": ft.median_ms, "iqr": ft.iqr_ms, "repeats": ft.repeats,
                  "extra": {"batch": task.forward_batch, "clock": ft.clock}})
    if task.paired_forward and method.name != "none":
        items.append(_paired_with_plain_conv(forward, x, cell, ctx, task.paired_forward))

    oracle, how = _oracle(cell, layer, ctx) if svs.numel() else (None, "none")
    base["oracle"] = how
    svs = svs.detach().double().cpu()
    if svs.numel():
        items.append({"metric": "sigma_max", "value": float(svs[0])})
    if oracle is not None:
        s1 = float(oracle[0])
        items.append({"metric": "oracle_sigma_max", "value": s1})
        if svs.numel():
            items.append({"metric": "sigma_max_rel_err", "value": (float(svs[0]) - s1) / s1})
        if method.provides in ("all_svs", "orthogonal_layer") and svs.numel() == oracle.numel():
            err = (svs - oracle).abs().max().item() / s1
            items.append({"metric": "sv_max_abs_err_rel", "value": err})
    return _records(base, items)


def _paired_with_reference(compute: Callable[[], Tensor], method: Method, layer: torch.nn.Module, spec: LayerSpec,
                           ctx: _Ctx, pairs: int) -> list[dict[str, Any]]:
    """Speed-up over `reference` on the SAME dense kernel, timed in alternation (see ``paired_timing``)."""
    kernel = method.dense_kernel(layer)
    if kernel is None or spec.padding != "circular":
        return []
    reference = create_method("reference")
    conv = torch.nn.Conv2d(spec.c_in, spec.c_out, kernel.shape[-1], spec.stride, kernel.shape[-1] // 2, bias=False,
                           padding_mode="circular", device=kernel.device, dtype=kernel.dtype)
    with torch.no_grad():
        conv.weight.copy_(kernel.detach())
    pt = paired_timing(compute, lambda: reference.layer_svs(conv, spec.grid), ctx.device, repeats=pairs)
    return [{"metric": "speedup_vs_reference_paired", "value": pt.ratio_b_over_a, "iqr": pt.ratio_iqr,
             "repeats": pairs, "extra": {"method_ms": pt.a.median_ms, "reference_ms": pt.b.median_ms,
                                         "how": "median of per-pair t_reference / t_method, interleaved"}}]


def _paired_with_plain_conv(forward: Callable[[], Tensor], x: Tensor, cell: Cell, ctx: _Ctx,
                            pairs: int) -> dict[str, Any]:
    """Forward-time ratio over the plain conv of the same shape (the `none` method's layer) on the same input, eval
    mode, timed in alternation (see ``paired_timing``): the overhead a method adds to inference."""
    plain = create_method("none").make_layer(cell.spec, seed=cell.seed, dtype=ctx.dtype, device=ctx.device).eval()

    def plain_forward() -> Tensor:
        with torch.no_grad():
            return plain(x)

    pt = paired_timing(plain_forward, forward, ctx.device, repeats=pairs)
    return {"metric": "forward_vs_conv_paired", "value": pt.ratio_b_over_a, "iqr": pt.ratio_iqr, "repeats": pairs,
            "extra": {"method_ms": pt.b.median_ms, "conv_ms": pt.a.median_ms, "batch": int(x.shape[0]),
                      "how": "median of per-pair t_method / t_plain_conv, interleaved"}}


def rfft_transfer_bytes(spec: LayerSpec, dtype: torch.dtype) -> int:
    """Size of the layer's rfft transfer matrices, (n/s) x (n/(2s) + 1) x c_out x c_in s^2 complex numbers (g blocks
    of c_out/g x c_in s^2/g for a grouped conv; (h/s) x (w/(2s) + 1) on a rectangular input): the unit of the
    peak-memory target (issue 6)."""
    (m1, m2), area = grid_hw(grid_div(spec.grid, spec.stride)), stride_area(spec.stride)
    complex_bytes = 2 * torch.empty((), dtype=dtype).element_size()
    return m1 * (m2 // 2 + 1) * spec.c_out * spec.c_in * area // spec.groups * complex_bytes


def iter_records(records: list[dict[str, Any]], **match: Any) -> Iterator[dict[str, Any]]:
    for r in records:
        if all(r.get(k) == v for k, v in match.items()):
            yield r
