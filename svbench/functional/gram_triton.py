"""One fused step of the Gram iteration's one-matrix real form, as a Triton kernel (EXPERIMENTAL, not a default).

The real form (:func:`svbench.functional.gram._gram_iteration_real_parts`; Delattre et al., ICML 2023, for the
iteration itself) carries a Hermitian iterate G = S + iK as the real matrix A = S + K and squares it as

    A' = (A A^T + (1/2) P M) / r^2,    P = A + A^T,  M = A - A^T,  r = ||A||_F.

In torch that is six launches and about five full passes over the batch besides the two matmuls (scale, the
transposed subtraction, lerp, bmm, baddbmm); on an H200 the elementwise passes took ~15 ms of the 56 ms of kernel
time of WRN-16-10's bound (reports/gpu/nvidia-h200/run5). This kernel computes A' in ONE launch from A itself: each
program owns an output tile pair (I, J), I <= J, forms P and M tile by tile from the loaded tiles of A and A^T,
and shares the symmetric product between both tiles, (A A^T)_JI = ((A A^T)_IJ)^T -- three tile products per pair
where the two separate matmuls take four (about 3/4 of their flops), and no elementwise pass. Exact arithmetic:
the same A' (tests against the torch form through Triton's interpreter on a CPU).

Accumulation is float32 with ``input_precision="ieee"`` (no TF32), as the torch form. Not differentiable (the bound
only). Measured on an H200 (reports/gpu/nvidia-h200/run8, paired against the torch real form): 0.48-1.08x per layer
shape with 32 x 32 tiles in float32 FMAs (faster only for c = 64), 0.03-1.09x with 64 x 64 tiles (below 0.4x from c =
160 on), 0.44-1.09x through 3xTF32 tiles; WRN-16-10's whole bound 110.3 against 65.3 ms. cuBLAS's matmuls beat the
saved quarter of the flops and the saved elementwise passes: the option stays for repeating that measurement, not used
by ``auto``.
"""

from __future__ import annotations

import functools
import os

import torch
from torch import Tensor

from svbench.errors import UserError

DEFAULT_BLOCK = 32
DEFAULT_WARPS = 4  # Triton's own default


