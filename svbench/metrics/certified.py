"""Certified robust accuracy (Tsuzuku, Sato & Sugiyama, NeurIPS 2018, arXiv:1802.04034).

Radius = margin / (sqrt(2) L), with L a GUARANTEED upper bound on the l2 Lipschitz constant of the logits in
pixel units, MEASURED by composing per-layer bounds (never assumed to be 1):

- Normalize: 1 / min_c std_c;  eval-mode BatchNorm: max_c |gamma_c| / sqrt(running_var_c + eps);
- conv (plain, grouped, dilated or TT) on the grid it really sees, all in float64 (grouped and dilated convs
  through their dense equivalent kernel, TT convs through their folded core):
  circular padding that gives the grid's n / s outputs: the exact circular sigma_max (on an H x W grid too, since
  session 17: before, the dense operator up to c H W <= 4096); less padding (fewer outputs, a part of the same
  rows): that value as a bound; zero padding: the circular sigma_max on n' = s ceil((max(H, W) + k - 1) / s) (a
  guaranteed bound, methods.md 1.2);
  anything else (more outputs than the circular model has, non-square strides or dilations, reflect / replicate
  padding): the dense operator's exact sigma_max when c H W <= 4096, else refused with the reason;
- transposed conv (nn.ConvTranspose2d): the bound of the conv it is the adjoint of, on its output grid (the same
  operator norm);
- Cayley conv: the largest SV of its implemented operator (1 up to rounding), float64;
- Linear: exact spectral norm; ReLU / MaxMin / flatten: 1; elementwise activations: sup |f'| (Tanh, ReLU6,
  Hardtanh, Softplus, CELU, Softsign, Tanhshrink, LogSigmoid, Softshrink 1; Sigmoid 1/4; Hardsigmoid 1/6; Hardswish
  3/2; GELU 1.1289 (erf form) / 1.1290 (tanh form); SiLU 1.0998; Mish 1.0885; SELU scale * alpha = 1.7581;
  LeakyReLU max(1, |slope|); ELU max(1, alpha); PReLU / RReLU max(1, largest |slope|)); any other layer (Hardshrink
  and Threshold are discontinuous) is refused;
- average pooling (any kernel, stride, padding, ceil_mode, adaptive): the exact operator norm; max pooling: its
  exact Lipschitz constant sqrt(most windows sharing a pixel), 1 for non-overlapping windows
  (svbench.functional.pooling).

Whole models compose these along their torch.fx graph (``metrics.lipschitz_graph``): residual sums add their
branches' bounds, concatenations add them in squares, reshapes and padding keep them, and an eval BN or Normalize
beside a conv is folded into it (one layer, one exact or guaranteed sigma_max); chain models fx cannot trace take
the product along the forward order. Products of power-iteration estimates cannot certify and are never used here.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor, nn

from svbench.errors import UserError
from svbench.functional.grouped import layer_sigma_max
from svbench.functional.oracle import oracle_singular_values
from svbench.functional.pooling import AVERAGE, MAXIMUM, pooling_bound
from svbench.functional.spectrum import matrix_spectral_norm
from svbench.functional.transfer import as_stride
from svbench.models.normalize import Normalize
from svbench.models.probe import probe_inputs

_ONE = (nn.ReLU, nn.Flatten, nn.Identity, nn.Dropout)

DENSE_MAX_DIM = 4096  # c * H * W up to which a conv outside the FFT routes is computed densely (exact)


def _dense_bound(module: nn.Module, in_shape: tuple[int, ...], why: str) -> tuple[float, str, bool]:
    c, h, w = in_shape
    if c * h * w > DENSE_MAX_DIM:
        raise UserError(f"no guaranteed bound for {type(module).__name__} on a {c}x{h}x{w} input: {why}; svbench "
                        f"computes such a layer densely only up to c*H*W = {DENSE_MAX_DIM} (use the circular model's "
                        "padding, d (k - 1) / 2 a side, or zero padding)")
    param = next(module.parameters(), None)
    value = float(oracle_singular_values(module, (c, h, w), device=param.device if param is not None else "cpu")[0])
    return value, f"dense operator sigma_max (float64; {why})", True


def conv_layer_bound(module: nn.Module, in_shape: tuple[int, ...]) -> tuple[float, str, bool]:
    """(bound, source, exact) on sigma_max of a conv-like layer (nn.Conv2d, TT, Cayley) on inputs of ``in_shape``
    (C, H, W): guaranteed; ``exact`` when it is the operator's sigma_max itself (float64 in every route)."""
    from svbench.methods.base import effective_weight, is_plain, padding_mode_problem, padding_problem
    from svbench.methods.cayley import CayleyConv2d, CayleyMethod
    from svbench.methods.tt import TTConv2d

    h, w = in_shape[-2:]
    if isinstance(module, nn.Conv2d) and not is_plain(module):  # its forward is not conv2d with its weight
        return _dense_bound(module, in_shape, f"{type(module).__name__} has a forward of its own")
    if isinstance(module, CayleyConv2d):  # its operator on h x w (square or not): the Cayley transforms' SVs
        layer = copy.deepcopy(module).double().eval()
        with torch.no_grad():
            value = float(CayleyMethod().layer_svs(layer, (h, w)).max())
        return value, "Cayley operator largest SV (float64)", True
    stride, dilation, mode = as_stride(tuple(module.stride)), as_stride(tuple(module.dilation)), module.padding_mode
    if padding_mode_problem(module):
        return _dense_bound(module, in_shape, f"{mode} padding")
    why = padding_problem(module, exact=False)
    if why:
        return _dense_bound(module, in_shape, why.split(";")[0])
    if isinstance(module, TTConv2d):
        from svbench.functional.tt import folded_cores

        (core,) = folded_cores([tuple(p.detach().double() if p is not None else None
                                      for p in (module.k1, module.k2, module.k3))])
        kernel, groups, prefix = core, 1, "TT folded core: "
    else:
        weight = effective_weight(module).detach().double()  # spectral_norm / weight_norm: the forward's weight
        kernel, groups, prefix = weight, module.groups, ""
    # a grouped conv by its g diagonal blocks (functional.grouped: the same SVs as its block-diagonal dense kernel,
    # g-fold smaller transfer matrices: ResNeXt-50's 32-group convs took minutes densely)
    if mode == "zeros":  # a stride per axis: n' per axis (functional.spectrum.zero_padding_bound_size)
        value = layer_sigma_max(kernel, max(h, w), stride, "zeros", groups, dilation)
        return value, prefix + "circular sigma_max on n' (float64 bound)", False
    try:
        # a rectangular grid, a stride per axis: exact
        value = layer_sigma_max(kernel, (h, w), stride, "circular", groups, dilation)
    except UserError as e:  # e.g. a stride that does not divide the grid
        return _dense_bound(module, in_shape, str(e))
    if padding_problem(module, exact=True) is None:
        return value, prefix + "circular exact sigma_max (float64)", True
    return value, prefix + "circular sigma_max (float64 bound: the layer has fewer outputs, a part of its rows)", False


