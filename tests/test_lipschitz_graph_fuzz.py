"""Random residual networks, linear and not (convs with zero / circular padding, strides, groups; BN with
trained-like statistics; activations; residual sums, concatenations, pooling, padding, scalings, functional ops) on
small inputs: the graph bound is never below the float64 Jacobian's spectral norm at random points (a lower bound
on the Lipschitz constant; for the linear ones the constant itself), and folding never raises it."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from svbench.metrics.lipschitz_graph import graph_lipschitz_bound
from svbench.models.normalize import Normalize


class _Unit(nn.Module):
    """One random unit on c channels: y = branch(x) (+ shortcut(x)) (or a concatenation), maybe downsampled."""

    def __init__(self, rng: random.Random, c: int, linear: bool) -> None:
        super().__init__()
        self.kind = rng.choice(["sum", "sum", "cat", "plain"])
        self.down = rng.random() < 0.3
        stride = 2 if self.down else 1
        pad_mode = rng.choice(["zeros", "circular"])
        groups = rng.choice([1, 1, c]) if c > 1 else 1
        mid = c if self.kind != "cat" else max(1, c // 2)
        self.conv1 = nn.Conv2d(c, c, 3, stride, 1, groups=groups, padding_mode=pad_mode, bias=rng.random() < 0.5)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, mid, rng.choice([1, 3]), 1, "same", bias=False)
        self.bn2 = nn.BatchNorm2d(mid) if rng.random() < 0.7 else nn.Identity()
        self.act = rng.choice([F.relu, F.gelu, torch.tanh, F.leaky_relu, lambda x: F.elu(x, 1.5),
                               lambda x: F.leaky_relu(x, 1.5, inplace=True), nn.ReLU6(inplace=True)]) if not linear \
            else (lambda x: x.contiguous())
        self.scale = rng.choice([1.0, 0.5, -2.0])
        self.short = nn.Conv2d(c, c if self.kind != "cat" else c - mid, 1, stride, bias=False) \
            if (self.down or self.kind == "cat") and rng.random() < 0.5 else None
        self.out_c = c

    def forward(self, x):  # type: ignore[no-untyped-def]
        out = self.conv2(self.act(self.bn1(self.conv1(x))))
        out = self.bn2(out) * self.scale
        if self.kind == "plain":
            return out
        if self.short is not None:
            short = self.short(x)
        else:
            short = F.avg_pool2d(x, 2, ceil_mode=True) if self.down else x  # the conv's output grid
            if self.kind == "cat":
                short = short[:, : self.out_c - out.shape[1]]
        if self.kind == "cat":
            return torch.cat([out, short], dim=1)
        return out + short


class _Net(nn.Module):
    def __init__(self, seed: int, linear: bool) -> None:
        super().__init__()
        rng = random.Random(seed)
        c = rng.choice([2, 3, 4])
        self.norm = Normalize([0.5] * 2, [rng.uniform(0.2, 1.0) for _ in range(2)])
        self.stem = nn.Conv2d(2, c, 3, padding=1, bias=False)
        self.units = nn.Sequential(*[_Unit(rng, c, linear) for _ in range(rng.randint(1, 3))])
        self.head_pool = rng.choice(["mean", "adaptive"] + ([] if linear else ["max"]))
        self.linear = linear
        self.fc = nn.Linear(c, 3)

    def forward(self, x):  # type: ignore[no-untyped-def]
        x = self.stem(self.norm(x))
        x = self.units(x if self.linear else F.relu(x))
        if self.head_pool == "mean":
            x = x.mean((2, 3))
        elif self.head_pool == "adaptive":
            x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        else:
            x = torch.flatten(F.max_pool2d(F.pad(x, (0, 1, 0, 1)), 2, 1), 1)[:, : self.fc.in_features]
        return self.fc(x)


def _trained_like(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.running_mean.copy_(torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 3 + 0.05)
    return model.eval()


@pytest.mark.parametrize("linear", [False, True], ids=["nonlinear", "linear"])
@pytest.mark.parametrize("seed", range(12))
def test_random_residual_networks_are_bounded(seed, linear):
    """Linear networks (no activations, no max pooling): the Jacobian's norm IS the Lipschitz constant, so the
    check is against the true value; nonlinear ones: against lower bounds at random points."""
    torch.manual_seed(seed)
    model = _trained_like(_Net(seed, linear), seed).double()
    shape = (2, 6, 6)
    folded = graph_lipschitz_bound(model, shape)
    plain = graph_lipschitz_bound(model, shape, fold=False)
    assert folded.value <= plain.value * (1 + 1e-12)
    g = torch.Generator().manual_seed(seed)
    for _ in range(3):
        x = torch.rand(1, *shape, generator=g, dtype=torch.float64) * 4 - 2
        jac = torch.autograd.functional.jacobian(model, x).reshape(-1, x.numel())
        assert float(torch.linalg.matrix_norm(jac, ord=2)) <= folded.value * (1 + 1e-9)
