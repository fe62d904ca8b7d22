"""Tensor-train (TT) conv core algebra.

Senderovich, Bulatova, Obukhov & Rakhuba, "Towards Practical Control of Singular Values of Convolutional Layers",
NeurIPS 2022 (arXiv:2211.13771). A TT conv has cores K1 (c_in x r1), K2 (r2 x r1 x kh x kw, (out, in, kh, kw) order)
and K3 (r2 x c_out); the full kernel is W[o, i, u, v] = sum_{a, b} K3[b, o] K2[b, a, u, v] K1[i, a].

Theorem 1: if K1^T K1 = I and K3 K3^T = I, the nonzero SVs of the layer are EXACTLY those of the K2 conv (any
padding, stride, dilation), and all other SVs are 0. ``fold_cores`` makes that true without changing the layer:
K1 = Q1 R1 and K3^T = Q3 R3 (reduced QR), K2' = R3 K2 R1^T, K1 <- Q1, K3 <- Q3^T.
"""

from __future__ import annotations

import torch
from torch import Tensor


def compose_kernel(k1: Tensor | None, k2: Tensor, k3: Tensor | None) -> Tensor:
    """Full (c_out, c_in, k, k) kernel from the cores (a missing K1/K3 is the identity)."""
    w = k2
    if k1 is not None:
        w = torch.einsum("bauv,ia->biuv", w, k1)
    if k3 is not None:
        w = torch.einsum("bo,biuv->oiuv", k3, w)
    return w


