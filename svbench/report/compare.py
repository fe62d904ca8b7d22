"""``svbench compare RUN_DIR --baseline FILE``: a verdict per (cell, metric) against stored baseline records.

Kinds of regression (tolerances come from the suite's ``tolerances`` mapping, defaults below):

- ``accuracy``: a higher-is-better fraction (accuracy, robust, certified) dropped by more than ``accuracy_drop``;
- ``time``: a timing (layer, forward, training and network SV / clipping passes) grew by more than ``time_ratio`` x,
  compared only on the same device name (on a CPU, the same thread count) and only when the baseline is above
  ``time_floor_ms`` (tiny timings are noise);
- ``error``: the error against the oracle (a layer's SVs, a network's SVs or its clipping pass) grew beyond
  max(``error_factor`` x baseline, ``error_floor``);
- ``exactness``: an all-SVs / orthogonal method's error above ``exact_tol`` x sigma_max (``accuracy_class`` for a
  backend svbench chose itself, ``(auto)`` in the record, or ``auto`` on a network task: issue 6's class, 2e-6
  sigma_max; backends documented as inexact -- :func:`inexact_backend` -- and the naive reference's network pass
  are held to their baseline's error instead), an upper bound below the
  exact value by more than ``bound_tol``, an estimate above it by more than ``bound_tol``, or an attack that
  succeeded inside a certified radius (``certificate_violations`` > 0) (no baseline needed);
- ``status``: a cell that was ok in the baseline is missing, skipped, failed or non-finite.

A baseline file may hold the records of several machines (the same cells measured on each): every run record is
compared with the baseline record of its own device name (on a CPU, also its thread count) where there is one, else
with the file's first record of that cell and metric (numbers are compared, timings are not). The report says how many
timings were really compared, and names the devices when none was: a check whose timings were all skipped is not a
speed check.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from svbench.errors import UserError
from svbench.results.io import load_results

DEFAULT_TOLERANCES = {
    "accuracy_drop": 0.02,
    "time_ratio": 3.0,
    "time_floor_ms": 1.0,
    "error_factor": 10.0,
    "error_floor": 1e-5,
    "exact_tol": 1e-5,
    "accuracy_class": 2e-6,  # the default SV backends' promise (README "SV backends"), checked on every (auto) record
    "bound_tol": 1e-5,
}
TIME_METRICS = {"sv_time_ms": 1.0, "forward_time_ms": 1.0, "train_time_s": 1e3, "epoch_time_s": 1e3,
                "network_sv_time_ms": 1.0, "network_clip_time_ms": 1.0}
ERROR_METRICS = {"sv_max_abs_err_rel", "network_max_err_rel", "network_clip_err_rel"}
NOT_COMPARED = "not compared"  # the note of a timing verdict left out (another device or thread count)


def inexact_backend(backend: str, device: str | None) -> bool:
    """A backend the README documents as outside the exact tolerance, chosen explicitly (or the naive reference,
    ``fft2+svdvals``, which takes torch's default driver): float32 ``eigh`` anywhere (the Gram squares the condition
    number); on CUDA ``svdvals`` with torch's default driver or ``gesvdj`` (1.7e-5 to 1.9e-4 sigma_max on an H200).
    Their errors are checked against the baseline's (``error``), not against ``exact_tol``."""
    route = backend.split("+")[-1].strip()
    if route == "eigh":
        return True
    return device == "cuda" and route in ("svdvals", "svdvals/gesvdj")


@dataclass
class Verdict:
    cell_id: str
    metric: str
    kind: str
    ok: bool
    baseline: Any
    value: Any
    note: str


def _key(r: dict[str, Any]) -> tuple[str, str]:
    return (r.get("cell_id") or "", r.get("metric") or "")


def _is_fraction_hib(r: dict[str, Any]) -> bool:
    return bool(r.get("higher_is_better")) and r.get("unit") == "fraction"


