"""Exact singular values of circular convolutions from their transfer matrices.

Sedghi, Gupta & Long, ICLR 2019 (arXiv:1805.10408). All results here are EXACT (up to floating-point rounding)
for circular padding. Backends (a recorded axis of every result):

- ``auto``      (default) the fastest route that meets the accuracy class (max abs error <= 2e-6 sigma_max over
                all SVs against float64), picked per matrix shape: ``norm`` (the 2-norm, exact) for 1 x q and
                p x 1 matrices (depthwise blocks, 1-channel convs); on CPU ``eigh64`` for matrices at least
                2.5x wider than tall (or taller than wide) -- stride 2 with c_in = c_out is exactly 4x -- or with a
                short side >= 160, where the float32 LAPACK SVD nears the class limit, else ``svdvals``; both
                crossovers were measured on this project's CPU machine (reports/cpu-performance.md). On CUDA
                ``svdvals`` with cuSOLVER's ``gesvda`` (batched, one call per layer), measured on an H200 as the
                only fast backend in the class (5.5e-8; reports/gpu/nvidia-h200), each result checked against the
                Frobenius identity sum sigma_i^2 = ||A||_F^2 and recomputed with ``gesvd`` where it fails, and a
                matrix gesvda reports as not converged (torch raises for the whole batch) redone alone with
                ``gesvd`` (``first_isolating_failures``).
- ``svdvals``   batched SVD of the complex transfer matrices in the kernel's precision (LAPACK on CPU, cuSOLVER on
                CUDA; ``driver`` picks gesvd / gesvdj / gesvda on CUDA). Accurate for every SV on CPU and with
                gesvda on CUDA; torch's default CUDA driver behaved exactly like gesvdj on an H200 (same times and
                values) and missed the accuracy class: 1.7e-5 to 1.9e-4 sigma_max (reports/gpu/nvidia-h200).
- ``eigh``      ``eigvalsh`` of the smaller Gram side (A A^H or A^H A), clamped at 0, square root. Faster, but the
                Gram squares the condition number: the error of sigma_i is about (u/2) (sigma_1/sigma_i)^2
                relative, so small SVs lose accuracy in float32 (use it for sigma_max or coarse histograms).
- ``eigh64``    the Gram route in float64 (absolute error about sqrt(u64) sigma_1 ~ 1e-8 sigma_1 on every SV).
- ``svdvals64`` SVD in float64 (used for oracle-grade checks).

Memory: with the real-FFT symmetry the transfer matrices of one representative per conjugate pair are built by a
direct DFT of the kernel taps (``transfer_matrices_at``) in chunks of frequencies, each decomposed and dropped
before the next, so the peak stays a fraction of the rfft transfer matrices' size (default: up to 4 chunks, none
smaller than 1 MiB on a GPU or 16 MiB on a CPU, where one call was measured faster and RAM is plentiful).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

from svbench.errors import UserError
from svbench.functional.lanes import run_lanes
from svbench.functional.transfer import (
    Grid,
    Stride,
    as_grid,
    as_stride,
    frequency_free_matrix,
    grid_area,
    grid_div,
    grid_hw,
    rfft_multiplicity,
    stride_area,
    stride_hw,
    transfer_matrices,
    transfer_matrices_at,
    unique_frequency_taps,
)

Backend = Literal["auto", "svdvals", "eigh", "eigh64", "svdvals64"]
BACKENDS: tuple[str, ...] = ("auto", "svdvals", "eigh", "eigh64", "svdvals64")
CUDA_DRIVERS: tuple[str, ...] = ("gesvd", "gesvdj", "gesvda")
# ``auto`` on CPU: eigh64 when max(p, q) >= AUTO_EIGH64_ASPECT * min(p, q), and when min(p, q) >=
# AUTO_EIGH64_MIN_SIDE, both for accuracy: the float32 LAPACK SVD's error grows with the side and has a tail. Max
# |error| / sigma_max on conv transfer matrices of seeded Gaussian kernels, this project's CPU (session 9, 10 seeds
# per square shape): <= 1.10e-6 up to side 144, but up to 1.66e-6 at 160, 1.91e-6 at 176, 1.68e-6 at 192 and
# 1.93e-6 at 240 -- at the 2e-6 accuracy class -- and 2.2-2.8e-6 at 512 (session 6); wide matrices are worse:
# 1.9-2.1e-6 for every 4x-wide stride-2 shape from 64 x 256 to 192 x 768 (WRN-16-10's rank-192 tt cores at
# stride 2: 2.0-2.1e-6), 1.45-1.65e-6 at 2.7-3.3x, 1.1-1.3e-6 at 2x (3 seeds each); session 10, 10 seeds per
# shape, short sides 48-144: 1.54-1.74e-6 at 2.5-2.9x, 1.10-1.35e-6 at 2x. eigh64 (float64 Gram + eigvalsh) stays
# at 4-5e-8; its time against svdvals (paired, 1 thread): 1.4-1.5x on square sides 160-192, 0.79-0.95x from 2.5x
# on (svdvals / eigh64 time 1.06-1.27, wide and tall), 0.78-1.14 at 2x (slower below a short side of 96), (1.5-2x
# faster than svdvals64). So eigh64 from 2.5:1, where it is both faster and ~30x closer to float64.
# reports/cpu-performance.md.
AUTO_EIGH64_ASPECT = 2.5
AUTO_EIGH64_MIN_SIDE = 160
DEFAULT_CHUNKS = 4  # at most this many chunks by default ...
# ... and none smaller than this many bytes of transfer matrices. GPU: 1 MiB (memory is the scarce resource; the
# issue-6 target is a peak <= 1.5x the transfer size). CPU: 16 MiB -- on this project's CPU four chunks of a
# c = 64, n = 16 layer (4.2 MB) were measured 4-7 % slower than one call (paired timing), and RAM is plentiful.
CHUNK_MIN_BYTES = {"cuda": 2**20, "cpu": 16 * 2**20}
# cuSOLVER's batched gesvda costs about the same per CALL whatever the batch. H200, torch 2.11, same run
# (reports/gpu/nvidia-h200/run2): one call against four, c = 160, n = 32: 28.4 vs 50.2 ms; c = 640, n = 8: 58.2 vs
# 184 ms; all convs of WRN-16-10: 371 vs 732 ms. Its workspace puts the peak at 3.9-6.8x the rfft transfer size
# even in four calls (14-27x in one), so one call per layer (or layer group) is the default; ``pieces`` trades back:
# 64 calls peak at 0.49x (c = 160, n = 32) and 0.53x (c = 640, n = 8) -- inside the 1.5x -- at 781 and
# 257 ms against 28 and 59 ms in one call (run3).
GESVDA_PIECES = 1
# relative tolerance of the Frobenius check of gesvda results (float32 rounding of both sides is ~1e-6)
_FROBENIUS_RTOL = 1e-4


def frequency_chunk(
    num_freqs: int, bytes_per_freq: int, chunk: int | None = None, device: torch.device | str = "cpu",
    *, wide_working_set: bool = False, pieces: int | None = None,
) -> int:
    """Frequencies per chunk: ``chunk`` if given (>= 1), else the frequencies split into ``pieces`` calls (default
    ``DEFAULT_CHUNKS``), but at least ``CHUNK_MIN_BYTES[device type]`` worth (CUDA's value for other accelerators).

    ``wide_working_set``: the route makes 64-bit copies (``eigh64``, ``svdvals64``), 2-4 x the chunk; it is chunked
    like on a GPU everywhere. Measured on this project's CPU (stride 2, c = 64, n = 16, ``eigh64``): four chunks
    cost the same time as one (+-1 %, paired) and peak at 2.0 instead of 5.2 x the rfft transfer size.
    """
    if chunk is not None:
        if chunk < 1:
            raise UserError(f"chunk must be >= 1, got {chunk}")
        return chunk
    if pieces is not None and pieces < 1:
        raise UserError(f"chunks must be >= 1, got {pieces}")
    kind = "cuda" if wide_working_set else torch.device(device).type
    min_bytes = CHUNK_MIN_BYTES.get(kind, CHUNK_MIN_BYTES["cuda"])
    pieces = min(pieces or DEFAULT_CHUNKS, max(1, -(-num_freqs * bytes_per_freq // min_bytes)))
    return max(1, -(-num_freqs // pieces))


def default_pieces(device: torch.device | str, route: str, driver: str | None) -> int | None:
    """How many calls a layer's frequencies are split into when the caller does not say: ``GESVDA_PIECES`` for
    cuSOLVER's gesvda on CUDA, else None (``frequency_chunk``'s size rule)."""
    if torch.device(device).type == "cuda" and route == "svdvals" and driver == "gesvda":
        return GESVDA_PIECES
    return None


WIDE_ROUTES = ("eigh64", "svdvals64")  # routes that make 64-bit working copies of a chunk


def taps_chunk(taps: Tensor, num_freqs: int, chunk: int | None = None, *, layers: int = 1,
               route: str = "svdvals", driver: str | None = None, pieces: int | None = None) -> int:
    """:func:`frequency_chunk` for the transfer matrices of ``layers`` layers with these (real) compact taps.

    cuSOLVER's batched ``gesvda`` on CUDA gets one call (``GESVDA_PIECES``) unless ``pieces`` says otherwise.
    """
    p, q = taps.shape[:2]
    if pieces is None:
        pieces = default_pieces(taps.device, route, driver)
    return frequency_chunk(num_freqs, 2 * taps.element_size() * p * q * layers, chunk, taps.device,
                           wide_working_set=route in WIDE_ROUTES, pieces=pieces)


def resolve_backend(
    backend: str, p: int, q: int, device: torch.device | str, driver: str | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[str, str | None]:
    """The concrete (backend, cuSOLVER driver) ``backend`` stands for on p x q matrices of ``dtype`` (None: float32)
    on ``device``. On a CPU, 64-bit input takes ``svdvals`` (LAPACK in float64, the oracle's accuracy on every SV):
    the float64 Gram route squares the condition number, ~1e-8 sigma_max on SVs near zero."""
    if backend not in BACKENDS:
        raise UserError(f"unknown SV backend {backend!r}; available: {', '.join(BACKENDS)}")
    if driver is not None and driver not in CUDA_DRIVERS:
        raise UserError(f"unknown cuSOLVER driver {driver!r}; available: {', '.join(CUDA_DRIVERS)}")
    if backend != "auto":
        return backend, driver
    if min(p, q) == 1:  # rows or columns (depthwise blocks, 1-channel convs): the SV is the 2-norm, no solver
        return "norm", None
    if torch.device(device).type == "cuda":
        return "svdvals", driver or "gesvda"
    if dtype in (torch.float64, torch.complex128):
        return "svdvals", None
    short, long = min(p, q), max(p, q)
    if long >= AUTO_EIGH64_ASPECT * short or short >= AUTO_EIGH64_MIN_SIDE:
        return "eigh64", None
    return "svdvals", driver


def describe_backend(backend: str, p: int, q: int, device: torch.device | str, driver: str | None = None,
                     dtype: torch.dtype | None = None) -> str:
    """Label for results: the resolved route, with ``(auto)`` when it was chosen automatically."""
    b, d = resolve_backend(backend, p, q, device, driver, dtype)
    label = b + (f"/{d}" if d is not None and torch.device(device).type == "cuda" else "")
    return label + (" (auto)" if backend == "auto" else "")


def _complex64_to_128(a: Tensor) -> Tensor:
    return a.to(torch.complex128) if a.is_complex() else a.to(torch.float64)


def matrix_singular_values(
    mats: Tensor, backend: str = "auto", *, driver: str | None = None, chunk: int | None = None
) -> Tensor:
    """Singular values (descending, last dim) of a batch of matrices (..., p, q) by the chosen backend.

    ``chunk`` bounds how many matrices are processed at once (memory); results are identical.
    """
    backend, driver = resolve_backend(backend, mats.shape[-2], mats.shape[-1], mats.device, driver, mats.dtype)
    batch_shape = mats.shape[:-2]
    flat = mats.reshape(-1, *mats.shape[-2:])
    if chunk is None or chunk >= flat.shape[0]:
        out = _svals(flat, backend, driver)
    else:
        out = torch.cat([_svals(flat[i : i + chunk], backend, driver) for i in range(0, flat.shape[0], chunk)])
    return out.reshape(*batch_shape, out.shape[-1])


def _svals(a: Tensor, backend: str, driver: str | None) -> Tensor:
    real_dtype = a.real.dtype if a.is_complex() else a.dtype
    if backend == "norm":  # ``auto`` on 1 x q or p x 1 matrices: the only SV is the vector's 2-norm (exact)
        return torch.linalg.vector_norm(a, dim=(-2, -1)).unsqueeze(-1).to(real_dtype)
    if backend in ("eigh", "eigh64"):
        if backend == "eigh64":
            a = _complex64_to_128(a)
        p, q = a.shape[-2:]
        ah = a.mH
        gram = a @ ah if p <= q else ah @ a
        ev = torch.linalg.eigvalsh(gram)
        return ev.clamp_min(0).sqrt().flip(-1).to(real_dtype)
    if backend == "svdvals64":
        a = _complex64_to_128(a)
    if driver is None or not a.is_cuda:
        return torch.linalg.svdvals(a).to(real_dtype)
    if driver == "gesvda":  # approximate driver: every result is checked, failures are redone with the QR driver
        s = checked_svdvals(a, lambda x: torch.linalg.svdvals(x, driver="gesvda"),
                            lambda x: torch.linalg.svdvals(x, driver="gesvd"))
    else:
        s = torch.linalg.svdvals(a, driver=driver)
    return s.to(real_dtype)


def checked_svdvals(a: Tensor, first: Callable[[Tensor], Any], fallback: Callable[[Tensor], Any]) -> Any:
    """``first(a)``, with the matrices that fail the Frobenius identity recomputed by ``fallback`` (one host sync),
    and those ``first`` reports as not converged (a ``LinAlgError`` for the whole batch, as cuSOLVER's gesvda gives
    through torch) isolated and given to ``fallback`` (:func:`first_isolating_failures`).

    The solvers return the SVs, or (U, S, Vh) as ``torch.linalg.svd`` does (the SVD clip route): the check reads S
    and every part of a failed matrix is replaced."""
    out = first_isolating_failures(a, first, fallback)
    parts = out if isinstance(out, tuple) else (out,)
    bad = frobenius_mismatch(a, parts[1] if len(parts) == 3 else parts[0])
    if bool(bad.any()):
        redo = fallback(a[bad])
        for part, fixed in zip(parts, redo if isinstance(redo, tuple) else (redo,)):
            part[bad] = fixed.to(part.dtype)
    return out


_FAILED_ELEMENT = re.compile(r"[Bb]atch element (\d+)")


def first_isolating_failures(a: Tensor, first: Callable[[Tensor], Any], fallback: Callable[[Tensor], Any]) -> Any:
    """``first(a)`` for a batch (B, p, q); where it raises ``torch.linalg.LinAlgError`` the failed matrix goes to
    ``fallback`` and the rest is retried, so one bad matrix costs two more calls, not a fallback of the whole batch.

    torch raises for the whole batch when cuSOLVER's gesvda reports a matrix as not converged (seen on an H200 with
    ResNet-18's layers: "linalg.svd: (Batch element 130): The algorithm failed to converge ...", error codes 100
    and 400) and names the FIRST failed element, so the ones before it converged and are recomputed as one call.
    A message without an element index halves the batch instead. Results are in the order of ``a``; (U, S, Vh)
    tuples are concatenated part by part.
    """
    pieces: list[Any] = []
    rest = a
    while rest.shape[0]:
        try:
            pieces.append(first(rest))
            break
        except torch.linalg.LinAlgError as exc:
            b = rest.shape[0]
            if b == 1:
                pieces.append(fallback(rest))
                break
            found = _FAILED_ELEMENT.search(str(exc))
            i = int(found.group(1)) if found else -1
            if not 0 <= i < b:  # which one is unknown: solve the first half on its own, go on with the second
                pieces.append(first_isolating_failures(rest[: b // 2], first, fallback))
                rest = rest[b // 2 :]
                continue
            if i:
                pieces.append(first_isolating_failures(rest[:i], first, fallback))
            pieces.append(fallback(rest[i : i + 1]))
            rest = rest[i + 1 :]
    if len(pieces) == 1:
        return pieces[0]
    if isinstance(pieces[0], tuple):
        return tuple(torch.cat([p[j] for p in pieces]) for j in range(len(pieces[0])))
    return torch.cat(pieces)


def frobenius_mismatch(a: Tensor, s: Tensor, rtol: float = _FROBENIUS_RTOL) -> Tensor:
    """Which matrices have SVs that are not finite, negative, or break sum sigma_i^2 = ||A||_F^2 by more than
    ``rtol`` (relative): a cheap check of an SVD that catches gross failures (NaN, garbage, lost values), not a
    bound on the error of each sigma (an error d on sigma_i moves the sum by only about 2 sigma_i d)."""
    fro2 = torch.linalg.matrix_norm(a, ord="fro").double().square()
    ssq = s.double().square().sum(-1)
    close = (ssq - fro2).abs() <= rtol * fro2.clamp_min(torch.finfo(torch.float64).tiny)  # False for NaN
    return ~close | ~torch.isfinite(s).all(-1) | (s < 0).any(-1)


def frequency_singular_values(
    weight: Tensor,
    n: Grid,
    stride: Stride = 1,
    *,
    backend: str = "auto",
    real_fft: bool = True,
    driver: str | None = None,
    chunk: int | None = None,
) -> Tensor:
    """Per-frequency SVs, shape (m, m_f, r) with r = min(c_out, c_in s^2) (m_f = m//2+1 with ``real_fft``)."""
    spec = transfer_matrices(weight, n, stride, real_fft=real_fft)
    return matrix_singular_values(spec, backend, driver=driver, chunk=chunk)


def expand_rfft(per_freq: Tensor, m: Grid) -> Tensor:
    """Full SV multiset (descending 1-D) from rfft per-frequency SVs (m, m//2+1, r) (on an m1 x m2 grid
    (m1, m2//2+1, r)): mirrored columns counted twice."""
    mult = rfft_multiplicity(m, per_freq.device)
    rep = per_freq.repeat_interleave(mult, dim=1)
    return rep.reshape(-1).sort(descending=True).values


def unique_frequency_singular_values(
    weight: Tensor,
    n: Grid,
    stride: Stride = 1,
    *,
    backend: str = "auto",
    driver: str | None = None,
    chunk: int | None = None,
    pieces: int | None = None,
    streams: int = 1,
) -> tuple[Tensor, Tensor]:
    """SVs at one frequency per conjugate pair, (F, r), and how often each stands in the full spectrum, (F,).

    The transfer matrices are built ``chunk`` frequencies at a time (default: :func:`frequency_chunk`) straight
    from the kernel taps and decomposed before the next chunk is built; ``streams`` > 1 decomposes chunks on that
    many concurrent lanes (:mod:`svbench.functional.lanes`: same values, the lanes' working sets add up).
    """
    free = frequency_free_matrix(weight, n, stride)  # validates the geometry
    if free is not None:  # a kernel no larger than its stride: ONE transfer matrix at every frequency, decomposed once
        # (was: every unique frequency; ResNeXt-50's 2048 x 1024 strided shortcut, 17 s on one thread)
        svs = matrix_singular_values(free.unsqueeze(0), backend, driver=driver)
        r = min(weight.shape[0], weight.shape[1] * stride_area(stride))  # the unreached phases' columns: zeros
        svs = torch.nn.functional.pad(svs, (0, r - svs.shape[-1]))
        return svs, torch.full((1,), grid_area(grid_div(n, stride)), dtype=torch.long, device=weight.device)
    taps, m, idx, mult = unique_frequency_taps(weight, n, stride)
    f = idx.numel()
    route, drv = resolve_backend(backend, taps.shape[0], taps.shape[1], taps.device, driver, taps.dtype)
    step = taps_chunk(taps, f, chunk, route=route, driver=drv, pieces=pieces)
    starts = list(range(0, f, step))
    parts = run_lanes(
        starts, lambda i: matrix_singular_values(transfer_matrices_at(taps, m, idx[i : i + step]), backend,
                                                 driver=driver),
        streams=streams, costs=[min(step, f - i) for i in starts], device=taps.device)
    return torch.cat(parts), mult


def expand_multiset(per_freq: Tensor, mult: Tensor) -> Tensor:
    """Full SV multiset (descending 1-D) from per-frequency SVs (F, r) and each frequency's multiplicity (F,)."""
    vals, order = per_freq.reshape(-1).sort(descending=True)
    counts = mult.repeat_interleave(per_freq.shape[-1])[order]
    return vals.repeat_interleave(counts)


def conv_singular_values(
    weight: Tensor,
    n: Grid,
    stride: Stride = 1,
    *,
    backend: str = "auto",
    real_fft: bool = True,
    driver: str | None = None,
    chunk: int | None = None,
    pieces: int | None = None,
    streams: int = 1,
) -> Tensor:
    """All (n/s)^2 * min(c_out, c_in s^2) SVs of the circular conv on n x n, descending (zeros included). Exact.
    ``n`` may be a pair (h, w): the conv on a rectangular grid, (h/s) (w/s) min(c_out, c_in s^2) SVs.

    With ``real_fft`` only one frequency per conjugate pair is decomposed (``unique_frequencies``: about half of
    the m^2 matrices, the floor for this symmetry) and its SVs are counted twice; the matrices are built and
    decomposed in chunks (see the module docstring). ``real_fft=False`` is the naive full-``fft2`` path.
    """
    if not real_fft:
        per = frequency_singular_values(weight, n, stride, backend=backend, real_fft=False, driver=driver,
                                        chunk=chunk)
        return per.reshape(-1).sort(descending=True).values
    per, mult = unique_frequency_singular_values(weight, n, stride, backend=backend, driver=driver, chunk=chunk,
                                                 pieces=pieces, streams=streams)
    return expand_multiset(per, mult)


def conv_sigma_max(
    weight: Tensor, n: Grid, stride: Stride = 1, *, backend: str = "auto", driver: str | None = None
) -> Tensor:
    """sigma_max of the circular conv on n x n (exact; one frequency per conjugate pair is enough).

    64-bit weights keep ``auto``'s float32 routes here (the float64 Gram on wide or large matrices, 1.5-2x faster
    than the float64 SVD): the Gram route loses digits on SVs near zero only; its sigma_max is accurate to ~1e-15
    relative. (For all SVs, ``auto`` gives 64-bit input the float64 SVD.)"""
    if backend == "auto" and weight.dtype == torch.float64:
        route, _ = resolve_backend("auto", weight.shape[0], weight.shape[1] * stride_area(stride), weight.device)
        backend = "eigh64" if route == "eigh64" else backend
    per, _ = unique_frequency_singular_values(weight, n, stride, backend=backend, driver=driver)
    return per[..., 0].max()


def matrix_spectral_norm(weight: Tensor) -> float:
    """sigma_max of a matrix (a linear layer's weight), in float64: the square root of the largest eigenvalue of its
    Gram on the smaller side. The Gram squares the condition number, which costs digits on the SMALL SVs only: the
    largest eigenvalue's relative error is ~ k eps64 (k the longer side), a few 1e-12 at worst for a VGG head
    (float64 SVD and this agree to 3e-16 on a 1000 x 6000 Gaussian matrix). ``torch.linalg.matrix_norm(ord=2)`` runs
    the full SVD: 96 s against 25 s for VGG's 4096 x 25088 classifier, 8.0 s against 0.42 s at 1000 x 6000 (this
    project's CPU, one thread, session 19)."""
    w = weight.detach().double().reshape(weight.shape[0], -1)
    gram = w @ w.mT if w.shape[0] <= w.shape[1] else w.mT @ w
    return float(torch.linalg.eigvalsh(gram)[-1].clamp_min(0).sqrt())


def zero_padding_bound_size(n: Grid, k: int, stride: Stride) -> Grid:
    """Grid n' on which the circular sigma_max bounds a zero-padded layer on n: s * ceil((n + k - 1) / s) (on an
    h x w grid, or with a stride (s1, s2), each side so with its own stride).

    For stride 1 this is n + k - 1: the zero-padded operator is a restriction of the circular one on n'
    (no window wraps), so sigma_1^zero(n) <= sigma_1^circ(n'). The circular value at n itself is NOT a bound
    (methods.md section 1.2; see the Laplacian test).
    """
    if not isinstance(as_grid(n), int) or not isinstance(as_stride(stride), int):
        return as_grid(tuple(zero_padding_bound_size(side, k, s) for side, s in zip(grid_hw(n), stride_hw(stride))))
    span = as_grid(n) + k - 1
    return stride * -(-span // stride)


def zero_padding_sigma_max_bound(
    weight: Tensor, n: Grid, stride: Stride = 1, *, backend: str = "auto", driver: str | None = None
) -> Tensor:
    """A guaranteed upper bound on sigma_max of the zero-padded conv on n: the circular sigma_max on n'."""
    k = max(weight.shape[-2:])
    return conv_sigma_max(weight, zero_padding_bound_size(n, k, stride), stride, backend=backend, driver=driver)
