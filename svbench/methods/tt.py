"""``tt``: the tensor-train conv with exact, stride-correct SV control.

Senderovich, Bulatova, Obukhov & Rakhuba, "Towards Practical Control of Singular Values of Convolutional Layers",
NeurIPS 2022 (arXiv:2211.13771); official code WhiteTeaDragon/practical_svd_conv.

A TT conv is 1x1 (K1^T, c_in -> r1), then kh x kw (K2, r1 -> r2, carrying all stride, padding and dilation),
then 1x1 (K3^T, r2 -> c_out), then the bias. Theorem 1: with orthonormal K1 and K3 the layer's nonzero SVs are
EXACTLY the K2 conv's (any padding, stride, dilation); the rest are 0. svbench QR-folds the outer cores before
EVERY SV computation and control step (``orthogonalize``: the layer's function is unchanged), so the control is
exact even with the orthogonality penalty on (the public code skips the fold whenever the penalty is on), and
uses the stride layout out x (in s^2) for the core (the public code groups the phases with the outputs).

What is exact: ``layer_svs`` gives all SVs of the composed circular layer (exact). Control: clipping K2 then
cropping has the overshoot of Sedghi clipping; division by sigma_max is exact for circular padding; for zero
padding sigma is the guaranteed circular bound on n' = n + k - 1. Each control step reports the true sigma_max
of the composed layer afterwards.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from svbench.errors import UnsupportedShape
from svbench.functional.clip import sedghi_clip
from svbench.functional.spectrum import (
    conv_sigma_max,
    conv_singular_values,
    describe_backend,
    zero_padding_sigma_max_bound,
)
from svbench.functional.transfer import (
    Grid,
    Stride,
    as_grid,
    as_stride,
    fits_grid,
    grid_area,
    grid_div,
    stride_area,
    stride_hw,
    stride_text,
)
from svbench.functional.tt import compose_kernel, fold_cores, folded_cores, orthogonality_defect, tt_svd
from svbench.methods.base import (
    METHODS,
    Capabilities,
    LayerSpec,
    Method,
    axis_padding,
    check_circular_mode,
    check_padding,
    control_source,
    kernel_fits,
    seeded_conv,
    sv_weight,
    warn_left_out,
)
from svbench.methods.hooks import InputSizes

ForwardMode = Literal["auto", "factored", "full"]
# A factored forward runs three kernels; on CPU and GPU alike its MACs cost more than the dense conv's.
# Measured ratio (reports/tt-forward.md): prefer factored only when it needs < 0.6 x the full-conv MACs.
_FACTORED_EFFICIENCY = 0.6


def tt_ranks(c_in: int, c_out: int, rank: int | None, rank_scale: float | None) -> tuple[int, int]:
    """(r1, r2): ``rank`` R gives min(c, R) per side; else ``rank_scale`` s gives ceil(s c) per side."""
    if rank is not None:
        return min(c_in, rank), min(c_out, rank)
    scale = 1.0 if rank_scale is None else rank_scale
    return min(c_in, max(1, math.ceil(scale * c_in))), min(c_out, max(1, math.ceil(scale * c_out)))


class TTConv2d(nn.Module):
    """TT conv with cores ``k1`` (c_in x r1), ``k2`` (r2 x r1 x kh x kw), ``k3`` (r2 x c_out) and ``bias``.

    ``k1`` is absent when r1 == c_in and ``k3`` when r2 == c_out; with both absent the layer IS an ordinary conv
    (``is_plain``) and says so in its repr. Cores are orthogonally initialised.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | None = None,
        dilation: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        r1: int | None = None,
        r2: int | None = None,
        forward_mode: ForwardMode = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if padding_mode not in ("zeros", "circular"):
            raise ValueError(f"padding_mode must be 'zeros' or 'circular', got {padding_mode!r}")
        r1 = in_channels if r1 is None else r1
        r2 = out_channels if r2 is None else r2
        if not (1 <= r1 <= in_channels and 1 <= r2 <= out_channels):
            raise ValueError(f"ranks must satisfy 1 <= r1 <= c_in and 1 <= r2 <= c_out, got r1={r1}, r2={r2}")
        self.in_channels, self.out_channels = in_channels, out_channels
        kh, kw = _pair(kernel_size)  # a kh x kw kernel (1 x 7, 41 x 11): K2 is r2 x r1 x kh x kw
        self.kernel_size = (kh, kw)
        self.stride = stride_hw(stride)  # one per axis: (1, 2) halves the width only
        self.dilation = (dilation, dilation)
        # the padding of each axis, both ends alike (default: "same" for odd sides)
        self.padding = (dilation * (kh // 2), dilation * (kw // 2)) if padding is None else tuple(_pair(padding))
        self.padding_mode = padding_mode
        self.groups = 1
        self.r1, self.r2 = r1, r2
        self.forward_mode = forward_mode
        fk = {"device": device, "dtype": dtype}
        self.k1 = nn.Parameter(torch.empty(in_channels, r1, **fk)) if r1 < in_channels else None
        self.k2 = nn.Parameter(torch.empty(r2, r1, kh, kw, **fk))
        self.k3 = nn.Parameter(torch.empty(r2, out_channels, **fk)) if r2 < out_channels else None
        self.bias = nn.Parameter(torch.zeros(out_channels, **fk)) if bias else None
        self.reset_parameters()

    @property
    def is_plain(self) -> bool:
        return self.k1 is None and self.k3 is None

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Orthogonal init of K1, of K2 flattened to r1 x (kh kw r2), and of K3 (methods.md section 4)."""
        with torch.no_grad():
            for p in (self.k1, self.k3):
                if p is not None:
                    p.copy_(_orthogonal(p.shape, generator, p.dtype))
            kh, kw = self.kernel_size
            flat = _orthogonal((self.r1, kh * kw * self.r2), generator, self.k2.dtype)
            self.k2.copy_(flat.reshape(self.r1, self.r2, kh, kw).permute(1, 0, 2, 3))
            if self.bias is not None:
                self.bias.zero_()

    def full_kernel(self) -> Tensor:
        """The dense (c_out, c_in, kh, kw) kernel this layer applies."""
        return compose_kernel(self.k1, self.k2, self.k3)

    def _use_factored(self, x: Tensor) -> bool:
        if self.is_plain or self.forward_mode == "full":
            return False
        if self.forward_mode == "factored":
            return True
        (kh, kw), (s1, s2) = self.kernel_size, self.stride
        taps = kh * kw
        c_in, c_out, r1, r2 = self.in_channels, self.out_channels, self.r1, self.r2
        out_px = x.shape[0] * (x.shape[-2] // s1) * (x.shape[-1] // s2)
        factored = out_px * ((c_in * r1 * s1 * s2 if self.k1 is not None else 0) + taps * r1 * r2
                             + (r2 * c_out if self.k3 is not None else 0))
        full = out_px * taps * c_in * c_out + taps * r2 * (r1 * c_in + c_in * c_out)
        return factored < _FACTORED_EFFICIENCY * full

    def _conv(self, x: Tensor, weight: Tensor) -> Tensor:
        if self.padding_mode == "circular":
            ph, pw = self.padding
            x = F.pad(x, (pw, pw, ph, ph), mode="circular")
            return F.conv2d(x, weight, None, self.stride, 0, self.dilation)
        return F.conv2d(x, weight, None, self.stride, self.padding, self.dilation)

    def forward(self, x: Tensor) -> Tensor:
        if self._use_factored(x):
            if self.k1 is not None:
                x = F.conv2d(x, self.k1.T[:, :, None, None])
            x = self._conv(x, self.k2)
            if self.k3 is not None:
                x = F.conv2d(x, self.k3.T[:, :, None, None])
        else:
            x = self._conv(x, self.full_kernel())
        if self.bias is not None:
            x = x + self.bias.view(1, -1, 1, 1)
        return x

    @torch.no_grad()
    def orthogonalize(self) -> None:
        """QR fold in place: K1 <- Q1, K3 <- Q3^T, K2 <- R3 K2 R1^T. The layer's function is unchanged."""
        core, q1, q3t = fold_cores(self.k1, self.k2, self.k3)
        self.k2.copy_(core)
        if q1 is not None:
            self.k1.copy_(q1)
        if q3t is not None:
            self.k3.copy_(q3t)

    def orthogonality_defect(self) -> tuple[Tensor, Tensor]:
        return orthogonality_defect(self.k1, self.k3)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, r1: int, r2: int, init: str = "tt_svd",
                  forward_mode: ForwardMode = "auto") -> tuple[TTConv2d, float | None]:
        """A TT layer of the conv's geometry; ``tt_svd`` init reproduces its kernel as well as the ranks allow.

        Returns the layer and the relative Frobenius error of the approximation (None for a fresh init).
        """
        if conv.groups != 1 or max(conv.dilation) != 1:
            raise UnsupportedShape(f"tt: grouped or dilated convs have no TT form here (groups={conv.groups}, "
                                   f"dilation={tuple(conv.dilation)}); TT-SVD needs a dense c_out x c_in kernel")
        layer = cls(conv.in_channels, conv.out_channels, tuple(conv.kernel_size), tuple(conv.stride),
                    axis_padding(conv), 1,
                    conv.bias is not None, conv.padding_mode, r1, r2, forward_mode,
                    device=conv.weight.device, dtype=conv.weight.dtype)
        err = None
        with torch.no_grad():
            if init == "tt_svd":
                k1, k2, k3, _ = tt_svd(conv.weight.detach(), r1, r2)
                if layer.k1 is None:  # r1 == c_in: K1 is a square orthogonal factor, folded into K2
                    k2 = torch.einsum("bauv,ia->biuv", k2, k1)
                else:
                    layer.k1.copy_(k1)
                if layer.k3 is None:  # r2 == c_out: likewise for K3
                    k2 = torch.einsum("bo,biuv->oiuv", k3, k2)
                else:
                    layer.k3.copy_(k3)
                layer.k2.copy_(k2)
                err = float((layer.full_kernel() - conv.weight).norm() / conv.weight.norm().clamp_min(1e-30))
            if conv.bias is not None:
                layer.bias.copy_(conv.bias)
        return layer, err

    def extra_repr(self) -> str:
        kind = "ordinary conv (ranks >= channels)" if self.is_plain else f"r1={self.r1}, r2={self.r2}"
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={stride_text(self.kernel_size)}, "
                f"stride={stride_text(self.stride)}, "
                f"padding_mode={self.padding_mode}, {kind}, forward={self.forward_mode}")


