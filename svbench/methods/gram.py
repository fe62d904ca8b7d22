"""``gram``: Gram iteration, a guaranteed upper bound on sigma_max, and rescaling control.

Delattre, Barthelemy, Araujo & Allauzen, ICML 2023 (arXiv:2305.16173); zero-padding variant Delattre, Barthelemy
& Allauzen 2024 (arXiv:2402.00240). Public code: blaisedelattre/lip4conv.

- ``bound="fft"`` (default): Gram iteration on the rfft transfer matrices, T iterations, log-space rescaling.
  Circular layers: on their own grid n. Zero-padded layers: on n' = s ceil((n + k - 1) / s), which makes it a
  bound for the zero-padded operator too (methods.md 1.2). UPPER BOUND in exact arithmetic, within
  rho^(2^-(T+1)) of sigma_1 (rho = min(c_in, c_out)); in float32 it may land a few ulps low once converged, so
  ``precision="float64"`` is the certificate setting.
- ``products``: how each Hermitian square G G of the fft route is formed: ``real`` carries G as the one real matrix
  Re G + Im G and squares it in two real matmuls (half the flops of the complex product, same bound up to rounding:
  functional.gram), ``complex`` as one complex matmul (the paper code's form), ``auto`` (default) as measured per
  device: on a CPU real from a Gram side of 32 on; on CUDA real only for batches of side >= 256 holding >= 1e9 matrices
  x side^3 (H200 run 8, paired: WRN-16-10 66.4 ms auto, 66.7 real, 80.9 complex; functional.gram.auto_products),
  ``triton`` the real form's step fused into one Triton kernel (EXPERIMENTAL; measured slower on an H200: WRN-16-10
  110.3 vs 65.3 ms, reports/gpu/nvidia-h200/run8).
- ``screen`` (``auto``: on a CPU): frequencies whose bound can no longer be the layer's largest are dropped after
  each product (a lower bound on every frequency's sigma_1 from the iterate's diagonal); the result is the
  unscreened bound, computed on fewer matrices when sigma_1 varies across frequencies, as in trained layers.
- ``first`` (``auto``): the first product A^H A of every frequency from the kernel's channel correlations (one small
  matmul per layer and a DFT of the (2k - 1)^2 tap offsets, no transfer matrix built) where that measured faster than
  forming it per frequency (on a CPU; CUDA keeps the transfer matrices: the kernel route measured 0.75-0.98x there, H200
  run 8); same bound up to float32 rounding (functional.gram).
- ``bound="delattre2024"``: the n-independent zero-padding bound (slower convergence, +7.5 % at T = 4 on a
  c = 8 example); valid for every n and any stride.
- Control (``target``): w <- w * min(1, target / bound) every ``every`` steps; since bound >= sigma_1 the layer
  ends at sigma_1 <= target (the report holds the true sigma afterwards).
- ``penalty_weight``: the lip4conv training term weight * sum_layers F.threshold(bound, 1, 0) (bound counted
  only when it exceeds 1, not (bound - 1)_+); differentiable by autograd through all T iterations, layers of one
  shape batched in one call.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from svbench.errors import UserError
from svbench.functional.gram import (
    delattre2024_bound,
    gram_iteration_bound,
    gram_iteration_bound_batched,
    gram_iteration_bound_grouped,
)
from svbench.functional.grouped import dilate_kernel, group_kernels, layer_sigma_max
from svbench.functional.spectrum import zero_padding_bound_size
from svbench.functional.transfer import Grid, Stride, as_grid
from svbench.methods.base import (
    METHODS,
    Capabilities,
    LayerSpec,
    Method,
    check_padding,
    circular_view,
    control_source,
    conv_geometry,
    conv_inputs,
    geometry_of,
    kernel_fits,
    sv_weight,
    warn_left_out,
)
from svbench.methods.hooks import InputSizes


@dataclass(frozen=True)
class GramConfig:
    iters: int = 6
    bound: Literal["fft", "delattre2024"] = "fft"
    zero_iters: int = 4  # iterations of the delattre2024 bound
    # "input": matmuls in the weights' dtype; "float64": the certificate setting; "3xtf32": float32 weights, every
    # Gram product on TF32 tensor cores through a hi/lo split (CUDA only, plain float32 elsewhere; the bound, not
    # the training penalty, whose gradient would not pass the bit split). Measured NOT worth it: WRN-16-10 on an
    # H200 took 118 ms against 83 ms in float32 and landed 2.4e-7 under sigma_max against 1.8e-8
    # (reports/gpu/nvidia-h200/run2); kept so that measurement can be repeated, not recommended.
    precision: Literal["input", "float64", "3xtf32"] = "input"
    # complex Gram products (fft bound): "real" = two real matmuls per Hermitian square (half the flops of one
    # complex matmul, functional.gram); "complex" = one complex matmul (the paper code's form); "auto" = as
    # measured per device and size (functional.gram.auto_products); "triton" = the real form's step fused into one
    # Triton kernel (functional.gram_triton; EXPERIMENTAL, CUDA, measured slower on an H200; the penalty, which needs a
    # gradient, takes "real")
    products: Literal["auto", "real", "complex", "triton"] = "auto"
    # frequency screening (fft bound): drop a frequency once its bound can no longer be the layer's largest (same
    # value; functional.gram.gram_iteration_max). "auto" = on a CPU, off on CUDA (host syncs: 0.87x on an H200)
    screen: Literal["auto", "on", "off"] = "auto"
    # how the first product G_1 = A^H A of every frequency is formed (fft bound; same bound up to rounding):
    # "kernel" = from the kernel's channel correlations, one small matmul per layer and a DFT of the (2k - 1)^2
    # offsets, no transfer matrix built; "transfer" = from the transfer matrices, one product per frequency;
    # "auto" = on a CPU as measured (functional.gram.auto_first: a flop count with a measured slack, Gram side >= 32;
    # scripts/gram-first-paired.py), "transfer" on CUDA (kernel measured 0.75-0.98x on an H200)
    first: Literal["auto", "kernel", "transfer"] = "auto"
    target: float | None = None  # control: rescale so that the bound <= target
    every: int = 1
    penalty_weight: float = 0.0
    # network task: stack the layers of one (shape, grid, stride) into one batched iteration. Off by default: on
    # this project's CPU (1 thread) it was 0.88x the per-layer loop on ResNet-18 (paired, 5 pairs); on an H200
    # WRN-16-10 took 79.2 ms batched against 78.6 ms per layer (reports/gpu/nvidia-h200/run1): no gain there.
    batch_layers: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.iters <= 30:
            raise ValueError(f"iters must be in [1, 30], got {self.iters}")
        if not 1 <= self.zero_iters <= 8:
            raise ValueError(f"zero_iters must be in [1, 8], got {self.zero_iters}")
        if self.target is not None and not self.target > 0:
            raise ValueError(f"target must be > 0, got {self.target}")
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")
        if self.penalty_weight < 0:
            raise ValueError(f"penalty_weight must be >= 0, got {self.penalty_weight}")


def round_up_to(bound: Tensor, dtype: torch.dtype) -> Tensor:
    """``bound`` in ``dtype``, rounded UP where the cast lost precision: a float64 bound cast to float32 by
    round-to-nearest can land half an ulp below the exact sigma_max it bounds (e.g. a 1x1 conv, where the Gram
    iteration is exact)."""
    low = bound.to(dtype)
    if bound.dtype == dtype:
        return low
    below = low.to(bound.dtype) < bound
    return torch.where(below, torch.nextafter(low, torch.full_like(low, float("inf"))), low)


def _grid(n: Grid, weight: Tensor, stride: Stride, padding: str) -> Grid:
    """The grid the bound is computed on: n (circular), or n' = s ceil((n + k - 1) / s) with k the LONGER side of the
    (dilated) kernel (zero padding: no window may wrap along either axis; the width alone gave a 5 x 1 kernel
    n' = n, and a 'bound' at 0.43 of the zero-padded layer's sigma_max)."""
    return n if padding == "circular" else zero_padding_bound_size(n, max(weight.shape[-2:]), stride)


def _fft_bounds_by_shape(layers: list[tuple[str, Tensor, Grid, Stride]], iters: int, products: str = "auto",
                         screen: str = "auto", first: str = "auto") -> dict[str, Tensor]:
    """Gram bounds of (name, weight, grid, stride) layers: one batched iteration per (weight shape, grid, stride).
    Differentiable (the training penalty); callers that only read the bounds wrap it in ``no_grad``."""
    groups: dict[tuple, list[tuple[str, Tensor]]] = defaultdict(list)
    for name, w, grid, stride in layers:
        groups[(tuple(w.shape), w.dtype, grid, stride)].append((name, w))
    out: dict[str, Tensor] = {}
    for (_, _, grid, stride), members in groups.items():
        bounds = gram_iteration_bound_batched(torch.stack([w for _, w in members]), grid, stride, iters,
                                              products=products, screen=screen, first=first)
        out.update({name: b for (name, _), b in zip(members, bounds)})
    return out


@METHODS.register("gram")
class GramMethod(Method):
    name = "gram"
    provides = "upper_bound"
    supports = Capabilities(groups=True, dilation=True)
    Config = GramConfig
    rectangular_grids = True
    anisotropic = True
    summary = "Gram iteration: guaranteed sigma_max upper bound (fft on n or n', or Delattre 2024); rescaling"
    reference = "Delattre, Barthelemy, Araujo & Allauzen, ICML 2023 (arXiv:2305.16173)"

    def __init__(self, config: GramConfig | None = None) -> None:
        super().__init__(config)
        self._sizes = InputSizes(anisotropic=self.anisotropic)

    def backend(self, spec: LayerSpec | None = None, device: torch.device | str = "cpu",
                dtype: torch.dtype | None = None) -> str:
        c = self.config
        if c.bound == "fft":
            extra = "" if c.products == "auto" else f", {c.products} products"
            extra = ", 3xtf32" if c.precision == "3xtf32" else extra
            extra += "" if c.first == "auto" else f", first from {c.first}"
            return f"gram_iteration(T={c.iters}{extra})"
        return f"delattre2024(T={c.zero_iters})"

    def bound(self, weight: Tensor, n: Grid, stride: Stride, padding: str) -> Tensor:
        c = self.config
        w = weight.double() if c.precision == "float64" else weight
        if c.bound == "delattre2024":
            return delattre2024_bound(w, c.zero_iters)
        return gram_iteration_bound(w, _grid(n, weight, stride, padding), stride, c.iters,
                                    products=self._products(w), screen=c.screen, first=c.first)

    def _products(self, w: Tensor, differentiable: bool = False) -> str:
        """How the Gram products are formed: "3xtf32" for a no-grad bound when asked for (float32 weights, else a
        one-line error), otherwise the configured form ("triton", which has no backward pass, is "real" where a
        gradient is needed)."""
        if differentiable and self.config.products == "triton":
            return "real"
        if self.config.precision != "3xtf32" or differentiable:
            return self.config.products
        if w.dtype != torch.float32:
            raise UserError(f"gram precision '3xtf32' needs float32 weights, got {w.dtype}; use 'input' or 'float64'")
        return "3xtf32"

    def layer_svs(self, layer: nn.Module, input_hw: Grid) -> Tensor:
        stride, padding, groups, dilation = conv_geometry(layer, anisotropic=True)
        check_padding(layer, "gram", exact=False)
        with torch.no_grad():
            if groups == 1 and dilation == 1:
                b = self.bound(sv_weight(layer), as_grid(input_hw), stride, padding)
            else:
                b = self._grouped_bound(sv_weight(layer), as_grid(input_hw), stride, padding, groups, dilation)
        return round_up_to(b.reshape(1), layer.weight.dtype)

    def _grouped_bound(self, weight: Tensor, n: Grid, stride: Stride, padding: str, groups: int, dilation: Stride,
                       *, differentiable: bool = False) -> Tensor:
        """A grouped conv is block diagonal over its groups: the max of the blocks' bounds bounds sigma_max; a
        dilated conv is the conv of its zero-filled (d (k - 1) + 1)-tap kernel (``functional.grouped``)."""
        c = self.config
        w = dilate_kernel(weight, dilation)
        if c.precision == "float64":
            w = w.double()
        if c.bound == "delattre2024":
            return torch.stack([delattre2024_bound(b, c.zero_iters) for b in group_kernels(w, groups)]).max()
        return gram_iteration_bound_grouped(w, _grid(n, w, stride, padding), stride, groups, c.iters,
                                            products=self._products(w, differentiable), screen=c.screen,
                                            first=c.first)

    def network_svs(self, model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, Tensor]:
        """The bound of every conv (circular model on its own grid); with ``batch_layers`` (and ``bound="fft"``)
        the layers of one (weight shape, grid, stride) are stacked into one batched iteration."""
        c = self.config
        if c.bound != "fft" or not c.batch_layers:
            return super().network_svs(model, input_shape)
        convs = conv_inputs(model, input_shape, rectangular=self.rectangular_grids, anisotropic=self.anisotropic)
        out: dict[str, Tensor] = {}
        plain = []
        for name, layer, n in convs:
            stride, groups, dilation = geometry_of(layer) if isinstance(layer, nn.Conv2d) else (None, None, None)
            if groups == 1 and dilation == 1:
                w = sv_weight(layer)
                plain.append((name, w.double() if c.precision == "float64" else w, n, stride))
            else:
                out[name] = self.layer_svs(circular_view(layer), n)
        dtypes = {name: layer.weight.dtype for name, layer, _ in convs}
        with torch.no_grad():
            products = self._products(plain[0][1]) if plain else c.products  # one model, one dtype
            for name, b in _fft_bounds_by_shape(plain, c.iters, products, c.screen, c.first).items():
                out[name] = round_up_to(b.reshape(1), dtypes[name])
        warn_left_out(model, out, "gram network_svs")
        return {name: out[name] for name, _, _ in convs}

    def control_target(self) -> float | None:
        return self.config.target

    # ---- training hooks ---------------------------------------------------------------------------------
    def wrap(self, model: nn.Module) -> nn.Module:
        self._sizes.attach(model)
        return model

    def _layers(self, model: nn.Module) -> list[tuple[str, nn.Conv2d, int]]:
        out = []
        for name, conv in self._sizes.convs(model):
            n = self._sizes.size_of(conv)
            if n is not None and kernel_fits(conv, n):
                out.append((name, conv, n))
        return out

    def penalty(self, model: nn.Module) -> Tensor | None:
        c = self.config
        if c.penalty_weight == 0:
            return None
        layers = self._layers(model)
        if not layers:
            return None
        geometry = {name: geometry_of(conv) for name, conv, _ in layers}  # (stride, groups, dilation)
        plain = [(name, conv, n) for name, conv, n in layers if geometry[name][1:] == (1, 1)]
        other = [(name, conv, n) for name, conv, n in layers if geometry[name][1:] != (1, 1)]
        bounds = [self._grouped_bound(conv.weight, n, geometry[name][0], conv.padding_mode, conv.groups,
                                      geometry[name][2], differentiable=True).reshape(1) for name, conv, n in other]
        if plain and c.bound == "fft":
            grids = [(name, conv.weight, _grid(n, conv.weight, geometry[name][0], conv.padding_mode),
                      geometry[name][0]) for name, conv, n in plain]
            products = self._products(grids[0][1], differentiable=True)
            by_shape = _fft_bounds_by_shape(grids, c.iters, products, c.screen, c.first)
            bounds.append(torch.stack(list(by_shape.values())))
        elif plain:
            bounds.append(torch.stack([delattre2024_bound(conv.weight, c.zero_iters) for _, conv, _ in plain]))
        bounds = torch.cat(bounds)
        return c.penalty_weight * F.threshold(bounds, 1.0, 0.0).sum()

    def after_step(self, model: nn.Module, step: int, *, report: bool = True) -> list[dict[str, Any]]:
        c = self.config
        if c.target is None or step % c.every:
            return []
        reports = []
        for name, conv, n in self._layers(model):
            t0 = time.perf_counter()
            (s, g, d), pad = geometry_of(conv), conv.padding_mode
            with torch.no_grad():
                w = conv.weight
                b = float(self.bound(w, n, s, pad) if g == 1 and d == 1 else self._grouped_bound(w, n, s, pad, g, d))
                conv.weight.mul_(min(1.0, c.target / b))
                true = layer_sigma_max(conv.weight.detach(), n, s, pad, g, d) if report else None
            reports.append({
                "layer": name, "target": c.target, "bound_before": b, "sigma_max_after": true,
                "sigma_source": control_source(conv),
                "overshoot": None if true is None else true / c.target, "time_ms": (time.perf_counter() - t0) * 1e3,
            })
        return reports
