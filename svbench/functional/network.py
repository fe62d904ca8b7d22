"""All SVs of many convs at once: layers grouped by transfer shape, one batched decomposition per group.

Exact for the circular model of each conv on its input grid (Sedghi et al., ICLR 2019). Layers whose transfer
matrices share a shape (c_out, c_in s^2, n/s) are concatenated into ONE ``svdvals`` / ``eigvalsh`` call, so a
GPU synchronises once per group instead of once per layer.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import Tensor

from svbench.functional.spectrum import matrix_singular_values
from svbench.functional.transfer import transfer_matrices, unique_frequencies


def batched_conv_singular_values(
    layers: list[tuple[Tensor, int, int]], *, backend: str = "svdvals", driver: str | None = None,
    chunk: int | None = None,
) -> list[Tensor]:
    """``layers``: (kernel (c_out, c_in, k, k), n, stride) triples -> all SVs of each, descending."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, (w, n, s) in enumerate(layers):
        groups[(w.shape[0], w.shape[1] * s * s, n // s, w.dtype, w.device)].append(i)
    out: list[Tensor | None] = [None] * len(layers)
    for (_, _, m, _, device), idxs in groups.items():
        idx, weight = unique_frequencies(m, device)
        mats = torch.cat([
            transfer_matrices(layers[i][0], layers[i][1], layers[i][2]).reshape(-1, *_last2(layers[i]))
            .index_select(0, idx) for i in idxs
        ])
        svs = matrix_singular_values(mats, backend, driver=driver, chunk=chunk)
        per_layer = svs.reshape(len(idxs), idx.numel(), -1)
        for j, i in enumerate(idxs):
            out[i] = per_layer[j].repeat_interleave(weight, dim=0).reshape(-1).sort(descending=True).values
    return out  # type: ignore[return-value]


def _last2(layer: tuple[Tensor, int, int]) -> tuple[int, int]:
    w, _, s = layer
    return (w.shape[0], w.shape[1] * s * s)
