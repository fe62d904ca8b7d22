"""Exact singular values of circular convolutions from their transfer matrices.

Sedghi, Gupta & Long, ICLR 2019 (arXiv:1805.10408). All results here are EXACT (up to floating-point rounding)
for circular padding. Backends (a recorded axis of every result):

- ``svdvals``   batched SVD of the complex transfer matrices in the kernel's precision (LAPACK on CPU, cuSOLVER on
                CUDA; ``driver`` picks gesvd / gesvdj / gesvda on CUDA). Accurate for every SV.
- ``eigh``      ``eigvalsh`` of the smaller Gram side (A A^H or A^H A), clamped at 0, square root. Faster, but the
                Gram squares the condition number: the error of sigma_i is about (u/2) (sigma_1/sigma_i)^2
                relative, so small SVs lose accuracy in float32 (use it for sigma_max or coarse histograms).
- ``eigh64``    the Gram route in float64 (absolute error about sqrt(u64) sigma_1 ~ 1e-8 sigma_1 on every SV).
- ``svdvals64`` SVD in float64 (used for oracle-grade checks).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from svbench.errors import UserError
from svbench.functional.transfer import rfft_multiplicity, transfer_matrices, unique_frequencies

Backend = Literal["svdvals", "eigh", "eigh64", "svdvals64"]
BACKENDS: tuple[str, ...] = ("svdvals", "eigh", "eigh64", "svdvals64")
CUDA_DRIVERS: tuple[str, ...] = ("gesvd", "gesvdj", "gesvda")


def _complex64_to_128(a: Tensor) -> Tensor:
    return a.to(torch.complex128) if a.is_complex() else a.to(torch.float64)


def matrix_singular_values(
    mats: Tensor, backend: str = "svdvals", *, driver: str | None = None, chunk: int | None = None
) -> Tensor:
    """Singular values (descending, last dim) of a batch of matrices (..., p, q) by the chosen backend.

    ``chunk`` bounds how many matrices are processed at once (memory); results are identical.
    """
    if backend not in BACKENDS:
        raise UserError(f"unknown SV backend {backend!r}; available: {', '.join(BACKENDS)}")
    if driver is not None and driver not in CUDA_DRIVERS:
        raise UserError(f"unknown cuSOLVER driver {driver!r}; available: {', '.join(CUDA_DRIVERS)}")
    batch_shape = mats.shape[:-2]
    flat = mats.reshape(-1, *mats.shape[-2:])
    if chunk is None or chunk >= flat.shape[0]:
        out = _svals(flat, backend, driver)
    else:
        out = torch.cat([_svals(flat[i : i + chunk], backend, driver) for i in range(0, flat.shape[0], chunk)])
    return out.reshape(*batch_shape, out.shape[-1])


def _svals(a: Tensor, backend: str, driver: str | None) -> Tensor:
    real_dtype = a.real.dtype if a.is_complex() else a.dtype
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
    kwargs = {"driver": driver} if (driver is not None and a.is_cuda) else {}
    return torch.linalg.svdvals(a, **kwargs).to(real_dtype)


def frequency_singular_values(
    weight: Tensor,
    n: int,
    stride: int = 1,
    *,
    backend: str = "svdvals",
    real_fft: bool = True,
    driver: str | None = None,
    chunk: int | None = None,
) -> Tensor:
    """Per-frequency SVs, shape (m, m_f, r) with r = min(c_out, c_in s^2) (m_f = m//2+1 with ``real_fft``)."""
    spec = transfer_matrices(weight, n, stride, real_fft=real_fft)
    return matrix_singular_values(spec, backend, driver=driver, chunk=chunk)


def expand_rfft(per_freq: Tensor, m: int) -> Tensor:
    """Full SV multiset (descending 1-D) from rfft per-frequency SVs (m, m//2+1, r): mirrored columns counted twice."""
    mult = rfft_multiplicity(m, per_freq.device)
    rep = per_freq.repeat_interleave(mult, dim=1)
    return rep.reshape(-1).sort(descending=True).values


def conv_singular_values(
    weight: Tensor,
    n: int,
    stride: int = 1,
    *,
    backend: str = "svdvals",
    real_fft: bool = True,
    driver: str | None = None,
    chunk: int | None = None,
) -> Tensor:
    """All (n/s)^2 * min(c_out, c_in s^2) SVs of the circular conv on n x n, descending (zeros included). Exact.

    With ``real_fft`` only one frequency per conjugate pair is decomposed (``unique_frequencies``: about half of
    the m^2 matrices, the floor for this symmetry) and its SVs are counted twice.
    """
    if not real_fft:
        per = frequency_singular_values(weight, n, stride, backend=backend, real_fft=False, driver=driver,
                                        chunk=chunk)
        return per.reshape(-1).sort(descending=True).values
    spec = transfer_matrices(weight, n, stride, real_fft=True)
    m = spec.shape[0]
    flat = spec.reshape(-1, *spec.shape[-2:])
    idx, weight_ = unique_frequencies(m, spec.device)
    per = matrix_singular_values(flat.index_select(0, idx), backend, driver=driver, chunk=chunk)
    return per.repeat_interleave(weight_, dim=0).reshape(-1).sort(descending=True).values


def conv_sigma_max(
    weight: Tensor, n: int, stride: int = 1, *, backend: str = "svdvals", driver: str | None = None
) -> Tensor:
    """sigma_max of the circular conv on n x n (exact; rfft half is enough since mirrored SVs are equal)."""
    per = frequency_singular_values(weight, n, stride, backend=backend, driver=driver)
    return per[..., 0].max()


def zero_padding_bound_size(n: int, k: int, stride: int) -> int:
    """Grid n' on which the circular sigma_max bounds a zero-padded layer on n: s * ceil((n + k - 1) / s).

    For stride 1 this is n + k - 1: the zero-padded operator is a restriction of the circular one on n'
    (no window wraps), so sigma_1^zero(n) <= sigma_1^circ(n'). The circular value at n itself is NOT a bound
    (methods.md section 1.2; see the Laplacian test).
    """
    span = n + k - 1
    return stride * -(-span // stride)


def zero_padding_sigma_max_bound(
    weight: Tensor, n: int, stride: int = 1, *, backend: str = "svdvals", driver: str | None = None
) -> Tensor:
    """A guaranteed upper bound on sigma_max of the zero-padded conv on n: the circular sigma_max on n'."""
    k = max(weight.shape[-2:])
    return conv_sigma_max(weight, zero_padding_bound_size(n, k, stride), stride, backend=backend, driver=driver)
