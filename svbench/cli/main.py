"""Entry point: ``svbench <command> ...``. User errors print one line and exit 2 (traceback with --debug)."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from svbench.errors import UserError, out_of_memory_message


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"svbench: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    from svbench.cli import compare, ls, report, run, spectrum, validate

    parser = _Parser(prog="svbench", description="Benchmark methods that compute or control conv-layer SVs.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for mod in (run, ls, validate, spectrum, report, compare):
        p = mod.add_parser(sub)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        p.set_defaults(func=mod.main)
    return parser


def _one_line_warnings(original):  # type: ignore[no-untyped-def]
    """``warnings.showwarning`` that prints svbench's own warnings as one ``svbench: warning: ...`` line (no
    source path or code line); other packages' warnings keep their usual form."""

    def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        if f"svbench{os.sep}" in str(filename):
            (file or sys.stderr).write(f"svbench: warning: {message}\n")
        else:
            original(message, category, filename, lineno, file, line)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    debug = bool(getattr(args, "debug", False))
    with warnings.catch_warnings():  # restores warnings.showwarning afterwards (in-process callers, tests)
        if not debug:
            warnings.showwarning = _one_line_warnings(warnings.showwarning)
        return _dispatch(args, debug)


def _dispatch(args: argparse.Namespace, debug: bool) -> int:
    try:
        out = getattr(args, "out", None)
        if out is not None and not str(out).strip():  # an unset shell variable: would write into the current folder
            raise UserError(f"--out is empty; pass a folder (see 'svbench {args.command} --help')")
        return int(args.func(args) or 0)
    except UserError as e:
        if debug:
            raise
        sys.stderr.write(f"svbench: error: {e}\n")
        return e.exit_code
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
        if debug:
            raise
        sys.stderr.write(f"svbench: error: {e.strerror}: {e.filename}\n")
        return 2
    except OSError as e:
        if debug:
            raise
        sys.stderr.write(f"svbench: error: {e.strerror or e}; check the output folder (space, permissions)\n")
        return 2
    except (MemoryError, RuntimeError) as e:
        why = out_of_memory_message(e)
        if debug or why is None:
            raise
        sys.stderr.write(f"svbench: error: {why}; use smaller shapes or input sizes, or a machine with more "
                         f"memory (--debug for the traceback)\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("svbench: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
