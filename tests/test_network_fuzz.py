"""Seeded random small networks x every registered method's whole-network route (``network_svs``), against the
float64 dense oracle of each conv's circular model on its own input grid.

The network routes batch layers of one transfer shape, cut grouped weights into blocks, zero-fill dilated taps and
split frequencies into solver calls (``chunks``); the per-layer contract tests do not reach those paths.
"""

import random

import pytest
import torch
from torch import nn

from svbench.errors import UnsupportedShape
from svbench.functional.oracle import oracle_singular_values
from svbench.methods import METHODS, create_method
from svbench.methods.base import circular_view, conv_inputs

N_MODELS = 24

# tt skips grouped / dilated convs and a clip pass kernels wider than their grid, and says so (tested in
# test_layer_inputs.py); the fuzz checks the layers each route covers
pytestmark = pytest.mark.filterwarnings("ignore:.*left out of the result")


def _random_net(seed: int) -> tuple[nn.Module, tuple[int, int, int]]:
    """2-4 convs: channels 1-8, k 1/3 or a 1 x 3 / 3 x 1 kernel, stride 1/2, groups dividing both sides, dilation
    1/2, zero or circular padding, sizes kept at n / s; repeated shapes on purpose (they share one batched call)."""
    rng = random.Random(seed)
    c, n = rng.randint(1, 6), rng.choice([4, 6, 8])
    layers, shape = [], (c, n, n)
    for _ in range(rng.randint(2, 4)):
        c_out = c if rng.random() < 0.4 else rng.randint(1, 8)
        k = rng.choice([1, 3, 3, (1, 3), (3, 1)])
        d = rng.choice([1, 1, 2]) if k != 1 and n >= 5 else 1
        kh, kw = (k, k) if isinstance(k, int) else k
        s = 2 if n % 2 == 0 and n >= 4 and rng.random() < 0.3 else 1
        common = [g for g in range(1, min(c, c_out) + 1) if c % g == 0 and c_out % g == 0]
        g = rng.choice(common) if rng.random() < 0.4 else 1
        mode = rng.choice(["zeros", "circular"])
        layers.append(nn.Conv2d(c, c_out, k, s, (d * (kh - 1) // 2, d * (kw - 1) // 2), d, g,
                                bias=rng.random() < 0.5, padding_mode=mode))
        c, n = c_out, n // s
    torch.manual_seed(seed)
    model = nn.Sequential(*layers).double()
    for m in model:
        nn.init.normal_(m.weight)
    return model, shape


def _exact(layer: nn.Module, n: int) -> torch.Tensor:
    """Oracle of the layer's circular model (a TT layer is switched to circular padding for the call)."""
    if type(layer) is nn.Conv2d:
        return oracle_singular_values(circular_view(layer), (layer.in_channels, n, n))
    mode, layer.padding_mode = layer.padding_mode, "circular"
    try:
        return oracle_singular_values(layer, (layer.in_channels, n, n))
    finally:
        layer.padding_mode = mode


VARIANTS = [(m, {}) for m in METHODS.names() if m != "none"] + [
    ("gram", {"batch_layers": True}), ("gram", {"precision": "float64", "batch_layers": True}),
    ("tt", {"rank": 2, "init": "orthogonal", "keep_first": False}),  # wrapped: TT layers through their cores
    ("sedghi", {"merge": "pad"}), ("sedghi", {"merge": "none"}), ("gram", {"products": "complex"}),
    ("tt", {"rank": 2, "init": "orthogonal", "keep_first": False, "merge": "pad"}),
]


@pytest.mark.parametrize("name,options", VARIANTS, ids=[f"{n}-{o}" for n, o in VARIANTS])
def test_network_route_of_every_method_on_random_nets(name, options):
    checked = 0
    for seed in range(N_MODELS):
        model, shape = _random_net(seed)
        method = create_method(name, **options)
        if options:
            torch.manual_seed(seed)
            model = method.wrap(model).double()
        try:
            got = method.network_svs(model, shape)
        except UnsupportedShape:
            continue
        if not got:
            continue
        layers = {lname: (m, n) for lname, m, n in conv_inputs(model, shape)}
        assert set(got) <= set(layers), (seed, set(got) - set(layers))
        for lname, values in got.items():
            layer, n = layers[lname]
            exact = _exact(layer, n)
            s1 = float(exact[0])
            where = (name, options, seed, lname, type(layer).__name__, layer.in_channels, layer.out_channels,
                     layer.stride, getattr(layer, "groups", 1), getattr(layer, "dilation", 1), n)
            if method.provides == "all_svs":
                assert values.numel() == exact.numel(), where
                assert float((values.double().sort(descending=True).values - exact).abs().max()) <= 1e-9 * s1, where
            elif method.provides == "upper_bound":
                assert float(values[0]) >= s1 * (1 - 1e-9), where
            elif method.provides == "estimate":
                assert float(values[0]) <= s1 * (1 + 1e-9), where
            checked += 1
    if METHODS.get(name).provides in ("all_svs", "upper_bound", "estimate"):
        assert checked >= N_MODELS, (name, checked)  # the test reached the route on most layers


@pytest.mark.parametrize("chunks", [1, 2, 5])
def test_sedghi_network_route_is_the_same_in_any_number_of_calls(chunks):
    for seed in range(8):
        model, shape = _random_net(seed)
        base = create_method("sedghi").network_svs(model, shape)
        split = create_method("sedghi", chunks=chunks).network_svs(model, shape)
        assert base.keys() == split.keys()
        for key in base:
            assert torch.allclose(base[key], split[key], rtol=0, atol=1e-12), (seed, key, chunks)


@pytest.mark.parametrize("options", [{}, {"merge": "pad"}, {"merge": "none"}, {"chunks": 3},
                                     {"clip_route": "svd"}])
def test_sedghi_network_clip_equals_the_textbook_clip_on_random_nets(options):
    """The clipping pass of every conv -- layers of one shape merged into one call (across grids, zero-padded, or
    not), chunked, Gram-eig or SVD route -- against the textbook pass (full fft2, SVD of every matrix, ifft2, crop)
    of each conv's dense equivalent, float64."""
    checked = 0
    for seed in range(N_MODELS):
        model, shape = _random_net(seed)
        target = 0.3 + 0.2 * (seed % 5)
        got = create_method("sedghi", **options).network_clip(model, shape, target)
        want = create_method("reference").network_clip(model, shape, target)
        assert got.keys() == want.keys(), seed
        for key in got:
            assert got[key].shape == want[key].shape, (seed, key)
            assert torch.allclose(got[key], want[key], rtol=0, atol=1e-10), (seed, key, options)
            checked += 1
    assert checked >= N_MODELS


@pytest.mark.parametrize("name", ["gram", "power", "tt", "sedghi"])
def test_wrapped_models_deep_copy_twice_and_the_copies_keep_working(name):
    """gram / power / tt attach input-size hooks in ``wrap``; a copy of a copy of such a model failed inside torch's
    hook handles. Copies now share the method's tracker, so the method still sees each copy's input sizes."""
    import copy

    options = {"penalty_weight": 1.0} if name == "gram" else {}
    method = create_method(name, **options)
    model = method.wrap(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"),
                                      nn.Conv2d(4, 4, 3, padding=1, padding_mode="circular")))
    twice = copy.deepcopy(copy.deepcopy(model))
    twice(torch.zeros(1, 3, 8, 8))
    exact = oracle_singular_values(copy.deepcopy(twice[1]), (4, 8, 8))  # the oracle copies the layer once more
    assert exact.numel() == 4 * 64
    if name == "gram":
        assert method.penalty(twice) is not None  # the copy's convs were seen through the shared tracker
