"""All SVs of many convs at once: layers grouped by transfer shape, as few batched decompositions as possible.

Exact for the circular model of each conv on its input grid (Sedghi et al., ICLR 2019). Layers whose transfer
matrices share a shape (c_out, c_in s^2) are decomposed in ONE ``svdvals`` / ``eigvalsh`` call, so a GPU
synchronises (and pays cuSOLVER's per-call cost) once per shape instead of once per layer; ``merge`` as in
:mod:`svbench.functional.batching` (grids / pad / none).
"""

from __future__ import annotations

import torch
from torch import Tensor

from svbench.functional.batching import call_cost, call_matrices, plan_calls, split_call, split_for_lanes
from svbench.functional.lanes import resolve_streams, run_lanes
from svbench.functional.spectrum import expand_multiset, matrix_singular_values, resolve_backend
from svbench.functional.transfer import Grid, Stride


def batched_conv_singular_values(
    layers: list[tuple[Tensor, Grid, Stride]] | list[tuple[Tensor, Grid, Stride, int]], *, backend: str = "auto",
    driver: str | None = None, chunk: int | None = None, pieces: int | None = None, merge: str = "grids",
    streams: int | None = 1, split: bool = False,
) -> list[Tensor]:
    """``layers``: (kernel (c_out, c_in, k, k), n, stride[, groups]) -> all SVs of each, descending.

    A grouped conv's kernel is its weight (c_out, c_in / g, k, k): read as an ungrouped conv from c_in / g channels,
    its transfer matrix at each frequency is the g blocks of the grouped conv stacked vertically, so it is cut into
    g matrices of c_out / g rows and decomposed with the rest (SVs of a block-diagonal operator: the blocks' SVs).

    Kernels no larger than their stride (1 x 1 shortcuts above all) have one transfer matrix for every frequency:
    their blocks are decomposed once (the frequency-free groups of ``plan_calls``). Frequencies are processed
    ``chunk`` at a time (default: ``taps_chunk``: up to ``pieces`` calls per group, one for gesvda on CUDA);
    one-call groups are merged as ``merge`` says (:mod:`svbench.functional.batching`).
    ``auto`` is resolved again on a padded call's shape (every auto route is exact). ``streams`` > 1 runs the calls
    on that many concurrent lanes (:mod:`svbench.functional.lanes`; same values; None: the device's default);
    ``split`` halves calls that would hold one lane much longer than the others (``split_for_lanes``; measured
    slower on an H200, run 5).
    """
    device = layers[0][0].device if layers else torch.device("cpu")
    dtype = layers[0][0].dtype if layers else torch.float32
    streams = resolve_streams(streams, device)
    groups, calls = plan_calls([(w, n, s, g[0] if g else 1) for w, n, s, *g in layers],
                               lambda p, q, device: resolve_backend(backend, p, q, device, driver, dtype),
                               chunk=chunk, pieces=pieces, merge=merge)
    if split:
        calls = split_for_lanes(calls, streams)
    results = run_lanes(calls, lambda call: matrix_singular_values(call_matrices(call), backend, driver=driver),
                        streams=streams, costs=[call_cost(c) for c in calls], device=device)
    pieces_of: dict[int, list[tuple[int, Tensor]]] = {id(gr): [] for gr in groups}
    for call, svs in zip(calls, results):
        for part, mine in zip(call, split_call(call, svs)):
            gr = part.group
            k = min(gr.p, gr.q)  # a padded call has min(p, q') - k extra (zero) SVs at the end
            mine, zeros = mine[:, :k], min(gr.p, gr.q_full) - k
            if zeros:  # a frequency-free group's dropped columns: that many zero SVs per block
                mine = torch.nn.functional.pad(mine, (0, zeros))
            pieces_of[id(gr)].append((part.a, mine.reshape(len(gr.idxs), part.b - part.a, -1)))
    out: list[Tensor | None] = [None] * len(layers)
    for gr in groups:
        per_layer = torch.cat([t for _, t in sorted(pieces_of[id(gr)], key=lambda x: x[0])], dim=1)
        for j, i in enumerate(gr.idxs):
            out[i] = expand_multiset(per_layer[j], gr.mult)
    return out  # type: ignore[return-value]
