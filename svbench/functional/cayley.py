"""Cayley orthogonal convolutions: per-frequency Cayley transform of a skew-Hermitian matrix.

Trockman & Kolter, "Orthogonalizing Convolutional Layers with the Cayley Transform", ICLR 2021
(arXiv:2104.07167). Per rfft frequency the c_out x c_in transfer matrix A_in (c_out >= c_in) is split into
U (c_in x c_in) on top of V; with A = U - U^H + V^H V the matrix

    Q = [ (I - A)(I + A)^-1 ; -2 V (I + A)^-1 ]

satisfies Q^H Q = I exactly ((I - A)^H (I - A) + 4 V^H V = (I + A)^H (I + A)), so the circular layer on this grid
is EXACTLY orthogonal (an isometry; a co-isometry when c_in > c_out, handled by transposing). I + A is always
invertible (its Hermitian part is I + V^H V >= I).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from svbench.functional.transfer import Grid, grid_hw


def cayley_transfer(a_in: Tensor) -> Tensor:
    """Batched Cayley map (..., c_out, c_in) -> Q with orthonormal columns (rows if c_in > c_out)."""
    p, q = a_in.shape[-2:]
    if q > p:
        return cayley_transfer(a_in.mH).mH
    u, v = a_in[..., :q, :], a_in[..., q:, :]
    eye = torch.eye(q, dtype=a_in.dtype, device=a_in.device)
    a = u - u.mH + v.mH @ v
    # right-multiplication by (I + A)^-1: solve (I + A)^T X^T = B^T, i.e. X = B (I + A)^-1
    inv = torch.linalg.solve(eye + a, eye)
    top = (eye - a) @ inv
    if p == q:
        return top
    return torch.cat([top, -2 * v @ inv], dim=-2)


def centred_transfer(weight: Tensor, n: Grid) -> Tensor:
    """Transfer matrices (n, n//2+1, c_out, c_in) of the circular cross-correlation centred at p = (k-1)//2; on an
    h x w grid (h, w//2+1, c_out, c_in).

    y_o[i] = sum_{c,u} W[o, c, u] x_c[i + u - p]  <=>  y_hat(w) = exp(-2 pi i p (w1 / h + w2 / w)) conj(W_hat(w))
    x_hat(w).
    """
    h, w = grid_hw(n)
    k = weight.shape[-1]
    p = (k - 1) // 2
    spec = torch.fft.rfft2(weight, s=(h, w)).conj()
    f1 = torch.fft.fftfreq(h, d=1.0 / h, device=weight.device, dtype=weight.dtype)
    f2 = torch.arange(w // 2 + 1, device=weight.device, dtype=weight.dtype)
    phase = torch.exp(-2j * math.pi * p * (f1[:, None] / h + f2[None, :] / w))
    return (spec * phase).permute(2, 3, 0, 1)


def cayley_orthogonal_transfer(weight: Tensor, alpha: Tensor, n: Grid) -> Tensor:
    """Q(w) for every rfft frequency: Cayley of alpha * W_c / ||W||_F (one norm over all frequencies/channels).

    svbench normalises by ||W||_F (n-independent) instead of ||W_c||_F over the frequencies, so the
    parameterisation does not depend on the resolution; with alpha initialised to ||W||_F, A_in starts at W_c.
    """
    spec = centred_transfer(weight, n)
    scale = alpha / weight.norm().clamp_min(torch.finfo(weight.dtype).tiny)
    return cayley_transfer(spec * scale.to(spec.dtype))


def apply_transfer(x: Tensor, q: Tensor) -> Tensor:
    """y = irfft2(Q(w) x_hat(w)) for x (B, c_in, h, w) and Q (h, w//2+1, c_out, c_in)."""
    xf = torch.fft.rfft2(x)  # (B, c_in, h, wf)
    yf = torch.einsum("uvoc,bcuv->bouv", q, xf)
    return torch.fft.irfft2(yf, s=tuple(x.shape[-2:]))


def space_to_depth(x: Tensor, block: int = 2) -> Tensor:
    """Invertible b c (h s) (w s) -> b (c s s) h w; a permutation, hence orthogonal."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // block, block, w // block, block).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, c * block * block, h // block, w // block)
