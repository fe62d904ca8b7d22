"""Frequency screening of the Gram bound (``screen``, functional/gram.py): the same value as without it, fewer
matrices iterated when sigma_1 varies across frequencies, the same gradient for the training penalty."""

import pytest
import torch
from torch import nn

from svbench.errors import UserError
from svbench.functional.gram import (
    _first_product,
    _gram_run,
    _unique_transfer,
    gram_iteration_bound,
    gram_iteration_bound_batched,
    gram_iteration_bound_grouped,
    gram_iteration_matrices,
    gram_iteration_max,
)
from svbench.functional.spectrum import conv_sigma_max
from svbench.methods import create_method


def _spread(groups: int, freqs: int, c: int, dtype=torch.complex64, seed: int = 0) -> torch.Tensor:
    """Matrices whose sigma_1 falls across the frequencies, as in trained layers (a few dominant frequencies)."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.linspace(0.2, 1.0, freqs)[torch.randperm(freqs, generator=g)] ** 3
    return torch.randn(groups, freqs, c, c, generator=g, dtype=dtype) * scale[None, :, None, None]


@pytest.mark.parametrize("products", ["complex", "real", "3xtf32"])
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128, torch.float32])
def test_screened_max_is_the_unscreened_max(products, dtype):
    if products == "3xtf32" and dtype != torch.complex64:
        pytest.skip("3xTF32 products take float32 input")
    mats = _spread(3, 30, 20, dtype)
    on = gram_iteration_max(mats, 6, products=products, screen="on")
    off = gram_iteration_max(mats, 6, products=products, screen="off")
    every = gram_iteration_matrices(mats, 6, products=products).amax(-1)
    assert torch.equal(on, off) and torch.equal(off, every)
    exact = torch.linalg.matrix_norm(mats.to(torch.complex128), ord=2).amax(-1)
    assert bool((on.double() >= exact * (1 - 1e-6)).all())


def test_screening_drops_frequencies_that_cannot_hold_the_maximum():
    mats = _spread(2, 40, 16)
    flat = mats.reshape(-1, 16, 16)
    groups = torch.arange(2).repeat_interleave(40)
    bounds, kept = _gram_run(_first_product(flat, "real", True), 6, "real", True, groups=groups, count=2)
    assert bounds.numel() == kept.numel() < 20  # of 80
    assert set(kept.tolist()) == {0, 1}  # every group keeps its maximum
    # equal sigma_1 (a tie, here the same matrix up to a phase) is never dropped: each may hold the maximum
    one = torch.randn(16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.complex64)
    tied = torch.stack([one * torch.exp(torch.tensor(0.3j * i)) for i in range(10)])
    bounds, _ = _gram_run(_first_product(tied, "real", True), 6, "real", True,
                          groups=torch.zeros(10, dtype=torch.long), count=1)
    assert bounds.numel() == 10


def test_screened_layer_bounds_match_on_conv_layers():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(24, 20, 3, 3, generator=g)
    w[:, :, 1, 1] *= 4  # a strong centre tap: sigma_1 peaks at low frequencies, as in smooth trained kernels
    mats = _unique_transfer(w, 8, 1)
    bounds, _ = _gram_run(_first_product(mats, "real", True), 6, "real", True,
                          groups=torch.zeros(mats.shape[0], dtype=torch.long), count=1)
    assert bounds.numel() < mats.shape[0]  # screened (Gram side 20 >= SCREEN_MIN_SIDE)
    for stride in (1, 2):
        on = gram_iteration_bound(w, 8, stride, screen="on")
        assert torch.equal(on, gram_iteration_bound(w, 8, stride, screen="off"))
        assert float(on) >= float(conv_sigma_max(w.double(), 8, stride)) * (1 - 1e-6)
    ws = torch.stack([w, 0.5 * w.flip(-1)])
    assert torch.equal(gram_iteration_bound_batched(ws, 8, screen="on"),
                       gram_iteration_bound_batched(ws, 8, screen="off"))
    wg = torch.randn(32, 16, 3, 3, generator=g)
    assert torch.equal(gram_iteration_bound_grouped(wg, 8, 1, 2, screen="on"),
                       gram_iteration_bound_grouped(wg, 8, 1, 2, screen="off"))


def test_screened_penalty_has_the_same_value_and_gradient():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 24, 3, padding=1, stride=2))
    with torch.no_grad():
        model[0].weight[:, :, 1, 1] *= 5
    grads, values = {}, {}
    for screen in ("on", "off"):
        m = create_method("gram", screen=screen, penalty_weight=1.0)
        m.wrap(model)
        model(torch.zeros(1, 3, 8, 8))
        model.zero_grad()
        p = m.penalty(model)
        p.backward()
        values[screen] = float(p.detach())
        grads[screen] = [q.grad.clone() for q in model.parameters() if q.grad is not None]
    assert values["on"] == values["off"] > 0
    assert all(torch.allclose(a, b, rtol=1e-6, atol=1e-9) for a, b in zip(grads["on"], grads["off"]))


def test_screen_auto_is_off_on_cuda_and_on_elsewhere(monkeypatch):
    import svbench.functional.gram as gram

    seen = []
    real_run = gram._gram_run

    def spy(*args, **kwargs):
        seen.append(kwargs.get("groups") is not None)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(gram, "_gram_run", spy)
    gram_iteration_max(_spread(1, 6, 4), 3)
    assert seen == [True]


def test_bad_screen_setting_is_one_line():
    with pytest.raises(UserError, match="Gram screen must be one of auto, on, off; got 'maybe'") as e:
        gram_iteration_max(_spread(1, 4, 4), 3, screen="maybe")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="config.screen: expected one of 'auto' | 'on' | 'off'"):
        create_method("gram", screen="maybe")


def test_screened_batched_layers_have_the_same_gradient():
    """Layers of one shape share one screened iteration; each layer's maximum (and its gradient) is its own."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2, 20, 20, 3, 3, generator=g)
    w[:, :, :, 1, 1] *= 4
    out = {}
    for screen in ("on", "off"):
        x = w.clone().requires_grad_(True)
        b = gram_iteration_bound_batched(x, 8, screen=screen)
        (b * torch.tensor([1.0, 2.0])).sum().backward()
        out[screen] = (b.detach(), x.grad)
    assert torch.equal(out["on"][0], out["off"][0]) and torch.equal(out["on"][1], out["off"][1])
