"""A conv's padding amount against svbench's circular model (methods/base.padding_problem): layers whose operator
is the model are computed (checked against the dense float64 oracle), layers whose operator is not are refused in
one line instead of reported as the model's values, and networks keep the circular model of every kernel."""

import pytest
import torch
from torch import nn

from svbench.errors import UnsupportedShape
from svbench.functional.oracle import oracle_singular_values
from svbench.methods import create_method
from svbench.methods.base import circular_view, padding_problem


def _conv(c_in, c_out, k, *, stride=1, padding=None, mode="circular", seed=0):
    torch.manual_seed(seed)
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2 if padding is None else padding,
                     padding_mode=mode, bias=False).double()


@pytest.mark.parametrize(("k", "stride", "padding"), [(3, 1, 1), (3, 2, 1), (5, 1, 2), (1, 2, 0), (2, 2, 0),
                                                      (4, 2, 1), (3, 1, "same"), (2, 1, "same"), (4, 1, "same")])
def test_exact_methods_match_the_oracle_wherever_the_padding_gives_the_model(k, stride, padding):
    conv = _conv(3, 4, k, stride=stride, padding=padding)
    n = 8
    assert padding_problem(conv, exact=True) is None
    oracle = oracle_singular_values(conv, (3, n, n))
    for name in ("sedghi", "reference"):
        got = create_method(name).layer_svs(conv, n)
        assert got.numel() == oracle.numel() and float((got - oracle).abs().max()) < 1e-10 * float(oracle[0])
    bound = float(create_method("gram", precision="float64").layer_svs(conv, n)[0])
    assert bound >= float(oracle[0]) * (1 - 1e-12)


def test_too_little_circular_padding_is_refused_by_exact_methods_and_bounded_by_gram():
    conv = _conv(3, 4, 3, padding=0)  # 6 x 6 outputs on 8 x 8: part of the circular model's rows
    with pytest.raises(UnsupportedShape, match="sedghi: padding 0 a side .* fewer outputs"):
        create_method("sedghi").layer_svs(conv, 8)
    with pytest.raises(UnsupportedShape, match="reference: "):
        create_method("reference").layer_svs(conv, 8)
    exact = float(oracle_singular_values(conv, (3, 8, 8))[0])
    bound = float(create_method("gram", precision="float64").layer_svs(conv, 8)[0])
    assert bound >= exact * (1 - 1e-12)  # a part of the rows: the model's bound still holds


@pytest.mark.parametrize("mode", ["circular", "zeros"])
def test_too_much_padding_is_refused_everywhere(mode):
    conv = _conv(3, 4, 3, padding=2, mode=mode)  # 10 x 10 outputs on 8 x 8
    assert float(oracle_singular_values(conv, (3, 8, 8))[0]) > 0
    for name in ("sedghi", "reference", "gram"):
        exact_only_circular = mode == "zeros" and name != "gram"  # refused for the padding mode first
        with pytest.raises(UnsupportedShape, match="circular padding only" if exact_only_circular else "more outputs"):
            create_method(name).layer_svs(conv, 8)


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
def test_reflect_and_replicate_padding_are_refused_by_every_sv_method(mode):
    """Neither svbench model describes them (was: gram returned 1.25 as a guaranteed bound for a reflect-padded
    conv of sigma_max 1.54, power an estimate of the zero-padded conv)."""
    from svbench.methods import list_methods

    conv = _conv(2, 3, 3, mode=mode)
    assert padding_problem(conv, exact=False).startswith(f"'{mode}' padding repeats border pixels")
    for name in list_methods():
        method = create_method(name)
        if method.provides == "none":
            continue
        if method.provides == "orthogonal_layer" or name == "tt":  # take their own layer types only
            with pytest.raises(UnsupportedShape, match="expected a"):
                method.layer_svs(conv, 8)
            continue
        with pytest.raises(UnsupportedShape, match=f"{name}.*({mode}|circular padding only)"):
            method.layer_svs(conv, 8)


