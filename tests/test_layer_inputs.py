"""Layers as researchers hand them to a method's ``layer_svs``: a 1 x 1 conv with torch's default
``padding_mode="zeros"`` (no padding at all, so the circular operator) and 16-bit weights (computed in float32).
Found in session 13 by feeding odd layers to every method: the exact methods refused the first, and sedghi,
reference and gram raised NotImplementedError ('ComplexHalf') on the second."""

import copy

import pytest
import torch
from torch import nn

from svbench.errors import UnsupportedShape
from svbench.functional.spectrum import conv_singular_values
from svbench.methods import create_method

EXACT = ["sedghi", "reference"]


def _oracle(weight: torch.Tensor, n: int, stride: int = 1) -> torch.Tensor:
    return conv_singular_values(weight.detach().double(), n, stride, backend="svdvals64")


@pytest.mark.parametrize("method", EXACT)
@pytest.mark.parametrize("stride", [1, 2])
def test_one_by_one_conv_with_default_zeros_mode_is_exact(method, stride):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 4, 1, stride=stride, bias=False)  # padding 0, padding_mode 'zeros': nothing is padded
    got = create_method(method).layer_svs(conv, 8).double()
    exact = _oracle(conv.weight, 8, stride)
    assert got.shape == exact.shape and (got - exact).abs().max() <= 2e-6 * exact[0]


@pytest.mark.parametrize("method", EXACT)
def test_one_by_one_conv_whose_stride_does_not_divide_n_is_refused(method):
    """Zero mode, 1 x 1, stride 2 on n = 7: ceil(7 / 2) = 4 outputs a side, which no circular operator on 7 has."""
    with pytest.raises(UnsupportedShape, match="circular padding only"):
        create_method(method).layer_svs(nn.Conv2d(3, 3, 1, stride=2, bias=False), 7)


@pytest.mark.parametrize("method", EXACT)
def test_valid_conv_with_zeros_mode_is_still_refused(method):
    """padding 0 on a 3 x 3 kernel gives fewer outputs than the circular operator: not its SVs, whatever the mode."""
    conv = nn.Conv2d(3, 3, 3, padding=0, bias=False)
    with pytest.raises(UnsupportedShape, match="fewer outputs"):
        create_method(method).layer_svs(conv, 8)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("method", [*EXACT, "gram"])
def test_sixteen_bit_weights_are_computed_in_float32(method, dtype):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 4, 3, padding=1, padding_mode="circular", bias=False).to(dtype)
    got = create_method(method).layer_svs(conv, 6)
    exact = _oracle(conv.weight, 6)  # of the 16-bit weights themselves (exactly representable in float64)
    if method == "gram":
        assert got.dtype == dtype and float(got[0]) >= float(exact[0])  # the bound, rounded up to the layer's dtype
    else:
        assert got.dtype == torch.float32 and (got.double() - exact).abs().max() <= 2e-6 * exact[0]


@pytest.mark.parametrize("method", ["sedghi", "gram", "power", "tt", "reference"])
def test_network_routes_name_the_conv_layers_they_leave_out(method):
    """A 1-D conv (here over each image row) is not modelled: the result lacks it, and one warning says so by name
    (it did not: the max over the result read as the network's). A model whose convs are all covered gives no
    warning."""
    import warnings

    class RowConv(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(8, 8, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, c, h, w = x.shape
            rows = x.permute(0, 2, 1, 3).reshape(b * h, c, w)
            return self.conv(rows).reshape(b, h, c, w).permute(0, 2, 1, 3)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), RowConv(), nn.Conv2d(8, 4, 3, padding=1)).eval()
    m = create_method(method)
    route = m.network_clip if method == "reference" else m.network_svs
    args = (model, (3, 8, 8), 1.0) if method == "reference" else (model, (3, 8, 8))
    with pytest.warns(UserWarning, match=r"1 of 3 conv layers left out of the result: 1.conv \(Conv1d\)"):
        out = route(*args)
    assert set(out) == {"0", "2"}
    plain = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        route(plain, *args[1:])


