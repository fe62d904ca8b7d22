"""Power iteration on a conv layer's REAL operator, and the adjoint it needs.

Gouk, Frank, Pfahringer & Cree, Machine Learning 110 (2021), arXiv:1804.04368; Miyato et al., ICLR 2018
(arXiv:1802.05957) for the persistent vector. v = T^*(T u) with ``conv2d`` and its exact adjoint (same stride,
padding mode, dilation; ``output_padding`` chosen so that T^* returns n x n). The estimate ||T u|| / ||u|| is a
Rayleigh quotient: it is <= sigma_1 for every u (NOT a certificate) and converges at a rate set by
(sigma_2 / sigma_1)^2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _pair(padding: int | tuple[int, int]) -> tuple[int, int]:
    return (padding, padding) if isinstance(padding, int) else (int(padding[0]), int(padding[1]))


def conv_forward(x: Tensor, weight: Tensor, stride: int | tuple[int, int], padding: int | tuple[int, int],
                 padding_mode: str, dilation: int | tuple[int, int] = 1, groups: int = 1) -> Tensor:
    """The conv T on x; ``padding``: one int for every side, or (height, width), each applied on both ends; stride
    and dilation: one int, or one per axis."""
    ph, pw = _pair(padding)
    if padding_mode == "circular":
        x = F.pad(x, (pw, pw, ph, ph), mode="circular")
        return F.conv2d(x, weight, None, stride, 0, dilation, groups)
    return F.conv2d(x, weight, None, stride, (ph, pw), dilation, groups)


def conv_adjoint(
    y: Tensor, weight: Tensor, n: int | tuple[int, int], stride: int | tuple[int, int], padding: int | tuple[int, int],
    padding_mode: str, dilation: int | tuple[int, int] = 1, groups: int = 1,
) -> Tensor:
    """T^* y for the conv T of :func:`conv_forward` on n x n (or (h, w)) inputs (kernels, paddings, strides and
    dilations may differ per axis)."""
    ph, pw = _pair(padding)
    h, w = _pair(n)
    strides = _pair(stride)
    spans = [d * (k - 1) + 1 for d, k in zip(_pair(dilation), weight.shape[-2:])]
    outs = y.shape[-2:]
    if padding_mode == "circular":
        full = (h + 2 * ph, w + 2 * pw)
        op = tuple(f - ((m - 1) * s + sp) for f, m, s, sp in zip(full, outs, strides, spans))
        z = F.conv_transpose2d(y, weight, None, stride, 0, op, groups, dilation)
        rows = (torch.arange(full[0], device=y.device) - ph) % h
        cols = (torch.arange(full[1], device=y.device) - pw) % w
        out = z.new_zeros(*z.shape[:-2], h, full[1]).index_add_(-2, rows, z)
        return out.new_zeros(*z.shape[:-2], h, w).index_add_(-1, cols, out)
    op = tuple(side - ((m - 1) * s - 2 * p + sp) for side, m, s, p, sp in zip((h, w), outs, strides, (ph, pw), spans))
    return F.conv_transpose2d(y, weight, None, stride, (ph, pw), op, groups, dilation)


def conv_power_iteration(
    weight: Tensor,
    u: Tensor,
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    padding_mode: str = "zeros",
    dilation: int | tuple[int, int] = 1,
    iters: int = 1,
    groups: int = 1,
) -> tuple[Tensor, Tensor]:
    """``iters`` steps from u (1, c_in, h, w); returns (estimate of sigma_1, new unit u). No gradient through u.
    ``groups``: weight (c_out, c_in / g, k, k) of a grouped conv."""
    n = (int(u.shape[-2]), int(u.shape[-1]))
    with torch.no_grad():
        for _ in range(iters):
            v = conv_adjoint(conv_forward(u, weight, stride, padding, padding_mode, dilation, groups), weight, n,
                             stride, padding, padding_mode, dilation, groups)
            u = v / v.norm().clamp_min(torch.finfo(v.dtype).tiny)
    sigma = conv_forward(u, weight, stride, padding, padding_mode, dilation, groups).norm() / u.norm()
    return sigma, u


def matrix_power_iteration(weight: Tensor, u: Tensor, iters: int = 1) -> tuple[Tensor, Tensor]:
    """Same for a dense matrix (linear layers): weight (out, in), u (in,)."""
    with torch.no_grad():
        for _ in range(iters):
            v = weight.T @ (weight @ u)
            u = v / v.norm().clamp_min(torch.finfo(v.dtype).tiny)
    return (weight @ u).norm() / u.norm(), u
