"""Accuracy and calibration: ECE (Guo, Pleiss, Sun & Weinberger, ICML 2017, arXiv:1706.04599), NLL, Brier.

ECE uses the max softmax probability as confidence, 15 equal-width bins, computed once over all N predictions.
The primary value comes from torchmetrics' ``MulticlassCalibrationError`` fed PROBABILITIES (torchmetrics applies
softmax only when some input lies outside [0, 1], which small-logit Lipschitz nets can fail). ``ece_reference``
is an independent implementation with Guo's (lo, hi] bins, used to cross-check.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def accuracy(logits: Tensor, labels: Tensor) -> float:
    return float((logits.argmax(1) == labels).float().mean())


def ece_reference(probs: Tensor, labels: Tensor, n_bins: int = 15) -> float:
    """sum_b |B_b| / N * |acc(B_b) - conf(B_b)| with bins (lo, hi] on [0, 1] (confidence 0 goes to the first bin)."""
    conf, pred = probs.max(1)
    correct = (pred == labels).double()
    conf = conf.double()
    bins = torch.clamp(torch.ceil(conf * n_bins).long() - 1, 0, n_bins - 1)
    n = conf.numel()
    ece = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            ece += float(m.sum()) / n * abs(float(correct[m].mean()) - float(conf[m].mean()))
    return ece


def ece_torchmetrics(probs: Tensor, labels: Tensor, n_bins: int = 15) -> float:
    from torchmetrics.classification import MulticlassCalibrationError

    metric = MulticlassCalibrationError(num_classes=probs.shape[1], n_bins=n_bins, norm="l1")
    return float(metric(probs.double().clamp(0, 1), labels))


def calibration_metrics(logits: Tensor, labels: Tensor, n_bins: int = 15) -> dict[str, float]:
    """accuracy, ECE (torchmetrics, probabilities), ECE (reference implementation), NLL, Brier score."""
    logits = logits.double()
    probs = logits.softmax(1)
    onehot = F.one_hot(labels, probs.shape[1]).double()
    return {
        "accuracy": accuracy(logits, labels),
        "ece": ece_torchmetrics(probs, labels, n_bins),
        "ece_reference": ece_reference(probs, labels, n_bins),
        "nll": float(F.cross_entropy(logits, labels)),
        "brier": float((probs - onehot).square().sum(1).mean()),
    }
