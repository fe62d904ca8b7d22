"""Peak memory of one call.

- CUDA: ``reset_peak_memory_stats`` then ``max_memory_allocated`` minus the allocation before the call (tensor
  memory through PyTorch's caching allocator; cuFFT/cuSOLVER workspaces outside it are not counted).
- CPU (Linux): the process's resident-set high-water mark (VmHWM, reset through /proc/self/clear_refs) minus the
  resident set before the call. glibc would keep freed blocks and hide later allocations, so before measuring
  its mmap threshold is fixed at 64 KiB (``mallopt``) during the call, so large blocks go back to the OS when
  freed, and raised to 32 MiB afterwards (where glibc's dynamic threshold settles). This
  counts everything the call touches (tensors, LAPACK workspaces, Python objects), at page granularity.
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
            # back to what glibc's dynamic threshold settles at, so later work (training) is not slowed by
            # an mmap per allocation
            _set_glibc_thresholds(32 * 2**20, 64 * 2**20)
    fn()
    return PeakMemory(None, "not_measured")
