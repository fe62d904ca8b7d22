"""svbench: benchmark and evaluation harness for methods that compute or control conv-layer singular values.

Public facade::

    from svbench import create_method, list_methods, run_suite, load_results
"""

__version__ = "0.1.0"

from svbench.methods import create_method, list_methods
from svbench.results.io import load_results
from svbench.suite.runner import run_suite

__all__ = ["__version__", "create_method", "list_methods", "load_results", "run_suite"]
