"""JSONL results on disk: appended one cell at a time, atomically enough to survive SIGKILL.

All records of a cell are serialised first and written with ONE ``write`` on an ``O_APPEND`` descriptor, then
fsync'ed. A run killed mid-write can leave at most one partial last line; readers skip it (with a warning) and
``ResultsWriter`` trims it before appending again, so no finished cell is lost and no file stays corrupt.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from svbench.errors import UserError
from svbench.results.schema import CORE_FIELDS, SCHEMA_VERSION

RESULTS_FILE = "results.jsonl"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(_clean(record), allow_nan=False, sort_keys=False)


class ResultsWriter:
    """Appends whole cells to ``results.jsonl`` in ``run_dir``."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(
                f"cannot create the output folder {self.run_dir}: {e.strerror}; choose another with --out"
            ) from None
        self.path = self.run_dir / RESULTS_FILE
        if not os.access(self.run_dir, os.W_OK):
            raise UserError(f"the output folder {self.run_dir} is not writable; choose another with --out")
        self._trim_partial_line()

    def _trim_partial_line(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as f:
                f.truncate(keep)

    def append_cell(self, records: Iterable[dict[str, Any]]) -> None:
        payload = "".join(_dumps(r) + "\n" for r in records).encode()
        if not payload:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                written = os.write(fd, payload)
                if written != len(payload):
                    raise OSError(28, "short write (disk full?)")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            self._trim_partial_line()
            raise UserError(
                f"cannot write results to {self.path}: {e.strerror or e}; finished cells are kept, free space or "
                f"fix permissions and continue with --resume {self.run_dir}"
            ) from None


def results_path(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / RESULTS_FILE
    if not p.exists():
        raise UserError(f"no results found at {p}; pass a run folder (reports/runs/<suite>/<run_id>) or a .jsonl file")
    return p


def load_results(path: str | Path) -> list[dict[str, Any]]:
    """All records of a run folder or JSONL file; a partial LAST line (interrupted write) is skipped."""
    p = results_path(path)
    try:
        lines = p.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {p}: {e}") from None
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(_checked_record(json.loads(line), p, i + 1))
        except json.JSONDecodeError:
            if i == len(lines) - 1 and line.lstrip().startswith("{"):  # the start of a record: a cut write
                warnings.warn(f"{p}: skipped a partial last line (interrupted write)", stacklevel=2)
                continue
            what = "the results file is corrupt" if out else "is it a svbench results file (JSONL)?"
            raise UserError(f"{p}:{i + 1}: not a JSON record; {what}") from None
    return out


def _checked_record(rec: Any, path: Path, lineno: int) -> dict[str, Any]:
    """The record if it has the core fields of a schema this svbench reads, else a one-line UserError."""
    if not isinstance(rec, dict):
        raise UserError(f"{path}:{lineno}: not a JSON object; is it a svbench results file (JSONL)?")
    missing = [f for f in CORE_FIELDS if f not in rec]
    if missing:
        raise UserError(f"{path}:{lineno}: record lacks {', '.join(missing)}; not a svbench results file, or one "
                        f"from an incompatible version")
    version = rec["schema_version"]
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise UserError(f"{path}:{lineno}: schema_version {version!r}; this svbench reads up to {SCHEMA_VERSION} "
                        f"(upgrade svbench)")
    for name, kinds, what in _FIELD_TYPES:
        value = rec.get(name)
        if name in rec and not _has_type(value, kinds):
            raise UserError(f"{path}:{lineno}: field '{name}' is {type(value).__name__} {_short(value)}, expected "
                            f"{what}; the results file is corrupt or not svbench's")
    return rec


_STR, _NUM = (str,), (int, float)
_NONE = (type(None),)
# (field, accepted types, what to say): what the readers (tables, report, compare, resume) rely on
_FIELD_TYPES: tuple[tuple[str, tuple[type, ...], str], ...] = (
    *((f, _STR, "a string") for f in ("suite", "task", "task_kind", "cell_id", "method", "method_label", "status")),
    *((f, _STR + _NONE, "a string or null") for f in ("metric", "run_id", "provides", "backend", "oracle", "model",
                                                      "reason", "device", "device_name", "git_sha")),
    *((f, _NUM + _NONE, "a number or null") for f in ("value", "iqr", "repeats")),
    ("seed", (int,) + _NONE, "an integer or null"),
    ("shape", (dict,) + _NONE, "a mapping or null"),
    ("extra", (dict,) + _NONE, "a mapping or null"),
    ("method_config", (dict,) + _NONE, "a mapping or null"),
)


def _has_type(value: Any, kinds: tuple[type, ...]) -> bool:
    """isinstance, except that a bool is no number (JSON true where a number belongs is corruption)."""
    return isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
