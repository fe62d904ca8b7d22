"""Dense impulse-response oracle: the exact SVs of any small layer, in float64.

Feed each unit image e_j through the layer's REAL forward (same padding, stride, dilation, code path as in
training), take the column T e_j = f(e_j) - f(0) (subtracting f(0) removes the bias), stack the columns and take
``torch.linalg.svdvals``. Exact for any linear layer (zero or circular padding, any stride, TT and Cayley layers)
up to float64 rounding. Cost O((c n^2)^3): keep c_in * n^2 <= ~4096.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from svbench.errors import UserError

MAX_ORACLE_DIM = 8192


def dense_operator(
    forward: Callable[[Tensor], Tensor],
    in_shape: tuple[int, int, int],
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    batch: int = 256,
) -> Tensor:
    """Matrix (out_dim, in_dim) of the linear part of ``forward`` on inputs of shape ``in_shape`` = (c, h, w)."""
    in_dim = in_shape[0] * in_shape[1] * in_shape[2]
    if in_dim > MAX_ORACLE_DIM:
        raise UserError(f"oracle input dimension {in_dim} exceeds {MAX_ORACLE_DIM}; use a smaller c_in * n^2")
    zero = forward(torch.zeros(1, *in_shape, dtype=dtype, device=device)).reshape(1, -1)
    cols = []
    for start in range(0, in_dim, batch):
        stop = min(start + batch, in_dim)
        eye = torch.zeros(stop - start, in_dim, dtype=dtype, device=device)
        eye[torch.arange(stop - start), torch.arange(start, stop)] = 1
        out = forward(eye.reshape(-1, *in_shape)).reshape(stop - start, -1) - zero
        cols.append(out)
    return torch.cat(cols).T.contiguous()


def layer_as_float64(layer: nn.Module) -> nn.Module:
    """A float64 copy of ``layer`` in eval mode (the original is untouched)."""
    return copy.deepcopy(layer).to(torch.float64).eval()


def oracle_singular_values(
    layer: nn.Module | Callable[[Tensor], Tensor],
    in_shape: tuple[int, int, int],
    *,
    device: torch.device | str = "cpu",
) -> Tensor:
    """All SVs (descending, zeros included) of the layer's linear operator on ``in_shape``, in float64."""
    fwd = layer_as_float64(layer) if isinstance(layer, nn.Module) else layer
    with torch.no_grad():
        mat = dense_operator(fwd, in_shape, device=device)
        return torch.linalg.svdvals(mat)
