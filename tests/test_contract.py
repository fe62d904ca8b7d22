"""Contract tests parametrised over the registry: every method, every shape, against the float64 oracle."""

import math

import pytest
import torch

from svbench.errors import UnsupportedShape
from svbench.functional.oracle import oracle_singular_values
from svbench.methods import METHODS
from svbench.methods.base import LayerSpec

SHAPES = [
    LayerSpec(4, 4, 3, 8, 1, "circular"),
    LayerSpec(3, 5, 3, 8, 2, "circular"),
    LayerSpec(5, 3, 1, 6, 1, "circular"),
    LayerSpec(4, 6, 5, 8, 1, "circular"),
    LayerSpec(4, 4, 3, 6, 1, "zeros"),
    LayerSpec(3, 5, 3, 8, 2, "zeros"),
]


@pytest.fixture(params=METHODS.names())
def method(request):
    return METHODS.get(request.param)()


def test_builds_from_defaults_and_declares_itself(method):
    assert method.provides in ("all_svs", "upper_bound", "estimate", "orthogonal_layer", "none")
    assert method.name in METHODS
    assert method.label.startswith(method.name)
    assert isinstance(method.config_dict(), dict)


def _random_specs(count: int, seed: int = 0) -> list[LayerSpec]:
    """Seeded random geometries beyond SHAPES: groups, dilation, stride 3, odd n, k = 1 with stride, both paddings."""
    import random

    rng = random.Random(seed)
    specs: list[LayerSpec] = []
    while len(specs) < count:
        k, dil, stride = rng.choice([1, 3, 5]), rng.choice([1, 1, 2]), rng.choice([1, 2, 3])
        pad, groups = rng.choice(["circular", "zeros"]), rng.choice([1, 1, 2])
        span = dil * (k - 1) + 1
        n = rng.randint(max(2, span), 10)
        if pad == "circular":
            n = (n // stride) * stride
        try:
            specs.append(LayerSpec(groups * rng.randint(1, 3), groups * rng.randint(1, 3), k, n, stride, pad, groups,
                                   dil))
        except ValueError:
            continue
    return specs


@pytest.mark.parametrize("spec", SHAPES + _random_specs(60), ids=lambda s: s.label)
def test_layer_svs_contract_and_oracle(method, spec):
    reason = method.supports.why_not(spec)
    if reason is not None:
        # a declined shape is declined explicitly (building or computing), never computed silently
        with pytest.raises(UnsupportedShape):
            layer = method.make_layer(spec, seed=3, dtype=torch.float32)
            method.layer_svs(layer, spec.n)
        return
    layer = method.make_layer(spec, seed=3, dtype=torch.float32)
    svs = method.layer_svs(layer, spec.n)
    assert svs.dim() == 1
    assert svs.numel() == method.expected_count(spec)
    assert torch.isfinite(svs).all()
    assert (svs >= 0).all()
    assert (svs[:-1] >= svs[1:]).all(), "SVs must be descending"
    if svs.numel() == 0:
        return
    oracle = oracle_singular_values(layer, spec.in_shape)
    s1 = float(oracle[0])
    got = svs.double()
    if method.provides in ("all_svs", "orthogonal_layer"):
        assert (got - oracle).abs().max() <= 1e-5 * s1
    elif method.provides == "upper_bound":
        assert float(got[0]) >= s1 * (1 - 1e-6)
    elif method.provides == "estimate":
        assert float(got[0]) <= s1 * (1 + 1e-6)
        assert math.isfinite(float(got[0]))


def test_hooks_have_safe_defaults(method):
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 2, 3, padding=1))
    wrapped = method.wrap(model)
    wrapped(torch.zeros(1, 2, 8, 8))
    assert isinstance(method.after_step(wrapped, 1), list)
    pen = method.penalty(wrapped)
    assert pen is None or (pen.dim() == 0 and torch.isfinite(pen))
