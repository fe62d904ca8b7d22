"""Timing, peak memory and the environment stamp every record carries."""

from svbench.measure.env import environment, resolve_device
from svbench.measure.memory import PeakMemory, fix_allocator, peak_memory
from svbench.measure.timing import PairedTiming, Timing, paired_timing, time_callable, timed_call, warm_timing

__all__ = [
    "PairedTiming", "PeakMemory", "Timing", "environment", "fix_allocator", "paired_timing", "peak_memory",
    "resolve_device", "time_callable", "timed_call", "warm_timing",
]