def exactness_checks(records: list[dict[str, Any]], tol: dict[str, float]) -> list[Verdict]:
    out = []
    for r in records:
        if r.get("status") != "ok" or r.get("value") is None:
            continue
        m, prov, v = r.get("metric"), r.get("provides"), r["value"]
        backend = str(r.get("backend") or "")
        default = backend.endswith("(auto)") or (m == "network_max_err_rel" and backend == "auto")
        if m == "network_max_err_rel" and r.get("method") == "reference":
            continue  # the naive denominator (torch's default driver): held to its baseline's error only
        if m in ("sv_max_abs_err_rel", "network_max_err_rel") and prov == "all_svs" and default:
            out.append(Verdict(r["cell_id"], m, "exactness", v <= tol["accuracy_class"], None, v,
                               f"default backend {backend}: error must be <= {tol['accuracy_class']:g} "
                               f"sigma_max (the accuracy class)"))
        elif (m in ("sv_max_abs_err_rel", "network_max_err_rel") and prov in ("all_svs", "orthogonal_layer")
              and not inexact_backend(backend, r.get("device"))):
            out.append(Verdict(r["cell_id"], m, "exactness", v <= tol["exact_tol"], None, v,
                               f"{prov}: error must be <= {tol['exact_tol']:g} sigma_max"))
        elif m in ("sigma_max_rel_err", "network_min_bound_rel_err") and prov == "upper_bound":
            out.append(Verdict(r["cell_id"], m, "exactness", v >= -tol["bound_tol"], None, v,
                               "upper bound must not fall below the exact sigma_max"))
        elif str(m).startswith("certificate_violations"):
            out.append(Verdict(r["cell_id"], m, "exactness", v == 0, None, v,
                               "an attack succeeded inside the certified radius: the Lipschitz bound is not a bound"))
        elif m in ("sigma_max_rel_err", "network_max_est_rel_err") and prov == "estimate":
            out.append(Verdict(r["cell_id"], m, "exactness", v <= tol["bound_tol"], None, v,
                               "a power-iteration estimate must not exceed the exact sigma_max"))
    return out


def _machine(r: dict[str, Any]) -> tuple[Any, Any]:
    """What a timing depends on: the device name and, on a CPU, the thread count."""
    return r.get("device_name"), r.get("num_threads") if r.get("device") == "cpu" else None


def _same_machine(candidates: list[dict[str, Any]], r: dict[str, Any] | None) -> dict[str, Any]:
    """The baseline record measured on the run record's machine, else the first one."""
    if r is not None:
        for b in candidates:
            if _machine(b) == _machine(r):
                return b
    return candidates[0]


def timing_coverage(verdicts: list[Verdict]) -> tuple[int, int]:
    """(timings compared, timings not compared: another device or thread count)."""
    times = [v for v in verdicts if v.kind == "time"]
    skipped = sum(v.note.startswith(NOT_COMPARED) for v in times)
    return len(times) - skipped, skipped


def compare(run: list[dict[str, Any]], baseline: list[dict[str, Any]],
            tolerances: dict[str, float] | None = None) -> list[Verdict]:
    tol = {**DEFAULT_TOLERANCES, **(tolerances or {})}
    unknown = set(tolerances or {}) - set(DEFAULT_TOLERANCES)
    if unknown:
        raise UserError(f"unknown tolerance(s) {sorted(unknown)}; allowed: {', '.join(DEFAULT_TOLERANCES)}")
    cur = {_key(r): r for r in run}
    verdicts: list[Verdict] = []
    run_cells = {r.get("cell_id") for r in run}
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for b in baseline:
        by_key.setdefault(_key(b), []).append(b)
    for key, candidates in by_key.items():
        cell, metric = key
        r = cur.get(key)
        b = _same_machine(candidates, r)
        if b.get("status") != "ok":
            continue
        if r is None:
            if cell not in run_cells:
                verdicts.append(Verdict(cell, metric, "status", False, b.get("value"), None, "cell missing"))
            elif metric:
                verdicts.append(Verdict(cell, metric, "status", False, b.get("value"), None, "metric missing"))
            continue
        if r.get("status") != "ok":
            verdicts.append(Verdict(cell, metric, "status", False, b.get("value"), r.get("value"),
                                    f"status {r.get('status')}: {r.get('reason')}"))
            continue
        bv, rv = b.get("value"), r.get("value")
        if not isinstance(bv, (int, float)) or not isinstance(rv, (int, float)):
            continue
        if metric in TIME_METRICS:
            if r.get("device_name") != b.get("device_name"):
                verdicts.append(Verdict(cell, metric, "time", True, bv, rv, f"{NOT_COMPARED}: different device"))
                continue
            if r.get("device") == "cpu" and r.get("num_threads") != b.get("num_threads"):  # 1 vs 2 threads: 10-100x
                verdicts.append(Verdict(cell, metric, "time", True, bv, rv,
                                        f"{NOT_COMPARED}: {r.get('num_threads')} CPU threads, baseline "
                                        f"{b.get('num_threads')}"))
                continue
            if bv * TIME_METRICS[metric] < tol["time_floor_ms"]:
                continue
            ratio = rv / bv if bv > 0 else float("inf")
            verdicts.append(Verdict(cell, metric, "time", ratio <= tol["time_ratio"], bv, rv, f"x{ratio:.2f}"))
        elif metric in ERROR_METRICS:
            limit = max(tol["error_factor"] * bv, tol["error_floor"])
            verdicts.append(Verdict(cell, metric, "error", rv <= limit, bv, rv, f"limit {limit:.2g}"))
        elif _is_fraction_hib(b):
            drop = bv - rv
            verdicts.append(Verdict(cell, metric, "accuracy", drop <= tol["accuracy_drop"], bv, rv,
                                    f"drop {drop:+.4f}"))
    verdicts += exactness_checks(run, tol)
    return verdicts


