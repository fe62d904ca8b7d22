"""TT conv (Senderovich et al., NeurIPS 2022) against the float64 oracle of the COMPOSED layer."""

import pytest
import torch
from torch import nn

from svbench.errors import UnsupportedShape
from svbench.functional.oracle import oracle_singular_values
from svbench.functional.tt import CHOLESKY_MAX_DEFECT, compose_kernel, fold_cores, folded_cores, tt_svd
from svbench.methods import create_method
from svbench.methods.base import LayerSpec
from svbench.methods.tt import TTConv2d, TTMethod, tt_layer_singular_values, tt_ranks


def _random_tt(c_in, c_out, r1, r2, k=3, stride=1, padding_mode="circular", seed=0, forward_mode="factored"):
    g = torch.Generator().manual_seed(seed)
    layer = TTConv2d(c_in, c_out, k, stride, padding_mode=padding_mode, r1=r1, r2=r2, forward_mode=forward_mode,
                     dtype=torch.float64)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))  # NOT orthonormal
    return layer


GEOMS = [
    # c_in, c_out, r1, r2, stride
    (6, 6, 3, 3, 1),
    (7, 9, 4, 4, 1),
    (9, 7, 4, 5, 2),
    (5, 8, 5, 3, 2),  # r1 == c_in: no K1
    (8, 5, 3, 5, 1),  # r2 == c_out: no K3
]


@pytest.mark.parametrize("c_in,c_out,r1,r2,s", GEOMS)
@pytest.mark.parametrize("padding_mode", ["circular", "zeros"])
def test_theorem1_composed_svs_equal_folded_core_svs(c_in, c_out, r1, r2, s, padding_mode):
    n = 8
    layer = _random_tt(c_in, c_out, r1, r2, stride=s, padding_mode=padding_mode)
    composed = oracle_singular_values(layer, (c_in, n, n))
    layer.orthogonalize()
    core = nn.Conv2d(r1, r2, 3, s, padding=1, padding_mode=padding_mode, bias=False).double()
    with torch.no_grad():
        core.weight.copy_(layer.k2)
    core_svs = oracle_singular_values(core, (r1, n, n))
    top = composed[: core_svs.numel()]
    assert (top - core_svs).abs().max() <= 1e-10 * composed[0]
    rest = composed[core_svs.numel():]
    assert rest.numel() == 0 or rest.abs().max() <= 1e-10 * composed[0]


def test_folded_cores_are_fold_cores_cores_with_one_qr_per_core_shape(monkeypatch):
    """The SV routes fold with R factors only, outer cores of one shape in one batched QR: the same middle cores as
    ``fold_cores`` (a missing outer core stays the identity), 3 QR calls for the 3 distinct outer-core shapes here."""
    g = torch.Generator().manual_seed(3)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    layers = [(r(6, 4), r(5, 4, 3, 3), r(5, 7)), (r(6, 4), r(5, 4, 3, 3), r(5, 7)), (None, r(5, 6, 1, 1), r(5, 7)),
              (r(8, 3), r(2, 3, 3, 3), None), (None, r(4, 4, 3, 3), None)]
    # Gaussian outer cores are far from orthonormal (CholeskyQR refused): every shape goes through the QR
    for k in (layers[0][0], layers[0][2].T, layers[3][0]):
        assert _defect(k) > CHOLESKY_MAX_DEFECT
    calls = []
    real = torch.linalg.qr
    monkeypatch.setattr(torch.linalg, "qr", lambda a, *x, **k: calls.append(tuple(a.shape)) or real(a, *x, **k))
    got = folded_cores(layers)
    assert sorted(calls) == sorted([(2, 6, 4), (1, 8, 3), (3, 7, 5)])
    monkeypatch.setattr(torch.linalg, "qr", real)
    for (k1, k2, k3), core in zip(layers, got):
        want = fold_cores(k1, k2, k3)[0]
        assert core.shape == want.shape and torch.allclose(core, want, atol=1e-12)
    assert folded_cores([]) == []


def _defect(k):
    k = k.detach()
    gram = k.T @ k
    d = gram.diagonal().rsqrt()
    return float((gram * d[:, None] * d[None, :] - torch.eye(k.shape[1], dtype=k.dtype)).abs().sum(1).max())


