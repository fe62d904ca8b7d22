"""Suites: schema, loader and runner."""

from svbench.suite.loader import load_suite
from svbench.suite.schema import Suite, SVTask

__all__ = ["SVTask", "Suite", "load_suite"]