def triton_available(device: torch.device) -> str | None:
    """None when the fused step can run on ``device`` here, else why not (one line)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return "Gram products 'triton' need the triton package (it ships with torch's CUDA wheels on Linux)"
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return ("Gram products 'triton' run on a CUDA device (or with TRITON_INTERPRET=1, Triton's slow CPU "
                f"interpreter, for checks); got device {device.type!r}: use products 'real' or 'auto'")
    return None


PRECISIONS = ("ieee", "tf32x3")


def fused_gram_step(a: Tensor, inv_r2: Tensor, block: int | None = None, precision: str = "ieee",
                    warps: int | None = None) -> Tensor:
    """(A A^T + (1/2)(A + A^T)(A - A^T)) * inv_r2[b] for a batch a (B, n, n) of float32 matrices (a new tensor);
    ``block``: the tile side (default ``DEFAULT_BLOCK``); ``precision``: Triton's ``input_precision`` of the tile
    products, ``ieee`` (float32 FMAs, the default and what ``products: triton`` uses) or ``tf32x3`` (three TF32
    tensor-core products per tile, about float32 accuracy; for the GPU probe to time, not a setting); ``warps``:
    Triton's ``num_warps`` per program (default ``DEFAULT_WARPS``; the probe times 4 and 8)."""
    block = DEFAULT_BLOCK if block is None else block
    warps = DEFAULT_WARPS if warps is None else warps
    if precision not in PRECISIONS:
        raise UserError(f"fused Gram step: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    why = triton_available(a.device)
    if why:
        raise UserError(why)
    if a.dtype != torch.float32 or a.dim() != 3 or a.shape[-1] != a.shape[-2]:
        raise UserError(f"fused Gram step: need a float32 batch of square matrices, got {a.dtype} {tuple(a.shape)}")
    if block < 16 or block & (block - 1):
        raise UserError(f"fused Gram step: block must be a power of two >= 16, got {block}")
    if warps not in (1, 2, 4, 8, 16):
        raise UserError(f"fused Gram step: warps must be 1, 2, 4, 8 or 16, got {warps}")
    a = a.contiguous()
    batch, n = a.shape[0], a.shape[-1]
    ti, tj = _tile_pairs(-(-n // block), a.device)
    out = torch.empty_like(a)
    _kernel()[(batch, ti.numel())](a, out, inv_r2.to(torch.float32).contiguous(), ti, tj, n, n * n, BLOCK=block,
                                   PRECISION=precision, num_warps=warps)
    return out


@functools.lru_cache(maxsize=64)
def _tile_pairs(tiles: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """The (I, J), I <= J, tile pairs of a tiles x tiles grid as two int32 index tensors on ``device`` (made once per
    grid and device: no host-to-device copy per step)."""
    pairs = [(i, j) for i in range(tiles) for j in range(i, tiles)]
    return (torch.tensor([i for i, _ in pairs], dtype=torch.int32, device=device),
            torch.tensor([j for _, j in pairs], dtype=torch.int32, device=device))


@functools.cache
def _kernel():
    """The Triton kernel, defined once on first use (importing svbench never imports triton; Triton compiles and
    caches it per constant set)."""
    import triton
    import triton.language as tl

    @triton.jit
    def gram_step(a_ptr, out_ptr, scale_ptr, ti_ptr, tj_ptr, n, stride_b, BLOCK: tl.constexpr,
                  PRECISION: tl.constexpr):
        b = tl.program_id(0)
        pair = tl.program_id(1)
        rows_i = tl.load(ti_ptr + pair) * BLOCK + tl.arange(0, BLOCK)
        rows_j = tl.load(tj_ptr + pair) * BLOCK + tl.arange(0, BLOCK)
        base = a_ptr + b * stride_b
        in_i = rows_i < n
        in_j = rows_j < n
        sym = tl.zeros((BLOCK, BLOCK), dtype=tl.float32)  # (A A^T)_IJ
        t_ij = tl.zeros((BLOCK, BLOCK), dtype=tl.float32)  # (P M)_IJ
        t_ji = tl.zeros((BLOCK, BLOCK), dtype=tl.float32)  # (P M)_JI
        for k0 in range(0, n, BLOCK):
            ks = k0 + tl.arange(0, BLOCK)
            in_k = ks < n
            a_ik = tl.load(base + rows_i[:, None] * n + ks[None, :], mask=in_i[:, None] & in_k[None, :], other=0.0)
            a_jk = tl.load(base + rows_j[:, None] * n + ks[None, :], mask=in_j[:, None] & in_k[None, :], other=0.0)
            a_ki = tl.load(base + ks[:, None] * n + rows_i[None, :], mask=in_k[:, None] & in_i[None, :], other=0.0)
            a_kj = tl.load(base + ks[:, None] * n + rows_j[None, :], mask=in_k[:, None] & in_j[None, :], other=0.0)
            sym += tl.dot(a_ik, tl.trans(a_jk), input_precision=PRECISION)
            # P[I, k] = A[I, k] + A[k, I]^T, M[k, J] = A[k, J] - A[J, k]^T (and the same with I, J swapped)
            t_ij += tl.dot(a_ik + tl.trans(a_ki), a_kj - tl.trans(a_jk), input_precision=PRECISION)
            t_ji += tl.dot(a_jk + tl.trans(a_kj), a_ki - tl.trans(a_ik), input_precision=PRECISION)
        scale = tl.load(scale_ptr + b)
        out = out_ptr + b * stride_b
        tl.store(out + rows_i[:, None] * n + rows_j[None, :], (sym + 0.5 * t_ij) * scale,
                 mask=in_i[:, None] & in_j[None, :])
        tl.store(out + rows_j[:, None] * n + rows_i[None, :], (tl.trans(sym) + 0.5 * t_ji) * scale,
                 mask=in_j[:, None] & in_i[None, :])

    return gram_step
