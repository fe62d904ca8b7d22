"""The task option ``profile``: one extra call of a cell's timed operation under torch.profiler, written next to the
run's results (``profiles/<cell>.txt``) and summarised as one record (``*_profile_busy_ms``, top operators in
``extra``). The profile is a breakdown of where the time goes, never a timing (the profiler slows the call)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from svbench.measure.profile import profile_call, profile_text

PROFILES_DIR = "profiles"
TOP_IN_RECORD = 8


def wants_profile(cell: Any) -> bool:
    return cell.method.name in getattr(cell.task, "profile", ())


def profile_item(cell: Any, ctx: Any, fn: Callable[[], object], metric: str) -> dict[str, Any]:
    """Profile ``fn`` once on the run's device; the record item for ``metric`` (value = summed self time).

    A profiler failure (e.g. no CUPTI access on a GPU machine) is recorded in ``extra.error`` with a null value:
    the cell's measured numbers stand without it."""
    try:
        p = profile_call(fn, ctx.device)
    except Exception as e:  # the profiler is an add-on: never lose the cell over it
        return {"metric": metric, "value": None, "extra": {"error": f"{type(e).__name__}: {e}"[:300]}}
    extra: dict[str, Any] = {"clock": p.clock, "wall_ms": round(p.wall_ms, 4), "top": p.top[:TOP_IN_RECORD]}
    run_dir = getattr(ctx, "run_dir", None)
    if run_dir is not None:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{cell.cell_id}-{metric}").strip("_")
        path = run_dir / PROFILES_DIR / f"{slug}.txt"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(profile_text(p, f"{cell.cell_id}: {metric} on {ctx.device}"), encoding="utf-8")
            extra["file"] = f"{PROFILES_DIR}/{path.name}"
        except OSError as e:
            extra["error"] = f"profile not written: {e}"[:300]
    return {"metric": metric, "value": p.busy_ms, "extra": extra}
