"""``sedghi``: exact SVs of circular convs by FFT, and spectral clipping.

Sedghi, Gupta & Long, "The Singular Values of Convolutional Layers", ICLR 2019 (arXiv:1805.10408).

- ``layer_svs`` is EXACT for circular padding (all (n/s)^2 min(c_out, c_in s^2) SVs, zeros included), strides
  by the polyphase layout out x (in s^2). Zero-padded layers are declined: their circular SVs are not theirs.
  Grouped and dilated convs are exact too: the union of the group blocks' SVs (decomposed as one batch), the
  dilated taps zero-filled into a (d (k - 1) + 1)-tap kernel (``functional.grouped``). Control clips each group
  block and crops to the layer's own taps (the k x k lattice of a dilated kernel).
- Control (``clip_to``): every ``clip_every`` optimizer steps, project each conv's circular spectrum onto
  {sigma <= clip_to} and crop back to k x k. The crop breaks the bound; the report of each step holds the TRUE
  sigma_max of the implemented layer (exact for circular padding, the n' = n + k - 1 bound for zero padding),
  the target and the overshoot, never the target as the achieved norm. ``clip_route: auto`` clips through the
  Gram eigendecomposition on CPU and through cuSOLVER gesvda's SVD on CUDA (the faster route on each, measured:
  reports/cpu-performance.md, reports/gpu/nvidia-h200).
- ``chunks``: at most this many solver calls per layer (or layer group); by default one for gesvda on CUDA
  (a gesvda call costs about the same whatever its batch), else up to four. More calls, less peak memory.
- ``merge`` (network SVs): layers whose transfer matrices have one shape share a call across grids (default), and
  with ``pad`` narrower ones of the same rows are zero-padded into it (exact: the padding adds only zero SVs,
  which are cut off); ``none`` keeps one call per (shape, grid).
- ``streams``: the solver calls of the network SVs, of the network clipping pass and of a chunked layer run on
  that many concurrent lanes, each a host thread with its own CUDA stream (``functional.lanes``; torch syncs the
  host after every gesvda call, so calls from one thread never overlap). Same values, more peak memory. Default:
  4 for the network routes on CUDA (measured faster on an H200), else 1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from svbench.functional.clip import clip_kernels, sedghi_clip
from svbench.functional.grouped import (
    dense_equivalent_kernel,
    grouped_conv_singular_values,
    grouped_network_singular_values,
)
from svbench.functional.spectrum import conv_singular_values, describe_backend
from svbench.functional.transfer import Grid, as_grid, stride_area
from svbench.methods.base import (
    METHODS,
    Capabilities,
    LayerSpec,
    Method,
    check_circular_mode,
    check_padding,
    control_source,
    conv_geometry,
    conv_inputs,
    geometry_of,
    kernel_fits,
    plain_convs,
    sv_weight,
    warn_left_out,
)
from svbench.methods.hooks import InputSizes


@dataclass(frozen=True)
class SedghiConfig:
    backend: Literal["auto", "svdvals", "eigh", "eigh64", "svdvals64"] = "auto"
    driver: Literal["gesvd", "gesvdj", "gesvda"] | None = None  # cuSOLVER driver (CUDA only)
    real_fft: bool = True
    clip_to: float | None = None  # target sigma_max for the control step (None: no control)
    clip_every: int = 100
    mode: Literal["clip", "assign"] = "clip"
    # auto: Gram-eig on CPU (reports/cpu-performance.md), SVD through gesvda on CUDA (reports/gpu/nvidia-h200)
    clip_route: Literal["auto", "svd", "gram"] = "auto"
    # split each layer's (or layer group's) frequencies into at most this many solver calls (memory against time);
    # None: the engine's default (one call for gesvda on CUDA, else up to 4 calls of >= 1 MiB / 16 MiB on GPU / CPU)
    chunks: int | None = None
    # network SVs: layers of one matrix shape in one call whatever their grid ("grids"), also narrower layers of
    # the same rows zero-padded into it ("pad"), or one call per (shape, grid) ("none"); functional.network
    merge: Literal["grids", "pad", "none"] = "grids"
    # concurrent lanes (host thread + CUDA stream each) for the solver calls of network SVs, the network clipping
    # pass and a chunked layer (functional.lanes); 1: in order. Same values; more peak memory. None: 4 on CUDA for
    # the network routes (measured faster, functional.lanes.DEFAULT_STREAMS), 1 on CPU and for a single layer
    streams: int | None = None
    # network routes: halve calls that would hold one lane much longer than the others (functional.batching.
    # split_for_lanes); measured slower on an H200 (WRN-16-10: 311.2 vs 303.5 ms, 343.2 on 8 lanes; run 5): off
    split: bool = False

    def __post_init__(self) -> None:
        if self.clip_to is not None and not self.clip_to > 0:
            raise ValueError(f"clip_to must be > 0, got {self.clip_to}")
        if self.clip_every < 1:
            raise ValueError(f"clip_every must be >= 1, got {self.clip_every}")
        if self.chunks is not None and self.chunks < 1:
            raise ValueError(f"chunks must be >= 1, got {self.chunks}")
        if self.streams is not None and self.streams < 1:
            raise ValueError(f"streams must be >= 1, got {self.streams}")


@METHODS.register("sedghi")
class SedghiMethod(Method):
    name = "sedghi"
    provides = "all_svs"
    supports = Capabilities(paddings=("circular",), groups=True, dilation=True)
    Config = SedghiConfig
    rectangular_grids = True
    anisotropic = True
    summary = "exact SVs of circular convs by FFT (+ clip-and-crop control)"
    reference = "Sedghi, Gupta & Long, ICLR 2019 (arXiv:1805.10408)"

    def __init__(self, config: SedghiConfig | None = None) -> None:
        super().__init__(config)
        self._sizes = InputSizes(clips=True, anisotropic=self.anisotropic)

    def layer_svs(self, layer: nn.Module, input_hw: Grid) -> Tensor:
        """All SVs of the layer's circular conv on input_hw x input_hw, or on an (h, w) grid."""
        stride, _, groups, dilation = conv_geometry(layer, anisotropic=True)
        check_circular_mode(layer, input_hw, "sedghi")
        check_padding(layer, "sedghi", exact=True)
        input_hw = as_grid(input_hw)
        c = self.config
        if groups != 1 or dilation != 1:
            with torch.no_grad():
                if not c.real_fft:
                    kernel = dense_equivalent_kernel(sv_weight(layer), groups, dilation)
                    return conv_singular_values(kernel, input_hw, stride, backend=c.backend, real_fft=False,
                                                driver=c.driver)
                return grouped_conv_singular_values(sv_weight(layer), input_hw, stride, groups=groups,
                                                    dilation=dilation, backend=c.backend, driver=c.driver,
                                                    pieces=c.chunks)
        with torch.no_grad():
            return conv_singular_values(sv_weight(layer), input_hw, stride, backend=c.backend,
                                        real_fft=c.real_fft, driver=c.driver, pieces=c.chunks,
                                        streams=c.streams or 1)

    def backend(self, spec: LayerSpec | None = None, device: torch.device | str = "cpu",
                dtype: torch.dtype | None = None) -> str:
        c = self.config
        if spec is None:
            return c.backend
        g = spec.groups  # a grouped conv's matrices are its blocks'
        return describe_backend(c.backend, spec.c_out // g, spec.c_in * stride_area(spec.stride) // g, device, c.driver,
                                dtype)

    def control_target(self) -> float | None:
        return self.config.clip_to

    def network_svs(self, model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, Tensor]:
        """All SVs of every plain conv (grouped and dilated ones, and kernels wider than their grid, whose taps wrap,
        included: the set ``reference`` covers), the blocks of all layers of one transfer shape batched into one
        call. Rectangular grids (an h x w input) are computed (each conv on its own h x w grid)."""
        convs = [(name, m, n) for name, m, n in conv_inputs(model, input_shape, rectangular=self.rectangular_grids,
                                                            anisotropic=self.anisotropic)
                 if isinstance(m, nn.Conv2d)]
        c = self.config
        with torch.no_grad():
            svs = grouped_network_singular_values(
                [(sv_weight(m), n, *geometry_of(m)) for _, m, n in convs],
                backend=c.backend, driver=c.driver, pieces=c.chunks, merge=c.merge, streams=c.streams,
                split=c.split)
        out = {name: s for (name, _, _), s in zip(convs, svs)}
        warn_left_out(model, out, "sedghi network_svs")
        return out

    def network_clip(self, model: nn.Module, input_shape: tuple[int, int, int], target: float
                     ) -> dict[str, Tensor]:
        """The clip-and-crop pass of every plain conv whose kernel fits its grid (circular model on it; see the base
        class), unique frequencies only; the matrices of layers of one transfer shape clipped together (``merge``,
        as for the SVs)."""
        c = self.config
        convs = plain_convs(model, input_shape, rectangular=self.rectangular_grids, anisotropic=self.anisotropic)
        kernels = clip_kernels([(sv_weight(m), n, *geometry_of(m)) for _, m, n in convs],
                               target, mode=c.mode, route=c.clip_route, driver=c.driver, pieces=c.chunks,
                               merge=c.merge, streams=c.streams, split=c.split)
        out = {name: k for (name, _, _), k in zip(convs, kernels)}
        warn_left_out(model, out, "sedghi network_clip")
        return out

    # ---- training hooks ---------------------------------------------------------------------------------
    def wrap(self, model: nn.Module) -> nn.Module:
        self._sizes.attach(model)
        return model

    def after_step(self, model: nn.Module, step: int, *, report: bool = True) -> list[dict[str, Any]]:
        c = self.config
        if c.clip_to is None or step % c.clip_every:
            return []
        reports = []
        for name, conv in self._sizes.convs(model):
            n = self._sizes.size_of(conv)
            stride, padding, groups, dilation = conv_geometry(conv, anisotropic=True)
            if n is None or not kernel_fits(conv, n):
                continue
            t0 = time.perf_counter()
            res = sedghi_clip(
                conv.weight.detach(), n, c.clip_to, stride, mode=c.mode,
                padding="circular" if padding == "circular" else "zeros", route=c.clip_route, groups=groups,
                dilation=dilation, driver=c.driver, pieces=c.chunks, measure=report,
            )
            with torch.no_grad():
                conv.weight.copy_(res.weight)
            reports.append(
                {
                    "layer": name,
                    "target": res.target,
                    "sigma_max_before": res.sigma_max_before,
                    "sigma_max_after": res.sigma_max_after,
                    "sigma_source": control_source(conv),
                    "overshoot": res.overshoot,
                    "time_ms": (time.perf_counter() - t0) * 1e3,
                }
            )
        return reports
