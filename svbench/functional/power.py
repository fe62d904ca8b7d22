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


def conv_forward(x: Tensor, weight: Tensor, stride: int, padding: int, padding_mode: str, dilation: int = 1,
                 groups: int = 1) -> Tensor:
    if padding_mode == "circular":
        x = F.pad(x, (padding,) * 4, mode="circular")
        return F.conv2d(x, weight, None, stride, 0, dilation, groups)
    return F.conv2d(x, weight, None, stride, padding, dilation, groups)


def conv_adjoint(
    y: Tensor, weight: Tensor, n: int, stride: int, padding: int, padding_mode: str, dilation: int = 1,
    groups: int = 1,
) -> Tensor:
    """T^* y for the conv T of :func:`conv_forward` on n x n inputs."""
    k = weight.shape[-1]
    m = y.shape[-1]
    span = dilation * (k - 1) + 1
    if padding_mode == "circular":
        full = n + 2 * padding
        op = full - ((m - 1) * stride + span)
        z = F.conv_transpose2d(y, weight, None, stride, 0, op, groups, dilation)
        idx = (torch.arange(full, device=y.device) - padding) % n
        out = z.new_zeros(*z.shape[:-2], n, full).index_add_(-2, idx, z)
        return out.new_zeros(*z.shape[:-2], n, n).index_add_(-1, idx, out)
    op = n - ((m - 1) * stride - 2 * padding + span)
    return F.conv_transpose2d(y, weight, None, stride, padding, op, groups, dilation)


def conv_power_iteration(
    weight: Tensor,
    u: Tensor,
    *,
    stride: int = 1,
    padding: int = 0,
    padding_mode: str = "zeros",
    dilation: int = 1,
    iters: int = 1,
    groups: int = 1,
) -> tuple[Tensor, Tensor]:
    """``iters`` steps from u (1, c_in, n, n); returns (estimate of sigma_1, new unit u). No gradient through u.
    ``groups``: weight (c_out, c_in / g, k, k) of a grouped conv."""
    n = u.shape[-1]
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
