"""``cayley``: Cayley orthogonal convolution.

Trockman & Kolter, "Orthogonalizing Convolutional Layers with the Cayley Transform", ICLR 2021
(arXiv:2104.07167); public code locuslab/orthogonal-convolutions.

The layer is an n x n (or h x w) CIRCULAR filter whose transfer matrix at every frequency is the Cayley transform of a
skew-Hermitian matrix built from a k x k kernel: the implemented operator is EXACTLY orthogonal (all SVs 1 when
c_out >= c_in, a co-isometry otherwise), on every input size (the transfer is computed per n, never fixed at the
first n seen). Stride 2 is an invertible 2x2 space-to-depth followed by a stride-1 Cayley conv with 4 c_in inputs
and kernel max(1, k // 2). c_in != c_out is handled natively by the [U; V] form. The scale ``alpha`` is a
parameter created in ``__init__`` (the public code creates it in the first forward, so an optimizer built before
never sees it). In eval mode the orthogonal transfer is cached per (n, device, dtype) and rebuilt when the
parameters change. ``layer_svs`` returns the SVs of the implemented operator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from svbench.errors import UnsupportedShape
from svbench.functional.cayley import apply_transfer, cayley_orthogonal_transfer, space_to_depth
from svbench.functional.spectrum import expand_rfft, matrix_singular_values
from svbench.functional.transfer import Grid, as_grid, as_stride, fits_grid, grid_div, grid_text
from svbench.methods.base import METHODS, Capabilities, LayerSpec, Method, warn_left_out


class CayleyConv2d(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"CayleyConv2d supports stride 1 or 2, got {stride}")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.padding_mode = "circular"
        c_eff = in_channels * stride * stride
        k_eff = kernel_size if stride == 1 else max(1, kernel_size // 2)
        self.kernel_size = (k_eff, k_eff)
        fk = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_channels, c_eff, k_eff, k_eff, **fk))
        self.alpha = nn.Parameter(torch.ones((), **fk))  # created here, so every optimizer sees it
        self.bias = nn.Parameter(torch.zeros(out_channels, **fk)) if bias else None
        self._cache: dict[tuple, tuple[tuple[int, int], Tensor]] = {}
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        with torch.no_grad():
            fan = self.weight.shape[1] * self.kernel_size[0] ** 2
            w = torch.randn(self.weight.shape, generator=generator, dtype=torch.float64) / math.sqrt(fan)
            self.weight.copy_(w)
            self.alpha.copy_(self.weight.norm())
            if self.bias is not None:
                self.bias.zero_()

    def transfer(self, n: Grid) -> Tensor:
        """Orthogonal transfer matrices (n, n//2+1, c_out, c_in_eff) on the n x n grid (after space-to-depth); on an
        h x w grid (h, w//2+1, c_out, c_in_eff)."""
        n = as_grid(n)
        if not fits_grid(self.kernel_size, n):
            raise UnsupportedShape(f"cayley: kernel {self.kernel_size[0]} larger than the {grid_text(n)} grid")
        if self.training:  # eval mode: cached, no gradient to the parameters
            return cayley_orthogonal_transfer(self.weight, self.alpha, n)
        key = (n, self.weight.device, self.weight.dtype)
        version = (self.weight._version, self.alpha._version)
        hit = self._cache.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        with torch.no_grad():
            q = cayley_orthogonal_transfer(self.weight, self.alpha, n)
        self._cache = {key: (version, q)}
        return q

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 2:
            if x.shape[-1] % 2 or x.shape[-2] % 2:
                raise UnsupportedShape(f"cayley stride 2 needs an even input size, got {tuple(x.shape[-2:])}")
            x = space_to_depth(x, 2)
        y = apply_transfer(x, self.transfer(as_grid(tuple(x.shape[-2:]))))
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y

    def train(self, mode: bool = True) -> CayleyConv2d:
        self._cache = {}
        return super().train(mode)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size[0]}, stride={self.stride}, "
                "orthogonal (circular)")


@dataclass(frozen=True)
class CayleyConfig:
    keep_first: bool = False  # wrap(): leave the first conv as it is


