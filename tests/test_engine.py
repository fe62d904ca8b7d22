"""The memory-lean spectral engine: direct-DFT transfer matrices, chunking, the ``auto`` backend (issue 6)."""

import pytest
import torch
from conftest import circular_conv
from hypothesis import given, settings
from hypothesis import strategies as st

from svbench.errors import UserError
from svbench.functional.gram import gram_iteration_bound
from svbench.functional.network import batched_conv_singular_values
from svbench.functional.oracle import oracle_singular_values
from svbench.functional.spectrum import (
    conv_singular_values,
    describe_backend,
    frobenius_mismatch,
    matrix_singular_values,
    resolve_backend,
    unique_frequency_singular_values,
)
from svbench.functional.transfer import (
    compact_polyphase_kernel,
    polyphase_kernel,
    transfer_matrices,
    transfer_matrices_at,
    unique_frequencies,
)

GEOMETRIES = [
    # c_out, c_in, k, n, stride
    (4, 3, 3, 8, 1),
    (4, 3, 3, 7, 1),  # odd grid: no Nyquist column
    (4, 3, 3, 8, 2),
    (5, 2, 5, 6, 3),
    (3, 3, 1, 4, 1),
    (2, 3, 4, 8, 2),  # even kernel (DFT only: the oracle's 'same' padding is defined for odd k)
    (3, 2, 5, 4, 1),  # k > n: folded taps
    (2, 2, 3, 2, 2),  # m = 1
]