def _orthogonal(shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None, dtype: torch.dtype) -> Tensor:
    rows, cols = shape
    a = torch.randn(max(rows, cols), min(rows, cols), generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    q = q if rows >= cols else q.T
    return q.to(dtype)


def tt_layer_singular_values(
    layer: TTConv2d, n: Grid, *, backend: str = "auto", driver: str | None = None, pieces: int | None = None
) -> Tensor:
    """All SVs of the composed circular TT layer on n x n (or an (h, w) grid): folded-core SVs (Theorem 1) then
    zeros. Exact."""
    check_circular_mode(layer, n, "tt", " (zero-padded layers get the n' bound in control)")
    check_padding(layer, "tt", exact=True)  # e.g. an even kernel side padded on both ends: more outputs than n / s
    s = as_stride(layer.stride)
    if max(layer.dilation) != 1:
        raise UnsupportedShape("tt: dilation not supported for SV computation")
    with torch.no_grad():
        (core,) = folded_cores([(layer.k1, layer.k2, layer.k3)])
        svs = conv_singular_values(core, n, s, backend=backend, driver=driver, pieces=pieces)
    total = min(layer.out_channels * grid_area(grid_div(n, s)), layer.in_channels * grid_area(n))
    return torch.cat([svs, svs.new_zeros(total - svs.numel())])


@dataclass(frozen=True)
class TTConfig:
    rank: int | None = None  # R: r = min(c, R) per side
    rank_scale: float | None = 0.5  # used when rank is None: r = ceil(scale * c) per side
    forward_mode: Literal["auto", "factored", "full"] = "auto"
    backend: Literal["auto", "svdvals", "eigh", "eigh64", "svdvals64"] = "auto"
    driver: Literal["gesvd", "gesvdj", "gesvda"] | None = None
    chunks: int | None = None  # at most this many solver calls per core (group); None: engine default (sedghi's)
    merge: Literal["grids", "pad", "none"] = "grids"  # network SVs: cores of one shape share a call (as sedghi's)
    streams: int | None = None  # network SVs: concurrent lanes for the solver calls (as sedghi's; None: 4 on CUDA)
    split: bool = False  # network SVs: halve calls that would hold one lane longest (as sedghi's; slower on an H200)
    init: Literal["orthogonal", "tt_svd"] = "tt_svd"  # wrap(): fresh orthogonal cores or TT-SVD of the kernel
    keep_first: bool = True  # wrap(): leave the first conv dense
    control: Literal["none", "clip", "divide"] = "none"
    target: float = 1.0  # sigma_max target of the control step
    every: int = 100  # control every k optimizer steps (steps counted from 1)
    clip_mode: Literal["clip", "assign"] = "clip"
    penalty_lambda: float = 0.0  # lambda of the orthogonality penalty

    def __post_init__(self) -> None:
        if self.rank is not None and self.rank < 1:
            raise ValueError(f"rank must be >= 1, got {self.rank}")
        if self.rank_scale is not None and not 0 < self.rank_scale <= 1:
            raise ValueError(f"rank_scale must be in (0, 1], got {self.rank_scale}")
        if not self.target > 0:
            raise ValueError(f"target must be > 0, got {self.target}")
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")
        if self.penalty_lambda < 0:
            raise ValueError(f"penalty_lambda must be >= 0, got {self.penalty_lambda}")
        if self.chunks is not None and self.chunks < 1:
            raise ValueError(f"chunks must be >= 1, got {self.chunks}")
        if self.streams is not None and self.streams < 1:
            raise ValueError(f"streams must be >= 1, got {self.streams}")


@METHODS.register("tt")
class TTMethod(Method):
    name = "tt"
    provides = "all_svs"
    supports = Capabilities(paddings=("circular",))
    Config = TTConfig
    rectangular_grids = True
    anisotropic = True
    summary = "tensor-train conv: exact SVs from the QR-folded core (Theorem 1); clip/divide control, penalty"
    reference = "Senderovich, Bulatova, Obukhov & Rakhuba, NeurIPS 2022 (arXiv:2211.13771)"

    def __init__(self, config: TTConfig | None = None) -> None:
        super().__init__(config)
        self._sizes = InputSizes((TTConv2d, nn.Conv2d), clips=self.config.control == "clip",
                                 anisotropic=self.anisotropic)
        self.conversion: list[dict[str, Any]] = []

    def ranks(self, c_in: int, c_out: int) -> tuple[int, int]:
        return tt_ranks(c_in, c_out, self.config.rank, self.config.rank_scale)

    def backend(self, spec: LayerSpec | None = None, device: torch.device | str = "cpu",
                dtype: torch.dtype | None = None) -> str:
        c = self.config
        if spec is None:
            return c.backend
        r1, r2 = self.ranks(spec.c_in, spec.c_out)
        return describe_backend(c.backend, r2, r1 * stride_area(spec.stride), device, c.driver, dtype)

    def layer_key(self) -> str:
        return self.label

    def make_layer(self, spec: LayerSpec, *, seed: int, dtype: torch.dtype = torch.float32,
                   device: torch.device | str = "cpu") -> nn.Module:
        """TT-SVD of the seeded plain conv, then a random invertible mixing of K1/K2 and K2/K3.

        The mixing keeps the layer's function but makes K1 and K3 non-orthonormal, as after training with the
        penalty, so the QR fold is exercised and timed.
        """
        reason = self.supports.why_not(spec)
        if reason:
            raise UnsupportedShape(f"tt: {reason}")
        conv = seeded_conv(spec, seed=seed, dtype=torch.float64)
        r1, r2 = self.ranks(spec.c_in, spec.c_out)
        layer, _ = TTConv2d.from_conv(conv, r1, r2, "tt_svd", self.config.forward_mode)
        gen = torch.Generator().manual_seed(20_000 + seed)
        with torch.no_grad():
            if layer.k1 is not None:
                a = _mixing(r1, gen)
                layer.k1.copy_(layer.k1 @ a)
                layer.k2.copy_(torch.einsum("ca,bauv->bcuv", torch.linalg.inv(a), layer.k2))
            if layer.k3 is not None:
                b = _mixing(r2, gen)
                layer.k3.copy_(torch.linalg.inv(b) @ layer.k3)
                layer.k2.copy_(torch.einsum("db,bauv->dauv", b, layer.k2))
        return layer.to(device=device, dtype=dtype)

    def dense_kernel(self, layer: nn.Module) -> Tensor | None:
        return layer.full_kernel() if isinstance(layer, TTConv2d) else super().dense_kernel(layer)

    def layer_svs(self, layer: nn.Module, input_hw: int) -> Tensor:
        if not isinstance(layer, TTConv2d):
            raise UnsupportedShape(f"tt: expected a TTConv2d, got {type(layer).__name__} (use wrap() first)")
        c = self.config
        return tt_layer_singular_values(layer, as_grid(input_hw), backend=c.backend, driver=c.driver, pieces=c.chunks)

    def control_target(self) -> float | None:
        return None if self.config.control == "none" else self.config.target

    def network_svs(self, model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, Tensor]:
        """All SVs of every conv of a (wrapped) model: TT layers by their folded cores (Theorem 1), dense convs
        by their kernels; every group of one transfer shape in one batched call."""
        from svbench.functional.network import batched_conv_singular_values
        from svbench.methods.base import conv_inputs

        items, names, totals, tt_items = [], [], [], []
        with torch.no_grad():
            for name, m, n in conv_inputs(model, input_shape, rectangular=self.rectangular_grids,
                                          anisotropic=self.anisotropic):
                s = as_stride(m.stride)
                if isinstance(m, TTConv2d):
                    tt_items.append((len(items), (m.k1, m.k2, m.k3)))
                    items.append((None, n, s))  # its folded core below: all layers' QRs batched by shape
                    totals.append(min(m.out_channels * grid_area(grid_div(n, s)), m.in_channels * grid_area(n)))
                elif isinstance(m, nn.Conv2d) and m.groups == 1 and max(m.dilation) == 1:
                    items.append((sv_weight(m), n, s))
                    totals.append(None)
                else:
                    continue
                names.append(name)
            for (i, _), core in zip(tt_items, folded_cores([cores for _, cores in tt_items])):
                items[i] = (core, *items[i][1:])
            svs = batched_conv_singular_values(items, backend=self.config.backend, driver=self.config.driver,
                                               pieces=self.config.chunks, merge=self.config.merge,
                                               streams=self.config.streams, split=self.config.split)
        out = {}
        for name, sv, total in zip(names, svs, totals):
            out[name] = sv if total is None else torch.cat([sv, sv.new_zeros(total - sv.numel())])
        warn_left_out(model, out, "tt network_svs")
        return out

    # ---- training hooks ---------------------------------------------------------------------------------
    def wrap(self, model: nn.Module) -> nn.Module:
        """Replace every supported nn.Conv2d by a TTConv2d; the report is in ``self.conversion``."""
        self.conversion = []
        first = True
        for name, conv in list(_named_convs(model)):
            row: dict[str, Any] = {"layer": name, "c_in": conv.in_channels, "c_out": conv.out_channels}
            r1, r2 = self.ranks(conv.in_channels, conv.out_channels)
            reason = None
            if first and self.config.keep_first:
                reason = "first conv kept dense (keep_first)"
            elif conv.groups != 1:
                reason = "grouped conv not supported: kept"
            elif max(conv.dilation) != 1:
                reason = "dilated conv not supported: kept"
            elif r1 == conv.in_channels and r2 == conv.out_channels:
                reason = "rank >= both channel counts: an ordinary conv, kept"
            elif conv.padding_mode not in ("zeros", "circular"):
                reason = f"padding mode {conv.padding_mode} not supported: kept"
            first = False
            if reason:
                row.update(converted=False, reason=reason)
            else:
                layer, err = TTConv2d.from_conv(conv, r1, r2, self.config.init, self.config.forward_mode)
                _set_module(model, name, layer)
                row.update(converted=True, r1=r1, r2=r2, init=self.config.init, rel_error=err)
            self.conversion.append(row)
        self._sizes.attach(model)
        return model

    def _control_dense_convs(self, model: nn.Module, report: bool = True) -> list[dict[str, Any]]:
        out = []
        for name, mod in model.named_modules():
            if type(mod) is nn.Conv2d and (n := self._sizes.size_of(mod)) is not None:
                rep = _dense_control(mod, n, self.config, report)
                if rep is not None:
                    rep["layer"] = name
                    out.append(rep)
        return out

    def tt_layers(self, model: nn.Module) -> list[tuple[str, TTConv2d]]:
        return [(n, m) for n, m in model.named_modules() if isinstance(m, TTConv2d)]

    def penalty(self, model: nn.Module) -> Tensor | None:
        """lambda / S * sum(||K1^T K1 - I||^2 + ||K3 K3^T - I||^2), S = sum over TT layers of 2 r2^2."""
        lam = self.config.penalty_lambda
        layers = [m for _, m in self.tt_layers(model) if not m.is_plain]
        if lam == 0 or not layers:
            return None
        s = sum(2 * m.r2**2 for m in layers)
        total = sum(sum(m.orthogonality_defect()) for m in layers)
        return lam / s * total

    def after_step(self, model: nn.Module, step: int, *, report: bool = True) -> list[dict[str, Any]]:
        c = self.config
        if c.control == "none" or step % c.every:
            return []
        reports = self._control_dense_convs(model, report)
        for name, layer in self.tt_layers(model):
            n = self._sizes.size_of(layer)
            if n is None:
                continue
            t0 = time.perf_counter()
            layer.orthogonalize()  # always fold first: the core's SVs are then the layer's (Theorem 1)
            rep = _control_kernel(layer.k2, n, as_stride(layer.stride), layer.padding_mode, c, report)
            rep.update(layer=name, time_ms=(time.perf_counter() - t0) * 1e3, sigma_source=control_source(layer),
                       optimizer_state="kept (not transformed by the QR fold)")
            reports.append(rep)
        return reports


def _mixing(r: int, gen: torch.Generator) -> Tensor:
    """A well-conditioned random r x r matrix I + 0.3 G / sqrt(r)."""
    noise = torch.randn(r, r, generator=gen, dtype=torch.float64)
    return torch.eye(r, dtype=torch.float64) + 0.3 * noise / math.sqrt(r)


def _dense_control(conv: nn.Conv2d, n: Grid, cfg: TTConfig, report: bool = True) -> dict[str, Any] | None:
    """The convs wrap() kept dense (first conv, ranks >= channels) get the same control on their full kernel."""
    if conv.groups != 1 or max(conv.dilation) != 1 or not kernel_fits(conv, n):
        return None
    t0 = time.perf_counter()
    rep = _control_kernel(conv.weight, n, as_stride(conv.stride), conv.padding_mode, cfg, report)
    rep.update(time_ms=(time.perf_counter() - t0) * 1e3, sigma_source=control_source(conv))
    return rep


def _control_kernel(kernel: Tensor, n: Grid, stride: Stride, pad: str, cfg: TTConfig, report: bool = True
                    ) -> dict[str, Any]:
    """Clip (Sedghi, then crop) or divide one conv kernel in place; with ``report``, measure the true sigma_max
    afterwards (an SV computation the control does not need; None without it)."""
    with torch.no_grad():
        if cfg.control == "clip" and fits_grid(kernel.shape[-2:], n):
            res = sedghi_clip(kernel.detach(), n, cfg.target, stride, mode=cfg.clip_mode, padding=pad, measure=report)
            kernel.copy_(res.weight)
            before, after = res.sigma_max_before, res.sigma_max_after  # the pass measured both: no third SV run
        else:
            before = _core_sigma(kernel, n, stride, pad)  # the division needs it
            kernel.div_(max(1.0, before / cfg.target))
            after = _core_sigma(kernel, n, stride, pad) if report else None
    return {"layer": "", "target": cfg.target, "sigma_max_before": before, "sigma_max_after": after,
            "sigma_source": "circular_exact@n" if pad == "circular" else "circular_bound@n'",
            "overshoot": None if after is None else after / cfg.target}


def _core_sigma(core: Tensor, n: Grid, stride: Stride, padding: str) -> float:
    if padding == "circular":
        return float(conv_sigma_max(core.detach(), n, stride))
    return float(zero_padding_sigma_max_bound(core.detach(), n, stride))


def _named_convs(model: nn.Module):
    for name, mod in model.named_modules():
        if type(mod) is nn.Conv2d:
            yield name, mod


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent = model
    parts = name.split(".")
    for p in parts[:-1]:
        parent = getattr(parent, p)
    setattr(parent, parts[-1], new)