def transposed_conv_bound(module: nn.ConvTranspose2d, in_shape: tuple[int, ...]) -> tuple[float, str, bool]:
    """(bound, source, exact) on sigma_max of a transposed conv on inputs of ``in_shape``: that of the conv it is the
    adjoint of (same weight, stride, padding, dilation, groups) on the transposed conv's output grid -- the same
    operator norm (``methods.base.adjoint_conv``), so every route of :func:`conv_layer_bound` applies as it is. Where
    ``output_padding`` is not below the stride (the grid does not map back), the transposed conv's own dense
    operator (up to ``DENSE_MAX_DIM``)."""
    from svbench.methods.base import adjoint_conv, transposed_grid

    grid = transposed_grid(module, *in_shape[-2:])
    if grid is None:
        return _dense_bound(module, in_shape, f"output_padding {tuple(module.output_padding)} not below the stride "
                                              f"{tuple(module.stride)}")
    value, source, exact = conv_layer_bound(adjoint_conv(module), (module.out_channels, *grid))
    return value, f"adjoint conv on its {grid[0]}x{grid[1]} output grid: {source}", exact


def layer_bound(module: nn.Module, in_shape: tuple[int, ...]) -> tuple[float, str] | None:
    """Guaranteed Lipschitz bound of one leaf module for inputs of ``in_shape`` (C, H, W) or (F,)."""
    from svbench.methods.cayley import CayleyConv2d
    from svbench.methods.tt import TTConv2d
    from svbench.models.vgg import MaxMin

    if isinstance(module, Normalize):
        return module.lipschitz(), "1 / min std"
    if isinstance(module, (nn.Conv2d, TTConv2d, CayleyConv2d)):
        value, source, _ = conv_layer_bound(module, in_shape)
        return value, source
    if isinstance(module, nn.ConvTranspose2d):
        value, source, _ = transposed_conv_bound(module, in_shape)
        return value, source
    if isinstance(module, nn.Linear):
        from svbench.methods.base import effective_weight, is_plain

        if not is_plain(module, nn.Linear):  # its weight is not its operator's
            raise UserError(f"no guaranteed Lipschitz bound for {type(module).__name__}: a Linear subclass with a "
                            "forward of its own")
        weight = effective_weight(module).detach().double()
        return matrix_spectral_norm(weight), "exact spectral norm"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        from svbench.methods.power import bn_lipschitz

        if module.running_var is None:
            raise UserError(f"no guaranteed bound for {type(module).__name__} without running statistics "
                            "(track_running_stats=False): it normalises by each batch's own statistics in eval mode "
                            "too, which is no fixed Lipschitz map")

        return float(bn_lipschitz(module)), "eval BN max |gamma| / sqrt(var + eps)"
    if isinstance(module, (*AVERAGE, *MAXIMUM)):
        return pooling_bound(module, *in_shape[-2:])
    if isinstance(module, (*_ONE, MaxMin)):
        return 1.0, "1-Lipschitz"
    return _activation_bound(module)