def fold_cores(k1: Tensor | None, k2: Tensor, k3: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """QR fold: returns (K2', Q1, Q3^T) with orthonormal outer cores and the same full kernel."""
    core = k2
    q1 = q3t = None
    if k1 is not None:
        q1, r1 = torch.linalg.qr(k1)
        core = torch.einsum("bauv,ca->bcuv", core, r1)
    if k3 is not None:
        q3, r3 = torch.linalg.qr(k3.T)
        core = torch.einsum("db,bauv->dauv", r3, core)
        q3t = q3.T
    return core, q1, q3t


def folded_cores(layers: list[tuple[Tensor | None, Tensor, Tensor | None]], route: str = "auto") -> list[Tensor]:
    """The middle core K2' of :func:`fold_cores` for many layers (k1, k2, k3) at once, from the R factors only.

    The SVs need K2' = R3 K2 R1^T alone, and only up to orthogonal factors: any F with F^T F = K^T K serves as R.
    Outer cores of one shape, dtype and device share one call (:func:`r_factors`): near-orthonormal ones (the TT
    paper's regime: orthogonal init, orthogonality penalty or control) by CholeskyQR, the rest by a batched QR in
    ``mode="r"``. The core equals ``fold_cores``'s up to the signs of its rows and columns (QR's R has diagonal
    entries of either sign, Cholesky's positive ones), so its SVs are the same. ``route="qr"`` skips CholeskyQR
    (the form it replaced, for paired timings)."""
    r1 = r_factors([k1 for k1, _, _ in layers], route)
    r3 = r_factors([None if k3 is None else k3.T for _, _, k3 in layers], route)
    out = []
    for (_, core, _), a, b in zip(layers, r1, r3):
        if a is not None:
            core = torch.einsum("bauv,ca->bcuv", core, a)
        if b is not None:
            core = torch.einsum("db,bauv->dauv", b, core)
        out.append(core)
    return out


# CholeskyQR is used for a batch of tall K when every Jacobi-scaled Gram C = D^-1/2 K^T K D^-1/2 (unit diagonal)
# has max_i sum_j |C - I|_ij <= this: a bound on ||C - I||_2 (C is symmetric), so every eigenvalue of C lies in
# [0.5, 1.5] and kappa(C) <= 3. Cholesky's backward error is small relative to the diagonal of the Gram, so
# R_hat = (I + F) R with ||F|| about kappa(C)^(3/2) times a few units of rounding, whatever the column scales, and
# every SV of the folded core then has a RELATIVE error of that size (multiplicative perturbation) -- as good as
# Householder QR's for the SVs. Measured (CPU, float32 against float64, K 640 x 192 and 320 x 192 with
# rank-192 random cores, 8 x 8 grid): 2.4-4.5e-8 of sigma_max for CholeskyQR, 3.1-5.0e-8 for the QR.
CHOLESKY_MAX_DEFECT = 0.5


R_ROUTES = ("auto", "qr")


def r_factors(mats: list[Tensor | None], route: str = "auto") -> list[Tensor | None]:
    """An R factor (K^T K = R^T R, R upper triangular) of each matrix; None stays None. Matrices of one shape,
    dtype and device share one call: with ``route="auto"`` CholeskyQR (one batched Gram product and Cholesky) when
    all of them are tall and near-orthonormal up to column scaling (``CHOLESKY_MAX_DEFECT``), else (and always
    with ``route="qr"``) one batched QR (``mode="r"``)."""
    if route not in R_ROUTES:
        raise ValueError(f"r_factors: route must be one of {R_ROUTES}, got {route!r}")
    groups: dict[tuple, list[int]] = {}
    for i, m in enumerate(mats):
        if m is not None:
            groups.setdefault((tuple(m.shape), m.dtype, m.device), []).append(i)
    out: list[Tensor | None] = [None] * len(mats)
    for idxs in groups.values():
        k = torch.stack([mats[i] for i in idxs])
        r = _cholesky_r(k) if route == "auto" else None
        if r is None:
            r = torch.linalg.qr(k, mode="r").R
        for i, ri in zip(idxs, r):
            out[i] = ri
    return out


def _cholesky_r(k: Tensor) -> Tensor | None:
    """R = L^T from the Cholesky factor of K^T K for a batch (B, m, r) of tall K, or None where CholeskyQR is not
    accurate enough for some matrix of the batch (or K is wide): one host sync per batch."""
    m, r = k.shape[-2:]
    if m < r:
        return None
    gram = k.mT @ k
    inv = gram.diagonal(dim1=-2, dim2=-1).clamp_min(torch.finfo(k.dtype).tiny).rsqrt()
    scaled = gram * inv[..., :, None] * inv[..., None, :]
    defect = (scaled - torch.eye(r, dtype=k.dtype, device=k.device)).abs().sum(-1).amax(-1)  # >= ||C - I||_2
    low, info = torch.linalg.cholesky_ex(gram)
    if not bool(((defect <= CHOLESKY_MAX_DEFECT) & (info == 0)).all()):  # False for NaN
        return None
    return low.mT


def orthogonality_defect(k1: Tensor | None, k3: Tensor | None) -> tuple[Tensor, Tensor]:
    """(||K1^T K1 - I||_F^2, ||K3 K3^T - I||_F^2); zero terms for missing cores."""
    zero = torch.zeros((), dtype=k1.dtype if k1 is not None else (k3.dtype if k3 is not None else torch.float32))
    d1 = zero if k1 is None else (k1.T @ k1 - torch.eye(k1.shape[1], dtype=k1.dtype, device=k1.device)).square().sum()
    d3 = zero if k3 is None else (k3 @ k3.T - torch.eye(k3.shape[0], dtype=k3.dtype, device=k3.device)).square().sum()
    return d1, d3


def tt_svd(weight: Tensor, r1: int, r2: int) -> tuple[Tensor, Tensor, Tensor, float]:
    """TT-SVD of a full kernel (c_out, c_in, kh, kw) into K1 (c_in x r1), K2 (r2 x r1 x kh x kw), K3 (r2 x c_out).

    Sequential truncated SVDs: first over the input-channel mode, then over the output-channel mode. The cores
    come out with orthonormal K1 and K3. Returns the cores and the relative Frobenius error of the approximation
    (0 when the kernel has exact TT ranks <= (r1, r2)).
    """
    c_out, c_in, kh, kw = weight.shape
    w = weight.detach()
    # input mode: unfold (c_in) x (c_out k k)
    # full_matrices: when a mode has fewer directions than the rank (a 1 x 1 kernel with r2 > r1: the output
    # unfolding is c_out x r1), the extra columns are an orthonormal complement (K2's rows for them are zero), so
    # the cores have the layer's ranks and stay orthonormal; with the reduced SVD K3 came out short and wrap() failed
    # on every ResNet shortcut that widens (64 -> 128 at rank_scale 0.5)
    mat_in = w.permute(1, 0, 2, 3).reshape(c_in, -1)
    u1, _, _ = torch.linalg.svd(mat_in, full_matrices=True)
    k1 = u1[:, :r1]
    # project: (c_out, r1, k, k)
    g = torch.einsum("oiuv,ia->oauv", w, k1)
    mat_out = g.reshape(c_out, -1)
    u3, _, _ = torch.linalg.svd(mat_out, full_matrices=True)
    k3 = u3[:, :r2].T  # (r2, c_out)
    k2 = torch.einsum("bo,oauv->bauv", k3, g)
    approx = compose_kernel(k1, k2, k3)
    err = float((approx - w).norm() / w.norm().clamp_min(1e-30))
    return k1.contiguous(), k2.contiguous(), k3.contiguous(), err
