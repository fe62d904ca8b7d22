"""gram, power and cayley against the float64 oracle (methods.md sections 5-7, 10)."""

import pytest
import torch
from conftest import circular_conv, zero_conv
from torch import nn

from svbench.errors import UserError
from svbench.functional.cayley import space_to_depth
from svbench.functional.gram import delattre2024_bound, gram_iteration_bound, gram_iteration_bound_batched
from svbench.functional.oracle import oracle_singular_values
from svbench.functional.power import conv_adjoint, conv_forward, conv_power_iteration
from svbench.functional.spectrum import conv_sigma_max
from svbench.methods import create_method
from svbench.methods.cayley import CayleyConv2d
from svbench.methods.power import bn_lipschitz


def _w(c_out, c_in, k=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(c_out, c_in, k, k, generator=g, dtype=torch.float64).to(dtype)


# ---- gram ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("c_out,c_in,k,s", [(8, 8, 3, 1), (6, 4, 3, 1), (4, 6, 5, 1), (5, 3, 3, 2), (3, 5, 3, 2)])
def test_gram_bound_interval_and_monotone(c_out, c_in, k, s):
    n = 8
    for seed in range(3):
        w = _w(c_out, c_in, k, seed)
        exact = float(conv_sigma_max(w, n, s))
        rho = min(c_out, c_in * s * s)
        prev = float("inf")
        for t in range(1, 9):
            b = float(gram_iteration_bound(w, n, s, t))
            assert b >= exact * (1 - 1e-12), (t, b, exact)
            assert b <= rho ** (2.0 ** -(t + 1)) * exact * (1 + 1e-12)
            assert b <= prev * (1 + 1e-12)  # does not increase with T
            prev = b
        assert float(gram_iteration_bound(w, n, s, 6)) <= exact * (1 + 1e-3)


def test_gram_bound_float32_and_batched():
    ws = torch.stack([_w(16, 16, 3, seed, torch.float32) for seed in range(4)])
    batched = gram_iteration_bound_batched(ws, 8, 1, 6)
    for i in range(4):
        exact = float(conv_sigma_max(ws[i].double(), 8))
        assert float(batched[i]) == pytest.approx(float(gram_iteration_bound(ws[i], 8, 1, 6)), rel=1e-5)
        assert exact * (1 - 1e-5) <= float(batched[i]) <= exact * (1 + 1e-3)


@pytest.mark.parametrize("shape", [(7, 5), (5, 7), (6, 6)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
def test_3xtf32_gram_product_is_float32_accurate(shape, dtype):
    """B^H B by the hi/lo split equals the float64 product to float32 accuracy (on CPU the TF32 switch does not
    apply, so this checks the split and the complex-as-real assembly; the GPU run measures the TF32 error)."""
    from svbench.functional.gram import hermitian_gram_3xtf32

    b = torch.randn(3, *shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    exact = b.to(torch.complex128 if dtype.is_complex else torch.float64)
    exact = exact.mH @ exact
    got = hermitian_gram_3xtf32(b)
    assert got.dtype == dtype and got.shape == exact.shape
    assert (got - exact).abs().max() <= 1e-6 * exact.abs().max()
    with pytest.raises(UserError, match="float32"):
        hermitian_gram_3xtf32(b.to(torch.complex128 if dtype.is_complex else torch.float64))


@pytest.mark.parametrize("c_out,c_in,s", [(8, 8, 1), (6, 4, 1), (3, 5, 2)])
def test_gram_3xtf32_precision_bounds_like_float32(c_out, c_in, s):
    w = _w(c_out, c_in, 3, 0, torch.float32)
    conv = circular_conv(w, s)
    exact = float(oracle_singular_values(conv, (c_in, 8, 8))[0])
    plain = float(create_method("gram").layer_svs(conv, 8)[0])
    split = create_method("gram", precision="3xtf32")
    got = float(split.layer_svs(conv, 8)[0])
    assert got == pytest.approx(plain, rel=2e-6) and got >= exact * (1 - 2e-6)
    assert "3xtf32" in split.backend()
    model = nn.Sequential(conv, circular_conv(_w(c_out, c_out, 3, 1, torch.float32), 1))
    batched = create_method("gram", precision="3xtf32", batch_layers=True).network_svs(model, (c_in, 8, 8))
    looped = split.network_svs(model, (c_in, 8, 8))
    assert all(float(batched[k][0]) == pytest.approx(float(looped[k][0]), rel=2e-6) for k in looped)


@pytest.mark.parametrize("batch_layers", [False, True])
def test_gram_products_option_same_bounds_and_penalty(batch_layers):
    """``products: complex`` (the paper code's one complex matmul per step) and the default two-real-matmul route
    give the same bounds for layers, grouped layers and networks, and the same penalty gradient."""
    convs = [circular_conv(_w(6, 4, 3, 0), 1), circular_conv(_w(4, 6, 3, 1), 2),
             nn.Conv2d(4, 6, 3, padding=1, padding_mode="circular", groups=2, dtype=torch.float64)]
    model = nn.Sequential(*convs)
    real = create_method("gram", batch_layers=batch_layers, penalty_weight=1.0)
    cplx = create_method("gram", products="complex", batch_layers=batch_layers, penalty_weight=1.0)
    assert "complex products" in cplx.backend() and "complex" not in real.backend()
    a, b = real.network_svs(model, (4, 8, 8)), cplx.network_svs(model, (4, 8, 8))
    assert all(torch.allclose(a[k], b[k], rtol=1e-13) for k in a)
    exact = oracle_singular_values(convs[0], (4, 8, 8))[0]
    assert float(a["0"][0]) >= float(exact) * (1 - 1e-12)
    grads = []
    for m in (real, cplx):
        net = m.wrap(nn.Sequential(*[nn.Conv2d(4, 4, 3, padding=1, padding_mode="circular", dtype=torch.float64)
                                     for _ in range(2)]))
        torch.manual_seed(0)
        for layer in net:
            nn.init.normal_(layer.weight, std=2.0)
        net(torch.zeros(1, 4, 8, 8, dtype=torch.float64))
        m.penalty(net).backward()
        grads.append(torch.cat([layer.weight.grad.flatten() for layer in net]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-10)


def test_gram_3xtf32_needs_float32_and_keeps_the_penalty_differentiable():
    conv = circular_conv(_w(4, 4), 1)  # float64
    with pytest.raises(UserError, match="3xtf32"):
        create_method("gram", precision="3xtf32").layer_svs(conv, 8)
    model = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1, padding_mode="circular", groups=3),
                          nn.Conv2d(3, 3, 3, padding=1, padding_mode="circular"))
    m = create_method("gram", precision="3xtf32", penalty_weight=1.0)
    model = m.wrap(model)
    model(torch.zeros(1, 3, 8, 8))
    with torch.no_grad():
        for layer in model:
            layer.weight.mul_(20.0)
    pen = m.penalty(model)
    pen.backward()
    assert all(layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0 for layer in model)


def test_gram_is_differentiable():
    w = _w(6, 6).requires_grad_()
    gram_iteration_bound(w, 8, 1, 6).backward()
    assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


def test_gram_on_zero_padded_layer_bounds_the_real_operator():
    m = create_method("gram")
    for seed in range(5):
        conv = zero_conv(_w(4, 4, 3, seed), 1)
        exact = float(oracle_singular_values(conv, (4, 6, 6))[0])
        assert float(m.layer_svs(conv, 6)[0]) >= exact * (1 - 1e-12)


@pytest.mark.parametrize("s", [1, 2])
def test_delattre2024_bounds_zero_padding_oracle(s):
    for seed in range(4):
        w = _w(5, 3, 3, seed)
        for n in (4, 6, 8):
            exact = float(oracle_singular_values(zero_conv(w, s), (3, n, n))[0])
            bounds = [float(delattre2024_bound(w, t)) for t in range(1, 5)]
            assert all(b >= exact * (1 - 1e-12) for b in bounds)
            assert bounds[-1] <= bounds[0] * (1 + 1e-12)
    # and the circular operator (any n) too
    w = _w(4, 4, 3, 9)
    assert float(delattre2024_bound(w, 4)) >= float(conv_sigma_max(w, 8)) * (1 - 1e-12)


def test_gram_control_claims_sigma_below_target():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, padding_mode="circular"), nn.ReLU(),
                          nn.Conv2d(6, 6, 3, stride=2, padding=1))
    m = create_method("gram", target=0.5, every=1, precision="float64")
    model = m.wrap(model)
    model(torch.zeros(1, 4, 8, 8))
    reports = m.after_step(model, 1)
    assert len(reports) == 2
    exact0 = float(oracle_singular_values(model[0], (4, 8, 8))[0])
    exact2 = float(oracle_singular_values(model[2], (6, 8, 8))[0])
    assert exact0 <= 0.5 * (1 + 1e-6) and exact2 <= 0.5 * (1 + 1e-6)
    assert reports[0]["sigma_max_after"] == pytest.approx(exact0, rel=1e-5)


def test_gram_penalty_threshold_form():
    model = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1, padding_mode="circular"))
    m = create_method("gram", penalty_weight=0.1)
    model = m.wrap(model)
    model(torch.zeros(1, 3, 8, 8))
    with torch.no_grad():
        model[0].weight.mul_(10.0)
    pen = m.penalty(model)
    b = float(gram_iteration_bound(model[0].weight.detach(), 8, 1, 6))
    assert b > 1 and float(pen.detach()) == pytest.approx(0.1 * b, rel=1e-5)
    pen.backward()
    assert model[0].weight.grad is not None
    with torch.no_grad():
        model[0].weight.mul_(1e-3)
    assert float(m.penalty(model).detach()) == 0.0  # below 1: F.threshold gives 0, not (b - 1)_+


