"""The Gram bound's first product from the kernel's channel correlations (``first="kernel"``, functional/gram.py):
the same bound as through the transfer matrices (float64 to 1e-12, float32 to rounding), an upper bound on the
float64 oracle's sigma_max, the same gradient, and ``auto`` taking it where the flop count says so."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from svbench.errors import UserError
from svbench.functional.gram import (
    _unique_transfer,
    auto_first,
    gram_iteration_bound,
    gram_iteration_bound_batched,
    gram_iteration_bound_grouped,
    gram_iteration_max,
)
from svbench.functional.oracle import dense_operator
from svbench.methods import create_method
from svbench.methods.base import model_padding

# (c_in, c_out, k, n, stride): square, tall, wide, strides 1-3, kernels 1-5, a kernel larger than its grid (folded),
# a kernel no larger than its stride (one transfer matrix for every frequency)
SHAPES = [(6, 6, 3, 8, 1), (4, 9, 3, 6, 1), (9, 4, 3, 6, 1), (5, 7, 3, 8, 2), (7, 3, 3, 8, 2), (3, 5, 5, 9, 3),
          (4, 4, 5, 4, 1), (5, 6, 2, 8, 2), (6, 4, 1, 8, 1), (3, 8, 4, 6, 2), (4, 5, 5, 6, 2)]


def _oracle_sigma_max(w: torch.Tensor, n: int, stride: int) -> float:
    """sigma_max of the circular conv on n x n from its dense float64 matrix (impulse responses)."""
    k = w.shape[-1]
    w = w.double()
    mat = dense_operator(lambda x: F.conv2d(F.pad(x, (0, k - 1, 0, k - 1), mode="circular"), w, stride=stride),
                         (w.shape[1], n, n))
    return float(torch.linalg.matrix_norm(mat, ord=2))


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("products", ["real", "complex"])
def test_kernel_first_product_gives_the_transfer_bound(shape, products):
    c_in, c_out, k, n, stride = shape
    g = torch.Generator().manual_seed(sum(shape))
    w = torch.randn(c_out, c_in, k, k, generator=g, dtype=torch.float64)
    kern = gram_iteration_bound(w, n, stride, 6, products=products, first="kernel", screen="off")
    tran = gram_iteration_bound(w, n, stride, 6, products=products, first="transfer", screen="off")
    assert float(abs(kern - tran) / tran) < 1e-12
    sigma = _oracle_sigma_max(w, n, stride)
    rho = min(c_out, c_in * stride**2)  # the bound is within rho^(2^-(T+1)) of sigma_max
    assert sigma * (1 - 1e-12) <= float(kern) <= sigma * rho ** (2**-7) * (1 + 1e-12)
    w32 = w.float()
    k32 = gram_iteration_bound(w32, n, stride, 6, products=products, first="kernel")
    t32 = gram_iteration_bound(w32, n, stride, 6, products=products, first="transfer")
    assert k32.dtype == torch.float32 and float(abs(k32 - t32) / t32) < 2e-6


def test_kernel_first_product_of_every_frequency_matches_the_transfer_matrices():
    """Not only the maximum: every frequency's first product (the real-form packing, tall and wide)."""
    from svbench.functional.gram import _first_product, _kernel_first_product
    from svbench.functional.transfer import unique_frequency_taps

    g = torch.Generator().manual_seed(3)
    for c_out, c_in, stride in ((5, 3, 1), (3, 5, 1), (4, 3, 2)):
        w = torch.randn(c_out, c_in, 3, 3, generator=g, dtype=torch.float64)
        taps, m, idx, _ = unique_frequency_taps(w, 8, stride)
        for real_form in (True, False):
            gk, lk = _kernel_first_product(taps[None], m, idx, real_form)
            gt, lt = _first_product(_unique_transfer(w, 8, stride), "real" if real_form else "complex", real_form)
            full_k = gk * torch.exp(lk)[:, None, None]
            full_t = gt * torch.exp(lt)[:, None, None]
            assert torch.allclose(full_k, full_t, rtol=1e-12, atol=1e-12)


