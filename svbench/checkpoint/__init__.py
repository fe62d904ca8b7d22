"""Checkpoints as untrusted input: safe loading, finding conv layers, per-layer spectra."""

from svbench.checkpoint.load import ConvEntry, find_convs, load_state_dict
from svbench.checkpoint.spectrum import checkpoint_spectrum, compute_spectrum, model_spectrum, plan_spectrum

__all__ = ["ConvEntry", "checkpoint_spectrum", "compute_spectrum", "find_convs", "load_state_dict", "model_spectrum",
           "plan_spectrum"]
