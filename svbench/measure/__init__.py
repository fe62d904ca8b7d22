"""Timing, peak memory and the environment stamp every record carries."""

from svbench.measure.env import environment
from svbench.measure.memory import PeakMemory, peak_memory
from svbench.measure.timing import Timing, time_callable, timed_call, warm_timing

__all__ = ["PeakMemory", "Timing", "environment", "peak_memory", "time_callable", "timed_call", "warm_timing"]
