"""Grouped and dilated convs: the dense-equivalent kernel is the same operator, and the SVs from the per-group
batched route match the float64 dense oracle of torch's own grouped / dilated conv."""

import pytest
import torch
from torch import nn

from svbench.functional.grouped import (
    dense_equivalent_kernel,
    dilate_kernel,
    group_kernels,
    grouped_conv_singular_values,
)
from svbench.functional.oracle import oracle_singular_values
from svbench.methods import create_method

CASES = [  # c_in, c_out, k, n, stride, groups, dilation
    (4, 4, 3, 8, 1, 4, 1),  # depthwise
    (6, 4, 3, 8, 2, 2, 1),
    (4, 6, 3, 10, 1, 1, 2),
    (4, 8, 3, 9, 1, 2, 3),  # dilated span 7 on n = 9
    (6, 6, 5, 12, 3, 3, 2),
    (2, 4, 1, 6, 2, 2, 1),
]


def _conv(c_in, c_out, k, n, stride, groups, dilation, seed=0, padding="circular", dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Conv2d(c_in, c_out, k, stride, dilation * (k // 2), dilation, groups, bias=False,
                     padding_mode=padding).to(dtype)


@pytest.mark.parametrize("case", CASES)
def test_dense_equivalent_kernel_is_the_same_operator(case):
    c_in, c_out, k, n, stride, groups, dilation = case
    conv = _conv(*case)
    dense = dense_equivalent_kernel(conv.weight.detach(), groups, dilation)
    span = dense.shape[-1]
    assert dense.shape == (c_out, c_in, span, span) and span == dilation * (k - 1) + 1
    twin = nn.Conv2d(c_in, c_out, span, stride, span // 2, bias=False, padding_mode="circular").double()
    with torch.no_grad():
        twin.weight.copy_(dense)
        x = torch.randn(2, c_in, n, n, dtype=torch.float64)
        assert torch.allclose(conv(x), twin(x), atol=1e-12)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("backend", ["auto", "svdvals", "eigh64"])
def test_grouped_svs_match_the_oracle(case, backend):
    c_in, c_out, k, n, stride, groups, dilation = case
    conv = _conv(*case)
    oracle = oracle_singular_values(conv, (c_in, n, n))
    got = grouped_conv_singular_values(conv.weight.detach().float(), n, stride, groups=groups, dilation=dilation,
                                       backend=backend)
    assert got.numel() == oracle.numel()
    assert (got[:-1] >= got[1:]).all()
    assert float((got.double() - oracle).abs().max()) <= 2e-6 * float(oracle[0])


def test_helpers_shapes_and_bad_groups():
    w = torch.randn(6, 2, 3, 3)
    assert group_kernels(w, 3).shape == (3, 2, 2, 3, 3)
    assert dilate_kernel(w, 2).shape == (6, 2, 5, 5) and torch.equal(dilate_kernel(w, 2)[..., ::2, ::2], w)
    assert dilate_kernel(w, 1) is w
    with pytest.raises(ValueError, match="must divide"):
        group_kernels(w, 4)


@pytest.mark.parametrize("method", ["sedghi", "reference"])
def test_network_svs_include_grouped_and_dilated_layers(method):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                          nn.Conv2d(8, 8, 3, padding=2, dilation=2), nn.Conv2d(8, 4, 3, stride=2, padding=1, groups=2))
    out = create_method(method).network_svs(model, (3, 8, 8))
    assert list(out) == ["0", "2", "3", "4"]
    for name, n in [("2", 8), ("3", 8), ("4", 8)]:
        layer = model.get_submodule(name)
        circ = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                         layer.dilation, layer.groups, bias=False, padding_mode="circular")
        circ.weight = layer.weight
        oracle = oracle_singular_values(circ, (layer.in_channels, n, n))
        assert float((out[name].double() - oracle).abs().max()) <= 2e-6 * float(oracle[0])


@pytest.mark.parametrize("padding", ["circular", "zeros"])
@pytest.mark.parametrize("bound", ["fft", "delattre2024"])
def test_gram_bounds_grouped_and_dilated_convs(padding, bound):
    gram = create_method("gram", bound=bound, precision="float64")
    for case in CASES:
        c_in, c_out, k, n, stride, groups, dilation = case
        if padding == "zeros" and bound == "delattre2024" and stride > 1:
            continue
        conv = _conv(*case, seed=2, padding=padding, dtype=torch.float32)
        exact = float(oracle_singular_values(conv, (c_in, n, n))[0])
        assert float(gram.layer_svs(conv, n)[0]) >= exact * (1 - 1e-9), (c_in, c_out, k, n, stride, groups, dilation)


def test_gram_bound_cast_rounds_up():
    """float64 certificate -> float32 result: never half an ulp below the value it bounds."""
    from svbench.methods.gram import round_up_to

    b = torch.tensor([1.2015614735753377, 0.5, 1 / 3], dtype=torch.float64)
    got = round_up_to(b, torch.float32)
    assert got.dtype == torch.float32 and (got.double() >= b).all()
    assert (got.double() - b).abs().max() <= 2.4e-7  # at most one float32 ulp above
    assert got[1] == 0.5  # exactly representable values stay
    assert round_up_to(b, torch.float64) is not None and torch.equal(round_up_to(b, torch.float64), b)


def test_gram_grouped_bound_is_the_largest_block_bound():
    from svbench.functional.gram import gram_iteration_bound, gram_iteration_bound_grouped

    torch.manual_seed(3)
    w = torch.randn(6, 2, 3, 3, dtype=torch.float64)
    per_block = max(float(gram_iteration_bound(b, 8, 2, 6)) for b in group_kernels(w, 3))
    assert float(gram_iteration_bound_grouped(w, 8, 2, 3, 6)) == pytest.approx(per_block, rel=1e-12)


@pytest.mark.parametrize("shape", [(1, 6), (6, 1), (1, 1)])
def test_auto_takes_the_norm_route_on_rows_and_columns(shape):
    """auto on 1 x q / p x 1 matrices: the only SV is the 2-norm -- same values as the SVD, no solver."""
    from svbench.functional.spectrum import describe_backend, matrix_singular_values, resolve_backend

    assert resolve_backend("auto", *shape, "cpu") == ("norm", None)
    assert describe_backend("auto", *shape, "cpu") == "norm (auto)"
    assert resolve_backend("svdvals", *shape, "cpu") == ("svdvals", None)  # explicit backends are kept
    torch.manual_seed(4)
    a = torch.randn(5, *shape, dtype=torch.complex64)
    got = matrix_singular_values(a, "auto")
    assert got.shape == (5, 1) and got.dtype == torch.float32
    assert torch.allclose(got, matrix_singular_values(a, "svdvals64").float(), rtol=1e-6)


@pytest.mark.parametrize("padding", ["circular", "zeros"])
def test_power_iteration_on_grouped_and_dilated_convs(padding):
    """The estimate never exceeds sigma_max and converges to it (the adjoint is exact for groups too)."""
    power = create_method("power", iters=300)
    for case in CASES:
        c_in, c_out, k, n, stride, groups, dilation = case
        conv = _conv(*case, seed=5, padding=padding)
        exact = float(oracle_singular_values(conv, (c_in, n, n))[0])
        est = float(power.layer_svs(conv, n)[0])
        assert exact * (1 - 2e-3) <= est <= exact * (1 + 1e-9), (c_in, c_out, k, n, stride, groups, dilation)


def test_power_adjoint_is_exact_for_groups():
    from svbench.functional.power import conv_adjoint, conv_forward

    torch.manual_seed(6)
    w = torch.randn(6, 2, 3, 3, dtype=torch.float64)
    for mode in ("circular", "zeros"):
        x, y = torch.randn(1, 6, 8, 8, dtype=torch.float64), torch.randn(1, 6, 4, 4, dtype=torch.float64)
        lhs = (conv_forward(x, w, 2, 2, mode, 2, 3) * y).sum()
        rhs = (x * conv_adjoint(y, w, 8, 2, 2, mode, 2, 3)).sum()
        assert float(lhs) == pytest.approx(float(rhs), rel=1e-12)


def test_certified_layer_bound_for_grouped_and_dilated_convs():
    from svbench.metrics.certified import layer_bound

    for padding in ("circular", "zeros"):
        for case in CASES:
            c_in, c_out, k, n, stride, groups, dilation = case
            conv = _conv(*case, seed=7, padding=padding, dtype=torch.float32)
            exact = float(oracle_singular_values(conv, (c_in, n, n))[0])
            bound, _ = layer_bound(conv, (c_in, n, n))
            assert bound >= exact * (1 - 1e-9)
            if padding == "circular":
                assert bound == pytest.approx(exact, rel=1e-9)


@pytest.mark.parametrize("case", CASES)
def test_grouped_clip_matches_the_textbook_pass_on_the_dense_equivalent(case):
    """Sedghi's pass on a grouped / dilated conv, block by block on unique frequencies, equals the textbook pass
    (full fft2, SVD, ifft2, crop) on the dense equivalent kernel, projected back onto the layer's own taps."""
    from svbench.functional.clip import clip_kernel, clip_kernel_naive
    from svbench.functional.grouped import grouped_from_dense

    c_in, c_out, k, n, stride, groups, dilation = case
    w = _conv(*case).weight.detach()
    assert torch.equal(grouped_from_dense(dense_equivalent_kernel(w, groups, dilation), groups, dilation), w)
    target = 0.5 * float(grouped_conv_singular_values(w, n, stride, groups=groups, dilation=dilation)[0])
    fast = clip_kernel(w, n, target, stride, groups=groups, dilation=dilation)
    naive = grouped_from_dense(clip_kernel_naive(dense_equivalent_kernel(w, groups, dilation), n, target, stride),
                               groups, dilation)
    assert fast.shape == w.shape
    assert torch.allclose(fast, naive, atol=1e-10)


def test_grouped_clip_without_crop_meets_the_target():
    """Kernel taps covering the whole grid: no crop, so one pass lands on the target exactly (block by block)."""
    from svbench.functional.clip import sedghi_clip

    torch.manual_seed(8)
    w = torch.randn(6, 2, 5, 5, dtype=torch.float64)
    res = sedghi_clip(w, 5, 1.0, groups=3)
    assert res.sigma_max_before > 1.5 and res.sigma_max_after == pytest.approx(1.0, rel=1e-9)
    conv = nn.Conv2d(6, 6, 5, padding=2, groups=3, bias=False, padding_mode="circular").double()
    with torch.no_grad():
        conv.weight.copy_(res.weight)
    assert float(oracle_singular_values(conv, (6, 5, 5))[0]) == pytest.approx(1.0, rel=1e-9)


def test_sedghi_control_clips_grouped_and_dilated_layers():
    torch.manual_seed(9)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, padding_mode="circular"),
                          nn.Conv2d(8, 8, 3, padding=1, groups=8, padding_mode="circular"),
                          nn.Conv2d(8, 8, 3, padding=2, dilation=2, padding_mode="circular"))
    with torch.no_grad():
        for m in model:
            m.weight.mul_(5)
    sedghi = create_method("sedghi", clip_to=1.0, clip_every=1)
    sedghi.wrap(model)
    model(torch.zeros(1, 3, 8, 8))
    reports = {r["layer"]: r for r in sedghi.after_step(model, 1)}
    assert set(reports) == {"0", "1", "2"}
    for name in ("1", "2"):
        r = reports[name]
        assert r["sigma_max_after"] < r["sigma_max_before"]
        layer = model.get_submodule(name)
        exact = float(oracle_singular_values(layer, (8, 8, 8))[0])
        assert r["sigma_max_after"] == pytest.approx(exact, rel=1e-5)  # the report holds the TRUE sigma after


def test_gram_control_and_penalty_cover_grouped_and_dilated_layers():
    torch.manual_seed(10)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=4),
                          nn.Conv2d(8, 8, 3, padding=2, dilation=2, padding_mode="circular"))
    with torch.no_grad():
        for m in model:
            m.weight.mul_(5)
    gram = create_method("gram", target=1.0, every=1, penalty_weight=1.0)
    gram.wrap(model)
    model(torch.zeros(1, 3, 8, 8))
    pen = gram.penalty(model)
    pen.backward()
    assert float(pen.detach()) > 3 and all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in model)
    reports = {r["layer"]: r for r in gram.after_step(model, 1)}
    assert set(reports) == {"0", "1", "2"}
    for r in reports.values():  # rescaled by a guaranteed bound: the true sigma ends at or below the target
        assert r["sigma_max_after"] <= 1.0 + 1e-5
    exact = float(oracle_singular_values(model[2], (8, 8, 8))[0])  # circular, dilated: exact
    assert reports["2"]["sigma_max_after"] == pytest.approx(exact, rel=1e-5)
