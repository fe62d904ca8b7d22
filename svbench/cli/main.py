"""Entry point: ``svbench <command> ...``. User errors print one line and exit 2 (traceback with --debug)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from svbench.errors import UserError


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    debug = bool(getattr(args, "debug", False))
    try:
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
    except KeyboardInterrupt:
        sys.stderr.write("svbench: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
