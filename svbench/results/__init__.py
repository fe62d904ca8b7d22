"""Results: the record schema, JSONL I/O and pandas tables."""

from svbench.results.io import ResultsWriter, load_results
from svbench.results.schema import METRICS, SCHEMA_VERSION, MetricInfo

__all__ = ["METRICS", "SCHEMA_VERSION", "MetricInfo", "ResultsWriter", "load_results"]
