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
from typing import TypeVar

import torch

T = TypeVar("T")

@dataclass(frozen=True)
class Timing:
    median_ms: float
    iqr_ms: float
    repeats: int
    warmup: int
    clock: str  # "cuda_events" or "perf_counter"
    samples_ms: tuple[float, ...]
    first_call_timed: bool = False  # the caller's first (cold) call is one of the samples (slow operations)


def _quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if len(xs) == 1:
        return xs[0]
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def timed_call(fn: Callable[[], T], device: torch.device | str = "cpu") -> tuple[T, float]:
    """Run ``fn`` once, synchronised; returns its result and its wall time in ms (CUDA events on GPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.Event(enable_timing=True)
        stop = torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn()
        stop.record()
        torch.cuda.synchronize(device)
        return out, float(start.elapsed_time(stop))
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1e3


def _once(fn: Callable[[], object], device: torch.device) -> float:
    return timed_call(fn, device)[1]


def time_callable(
    fn: Callable[[], object],
    device: torch.device | str = "cpu",
    *,
    warmup: int = 1,
    min_repeats: int = 10,
    max_repeats: int = 100,
    budget_s: float = 1.0,
    slow_repeats: int = 3,
    prior_ms: float | None = None,
) -> Timing:
    """Median and IQR of ``fn``'s wall time in ms.

    After ``warmup`` untimed calls (cuFFT plans, solver handles, LAPACK workspaces), one timed call estimates the
    cost; the number of repeats is ``budget_s / cost`` clamped to [min_repeats, max_repeats], except that an
    operation so slow that ``min_repeats`` would take more than 5 x ``budget_s`` gets max(slow_repeats, 5 budget /
    cost) (``slow_repeats`` defaults to 3; the count used is recorded either way).

    ``prior_ms``: the time of a call the caller has just made (see ``timed_call``). If that one call took more than
    5 x ``budget_s``, it is the first of the ``slow_repeats`` samples and no warm-up is added (for operations of
    many seconds, where one-time set-up costs are a negligible share); the Timing then says ``warmup=0``.
    """
    device = torch.device(device)
    if prior_ms is not None and prior_ms / 1e3 > 5 * budget_s:
        samples = [prior_ms] + [_once(fn, device) for _ in range(min(slow_repeats, max_repeats) - 1)]
        return _summary(samples, 0, device, first_call_timed=True)
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
    return _summary(samples, warmup, device)


def _summary(samples: list[float], warmup: int, device: torch.device, first_call_timed: bool = False) -> Timing:
    return Timing(
        median_ms=statistics.median(samples),
        iqr_ms=_quantile(samples, 0.75) - _quantile(samples, 0.25),
        repeats=len(samples),
        warmup=warmup,
        clock="cuda_events" if device.type == "cuda" else "perf_counter",
        samples_ms=tuple(samples),
        first_call_timed=first_call_timed,
    )


@dataclass(frozen=True)
class PairedTiming:
    """Two callables timed alternately (A B A B ...): slow drift and noisy neighbours hit both alike."""

    a: Timing
    b: Timing
    ratio_b_over_a: float  # median over pairs of t_b / t_a
    ratio_iqr: float


def paired_timing(
    fn_a: Callable[[], object], fn_b: Callable[[], object], device: torch.device | str = "cpu", *,
    repeats: int = 30, warmup: int = 1,
) -> PairedTiming:
    """Time ``fn_a`` and ``fn_b`` in alternation, ``repeats`` pairs after ``warmup`` untimed pairs.

    The speed-up of A over B is reported as the median of the per-pair ratios t_b / t_a, which cancels drift that
    the ratio of two separately measured medians does not.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    device = torch.device(device)
    for _ in range(max(0, warmup)):
        fn_a()
        fn_b()
    ta, tb = [], []
    for i in range(repeats):
        if i % 2:  # alternate which goes first, so neither always runs on a cache warmed by the other
            tb.append(_once(fn_b, device))
            ta.append(_once(fn_a, device))
        else:
            ta.append(_once(fn_a, device))
            tb.append(_once(fn_b, device))
    ratios = [b / a for a, b in zip(ta, tb) if a > 0]
    return PairedTiming(
        _summary(ta, warmup, device), _summary(tb, warmup, device),
        statistics.median(ratios), _quantile(ratios, 0.75) - _quantile(ratios, 0.25),
    )


def warm_timing(spec: object, prior_ms: float | None = None) -> dict[str, object]:
    """``time_callable`` keyword arguments from a timing spec dataclass, for a callable the caller has already run
    once (to check its output): that call counts as the first warm-up, and its time ``prior_ms`` is passed on."""
    args = dataclasses.asdict(spec)  # type: ignore[call-overload]
    args["warmup"] = max(0, int(args["warmup"]) - 1)
    args["prior_ms"] = prior_ms
    return args


def median_wall_ms(fn: Callable[[], object], reps: int) -> float:
    """Median host wall time of ``reps`` calls in ms (CPU work; the paired scripts in scripts/ alternate two forms
    with it)."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def alternated_ms(fn_a: Callable[[], object], fn_b: Callable[[], object], rounds: int, reps: int
                  ) -> tuple[float, float, float]:
    """Two forms of one CPU operation timed in alternation (the paired scripts in scripts/): ``rounds`` rounds, each
    the median of ``reps`` calls of a then of b; returns (median over rounds of a, of b, median of the per-round
    ratios a / b). Alternating cancels most of a shared machine's drift, which unpaired cells do not."""
    a, b, ratio = [], [], []
    for _ in range(rounds):
        x, y = median_wall_ms(fn_a, reps), median_wall_ms(fn_b, reps)
        a.append(x)
        b.append(y)
        ratio.append(x / y)
    return statistics.median(a), statistics.median(b), statistics.median(ratio)


def paired_cpu_script(argv: list[str] | None, description: str, what: str, *, rounds: int = 7, reps: int = 3,
                      quick_help: str = "a small check, one round", ints: dict[str, int] | None = None):
    """The command line every paired CPU script in scripts/ shares: ``--rounds``, ``--reps``, ``--quick`` (then one
    round of one call) and the integer options ``ints`` (name: default). Pins one thread, seeds torch with 0 and
    prints the header line naming the machine, torch, the thread count and ``what`` was timed. Returns the parsed
    arguments (an ``argparse.Namespace``) with ``rounds`` and ``reps`` as they will be used."""
    import argparse

    from svbench.measure.env import device_name

    parser = argparse.ArgumentParser(description=description)
    for name, default in (ints or {}).items():
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--reps", type=int, default=reps)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if args.quick:
        args.rounds, args.reps = 1, 1
    print(f"device: cpu ({device_name('cpu')}), torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{what}, {args.rounds} rounds x {args.reps} calls per form, alternated\n")
    return args
