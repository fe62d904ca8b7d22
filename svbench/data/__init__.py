"""Data: images in [0, 1] (normalisation lives inside the model); nothing downloads at run time."""

from svbench.data.sources import CORRUPTIONS_15, CORRUPTIONS_19, DATASETS, load_corruption, load_dataset
from svbench.data.splits import DataSplits, Split, batches

__all__ = ["CORRUPTIONS_15", "CORRUPTIONS_19", "DATASETS", "DataSplits", "Split", "batches", "load_corruption",
           "load_dataset"]
