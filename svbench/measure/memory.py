"""Peak memory of one call.

- CUDA: ``reset_peak_memory_stats`` then ``max_memory_allocated`` minus the allocation before the call (tensor
  memory through PyTorch's caching allocator; cuFFT/cuSOLVER workspaces outside it are not counted).
- CPU (Linux): the process's resident-set high-water mark (VmHWM, reset through /proc/self/clear_refs) minus the
  resident set before the call. glibc would keep freed blocks and hide later allocations, so before measuring
  its mmap threshold is fixed at 64 KiB (``mallopt``) during the call, so large blocks go back to the OS when
  freed, and set back to the run's fixed values afterwards (``fix_allocator``). This counts everything the call
  touches (tensors, LAPACK workspaces, Python objects), at page granularity.
- Elsewhere: not measured (None), and the record says so.
"""

from __future__ import annotations

import ctypes
import gc
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# The allocator configuration every CPU timing runs under (``fix_allocator``): glibc's dynamic mmap threshold
# settles at most at 32 MiB (its 64-bit maximum) in a long-running process; fixing it there from the start makes
# the first cell of a run time like the rest, and like the state peak_memory leaves behind. Measured effect on
# this project's CPU: the naive reference at c = 64, n = 16 runs ~9 % faster under it than under fresh defaults.
STEADY_MMAP_THRESHOLD = 32 * 2**20
STEADY_TRIM_THRESHOLD = 64 * 2**20


@dataclass(frozen=True)
class PeakMemory:
    bytes: int | None
    how: str


def _read_status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, val = line.split(":")
                out[key] = int(val.split()[0]) * 1024
    return out


def _set_glibc_thresholds(mmap: int, trim: int) -> bool:
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, trim))
    except (OSError, AttributeError):
        return False


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def fix_allocator() -> str:
    """Put glibc malloc in its steady configuration for timing; returns what was set (recorded with results)."""
    if sys.platform.startswith("linux") and _set_glibc_thresholds(STEADY_MMAP_THRESHOLD, STEADY_TRIM_THRESHOLD):
        return f"glibc mmap_threshold={STEADY_MMAP_THRESHOLD >> 20}MiB trim_threshold={STEADY_TRIM_THRESHOLD >> 20}MiB"
    return "default"


def peak_memory(fn: Callable[[], object], device: torch.device | str = "cpu") -> PeakMemory:
    """Peak extra memory while ``fn`` runs (see the module docstring for what is measured where)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return PeakMemory(int(torch.cuda.max_memory_allocated(device) - base), "cuda_max_memory_allocated")
    if sys.platform.startswith("linux") and _set_glibc_thresholds(65536, 65536):
        try:
            gc.collect()
            _malloc_trim()  # give cached free heap memory back, so the call cannot hide in it
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            base = _read_status()["VmRSS"]
            fn()
            return PeakMemory(max(0, _read_status()["VmHWM"] - base), "cpu_rss_high_water")
        except OSError:
            pass
        finally:
            # back to the steady configuration, so later timings and training are not slowed by an mmap per
            # allocation
            _set_glibc_thresholds(STEADY_MMAP_THRESHOLD, STEADY_TRIM_THRESHOLD)
    fn()
    return PeakMemory(None, "not_measured")
