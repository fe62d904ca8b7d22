"""Sedghi clipping: the spectral projection is exact; the crop breaks it; the true sigma is what is reported."""

import pytest
import torch
from conftest import circular_conv

from svbench.errors import UserError
from svbench.functional.clip import clip_correction, clip_kernel, clip_kernel_naive, clip_spectrum, sedghi_clip
from svbench.functional.oracle import oracle_singular_values
from svbench.functional.spectrum import conv_sigma_max
from svbench.functional.transfer import from_transfer_matrices, transfer_matrices
from svbench.methods import create_method


def _w(c_out=6, c_in=6, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(c_out, c_in, k, k, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("route", ["svd", "gram"])
@pytest.mark.parametrize("shape", [(6, 6), (4, 7), (7, 4)])
def test_projection_before_crop_is_exact(route, shape):
    w = _w(*shape)
    n, tau = 8, 1.0
    spec = clip_spectrum(transfer_matrices(w, n, 1), tau, route=route)
    full = from_transfer_matrices(spec, shape[1], 1, n)
    assert float(conv_sigma_max(full, n)) == pytest.approx(tau, rel=1e-9)


def test_gram_and_svd_routes_agree():
    w = _w(5, 7)
    a = clip_spectrum(transfer_matrices(w, 8, 1), 1.3, route="svd")
    b = clip_spectrum(transfer_matrices(w, 8, 1), 1.3, route="gram")
    assert torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("route", ["svd", "gram"])
@pytest.mark.parametrize("shape", [(6, 6), (4, 7), (7, 4)])
def test_clip_correction_is_the_part_above_the_target(route, shape):
    """C = A - U min(sigma, tau) V^H (textbook, full SVD in float64), built from the directions above tau only: a
    batch whose matrices have 0, some and all SVs above tau (the products use the batch's largest count)."""
    g = torch.Generator().manual_seed(1)
    a = torch.randn(5, *shape, generator=g, dtype=torch.complex128)
    s = torch.linalg.svdvals(a)
    a[0] *= 0.9 / s[0, 0]  # nothing above tau = 1
    a[1] *= 1.1 / s[1, -1]  # everything above
    u, s, vh = torch.linalg.svd(a, full_matrices=False)
    textbook = a - (u * s.clamp(max=1.0).unsqueeze(-2).to(a.dtype)) @ vh
    got = clip_correction(a, 1.0, route=route)
    assert got.shape == a.shape and torch.allclose(got, textbook, atol=1e-12)
    assert float(got[0].abs().max()) == 0.0
    below = clip_correction(a[:1], 1.0, route=route)  # no SV above tau anywhere: an exact zero of the right shape
    assert below.shape == (1, *shape) and not below.any()
    assert clip_correction(a[:0], 1.0, route=route).shape == (0, *shape)
    assign = clip_correction(a, 1.0, "assign", route=route)
    assert torch.allclose(assign, a - (u * torch.ones_like(s).unsqueeze(-2).to(a.dtype)) @ vh, atol=1e-12)


@pytest.mark.parametrize("route", ["svd", "gram"])
def test_sigma_before_is_read_off_the_pass_and_exact(route):
    """clip_kernels(sigma_before=...) gives each layer's exact circular sigma_max on its grid before the pass (the
    decomposition the pass makes anyway): stride 2, a frequency-free 1x1 stride-2 shortcut, grouped, dilated, and
    layers sharing calls; sedghi_clip reports it as sigma_max_before."""
    from svbench.functional.clip import clip_kernels
    from svbench.functional.grouped import layer_sigma_max

    g = torch.Generator().manual_seed(5)
    layers = [(torch.randn(6, 6, 3, 3, generator=g, dtype=torch.float64), 8, 1, 1, 1),
              (torch.randn(6, 6, 3, 3, generator=g, dtype=torch.float64), 8, 1, 1, 1),
              (torch.randn(8, 4, 3, 3, generator=g, dtype=torch.float64), 8, 2, 1, 1),
              (torch.randn(8, 4, 1, 1, generator=g, dtype=torch.float64), 8, 2, 1, 1),
              (torch.randn(6, 3, 3, 3, generator=g, dtype=torch.float64), 8, 1, 2, 1),
              (torch.randn(4, 4, 3, 3, generator=g, dtype=torch.float64), 8, 1, 1, 2)]
    seen = []
    clip_kernels(layers, 0.5, route=route, sigma_before=seen)
    want = [layer_sigma_max(w, n, s, "circular", grp, d) for w, n, s, grp, d in layers]
    assert seen == pytest.approx(want, rel=1e-10)
    res = sedghi_clip(layers[2][0], 8, 0.5, 2, route=route)
    assert res.sigma_max_before == pytest.approx(want[2], rel=1e-10)
    zero = sedghi_clip(layers[0][0], 8, 0.5, 1, route=route, padding="zeros")  # zeros: the n' bound, as before
    assert zero.sigma_max_before == pytest.approx(layer_sigma_max(layers[0][0], 8, 1, "zeros"), rel=1e-12)


def test_clip_correction_unknown_route_is_one_line():
    with pytest.raises(UserError, match="unknown clip route 'eig'; use 'svd' or 'gram'"):
        clip_correction(torch.randn(2, 3, 3), 1.0, route="eig")


@pytest.mark.parametrize("stride", [1, 2])
def test_reported_sigma_is_the_true_sigma_of_the_cropped_layer(stride):
    w = _w(6, 6)
    n = 8
    s1 = float(conv_sigma_max(w, n, stride))
    res = sedghi_clip(w, n, s1 / 2, stride)
    oracle = float(oracle_singular_values(circular_conv(res.weight, stride), (6, n, n))[0])
    assert res.sigma_max_after == pytest.approx(oracle, rel=1e-10)
    assert res.weight.shape == w.shape
    assert res.overshoot > 1.0  # the crop breaks the bound (methods.md section 3)
    assert res.sigma_max_before == pytest.approx(s1)


def test_assign_mode_and_bad_target():
    w = _w(4, 4)
    res = sedghi_clip(w, 8, 0.5, mode="assign")
    assert res.sigma_max_after > 0
    with pytest.raises(UserError):
        sedghi_clip(w, 8, 0.0)
    with pytest.raises(UserError, match="larger than the input"):
        sedghi_clip(_w(2, 2, 5), 4, 1.0)


def test_sedghi_after_step_reports_true_sigma():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1, padding_mode="circular"))
    m = create_method("sedghi", clip_to=0.5, clip_every=2)
    model = m.wrap(model)
    model(torch.zeros(1, 4, 8, 8))
    assert m.after_step(model, 1) == []
    reports = m.after_step(model, 2)
    assert len(reports) == 1
    r = reports[0]
    conv = model[0]
    oracle = float(oracle_singular_values(conv, (4, 8, 8))[0])
    assert r["sigma_max_after"] == pytest.approx(oracle, rel=1e-5)
    assert r["target"] == 0.5
    assert r["overshoot"] == pytest.approx(r["sigma_max_after"] / 0.5)


