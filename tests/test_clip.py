"""Sedghi clipping: the spectral projection is exact; the crop breaks it; the true sigma is what is reported."""

import pytest
import torch
from conftest import circular_conv

from svbench.errors import UserError
from svbench.functional.clip import clip_kernel, clip_kernel_naive, clip_spectrum, sedghi_clip
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