# ---- power -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["zeros", "circular"])
@pytest.mark.parametrize("s,n,k", [(1, 8, 3), (2, 8, 3), (2, 7, 3), (1, 7, 5), (2, 8, 5)])
def test_adjoint_matches_autograd(mode, s, n, k):
    if mode == "circular" and n % s:
        return
    w = _w(4, 3, k)
    x = torch.randn(2, 3, n, n, dtype=torch.float64, requires_grad=True)
    y = conv_forward(x, w, s, k // 2, mode)
    g = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, g)
    assert torch.allclose(conv_adjoint(g, w, n, s, k // 2, mode), gx, atol=1e-12)


@pytest.mark.parametrize("mode,s,n", [("zeros", 1, 6), ("zeros", 2, 7), ("circular", 2, 8)])
def test_power_never_exceeds_and_converges(mode, s, n):
    w = _w(5, 3, 3, 1)  # sigma_2 / sigma_1 <= 0.95 here; the rate is (sigma_2 / sigma_1)^2
    conv = (zero_conv if mode == "zeros" else circular_conv)(w, s)
    exact = float(oracle_singular_values(conv, (3, n, n))[0])
    u = torch.randn(1, 3, n, n, dtype=torch.float64)
    for _ in range(100):
        est, u = conv_power_iteration(w, u, stride=s, padding=1, padding_mode=mode, iters=5)
        assert float(est) <= exact * (1 + 1e-12)
    assert float(est) == pytest.approx(exact, rel=1e-6)


def test_power_method_persistent_vector_improves():
    m = create_method("power", iters=2)
    conv = zero_conv(_w(8, 8, 3, 4), 1)
    exact = float(oracle_singular_values(conv, (8, 8, 8))[0])
    first = float(m.layer_svs(conv, 8)[0])
    for _ in range(100):
        last = float(m.layer_svs(conv, 8)[0])
    assert first <= last <= exact * (1 + 1e-12)
    assert last == pytest.approx(exact, rel=1e-4)


def test_power_division_reports_true_sigma_and_bn_linear_constraints():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 8 * 8, 10))
    with torch.no_grad():
        model[0].weight.mul_(20)
        model[1].weight.fill_(5.0)
        model[1].running_var.fill_(0.5)
        model[4].weight.mul_(50)
    m = create_method("power", conv_target=1.0, linear_target=2.0, bn_target=3.0, train_iters=50)
    model = m.wrap(model)
    model.eval()
    model(torch.zeros(1, 3, 8, 8))
    reports = {r["kind"]: r for r in m.after_step(model, 1)}
    assert float(bn_lipschitz(model[1])) == pytest.approx(3.0, rel=1e-6)
    lin_true = float(torch.linalg.matrix_norm(model[4].weight.detach().double(), ord=2))  # float64 SVD
    assert reports["linear"]["sigma_max_after"] == pytest.approx(lin_true, rel=1e-9)  # the true value is reported
    assert lin_true <= 2.0 * 1.05  # the estimate is from below, so the target can be exceeded a little
    conv_true = float(oracle_singular_values(model[0], (3, 8, 8))[0])
    assert reports["conv"]["sigma_max_after"] >= conv_true * (1 - 1e-6)  # zero padding: the n' bound
    assert reports["conv"]["estimate_before"] > 1.0