def _textbook(weight, n, target, stride, mode, route):
    """Clip on the whole rfft grid, inverse FFT to n x n, crop: the definition clip_kernel must reproduce."""
    c_out, c_in, kh, kw = weight.shape
    spec = clip_spectrum(transfer_matrices(weight, n, stride), target, mode, route=route)
    return from_transfer_matrices(spec, c_in, stride, n)[:, :, :kh, :kw]


@pytest.mark.parametrize("chunk", [None, 1, 5])
@pytest.mark.parametrize("mode,route", [("clip", "gram"), ("clip", "svd"), ("assign", "svd")])
@pytest.mark.parametrize("c_out,c_in,k,n,s", [(4, 3, 3, 8, 1), (4, 3, 3, 8, 2), (5, 2, 5, 6, 3), (3, 3, 1, 4, 1),
                                               (3, 4, 3, 7, 1), (6, 6, 5, 10, 2)])
def test_unique_frequency_clip_equals_the_textbook_pass(c_out, c_in, k, n, s, mode, route, chunk):
    w = torch.randn(c_out, c_in, k, k, dtype=torch.float64, generator=torch.Generator().manual_seed(k * n + s))
    want = _textbook(w, n, 1.0, s, mode, route)
    got = clip_kernel(w, n, 1.0, s, mode=mode, route=route, chunk=chunk)
    assert got.shape == w.shape
    assert (got - want).abs().max() <= 1e-12 * want.abs().max()
    naive = clip_kernel_naive(w, n, 1.0, s, mode=mode)
    assert (naive - want).abs().max() <= 1e-12 * want.abs().max()