def test_batched_and_grouped_bounds_take_the_kernel_path_alike():
    g = torch.Generator().manual_seed(1)
    ws = torch.randn(3, 12, 8, 3, 3, generator=g, dtype=torch.float64)
    kern = gram_iteration_bound_batched(ws, 8, 2, first="kernel")
    tran = gram_iteration_bound_batched(ws, 8, 2, first="transfer")
    assert kern.shape == (3,) and torch.allclose(kern, tran, rtol=1e-12)
    wg = torch.randn(12, 4, 3, 3, generator=g, dtype=torch.float64)
    kern = gram_iteration_bound_grouped(wg, 8, 1, 3, first="kernel")
    assert kern.shape == () and torch.allclose(kern, gram_iteration_bound_grouped(wg, 8, 1, 3, first="transfer"),
                                               rtol=1e-12)
    blocks = max(float(gram_iteration_bound(b, 8, 1, first="transfer")) for b in wg.split(4))
    assert abs(float(kern) - blocks) < 1e-12 * blocks


def test_one_frequency_stands_for_all_when_the_kernel_is_no_larger_than_its_stride():
    g = torch.Generator().manual_seed(2)
    for k, stride in ((1, 1), (1, 2), (2, 2)):
        w = torch.randn(6, 4, k, k, generator=g, dtype=torch.float64)
        every = gram_iteration_max(_unique_transfer(w, 8, stride), 6, screen="off")  # all frequencies
        for first in ("kernel", "transfer"):
            assert abs(float(gram_iteration_bound(w, 8, stride, first=first)) - float(every)) < 1e-12 * float(every)


def test_kernel_first_gradient_is_the_transfer_gradient():
    g = torch.Generator().manual_seed(4)
    w0 = torch.randn(10, 6, 3, 3, generator=g, dtype=torch.float64)
    grads = {}
    for first in ("kernel", "transfer"):
        w = w0.clone().requires_grad_(True)
        gram_iteration_bound(w, 8, 2, first=first).backward()
        grads[first] = w.grad
    assert torch.allclose(grads["kernel"], grads["transfer"], rtol=1e-9, atol=1e-12)


def test_penalty_through_the_kernel_path_has_the_transfer_value_and_gradient():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, padding_mode="circular"), nn.ReLU(),
                          nn.Conv2d(16, 24, 3, padding=1, stride=2, padding_mode="circular")).double()
    values, grads = {}, {}
    for first in ("kernel", "transfer"):
        m = create_method("gram", penalty_weight=1.0, first=first)
        m.wrap(model)
        model(torch.zeros(1, 3, 16, 16, dtype=torch.float64))
        model.zero_grad()
        p = m.penalty(model)
        p.backward()
        values[first] = float(p.detach())
        grads[first] = [q.grad.clone() for q in model.parameters() if q.grad is not None]
    assert values["kernel"] > 0 and abs(values["kernel"] - values["transfer"]) < 1e-12 * values["transfer"]
    assert all(torch.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(grads["kernel"], grads["transfer"]))


def test_auto_takes_the_kernel_path_where_the_flop_count_says(monkeypatch):
    import svbench.functional.gram as gram

    calls = []
    real = gram._kernel_first_product

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(gram, "_kernel_first_product", spy)
    w = torch.randn(32, 32, 3, 3)
    gram_iteration_bound(w, 32, 1)  # 514 frequencies of side 32: the kernel route needs ~4x fewer flops
    assert len(calls) == 1
    gram_iteration_bound(torch.randn(32, 32, 5, 5), 4, 1)  # 5 x 5 taps on a 4 x 4 grid: transfer
    gram_iteration_bound(w, 16, 1, first="transfer")
    assert len(calls) == 1
    assert auto_first("cpu", 514, 160, 160, 3, True) == "kernel"
    assert auto_first("cpu", 10, 512, 512, 3, True) == "transfer"
    assert auto_first("cpu", 130, 64, 64, 5, True) == "transfer"  # measured 0.88x (scripts/gram-first-paired.py)
    assert auto_first("cpu", 130, 16, 16, 3, False) == "transfer"  # side 16: per-op overhead (0.91x with backward)
    assert auto_first("cuda", 514, 160, 160, 3, True) == "transfer"  # not measured on a GPU yet