def test_zero_padding_bound_holds_for_the_paddings_it_accepts():
    for k, padding in ((3, 1), (3, 0), (5, 1), (5, 2)):
        conv = _conv(3, 4, k, padding=padding, mode="zeros", seed=k + padding)
        assert padding_problem(conv, exact=False) is None
        exact = float(oracle_singular_values(conv, (3, 8, 8))[0])
        assert float(create_method("gram", precision="float64").layer_svs(conv, 8)[0]) >= exact * (1 - 1e-12)


def test_power_takes_same_padding_and_refuses_it_when_asymmetric():
    conv = _conv(3, 4, 3, padding="same")
    est = float(create_method("power", iters=200).layer_svs(conv, 8)[0])
    assert abs(est - float(oracle_singular_values(conv, (3, 8, 8))[0])) < 1e-6 * est
    with pytest.raises(UnsupportedShape, match="pads the two ends of an axis unevenly"):
        create_method("power").layer_svs(_conv(3, 4, 2, padding="same"), 8)


def test_networks_keep_the_circular_model_of_every_kernel():
    """network_svs is defined on the circular model of each conv: a conv padded differently gives the values of
    the same kernel with the model's padding (not a refusal)."""
    torch.manual_seed(1)
    odd = nn.Sequential(nn.Conv2d(3, 4, 3, padding=0, bias=False), nn.ReLU(),
                        nn.Conv2d(4, 4, 3, padding=2, padding_mode="circular", bias=False)).double()
    std = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular", bias=False), nn.ReLU(),
                        nn.Conv2d(4, 4, 3, padding=1, padding_mode="circular", bias=False)).double()
    std.load_state_dict(odd.state_dict())
    for name in ("sedghi", "gram"):
        method = create_method(name)
        a = method.network_svs(odd, (3, 10, 10))
        b = method.network_svs(std, (3, 10, 10))
        assert set(a) == set(b) == {"0", "2"}
        # the second conv sees 8 x 8 in ``odd`` (no padding before it) and 10 x 10 in ``std``: compare the first
        assert torch.allclose(a["0"], b["0"], rtol=1e-12)
    twin = circular_view(odd[2])
    assert twin is not odd[2] and twin.padding == (1, 1) and twin.weight is odd[2].weight
    assert circular_view(std[0]) is std[0]


@pytest.mark.parametrize(("k", "padding"), [((3, 1), (1, 0)), ((1, 3), (0, 1)), ((3, 2), "same"), ((5, 3), (2, 1))])
def test_non_square_kernels_are_checked_side_by_side(k, padding):
    """A 3 x 1 kernel with padding (1, 0) is the circular model along both sides: exact. The power route pads each
    axis evenly (since session 13): it converges to these from below, and refuses in one line only an axis padded
    unevenly ('same' on an even kernel). Before session 12 it used the height's padding for both sides, a different
    operator: 1.38 against the true 0.99 on one example; sessions 12-13 refused every per-axis padding."""
    torch.manual_seed(2)
    conv = nn.Conv2d(3, 4, k, padding=padding, padding_mode="circular", bias=False).double()
    oracle = oracle_singular_values(conv, (3, 8, 8))
    for name in ("sedghi", "reference"):
        got = create_method(name).layer_svs(conv, 8)
        assert got.numel() == oracle.numel() and float((got - oracle).abs().max()) < 1e-10 * float(oracle[0])
    assert float(create_method("gram", precision="float64").layer_svs(conv, 8)[0]) >= float(oracle[0]) * (1 - 1e-12)
    if padding == "same":  # a span of 2: torch pads one more pixel at the end
        with pytest.raises(UnsupportedShape, match="pads the two ends of an axis unevenly"):
            create_method("power").layer_svs(conv, 8)
    else:
        est = float(create_method("power", iters=2000).layer_svs(conv, 8)[0])
        assert float(oracle[0]) * (1 - 1e-6) <= est <= float(oracle[0]) * (1 + 1e-12)
    assert circular_view(conv) is conv
    short = nn.Conv2d(3, 4, (3, 1), padding=0, padding_mode="circular", bias=False).double()  # fewer rows
    with pytest.raises(UnsupportedShape, match="fewer outputs"):
        create_method("sedghi").layer_svs(short, 8)
    assert circular_view(short).padding == (1, 0)