def coverage_note(verdicts: list[Verdict], run: list[dict[str, Any]], baseline: list[dict[str, Any]]) -> str:
    """One line on the timings: how many were compared, and when none was, the machines of both sides."""
    compared, skipped = timing_coverage(verdicts)
    if not skipped:
        return f"Timings: {compared} compared."
    if compared:
        return f"Timings: {compared} compared, {skipped} not (another device or thread count)."

    def machines(records: list[dict[str, Any]]) -> str:
        seen = sorted({_machine_label(r) for r in records if r.get("metric") in TIME_METRICS})
        return "; ".join(seen) or "none"

    return (f"**No timing was compared** ({skipped} skipped): the baseline holds no records of this run's machine "
            f"(run: {machines(run)}; baseline: {machines(baseline)}), so this check says nothing about speed. Add "
            f"this machine's records to the baseline file (baselines/README.md).")


def _machine_label(r: dict[str, Any]) -> str:
    name, threads = _machine(r)
    return f"{name}" + (f", {threads} thread{'s' if threads != 1 else ''}" if threads is not None else "")


def render(verdicts: list[Verdict], run_dir: str, baseline: str, coverage: str | None = None) -> str:
    bad = [v for v in verdicts if not v.ok]
    lines = [f"# svbench regression check: {'REGRESSION' if bad else 'PASS'}", "",
             f"Run: `{run_dir}`  ", f"Baseline: `{baseline}`  ",
             f"{len(verdicts)} checks, {len(bad)} failed." + (f"  \n{coverage}" if coverage else ""), "",
             "| verdict | kind | cell | metric | baseline | run | note |", "|---|---|---|---|---|---|---|"]

    def fmt(x: Any) -> str:
        return f"{x:.4g}" if isinstance(x, float) else ("—" if x is None else str(x))

    for v in sorted(verdicts, key=lambda v: (v.ok, v.kind, v.cell_id, v.metric)):
        lines.append(f"| {'ok' if v.ok else '**FAIL**'} | {v.kind} | {v.cell_id} | {v.metric} | {fmt(v.baseline)} "
                     f"| {fmt(v.value)} | {v.note} |")
    return "\n".join(lines) + "\n"


def compare_run(run_dir: str | Path, baseline: str | Path, out_root: str | Path = "reports/ci",
                tolerances: dict[str, float] | None = None) -> tuple[bool, Path, str]:
    """Compare, write ``<out_root>/<run_id>.md``; returns (passed, report path, markdown)."""
    bpath = Path(baseline)
    if not bpath.exists():
        raise UserError(f"baseline file not found: {bpath}")
    run = load_results(run_dir)
    base = load_results(bpath)
    run_suites, base_suites = {r.get("suite") for r in run}, {r.get("suite") for r in base}
    if not run_suites & base_suites:
        def names(s: set) -> str:
            return ", ".join(sorted(map(str, s)))

        raise UserError(f"nothing to compare: the run is of suite {names(run_suites)} and the baseline of "
                        f"{names(base_suites)}; pass the baseline of the same suite (e.g. baselines/cpu-1thread/"
                        f"smoke.jsonl for a smoke run)")
    if tolerances is None:
        tolerances = _suite_tolerances(Path(run_dir))
    verdicts = compare(run, base, tolerances)
    coverage = coverage_note(verdicts, run, base)
    if coverage.startswith("**No timing"):
        import warnings

        warnings.warn(coverage.replace("**", ""), stacklevel=2)
    md = render(verdicts, str(run_dir), str(bpath), coverage)
    run_id = run[0].get("run_id", Path(run_dir).name) if run else Path(run_dir).name
    out = Path(out_root) / f"{run_id}.md"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(md)
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror}") from None
    return all(v.ok for v in verdicts), out, md


def _suite_tolerances(run_dir: Path) -> dict[str, float]:
    import json

    meta = run_dir / "meta.json"
    if meta.exists():
        try:
            return dict(json.loads(meta.read_text()).get("suite", {}).get("tolerances", {}) or {})
        except (ValueError, OSError):
            return {}
    return {}
