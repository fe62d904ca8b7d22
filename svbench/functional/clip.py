"""Sedghi clipping: project a conv's circular spectrum onto {sigma <= tau}, then crop to k x k.

Sedghi, Gupta & Long, ICLR 2019 (arXiv:1805.10408), section 4. Steps: transfer matrices -> SVD -> clamp (or
assign) -> rebuild -> inverse FFT -> undo the polyphase -> crop to the original k x k support.

svbench never builds the n x n kernel: with C(w) = A(w) - clip(A(w)) the clipped-and-cropped kernel is
W - crop(IDFT(C)), and only the k x k taps of that inverse DFT are needed. They are a direct sum over one
frequency per conjugate pair (C(-w) = conj C(w), so each pair contributes 2 Re(C(w) e^{i w x})), computed in
chunks of frequencies (``clip_kernel``); ``clip_kernels`` clips many layers with the matrices of one shape in as
few solver calls as possible (``functional.batching``). ``clip_kernel_naive`` is the textbook full-fft2 + SVD +
ifft2 route, kept as the speed reference.

Steps 1-3 are the exact Frobenius projection among kernels with n x n support. The crop (step 4) is a different
projection and breaks the bound: after one pass sigma_max of the implemented k x k layer is typically 1.2-1.5 x
tau (methods.md section 3). This module therefore always measures and returns the TRUE sigma_max of the cropped
layer; tau is the target, never the achieved norm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from svbench.errors import UserError
from svbench.functional.batching import call_cost, call_matrices, plan_calls, split_call, split_for_lanes
from svbench.functional.grouped import dilate_kernel, layer_sigma_max
from svbench.functional.lanes import resolve_streams, run_lanes
from svbench.functional.spectrum import checked_svdvals
from svbench.functional.transfer import (
    Grid,
    Stride,
    as_grid,
    fits_grid,
    frequency_basis,
    from_transfer_matrices,
    grid_area,
    grid_div,
    grid_hw,
    stride_hw,
    transfer_matrices,
    unpolyphase_kernel,
)

ClipMode = Literal["clip", "assign"]


@dataclass(frozen=True)
class ClipResult:
    """Outcome of one clipping pass on one layer."""

    weight: Tensor
    target: float
    sigma_max_before: float | None  # None: not measured (``measure=False`` on zero padding)
    sigma_max_after: float | None  # true sigma_max of the cropped k x k layer (``sigma_source``); None: not measured
    sigma_source: str  # "circular_exact@n" or "circular_bound@n'" (zero padding)

    @property
    def overshoot(self) -> float | None:
        return None if self.sigma_max_after is None else self.sigma_max_after / self.target


def clip_spectrum(spec: Tensor, target: float, mode: ClipMode = "clip", *, route: str = "svd",
                  driver: str | None = None) -> Tensor:
    """Clamp the SVs of a batch of matrices at ``target`` (``assign``: set all SVs to target): A - C with C from
    :func:`clip_correction` (``assign``: U diag(target) V^H)."""
    if mode == "assign":
        u, s, vh = _svd(spec, driver if spec.is_cuda else None)
        return (u * torch.full_like(s, target).unsqueeze(-2).to(u.dtype)) @ vh
    return spec - clip_correction(spec, target, mode, route=route, driver=driver)


def clip_correction(spec: Tensor, target: float, mode: ClipMode = "clip", *, route: str = "svd",
                    driver: str | None = None, with_sigma: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """C = A - clip(A) for a batch of matrices A: what a clipping pass removes (``assign``: A - U diag(tau) V^H).

    ``route="svd"``: C = U_k diag(sigma_k - tau) V_k^H over the k singular triplets above tau. ``route="gram"`` (clip
    mode only): with the eigenvectors V of A^H A, C = A V_k diag(1 - tau / sigma_k) V_k^H, which needs no U
    (methods.md, issue 6); the Gram squares the condition number, but C only involves the SVs above tau, whose
    relative error is small. In clip mode only the k directions above tau enter the products (k = the largest count
    in the batch; one host sync): p q k flops instead of p q^2, exact since the other terms are zero. Computing C
    directly (instead of A - clip(A)) also avoids the cancellation of subtracting two nearly equal matrices.
    ``driver`` (CUDA, svd route): the cuSOLVER driver; ``gesvda`` results are checked against the Frobenius
    identity and the matrices that fail it redone with ``gesvd``, as for the SVs alone. ``with_sigma``: also return
    each matrix's sigma_max from the same decomposition, (C, sigma_max).
    """
    c, sigma_max = _clip_correction(spec, target, mode, route, driver)
    return (c, sigma_max) if with_sigma else c


def _clip_correction(spec: Tensor, target: float, mode: ClipMode, route: str, driver: str | None
                     ) -> tuple[Tensor, Tensor]:
    if route not in ("svd", "gram"):
        raise UserError(f"unknown clip route {route!r}; use 'svd' or 'gram'")
    if route == "svd" or mode == "assign":
        u, s, vh = _svd(spec, driver if spec.is_cuda else None)
        top = s[..., 0] if s.shape[-1] else s.new_zeros(s.shape[:-1])
        if mode == "assign":
            return (u * (s - target).unsqueeze(-2).to(u.dtype)) @ vh, top
        k = _count_above(s, target)
        excess = (s[..., :k] - target).clamp_min(0).unsqueeze(-2).to(u.dtype)  # SVs in descending order
        return (u[..., :k] * excess) @ vh[..., :k, :], top
    p, q = spec.shape[-2:]
    wide = q > p  # the smaller Gram side: A A^H = U diag(sigma^2) U^H for a wide A
    ev, vec = torch.linalg.eigh(spec @ spec.mH if wide else spec.mH @ spec)  # ascending
    sigma = ev.clamp_min(1e-30).sqrt()
    k = _count_above(sigma, target)
    vec = vec[..., vec.shape[-1] - k :]
    shrink = (1 - target / sigma[..., sigma.shape[-1] - k :]).clamp_min(0).unsqueeze(-2).to(spec.dtype)
    top = sigma[..., -1] if sigma.shape[-1] else sigma.new_zeros(sigma.shape[:-1])
    if wide:
        return (vec * shrink) @ (vec.mH @ spec), top
    return ((spec @ vec) * shrink) @ vec.mH, top


def _count_above(sigma: Tensor, target: float) -> int:
    """The largest number of SVs above ``target`` in any matrix of the batch (0 for an empty batch)."""
    if sigma.numel() == 0:
        return 0
    return int((sigma > target).sum(-1).max())


CLIP_ROUTES = ("auto", "svd", "gram")


def resolve_clip_route(route: str, driver: str | None, device: torch.device | str) -> tuple[str, str | None]:
    """The concrete (route, cuSOLVER driver) of a clip route. ``auto``: on CUDA the SVD through ``gesvda`` (H200,
    WRN-16-10, reports/gpu/nvidia-h200: 536 ms against 4,077 ms for the Gram-eig route, whose batched ``eigh``
    loops over the matrices; 3.0e-7 against a float64 pass), elsewhere the Gram-eig route (faster on this project's
    CPU at equal accuracy, reports/cpu-performance.md)."""
    if route not in CLIP_ROUTES:
        raise UserError(f"unknown clip route {route!r}; use one of {', '.join(CLIP_ROUTES)}")
    if route != "auto":
        return route, driver
    if torch.device(device).type == "cuda":
        return "svd", driver or "gesvda"
    return "gram", driver


def _svd(a: Tensor, driver: str | None) -> tuple[Tensor, Tensor, Tensor]:
    """Thin SVD; gesvda through the same check and gesvd fallback as the SVs alone (``checked_svdvals``)."""
    if driver != "gesvda":
        return torch.linalg.svd(a, full_matrices=False, driver=driver)
    return checked_svdvals(a, lambda x: torch.linalg.svd(x, full_matrices=False, driver="gesvda"),
                           lambda x: torch.linalg.svd(x, full_matrices=False, driver="gesvd"))


def sedghi_clip(
    weight: Tensor,
    n: Grid,
    target: float,
    stride: Stride = 1,
    *,
    mode: ClipMode = "clip",
    padding: str = "circular",
    route: str = "auto",
    groups: int = 1,
    dilation: Stride = 1,
    driver: str | None = None,
    pieces: int | None = None,
    measure: bool = True,
) -> ClipResult:
    """One Sedghi clipping pass of a (c_out, c_in, k, k) kernel for an n x n input; returns the cropped kernel.

    ``sigma_max_before`` is, for circular padding, read off the pass's own decomposition (exact: every unique
    frequency is decomposed; no second SV computation). The returned ``sigma_max_after`` is measured on the cropped
    kernel: exact circular sigma_max at n for circular padding; for zero padding the guaranteed bound (circular
    sigma_max on n' = s ceil((n+k-1)/s)), as is sigma_max_before there. Grouped and dilated convs: see
    :func:`clip_kernel`; their sigma_max through the dense equivalent kernel. ``measure=False`` skips the SV
    computations the pass itself does not need (sigma_max after, and before on zero padding): None in the result.
    """
    _check_clip_args(dilate_kernel(weight, dilation), n, target)
    n = as_grid(n)
    with torch.no_grad():
        seen: list[float] = []  # circular: sigma_max before, from the pass's own decomposition (exact, same grid)
        cropped = clip_kernels([(weight, n, stride, groups, dilation)], target, mode=mode, route=route, driver=driver,
                               pieces=pieces, sigma_before=seen if padding == "circular" else None)[0]
        if seen or not measure:
            before = seen[0] if seen else None
        else:
            before = layer_sigma_max(weight, n, stride, padding, groups, dilation)
        after = layer_sigma_max(cropped, n, stride, padding, groups, dilation) if measure else None
    source = "circular_exact@n" if padding == "circular" else "circular_bound@n'"
    return ClipResult(cropped, float(target), before, after, source)


def _check_clip_args(weight: Tensor, n: int, target: float) -> None:
    if not target > 0:
        raise UserError(f"clip target must be > 0, got {target}")
    if not fits_grid(weight.shape[-2:], n):
        kh, kw = weight.shape[-2:]
        h, w = grid_hw(n)
        raise UserError(f"cannot clip a {kh}x{kw} kernel for a {h}x{w} input: the kernel is larger than the input")


def clip_kernel(
    weight: Tensor, n: Grid, target: float, stride: Stride = 1, *, mode: ClipMode = "clip", route: str = "auto",
    chunk: int | None = None, groups: int = 1, dilation: Stride = 1, driver: str | None = None,
    pieces: int | None = None,
) -> Tensor:
    """The clipped-and-cropped (c_out, c_in, k, k) kernel of one Sedghi pass (see the module docstring).

    Equal (up to rounding) to cropping ``from_transfer_matrices(clip_spectrum(transfer_matrices(W)))``, but only
    one frequency per conjugate pair is decomposed, ``chunk`` at a time (default: :func:`frequency_chunk`).
    A grouped conv's weight (c_out, c_in / g, k, k) is clipped block by block (its transfer matrices are the blocks
    stacked); a dilated kernel is clipped as its zero-filled (d (k - 1) + 1)-tap kernel and cropped back to the
    dilation lattice.
    """
    return clip_kernels([(weight, n, stride, groups, dilation)], target, mode=mode, route=route, chunk=chunk,
                        driver=driver, pieces=pieces)[0]


def clip_kernels(
    layers: list[tuple[Tensor, Grid, Stride, int, Stride]], target: float, *, mode: ClipMode = "clip",
    route: str = "auto", chunk: int | None = None, driver: str | None = None, pieces: int | None = None,
    merge: str = "grids", streams: int | None = 1, split: bool = False, sigma_before: list[float] | None = None,
) -> list[Tensor]:
    """:func:`clip_kernel` of many layers, (weight, n, stride, groups, dilation) each, with the matrices of layers of
    one transfer shape clipped in as few solver calls as ``merge`` allows (:mod:`svbench.functional.batching`: on
    CUDA, one gesvda call per matrix shape instead of one per layer). Same kernels as one call per layer.
    ``streams`` > 1 runs the calls on that many concurrent lanes (:mod:`svbench.functional.lanes`; None: the
    device's default); ``split`` as in :func:`svbench.functional.network.batched_conv_singular_values`.
    ``sigma_before``: a list that receives each layer's exact circular sigma_max on its grid BEFORE the pass, read
    off the decomposition the pass makes anyway (every unique frequency of every group block is decomposed)."""
    if not layers:
        return []
    layers = [(w, as_grid(n), s, g, d) for w, n, s, g, d in layers]
    streams = resolve_streams(streams, layers[0][0].device)
    dilated = [dilate_kernel(w, d) for w, _, _, _, d in layers]
    for w, (_, n, _, _, _) in zip(dilated, layers):
        _check_clip_args(w, n, target)
    route, driver = resolve_clip_route(route, driver, layers[0][0].device)
    solver = "svdvals" if route == "svd" else route  # the chunk policy of the solver the route calls
    groups, calls = plan_calls([(w, n, s, g) for w, (_, n, s, g, _) in zip(dilated, layers)],
                               lambda p, q, device: (solver, driver), chunk=chunk, pieces=pieces, merge=merge)
    if split:
        calls = split_for_lanes(calls, streams)
    taps_of = {i: gr.full_taps(j) for gr in groups for j, i in enumerate(gr.idxs)}
    delta = {i: t.new_zeros(t.shape[2] * t.shape[3], t.shape[0] * t.shape[1]) for i, t in taps_of.items()}
    peak: dict[int, Tensor] = {}

    def correct(call: list) -> list[tuple[int, Tensor, Tensor]]:
        """One solver call: the kernel-space correction each of its layers' frequencies contributes, and the largest
        SV among them."""
        spec = call_matrices(call)
        corr, top = clip_correction(spec, target, mode, route=route, driver=driver, with_sigma=True)
        out = []
        for part, mine, tops in zip(call, split_call(call, corr), split_call(call, top)):
            gr = part.group
            layer_top = tops.reshape(len(gr.idxs), -1).amax(1)  # per layer: the largest SV of its frequencies
            sel = gr.freqs[part.a : part.b]
            w = gr.mult[part.a : part.b].to(gr.taps[0].dtype).unsqueeze(1)
            per_layer = mine[..., : gr.q].reshape(len(gr.idxs), sel.numel(), gr.p * gr.g * gr.q)
            basis = {}  # by tap count: layers of one transfer shape can have k = 1 and k = 3
            for j, i in enumerate(gr.idxs):
                t = tuple(gr.taps[j].shape[-2:])
                if t not in basis:
                    basis[t] = tuple(w * b for b in frequency_basis(gr.m, t, sel, w.dtype))
                cos, sin = basis[t]
                # sum over the pair (w, -w) of C e^{+i w x}: 2 Re(C e^{i w x}) = 2 (Re C cos - Im C sin)
                d = cos.T @ per_layer[j].real - sin.T @ per_layer[j].imag
                if gr.cols is not None:  # frequency-free: the dropped (zero) columns get no correction
                    full = d.new_zeros(d.shape[0], gr.p * gr.g, gr.q_full)
                    full[:, :, gr.cols] = d.reshape(d.shape[0], gr.p * gr.g, gr.q)
                    d = full.reshape(d.shape[0], -1)
                out.append((i, d, layer_top[j]))
        return out

    with torch.no_grad():  # each call's matrices are freed when it returns; only kernel-sized corrections remain
        for contributions in run_lanes(calls, correct, streams=streams, costs=[call_cost(c) for c in calls],
                                       device=layers[0][0].device):
            for i, d, top in contributions:
                delta[i] += d
                peak[i] = torch.maximum(peak[i], top) if i in peak else top
    if sigma_before is not None:
        sigma_before.extend(float(peak[i]) if i in peak else 0.0 for i in range(len(layers)))
    out = []
    for i, ((_, n, stride, _, dilation), dil) in enumerate(zip(layers, dilated)):
        taps = taps_of[i]
        p, q, t1, t2 = taps.shape
        d = delta[i].reshape(t1, t2, p, q).permute(2, 3, 0, 1) / grid_area(grid_div(n, stride))
        full = unpolyphase_kernel(taps - d, dil.shape[1], stride)
        d1, d2 = stride_hw(dilation)
        out.append(full[:, :, : dil.shape[2] : d1, : dil.shape[3] : d2].contiguous())
    return out


def clip_kernel_naive(weight: Tensor, n: Grid, target: float, stride: Stride = 1, *, mode: ClipMode = "clip") -> Tensor:
    """Textbook Sedghi pass: full ``fft2`` of the n x n kernel, SVD of all m^2 matrices, ``ifft2``, crop."""
    _check_clip_args(weight, n, target)
    n = as_grid(n)
    c_out, c_in, kh, kw = weight.shape
    with torch.no_grad():
        spec = transfer_matrices(weight, n, stride, real_fft=False)
        spec = clip_spectrum(spec, target, mode, route="svd")
        full = from_transfer_matrices(spec, c_in, stride, n, real_fft=False)
    return full[:, :, :kh, :kw].contiguous().to(weight.dtype)
