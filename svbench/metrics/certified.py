"""Certified robust accuracy (Tsuzuku, Sato & Sugiyama, NeurIPS 2018, arXiv:1802.04034).

Radius = margin / (sqrt(2) L), with L a GUARANTEED upper bound on the l2 Lipschitz constant of the logits in
pixel units, MEASURED as the product of per-layer bounds (never assumed to be 1):

- Normalize: 1 / min_c std_c;  eval-mode BatchNorm: max_c |gamma_c| / sqrt(running_var_c + eps);
- conv (plain, grouped, dilated or TT): exact circular sigma_max on its grid for circular padding (grouped and
  dilated convs through their dense equivalent kernel); for zero padding the circular
  sigma_max on n' = s ceil((n + k - 1) / s) (a guaranteed bound, methods.md 1.2), all in float64;
- Cayley conv: the largest SV of its implemented operator (1 up to rounding), float64;
- Linear: exact spectral norm; ReLU / MaxMin / max-pool (non-overlapping) / flatten: 1;
- average pooling over a window of w pixels: 1 / sqrt(w).

Only chain models (a sequence of layers, no residual sums) are supported; others are refused with the reason.
Products of power-iteration estimates cannot certify and are never used here.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor, nn

from svbench.errors import UserError
from svbench.functional.grouped import dense_equivalent_kernel
from svbench.functional.spectrum import conv_sigma_max, zero_padding_sigma_max_bound
from svbench.models.normalize import Normalize
from svbench.models.probe import probe_inputs

_ONE = (nn.ReLU, nn.Flatten, nn.Identity, nn.Dropout, nn.MaxPool2d)


def _conv_bound(weight: Tensor, n: int, stride: int, padding_mode: str) -> tuple[float, str]:
    w = weight.detach().double()
    if padding_mode == "circular":
        return float(conv_sigma_max(w, n, stride)), "circular exact sigma_max (float64)"
    return float(zero_padding_sigma_max_bound(w, n, stride)), "circular sigma_max on n' (float64 bound)"


def layer_bound(module: nn.Module, in_shape: tuple[int, ...]) -> tuple[float, str] | None:
    """Guaranteed Lipschitz bound of one leaf module for inputs of ``in_shape`` (C, H, W) or (F,)."""
    from svbench.methods.cayley import CayleyConv2d
    from svbench.methods.tt import TTConv2d
    from svbench.models.vgg import MaxMin

    if isinstance(module, Normalize):
        return module.lipschitz(), "1 / min std"
    if isinstance(module, nn.Conv2d):
        # grouped / dilated: the dense kernel of the same operator (block diagonal, zero-filled taps)
        kernel = dense_equivalent_kernel(module.weight.detach(), module.groups, module.dilation[0])
        return _conv_bound(kernel, in_shape[-1], module.stride[0], module.padding_mode)
    if isinstance(module, TTConv2d):
        from svbench.functional.tt import folded_cores

        (core,) = folded_cores([tuple(p.detach().double() if p is not None else None
                                      for p in (module.k1, module.k2, module.k3))])
        b, src = _conv_bound(core, in_shape[-1], module.stride[0], module.padding_mode)
        return b, "TT folded core: " + src
    if isinstance(module, CayleyConv2d):
        from svbench.methods.cayley import CayleyMethod

        layer = copy.deepcopy(module).double().eval()
        n = in_shape[-1]
        with torch.no_grad():
            val = float(CayleyMethod().layer_svs(layer, n).max())
        return val, "Cayley operator largest SV (float64)"
    if isinstance(module, nn.Linear):
        return float(torch.linalg.matrix_norm(module.weight.detach().double(), ord=2)), "exact spectral norm"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        from svbench.methods.power import bn_lipschitz

        return float(bn_lipschitz(module)), "eval BN max |gamma| / sqrt(var + eps)"
    if isinstance(module, nn.AdaptiveAvgPool2d):
        h, w = in_shape[-2:]
        out = module.output_size if isinstance(module.output_size, tuple) else (module.output_size,) * 2
        win = math.ceil(h / (out[0] or h)) * math.ceil(w / (out[1] or w))
        return 1 / math.sqrt(win), "average pooling 1 / sqrt(window)"
    if isinstance(module, nn.AvgPool2d):
        k = module.kernel_size if isinstance(module.kernel_size, int) else module.kernel_size[0]
        s = module.stride if isinstance(module.stride, int) else module.stride[0]
        if s != k:
            raise UserError("no certified bound for overlapping average pooling")
        return 1 / k, "average pooling 1 / sqrt(window)"
    if isinstance(module, nn.MaxPool2d):
        k = module.kernel_size if isinstance(module.kernel_size, int) else module.kernel_size[0]
        s = module.stride if isinstance(module.stride, int) else module.stride[0]
        if s < k:
            raise UserError("no certified bound implemented for overlapping max pooling")
        return 1.0, "1-Lipschitz"
    if isinstance(module, (*_ONE, MaxMin)):
        return 1.0, "1-Lipschitz"
    return None


def lipschitz_bound(model: nn.Module, input_shape: tuple[int, int, int],
                    device: torch.device | str = "cpu") -> tuple[float, list[dict[str, Any]]]:
    """Product of per-layer guaranteed bounds along the forward order of a chain model."""
    if not getattr(model, "is_chain", False):
        raise UserError(f"certified accuracy needs a chain model (no residual sums); {type(model).__name__} is not "
                        f"marked as one")
    leaf_types = _leaf_types()
    order = probe_inputs(
        model, input_shape,
        lambda name, mod: isinstance(mod, leaf_types) or (len(list(mod.children())) == 0 and mod is not model),
        device,
    )
    total, layers = 1.0, []
    for name, mod, shape in order:
        res = layer_bound(mod, shape)
        if res is None:
            if isinstance(mod, leaf_types) or len(list(mod.children())) == 0:
                raise UserError(f"no guaranteed Lipschitz bound for layer {name!r} ({type(mod).__name__})")
            continue
        b, src = res
        total *= b
        layers.append({"layer": name, "type": type(mod).__name__, "bound": b, "source": src})
    return total, layers


def _leaf_types() -> tuple[type, ...]:
    from svbench.methods.cayley import CayleyConv2d
    from svbench.methods.tt import TTConv2d

    return (TTConv2d, CayleyConv2d, Normalize)


def certified_accuracy(logits: Tensor, labels: Tensor, lipschitz: float, eps: float) -> float:
    """Fraction of points correct with margin / (sqrt(2) L) > eps."""
    top2 = logits.double().topk(2, dim=1)
    correct = top2.indices[:, 0] == labels
    true_logit = logits.double().gather(1, labels[:, None]).squeeze(1)
    other = torch.where(correct, top2.values[:, 1], top2.values[:, 0])
    margin = true_logit - other
    radius = margin / (math.sqrt(2) * lipschitz)
    return float((correct & (radius > eps)).double().mean())