def _near_orthonormal(rows, cols, eps, g, dtype=torch.float64):
    q = torch.linalg.qr(torch.randn(rows, cols, generator=g, dtype=torch.float64)).Q
    scale = torch.linspace(0.5, 3.0, cols, dtype=torch.float64)  # column scaling is allowed (Jacobi-scaled check)
    return ((q + eps * torch.randn(rows, cols, generator=g, dtype=torch.float64)) * scale).to(dtype)


def test_folded_cores_take_near_orthonormal_outer_cores_through_cholesky_qr(monkeypatch):
    """Outer cores near orthonormal up to column scaling (the TT paper's regime) skip the QR: R comes from the
    Cholesky factor of K^T K, and the core equals fold_cores's up to the signs of its rows and columns."""
    g = torch.Generator().manual_seed(5)
    k1, k3 = _near_orthonormal(12, 5, 0.02, g), _near_orthonormal(9, 4, 0.02, g).T
    k2 = torch.randn(4, 5, 3, 3, generator=g, dtype=torch.float64)
    assert _defect(k1) <= CHOLESKY_MAX_DEFECT and _defect(k3.T) <= CHOLESKY_MAX_DEFECT
    calls = []
    real = torch.linalg.qr
    monkeypatch.setattr(torch.linalg, "qr", lambda a, *x, **k: calls.append(tuple(a.shape)) or real(a, *x, **k))
    (core,) = folded_cores([(k1, k2, k3)])
    assert calls == []
    monkeypatch.setattr(torch.linalg, "qr", real)
    want = fold_cores(k1, k2, k3)[0]
    assert torch.allclose(core.abs(), want.abs(), atol=1e-12)


def test_folded_cores_qr_route_skips_cholesky_qr(monkeypatch):
    """``route="qr"`` (the paired timings' baseline) takes the Householder QR even for orthonormal cores; an unknown
    route is refused."""
    g = torch.Generator().manual_seed(8)
    k1 = _near_orthonormal(10, 4, 0.0, g)
    k2 = torch.randn(3, 4, 3, 3, generator=g, dtype=torch.float64)
    calls = []
    real = torch.linalg.qr
    monkeypatch.setattr(torch.linalg, "qr", lambda a, *x, **k: calls.append(tuple(a.shape)) or real(a, *x, **k))
    (core,) = folded_cores([(k1, k2, None)], route="qr")
    assert calls == [(1, 10, 4)]
    monkeypatch.setattr(torch.linalg, "qr", real)
    assert torch.allclose(core, fold_cores(k1, k2, None)[0], atol=1e-12)
    with pytest.raises(ValueError, match="route must be one of"):
        folded_cores([(k1, k2, None)], route="cholesky")


def test_folded_cores_fall_back_to_qr_for_ill_conditioned_or_wide_outer_cores(monkeypatch):
    """One matrix of a batch too far from orthonormal sends the whole batch to the QR; wide cores (rank above the
    channels) have a singular Gram and always take the QR."""
    g = torch.Generator().manual_seed(6)
    good = _near_orthonormal(10, 4, 0.01, g)
    bad = good.clone()
    bad[:, 3] = bad[:, 2] + 1e-3 * bad[:, 3]  # two nearly parallel columns: kappa ~ 1e3
    wide = torch.randn(3, 5, generator=g, dtype=torch.float64)
    k2 = torch.randn(4, 4, 3, 3, generator=g, dtype=torch.float64)
    calls = []
    real = torch.linalg.qr
    monkeypatch.setattr(torch.linalg, "qr", lambda a, *x, **k: calls.append(tuple(a.shape)) or real(a, *x, **k))
    got = folded_cores([(good, k2, None), (bad, k2, None), (wide, torch.randn(4, 5, 3, 3, dtype=torch.float64), None)])
    assert sorted(calls) == [(1, 3, 5), (2, 10, 4)]
    monkeypatch.setattr(torch.linalg, "qr", real)
    for (k1, core2), core in zip([(good, k2), (bad, k2)], got):
        assert torch.allclose(core, fold_cores(k1, core2, None)[0], atol=1e-12)