def test_power_presets():
    assert create_method("power", preset="wrn16-10-c100").config.targets() == (10.0, 3.9, 6.1)
    assert create_method("power", preset="vgg19", conv_target=2.0).config.targets() == (2.0, 1.5, 8.0)


def test_reshaped_norm_is_between_one_and_k_times_below():
    m = create_method("power", operator="reshaped", iters=200)
    conv = zero_conv(_w(4, 4, 3, 1), 1)
    exact = float(oracle_singular_values(conv, (4, 8, 8))[0])
    r = float(m.layer_svs(conv, 8)[0])
    assert r <= exact * (1 + 1e-9) and exact <= 3 * r * (1 + 1e-9)


# ---- cayley ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("c_in,c_out,s", [(6, 6, 1), (5, 8, 1), (8, 5, 1), (3, 6, 2), (4, 4, 2)])
def test_cayley_is_orthogonal(c_in, c_out, s):
    layer = CayleyConv2d(c_in, c_out, 3, s, bias=False, dtype=torch.float64)
    n = 8
    svs = oracle_singular_values(layer, (c_in, n, n))
    assert (svs - 1).abs().max() <= 1e-12
    m = create_method("cayley")
    got = m.layer_svs(layer, n)
    assert got.numel() == svs.numel() and (got - 1).abs().max() <= 1e-12
    layer32 = CayleyConv2d(c_in, c_out, 3, s, bias=False)
    x = torch.randn(4, c_in, n, n)
    y = layer32(x)
    if c_out >= c_in * s * s:
        assert torch.allclose(y.flatten(1).norm(dim=1), x.flatten(1).norm(dim=1), rtol=1e-5)
    svs32 = oracle_singular_values(layer32, (c_in, n, n))
    assert (svs32 - 1).abs().max() <= 1e-5


