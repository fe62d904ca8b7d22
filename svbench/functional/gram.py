"""Gram iteration: guaranteed upper bounds on sigma_max of a conv.

Delattre, Barthelemy, Araujo & Allauzen, "Efficient Bound of Lipschitz Constant for Convolutional Layers by Gram
Iteration", ICML 2023 (arXiv:2305.16173): per frequency, G_t = G_{t-1}^H G_{t-1} with Frobenius rescaling kept in
log space. H_T = exp(l_T) G_T = (W^H W)^(2^(T-1)), so sigma_1^(2^T) = ||H_T|| <= ||H_T||_F and

    sigma_1 <= bound <= rho^(2^-(T+1)) sigma_1,   rho = min(c_in, c_out)   (an UPPER BOUND at every T,
                                                                            non-increasing in T)

in exact arithmetic. In float32, once the true gap is below rounding, the bound can land a few ulps under sigma_1;
certificates compute it in float64. Circular padding on the given grid; for a zero-padded layer, run it on
n' = s ceil((n + k - 1) / s), where the circular operator contains the zero-padded one (methods.md 1.2).

Zero padding, any n (Delattre, Barthelemy & Allauzen 2024, arXiv:2402.00240): iterate the channel
self-correlation kernel H <- H * H (support 2^t (k - 1) + 1) with log-space rescaling, and bound the infinite
block-Toeplitz operator by its largest absolute row sum. Valid for every n, zero or circular padding, and (as a
looser bound) any stride; it converges to the symbol norm sup_theta ||W_hat(theta)|| slowly (+75/+31/+13.5/+7.5 %
over the exact zero-padded sigma_1 for T = 1..4 on a c = 8, n = 8 example).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor

from svbench.errors import UnsupportedShape, UserError
from svbench.functional.gram_triton import fused_gram_step, triton_available
from svbench.functional.transfer import (
    Grid,
    Stride,
    frequency_basis,
    grid_text,
    transfer_matrices_at,
    unique_frequency_taps,
)

PRODUCTS = ("auto", "real", "complex", "3xtf32", "triton")
# ``auto`` on a CPU: real products from this Gram side on. Measured on this project's CPU, 1 thread, the two forms
# alternated on one kernel (scripts/gram-products-paired.py, reports/gram-products-cpu/paired.md, session 8's
# one-matrix real form), T = 6: complex/real time 0.89-0.91 for sides 8-16, 1.06 at 32, 1.20-1.45 for 48-256; with
# the backward pass (the training penalty) 0.91-0.99 up to 16 (1.14 at 16 on a 32 x 32 grid), 1.21 at 32, 1.34-1.54
# from 48.
REAL_PRODUCTS_MIN_SIDE = 32
# ``auto`` on CUDA: real products for batches of side >= 256 holding >= 1e9 side^3 of work (matrices x side^3),
# else complex: the real form launches about twice the kernels, which only large products amortise. NVIDIA H200,
# torch 2.11, T = 6, the two forms alternated (scripts/gpu-probe.py, reports/gpu/nvidia-h200/run6/probe.md):
# complex/real 0.79-0.82 for sides 16-128 at every grid, 0.96 at 160 x 514 frequencies, 0.84-0.91 for 256 / 512 on
# 2-8 x 2-8 grids (<= 0.6e9), 1.16-1.33 for (256, 130), (320, 130), (512, 10), (512, 34), (640, 34) (1.3e9-8.9e9).
CUDA_REAL_PRODUCTS_MIN_SIDE = 256
CUDA_REAL_PRODUCTS_MIN_WORK = 1e9


def resolve_products(products: str, mats: Tensor) -> str:
    """The concrete product form for this batch: ``auto`` picks by device and size (:func:`auto_products`); real
    matrices take one real matmul per step either way (reported as ``complex``)."""
    return _resolve(products, mats.device.type, mats.is_complex(), mats.shape[:-2].numel(), min(mats.shape[-2:]))


def _resolve(products: str, device_type: str, is_complex: bool, matrices: int, side: int) -> str:
    if products not in PRODUCTS:
        raise UserError(f"Gram products must be one of {', '.join(PRODUCTS)}; got {products!r}")
    if products != "auto":
        return products
    return auto_products(device_type, matrices, side) if is_complex else "complex"


def auto_products(device_type: str, matrices: int, side: int) -> str:
    """``auto``'s choice for ``matrices`` complex matrices whose Gram side is ``side``: on CUDA ``real`` when
    side >= ``CUDA_REAL_PRODUCTS_MIN_SIDE`` and matrices * side^3 >= ``CUDA_REAL_PRODUCTS_MIN_WORK``; elsewhere
    ``real`` from side ``REAL_PRODUCTS_MIN_SIDE`` on; else ``complex``."""
    if device_type == "cuda":
        big = side >= CUDA_REAL_PRODUCTS_MIN_SIDE and matrices * side**3 >= CUDA_REAL_PRODUCTS_MIN_WORK
        return "real" if big else "complex"
    return "real" if side >= REAL_PRODUCTS_MIN_SIDE else "complex"


def gram_iteration_matrices(mats: Tensor, iters: int = 6, *, products: str = "auto") -> Tensor:
    """Upper bound on the spectral norm of each matrix in a batch (..., p, q); returns shape (...).

    After the first step G is Hermitian, so G^H G = G G. How the products of complex matrices are formed
    (``products``; real matrices always take one real matmul per step):

    - ``"auto"`` (default): by device and size, as measured (:func:`auto_products`): on a CPU ``"real"`` from a
      Gram side of ``REAL_PRODUCTS_MIN_SIDE`` on; on CUDA only for large batches of large matrices.
    - ``"real"``: the Hermitian iterate G = S + iK is carried as the one real matrix A = S + K and squared by
      TWO real matmuls, A' = A A - (1/2)(A - A^T)^2 (see ``_gram_iteration_real_parts``): 4 c^3 flops
      against the 8 c^3 of one complex matmul, 4 p q^2 against 8 p q^2 for the first step. Same bound in exact
      arithmetic; the rounding is that of the complex product (float32 relative ~1e-7 on ||G G||_F, and the
      bound's error is that to the power 2^-T).
    - ``"complex"``: one complex matmul per step (the form of the paper's code), kept for paired comparisons.
    - ``"triton"``: the ``"real"`` form with each step after the first fused into one Triton kernel
      (:mod:`svbench.functional.gram_triton`: no elementwise passes, 3/4 of the two matmuls' flops); EXPERIMENTAL,
      CUDA (or Triton's CPU interpreter), no backward pass. Measured SLOWER than ``"real"`` on an H200 (run 8:
      0.76-1.09x per layer shape at its best tile, WRN-16-10's whole bound 110.3 against 65.3 ms): an option to
      repeat that, not a default.
    - ``"3xtf32"``: every product G^H G through :func:`hermitian_gram_3xtf32` (two TF32 tensor-core matmuls of a
      hi/lo split, about float32 accuracy), on CUDA only; elsewhere the same formula runs in plain float32.
      Measured slower and looser than plain float32 on an H200 (WRN-16-10: 118 vs 83 ms, 2.4e-7 vs 1.8e-8 under
      sigma_max; reports/gpu/nvidia-h200/run2): an option to repeat that, not a default.

    Complex matrices are rescaled and measured through their real view (``_fro`` / ``_scale``): on CPU the
    complex ``matrix_norm`` and division took 2-3x the time of the matmul itself (c = 64, n = 16, one thread).
    """
    products = _checked_products(products, mats, iters)
    real_form = products in ("real", "triton") and mats.is_complex()
    first = _first_product(mats.reshape(-1, *mats.shape[-2:]), products, real_form)
    bounds, _ = _gram_run(first, iters, products, real_form)
    return bounds.reshape(mats.shape[:-2])


SCREENS = ("auto", "on", "off")
# Screening keeps a matrix while its current bound could still be the group's largest: within this relative margin
# of the largest lower bound (float32 rounding of the logs is ~1e-7; the margin only keeps a few more matrices).
SCREEN_MARGIN = 1e-4
# ... and only iterates of this Gram side on: below it a product costs less than the screen (this project's CPU).
SCREEN_MIN_SIDE = 16
# ... and from this product on: before it the bound is still loose (within rho^(2^-(t+1)) of sigma_1) and drops
# little (a ResNet-18 trained on MNIST: no frequency dropped before the third product).
SCREEN_FIRST_STEP = 3


def gram_iteration_max(mats: Tensor, iters: int = 6, *, products: str = "auto", screen: str = "auto") -> Tensor:
    """The largest per-matrix bound over the frequencies: mats (..., F, p, q) -> (...); the same value as
    ``gram_iteration_matrices(mats).amax(-1)``, differentiable the same way.

    ``screen`` (``on``; ``auto`` = on a CPU, off on CUDA, where its host syncs cost more than it saves on random layers:
    H200, random WRN-16-10, 81.0 ms on against 68.8 off, reports/gpu/nvidia-h200/run8): after each product t >=
    ``SCREEN_FIRST_STEP`` (iterates of side >= ``SCREEN_MIN_SIDE``) every matrix has an upper bound U (its bound at t,
    which only decreases with t) and a lower bound L on its sigma_1 (sigma_1^(2^t) = ||H_t||_2 >= the largest diagonal
    entry of the positive semidefinite H_t). A matrix whose U is below the largest L of its group (times 1 -
    ``SCREEN_MARGIN``) can never hold the group's final maximum: it is dropped and its remaining
    products are not computed. The result is the unscreened one (the kept matrices run exactly as before); the
    saving is large on trained layers, whose sigma_1 varies across frequencies (a small CNN after one epoch on
    MNIST: 3-7 % of the frequencies within 0.9 of the largest), small on random ones (frequencies alike).
    """
    _check_screen(screen)
    products = _checked_products(products, mats, iters)
    lead, f = mats.shape[:-3], mats.shape[-3]
    real_form = products in ("real", "triton") and mats.is_complex()
    first = _first_product(mats.reshape(-1, *mats.shape[-2:]), products, real_form)
    return _screened_max(first, real_form, lead.numel(), f, iters, products, screen, mats.device).reshape(lead)


def _check_screen(screen: str) -> None:
    if screen not in SCREENS:
        raise UserError(f"Gram screen must be one of {', '.join(SCREENS)}; got {screen!r}")


def _screened_max(first: tuple[Tensor, Tensor], real_form: bool, count: int, f: int, iters: int, products: str,
                  screen: str, device: torch.device) -> Tensor:
    """The largest bound of each of ``count`` groups of ``f`` consecutive first products (:func:`_gram_run`'s
    ``first``), screened as :func:`gram_iteration_max` says: (count,)."""
    if screen == "off" or (screen == "auto" and device.type == "cuda") or f == 1:
        bounds, _ = _gram_run(first, iters, products, real_form)
        return bounds.reshape(count, f).amax(-1)
    groups = torch.arange(count, device=device).repeat_interleave(f)
    bounds, groups = _gram_run(first, iters, products, real_form, groups=groups, count=count)
    return _group_max(bounds, groups, count)


def _group_max(values: Tensor, groups: Tensor, count: int) -> Tensor:
    """The largest of ``values`` in each of ``count`` groups (``groups`` holds each value's group); differentiable as
    ``amax`` is (the gradient goes to the maximum)."""
    if count == 1:
        return values.amax().reshape(1)
    best = torch.full((count,), -torch.inf, dtype=values.dtype, device=values.device)
    return best.scatter_reduce(0, groups, values, "amax", include_self=False)


def _checked_products(products: str, mats: Tensor, iters: int) -> str:
    """The concrete product form (``resolve_products``), with the one-line refusals of bad input."""
    return _checked(products, mats.device, mats.is_complex(), mats.shape[:-2].numel(), min(mats.shape[-2:]),
                    mats.requires_grad, iters)


def _checked(products: str, device: torch.device, is_complex: bool, matrices: int, side: int, requires_grad: bool,
             iters: int) -> str:
    if iters < 1:
        raise UserError(f"Gram iteration needs iters >= 1, got {iters}")
    products = _resolve(products, device.type, is_complex, matrices, side)
    if products == "triton":
        why = triton_available(device)
        if why:
            raise UserError(why)
        if requires_grad and torch.is_grad_enabled():
            raise UserError("Gram products 'triton' have no backward pass; use 'real' or 'auto' for a differentiable "
                            "bound")
    return products


def _gram_run(first: tuple[Tensor, Tensor], iters: int, products: str, real_form: bool, *,
              groups: Tensor | None = None, count: int = 1, block: int | None = None, precision: str = "ieee",
              warps: int | None = None) -> tuple[Tensor, Tensor]:
    """Bounds of a flat batch by ``iters`` products of the resolved form ``products``, from ``first`` = (the first
    products G_1 (B, s, s) divided by their scale, log of that scale (B,)) as :func:`_first_product` or
    :func:`_kernel_first_product` give them (``real_form``: packed as one real matrix); with ``groups``
    (B,) (group ids below ``count``) the batch is screened as :func:`gram_iteration_max` says and
    the bounds of the kept matrices come back with their groups. ``block``, ``precision``, ``warps``: the fused
    step's kernel settings (``products="triton"``).

    Every form carries the iterate divided by its Frobenius norm, the divisions kept in log space (``log_scale``):
    after t products H_t = exp(log_scale) G_t = (A^H A)^(2^(t-1)) and the bound is
    exp((log_scale + log ||G_t||_F) / 2^t)."""
    g, log_scale = first
    tiny = torch.finfo(log_scale.dtype).tiny
    for step in range(1, iters):
        r = _fro(g).clamp_min(tiny)
        log_r = torch.log(r)
        if groups is not None and g.shape[-1] >= SCREEN_MIN_SIDE and step >= SCREEN_FIRST_STEP:
            keep = _screen(g, log_scale, log_r, groups, count, step)
            if keep is not None:
                g, log_scale, r, log_r, groups = g[keep], log_scale[keep], r[keep], log_r[keep], groups[keep]
        log_scale = 2 * (log_scale + log_r)
        if products == "triton" and real_form:  # A' = (A A^T + (1/2)(A + A^T)(A - A^T)) / r^2: the same, one kernel
            g = fused_gram_step(g, 1 / r**2, block, precision, warps)
        elif real_form:
            a = g * (1 / r)[:, None, None]
            v = a - a.mT
            g = (a @ a).baddbmm_(v, v, alpha=-0.5)  # A A - V V / 2, in place: the product is fresh, no copy of it
        elif products == "3xtf32":
            g = hermitian_gram_3xtf32(_scale(g, 1 / r))
        else:
            g = _scale(g, 1 / r)
            g = g @ g
    fro = _fro(g).clamp_min(tiny)
    bounds = torch.exp((log_scale + torch.log(fro)) / 2**iters)
    return bounds, groups if groups is not None else torch.zeros(0, dtype=torch.long, device=g.device)


def _first_product(mats: Tensor, products: str, real_form: bool) -> tuple[Tensor, Tensor]:
    """The first product of each matrix (its smaller Gram side), divided by ||A||_F^2, and its log scale.

    Real form (``_gram_iteration_real_parts``): A^H A (or A A^H for a wide A) packed as the one real matrix
    Re G + Im G from X = Re A, Y = Im A: X^T X + Y^T Y + X^T Y - Y^T X = [X; Y]^T [X + Y; Y - X] (wide:
    [X, Y] [X - Y, X + Y]^T), one real matmul. Otherwise G = A^H A (A A^H) itself."""
    p, q = mats.shape[-2:]
    if real_form:
        ri = torch.view_as_real(mats)  # (B, p, q, 2)
        r = torch.linalg.vector_norm(ri, dim=(-3, -2, -1)).clamp_min(torch.finfo(ri.dtype).tiny)
        inv2 = (1 / r**2)[:, None, None]
        if q > p:  # wide: Z = [X, Y] (p, 2q)
            z = ri.movedim(-1, -2).reshape(-1, p, 2 * q)
            x, y = z[..., :q], z[..., q:]
            return (z @ torch.cat([x - y, x + y], dim=-1).mT) * inv2, 2 * torch.log(r)
        z = ri.movedim(-1, -3).reshape(-1, 2 * p, q)  # tall or square: Z = [X; Y] (2p, q)
        x, y = z[..., :p, :], z[..., p:, :]
        return (z.mT @ torch.cat([x + y, y - x], dim=-2)) * inv2, 2 * torch.log(r)
    r = _fro(mats).clamp_min(torch.finfo(mats.real.dtype if mats.is_complex() else mats.dtype).tiny)
    a = _scale(mats, 1 / r)
    wide = q > p  # iterate on the smaller Gram side: G = A A^H for a wide A
    if products == "3xtf32":  # G^H G of B = A (tall), A^H (wide)
        return hermitian_gram_3xtf32(a.mH if wide else a), 2 * torch.log(r)
    return (a @ a.mH if wide else a.mH @ a), 2 * torch.log(r)


def _screen(g: Tensor, log_scale: Tensor, log_fro: Tensor, groups: Tensor, count: int, step: int
            ) -> Tensor | None:
    """Indices of the matrices that may still hold their group's largest bound after ``step`` products, or None
    when every one may (see :func:`gram_iteration_max`)."""
    with torch.no_grad():
        # G is positive semidefinite, so its largest eigenvalue is at least its largest diagonal entry (the real
        # form's A = S + K has the diagonal of S: K's is zero). O(side) per matrix, so a screen that drops nothing
        # costs next to nothing (column norms, a tighter bound, cost ~10 % on random ResNet-18: two full passes).
        diag = g.diagonal(dim1=-2, dim2=-1)
        top = (diag.real if diag.is_complex() else diag).amax(-1)
        upper = (log_scale + log_fro) / 2**step
        lower = (log_scale + torch.log(top.clamp_min(torch.finfo(log_scale.dtype).tiny))) / 2**step
        best = _group_max(lower, groups, count)[groups]
        keep = upper >= best + math.log1p(-SCREEN_MARGIN)
        if bool(keep.all()):
            return None
        return keep.nonzero().squeeze(1)


def _gram_iteration_real_parts(mats: Tensor, iters: int, fused: bool = False, block: int | None = None,
                               precision: str = "ieee", warps: int | None = None) -> Tensor:
    """``gram_iteration_matrices`` with ``products="real"`` for complex input (``fused``: each step after the first
    through :func:`svbench.functional.gram_triton.fused_gram_step` with tiles of ``block``, tile products in
    ``precision`` and ``warps`` warps per program, one Triton launch; ``products="triton"``).

    A Hermitian G = S + iK (S symmetric, K antisymmetric) is carried as ONE real matrix A = S + K: S and K are its
    symmetric and antisymmetric parts, and ||A||_F = ||G||_F (S and K are orthogonal in the Frobenius inner product).
    With N = S K and M = (S + K)(S - K) = A A^T, Re(G G) = M + N + N^T and Im(G G) = N - N^T (K S = -N^T), so the
    next iterate is A' = M + 2N = A A^T + (1/2)(A + A^T)(A - A^T). With V = A - A^T and A + A^T = 2A - V this is
    A A^T + A V - V V / 2 = A (A^T + V) - V V / 2 = A A - V V / 2: two real matmuls (4 c^3 flops against 8 c^3 for
    one complex product), the second accumulating onto the first, ONE elementwise pass besides the scaling (V; the
    first form also needed A + A^T: 1.05-1.35x slower on this project's CPU, 1 thread, T = 6, c = 16-256, the
    bounds within 2e-7), and half the memory of a complex iterate. The first step packs A^H A the same way
    (:func:`_first_product`). Each iterate is divided by its Frobenius norm before it is squared (||A||_F = 1, so no
    product overflows and ||A'||_F >= 1 / c keeps it far from underflow). The fused Triton step computes the first
    form (the same value).
    """
    flat = mats.reshape(-1, *mats.shape[-2:])
    real_form = mats.is_complex()
    bounds, _ = _gram_run(_first_product(flat, "real", real_form), iters, "triton" if fused else "real", real_form,
                          block=block, precision=precision, warps=warps)
    return bounds.reshape(mats.shape[:-2])


def hermitian_gram_3xtf32(b: Tensor) -> Tensor:
    """B^H B for a batch of float32 matrices (..., m, r), real or complex, on TF32 tensor cores at about float32
    accuracy ("3xTF32": X = hi + lo with hi exact in TF32, X^T X ~ hi^T hi + hi^T lo + (hi^T lo)^T; lo^T lo,
    ~2^-22 relative, is dropped).

    A complex B goes in as the real X = [Re B, Im B] (m, 2r): X^T X holds Re B^T Re B, Re B^T Im B, ... and
    B^H B = (Re^T Re + Im^T Im) + i (Re^T Im - Im^T Re), so one real product of the same flop count replaces the
    complex one. The TF32 switch is set around the two matmuls and restored (CUDA only; on other devices the same
    arithmetic runs in float32).
    """
    x = torch.cat([b.real, b.imag], dim=-1) if b.is_complex() else b
    if x.dtype != torch.float32:
        raise UserError(f"3xTF32 products need float32 input, got {x.dtype}")
    hi = (x.view(torch.int32) & ~0x1FFF).view(torch.float32)  # keep TF32's 10 mantissa bits (exact in TF32)
    lo = x - hi  # exact in float32
    with _tf32_matmuls(x.device):
        cross = hi.mT @ lo
        g = hi.mT @ hi + (cross + cross.mT)
    if not b.is_complex():
        return g
    r = b.shape[-1]
    return torch.complex(g[..., :r, :r] + g[..., r:, r:], g[..., :r, r:] - g[..., r:, :r])


@contextmanager
def _tf32_matmuls(device: torch.device) -> Iterator[None]:
    """TF32 for float32 matmuls on CUDA inside the block, the previous setting restored after it. The legacy
    ``allow_tf32`` switch is used because the records read it (torch refuses reads after mixing the two APIs)."""
    if device.type != "cuda":
        yield
        return
    flags = torch.backends.cuda.matmul
    before = flags.allow_tf32
    flags.allow_tf32 = True
    try:
        yield
    finally:
        flags.allow_tf32 = before


def _fro(g: Tensor) -> Tensor:
    """Frobenius norm over the last two dims; complex input through its real view (same value, faster on CPU)."""
    if g.is_complex():
        return torch.linalg.vector_norm(torch.view_as_real(g), dim=(-3, -2, -1))
    return torch.linalg.vector_norm(g, dim=(-2, -1))


def _scale(g: Tensor, factor: Tensor) -> Tensor:
    """g * factor[..., None, None] (real factor per matrix), complex input through its real view."""
    if g.is_complex():
        return torch.view_as_complex(torch.view_as_real(g) * factor[..., None, None, None])
    return g * factor[..., None, None]


FIRSTS = ("auto", "kernel", "transfer")


def gram_iteration_bound(weight: Tensor, n: Grid, stride: Stride = 1, iters: int = 6, *, products: str = "auto",
                         screen: str = "auto", first: str = "auto") -> Tensor:
    """Upper bound on sigma_max of the circular conv on n x n (stride by polyphase). Differentiable (autograd);
    ``screen``: see :func:`gram_iteration_max` (same value); ``first``: how the first product is formed
    (:func:`_bound_from_taps`; same value up to rounding)."""
    taps, m, idx, _ = unique_frequency_taps(weight, n, stride)
    return _bound_from_taps(taps[None], m, idx, iters, products, screen, first)[0]


def gram_iteration_bound_batched(weights: Tensor, n: Grid, stride: Stride = 1, iters: int = 6, *,
                                 products: str = "auto", screen: str = "auto", first: str = "auto") -> Tensor:
    """Bounds for L layers of one shape at once: weights (L, c_out, c_in, k, k) -> (L,)."""
    taps = [unique_frequency_taps(w, n, stride) for w in weights]
    _, m, idx, _ = taps[0]
    return _bound_from_taps(torch.stack([t[0] for t in taps]), m, idx, iters, products, screen, first)


def gram_iteration_bound_grouped(weight: Tensor, n: Grid, stride: Stride = 1, groups: int = 1, iters: int = 6, *,
                                 products: str = "auto", screen: str = "auto", first: str = "auto") -> Tensor:
    """Upper bound on sigma_max of a grouped circular conv, weight (c_out, c_in / g, k, k): its transfer matrices are
    the g blocks stacked, cut apart here and iterated as one batch; sigma_max is the largest block's."""
    taps, m, idx, _ = unique_frequency_taps(weight, n, stride)
    c_out, q, t1, t2 = taps.shape
    return _bound_from_taps(taps.reshape(groups, c_out // groups, q, t1, t2), m, idx, iters, products, screen, first,
                            pool=True)[0]


def _bound_from_taps(taps: Tensor, m: int, idx: Tensor, iters: int, products: str, screen: str, first: str, *,
                     pool: bool = False) -> Tensor:
    """Bounds of B convs given by their compact polyphase taps (B, p, q, t, t) on the m x m grid, over the rfft
    frequencies ``idx``: (B,), or (1,) for the largest of all with ``pool``.

    Two exact shortcuts before the iteration:

    - t = 1 (a kernel no larger than its stride: 1 x 1 convs of any stride): the transfer matrix is the same at
      every frequency (``transfer.frequency_free_matrix``), so one frequency gives the same maximum.
    - ``first``: ``"transfer"`` forms the transfer matrices A(w) and their first products A^H A (A A^H when wide) one
      frequency at a time (:func:`_first_product`); ``"kernel"`` forms every G_1(w) from the kernel's channel
      correlations (:func:`_kernel_first_product`): no transfer matrix is built and the work no longer scales with p q
      per frequency; ``"auto"`` (:func:`auto_first`) takes ``"kernel"`` on a CPU where it measured faster (a flop count
      with a measured slack and a minimum side; this project's CPU, 1 thread, scripts/gram-first-paired.py) and
      ``"transfer"`` elsewhere (on an H200 the kernel route was slower: WRN-16-10 0.98x, ResNet-18 and VGG-19 0.75x,
      reports/gpu/nvidia-h200/run8); ``products="3xtf32"`` always takes ``"transfer"``. The same G_1 in exact arithmetic
      (float32 rounding differs: ~1e-6 of its largest entry; the bounds agreed to 2.5e-7).
    """
    if first not in FIRSTS:
        raise UserError(f"Gram first product must be one of {', '.join(FIRSTS)}; got {first!r}")
    _check_screen(screen)
    b, p, q, t, t2 = taps.shape
    if t == t2 == 1:
        idx = idx[:1]
    square = t == t2 and isinstance(m, int)  # the kernel route's tap offsets are square (2t - 1)^2 on an m x m grid
    if first == "kernel" and not square:
        raise UnsupportedShape(f"Gram first product 'kernel' takes square taps on a square grid; got {t}x{t2} taps on "
                               f"{grid_text(m)}: use first='transfer' or 'auto'")
    f = idx.numel()
    # the form the transfer matrices (complex, B F of them, side min(p, q)) would get, with the same refusals
    resolved = _checked(products, taps.device, True, b * f, min(p, q), taps.requires_grad, iters)
    real_form = resolved in ("real", "triton")
    if first == "auto":
        first = auto_first(taps.device.type, f, p, q, t, real_form) if square else "transfer"
    kernel = first == "kernel" and resolved != "3xtf32"
    if not kernel:  # one direct DFT for all B convs: (F, B p, q) -> (F, B, p, q)
        mats = transfer_matrices_at(taps.reshape(b * p, q, t, t2), m, idx).view(f, b, p, q)
        mats = mats.reshape(1, f * b, p, q) if pool else mats.transpose(0, 1)  # pooled: any order; else (B, F)
        return gram_iteration_max(mats, iters, products=products, screen=screen).reshape(-1)
    g, log_scale = _kernel_first_product(taps, m, idx, real_form)
    count = 1 if pool else b
    return _screened_max((g, log_scale), real_form, count, g.shape[0] // count, iters, resolved, screen, taps.device)


# ``first="auto"`` on a CPU: the kernel route from this Gram side on, where its flop count is at most this factor
# times the transfer route's. Measured on this project's CPU, 1 thread, paired (scripts/gram-first-paired.py,
# reports/cpu-performance.md "Session 11"): on side-16 layers the kernel route was 0.91-1.0x with the backward pass
# although it needs fewer flops (per-op overhead), and at n = 8 it was 1.01-1.12x although it needs ~1.2x the flops
# (one large matmul runs faster per flop than F small ones).
KERNEL_FIRST_MIN_SIDE = 32
KERNEL_FIRST_SLACK = 1.25


def first_product_flops(f: int, p: int, q: int, t: int, real_form: bool) -> tuple[int, int]:
    """Flops of the first products of F frequencies of p x q transfer matrices from t x t taps, (kernel route,
    transfer route); s = min(p, q) is the Gram side, l = max(p, q), D = (2t - 1)^2 tap offsets.

    transfer: 4 F t^2 p q (the direct DFT, real and imaginary parts) + 4 F l s^2 (real form; 8 F l s^2 complex);
    kernel: 2 t^4 l s^2 (every tap pair's product) + t^4 s^2 (summed by offset) + 2 F D s^2 (the DFT of the
    offsets; 4 F D s^2 complex)."""
    side, other = min(p, q), max(p, q)
    d = (2 * t - 1) ** 2
    per_freq = 4 if real_form else 8
    transfer = 4 * f * t * t * p * q + per_freq * f * other * side * side
    kernel = 2 * t**4 * other * side * side + t**4 * side * side + (per_freq // 2) * f * d * side * side
    return kernel, transfer


def auto_first(device_type: str, f: int, p: int, q: int, t: int, real_form: bool) -> str:
    """``first="auto"``'s route: ``"kernel"`` on a CPU for a Gram side >= ``KERNEL_FIRST_MIN_SIDE`` when its flops
    are at most ``KERNEL_FIRST_SLACK`` times the transfer route's (:func:`first_product_flops`), else
    ``"transfer"`` (on CUDA the kernel route measured slower: 0.75-0.98x on three networks, H200 run 8)."""
    if device_type != "cpu" or min(p, q) < KERNEL_FIRST_MIN_SIDE:
        return "transfer"
    kernel, transfer = first_product_flops(f, p, q, t, real_form)
    return "kernel" if kernel <= KERNEL_FIRST_SLACK * transfer else "transfer"


def _kernel_first_product(taps: Tensor, m: int, idx: Tensor, real_form: bool) -> tuple[Tensor, Tensor]:
    """The first products of B convs at the F frequencies ``idx``, from their taps (B, p, q, t, t): ((B F, s, s),
    (B F,)) as :func:`_first_product` gives them for the transfer matrices (each G_1 divided by its scale).

    With A(w) = sum_a K_a exp(-i theta_a), theta_a = 2 pi (w . a) / m over the taps a:

        A^H A = sum_d C_d exp(i theta_d),   C_d = sum_{a - b = d} K_a^T K_b     (tall or square: side q)
        A A^H = sum_d E_d exp(-i theta_d),  E_d = sum_{a - b = d} K_a K_b^T     (wide: side p)

    over the (2t - 1)^2 offsets d: one matmul gives every K_a^T K_b (t^2 q x t^2 q), the pairs are summed by
    offset, and one matmul by the DFT coefficients of the offsets gives every frequency's G_1. The real form packs
    Re G + Im G = sum_d C_d (cos theta_d +- sin theta_d) (see :func:`_first_product`). The weights are divided by
    their Frobenius norm first (no overflow) and each G_1 by its trace (= ||A(w)||_F^2; its log is kept)."""
    b, p, q, t, _ = taps.shape
    wide = q > p
    s = p if wide else q
    nu = torch.linalg.vector_norm(taps, dim=(1, 2, 3, 4)).clamp_min(torch.finfo(taps.dtype).tiny)  # (B,)
    k = (taps / nu[:, None, None, None, None]).permute(0, 3, 4, 1, 2).reshape(b, t * t, p, q)  # K_a, a = (u, v)
    if wide:
        k = k.mT  # E_d = K_a K_b^T: the same formula on the transposed taps
    cat = k.permute(0, 2, 1, 3).reshape(b, -1, t * t * s)  # [K_1, ..., K_T] (B, l, T s)
    pairs = (cat.mT @ cat).view(b, t, t, s, t, t, s)  # [., au, av, i, bu, bv, j] = (K_a^T K_b)_ij
    pairs = pairs.permute(0, 1, 2, 4, 5, 3, 6).reshape(b, t**4, s * s)  # [., (a, b), (i, j)]
    offsets = _sum_by_offset(pairs, t, gather=taps.device.type != "cpu")  # C_d (E_d): (B, (2t - 1)^2, s^2)
    cos, sin = frequency_basis(m, 2 * t - 1, idx, taps.dtype, start=-(t - 1))  # theta_d over the offsets
    sin = -sin if wide else sin
    f = idx.numel()
    if real_form:
        g = ((cos + sin) @ offsets).view(b * f, s, s)
        diag = g.diagonal(dim1=-2, dim2=-1)
    else:
        re_im = torch.cat([cos, sin]) @ offsets  # (B, 2F, s^2)
        g = torch.complex(re_im[:, :f], re_im[:, f:]).view(b * f, s, s)
        diag = g.diagonal(dim1=-2, dim2=-1).real
    trace = diag.sum(-1).clamp_min(torch.finfo(taps.dtype).tiny)  # ||A(w)||_F^2 / nu^2
    log_scale = torch.log(trace) + 2 * torch.log(nu).repeat_interleave(f)
    return g / trace[:, None, None], log_scale


def _sum_by_offset(pairs: Tensor, t: int, *, gather: bool) -> Tensor:
    """(B, t^4, R) indexed [., (a, b), r] over tap pairs a, b in [0, t)^2 (row-major) -> (B, (2t - 1)^2, R): the sums
    over each offset d = a - b, d row-major over [-(t-1), t-1]^2.

    ``gather=False``: one ``index_add`` (fastest on a CPU, where it is deterministic); ``gather=True``: the pairs of
    each offset gathered into a zero-padded table and summed (no atomics: the same sums on every run on a GPU,
    where ``index_add`` adds in a nondeterministic order)."""
    a = torch.arange(t, device=pairs.device)
    au, av = a.repeat_interleave(t), a.repeat(t)
    width = 2 * t - 1
    offset = ((au[:, None] - au[None, :] + t - 1) * width + (av[:, None] - av[None, :] + t - 1)).reshape(-1)
    b, _, r = pairs.shape
    if not gather:
        return pairs.new_zeros(b, width * width, r).index_add(1, offset, pairs)
    order = torch.argsort(offset, stable=True)  # pairs grouped by offset, each group in pair order
    counts = torch.bincount(offset, minlength=width * width)
    most = t * t  # the zero offset has the most pairs
    rank = torch.arange(t**4, device=pairs.device) - (torch.cumsum(counts, 0) - counts)[offset[order]]
    table = torch.full((width * width, most), t**4, dtype=torch.long, device=pairs.device)  # t^4: a zero row
    table[offset[order], rank] = order
    padded = torch.cat([pairs, pairs.new_zeros(b, 1, r)], dim=1)
    return padded[:, table.reshape(-1)].view(b, width * width, most, r).sum(2)


def _unique_transfer(weight: Tensor, n: Grid, stride: Stride) -> Tensor:
    """Transfer matrices at one frequency per conjugate pair (conjugates have the same norm): half the work."""
    taps, m, idx, _ = unique_frequency_taps(weight, n, stride)
    return transfer_matrices_at(taps, m, idx)


def _self_correlation(h: Tensor) -> Tensor:
    """Kernel of A A for the symmetric conv operator A with kernel h (c, c, kh, kw): (c, c, 2kh - 1, 2kw - 1)."""
    kh, kw = h.shape[-2:]
    return F.conv2d(h, h, padding=(kh - 1, kw - 1))


def delattre2024_bound(weight: Tensor, iters: int = 4) -> Tensor:
    """Upper bound on sigma_max of the conv for EVERY input size, zero or circular padding (any stride)."""
    if iters < 1:
        raise UserError(f"Gram iteration needs iters >= 1, got {iters}")
    w = weight
    if w.shape[1] > w.shape[0]:  # work on the smaller side: T T^* instead of T^* T
        w = w.transpose(0, 1).flip(-1, -2)
    # kernel of T^* T: (c_in, c_in, 2kh - 1, 2kw - 1) from the (c_in, c_out, kh, kw) view
    h = w.transpose(0, 1)
    log_scale = torch.zeros((), dtype=w.dtype, device=w.device)
    first = True
    for _ in range(iters):
        r = h.norm().clamp_min(torch.finfo(w.dtype).tiny)
        h = h / r
        log_scale = 2 * (log_scale + torch.log(r))
        if first:
            kh, kw = h.shape[-2:]  # both axes: the width's padding on a 5 x 1 kernel kept only its zero offset
            h = F.conv2d(h, h, padding=(kh - 1, kw - 1))  # sum_o corr(W[o, i], W[o, j])
            first = False
        else:
            h = _self_correlation(h)
    row_sum = h.abs().sum(dim=(1, 2, 3)).amax().clamp_min(torch.finfo(w.dtype).tiny)
    return torch.exp((log_scale + torch.log(row_sum)) / 2**iters)