def test_cholesky_fold_keeps_float32_svs_in_the_accuracy_class():
    """float32 near-orthonormal cores folded by CholeskyQR: the layer's SVs against the float64 dense oracle stay
    far inside the issue-6 class (2e-6 sigma_max)."""
    g = torch.Generator().manual_seed(7)
    layer = TTConv2d(12, 10, 3, r1=6, r2=5, padding=1, padding_mode="circular", bias=False)
    with torch.no_grad():
        layer.k1.copy_(_near_orthonormal(12, 6, 0.05, g, torch.float32))
        layer.k3.copy_(_near_orthonormal(10, 5, 0.05, g, torch.float32).T)
    assert _defect(layer.k1.double()) <= CHOLESKY_MAX_DEFECT
    n = 6
    got = tt_layer_singular_values(layer, n)
    want = oracle_singular_values(layer.double(), (12, n, n))
    assert (got.double().sort(descending=True).values - want).abs().max() <= 2e-6 * want[0]


@pytest.mark.parametrize("c_in,c_out,r1,r2,s", GEOMS)
def test_layer_svs_all_svs_of_composed_layer(c_in, c_out, r1, r2, s):
    n = 8
    layer = _random_tt(c_in, c_out, r1, r2, stride=s)
    composed = oracle_singular_values(layer, (c_in, n, n))
    got = tt_layer_singular_values(layer, n)  # folds functionally, without touching the layer
    assert got.numel() == composed.numel()
    assert (got - composed).abs().max() <= 1e-10 * composed[0]
    assert torch.allclose(tt_layer_singular_values(layer, n, pieces=3), got, rtol=0, atol=1e-12)  # chunks: same


def test_tt_chunks_option_is_validated_and_keeps_the_values():
    from svbench.errors import UserError

    with pytest.raises(UserError, match="chunks must be >= 1"):
        create_method("tt", chunks=0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, padding_mode="circular"),
                          nn.Conv2d(8, 8, 3, padding=1, padding_mode="circular"))
    base = create_method("tt", rank=4, init="orthogonal", keep_first=False)
    model = base.wrap(model).double()
    assert all(isinstance(m, TTConv2d) for m in model)
    a = base.network_svs(model, (8, 8, 8))
    b = create_method("tt", rank=4, init="orthogonal", keep_first=False, chunks=5).network_svs(model, (8, 8, 8))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-12) for k in a)


@pytest.mark.parametrize("mode", ["factored", "full"])
def test_orthogonalize_keeps_the_function(mode):
    layer = _random_tt(7, 9, 4, 4, stride=2, padding_mode="zeros", forward_mode=mode)
    x = torch.randn(2, 7, 8, 8, dtype=torch.float64)
    y0 = layer(x)
    w0 = layer.full_kernel().detach().clone()
    layer.orthogonalize()
    assert (layer(x) - y0).abs().max() <= 1e-10 * y0.abs().max()
    assert (layer.full_kernel() - w0).abs().max() <= 1e-12 * w0.abs().max()
    d1, d3 = layer.orthogonality_defect()
    assert d1 < 1e-24 and d3 < 1e-24


def test_forward_modes_agree_and_auto_picks_one():
    layer = _random_tt(16, 16, 4, 4, stride=1)
    x = torch.randn(3, 16, 8, 8, dtype=torch.float64)
    layer.forward_mode = "factored"
    a = layer(x)
    layer.forward_mode = "full"
    b = layer(x)
    layer.forward_mode = "auto"
    c = layer(x)
    assert torch.allclose(a, b, atol=1e-10) and torch.allclose(a, c, atol=1e-10)


def test_plain_when_ranks_cover_channels():
    layer = TTConv2d(4, 6, 3, r1=4, r2=6)
    assert layer.is_plain and layer.k1 is None and layer.k3 is None
    assert "ordinary conv" in repr(layer)
    assert tt_ranks(4, 6, 8, None) == (4, 6)
    assert tt_ranks(64, 32, None, 0.25) == (16, 8)


def test_tt_svd_reconstructs_exact_tt_rank_kernel():
    g = torch.Generator().manual_seed(5)
    k1 = torch.randn(10, 3, generator=g, dtype=torch.float64)
    k2 = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)
    k3 = torch.randn(4, 12, generator=g, dtype=torch.float64)
    w = compose_kernel(k1, k2, k3)
    a1, a2, a3, err = tt_svd(w, 3, 4)
    assert err < 1e-12
    assert (compose_kernel(a1, a2, a3) - w).abs().max() < 1e-10 * w.abs().max()
    _, q1, q3t = fold_cores(a1, a2, a3)
    assert torch.allclose(q1.T @ q1, torch.eye(3, dtype=torch.float64), atol=1e-12)