@pytest.mark.parametrize("method", ["sedghi", "gram", "tt"])
def test_network_routes_take_sixteen_bit_models(method):
    """The network routes read weights as layer_svs does (float16 in float32): the same values as the model cast to
    float32 (they raised NotImplementedError on ComplexHalf)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1)).eval()
    half = copy.deepcopy(model).half()
    ref = copy.deepcopy(half).float()  # the same 16-bit values, in float32
    m = create_method(method)
    got, want = m.network_svs(half, (3, 8, 8)), m.network_svs(ref, (3, 8, 8))
    assert set(got) == set(want) == {"0", "2"}
    for name in got:
        assert torch.allclose(got[name].float(), want[name].float(), rtol=1e-3 if method == "gram" else 1e-6)
    clipped = create_method("sedghi").network_clip(half, (3, 8, 8), 1.0)
    assert set(clipped) == {"0", "2"} and all(torch.isfinite(k).all() for k in clipped.values())


@pytest.mark.parametrize("conv", [dict(stride=(1, 2), padding=1), dict(dilation=(1, 2), padding=(1, 2))],
                         ids=["stride", "dilation"])
@pytest.mark.parametrize("method,options", [("sedghi", {}), ("tt", {}), ("gram", {"batch_layers": True}),
                                            ("gram", {}), ("power", {"iters": 2000}), ("reference", {})])
def test_network_routes_take_a_stride_or_dilation_that_differs_between_axes(method, options, conv):
    """sedghi, tt and gram's batched route once read stride[0] and dilation[0]: a (1, 2) stride gave the stride-1
    operator's 192 SVs (the operator has 128, sigma_max 1.27 for 1.09), a (1, 2) dilation SVs off by 0.09; then
    every route refused such a conv. Since session 18 the engine takes one per axis (tt's network route computes a
    plain conv by its kernel): checked against the dense float64 operator of the layer itself, by what the method
    provides."""
    from svbench.functional.oracle import oracle_singular_values

    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding_mode="circular", **conv)).double()
    m = create_method(method, **options)
    if method == "tt" and "dilation" in conv:  # tt's route takes no dilated conv: left out, named
        with pytest.warns(UserWarning, match=r"tt network_svs: 1 of 1 conv layers left out .*dilation 1x2"):
            assert m.network_svs(model, (3, 8, 8)) == {}
        return
    got = m.network_svs(model, (3, 8, 8))["0"].double()
    want = oracle_singular_values(model[0], (3, 8, 8))
    top = float(want[0])
    if m.provides == "all_svs":
        assert got.shape == want.shape and (got - want).abs().max() <= 1e-12 * top
    elif m.provides == "upper_bound":
        assert top * (1 - 1e-9) <= float(got[0]) <= 1.05 * top
    else:
        assert 0.99 * top <= float(got[0]) <= top * (1 + 1e-9)


@pytest.mark.parametrize("method", ["sedghi", "tt", "reference", "gram", "power"])
def test_network_routes_compute_non_square_kernels(method):
    """1 x 3, 3 x 1 and 3 x 5 kernels (Inception-style) in the batched network routes, against the dense float64
    operator of each conv (its own circular padding gives the circular model)."""
    from svbench.functional.oracle import oracle_singular_values

    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(3, 4, (1, 3), padding=(0, 1), padding_mode="circular"),
                          nn.Conv2d(4, 4, (3, 1), padding=(1, 0), padding_mode="circular"),
                          nn.Conv2d(4, 5, (3, 5), padding=(1, 2), padding_mode="circular")).double()
    m = create_method(method, **({"iters": 2000} if method == "power" else {}))
    got = m.network_svs(model, (3, 8, 8))
    for name, layer in model.named_children():
        exact = oracle_singular_values(layer, (layer.in_channels, 8, 8))
        sv = got[name].double()
        if m.provides == "all_svs":
            assert sv.shape == exact.shape and (sv - exact).abs().max() <= 1e-12 * exact[0], name
        elif m.provides == "upper_bound":
            assert exact[0] * (1 - 1e-12) <= sv[0] <= exact[0] * (1 + 1e-6), name
        else:
            assert exact[0] * (1 - 1e-6) <= sv[0] <= exact[0] * (1 + 1e-12), name


@pytest.mark.parametrize("method", ["sedghi", "reference"])
def test_clip_pass_leaves_out_a_kernel_wider_than_its_grid_along_either_axis(method):
    """kernel_span read the height only: a 1 x 3 kernel on a 2 x 2 grid went into the clip, which raised ('cannot
    clip a 1x3 kernel for a 2x2 input'), losing the whole pass. Found by the network fuzz with 1 x 3 kernels."""
    model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.Conv2d(3, 3, (1, 3), padding=(0, 1)))
    with pytest.warns(UserWarning, match=r"1 of 2 conv layers left out of the result: 1 \(Conv2d\)"):
        clipped = create_method(method).network_clip(model, (2, 2, 2), 1.0)
    assert set(clipped) == {"0"}


def test_a_conv_run_on_two_grids_is_named():
    """One conv module applied at two resolutions has two operators; the routes give the first one's SVs and now say
    so (they said nothing)."""

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Conv2d(3, 3, 3, padding=1)
            self.pool = nn.AvgPool2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.c(self.pool(self.c(x)))

    with pytest.warns(UserWarning, match=r"1 layer\(s\) run more than once on different inputs: c \(8x8 then 4x4\)"):
        got = create_method("sedghi").network_svs(Twice(), (3, 8, 8))
    assert set(got) == {"c"} and got["c"].numel() == 3 * 8 * 8
