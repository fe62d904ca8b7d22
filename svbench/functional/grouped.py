"""Exact SVs of grouped and dilated circular convs, reduced to the dense case.

Two facts make both exact (Sedghi, Gupta & Long, ICLR 2019, extended to these layer types):

- A conv with dilation d and k x k taps is the conv whose (d(k-1)+1) x (d(k-1)+1) kernel holds those taps every
  d-th position and zeros elsewhere (torch's circular padding of d (k // 2) only shifts the input, and a circular
  shift leaves A A^H, hence the SVs, unchanged -- also with stride).
- A conv with g groups maps input-channel block j to output-channel block j only: after permuting channels its
  operator is block diagonal, so its SVs are the union of the g blocks' SVs. Each block has min(c_out/g, c_in s^2/g)
  SVs per frequency, g of them min(c_out, c_in s^2): the count of the dense operator, zeros included.

``sedghi`` decomposes the g blocks as one batch (``grouped_conv_singular_values``; no per-group loop);
``reference`` takes the naive route on the block-diagonal dense kernel (``dense_equivalent_kernel``), whose
transfer matrices are g-fold larger.
"""

from __future__ import annotations

import torch
from torch import Tensor

from svbench.errors import UserError
from svbench.functional.network import batched_conv_singular_values
from svbench.functional.spectrum import conv_sigma_max, zero_padding_bound_size, zero_padding_sigma_max_bound
from svbench.functional.transfer import Grid, Stride, stride_hw


def dilate_kernel(weight: Tensor, dilation: Stride) -> Tensor:
    """(c_out, c_in, k, k) taps -> the equivalent undilated kernel of size d (k - 1) + 1 (zeros between taps); a
    dilation (d1, d2) spreads each axis by its own."""
    if dilation == 1:
        return weight
    d1, d2 = stride_hw(dilation)
    c_out, c_in, kh, kw = weight.shape
    out = weight.new_zeros(c_out, c_in, d1 * (kh - 1) + 1, d2 * (kw - 1) + 1)
    out[..., ::d1, ::d2] = weight
    return out


def group_kernels(weight: Tensor, groups: int) -> Tensor:
    """A grouped conv's weight (c_out, c_in / g, k, k) -> its g blocks, (g, c_out / g, c_in / g, k, k)."""
    c_out = weight.shape[0]
    if groups < 1 or c_out % groups:
        raise ValueError(f"groups={groups} must divide c_out={c_out}")
    return weight.reshape(groups, c_out // groups, *weight.shape[1:])


def dense_equivalent_kernel(weight: Tensor, groups: int = 1, dilation: Stride = 1) -> Tensor:
    """The ungrouped, undilated kernel (c_out, c_in, span, span) of the same operator (block diagonal in channels)."""
    blocks = group_kernels(dilate_kernel(weight, dilation), groups)
    g, co, ci = blocks.shape[:3]
    if g == 1:
        return blocks[0]
    out = weight.new_zeros(g * co, g * ci, *blocks.shape[-2:])
    for j in range(g):
        out[j * co : (j + 1) * co, j * ci : (j + 1) * ci] = blocks[j]
    return out


def grouped_from_dense(kernel: Tensor, groups: int = 1, dilation: Stride = 1) -> Tensor:
    """Inverse of :func:`dense_equivalent_kernel` on its image: the diagonal blocks (c_out, c_in / g, ...) of a
    block-diagonal kernel, then the taps on the dilation lattice. On any other kernel it is the orthogonal projection
    onto the kernels the grouped, dilated layer can implement (what Sedghi's crop is for a plain conv)."""
    c_out, c_in = kernel.shape[:2]
    co, ci = c_out // groups, c_in // groups
    blocks = [kernel[j * co : (j + 1) * co, j * ci : (j + 1) * ci] for j in range(groups)]
    out = blocks[0] if groups == 1 else torch.cat(blocks)
    d1, d2 = stride_hw(dilation)
    return out[..., ::d1, ::d2].contiguous()


def grouped_conv_singular_values(
    weight: Tensor, n: Grid, stride: Stride = 1, *, groups: int = 1, dilation: Stride = 1, backend: str = "auto",
    driver: str | None = None, pieces: int | None = None,
) -> Tensor:
    """All (n/s)^2 min(c_out, c_in s^2) SVs of the grouped, dilated circular conv on n x n, descending. Exact.

    The g blocks are decomposed in one batched call per chunk of frequencies (one frequency per conjugate pair, as
    in ``conv_singular_values``), their transfer matrices built at once from the grouped weight.
    """
    return grouped_network_singular_values([(weight, n, stride, groups, dilation)], backend=backend,
                                           driver=driver, pieces=pieces)[0]


def layer_sigma_max(weight: Tensor, n: Grid, stride: Stride, padding: str, groups: int = 1, dilation: Stride = 1
                    ) -> float:
    """The TRUE sigma_max a control report quotes: exact circular sigma_max on n, or for zero padding the
    guaranteed bound (circular sigma_max on n' = s ceil((n + span - 1) / s)); grouped / dilated convs by their blocks'
    SVs."""
    if padding not in ("circular", "zeros", "zero"):
        raise UserError(f"unknown padding {padding!r}; use 'circular' or 'zeros'")
    if groups == 1 and dilation == 1:
        if padding == "circular":
            return float(conv_sigma_max(weight, n, stride))
        return float(zero_padding_sigma_max_bound(weight, n, stride))
    w = dilate_kernel(weight, dilation)
    grid = n if padding == "circular" else zero_padding_bound_size(n, max(w.shape[-2:]), stride)  # the longer side
    return float(batched_conv_singular_values([(w, grid, stride, groups)])[0][0])


def grouped_network_singular_values(
    layers: list[tuple[Tensor, Grid, Stride, int, Stride]], *, backend: str = "auto", driver: str | None = None,
    pieces: int | None = None, merge: str = "grids", streams: int | None = 1, split: bool = False,
) -> list[Tensor]:
    """(weight, n, stride, groups, dilation) per layer -> all SVs of each; the blocks of every layer of one transfer
    shape go into one batched decomposition (``batched_conv_singular_values``, which says what ``merge`` does)."""
    return batched_conv_singular_values([(dilate_kernel(w, d), n, s, g) for w, n, s, g, d in layers],
                                        backend=backend, driver=driver, pieces=pieces, merge=merge,
                                        streams=streams, split=split)