@METHODS.register("cayley")
class CayleyMethod(Method):
    name = "cayley"
    provides = "orthogonal_layer"
    supports = Capabilities(strides=(1, 2), paddings=("circular",))
    Config = CayleyConfig
    summary = "Cayley orthogonal conv: exactly orthogonal circular layer (per-frequency Cayley transform)"
    rectangular_grids = True
    reference = "Trockman & Kolter, ICLR 2021 (arXiv:2104.07167)"

    def __init__(self, config: CayleyConfig | None = None) -> None:
        super().__init__(config)
        self.conversion: list[dict[str, Any]] = []

    def backend(self, spec: LayerSpec | None = None, device: torch.device | str = "cpu",
                dtype: torch.dtype | None = None) -> str:
        return "cayley+svdvals"

    def layer_key(self) -> str:
        return "cayley"

    def dense_kernel(self, layer: nn.Module) -> Tensor | None:
        return None  # an n x n filter, not a k x k conv

    def make_layer(self, spec: LayerSpec, *, seed: int, dtype: torch.dtype = torch.float32,
                   device: torch.device | str = "cpu") -> nn.Module:
        reason = self.supports.why_not(spec)
        if reason:
            raise UnsupportedShape(f"cayley: {reason} (the layer is circular by construction)")
        layer = CayleyConv2d(spec.c_in, spec.c_out, spec.k, spec.stride, dtype=torch.float64)
        layer.reset_parameters(torch.Generator().manual_seed(seed))
        return layer.to(device=device, dtype=dtype)

    def layer_svs(self, layer: nn.Module, input_hw: int) -> Tensor:
        if not isinstance(layer, CayleyConv2d):
            raise UnsupportedShape(f"cayley: expected a CayleyConv2d, got {type(layer).__name__} (use wrap() first)")
        n = grid_div(as_grid(input_hw), layer.stride)
        with torch.no_grad():
            q = layer.transfer(n)
            return expand_rfft(matrix_singular_values(q), n)

    def network_svs(self, model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, Tensor]:
        """All SVs of every Cayley layer of a model (one ``wrap`` made), each on the grid its forward sees (the
        operator it implements there: 1 up to rounding). Was the base route, which looks for plain convs: a wrapped
        model gave {}. Convs ``wrap`` kept dense are not this method's layers: named as left out. A model without
        Cayley layers takes the base route, which refuses it in one line naming a conv."""
        from svbench.models.probe import probe_inputs

        found = probe_inputs(model, input_shape, lambda name, mod: isinstance(mod, CayleyConv2d))
        if not found:  # not a model wrap made: the base route says why, naming a conv (use wrap() first, or its stride)
            return super().network_svs(model, input_shape)
        out = {name: self.layer_svs(layer, as_grid((int(shape[-2]), int(shape[-1])))) for name, layer, shape in found}
        warn_left_out(model, out, "cayley network_svs")
        return out

    def control_target(self) -> float | None:
        return 1.0

    def wrap(self, model: nn.Module) -> nn.Module:
        self.conversion = []
        first = True
        for name, conv in [(n, m) for n, m in model.named_modules() if type(m) is nn.Conv2d]:
            reason = None
            if first and self.config.keep_first:
                reason = "first conv kept (keep_first)"
            elif conv.groups != 1 or max(conv.dilation) != 1:
                reason = "grouped or dilated conv not supported: kept"
            elif as_stride(conv.stride) not in (1, 2) or len(set(conv.kernel_size)) != 1:  # (1, 2) is a pair
                reason = "only square kernels with stride 1 or 2: kept"
            first = False
            if reason:
                self.conversion.append({"layer": name, "converted": False, "reason": reason})
                continue
            layer = CayleyConv2d(conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.stride[0],
                                 conv.bias is not None, device=conv.weight.device, dtype=conv.weight.dtype)
            parent = model
            parts = name.split(".")
            for p in parts[:-1]:
                parent = getattr(parent, p)
            setattr(parent, parts[-1], layer)
            self.conversion.append({"layer": name, "converted": True, "reason": None})
        return model