def test_cayley_alpha_in_optimizer_orthogonal_after_sgd_and_any_resolution():
    torch.manual_seed(0)
    layer = CayleyConv2d(4, 4, 3)
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    assert any(p is layer.alpha for g in opt.param_groups for p in g["params"])
    a0 = float(layer.alpha.detach())
    for _ in range(25):
        x = torch.randn(8, 4, 8, 8)
        loss = (layer(x) - x.flip(-1)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(layer.alpha.detach()) != a0
    layer.eval()
    for n in (8, 6, 12):  # a resolution change rebuilds the transfer
        svs = oracle_singular_values(layer, (4, n, n))
        assert (svs - 1).abs().max() <= 1e-4


def test_cayley_eval_cache_invalidated_by_parameter_change():
    layer = CayleyConv2d(3, 3, 3, dtype=torch.float64).eval()
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    y1 = layer(x)
    with torch.no_grad():
        layer.weight.add_(0.5)
    assert not torch.allclose(layer(x), y1)


def test_space_to_depth_is_a_permutation():
    x = torch.randn(2, 3, 8, 8)
    y = space_to_depth(x)
    assert y.shape == (2, 12, 4, 4) and torch.equal(y.flatten().sort().values, x.flatten().sort().values)


def test_cayley_wrap_model():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1))
    m = create_method("cayley")
    model = m.wrap(model)
    assert all(r["converted"] for r in m.conversion)
    assert isinstance(model[2], CayleyConv2d) and model(torch.randn(2, 3, 8, 8)).shape == (2, 16, 4, 4)


@pytest.mark.parametrize("mode", ["zeros", "circular"])
@pytest.mark.parametrize("kernel,padding,s,n", [((1, 3), (0, 1), 1, 8), ((3, 1), (1, 0), 1, 8),
                                                 ((3, 5), (1, 2), 2, 8), ((1, 3), (0, 1), 2, 7)])
def test_power_on_kernels_and_paddings_that_differ_per_axis(mode, kernel, padding, s, n):
    """A 1 x 3 / 3 x 1 kernel (Inception-style) padded per axis: the adjoint matches autograd and the estimate converges
    to the layer's sigma_max from below (was: refused, the iteration took one int padding for every side)."""
    if mode == "circular" and n % s:
        return
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, kernel, stride=s, padding=padding, padding_mode=mode, bias=False).double()
    w = conv.weight.detach()
    x = torch.randn(2, 3, n, n, dtype=torch.float64, requires_grad=True)
    y = conv_forward(x, w, s, padding, mode)
    assert torch.equal(y, conv(x))
    g = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, g)
    assert torch.allclose(conv_adjoint(g, w, n, s, padding, mode), gx, atol=1e-12)
    exact = float(oracle_singular_values(conv, (3, n, n))[0])
    est = float(create_method("power", iters=2000).layer_svs(conv, n))
    assert exact * (1 - 1e-6) <= est <= exact * (1 + 1e-12)