# sup |f'| of the smooth activations whose largest slope is an interior maximum, rounded UP at the 10th decimal.
# GELU (erf form): f' = Phi(x) + x phi(x), f'' = phi(x) (2 - x^2), so the maximum is at x = sqrt(2):
# Phi(sqrt 2) + sqrt(2) phi(sqrt 2) = (1 + erf(1)) / 2 + e^-1 / sqrt(pi) = 1.1289041452 (the minimum, at -sqrt 2, is
# -0.1289). The others from f'' = 0 solved in float64 (SiLU: 2 + x (1 - 2 sigmoid(x)) = 0 at x = 2.3993573; GELU's
# tanh form at x = 1.41850; Mish at x = 1.49057); tests/test_certified_bounds.py checks each against autograd on a
# dense float64 grid (no slope above the value, the value attained to 1e-9).
GELU_SLOPE = (1 + math.erf(1)) / 2 + math.exp(-1) / math.sqrt(math.pi)
SMOOTH_SLOPES = {"gelu_tanh": 1.1289930687, "silu": 1.0998393202, "mish": 1.0884981613}
SELU_SLOPE = 1.0507009873554804934193349852946 * 1.6732632423543772848170429916717  # torch's scale * alpha
_ONE_SLOPE = (nn.Tanh, nn.ReLU6, nn.Hardtanh, nn.Softplus, nn.CELU, nn.Softsign, nn.Tanhshrink, nn.LogSigmoid,
              nn.Softshrink)


def _activation_bound(module: nn.Module) -> tuple[float, str] | None:
    """Elementwise activations: the l2 Lipschitz constant is sup |f'| (a diagonal Jacobian). Exact, or for GELU's
    tanh form, SiLU and Mish the numerically located interior maximum rounded up (``SMOOTH_SLOPES``).
    Discontinuous ones (Hardshrink, Threshold) have no Lipschitz constant and stay refused."""
    if isinstance(module, _ONE_SLOPE):
        return 1.0, "1-Lipschitz (sup |f'| = 1)"
    if isinstance(module, nn.Sigmoid):
        return 0.25, "sup |sigmoid'| = 1/4"
    if isinstance(module, nn.Hardsigmoid):  # slope 1/6 inside (-3, 3); torch's kernels use float32(1/6), a hair above
        return float(torch.tensor(1 / 6, dtype=torch.float32)), "sup |f'| = 1/6 (float32)"
    if isinstance(module, nn.Hardswish):  # x (x + 3) / 6 on (-3, 3): slope (2x + 3) / 6 -> 3/2 at x = 3
        return 1.5, "sup |f'| = 3/2 (at x = 3)"
    if isinstance(module, nn.GELU):
        if module.approximate == "tanh":
            return SMOOTH_SLOPES["gelu_tanh"], "sup |f'| = 1.1289930687 (tanh form, at x = 1.4185)"
        return GELU_SLOPE, "sup |f'| = (1 + erf 1) / 2 + 1 / (e sqrt(pi)) (at x = sqrt 2)"
    if isinstance(module, nn.SiLU):
        return SMOOTH_SLOPES["silu"], "sup |f'| = 1.0998393202 (at x = 2.3994)"
    if isinstance(module, nn.Mish):
        return SMOOTH_SLOPES["mish"], "sup |f'| = 1.0884981613 (at x = 1.4906)"
    if isinstance(module, nn.SELU):
        return SELU_SLOPE, "sup |f'| = scale * alpha"
    if isinstance(module, nn.LeakyReLU):
        return max(1.0, abs(module.negative_slope)), "sup |f'| = max(1, |negative_slope|)"
    if isinstance(module, nn.ELU):
        return max(1.0, abs(module.alpha)), "sup |f'| = max(1, alpha)"
    if isinstance(module, nn.PReLU):  # the learned slopes as they are now
        return max(1.0, float(module.weight.detach().abs().max())), "sup |f'| = max(1, max |learned slope|)"
    if isinstance(module, nn.RReLU):  # random slopes in [lower, upper] in training, their mean in eval: either way
        return max(1.0, abs(module.lower), abs(module.upper)), "sup |f'| = max(1, |lower|, |upper|)"
    return None