def test_gradients_reach_all_cores():
    layer = TTConv2d(6, 8, 3, r1=3, r2=4, forward_mode="factored")
    layer(torch.randn(2, 6, 8, 8)).square().sum().backward()
    for name in ("k1", "k2", "k3", "bias"):
        g = getattr(layer, name).grad
        assert g is not None and g.abs().sum() > 0, name
    layer.zero_grad()
    layer.forward_mode = "full"
    layer(torch.randn(2, 6, 8, 8)).square().sum().backward()
    assert all(getattr(layer, n).grad.abs().sum() > 0 for n in ("k1", "k2", "k3"))


def test_state_dict_round_trip():
    a = _random_tt(7, 9, 4, 4, stride=2)
    b = TTConv2d(7, 9, 3, 2, padding_mode="circular", r1=4, r2=4, dtype=torch.float64)
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 7, 8, 8, dtype=torch.float64)
    assert torch.equal(a(x), b(x))
    assert set(a.state_dict()) == {"k1", "k2", "k3", "bias"}


def test_penalty_zero_for_orthonormal_cores_and_formula():
    m = create_method("tt", rank=3, penalty_lambda=10.0, keep_first=False, init="orthogonal")
    model = m.wrap(nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1)))
    pen = m.penalty(model)
    assert pen is not None and float(pen.detach()) < 1e-10
    layers = [lay for _, lay in m.tt_layers(model)]
    with torch.no_grad():
        layers[0].k1.mul_(2.0)  # K1^T K1 = 4 I: defect 9 * r1
    expected = 10.0 / (2 * 3**2 + 2 * 3**2) * (9 * 3)
    assert float(m.penalty(model).detach()) == pytest.approx(expected, rel=1e-5)
    assert create_method("tt", penalty_lambda=0.0).penalty(model) is None


def test_penalty_guard_no_tt_layers():
    m = create_method("tt", rank=64, penalty_lambda=1e5)
    model = m.wrap(nn.Sequential(nn.Conv2d(3, 4, 3)))
    assert m.penalty(model) is None  # S = 0 is guarded, not a division by zero


def test_wrap_converts_reports_and_keeps_unsupported():
    m = create_method("tt", rank=4, init="tt_svd")
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=4), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=2, dilation=2),
    )
    x = torch.randn(2, 3, 8, 8)
    model = m.wrap(model)
    rows = {r["layer"]: r for r in m.conversion}
    assert not rows["0"]["converted"] and "first" in rows["0"]["reason"]
    assert rows["2"]["converted"] and 0 <= rows["2"]["rel_error"] < 1
    assert not rows["4"]["converted"] and "grouped" in rows["4"]["reason"]
    assert not rows["6"]["converted"] and "dilated" in rows["6"]["reason"]
    assert isinstance(model[2], TTConv2d)
    model(x)


def test_tt_svd_init_of_full_rank_is_exact():
    conv = nn.Conv2d(6, 8, 3, padding=1).double()
    layer, err = TTConv2d.from_conv(conv, 6, 8, "tt_svd")
    assert err < 1e-12
    x = torch.randn(2, 6, 8, 8, dtype=torch.float64)
    assert torch.allclose(layer(x), conv(x), atol=1e-10)


@pytest.mark.parametrize("control", ["clip", "divide"])
@pytest.mark.parametrize("padding_mode,stride", [("circular", 1), ("circular", 2), ("zeros", 1)])
def test_control_reports_true_sigma_of_composed_layer(control, padding_mode, stride):
    torch.manual_seed(0)
    m = create_method("tt", rank=3, keep_first=False, control=control, target=0.5, every=1, init="orthogonal")
    conv = nn.Conv2d(6, 8, 3, stride, padding=1, padding_mode=padding_mode)
    model = m.wrap(nn.Sequential(conv)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))  # drift away from orthonormal, as training does
    model(torch.zeros(1, 6, 8, 8, dtype=torch.float64))
    (rep,) = m.after_step(model, 1)
    layer = model[0]
    oracle = float(oracle_singular_values(layer, (6, 8, 8))[0])
    if padding_mode == "circular":
        assert rep["sigma_max_after"] == pytest.approx(oracle, rel=1e-8)
        if control == "divide":
            assert rep["sigma_max_after"] <= 0.5 * (1 + 1e-8)
    else:
        assert rep["sigma_max_after"] >= oracle * (1 - 1e-10)  # a guaranteed bound for zero padding
        if control == "divide":
            assert oracle <= 0.5 * (1 + 1e-8)
    assert rep["overshoot"] == pytest.approx(rep["sigma_max_after"] / 0.5)


