"""The experimental fused Gram step (``products: triton``) against the torch form, through Triton's CPU interpreter
(a subprocess: TRITON_INTERPRET is read when the kernel is defined), and its one-line refusals."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import triton_interpreter_or_skip

from svbench.errors import UserError
from svbench.functional.gram import gram_iteration_matrices

ROOT = Path(__file__).resolve().parent.parent
CHECK = r"""
import torch
from svbench.functional.gram import gram_iteration_matrices
from svbench.functional.gram_triton import fused_gram_step
from svbench.methods import create_method
from svbench.methods.base import LayerSpec

g = torch.Generator().manual_seed(0)
for n, block in [(20, 16), (37, 16), (48, 32)]:  # tiles cut at the edge, several tile pairs, a larger tile
    a = torch.randn(3, n, n, generator=g)
    inv = torch.rand(3, generator=g) + 0.5
    want = (a @ a.mT + 0.5 * (a + a.mT) @ (a - a.mT)) * inv[:, None, None]
    for precision, warps in (("ieee", 4), ("tf32x3", 8)):
        got = fused_gram_step(a, inv, block=block, precision=precision, warps=warps)
        err = float((got - want).abs().max() / want.abs().max())
        assert err < 1e-6, (n, block, precision, err)
mats = torch.randn(4, 24, 24, dtype=torch.complex64, generator=g)
real, fused = (gram_iteration_matrices(mats, 6, products=p) for p in ("real", "triton"))
assert float(((fused - real) / real).abs().max()) < 1e-6, (fused, real)
exact = torch.linalg.matrix_norm(mats.to(torch.complex128), ord=2)
assert bool((fused.double() >= exact * (1 - 1e-6)).all())  # still an upper bound (to float32 rounding)
method = create_method("gram", products="triton")
layer = method.make_layer(LayerSpec(8, 8, 3, 8, 1, "circular"), seed=0)
twin = create_method("gram", products="real")
assert abs(float(method.layer_svs(layer, 8)[0]) - float(twin.layer_svs(layer, 8)[0])) < 1e-5
print("ok")
"""


def test_fused_gram_step_matches_the_torch_form_in_the_interpreter():
    triton_interpreter_or_skip()
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stdout + res.stderr


def test_triton_products_refuse_a_cpu_without_the_interpreter_and_gradients(monkeypatch):
    """One line each: no CUDA device (and no interpreter), or a bound that needs a backward pass."""
    pytest.importorskip("triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    mats = torch.randn(2, 6, 6, dtype=torch.complex64)
    with pytest.raises(UserError, match="run on a CUDA device") as e:
        gram_iteration_matrices(mats, 3, products="triton")
    assert "\n" not in str(e.value)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(UserError, match="no backward pass"):
        gram_iteration_matrices(mats.requires_grad_(True), 3, products="triton")
    from svbench.functional.gram_triton import fused_gram_step

    square = torch.randn(2, 16, 16)
    with pytest.raises(UserError, match="precision must be one of ieee, tf32x3"):
        fused_gram_step(square, torch.ones(2), precision="tf32")
    with pytest.raises(UserError, match="block must be a power of two"):
        fused_gram_step(square, torch.ones(2), block=24)
    with pytest.raises(UserError, match="float32 batch of square matrices"):
        fused_gram_step(square.double(), torch.ones(2))
    with pytest.raises(UserError, match="warps must be 1, 2, 4, 8 or 16, got 3"):
        fused_gram_step(square, torch.ones(2), warps=3)


def test_gram_penalty_with_triton_products_takes_the_real_form():
    """The training penalty needs a gradient: ``products: triton`` runs it in the real form (no Triton, no error)."""
    from torch import nn

    from svbench.methods import create_method

    method = create_method("gram", products="triton", penalty_weight=1.0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False))
    with torch.no_grad():
        model[0].weight.mul_(10)  # sigma_max well above 1: the penalty is active
    method.wrap(model)
    model(torch.randn(1, 3, 8, 8))  # the hooks record each conv's input size
    pen = method.penalty(model)
    assert pen is not None and pen.requires_grad
    pen.backward()
    assert model[0].weight.grad is not None
