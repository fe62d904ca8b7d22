"""Timing done right: warm-up, synchronised regions, many repeats, median and IQR.

On CUDA each repeat is bracketed by CUDA events after a synchronize (never unsynchronised GPU work); on CPU by
``time.perf_counter``. Slow operations get fewer repeats (adaptive, at least 3); the count is recorded.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Timing:
    median_ms: float
    iqr_ms: float
    repeats: int
    warmup: int
    clock: str  # "cuda_events" or "perf_counter"
    samples_ms: tuple[float, ...]


def _quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if len(xs) == 1:
        return xs[0]
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _once(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.Event(enable_timing=True)
        stop = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        torch.cuda.synchronize(device)
        return float(start.elapsed_time(stop))
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def time_callable(
    fn: Callable[[], object],
    device: torch.device | str = "cpu",
    *,
    warmup: int = 1,
    min_repeats: int = 10,
    max_repeats: int = 100,
    budget_s: float = 1.0,
    slow_repeats: int = 3,
) -> Timing:
    """Median and IQR of ``fn``'s wall time in ms.

    After ``warmup`` untimed calls (cuFFT plans, solver handles, LAPACK workspaces), one timed call estimates the
    cost; the number of repeats is ``budget_s / cost`` clamped to [min_repeats, max_repeats], except that an
    operation so slow that ``min_repeats`` would take more than 5 x ``budget_s`` gets max(slow_repeats, 5 budget /
    cost) (``slow_repeats`` defaults to 3; the count used is recorded either way).
    """
    device = torch.device(device)
    for _ in range(max(0, warmup)):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    first = _once(fn, device)
    est = max(first / 1e3, 1e-7)
    n = int(budget_s / est)
    n = min(max_repeats, max(min_repeats, n))
    if est * min_repeats > 5 * budget_s:
        n = min(n, max(slow_repeats, int(5 * budget_s / est)))
    samples = [first] + [_once(fn, device) for _ in range(n - 1)]
    return Timing(
        median_ms=statistics.median(samples),
        iqr_ms=_quantile(samples, 0.75) - _quantile(samples, 0.25),
        repeats=len(samples),
        warmup=warmup,
        clock="cuda_events" if device.type == "cuda" else "perf_counter",
        samples_ms=tuple(samples),
    )


def warm_timing(spec: object) -> dict[str, object]:
    """``time_callable`` keyword arguments from a timing spec dataclass, for a callable the caller has already run
    once (to check its output): that call counts as the first warm-up."""
    args = dataclasses.asdict(spec)  # type: ignore[call-overload]
    args["warmup"] = max(0, int(args["warmup"]) - 1)
    return args
