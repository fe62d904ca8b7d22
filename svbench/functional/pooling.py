"""l2 Lipschitz constants of 2-D pooling layers, read off torch's own forward (no window formulas copied).

Pooling treats every channel alike, so a channel's operator on an H x W grid is the layer's.

- **Average pooling** (``AvgPool2d`` with any kernel, stride, padding, ``ceil_mode``, ``count_include_pad``,
  ``divisor_override``; ``AdaptiveAvgPool2d`` with any output size) is linear and separable: torch divides a
  window's sum by a product of one count per axis (or by a constant), so the operator is P = P_h (x) P_w and
  ||P||_2 = ||P_h||_2 ||P_w||_2. EXACT (float64). The factors come from probing the layer with one indicator image
  per row (e_i (x) 1), one per column (1 (x) e_j) and the all-ones image: ||R_h|| ||C_w|| / ||P 1|| with
  R_h = P_h (x) P_w 1, C_w = P_h 1 (x) P_w.
- **Max pooling** (``MaxPool2d``, ``AdaptiveMaxPool2d``) is not linear. |max_W x - max_W y| <= max_{p in W}
  |x_p - y_p|, so summing squares over windows counts each pixel once per window that holds it: the Lipschitz
  constant is at most sqrt(c), c the largest number of windows sharing a pixel (1 for non-overlapping windows).
  It is EXACTLY sqrt(c): raising that one pixel of an all-zero image by t raises each of its c windows by t. A
  window holds pixel (i, j) iff it holds row i and column j, so c is the product of the per-axis counts, read off
  the same row / column indicator probes.

Used by certified accuracy (Tsuzuku, Sato & Sugiyama, NeurIPS 2018): the product of per-layer bounds must be a
true upper bound, and 1 / sqrt(window) holds only for non-overlapping, evenly dividing, unpadded windows (an
adaptive pool from 5 to 3 has norm 2/3, not 1/2; ``ceil_mode`` or ``count_include_pad=False`` can reach 1).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

AVERAGE = (nn.AvgPool2d, nn.AdaptiveAvgPool2d)
MAXIMUM = (nn.MaxPool2d, nn.AdaptiveMaxPool2d)


def _probe(module: nn.Module, h: int, w: int) -> tuple[Tensor, Tensor, Tensor]:
    """Outputs (flattened per image) for the row indicators, the column indicators and the all-ones image."""
    rows = torch.zeros(h, 1, h, w, dtype=torch.float64)
    rows[torch.arange(h), 0, torch.arange(h), :] = 1
    cols = torch.zeros(w, 1, h, w, dtype=torch.float64)
    cols[torch.arange(w), 0, :, torch.arange(w)] = 1
    ones = torch.ones(1, 1, h, w, dtype=torch.float64)
    with torch.no_grad():
        out = module(torch.cat([rows, cols, ones]))
    out = out.reshape(h + w + 1, *out.shape[-2:])
    return out[:h], out[h : h + w], out[h + w]


def average_pool_norm(module: nn.Module, h: int, w: int) -> float:
    """Exact ||P||_2 of an average pooling layer on an h x w grid (float64)."""
    r, c, ones = _probe(module, h, w)
    total = float(torch.linalg.vector_norm(ones))
    if total == 0:
        return 0.0
    r_norm = float(torch.linalg.matrix_norm(r.reshape(h, -1), ord=2))
    c_norm = float(torch.linalg.matrix_norm(c.reshape(w, -1), ord=2))
    return r_norm * c_norm / total


def max_pool_bound(module: nn.Module, h: int, w: int) -> tuple[float, int]:
    """(sqrt(c), c): the l2 Lipschitz constant of a max pooling layer on h x w, c the most windows sharing a
    pixel."""
    r, c, _ = _probe(module, h, w)
    # a row indicator gives 1 in every window holding that row: count them down one output column
    per_row = (r[:, :, 0] > 0).sum(1)
    per_col = (c[:, 0, :] > 0).sum(1)
    cover = int(per_row.max()) * int(per_col.max())
    return math.sqrt(cover), cover


def pooling_bound(module: nn.Module, h: int, w: int) -> tuple[float, str] | None:
    """(bound, source) for a 2-D pooling layer on h x w, or None when ``module`` is no pooling layer handled here."""
    if isinstance(module, AVERAGE):
        return average_pool_norm(module, h, w), "average pooling: exact operator norm (float64)"
    if isinstance(module, MAXIMUM):
        bound, cover = max_pool_bound(module, h, w)
        if cover == 1:
            return bound, "max pooling, non-overlapping windows: 1-Lipschitz"
        return bound, f"max pooling: sqrt({cover}), up to {cover} windows share a pixel (exact Lipschitz constant)"
    return None
