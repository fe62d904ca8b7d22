"""All SVs of many convs at once: layers grouped by transfer shape, one batched decomposition per group.

Exact for the circular model of each conv on its input grid (Sedghi et al., ICLR 2019). Layers whose transfer
matrices share a shape (c_out, c_in s^2, n/s) are concatenated into ONE ``svdvals`` / ``eigvalsh`` call, so a
GPU synchronises once per group instead of once per layer.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import Tensor

from svbench.functional.spectrum import expand_multiset, matrix_singular_values, resolve_backend, taps_chunk
from svbench.functional.transfer import compact_polyphase_kernel, transfer_matrices_at, unique_frequencies


def batched_conv_singular_values(
    layers: list[tuple[Tensor, int, int]] | list[tuple[Tensor, int, int, int]], *, backend: str = "auto",
    driver: str | None = None, chunk: int | None = None, pieces: int | None = None,
) -> list[Tensor]:
    """``layers``: (kernel (c_out, c_in, k, k), n, stride[, groups]) -> all SVs of each, descending.

    A grouped conv's kernel is its weight (c_out, c_in / g, k, k): read as an ungrouped conv from c_in / g channels,
    its transfer matrix at each frequency is the g blocks of the grouped conv stacked vertically, so it is cut into
    g matrices of c_out / g rows and decomposed with the rest (SVs of a block-diagonal operator: the blocks' SVs).

    Per group, the frequencies are processed ``chunk`` at a time (default: ``taps_chunk``: up to ``pieces`` calls, one
    for gesvda on CUDA), each chunk's matrices of all the group's layers in one call.
    """
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, (w, n, s, *g) in enumerate(layers):
        groups[(w.shape[0], w.shape[1] * s * s, n // s, g[0] if g else 1, w.dtype, w.device)].append(i)
    out: list[Tensor | None] = [None] * len(layers)
    for (c_out, q, m, g, _, device), idxs in groups.items():
        idx, mult = unique_frequencies(m, device)
        taps = [compact_polyphase_kernel(*layers[i][:3]) for i in idxs]
        f = idx.numel()
        route, drv = resolve_backend(backend, c_out // g, q, device, driver)
        step = taps_chunk(taps[0], f, chunk, layers=len(taps), route=route, driver=drv, pieces=pieces)
        parts = []
        for a in range(0, f, step):
            mats = torch.cat([transfer_matrices_at(t, m, idx[a : a + step]) for t in taps])
            if g > 1:
                mats = mats.reshape(-1, c_out // g, q)
            svs = matrix_singular_values(mats, backend, driver=driver)
            parts.append(svs.reshape(len(idxs), -1, g * svs.shape[-1]))
        per_layer = torch.cat(parts, dim=1)
        for j, i in enumerate(idxs):
            out[i] = expand_multiset(per_layer[j], mult)
    return out  # type: ignore[return-value]