def _w(c_out, c_in, k, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(c_out, c_in, k, k, generator=g, dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("c_out,c_in,k,n,s", GEOMETRIES)
def test_direct_dft_equals_rfft_grid(c_out, c_in, k, n, s):
    w = _w(c_out, c_in, k)
    m = n // s
    full = transfer_matrices(w, n, s).reshape(-1, c_out, c_in * s * s)
    idx, _ = unique_frequencies(m)
    got = transfer_matrices_at(compact_polyphase_kernel(w, n, s), m, idx)
    assert got.is_contiguous()
    assert (got - full[idx]).abs().max() <= 1e-13 * full.abs().max()


@pytest.mark.parametrize("c_out,c_in,k,n,s", GEOMETRIES)
def test_compact_kernel_holds_every_nonzero_tap(c_out, c_in, k, n, s):
    w = _w(c_out, c_in, k)
    big = polyphase_kernel(w, n, s)
    small = compact_polyphase_kernel(w, n, s)
    t = small.shape[-1]
    assert torch.equal(big[..., :t, :t], small)
    assert big[..., t:, :].abs().sum() == 0 and big[..., :, t:].abs().sum() == 0


@pytest.mark.parametrize("chunk", [1, 3, 1000, None])
@pytest.mark.parametrize("c_out,c_in,k,n,s", [g for g in GEOMETRIES if g[2] % 2])
def test_chunked_svs_match_oracle(c_out, c_in, k, n, s, chunk):
    w = _w(c_out, c_in, k)
    oracle = oracle_singular_values(circular_conv(w, s), (c_in, n, n))
    got = conv_singular_values(w, n, s, chunk=chunk)
    assert got.numel() == oracle.numel()
    assert (got - oracle).abs().max() <= 1e-10 * oracle[0]


def test_bad_chunk_is_a_user_error():
    with pytest.raises(UserError, match="chunk"):
        conv_singular_values(_w(2, 2, 3), 8, 1, chunk=0)


def test_unique_frequencies_cover_the_spectrum():
    for m in (1, 2, 3, 4, 7, 8):
        _, mult = unique_frequencies(m)
        assert int(mult.sum()) == m * m
    per, mult = unique_frequency_singular_values(_w(3, 3, 3), 8, 1)
    assert per.shape == (mult.numel(), 3)


def test_auto_resolution_rules():
    assert resolve_backend("auto", 64, 64, "cpu") == ("svdvals", None)
    assert resolve_backend("auto", 64, 256, "cpu") == ("eigh64", None)  # stride 2, c_in = c_out
    assert resolve_backend("auto", 256, 64, "cpu") == ("eigh64", None)
    assert resolve_backend("auto", 64, 128, "cpu") == ("svdvals", None)  # aspect 2: SVD measured faster
    assert resolve_backend("auto", 128, 512, "cpu") == ("eigh64", None)  # 4x wide: float32 SVD 1.9e-6 off
    assert resolve_backend("auto", 192, 640, "cpu") == ("eigh64", None)  # 3.3x (tt cores at stride 2)
    assert resolve_backend("auto", 64, 160, "cpu") == ("eigh64", None)  # 2.5x: float32 SVD 1.5-1.7e-6, eigh64 faster
    assert resolve_backend("auto", 160, 64, "cpu") == ("eigh64", None)
    assert resolve_backend("auto", 96, 224, "cpu") == ("svdvals", None)  # 2.33x: below the crossover
    assert resolve_backend("auto", 128, 256, "cpu") == ("svdvals", None)  # 2x: float32 SVD 1.1-1.3e-6
    assert resolve_backend("auto", 144, 144, "cpu") == ("svdvals", None)  # float32 SVD <= 1.1e-6 up to 144
    assert resolve_backend("auto", 160, 160, "cpu") == ("eigh64", None)  # ... up to 1.66e-6 at 160, 1.93e-6 at 240
    assert resolve_backend("auto", 256, 256, "cpu") == ("eigh64", None)  # float32 SVD error grows with the side
    assert resolve_backend("auto", 512, 1024, "cpu") == ("eigh64", None)
    assert resolve_backend("auto", 512, 512, "cuda") == ("svdvals", "gesvda")
    assert resolve_backend("auto", 64, 64, "cuda") == ("svdvals", "gesvda")
    assert resolve_backend("auto", 64, 64, "cuda", "gesvdj") == ("svdvals", "gesvdj")
    assert resolve_backend("eigh", 64, 64, "cuda") == ("eigh", None)
    assert describe_backend("auto", 64, 256, "cpu") == "eigh64 (auto)"
    assert describe_backend("auto", 64, 64, "cuda") == "svdvals/gesvda (auto)"
    assert describe_backend("svdvals", 64, 64, "cpu") == "svdvals"
    with pytest.raises(UserError, match="available"):
        resolve_backend("qr", 4, 4, "cpu")
    with pytest.raises(UserError, match="driver"):
        resolve_backend("auto", 4, 4, "cuda", "magma")


def test_auto_meets_the_accuracy_class_in_float32():
    """max |sigma - float64| <= 2e-6 sigma_max over ALL SVs, on both routes auto can take on CPU."""
    for c_out, c_in, s in [(8, 8, 1), (8, 8, 2), (4, 16, 1)]:
        w = _w(c_out, c_in, 3, seed=3)
        exact = conv_singular_values(w, 8, s, backend="svdvals64")
        got = conv_singular_values(w.float(), 8, s, backend="auto").double()
        assert (got - exact).abs().max() <= 2e-6 * exact[0]


def test_frobenius_check_flags_wrong_singular_values():
    a = torch.randn(5, 6, 4, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    s = torch.linalg.svdvals(a)
    assert not frobenius_mismatch(a, s).any()
    bad = s.clone()
    bad[2, 0] *= 1.01
    assert frobenius_mismatch(a, bad).tolist() == [False, False, True, False, False]
    bad = s.clone()
    bad[1, 0] = float("nan")  # NaN compares False with any tolerance: must still be flagged
    bad[4, 0] = float("inf")
    assert frobenius_mismatch(a, bad).tolist() == [False, True, False, False, True]
    swapped = s.clone()
    swapped[0, -1] = -swapped[0, -1]  # same sum of squares, but a negative "singular value"
    assert frobenius_mismatch(a, swapped).tolist() == [True, False, False, False, False]


def test_matrix_singular_values_chunking_is_exact():
    a = torch.randn(7, 3, 5, dtype=torch.complex128, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(matrix_singular_values(a, "svdvals", chunk=2), torch.linalg.svdvals(a))


@pytest.mark.parametrize("chunk", [None, 2])
def test_batched_network_equals_per_layer(chunk):
    layers = [(_w(4, 4, 3, seed=i), 8, 1) for i in range(3)] + [(_w(4, 2, 3, seed=9), 8, 2), (_w(3, 3, 1), 4, 1)]
    got = batched_conv_singular_values(layers, chunk=chunk)
    for (w, n, s), sv in zip(layers, got):
        assert torch.allclose(sv, conv_singular_values(w, n, s), atol=1e-12)


def test_gram_bound_on_unique_frequencies_still_bounds_and_has_gradients():
    w = _w(4, 3, 3).requires_grad_(True)
    exact = conv_singular_values(w.detach(), 8, 2)[0]
    b = gram_iteration_bound(w, 8, 2, iters=6)
    assert exact * (1 - 1e-12) <= b <= exact * (1 + 1e-3)  # converged: equal up to rounding
    b.backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()


def test_default_chunking_policy():
    from svbench.functional.spectrum import frequency_chunk

    assert frequency_chunk(10, 100) == 10  # tiny: one call
    assert frequency_chunk(130, 64 * 64 * 8, device="cuda") == 33  # c = 64, n = 16: 4.2 MB -> 4 chunks on a GPU
    assert frequency_chunk(130, 64 * 64 * 8) == 130  # ... one call on a CPU (under 16 MiB)
    assert frequency_chunk(130, 2**20, device="cuda") == 33  # never more than 4 chunks
    assert frequency_chunk(130, 2**20) == 33
    assert frequency_chunk(130, 2**13, device="cuda") == 65  # ~1 MiB -> 2 chunks
    assert frequency_chunk(34, 64 * 256 * 8, wide_working_set=True) == 9  # 64-bit routes chunk like on a GPU
    assert frequency_chunk(7, 1, chunk=3) == 3
    with pytest.raises(UserError, match="chunk"):
        frequency_chunk(7, 1, chunk=0)
    assert frequency_chunk(130, 2**20, device="cuda", pieces=1) == 130  # one call asked for
    assert frequency_chunk(130, 2**20, pieces=2) == 65
    assert frequency_chunk(130, 2**8, device="cuda", pieces=8) == 130  # pieces never under the minimum size
    with pytest.raises(UserError, match="chunks must be >= 1"):
        frequency_chunk(7, 1, pieces=0)


def test_gesvda_on_cuda_is_one_call_by_default():
    """H200 run 1: gesvda costs about the same per call whatever the batch, so it is not chunked by default."""
    from svbench.functional.spectrum import default_pieces

    assert default_pieces("cuda", "svdvals", "gesvda") == 1
    assert default_pieces("cuda", "svdvals", "gesvd") is None
    assert default_pieces("cuda", "eigh", None) is None
    assert default_pieces("cpu", "svdvals", "gesvda") is None


def test_chunks_leave_the_values_unchanged():
    from svbench.functional.network import batched_conv_singular_values
    from svbench.functional.spectrum import conv_singular_values

    w = torch.randn(6, 5, 3, 3, generator=torch.Generator().manual_seed(4))
    one = conv_singular_values(w, 8, pieces=1)
    for pieces in (2, 3, 40):
        assert torch.allclose(conv_singular_values(w, 8, pieces=pieces), one, rtol=0, atol=1e-6)
    both = batched_conv_singular_values([(w, 8, 1), (2 * w, 8, 1)], pieces=3)
    assert torch.allclose(both[0], one, atol=1e-6) and torch.allclose(both[1], 2 * one, atol=1e-5)


def test_checked_svdvals_redoes_only_the_failed_matrices():
    """The CUDA gesvda route's safety net, exercised on CPU with a deliberately wrong first solver."""
    from svbench.functional.spectrum import checked_svdvals

    a = torch.randn(6, 5, 4, dtype=torch.complex64, generator=torch.Generator().manual_seed(2))
    exact = torch.linalg.svdvals(a)
    redone = []

    def wrong_on_3(x):
        s = torch.linalg.svdvals(x)
        s[3] *= 1.5
        return s

    def fallback(x):
        redone.append(x.shape[0])
        return torch.linalg.svdvals(x)

    got = checked_svdvals(a, wrong_on_3, fallback)
    assert redone == [1] and torch.allclose(got, exact)
    assert checked_svdvals(a, torch.linalg.svdvals, fallback).equal(exact) and redone == [1]


@settings(max_examples=40, deadline=None)
@given(c_out=st.integers(1, 24), c_in=st.integers(1, 24), k=st.sampled_from([1, 3, 5]), m=st.integers(2, 8),
       s=st.sampled_from([1, 2]), seed=st.integers(0, 10_000))
def test_auto_float32_is_in_the_accuracy_class_on_random_shapes(c_out, c_in, k, m, s, seed):
    """Issue-6 accuracy class for the default backend: max |sigma - float64| <= 2e-6 sigma_max over ALL SVs."""
    n = m * s
    if k > n:
        return
    w = _w(c_out, c_in, k, seed=seed, dtype=torch.float32)
    exact = conv_singular_values(w.double(), n, s, backend="svdvals64")  # float64 SVs of the same float32 kernel
    got = conv_singular_values(w, n, s).double()
    assert got.numel() == exact.numel()
    assert (got - exact).abs().max() <= 2e-6 * exact[0]


@pytest.mark.parametrize("products", ["real", "complex"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("shape", [(5, 3, 7), (5, 7, 3), (5, 4, 4), (2, 3, 1, 6), (4, 6, 1)])
@pytest.mark.parametrize("iters", [1, 2, 3, 6])
def test_gram_iteration_matrices_bounds_every_matrix(shape, dtype, iters, products):
    """sigma_1 <= bound <= rho^(2^-(T+1)) sigma_1 for tall, wide, square and rank-one, real and complex batches,
    with the Hermitian powers formed by two real matmuls or one complex one."""
    from svbench.functional.gram import gram_iteration_matrices

    a = torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(iters))
    s1 = torch.linalg.svdvals(a)[..., 0]
    b = gram_iteration_matrices(a, iters, products=products)
    rho = min(shape[-2:])
    assert (b >= s1 * (1 - 1e-12)).all() and (b <= s1 * rho ** (2.0 ** -(iters + 1)) * (1 + 1e-12)).all()


@pytest.mark.parametrize("shape", [(6, 9, 9), (4, 12, 5), (4, 5, 12), (3, 2, 4, 4)])
@pytest.mark.parametrize("iters", [1, 2, 6, 12])
def test_gram_real_products_equal_complex_products(shape, iters):
    """The two-real-matmul Hermitian square gives the complex product's bound: to 1e-14 in float64, and to float32
    rounding (against float64) in complex64, including the converged regime (T = 12) where the bound meets sigma_1;
    the matrices get unequal scales so that a wrong real/imaginary assembly cannot hide in a near-identity Gram."""
    from svbench.functional.gram import gram_iteration_matrices

    g = torch.Generator().manual_seed(len(shape) * 100 + iters)
    a = torch.randn(shape, dtype=torch.complex128, generator=g)
    a = a * torch.logspace(-3, 3, a.shape[-1], dtype=torch.float64)  # column scales 1e-3..1e3
    real = gram_iteration_matrices(a, iters, products="real")
    cplx = gram_iteration_matrices(a, iters, products="complex")
    assert torch.allclose(real, cplx, rtol=1e-14, atol=0)
    got32 = gram_iteration_matrices(a.to(torch.complex64), iters, products="real").double()
    assert ((got32 - cplx).abs() / cplx).max() <= 2e-6


def test_gram_real_products_gradient_equals_complex_products():
    """The training penalty differentiates through the real route: same gradient as through complex products."""
    from svbench.functional.gram import gram_iteration_bound

    w = _w(6, 4, 3, seed=3).requires_grad_(True)
    real = torch.autograd.grad(gram_iteration_bound(w, 6, 1, 6, products="real"), w)[0]
    cplx = torch.autograd.grad(gram_iteration_bound(w, 6, 1, 6, products="complex"), w)[0]
    assert torch.allclose(real, cplx, rtol=1e-10, atol=1e-14)
    assert torch.autograd.gradcheck(lambda v: gram_iteration_bound(v, 5, 1, 3, products="real"), (w,))


def test_gram_products_unknown_is_one_line_error():
    from svbench.functional.gram import gram_iteration_matrices

    with pytest.raises(UserError, match="products must be one of auto, real, complex, 3xtf32, triton"):
        gram_iteration_matrices(torch.randn(2, 3, 3), 2, products="fast")


def test_gram_products_auto_is_real_from_the_measured_crossover():
    from svbench.functional.gram import REAL_PRODUCTS_MIN_SIDE, resolve_products

    side = REAL_PRODUCTS_MIN_SIDE
    assert resolve_products("auto", torch.zeros(2, side, side + 5, dtype=torch.complex64)) == "real"
    assert resolve_products("auto", torch.zeros(2, side + 5, side - 1, dtype=torch.complex64)) == "complex"
    assert resolve_products("auto", torch.zeros(2, 4 * side, 4 * side)) == "complex"  # real input: one real matmul
    assert resolve_products("complex", torch.zeros(2, 4 * side, 4 * side, dtype=torch.complex64)) == "complex"


@pytest.mark.parametrize("c,freqs,want", [(16, 514, "complex"), (128, 514, "complex"), (160, 514, "complex"),
                                          (256, 130, "real"), (256, 34, "complex"), (256, 10, "complex"),
                                          (320, 130, "real"), (512, 34, "real"), (512, 10, "real"),
                                          (512, 4, "complex"), (640, 34, "real")])
def test_gram_products_auto_on_cuda_follows_the_h200_probe(c, freqs, want):
    """On CUDA ``auto`` is real only where the H200 probe (run 6) measured it faster: every (side, matrices) of
    the probe's table with complex/real >= 1.16 is real, every one <= 0.96 complex."""
    from svbench.functional.gram import auto_products

    assert auto_products("cuda", freqs, c) == want
    assert auto_products("cpu", freqs, c) == ("real" if c >= 32 else "complex")  # CPU: by side alone


@pytest.mark.parametrize("c,n,s", [(512, 4, 1), (256, 8, 2), (384, 4, 1)])
def test_auto_on_cpu_stays_in_the_accuracy_class_for_wide_layers(c, n, s):
    """float32 LAPACK SVD measured 2.7e-6 sigma_max off at c = 512 (outside the 2e-6 class): ``auto`` takes eigh64
    there, whose error is the float32 transfer rounding; against the float64 SVs of the same kernel."""
    w = torch.randn(c, c // s, 3, 3, generator=torch.Generator().manual_seed(0))
    exact = conv_singular_values(w.double(), n, s, backend="svdvals64")
    got = conv_singular_values(w, n, s).double()
    assert (got - exact).abs().max() <= 2e-6 * exact[0]


def test_auto_keeps_wide_stride_two_layers_inside_the_accuracy_class_on_cpu():
    """A 4x-wide stride-2 transfer shape beyond 64 channels: the float32 LAPACK SVD was measured 2.0e-6 sigma_max off
    at 96 x 384 (the class limit; 2.1e-6 for WRN-16-10's rank-192 tt cores), so ``auto`` takes the float64 Gram."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(96, 96, 3, 3, generator=g) / 30
    want = conv_singular_values(w.double(), 16, 2, backend="svdvals64")
    got = conv_singular_values(w, 16, 2)
    assert float((got.double() - want).abs().max() / want[0]) <= 2e-7



@pytest.mark.parametrize("c_out,c_in", [(64, 160), (160, 64)])
def test_auto_takes_the_float64_gram_from_two_and_a_half_to_one(c_out, c_in):
    """2.5:1 transfer matrices (wide and tall): the float32 LAPACK SVD measured 1.5-1.7e-6 sigma_max off there (10
    seeds, session 10), ``eigh64`` was faster; ``auto`` takes it and lands ~30x closer to float64."""
    w = torch.randn(c_out, c_in, 3, 3, generator=torch.Generator().manual_seed(1)) / (3 * c_in**0.5)
    want = conv_singular_values(w.double(), 8, 1, backend="svdvals64")
    got = conv_singular_values(w, 8, 1)
    assert float((got.double() - want).abs().max() / want[0]) <= 2e-7


def test_auto_on_64_bit_input_keeps_the_oracle_accuracy_on_a_cpu():
    """float64 kernels take LAPACK's float64 SVD whatever the shape: the float64 Gram route (``eigh64``, chosen for
    float32 input on wide and large matrices) squares the condition number and left a zero SV at 1.8e-8 sigma_max
    (found by the random-shape oracle test: 4 x 12 polyphase matrices, a 1 x 1 stride-2 kernel)."""
    assert resolve_backend("auto", 4, 12, "cpu", dtype=torch.float64) == ("svdvals", None)
    assert resolve_backend("auto", 160, 160, "cpu", dtype=torch.complex128) == ("svdvals", None)
    assert resolve_backend("auto", 4, 12, "cpu", dtype=torch.float32) == ("eigh64", None)
    assert describe_backend("auto", 64, 256, "cpu", dtype=torch.float64) == "svdvals (auto)"
    for c_out, c_in, k, n, s in [(4, 3, 1, 2, 2), (6, 6, 3, 8, 2), (3, 9, 3, 6, 1)]:
        w = torch.randn(c_out, c_in, k, k, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        got = conv_singular_values(w, n, s)
        want = oracle_singular_values(circular_conv(w, s), (c_in, n, n))
        assert (got - want).abs().max() <= 1e-10 * want[0], (c_out, c_in, k, n, s)


def test_sigma_max_of_64_bit_weights_keeps_the_fast_route_and_its_accuracy():
    """conv_sigma_max (certificates, control reports) on float64 weights keeps the float64 Gram on wide matrices:
    sigma_max from it agrees with the float64 SVD's to ~1e-15 (only SVs near zero lose digits there)."""
    from svbench.functional.spectrum import conv_sigma_max

    w = torch.randn(16, 16, 3, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    fast = conv_sigma_max(w, 8, 2)  # 16 x 64 polyphase matrices: eigh64
    svd = conv_sigma_max(w, 8, 2, backend="svdvals")
    assert abs(float(fast) - float(svd)) <= 1e-13 * float(svd)
