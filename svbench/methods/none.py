"""``none``: a plain ``nn.Conv2d`` with no SV work.

The reference for time and memory overhead (its SV computation is empty; its layer forward is the plain conv)
and the clean-accuracy / ECE baseline in training.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from svbench.methods.base import METHODS, Capabilities, Method, NoConfig


@METHODS.register("none")
class NoneMethod(Method):
    name = "none"
    provides = "none"
    supports = Capabilities(groups=True, dilation=True)
    Config = NoConfig
    rectangular_grids = True
    anisotropic = True
    any_circular_grid = True
    summary = "plain conv, no SV computation or control (overhead and accuracy reference)"
    reference = "-"

    def layer_svs(self, layer: nn.Module, input_hw: int) -> Tensor:
        weight = getattr(layer, "weight", None)
        dtype = weight.dtype if isinstance(weight, Tensor) else torch.float32
        device = weight.device if isinstance(weight, Tensor) else "cpu"
        return torch.empty(0, dtype=dtype, device=device)