def test_make_layer_has_non_orthonormal_cores_and_same_function():
    m = create_method("tt", rank_scale=0.5)
    spec = LayerSpec(8, 8, 3, 8)
    layer = m.make_layer(spec, seed=0, dtype=torch.float64)
    d1, d3 = layer.orthogonality_defect()
    assert d1 > 1e-3 and d3 > 1e-3
    got = m.layer_svs(layer, 8)
    assert (got - oracle_singular_values(layer, spec.in_shape)).abs().max() < 1e-10 * got[0]


def test_spectrum_of_tt_checkpoint(tmp_path):
    from svbench.checkpoint.spectrum import checkpoint_spectrum

    layer = _random_tt(6, 8, 3, 4, stride=1).float()
    model = nn.Sequential(layer)
    path = tmp_path / "tt.pt"
    torch.save(model.state_dict(), path)
    (spec,) = checkpoint_spectrum(path, input_size=8)
    assert spec.kind == "tt"
    exact = oracle_singular_values(layer, (6, 8, 8))
    assert spec.svs.numel() == exact.numel()
    assert (spec.svs - exact).abs().max() <= 1e-5 * exact[0]


@pytest.mark.parametrize("kwargs", [{"groups": 2}, {"dilation": 2}])
def test_from_conv_refuses_grouped_or_dilated_convs(kwargs):
    """TT-SVD of a grouped conv's (c_out, c_in / g, k, k) weight would build an ungrouped layer of another operator."""
    conv = torch.nn.Conv2d(4, 4, 3, padding=1, bias=False, **kwargs)
    with pytest.raises(UnsupportedShape, match="grouped or dilated"):
        TTConv2d.from_conv(conv, 2, 2)


def test_spectrum_of_tt_checkpoint_with_its_model_reads_strides_and_sizes(tt_checkpoint):
    """A model trained with ``tt`` saves TT cores where the registered model has convs: ``--model`` takes each TT
    layer's real input size and stride from the model's conv of the same name (was: refused as not matching, so
    the spectrum fell back to stride 1 on the given size); the SVs are the TT layer's operator's (dense oracle)."""
    from svbench.checkpoint.spectrum import checkpoint_spectrum

    def strided_net(in_channels=3, image_size=8, **_):
        return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1, padding_mode="circular"),
                             nn.Conv2d(8, 8, 3, stride=2, padding=1, padding_mode="circular"),
                             nn.Conv2d(8, 6, 3, padding=1, padding_mode="circular"))

    model, path = tt_checkpoint("strided_test_net", strided_net, seed=0)  # cores off orthonormal: the fold carries
    spectra = {s.name: s for s in checkpoint_spectrum(path, model="strided_test_net", input_shape=(3, 8, 8))}
    assert [spectra[n].kind for n in ("0", "1", "2")] == ["conv", "tt", "tt"]
    assert (spectra["1"].n, spectra["1"].stride, spectra["2"].n, spectra["2"].stride) == (8, 2, 4, 1)
    assert spectra["1"].geometry_source == spectra["2"].geometry_source == "model hooks"
    for name, in_shape in (("1", (8, 8, 8)), ("2", (8, 4, 4))):
        layer = model[int(name)].double()
        exact = oracle_singular_values(layer, in_shape)
        got = spectra[name].svs
        assert got.numel() == exact.numel()
        assert (got - exact).abs().max() <= 1e-5 * exact[0], name


