"""Metrics: accuracy and calibration, robust accuracy (AutoAttack, foolbox), certified accuracy, sigma after control."""

from svbench.metrics.calibration import accuracy, calibration_metrics, ece_reference, ece_torchmetrics
from svbench.metrics.certified import certified_accuracy, lipschitz_bound

__all__ = ["accuracy", "calibration_metrics", "certified_accuracy", "ece_reference", "ece_torchmetrics",
           "lipschitz_bound"]
