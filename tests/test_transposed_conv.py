"""Transposed convs (nn.ConvTranspose2d: decoders, generators, U-Nets) in the network routes and the certificate.

A transposed conv is the adjoint of the conv with the same weight, stride, padding, dilation and groups, so it has
that conv's SVs (``methods.base.adjoint_conv``). The oracle here does NOT use that identity: it builds the periodic
transposed conv directly -- torch's zero-padded conv_transpose2d, its overflow folded back onto the s n grid -- and
takes the SVs of its dense float64 matrix. Until session 14 every network route left transposed convs out (with a
warning) and ``lipschitz_bound`` refused a chain model holding one."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from svbench.functional.oracle import dense_operator, oracle_singular_values
from svbench.methods import METHODS, create_method
from svbench.methods.base import adjoint_conv, transposed_grid
from svbench.metrics.certified import lipschitz_bound

# (kernel, stride, padding, groups, dilation): DCGAN's 4 / 2 / 1, stride 1, an odd kernel at stride 2, a kernel equal
# to the stride, a grouped and a dilated one
GEOMETRIES = [(4, 2, 1, 1, 1), (3, 1, 1, 1, 1), (3, 2, 1, 1, 1), (2, 2, 0, 1, 1), (3, 2, 1, 2, 1), (3, 1, 2, 1, 2)]


def periodic_transposed(weight: torch.Tensor, stride: int, n: int, groups: int = 1, dilation: int = 1):
    """The circular transposed conv from an n x n grid to the s n x s n grid, built from its definition: every input
    pixel scatters its kernel onto the output at s times its position, indices taken mod s n."""
    big = stride * n

    def forward(x: torch.Tensor) -> torch.Tensor:
        y = F.conv_transpose2d(x, weight, stride=stride, groups=groups, dilation=dilation)
        out = y.new_zeros(*y.shape[:2], big, big)
        for i in range(0, y.shape[-2], big):
            for j in range(0, y.shape[-1], big):
                block = y[..., i:i + big, j:j + big]
                out[..., :block.shape[-2], :block.shape[-1]] += block
        return out

    return forward


def _model(k, s, p, groups, dilation):
    torch.manual_seed(k * 100 + s * 10 + p + 7 * groups + 3 * dilation)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
                         nn.ConvTranspose2d(6, 4, k, stride=s, padding=p, groups=groups, dilation=dilation)).double()


def _exact(model, n, s, groups, dilation):
    layer = model[2]
    return torch.linalg.svdvals(dense_operator(periodic_transposed(layer.weight.detach(), s, n, groups, dilation),
                                               (layer.in_channels, n, n)))


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: "k{}s{}p{}g{}d{}".format(*g))
@pytest.mark.parametrize("method", METHODS.names())
def test_network_svs_of_a_transposed_conv_against_the_periodic_oracle(method, geometry):
    k, s, p, groups, dilation = geometry
    m = create_method(method)
    if m.provides == "orthogonal_layer":
        pytest.skip("cayley's network route reads its own layers (a wrapped model), not plain or transposed convs")
    if method == "tt" and (groups > 1 or dilation > 1):
        pytest.skip("tt takes no grouped or dilated convs (left out with a warning, tested below)")
    model, n = _model(*geometry), 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is left out any more
        got = m.network_svs(model, (3, n, n))
    assert set(got) == {"0", "2"}
    exact, sv = _exact(model, n, s, groups, dilation), got["2"].double()
    if m.provides == "all_svs":
        assert sv.shape == exact.shape and (sv - exact).abs().max() <= 1e-12 * exact[0]
    elif m.provides == "upper_bound":
        # a converged float64 bound may land a few ulps under sigma_max (measured: -6e-16 relative)
        assert exact[0] * (1 - 1e-12) <= sv[0] <= exact[0] * (1 + 1e-6)
    elif m.provides == "estimate":
        assert 0.9 * exact[0] <= sv[0] <= exact[0] * (1 + 1e-12)
    else:
        assert sv.numel() == 0


def test_tt_names_a_grouped_transposed_conv_it_leaves_out():
    model = _model(3, 2, 1, 2, 1)
    with pytest.warns(UserWarning, match=r"1 of 2 conv layers left out of the result: 2 \(ConvTranspose2d, groups 2\)"):
        got = create_method("tt").network_svs(model, (3, 4, 4))
    assert set(got) == {"0"}


@pytest.mark.parametrize("method", ["sedghi", "reference"])
@pytest.mark.parametrize("k,s,n,p", [(4, 2, 2, 1), (3, 1, 3, 1), (2, 2, 2, 0)])
def test_network_clip_of_a_transposed_conv_clips_its_operator(method, k, s, n, p):
    """Kernels as wide as the s n grid (nothing is cropped): the returned kernel, put into the transposed conv, gives
    the periodic operator whose SVs are the old ones clipped at the target."""
    model = _model(k, s, p, 1, 1)
    layer = model[2]
    before = torch.linalg.svdvals(dense_operator(periodic_transposed(layer.weight.detach(), s, n), (6, n, n)))
    target = 0.6 * float(before[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clipped = create_method(method).network_clip(model, (3, n, n), target)
    # only the first conv can be left out: its 3 x 3 kernel is wider than a 2 x 2 grid
    assert [str(w.message).split(":")[1] for w in caught] == ([" 1 of 2 conv layers left out of the result"]
                                                              if n == 2 else [])
    kernel = clipped["2"]
    assert kernel.shape == layer.weight.shape
    after = torch.linalg.svdvals(dense_operator(periodic_transposed(kernel, s, n), (6, n, n)))
    assert (after - before.clamp(max=target)).abs().max() <= 1e-12 * before[0]


@pytest.mark.parametrize("k,s,p,op,d", [(4, 2, 1, 0, 1), (3, 2, 1, 1, 1), (3, 2, 1, 0, 1), (3, 1, 1, 0, 1),
                                        (5, 3, 2, 2, 1), (3, 1, 0, 0, 2), (3, 2, 2, 1, 2)])
@pytest.mark.parametrize("h,w", [(5, 5), (4, 7)])
def test_transposed_grid_is_the_forward_output_and_the_adjoint_is_exact(k, s, p, op, d, h, w):
    """The grid is what the forward gives, and conv2d with the adjoint conv's weight on it is the exact transpose:
    <T x, y> = <x, A y> for random x, y (float64)."""
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(3, 4, k, stride=s, padding=p, output_padding=op, dilation=d, bias=False).double()
    x = torch.randn(1, 3, h, w, dtype=torch.float64)
    y_shape = layer(x).shape
    assert transposed_grid(layer, h, w) == tuple(y_shape[-2:])
    y = torch.randn(y_shape, dtype=torch.float64)
    adj = adjoint_conv(layer)
    with torch.no_grad():
        lhs, rhs = (layer(x) * y).sum(), (x * adj._conv_forward(y, adj.weight, None)).sum()
    assert torch.isclose(lhs, rhs, rtol=1e-12)


def test_transposed_grid_is_none_where_the_output_padding_reaches_the_stride():
    layer = nn.ConvTranspose2d(2, 3, 3, stride=1, padding=1, output_padding=1, dilation=2)
    assert transposed_grid(layer, 5, 5) is None


@pytest.mark.parametrize("k,s,p,op,d", [(4, 2, 1, 0, 1), (3, 2, 1, 1, 1), (3, 2, 1, 0, 1), (3, 1, 1, 0, 1),
                                        (3, 1, 1, 1, 2)])
def test_lipschitz_bound_of_a_chain_with_a_transposed_conv(k, s, p, op, d):
    """A guaranteed bound (>= the dense float64 sigma_max of the real zero-padded layer); it was refused."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.ConvTranspose2d(2, 3, k, stride=s, padding=p, output_padding=op, dilation=d),
                          nn.ReLU()).double()
    model.is_chain = True
    total, rows = lipschitz_bound(model, (2, 5, 5))
    exact = float(oracle_singular_values(model[0], (2, 5, 5))[0])
    assert rows[0]["type"] == "ConvTranspose2d" and exact <= total <= 1.5 * exact
    if op >= s:  # no grid maps back: the layer's own dense operator, exact
        assert "dense operator" in rows[0]["source"] and total == pytest.approx(exact, rel=1e-12)
    else:
        assert rows[0]["source"].startswith("adjoint conv on its")


@pytest.mark.parametrize("method", [m for m in METHODS.names() if m != "none"])
def test_layer_svs_refuses_a_transposed_conv_in_one_line(method):
    """gram and power read a ConvTranspose2d handed to layer_svs as a conv on its input grid -- another operator
    (power: 0.59 for a layer of sigma_max 0.78, seeded below) -- and answered; every method now refuses it, naming
    the routes that model it."""
    from svbench.errors import UnsupportedShape

    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(3, 4, 4, stride=2, padding=1)
    with pytest.raises(UnsupportedShape, match="ConvTranspose2d"):
        create_method(method).layer_svs(layer, 4)