def test_spectrum_of_cayley_checkpoint_is_its_orthogonal_operator(tmp_path, monkeypatch):
    """A model trained with ``cayley`` stores each layer's weight and scale: the layer's operator is the Cayley
    transform of that weight, not a conv with it. Its spectrum is the implemented operator's (dense oracle: all 1),
    with the stride and input size from ``--model`` (was: the raw weight read as a conv kernel, sigma_max 1.6-4.8 on
    a trained small CNN)."""
    from svbench.checkpoint import find_convs
    from svbench.checkpoint.spectrum import checkpoint_spectrum
    from svbench.methods import create_method
    from svbench.models.registry import MODELS

    def strided_net(in_channels=3, image_size=8, **_):
        return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1, bias=False),
                             nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False),
                             nn.Conv2d(8, 6, 3, padding=1, bias=False))

    monkeypatch.setitem(MODELS._items, "strided_cayley_net", strided_net)
    torch.manual_seed(0)
    model = create_method("cayley").wrap(strided_net())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    path = tmp_path / "c.pt"
    torch.save(model.state_dict(), path)
    assert [e.kind for e in find_convs(torch.load(path))] == ["cayley"] * 3
    spectra = {s.name: s for s in checkpoint_spectrum(path, model="strided_cayley_net", input_shape=(3, 8, 8))}
    assert [(spectra[n].n, spectra[n].stride, spectra[n].padding) for n in "012"] == [
        (8, 1, "circular"), (8, 2, "circular"), (4, 1, "circular")]
    for name, in_shape in (("0", (3, 8, 8)), ("1", (8, 8, 8)), ("2", (8, 4, 4))):
        exact = oracle_singular_values(model[int(name)].double().eval(), in_shape)
        got = spectra[name].svs
        assert got.numel() == exact.numel(), name
        assert (got - exact).abs().max() <= 1e-9, name
        assert abs(float(got[0]) - 1) < 1e-9 and spectra[name].sigma_max_bound is None
    raw = torch.linalg.matrix_norm(torch.fft.fft2(model[2].weight.detach().double(), s=(4, 4)).permute(2, 3, 0, 1),
                                   ord=2).max()
    assert abs(float(raw) - 1) > 0.1  # reading the stored weight as a kernel would have been wrong


@pytest.mark.parametrize("c_in,c_out,k,r1,r2", [(64, 128, 1, 32, 64), (4, 12, 1, 2, 6), (3, 20, 1, 3, 10),
                                                (12, 4, 1, 6, 2), (2, 30, 3, 1, 12)])
def test_tt_svd_of_a_kernel_with_fewer_directions_than_the_rank(c_in, c_out, k, r1, r2):
    """A 1 x 1 conv that widens (a ResNet shortcut, 64 -> 128 at rank_scale 0.5: r2 = 64 > r1 k^2 = 32): the output
    unfolding has fewer columns than r2. K3 came out short and wrap() raised on svbench's own resnet18; now the cores
    have the layer's ranks, K1 and K3 orthonormal, the kernel reproduced as well as r1 allows, and the TT layer's SVs
    are its dense operator's."""
    torch.manual_seed(0)
    w = torch.randn(c_out, c_in, k, k, dtype=torch.float64)
    k1, k2, k3, err = tt_svd(w, r1, r2)
    assert k1.shape == (c_in, r1) and k2.shape == (r2, r1, k, k) and k3.shape == (r2, c_out)
    assert torch.allclose(k1.T @ k1, torch.eye(r1, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(k3 @ k3.T, torch.eye(r2, dtype=torch.float64), atol=1e-12)
    if r1 == c_in:
        assert err < 1e-12  # nothing cut along the input mode, and r2 covers what is left
    conv = nn.Conv2d(c_in, c_out, k, padding=k // 2, padding_mode="circular", bias=False)
    conv = conv.double()
    with torch.no_grad():
        conv.weight.copy_(w)
    layer, _ = TTConv2d.from_conv(conv, r1, r2)
    n = 4
    got = TTMethod().layer_svs(layer, n).double()
    exact = oracle_singular_values(layer, (c_in, n, n))
    assert got.shape == exact.shape and (got - exact).abs().max() <= 1e-10 * exact[0]


def test_wrap_converts_every_conv_of_resnet18_shortcuts_included():
    from svbench.models import build_model

    method = TTMethod()
    method.wrap(build_model("resnet18"))
    rows = {r["layer"]: r for r in method.conversion}
    assert rows["layers.2.shortcut.0"]["converted"] and rows["layers.2.shortcut.0"]["r2"] > 32
    assert sum(r["converted"] for r in rows.values()) == 19  # all but the first conv (keep_first)
