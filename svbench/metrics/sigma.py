"""The sigma_max each conv of a trained model really ends up with, after the method's last control step.

For every conv-like layer (plain, TT, Cayley) on the input size it really sees: ``upper`` is guaranteed (exact
circular sigma_max for circular padding; the circular bound on n' for zero padding; the dense operator where
neither model holds; float64: ``metrics.certified.conv_layer_bound``), ``lower`` is a
power-iteration estimate on the real operator (a Rayleigh quotient, never above the truth), and ``exact`` says
whether upper is the exact value. Overshoot = upper / target when the method has a target.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from svbench.errors import UnsupportedShape
from svbench.functional.oracle import layer_as_float64
from svbench.functional.power import conv_power_iteration
from svbench.metrics.certified import conv_layer_bound
from svbench.models.probe import probe_inputs


def layer_sigmas(model: nn.Module, input_shape: tuple[int, int, int], target: float | None = None,
                 device: torch.device | str = "cpu", power_iters: int = 100) -> list[dict[str, Any]]:
    from svbench.methods.cayley import CayleyConv2d
    from svbench.methods.tt import TTConv2d

    kinds = (nn.Conv2d, TTConv2d, CayleyConv2d)
    layers = probe_inputs(model, input_shape, lambda name, mod: isinstance(mod, kinds), device)
    out = []
    for name, mod, shape in layers:
        n = shape[-1]
        upper, src, exact = conv_layer_bound(mod, shape)
        lower = None
        if isinstance(mod, (nn.Conv2d, TTConv2d)):
            w = (mod.full_kernel() if isinstance(mod, TTConv2d) else mod.weight).detach().double()
            groups = getattr(mod, "groups", 1)
            u = torch.randn(1, w.shape[1] * groups, *shape[-2:], generator=torch.Generator().manual_seed(0),
                            dtype=torch.float64)
            from svbench.methods.base import axis_padding, padding_mode_problem

            try:
                pad = axis_padding(mod)
            except UnsupportedShape:
                pad = None  # an axis padded unevenly ('same' on an even kernel): the iteration pads each axis evenly
            # any grid, a stride and a dilation per axis: the iteration takes them (functional.power); the quotient
            # below is of the layer's own forward whatever it converged to
            if pad is not None and padding_mode_problem(mod) is None:
                _, u = conv_power_iteration(w, u.to(w.device), stride=tuple(mod.stride), padding=pad,
                                            padding_mode=mod.padding_mode, dilation=tuple(mod.dilation),
                                            iters=power_iters, groups=groups)
                # the quotient through the layer's own forward: never above its sigma_max, whatever the iteration
                f = layer_as_float64(mod)
                with torch.no_grad():
                    lower = float((f(u) - f(torch.zeros_like(u))).norm() / u.norm())
        out.append({
            "layer": name, "type": type(mod).__name__, "n": n, "upper": upper, "lower": lower, "source": src,
            "exact": exact,
            "overshoot": (upper / target) if target else None,
        })
    return out
