"""Which transfer matrices of which layers go into which solver call (whole-network SVs and clipping).

A batched GPU solver (cuSOLVER's gesvda above all) costs about the same per CALL whatever its batch (H200:
reports/gpu/nvidia-h200), so the network routes decompose as many matrices per call as memory policy allows:

- layers of one transfer shape and grid form a group (their frequencies chunked by ``taps_chunk``: one call for
  gesvda on CUDA, or at most ``pieces`` calls, or ``chunk`` frequencies per call);
- ``merge="grids"`` (default): groups that take one call are merged with the other one-call groups of the same
  matrix shape, whatever their grid (e.g. a network with one channel count at two resolutions, TT cores of one
  rank at several stages);
- ``merge="pad"``: also one-call groups with the same rows and at most 2x fewer columns, zero-padded to the
  widest. [A, 0] has A's SVs plus zeros and clips to [clip(A), 0], so the padding is cut off again: exact; it
  costs the padded flops and saves calls;
- ``merge="none"``: one call per group chunk.

Layers whose kernel is no larger than their stride (1 x 1 shortcuts) form frequency-free groups: one matrix per
layer (frequency 0, standing m^2 times), the polyphase columns their taps never reach dropped
(:func:`svbench.functional.transfer.frequency_free_matrix`); they merge only among themselves.

Chunked groups (more than one call) are never merged: their calls were bounded for memory on purpose.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from svbench.errors import UserError
from svbench.functional.spectrum import taps_chunk
from svbench.functional.transfer import (
    Grid,
    Stride,
    compact_polyphase_kernel,
    frequency_free_columns,
    frequency_free_matrix,
    grid_area,
    grid_div,
    stride_area,
    transfer_matrices_at,
    unique_frequencies,
)

MERGES = ("grids", "pad", "none")


@dataclass
class Group:
    """Layers (positions ``idxs`` in the caller's list) with one transfer shape (c_out, q = c_in s^2), grid m and
    group count g; the solver sees their matrices cut into g blocks of p = c_out / g rows."""

    idxs: list[int]
    taps: list[Tensor]  # compact polyphase taps per layer
    m: Grid  # m x m, or (m1, m2) on a rectangular grid
    g: int
    p: int
    q: int
    freqs: Tensor  # flat rfft indices of one frequency per conjugate pair
    mult: Tensor  # how often each stands in the full spectrum
    # frequency-free layers (kernel no larger than the stride, :func:`frequency_free_matrix`): the polyphase columns
    # the taps reach (``taps`` hold only those; q counts them) and the full column count c_in s^2; the group has
    # the one frequency 0, standing m^2 times. None / q for the others.
    cols: Tensor | None = None
    q_full: int = 0

    def __post_init__(self) -> None:
        self.q_full = self.q_full or self.q

    def full_taps(self, j: int) -> Tensor:
        """Layer j's compact polyphase taps with every column (the dropped ones zero)."""
        t = self.taps[j]
        if self.cols is None:
            return t
        full = t.new_zeros(t.shape[0], self.q_full, *t.shape[2:])
        full[:, self.cols] = t
        return full


@dataclass
class Part:
    """Frequencies ``freqs[a:b]`` of every layer of ``group``, inside one call."""

    group: Group
    a: int
    b: int

    def matrices(self) -> Tensor:
        """(layers * (b - a) * g, p, q): layer-major, then frequency, then block."""
        gr = self.group
        sel = gr.freqs[self.a : self.b]
        return torch.cat([transfer_matrices_at(t, gr.m, sel) for t in gr.taps]).reshape(-1, gr.p, gr.q)


def plan_calls(
    layers: list[tuple[Tensor, Grid, Stride, int]],
    route_of: Callable[[int, int, torch.device], tuple[str, str | None]], *, chunk: int | None = None,
    pieces: int | None = None, merge: str = "grids",
) -> tuple[list[Group], list[list[Part]]]:
    """(kernel, n, stride, groups) per layer -> the groups and the solver calls (lists of parts) that cover them.

    ``route_of(p, q, device)`` gives the (route, driver) the caller will use on p x q matrices: it sets the chunk
    policy, and only groups with the same route are merged.
    """
    if merge not in MERGES:
        raise UserError(f"merge must be one of {', '.join(MERGES)}; got {merge!r}")
    keyed: dict[tuple, list[int]] = defaultdict(list)
    free: dict[int, Tensor] = {}
    for i, (w, n, s, g) in enumerate(layers):
        cols = frequency_free_columns(w, s)
        if cols is not None:
            free[i] = cols
        q = w.shape[1] * stride_area(s) if cols is None else cols.numel()
        # frequency-free layers group by what sets their columns too (c_in, kernel size, stride)
        how = None if cols is None else (w.shape[1], *w.shape[-2:], s)
        keyed[(w.shape[0], q, grid_div(n, s), g, w.dtype, w.device, how)].append(i)
    groups: list[Group] = []
    calls: list[list[Part]] = []
    mergeable: dict[tuple, list[Group]] = defaultdict(list)
    for (c_out, q, m, g, dtype, device, how), idxs in keyed.items():
        is_free = how is not None
        freqs, mult = unique_frequencies(m, device)
        if is_free:  # one matrix for every frequency: frequency 0, standing m^2 times; unreached columns dropped
            cols = free[idxs[0]]
            freqs, mult = freqs[:1], torch.full_like(mult[:1], grid_area(m))
            taps = [frequency_free_matrix(*layers[i][:3])[:, :, None, None] for i in idxs]
            group = Group(idxs, taps, m, g, c_out // g, q, freqs, mult, cols, layers[idxs[0]][0].shape[1] *
                          stride_area(layers[idxs[0]][2]))
        else:
            taps = [compact_polyphase_kernel(*layers[i][:3]) for i in idxs]
            group = Group(idxs, taps, m, g, c_out // g, q, freqs, mult)
        groups.append(group)
        f = freqs.numel()
        route, drv = route_of(group.p, q, device)
        step = taps_chunk(taps[0], f, chunk, layers=len(idxs), route=route, driver=drv, pieces=pieces)
        if merge != "none" and step >= f:  # frequency-free groups merge among themselves (their own call)
            mergeable[(group.p, None if merge == "pad" else q, dtype, device, route, drv, is_free)].append(group)
        else:
            calls.extend([Part(group, a, min(a + step, f))] for a in range(0, f, step))
    for members in mergeable.values():
        rest = sorted(members, key=lambda gr: -gr.q)
        while rest:  # widest first; a call takes every group at least half as wide
            widest = rest[0].q
            calls.append([Part(gr, 0, gr.freqs.numel()) for gr in rest if 2 * gr.q >= widest])
            rest = [gr for gr in rest if 2 * gr.q < widest]
    return groups, calls


def call_matrices(call: list[Part]) -> Tensor:
    """Every matrix of a call in one batch, narrower ones zero-padded on the right to the widest."""
    width = max(part.group.q for part in call)
    mats = [part.matrices() for part in call]
    mats = [torch.nn.functional.pad(a, (0, width - a.shape[-1])) if a.shape[-1] < width else a for a in mats]
    return torch.cat(mats) if len(mats) > 1 else mats[0]


def call_cost(call: list[Part]) -> float:
    """A call's work in units of p q min(p, q) per matrix (the SVD flop count up to a constant), padding included:
    what :func:`svbench.functional.lanes.run_lanes` balances its lanes by."""
    width = max(part.group.q for part in call)
    return float(sum(len(part.group.idxs) * (part.b - part.a) * part.group.g * part.group.p * width
                     * min(part.group.p, width) for part in call))


def split_for_lanes(calls: list[list[Part]], lanes: int) -> list[list[Part]]:
    """The calls, with the costliest halved (by frequencies) while it costs more than the mean load of ``lanes``
    concurrent lanes (at most ``lanes`` halvings), so that one big call does not hold the others' lanes waiting.

    Experimental (option ``split`` on sedghi and tt, default off): a gesvda call costs about the same whatever its
    batch, so halving adds a call's fixed cost and pays only where the halves overlap on the GPU -- measured well
    for 160 x 160 matrices (16 calls: 232.5 ms in order, 72.1 ms on 4 lanes, H200) and poorly for 640 x 640 (34
    one-matrix calls: 257 -> 231 ms on 8 lanes). Same values either way.
    """
    if lanes <= 1 or len(calls) == 0:
        return calls
    calls = list(calls)
    for _ in range(lanes):
        costs = [call_cost(c) for c in calls]
        i = max(range(len(calls)), key=costs.__getitem__)
        if costs[i] <= sum(costs) / lanes or sum(p.b - p.a for p in calls[i]) < 2:
            break
        calls[i : i + 1] = list(_halve(calls[i]))
    return calls


def _halve(call: list[Part]) -> tuple[list[Part], list[Part]]:
    """A call cut into two by its frequencies (a part straddling the middle is cut too); both halves non-empty."""
    half = sum(p.b - p.a for p in call) // 2
    first: list[Part] = []
    second: list[Part] = []
    seen = 0
    for p in call:
        n = p.b - p.a
        if seen + n <= half:
            first.append(p)
        elif seen >= half:
            second.append(p)
        else:
            cut = p.a + (half - seen)
            first.append(Part(p.group, p.a, cut))
            second.append(Part(p.group, cut, p.b))
        seen += n
    return first, second


def split_call(call: list[Part], out: Tensor) -> list[Tensor]:
    """A per-matrix result of :func:`call_matrices`' batch cut back into the parts, in call order."""
    sizes = [len(part.group.idxs) * (part.b - part.a) * part.group.g for part in call]
    return list(torch.split(out, sizes))
