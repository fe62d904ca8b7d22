"""Where the time of one call goes: a torch.profiler breakdown by operator (and by CUDA kernel on a GPU).

Timings (``timing.py``) say how long an operation takes; a profile says what it spends the time on -- solver calls,
matmuls, elementwise passes, host syncs -- which is what decides the next optimisation. One call of ``fn`` runs under
``torch.profiler`` (CPU activity, plus CUDA activity on a GPU: kernel times from CUPTI, from every host thread and
stream, so concurrent lanes are covered). The profiler's own overhead makes the call slower than its timed median, so
a profile is a breakdown, never a timing: the runner records its busy total next to the timed median, not instead.

Kineto prints start/stop lines (and, on a machine without a GPU, a device-count error) on the process's stderr;
they are captured around the profiled call and kept at the end of the profile's text file instead of the console.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from svbench.measure.timing import timed_call


@dataclass(frozen=True)
class Profile:
    """One profiled call: ``busy_ms`` is the summed self time on ``clock`` ("cuda": kernel time on the device,
    "cpu": host operator time) and ``wall_ms`` the profiled call's own wall time -- on a GPU, busy time well below
    it means the call waits on the host (launches, syncs), busy time above it means kernels overlapped (lanes);
    ``top`` the largest operators by self time; ``table`` torch's own table."""

    clock: str
    busy_ms: float
    wall_ms: float
    top: list[dict[str, Any]] = field(default_factory=list)
    table: str = ""
    log: str = ""


def profile_call(fn: Callable[[], Any], device: torch.device, *, top: int = 12) -> Profile:
    """Run ``fn`` once under torch.profiler on ``device`` and summarise it by operator."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    with _stderr_captured() as log, profile(activities=activities) as prof:
        _, wall_ms = timed_call(fn, device)
    events = prof.key_averages()
    busy, top_rows, attr = summarise(events, cuda)
    table = events.table(sort_by=attr, row_limit=max(top, 25))
    return Profile(
        clock="cuda" if cuda else "cpu",
        busy_ms=busy,
        wall_ms=wall_ms,
        top=[{"op": name, "calls": calls, "self_ms": round(ms, 4), "share": round(ms / busy, 4) if busy else None}
             for name, calls, ms in top_rows[:top] if ms > 0],
        table=table,
        log=log.read(),
    )


# the share of a CUDA profile's busy time the operators must account for to be the rows; else the kernels are
MIN_ATTRIBUTED = 0.5


def summarise(events: Any, cuda: bool) -> tuple[float, list[tuple[str, int, float]], str]:
    """(busy ms, operator rows (name, calls, self ms) largest first, the sort attribute) of profiler averages.

    CPU: busy = summed host self time of every operator. CUDA: busy = summed time of the device events (kernels,
    copies), counted once -- an operator's own self device time is the time of the kernels it launched, so adding
    both would count every kernel twice; the rows are the torch operators (not the kernels), ranked by the device
    time of the kernels they launched -- unless the operators account for less than ``MIN_ATTRIBUTED`` of the busy
    time (kernels the profiler did not tie to an operator: cuSOLVER's internal launches, work issued from lane
    threads; seen on an H200 for gesvda, where every operator showed 0 %), then the kernels themselves, each
    prefixed ``kernel:``."""
    if not cuda:
        attr = "self_cpu_time_total"
        rows = list(events)
        busy = sum(float(getattr(e, attr, 0.0)) for e in rows)
    else:  # torch >= 2.4 names it for any device; older releases only had the CUDA name
        attr = "self_device_time_total" if all(hasattr(e, "self_device_time_total") for e in list(events)[:1]) \
            else "self_cuda_time_total"
        device = [e for e in events if _on_device(e) and not getattr(e, "is_user_annotation", False)]
        rows = [e for e in events if not _on_device(e)]
        busy = sum(float(getattr(e, attr, 0.0)) for e in device)
    ranked = _ranked(rows, attr)
    if cuda and sum(r[2] for r in ranked) < MIN_ATTRIBUTED * busy / 1e3:
        ranked = [(f"kernel: {name}", calls, ms) for name, calls, ms in _ranked(device, attr)]
    return busy / 1e3, ranked, attr


def _ranked(events: list[Any], attr: str) -> list[tuple[str, int, float]]:
    return sorted(((e.key, int(e.count), float(getattr(e, attr, 0.0)) / 1e3) for e in events),
                  key=lambda r: r[2], reverse=True)


def _on_device(event: Any) -> bool:
    """An event of a device (kernel, copy) rather than a host operator (``device_type`` is a torch enum)."""
    return not str(getattr(event, "device_type", "CPU")).endswith("CPU")


def profile_text(p: Profile, title: str) -> str:
    """The human-readable file written next to a run's results: title, busy total, torch's table, kineto's log."""
    out = [title, f"self time summed on the {p.clock} clock: {p.busy_ms:.3f} ms; wall time of the profiled call: "
           f"{p.wall_ms:.3f} ms (the profiler's overhead makes it slower than the timed median)", "", p.table]
    if p.log.strip():
        out += ["", "profiler messages on stderr:", p.log.rstrip()]
    return "\n".join(out) + "\n"


class _Captured:
    def __init__(self) -> None:
        self.text = ""

    def read(self) -> str:
        return self.text


@contextmanager
def _stderr_captured() -> Iterator[_Captured]:
    """Route file descriptor 2 to a temporary file for the block (C++ code writes there directly)."""
    cap = _Captured()
    try:
        saved = os.dup(2)
    except OSError:  # no usable fd 2: nothing to capture
        yield cap
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield cap
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            cap.text = tmp.read().decode("utf-8", "replace")