def test_bad_first_setting_is_one_line():
    with pytest.raises(UserError, match="first product must be one of auto, kernel, transfer"):
        gram_iteration_bound(torch.randn(4, 4, 3, 3), 8, 1, first="fft")
    with pytest.raises((UserError, ValueError, TypeError)):
        create_method("gram", first="fft")


def test_kernel_path_keeps_the_triton_refusals():
    w = torch.randn(8, 8, 3, 3)
    with pytest.raises(UserError):
        gram_iteration_bound(w, 16, 1, products="triton", first="kernel")  # no CUDA here: one line
    with pytest.raises(UserError, match="products must be one of"):
        gram_iteration_bound(w, 16, 1, products="fast", first="kernel")


@pytest.mark.parametrize("t", [1, 2, 3, 5])
def test_offset_sums_by_gather_equal_the_index_add(t):
    """The deterministic gather form (used off the CPU) sums the same pairs as the CPU's index_add."""
    from svbench.functional.gram import _sum_by_offset

    pairs = torch.randn(2, t**4, 7, generator=torch.Generator().manual_seed(t), dtype=torch.float64)
    a = _sum_by_offset(pairs, t, gather=False)
    b = _sum_by_offset(pairs, t, gather=True)
    assert a.shape == (2, (2 * t - 1) ** 2, 7) and torch.allclose(a, b, rtol=1e-14, atol=1e-14)
    # the zero offset (the centre) holds the t^2 pairs (a, a)
    diag = pairs.view(2, t * t, t * t, 7).diagonal(dim1=1, dim2=2).sum(-1)
    assert torch.allclose(a[:, (2 * t - 1) ** 2 // 2], diag)


def test_backend_label_names_a_chosen_first_product():
    assert create_method("gram").backend() == "gram_iteration(T=6)"
    assert create_method("gram", first="transfer").backend() == "gram_iteration(T=6, first from transfer)"


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch's note on even kernels with 'same' padding
@settings(max_examples=40, deadline=None)
@given(
    c_out_per=st.integers(1, 4),
    c_in_per=st.integers(1, 4),
    groups=st.sampled_from([1, 2, 3]),
    k=st.sampled_from([1, 2, 3, 5]),
    m=st.integers(1, 5),
    stride=st.sampled_from([1, 2, 3]),
    dilation=st.sampled_from([1, 2]),
    padding=st.sampled_from(["circular", "zeros"]),
    seed=st.integers(0, 10_000),
)
def test_gram_method_routes_agree_and_bound_the_oracle(c_out_per, c_in_per, groups, k, m, stride, dilation, padding,
                                                       seed):
    """Random conv layers (grouped, dilated, strided, zero or circular padding) through the gram method: the kernel
    and transfer first products give the same float64 bound, and it is >= the dense float64 oracle's sigma_max."""
    n = m * stride
    span = dilation * (k - 1) + 1
    if span > n or (padding == "circular" and span // 2 > n):
        return
    torch.manual_seed(seed)
    conv = nn.Conv2d(c_in_per * groups, c_out_per * groups, k, stride=stride, padding=model_padding(span, stride),
                     dilation=dilation, groups=groups, bias=False, padding_mode=padding).double()
    bounds = {}
    for first in ("kernel", "transfer"):
        method = create_method("gram", first=first, precision="float64")
        bounds[first] = float(method.layer_svs(conv, n)[0])
    assert abs(bounds["kernel"] - bounds["transfer"]) <= 1e-12 * bounds["transfer"]
    with torch.no_grad():
        mat = dense_operator(conv, (c_in_per * groups, n, n))
    exact = float(torch.linalg.matrix_norm(mat, ord=2))
    assert bounds["kernel"] >= exact * (1 - 1e-12)
