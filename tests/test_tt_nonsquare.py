"""TT layers with a kh x kw kernel (1 x 7 / 7 x 1 as in inception_v3, 5 x 3, Deep Speech 2's 41 x 11 front end):
K2 is r2 x r1 x kh x kw and Theorem 1 holds as for square kernels (it is about the channel factors). Before session
19 `wrap` kept every non-square conv dense ("dilated or non-square conv not supported: kept"). Every value below is
checked against the dense float64 operator of the TT layer itself (torch's conv with its composed kernel)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from svbench.functional.oracle import oracle_singular_values
from svbench.methods import create_method
from svbench.methods.tt import TTConv2d, tt_layer_singular_values

KERNELS = [(1, 7), (7, 1), (5, 3), (2, 3)]


def _random(kernel, stride=1, padding_mode="circular", r1=3, r2=4, seed=0, forward_mode="factored"):
    g = torch.Generator().manual_seed(seed)
    layer = TTConv2d(6, 8, kernel, stride, padding_mode=padding_mode, r1=r1, r2=r2, forward_mode=forward_mode,
                     dtype=torch.float64)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))  # not orthonormal: the fold must carry it
    return layer


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("padding_mode", ["circular", "zeros"])
def test_factored_forward_is_the_composed_kernels_conv(kernel, padding_mode):
    layer = _random(kernel, padding_mode=padding_mode)
    kh, kw = kernel
    assert layer.k2.shape == (4, 3, kh, kw) and layer.padding == (kh // 2, kw // 2)
    x = torch.randn(2, 6, 9, 10, dtype=torch.float64)
    w = layer.full_kernel()
    if padding_mode == "circular":
        want = F.conv2d(F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2), mode="circular"), w, layer.bias)
    else:
        want = F.conv2d(x, w, layer.bias, padding=(kh // 2, kw // 2))
    assert torch.allclose(layer(x), want, atol=1e-10)
    layer.forward_mode = "full"
    assert torch.allclose(layer(x), want, atol=1e-10)
    assert f"kernel_size={kh}x{kw}" in repr(layer) or (kh == kw and f"kernel_size={kh}," in repr(layer))


@pytest.mark.parametrize("kernel,stride", [(k, s) for k in KERNELS[:3] for s in (1, 2, (1, 2))] + [((2, 3), 2)])
def test_layer_svs_are_the_dense_operators(kernel, stride):
    """All SVs of a circular non-square TT layer (folded core, Theorem 1) against its own dense float64 operator,
    on a rectangular grid too. An even side needs no padding at stride 2 (its circular model's n / s outputs)."""
    layer = _random(kernel, stride)
    if kernel[0] % 2 == 0:
        layer.padding = (0, kernel[1] // 2)
    for grid in (8, (8, 10)):
        hw = grid if isinstance(grid, tuple) else (grid, grid)
        exact = oracle_singular_values(layer, (6, *hw))
        got = tt_layer_singular_values(layer, grid)
        assert got.shape == exact.shape and (got - exact).abs().max() <= 1e-10 * exact[0], grid


def test_an_even_side_padded_on_both_ends_is_refused_not_misread():
    """A 2 x 3 TT layer at stride 1 with the default padding (1, 1) has one more output row than its circular model:
    its SVs are not the folded core's on n. One line, as sedghi says for such a conv (was: the model's values)."""
    from svbench.errors import UnsupportedShape

    with pytest.raises(UnsupportedShape, match="tt: .*outputs"):
        tt_layer_singular_values(_random((2, 3)), 8)


@pytest.mark.parametrize("kernel", [(1, 7), (7, 1), (3, 5)])
def test_from_conv_and_wrap_take_non_square_convs(kernel):
    """TT-SVD of a 1 x 7 conv at full rank reproduces it; ``wrap`` converts non-square convs (were kept dense) and
    still keeps dilated ones."""
    torch.manual_seed(1)
    kh, kw = kernel
    conv = nn.Conv2d(6, 8, kernel, padding=(kh // 2, kw // 2)).double()
    layer, err = TTConv2d.from_conv(conv, 6, 8, "tt_svd")
    x = torch.randn(2, 6, 9, 9, dtype=torch.float64)
    assert err < 1e-12 and torch.allclose(layer(x), conv(x), atol=1e-10)
    m = create_method("tt", rank=3)
    model = m.wrap(nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 8, kernel, padding=(kh // 2, kw // 2)),
                                 nn.Conv2d(8, 8, kernel, padding=(kh // 2 * 2, kw // 2 * 2), dilation=2)))
    rows = {r["layer"]: r for r in m.conversion}
    assert rows["1"]["converted"] and isinstance(model[1], TTConv2d) and model[1].kernel_size == kernel
    assert not rows["2"]["converted"] and "dilated" in rows["2"]["reason"]
    assert model(torch.randn(1, 3, 9, 9)).shape == (1, 8, 9, 9)


@pytest.mark.parametrize("control", ["clip", "divide"])
def test_network_svs_and_control_of_a_non_square_tt_model(control):
    """network_svs of a wrapped model with 1 x 7 / 7 x 1 / 5 x 3 circular TT layers against each layer's dense
    float64 operator; the control step then reports each layer's true sigma_max (dense check): at most the target
    after a division, below its value before after a clip-and-crop (a projection, not a guarantee)."""
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, padding_mode="circular"),
                        nn.Conv2d(8, 8, (1, 7), padding=(0, 3), padding_mode="circular"),
                        nn.Conv2d(8, 6, (7, 1), stride=2, padding=(3, 0), padding_mode="circular"),
                        nn.Conv2d(6, 6, (5, 3), padding=(2, 1), padding_mode="circular"))
    m = create_method("tt", rank=4, control=control, target=0.7, every=1)
    model = m.wrap(net).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    assert [type(model[i]).__name__ for i in range(4)] == ["Conv2d", "TTConv2d", "TTConv2d", "TTConv2d"]
    shapes = {"1": (8, 8, 8), "2": (8, 8, 8), "3": (6, 4, 4)}
    svs = m.network_svs(model, (3, 8, 8))
    for name, shape in shapes.items():
        exact = oracle_singular_values(model[int(name)], shape)
        assert svs[name].shape == exact.shape and (svs[name] - exact).abs().max() <= 1e-6 * exact[0], name
    model(torch.zeros(1, 3, 8, 8, dtype=torch.float64))
    reports = {r["layer"]: r for r in m.after_step(model, 1)}
    for name, shape in shapes.items():
        top = float(oracle_singular_values(model[int(name)], shape)[0])
        assert reports[name]["sigma_max_after"] == pytest.approx(top, rel=1e-6), name
        if control == "divide":
            assert top <= 0.7 * (1 + 1e-6), name
        else:
            assert top < reports[name]["sigma_max_before"] == pytest.approx(float(svs[name][0]), rel=1e-6), name


def test_spectrum_and_certified_bound_of_a_non_square_tt_checkpoint(tt_checkpoint):
    """A checkpoint of a model trained with tt, non-square TT layers included: `spectrum --model` reads each with its
    model conv's geometry (was: no model conv stood for a non-square TT layer) and the certified bound of the plain
    model's layer holds the TT layer's dense zero-padded operator."""
    from svbench.checkpoint.spectrum import checkpoint_spectrum
    from svbench.metrics.certified import conv_layer_bound

    def net(in_channels=3, image_size=8, **_):
        return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1),
                             nn.Conv2d(8, 8, (1, 5), stride=(1, 2), padding=(0, 2)),
                             nn.Conv2d(8, 6, (5, 1), padding=(2, 0)))

    model, path = tt_checkpoint("nonsquare_tt_net", net, seed=3)
    spectra = {s.name: s for s in checkpoint_spectrum(path, model="nonsquare_tt_net", input_shape=(3, 8, 8))}
    assert [spectra[n].kind for n in ("0", "1", "2")] == ["conv", "tt", "tt"]
    assert (spectra["1"].stride, spectra["2"].n, spectra["2"].geometry_source) == ((1, 2), (8, 4), "model hooks")
    model = model.double()
    for name, shape in (("1", (8, 8, 8)), ("2", (8, 8, 4))):
        layer = model[int(name)]
        circ = TTConv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                        padding_mode="circular", r1=layer.r1, r2=layer.r2, dtype=torch.float64)
        circ.load_state_dict(layer.state_dict())
        exact = oracle_singular_values(circ, shape)  # the circular operator spectrum reports for a zero-padded conv
        assert (spectra[name].svs - exact).abs().max() <= 1e-5 * exact[0], name
        bound, source, _ = conv_layer_bound(layer, shape)
        assert "TT folded core" in source
        assert bound >= float(oracle_singular_values(layer, shape)[0]) * (1 - 1e-10), name
