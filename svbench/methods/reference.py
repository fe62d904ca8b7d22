"""``reference``: the naive exact path every speed-up is measured against.

Sedghi, Gupta & Long's algorithm without any optimisation: ``fft2`` of the zero-padded kernel over all n^2
frequencies (polyphase for stride), then batched ``torch.linalg.svdvals`` with the default driver on every
transfer matrix. EXACT for circular padding, like ``sedghi``; a grouped or dilated conv goes the same naive way
on the dense kernel of the same operator (block diagonal, zero-filled taps); suites run it beside the other
methods so every speed-up is a ratio of two timings from the same run on the same machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from svbench.functional.clip import clip_kernel_naive
from svbench.functional.grouped import dense_equivalent_kernel, grouped_from_dense
from svbench.functional.spectrum import conv_singular_values
from svbench.functional.transfer import Grid, as_grid
from svbench.methods.base import (
    METHODS,
    Capabilities,
    LayerSpec,
    Method,
    check_circular_mode,
    check_padding,
    conv_geometry,
    geometry_of,
    plain_convs,
    sv_weight,
    warn_left_out,
)


@dataclass(frozen=True)
class ReferenceConfig:
    """No options: the reference is fixed so that ratios stay comparable across runs."""


@METHODS.register("reference")
class ReferenceMethod(Method):
    name = "reference"
    provides = "all_svs"
    supports = Capabilities(paddings=("circular",), groups=True, dilation=True)
    Config = ReferenceConfig
    summary = "naive exact baseline: full fft2 + default svdvals on all n^2 frequencies (speed-up denominator)"
    reference = "Sedghi, Gupta & Long, ICLR 2019 (unoptimised)"
    trains = False
    rectangular_grids = True
    anisotropic = True

    def backend(self, spec: LayerSpec | None = None, device: torch.device | str = "cpu",
                dtype: torch.dtype | None = None) -> str:
        return "fft2+svdvals"

    def network_clip(self, model: nn.Module, input_shape: tuple[int, int, int], target: float
                     ) -> dict[str, Tensor]:
        """Textbook clip of every plain conv: full fft2, SVD of all m^2 matrices, ifft2, crop (speed reference)."""
        out = {}
        for name, m, n in plain_convs(model, input_shape, rectangular=self.rectangular_grids,
                                      anisotropic=self.anisotropic):
            stride, groups, dilation = geometry_of(m)
            dense = dense_equivalent_kernel(sv_weight(m), groups, dilation)
            out[name] = grouped_from_dense(clip_kernel_naive(dense, n, target, stride), groups, dilation)
        warn_left_out(model, out, "reference network_clip")
        return out

    def layer_svs(self, layer: nn.Module, input_hw: Grid) -> Tensor:
        """All SVs of the layer's circular conv on input_hw x input_hw, or on an (h, w) grid."""
        stride, _, groups, dilation = conv_geometry(layer, anisotropic=True)
        check_circular_mode(layer, input_hw, "reference")
        check_padding(layer, "reference", exact=True)
        with torch.no_grad():  # grouped / dilated: the naive route on the dense kernel of the same operator
            kernel = dense_equivalent_kernel(sv_weight(layer), groups, dilation)
            return conv_singular_values(kernel, as_grid(input_hw), stride, backend="svdvals", real_fft=False)
