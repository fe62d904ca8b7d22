"""Exact FFT spectra against the float64 dense impulse-response oracle (methods.md sections 1-2, 10)."""

import pytest
import torch
from conftest import circular_conv, zero_conv
from hypothesis import given, settings
from hypothesis import strategies as st

from svbench.functional.oracle import oracle_singular_values
from svbench.functional.spectrum import (
    BACKENDS,
    conv_sigma_max,
    conv_singular_values,
    zero_padding_bound_size,
    zero_padding_sigma_max_bound,
)
from svbench.functional.transfer import fold_kernel, num_singular_values, transfer_matrices
from svbench.methods import create_method

CASES = [
    # c_out, c_in, k, n, stride
    (4, 4, 3, 8, 1),
    (3, 3, 3, 6, 1),
    (4, 4, 5, 6, 1),
    (3, 4, 5, 8, 1),
    (5, 3, 1, 6, 1),
    (5, 3, 3, 8, 2),
    (3, 5, 3, 8, 2),
    (4, 4, 3, 8, 2),
    (6, 2, 5, 8, 2),
    (2, 3, 1, 8, 2),
]


def _kernel(c_out, c_in, k, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(c_out, c_in, k, k, generator=g, dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("c_out,c_in,k,n,s", CASES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_float64_matches_oracle(c_out, c_in, k, n, s, backend):
    w = _kernel(c_out, c_in, k)
    oracle = oracle_singular_values(circular_conv(w, s), (c_in, n, n))
    got = conv_singular_values(w, n, s, backend=backend)
    assert got.numel() == oracle.numel() == num_singular_values(c_in, c_out, n, s)
    assert (got - oracle).abs().max() <= 1e-10 * oracle[0]


@pytest.mark.parametrize("c_out,c_in,k,n,s", CASES)
def test_float32_svdvals_matches_oracle(c_out, c_in, k, n, s):
    w = _kernel(c_out, c_in, k)
    oracle = oracle_singular_values(circular_conv(w, s), (c_in, n, n))
    got = conv_singular_values(w.float(), n, s, backend="svdvals").double()
    assert (got - oracle).abs().max() <= 1e-5 * oracle[0]
    eig = conv_singular_values(w.float(), n, s, backend="eigh64").double()
    assert (eig - oracle).abs().max() <= 1e-5 * oracle[0]


@pytest.mark.parametrize("c_out,c_in,k,n,s", CASES)
def test_backends_agree_in_float32(c_out, c_in, k, n, s):
    """Both backends agree on well-conditioned SVs; the fp32 Gram route loses only the small ones."""
    w = _kernel(c_out, c_in, k, torch.float32)
    a = conv_singular_values(w, n, s, backend="svdvals")
    b = conv_singular_values(w, n, s, backend="eigh")
    s1 = a[0]
    assert (a - b).abs().max() <= 1e-3 * s1  # sqrt(u) * s1 class: the Gram route squares kappa
    big = a > 0.1 * s1
    assert ((a - b).abs()[big]).max() <= 1e-5 * s1


def test_rfft_multiset_equals_full_fft():
    for n in (5, 6, 7, 8):
        w = _kernel(3, 4, 3)
        a = conv_singular_values(w, n, 1, real_fft=True)
        b = conv_singular_values(w, n, 1, real_fft=False)
        assert torch.allclose(a, b, atol=1e-12)


def test_stride2_phases_with_outputs_is_wrong():
    """Regression: grouping the polyphase components with the OUTPUT channels (public TT code) gives wrong SVs."""
    c_out, c_in, k, n, s = 5, 3, 3, 8, 2
    w = _kernel(c_out, c_in, k, seed=7)
    oracle = oracle_singular_values(circular_conv(w, s), (c_in, n, n))
    m = n // s
    wp = fold_kernel(w, n).reshape(c_out, c_in, m, s, m, s).permute(0, 3, 5, 1, 2, 4)
    wrong = wp.reshape(c_out * s * s, c_in, m, m)  # phases grouped with outputs
    wrong_s1 = torch.linalg.svdvals(torch.fft.fft2(wrong).permute(2, 3, 0, 1)).max()
    assert abs(float(wrong_s1) - float(oracle[0])) > 1e-3 * float(oracle[0])
    assert abs(float(conv_sigma_max(w, n, s)) - float(oracle[0])) < 1e-10 * float(oracle[0])


def test_kernel_larger_than_input_is_folded_not_trimmed():
    """k > n: taps wrap modulo n. Oracle: the circular conv computed by tiling the input."""
    w = _kernel(2, 3, 5)
    n = 3

    def circ(x):
        xx = x.repeat(1, 1, 3, 3)
        return torch.nn.functional.conv2d(xx, w)[:, :, :n, :n]

    oracle = oracle_singular_values(circ, (3, n, n))
    got = conv_singular_values(w, n, 1)
    assert (got - oracle).abs().max() <= 1e-10 * oracle[0]
    trimmed = torch.linalg.svdvals(torch.fft.fft2(w, s=(n, n)).permute(2, 3, 0, 1)).max()
    assert abs(float(trimmed) - float(oracle[0])) > 1e-3


def test_laplacian_circular_sigma_at_n_is_not_a_zero_padding_bound():
    """methods.md 1.2: the zero-padded Laplacian at n=3 has sigma_1 = 6.83 > circular 6.00."""
    lap = torch.tensor([[0.0, -1, 0], [-1, 4, -1], [0, -1, 0]], dtype=torch.float64).view(1, 1, 3, 3)
    zero = float(oracle_singular_values(zero_conv(lap), (1, 3, 3))[0])
    circ = float(conv_sigma_max(lap, 3))
    assert zero == pytest.approx(6.83, abs=5e-3)
    assert circ == pytest.approx(6.0, abs=1e-9)
    assert zero > circ  # so circular at n is only a proxy
    assert float(zero_padding_sigma_max_bound(lap, 3)) >= zero  # n + k - 1 is a bound


@pytest.mark.parametrize("k,s", [(3, 1), (5, 1), (3, 2), (5, 2)])
def test_zero_padding_bound_holds(k, s):
    for seed in range(6):
        for n in (4, 6, 8):
            w = _kernel(3, 2, k, seed=seed)
            if k > n:
                continue
            exact = float(oracle_singular_values(zero_conv(w, s), (2, n, n))[0])
            assert float(zero_padding_sigma_max_bound(w, n, s)) >= exact * (1 - 1e-12)
    assert zero_padding_bound_size(8, 3, 2) == 10


@settings(max_examples=25, deadline=None)
@given(
    c_out=st.integers(1, 5),
    c_in=st.integers(1, 5),
    k=st.sampled_from([1, 3, 5]),
    m=st.integers(1, 4),
    s=st.sampled_from([1, 2]),
    seed=st.integers(0, 10_000),
)
def test_random_shapes_match_oracle(c_out, c_in, k, m, s, seed):
    n = m * s
    if k > n:
        return
    w = _kernel(c_out, c_in, k, seed=seed)
    oracle = oracle_singular_values(circular_conv(w, s), (c_in, n, n))
    got = conv_singular_values(w, n, s)
    assert got.numel() == oracle.numel()
    assert (got - oracle).abs().max() <= 1e-10 * max(float(oracle[0]), 1e-300)


def test_transfer_shape_and_layout():
    w = _kernel(5, 3, 3)
    spec = transfer_matrices(w, 8, 2)
    assert spec.shape == (4, 3, 5, 12)  # (m, m//2+1, c_out, c_in s^2)


def test_sedghi_method_on_seeded_layer():
    m = create_method("sedghi")
    from svbench.methods.base import LayerSpec, seeded_conv

    spec = LayerSpec(4, 6, 3, 8, 2)
    conv = seeded_conv(spec, seed=1, dtype=torch.float64)
    got = m.layer_svs(conv, 8)
    oracle = oracle_singular_values(conv, spec.in_shape)
    assert (got - oracle).abs().max() <= 1e-10 * oracle[0]
