"""Per-channel normalisation as the model's first layer, so attacks and certificates see [0, 1] pixels."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class Normalize(nn.Module):
    """y = (x - mean) / std per channel; Lipschitz constant 1 / min(std)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean)).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std)).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def lipschitz(self) -> float:
        return float(1.0 / self.std.min())
