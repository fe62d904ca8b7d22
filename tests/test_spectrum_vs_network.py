"""The two ways svbench reads a model's convs agree: ``svbench spectrum CKPT --model NAME`` (a state dict plus the
model's geometry from hooks) and ``sedghi.network_svs(model, shape)`` (the live model) give every conv the same SVs,
on seeded random models with strides, groups, dilation, non-square kernels, zero / circular padding and
spectral_norm layers (the same circular model of each conv on its own grid, by two code paths)."""

import random
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from svbench.checkpoint.spectrum import checkpoint_spectrum
from svbench.methods import create_method
from svbench.models.registry import MODELS


def _random_net(seed: int, in_channels: int = 3, image_size: int = 8, **_: object) -> nn.Sequential:
    rng = random.Random(seed)
    c, n, layers = in_channels, image_size, []
    for _ in range(rng.randint(2, 4)):
        c_out = rng.randint(1, 6)
        k = rng.choice([1, 3, 3, (1, 3), (3, 1)])
        kh, kw = (k, k) if isinstance(k, int) else k
        d = rng.choice([1, 2]) if max(kh, kw) > 1 and n >= 5 else 1
        s = 2 if n % 2 == 0 and n >= 4 and rng.random() < 0.3 else 1
        g = rng.choice([g for g in (1, 2) if c % g == 0 and c_out % g == 0])
        conv = nn.Conv2d(c, c_out, k, s, (d * (kh - 1) // 2, d * (kw - 1) // 2), d, g,
                         padding_mode=rng.choice(["zeros", "circular"]))
        layers += [spectral_norm(conv) if rng.random() < 0.25 else conv, nn.ReLU()]
        c, n = c_out, n // s
    torch.manual_seed(seed)
    return nn.Sequential(*layers)


@pytest.mark.parametrize("seed", range(12))
def test_spectrum_with_model_equals_network_svs(tmp_path, seed):
    name = f"spectrum_vs_network_{seed}"
    MODELS._items[name] = lambda **kw: _random_net(seed, **kw)
    try:
        model = _random_net(seed)
        model.train()
        model(torch.randn(2, 3, 8, 8))  # spectral_norm's power iteration moves, as in training
        model.eval()
        path = tmp_path / "m.pt"
        torch.save(model.state_dict(), path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # depthwise / left-out notes are not what is compared here
            spectra = {s.name: s.svs for s in checkpoint_spectrum(path, model=name, input_shape=(3, 8, 8))}
            live = create_method("sedghi").network_svs(model, (3, 8, 8))
    finally:
        del MODELS._items[name]
    assert set(spectra) == set(live)
    for layer, svs in spectra.items():
        got = live[layer].double()
        assert got.shape == svs.shape, layer
        assert (got - svs).abs().max() <= 2e-6 * svs[0], layer
