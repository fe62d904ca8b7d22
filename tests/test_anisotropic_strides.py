"""Strides and dilations that differ between the axes ((1, 2) halves the width only; (2, 1) the height).

Before session 18 every route refused such a conv (bad input #54), after earlier sessions had read stride[0] for
both axes (192 SVs for an operator with 128). The engine now takes stride=(s1, s2): the polyphase split has
c_in s1 s2 inputs on the h/s1 x w/s2 grid. Every value here is checked against the float64 dense operator of the
layer itself (torch's own conv2d with that stride and dilation), or for a clip against the least-squares
projection of the dense operator's clipped SVs onto the layer's taps -- neither uses the FFT engine.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from svbench.errors import UnsupportedShape, UserError
from svbench.functional.clip import clip_kernel, clip_kernel_naive, clip_kernels, sedghi_clip
from svbench.functional.grouped import grouped_conv_singular_values, grouped_network_singular_values
from svbench.functional.oracle import dense_operator, oracle_singular_values
from svbench.functional.spectrum import conv_singular_values, zero_padding_bound_size
from svbench.functional.transfer import (
    as_stride,
    compact_polyphase_kernel,
    num_singular_values,
    polyphase_kernel,
    stride_text,
)
from svbench.methods import create_method, list_methods


def circular_conv(c_in: int, c_out: int, k, stride, dilation=1, groups: int = 1, seed: int = 0) -> nn.Conv2d:
    """A float64 circular conv whose padding d (k - 1) // 2 per axis gives the circular model's h/s1 x w/s2
    outputs (odd spans; an even span at stride s > 1 rounds down, as svbench's model does)."""
    kh, kw = (k, k) if isinstance(k, int) else k
    d1, d2 = (dilation, dilation) if isinstance(dilation, int) else dilation
    torch.manual_seed(seed)
    return nn.Conv2d(c_in, c_out, (kh, kw), stride, (d1 * (kh - 1) // 2, d2 * (kw - 1) // 2), dilation, groups,
                     bias=False, padding_mode="circular").double()


CASES = [((8, 8), 3, (1, 2)), ((8, 8), 3, (2, 1)), ((6, 8), (3, 5), (2, 4)), ((8, 12), 5, (2, 3)),
         ((4, 6), 1, (2, 3)), ((8, 6), (2, 3), (2, 3)), ((4, 8), 7, (1, 2)), ((6, 4), (3, 1), (3, 2))]


@pytest.mark.parametrize("grid,k,stride", CASES, ids=[f"{g[0]}x{g[1]}-k{k}-s{stride_text(s)}" for g, k, s in CASES])
def test_all_svs_with_a_stride_per_axis_match_the_dense_operator(grid, k, stride):
    """Square and rectangular grids, odd and even kernels, a kernel longer than the grid along one axis (7 on a
    4-tall grid: its taps wrap), a kernel no larger than its stride (frequency-free: one matrix for every
    frequency), 1 x 1: every SV, zeros included, in float64 (1e-12 sigma_max) and the default float32 route (the
    accuracy class, 2e-6); the full-fft2 route too."""
    conv = circular_conv(3, 5, k, stride, seed=sum(grid) + sum(stride))
    if isinstance(k, tuple) and k[0] % 2 == 0:
        conv.padding = (0, conv.padding[1])  # even span at stride 2: no padding, the model's h / s1 outputs
    want = oracle_singular_values(conv, (3, *grid))
    assert want.numel() == num_singular_values(3, 5, grid, stride)
    w = conv.weight.detach()
    for real_fft in (True, False):
        got = conv_singular_values(w, grid, stride, real_fft=real_fft)
        assert got.shape == want.shape and (got - want).abs().max() <= 1e-12 * want[0]
    got32 = conv_singular_values(w.float(), grid, stride)
    assert (got32.double() - want).abs().max() <= 2e-6 * want[0]


def test_a_square_stride_pair_is_the_int_stride_bit_for_bit():
    """(s, s) is the int s: the same polyphase kernels and SVs, bit for bit (square strides keep their code)."""
    torch.manual_seed(1)
    w = torch.randn(4, 3, 3, 3)
    assert as_stride((2, 2)) == 2 and as_stride([1, 2]) == (1, 2) and stride_text((1, 2)) == "1x2"
    for n in (8, (8, 12)):
        assert torch.equal(conv_singular_values(w, n, (2, 2)), conv_singular_values(w, n, 2))
        assert torch.equal(compact_polyphase_kernel(w, n, (2, 2)), compact_polyphase_kernel(w, n, 2))
        assert torch.equal(polyphase_kernel(w, n, (2, 2)), polyphase_kernel(w, n, 2))


def test_dilation_per_axis_and_groups_match_the_dense_operator():
    """A (1, 2) and a (2, 1) dilation, with groups and a per-axis stride: the grouped engine and the batched
    network call (layers of one transfer shape share a call) against each conv's dense operator."""
    convs = [(circular_conv(4, 6, 3, (1, 2), (1, 2), groups=2, seed=2), (8, 8)),
             (circular_conv(4, 6, 3, (2, 1), (2, 1), seed=3), (8, 6)),
             (circular_conv(4, 6, (3, 1), 1, (2, 1), seed=4), (6, 6))]
    layers = [(c.weight.detach(), grid, as_stride(c.stride), c.groups, as_stride(c.dilation)) for c, grid in convs]
    batched = grouped_network_singular_values(layers)
    for (conv, grid), got, (w, _, s, g, d) in zip(convs, batched, layers):
        want = oracle_singular_values(conv, (4, *grid))
        assert got.shape == want.shape and (got - want).abs().max() <= 1e-12 * want[0]
        one = grouped_conv_singular_values(w, grid, s, groups=g, dilation=d)
        assert (one - want).abs().max() <= 1e-12 * want[0]


@pytest.mark.parametrize("grid,k,stride", [((8, 8), (3, 3), (1, 2)), ((6, 8), (3, 5), (2, 1)),
                                           ((8, 6), (2, 3), (2, 3))])
def test_clip_with_a_stride_per_axis_is_the_projection_of_the_dense_clip(grid, k, stride):
    """Sedghi's pass with a per-axis stride, checked without the FFT engine: clip the dense float64 operator's
    SVs at the target, then the kernel of the layer's own taps closest to it in Frobenius norm (least squares over
    the operators of the unit kernels). The fast pass, the textbook one and ``sedghi_clip``'s sigma_max before and
    after."""
    gen = torch.Generator().manual_seed(sum(grid) + sum(k))
    weight = torch.randn(3, 3, *k, generator=gen, dtype=torch.float64)

    def fwd(w):
        kh, kw = w.shape[-2:]
        return lambda x: nn.functional.conv2d(
            nn.functional.pad(x, ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2), mode="circular"), w,
            stride=stride)[..., : grid[0] // stride[0], : grid[1] // stride[1]]

    shape = (3, *grid)
    u, s, vh = torch.linalg.svd(dense_operator(fwd(weight), shape), full_matrices=False)
    clipped = u @ torch.diag(s.clamp(max=1.0)) @ vh
    units = torch.eye(weight.numel(), dtype=torch.float64).view(-1, *weight.shape)
    basis = torch.stack([dense_operator(fwd(e), shape).reshape(-1) for e in units], 1)
    want = torch.linalg.lstsq(basis, clipped.reshape(-1, 1)).solution.view_as(weight)
    assert (clip_kernel(weight, grid, 1.0, stride) - want).abs().max() <= 1e-12
    assert (clip_kernel_naive(weight, grid, 1.0, stride) - want).abs().max() <= 1e-12
    res = sedghi_clip(weight, grid, 1.0, stride)
    assert res.sigma_max_before == pytest.approx(float(s[0]), rel=1e-12)
    assert res.sigma_max_after == pytest.approx(float(conv_singular_values(want, grid, stride)[0]), rel=1e-12)


def _model(mode: str = "circular") -> nn.Sequential:
    torch.manual_seed(6)
    return nn.Sequential(nn.Conv2d(3, 6, 3, stride=(1, 2), padding=1, padding_mode=mode),
                         nn.Conv2d(6, 8, (3, 5), stride=(2, 1), padding=(1, 2), padding_mode=mode),
                         nn.Conv2d(8, 8, 3, padding=(1, 2), dilation=(1, 2), groups=2, padding_mode=mode),
                         nn.ConvTranspose2d(8, 4, (2, 4), stride=(2, 4))).double().eval()


GRIDS = {"0": (3, 8, 16), "1": (6, 8, 8), "2": (8, 4, 8), "3": (8, 4, 8)}


@pytest.mark.parametrize("mode", ["circular", "zeros"])
@pytest.mark.parametrize("method", list_methods())
def test_every_method_on_per_axis_strides_against_the_dense_operator(method, mode):
    """Every method of the registry, ``network_svs`` on an 8 x 16 input through a (1, 2) stride, a (2, 1) stride,
    a (1, 2) dilation with groups and a (2, 4)-strided transposed conv: each conv against the dense float64
    operator of its circular model on its own grid (the layer itself for circular padding), by what the method
    provides. ``tt`` on its wrapped model (the (1, 2)-strided 3 x 3 conv and the (2, 1)-strided 3 x 5 one become TT
    layers with those strides -- the 3 x 5 one since session 19: its own operator; the grouped conv stays dense and
    is left out of tt's route, named in one warning). ``cayley``
    (its layers take one stride) refuses in one line."""
    from svbench.methods.base import circular_view

    options = {"iters": 300} if method == "power" else {"keep_first": False} if method == "tt" else {}
    m = create_method(method, **options)
    model = _model(mode)
    if method == "cayley":
        with pytest.raises(UnsupportedShape, match=r"conv '0'"):
            m.network_svs(model, (3, 8, 16))
        return
    grids = dict(GRIDS)
    if method == "tt":
        model = m.wrap(model).double().eval()
        assert [type(layer).__name__ for layer in model][:3] == ["TTConv2d", "TTConv2d", "Conv2d"]
        assert model[0].stride == (1, 2) and model[1].stride == (2, 1) and model[1].kernel_size == (3, 5)
        del grids["2"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = m.network_svs(model, (3, 8, 16))
    said = [str(w.message) for w in caught]
    assert (said == []) if method != "tt" else (len(said) == 1 and "2 (Conv2d, groups 2, dilation 1x2)" in said[0])
    assert set(got) == set(grids)
    for name, shape in grids.items():
        layer = model[int(name)]
        if method == "tt" and name in ("0", "1") and mode == "zeros":  # a TT layer's circular model: same cores
            layer = copy.deepcopy(layer)
            layer.padding_mode = "circular"
        want = oracle_singular_values(layer if name == "3" else circular_view(layer), shape)
        top = float(want[0])
        if m.provides == "all_svs":
            assert got[name].shape == want.shape and (got[name].double() - want).abs().max() <= 1e-12 * top, name
        elif m.provides == "upper_bound":
            assert top * (1 - 1e-6) <= float(got[name][0]) <= 1.05 * top, name
        elif m.provides == "estimate":
            assert 0.9 * top <= float(got[name][0]) <= top * (1 + 1e-9), name
        else:
            assert got[name].numel() == 0, name


@pytest.mark.parametrize("method", ["sedghi", "reference"])
def test_network_clip_with_per_axis_strides(method):
    """Each conv clipped on its own grid with its own per-axis stride and dilation: the kernel of the single-layer
    pass (checked against the dense projection above)."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, stride=(1, 2), padding=1, padding_mode="circular"),
                          nn.Conv2d(4, 4, 3, padding=(2, 1), dilation=(2, 1), padding_mode="circular"),
                          nn.Conv2d(4, 4, 3, stride=(2, 1), padding=1, groups=2, padding_mode="circular")).double()
    got = create_method(method).network_clip(model, (2, 8, 12), 1.0)
    grids = [(8, 12), (8, 6), (8, 6)]
    assert set(got) == {"0", "1", "2"}
    for (name, kernel), layer, grid in zip(got.items(), model, grids):
        want = clip_kernel(layer.weight.detach(), grid, 1.0, as_stride(layer.stride), groups=layer.groups,
                           dilation=as_stride(layer.dilation))
        assert kernel.shape == layer.weight.shape and (kernel - want).abs().max() <= 1e-12, name
    merged = clip_kernels([(layer.weight.detach(), grid, as_stride(layer.stride), layer.groups,
                            as_stride(layer.dilation)) for layer, grid in zip(model, grids)], 1.0)
    for kernel, want in zip(merged, got.values()):
        assert (kernel - want).abs().max() <= 1e-12


def test_gram_and_power_on_a_zero_padded_conv_with_a_stride_per_axis():
    """Zero padding: the Gram bound (circular sigma_max on n' per axis, each with its own stride) is never below
    the zero-padded layer's sigma_max; power iteration on the layer's own operator never above it."""
    torch.manual_seed(7)
    for stride in ((1, 2), (2, 1), (2, 3)):
        conv = nn.Conv2d(3, 4, (3, 5), stride=stride, padding=(1, 2)).double()
        want = float(oracle_singular_values(conv, (3, 6, 12))[0])
        bound = float(create_method("gram", precision="float64").layer_svs(conv, (6, 12))[0])
        assert want * (1 - 1e-12) <= bound <= 1.2 * want, stride
        estimate = float(create_method("power", iters=300).layer_svs(conv, (6, 12))[0])
        assert 0.98 * want <= estimate <= want * (1 + 1e-9), stride
    assert zero_padding_bound_size(8, 3, (1, 2)) == 10 and zero_padding_bound_size(8, 3, (1, 4)) == (10, 12)


def test_certified_bound_of_a_conv_with_a_stride_per_axis():
    """The certified layer bound: exact (FFT, float64) for a circular conv with a (1, 2) stride, and a guaranteed
    bound at or above the zero-padded layer's sigma_max (was: the dense operator, refused above c H W = 4096)."""
    from svbench.metrics.certified import conv_layer_bound

    conv = circular_conv(3, 4, 3, (1, 2), seed=9)
    value, source, exact = conv_layer_bound(conv, (3, 8, 16))
    assert exact and "circular exact" in source
    assert value == pytest.approx(float(oracle_singular_values(conv, (3, 8, 16))[0]), rel=1e-12)
    torch.manual_seed(9)
    zero = nn.Conv2d(3, 4, 3, stride=(2, 1), padding=1).double()
    value, source, exact = conv_layer_bound(zero, (3, 8, 6))
    assert not exact and value >= float(oracle_singular_values(zero, (3, 8, 6))[0]) * (1 - 1e-12)
    big = circular_conv(64, 64, 3, (1, 2), seed=1)  # c H W = 64 * 32 * 32: no dense operator
    value, _, exact = conv_layer_bound(big, (64, 32, 32))
    assert exact and value == pytest.approx(float(conv_singular_values(big.weight.detach(), 32, (1, 2))[0]),
                                            rel=1e-12)


def test_layer_sigmas_on_per_axis_strides():
    """The sigma a trained model's convs end up with: the power-iteration lower value now runs on per-axis strides
    and rectangular grids too (was: None there), never above the exact upper value."""
    from svbench.metrics.sigma import layer_sigmas

    rows = layer_sigmas(_model("circular")[:3], (3, 8, 16), power_iters=200)
    assert len(rows) == 3
    for row in rows:
        assert row["exact"] and row["lower"] is not None
        assert 0.95 * row["upper"] <= row["lower"] <= row["upper"] * (1 + 1e-9), row


def test_wrap_with_per_axis_strides_and_dilations():
    """``wrap`` read stride[0] / dilation[0]: cayley turned a (1, 2)-strided conv into a stride-1 Cayley layer (the
    model's output grid changed), cayley and tt a (1, 2)-dilated conv into an undilated layer, and
    ``TTConv2d.from_conv`` took a (1, 2) stride as 1. Now cayley keeps both dense; tt makes the strided conv a TT
    layer with that stride (at full ranks its forward is the conv's, to rounding) and keeps the dilated one dense,
    and ``from_conv`` refuses the dilation in one line."""
    from svbench.methods.tt import TTConv2d

    def net():
        return nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 8, 3, stride=(1, 2), padding=1),
                             nn.Conv2d(8, 8, 3, padding=(1, 2), dilation=(1, 2)))

    x = torch.randn(2, 4, 8, 8)
    cayley = create_method("cayley", keep_first=False).wrap(net())
    assert [type(layer).__name__ for layer in cayley] == ["CayleyConv2d", "Conv2d", "Conv2d"]
    tt = create_method("tt", keep_first=False).wrap(net())
    assert [type(layer).__name__ for layer in tt] == ["TTConv2d", "TTConv2d", "Conv2d"] and tt[1].stride == (1, 2)
    for model in (cayley, tt):
        assert model(x).shape == (2, 8, 8, 4)
    torch.manual_seed(2)
    conv = nn.Conv2d(4, 8, 3, stride=(1, 2), padding=1, padding_mode="circular").double()
    layer, err = TTConv2d.from_conv(conv, 4, 8)  # full ranks: the conv itself
    assert err < 1e-12 and (layer(x.double()) - conv(x.double())).abs().max() < 1e-12
    assert "stride=1x2" in repr(layer)
    with pytest.raises(UnsupportedShape, match=r"grouped or dilated convs have no TT form here .*dilation=\(1, 2\)"):
        TTConv2d.from_conv(nn.Conv2d(4, 8, 3, padding=(1, 2), dilation=(1, 2)), 2, 4)


def test_bad_per_axis_strides():
    """A stride that does not divide its own side of a circular grid, a three-part stride, a zero stride: one line."""
    w = torch.randn(2, 2, 3, 3)
    with pytest.raises(UserError, match="stride 2 does not divide the input width 5"):
        conv_singular_values(w, (8, 5), (1, 2))
    with pytest.raises(UserError, match="stride 2 does not divide the input height 5"):
        conv_singular_values(w, 5, (2, 1))
    with pytest.raises(UserError, match=r"a stride is s or \(s_height, s_width\); got \(1, 2, 3\)"):
        conv_singular_values(w, 8, (1, 2, 3))
    with pytest.raises(UserError, match="stride must be >= 1, got 0x1"):
        conv_singular_values(w, 8, (0, 1))


def test_deep_speech_2_front_end(tmp_path, capsys):
    """``ds2_frontend`` (Deep Speech 2's conv front end: 41 x 11 taps at stride (2, 2), 21 x 11 at stride (2, 1), on
    a frequency x time input): every conv's SVs from ``sedghi`` against the dense float64 operator of its circular
    model; ``spectrum --model`` names the (2, 1) stride and computes the same values; a suite network task runs it
    with every network method's errors against the float64 oracle."""
    from svbench.cli.main import main
    from svbench.methods.base import circular_view
    from svbench.models import build_model
    from svbench.suite.loader import parse_suite
    from svbench.suite.runner import run_suite

    torch.manual_seed(0)
    model = build_model("ds2_frontend", width=8, image_size=(48, 24)).double().eval()
    got = create_method("sedghi").network_svs(model, (1, 48, 24))
    grids = {"features.0": (1, 48, 24), "features.3": (8, 24, 12)}
    assert set(got) == set(grids)
    for name, shape in grids.items():
        want = oracle_singular_values(circular_view(model.get_submodule(name)), shape)
        assert got[name].shape == want.shape and (got[name] - want).abs().max() <= 1e-12 * want[0], name
    path = tmp_path / "ds2.pt"
    torch.save(build_model("ds2_frontend", image_size=(48, 24)).state_dict(), path)
    assert main(["spectrum", str(path), "--model", "ds2_frontend", "--input-shape", "1,48,24", "--no-lipschitz",
                 "--out", str(tmp_path / "o")]) == 0
    md = (tmp_path / "o" / "spectrum.md").read_text()
    assert "| features.3 | conv | (32, 32, 21, 11) | 24x12 | 2x1 (model hooks) | zeros |" in md, md
    capsys.readouterr()
    timing = {"warmup": 0, "min_repeats": 1, "max_repeats": 1, "budget_s": 0.01}
    suite = parse_suite({"name": "speech", "tasks": [
        {"name": "nets", "kind": "network", "models": ["ds2_frontend"], "input_shape": [1, 48, 24], "clip_to": 1.0,
         "methods": ["reference", "sedghi", "gram", "power"], "timing": timing}]}, "test")
    recs = run_suite(suite, out_root=tmp_path / "runs", progress=False).records
    assert all(r["status"] == "ok" for r in recs) and {r["cell_id"].split("|")[1] for r in recs} == {
        "ds2_frontend@48x24"}
    value = {(r["method"], r["metric"]): r["value"] for r in recs}
    assert value[("sedghi", "network_max_err_rel")] < 2e-6 and value[("reference", "network_max_err_rel")] < 2e-6
    assert -2e-7 <= value[("gram", "network_min_bound_rel_err")] < 0.05
    assert value[("power", "network_max_est_rel_err")] <= 1e-7
    assert value[("sedghi", "network_clip_err_rel")] < 1e-5


def test_tt_layers_with_a_stride_per_axis(tmp_path, monkeypatch):
    """A TT layer made of a (1, 2)-strided conv (since session 18: was kept dense / read as stride 1): its SVs from
    the folded core (Theorem 1, zeros appended) through ``layer_svs``, ``network_svs``, ``spectrum --model`` of a
    checkpoint and the certified bound, each against the TT layer's own dense float64 operator; the clip control
    on its grid reports the true sigma_max after."""
    from svbench.checkpoint.spectrum import checkpoint_spectrum
    from svbench.metrics.certified import conv_layer_bound
    from svbench.models.registry import MODELS

    def net(in_channels=3, image_size=8, **_):
        return nn.Sequential(nn.Conv2d(in_channels, 8, 3, stride=(1, 2), padding=1, padding_mode="circular"),
                             nn.Conv2d(8, 8, 3, stride=(2, 1), padding=1, padding_mode="circular"))

    monkeypatch.setitem(MODELS._items, "tt_axes_net", net)
    torch.manual_seed(11)
    m = create_method("tt", rank=4, keep_first=False, control="clip", target=0.5, every=1)
    model = m.wrap(net()).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    grids = {"0": (3, 8, 8), "1": (8, 8, 4)}
    got = m.network_svs(model, (3, 8, 8))
    spectra = {s.name: s for s in checkpoint_spectrum(_saved(model, tmp_path), model="tt_axes_net",
                                                      input_shape=(3, 8, 8))}
    for name, shape in grids.items():
        layer = model[int(name)]
        want = oracle_singular_values(layer, shape)
        for svs, tol in ((got[name], 1e-10), (m.layer_svs(layer, shape[1:]), 1e-10), (spectra[name].svs, 2e-6)):
            assert svs.shape == want.shape and (svs.double() - want).abs().max() <= tol * want[0], name  # spectrum:
            # float32 weights read from the checkpoint, the accuracy class
        assert spectra[name].kind == "tt" and spectra[name].stride == as_stride(layer.stride)
        value, _, exact = conv_layer_bound(layer, shape)
        assert exact and value == pytest.approx(float(want[0]), rel=1e-10)
    want_before = {name: oracle_singular_values(model[int(name)], shape)[0] for name, shape in grids.items()}
    model(torch.zeros(1, 3, 8, 8, dtype=torch.float64))
    reports = {r["layer"]: r for r in m.after_step(model, 1)}
    for name, shape in grids.items():
        true = float(oracle_singular_values(model[int(name)], shape)[0])
        # one clip-and-crop pass lowers sigma_max towards the target, not to it (the crop): the report is the truth
        assert reports[name]["sigma_max_after"] == pytest.approx(true, rel=1e-9) and true < float(want_before[name])


def _saved(model: nn.Module, tmp_path) -> str:
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    return str(path)
