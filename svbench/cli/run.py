"""``svbench run [SUITE] [--methods all|a,b] [--tasks a,b] [--device cpu|cuda|auto] [--profile a,b] [--out DIR]
[--resume RUN_DIR]``."""

from __future__ import annotations

import argparse
import shlex
import sys


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("run", help="run a suite and print the comparison table")
    p.add_argument("suite", nargs="?", default="default", help="suite YAML file or bundled name (default: default)")
    p.add_argument("--methods", default=None, help="'all' or a comma-separated list (default: the suite's)")
    p.add_argument("--tasks", default=None, help="comma-separated task names to run (default: every task)")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default: the suite's)")
    p.add_argument("--out", default="reports/runs", help="root folder of run folders (default: reports/runs)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a run, skipping finished cells")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: the suite's, usually 1)")
    p.add_argument("--profile", default=None, metavar="METHODS",
                   help="comma-separated methods whose timed operations are also profiled once by operator "
                        "(torch.profiler; tables in RUN_DIR/profiles/); sets the profile option of every task")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(args: argparse.Namespace) -> int:
    from svbench.errors import CellInputError, UserError
    from svbench.suite.runner import run_suite

    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    try:
        res = run_suite(
            args.suite, methods=args.methods, tasks=args.tasks, device=args.device, out_root=args.out,
            resume=args.resume, threads=args.threads, progress=not args.no_progress and sys.stderr.isatty(),
            profile=args.profile,
        )
    except CellInputError as e:
        raise UserError(f"{e}; the cells finished before it are saved in {e.run_dir}: fix the suite, then resume "
                        f"with: {resume_command(args, e.run_dir)}") from None
    print(res.table_md)
    print(f"results: {res.run_dir}/results.jsonl ({len(res.records)} records; tables: table.md, table.csv)")
    if res.cells_skipped_resume:
        print(f"resumed: {res.cells_skipped_resume} finished cells kept, {res.cells_done} run now")
    if res.interrupted:
        sys.stderr.write(
            f"svbench: interrupted after {res.cells_done} cells; finished cells are saved. "
            f"Resume with: {resume_command(args, res.run_dir)}\n"
        )
        return 130
    if res.cells_failed:
        sys.stderr.write(f"svbench: {res.cells_failed} cell(s) failed (status 'error'; tracebacks in "
                         f"{res.run_dir}/errors.log); every other cell ran and is saved\n")
        return 1
    return 0


def resume_command(args: argparse.Namespace, run_dir: object) -> str:
    """The command that continues this run with the same selection (methods, tasks, device, threads)."""
    parts = ["svbench", "run", shlex.quote(str(args.suite))]
    for flag, value in (("--methods", args.methods), ("--tasks", args.tasks), ("--device", args.device),
                        ("--threads", args.threads), ("--profile", getattr(args, "profile", None))):
        if value is not None:
            parts += [flag, shlex.quote(str(value))]
    return " ".join([*parts, "--resume", shlex.quote(str(run_dir))])