def test_clip_kernel_bad_inputs():
    w = torch.randn(2, 2, 3, 3)
    with pytest.raises(UserError, match="target"):
        clip_kernel(w, 8, 0.0)
    with pytest.raises(UserError, match="larger than the input"):
        clip_kernel(w, 2, 1.0)
    with pytest.raises(UserError, match="larger than the input"):
        clip_kernel_naive(w, 2, 1.0)


def test_gesvda_clip_redoes_the_matrices_that_fail_the_check(monkeypatch):
    """The CUDA svd clip route with gesvda: a result that breaks sum sigma^2 = ||A||_F^2 is redone with gesvd.
    Exercised on CPU with a stand-in solver that returns garbage for one matrix under 'gesvda'."""
    from svbench.functional import clip as clip_mod

    real_svd = torch.linalg.svd
    calls = []

    def fake_svd(a, full_matrices=True, *, driver=None):
        calls.append((driver, a.shape[0]))
        u, s, vh = real_svd(a, full_matrices=full_matrices)
        if driver == "gesvda":
            s = s.clone()
            s[1] *= 3  # matrix 1 is wrong
        return u, s, vh

    monkeypatch.setattr(clip_mod.torch.linalg, "svd", fake_svd)
    a = torch.randn(4, 6, 5, dtype=torch.complex64, generator=torch.Generator().manual_seed(3))
    u, s, vh = clip_mod._svd(a, "gesvda")
    assert calls == [("gesvda", 4), ("gesvd", 1)]  # only the failed matrix is redone
    monkeypatch.setattr(clip_mod.torch.linalg, "svd", real_svd)
    assert torch.allclose((u * s.unsqueeze(-2).to(u.dtype)) @ vh, a, atol=1e-5)


def test_clip_driver_and_chunks_options_keep_the_result():
    w = torch.randn(6, 5, 3, 3, generator=torch.Generator().manual_seed(5))
    base = clip_kernel(w, 8, 1.0, route="svd")
    for kwargs in ({"driver": "gesvda"}, {"pieces": 3}, {"driver": "gesvda", "pieces": 1}):  # driver: CUDA only
        assert torch.allclose(clip_kernel(w, 8, 1.0, route="svd", **kwargs), base, atol=1e-6), kwargs
    with pytest.raises(UserError, match="chunks must be >= 1"):
        create_method("sedghi", chunks=0)
    model = torch.nn.Sequential(torch.nn.Conv2d(5, 6, 3, padding=1, padding_mode="circular", bias=False))
    with torch.no_grad():
        model[0].weight.copy_(w)
    m = create_method("sedghi", chunks=2, clip_route="svd", driver="gesvda")
    assert torch.allclose(m.network_clip(model, (5, 8, 8), 1.0)["0"], base, atol=1e-6)
    assert torch.allclose(m.network_svs(model, (5, 8, 8))["0"],
                          create_method("sedghi").network_svs(model, (5, 8, 8))["0"], atol=1e-6)


def test_clip_route_auto_resolves_by_device():
    from svbench.functional.clip import resolve_clip_route

    assert resolve_clip_route("auto", None, "cuda") == ("svd", "gesvda")  # H200: 7.6x the Gram-eig route
    assert resolve_clip_route("auto", "gesvd", "cuda") == ("svd", "gesvd")
    assert resolve_clip_route("auto", None, "cpu") == ("gram", None)
    assert resolve_clip_route("gram", None, "cuda") == ("gram", None)
    with pytest.raises(UserError, match="unknown clip route"):
        resolve_clip_route("qr", None, "cpu")
    w = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(6))
    assert torch.equal(clip_kernel(w, 8, 1.0), clip_kernel(w, 8, 1.0, route="gram"))