def lipschitz_bound(model: nn.Module, input_shape: tuple[int, int, int], device: torch.device | str = "cpu", *,
                    fold: bool = True) -> tuple[float, list[dict[str, Any]]]:
    """Guaranteed l2 Lipschitz bound of ``model`` (eval mode) and each layer call's factor: composed along its
    torch.fx graph (``metrics.lipschitz_graph``: residual sums add, concatenations add in squares, eval BN and
    Normalize folded into the conv beside them with ``fold``); a chain model fx cannot trace: the product of the
    layer bounds along the forward order."""
    from svbench.metrics.lipschitz_graph import UntraceableModel, graph_lipschitz_bound

    try:
        res = graph_lipschitz_bound(model, input_shape, device, fold=fold)
    except UntraceableModel:
        if not getattr(model, "is_chain", False):
            raise
        return chain_lipschitz_bound(model, input_shape, device)
    return res.value, res.layers


def chain_lipschitz_bound(model: nn.Module, input_shape: tuple[int, int, int], device: torch.device | str = "cpu"
                          ) -> tuple[float, list[dict[str, Any]]]:
    """Product of per-layer guaranteed bounds along the forward order of a chain model (``is_chain``: each layer
    reads the output of the one before, nothing else)."""
    from svbench.metrics.lipschitz_graph import hooks_change_output

    if not getattr(model, "is_chain", False):
        raise UserError(f"a product along the forward order needs a chain model (no residual sums); "
                        f"{type(model).__name__} is not marked as one")
    from torch.nn.utils import parametrize

    leaf_types = _leaf_types()
    # a parametrized layer (spectral_norm, weight_norm) is one layer: its parametrization modules compute its weight
    # and are not layers of the chain
    inner = {id(p) for m in model.modules() if parametrize.is_parametrized(m) for p in m.parametrizations.modules()}
    order = probe_inputs(
        model, input_shape,
        lambda name, mod: id(mod) not in inner and (isinstance(mod, leaf_types) or parametrize.is_parametrized(mod)
                                                    or (len(list(mod.children())) == 0 and mod is not model)),
        device, every_call=True,  # a layer applied twice (tied weights) multiplies the bound twice
    )
    total, layers = 1.0, []
    for name, mod, shape in order:
        if mod._forward_hooks or mod._forward_pre_hooks:  # called on a random input in eval mode, then restored
            x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(0))
            p = next(mod.parameters(), None)
            x = x.to(p.device, p.dtype) if p is not None and p.is_floating_point() else x
            was = mod.training
            try:
                with torch.no_grad():
                    changed = hooks_change_output(mod.eval(), mod(x), (x,))
            finally:
                mod.train(was)
            if changed:
                raise UserError(f"no guaranteed Lipschitz bound for layer {name!r} ({type(mod).__name__}): forward "
                                "hooks change its input or output")
        res = layer_bound(mod, shape)
        if res is None:
            if isinstance(mod, leaf_types) or parametrize.is_parametrized(mod) or len(list(mod.children())) == 0:
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


CERTIFICATE_RTOL = 1e-4  # float32 logits: a certificate may miss by rounding only, never by more


def certificate_check(logits: Tensor, labels: Tensor, x: Tensor, x_adv: Tensor, adv_pred: Tensor,
                      lipschitz: float) -> dict[str, Any]:
    """Cross-check of the certificate against an attack on the same points: an attack that changes the prediction
    of a correctly classified x must move it by at least the certified radius margin / (sqrt(2) L) in l2, whatever
    the attack's norm. ``violations`` (expected 0) counts successful attacks inside the radius (beyond
    ``CERTIFICATE_RTOL``): each is proof that L is not a Lipschitz bound of the model. ``min_ratio`` is the smallest
    ||x_adv - x||_2 / radius over the successful attacks (>= 1 for a valid certificate; how far above says how
    loose it is on those points)."""
    logits, labels = logits.double().cpu(), labels.cpu()
    top2 = logits.topk(2, dim=1)
    correct = top2.indices[:, 0] == labels
    broken = correct & (adv_pred.cpu() != labels)
    margin = logits.gather(1, labels[:, None]).squeeze(1) - top2.values[:, 1]
    radius = margin / (math.sqrt(2) * lipschitz)
    dist = (x_adv.double() - x.double()).flatten(1).norm(dim=1).cpu()
    ratio = dist[broken] / radius[broken]
    return {"violations": int((ratio < 1 - CERTIFICATE_RTOL).sum()), "checked": int(broken.sum()),
            "min_ratio": float(ratio.min()) if ratio.numel() else None, "lipschitz": lipschitz,
            "rtol": CERTIFICATE_RTOL}

