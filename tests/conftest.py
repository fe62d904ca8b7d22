"""Test configuration: one CPU thread (timings and determinism), float64 oracle helpers."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def tt_checkpoint(tmp_path, monkeypatch):
    """A factory ``make(name, build, seed) -> (wrapped model, checkpoint path)``: registers ``build`` as svbench model
    ``name`` (for ``spectrum --model``), wraps it with ``tt`` at rank 4, moves every core off orthonormal (the fold
    must carry them, as after training) and saves the state dict."""

    def make(name, build, seed):
        from svbench.methods import create_method
        from svbench.models.registry import MODELS

        monkeypatch.setitem(MODELS._items, name, build)
        torch.manual_seed(seed)
        model = create_method("tt", rank=4).wrap(build())
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.3 * torch.randn_like(p))
        path = tmp_path / f"{name}.pt"
        torch.save(model.state_dict(), path)
        return model, path

    return make


def circular_conv(weight: torch.Tensor, stride: int = 1, bias: bool = False) -> torch.nn.Conv2d:
    """An nn.Conv2d with circular 'same' padding holding ``weight`` (dtype kept)."""
    c_out, c_in, k, _ = weight.shape
    conv = torch.nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, padding_mode="circular", bias=bias)
    conv = conv.to(weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(weight)
    return conv


def zero_conv(weight: torch.Tensor, stride: int = 1) -> torch.nn.Conv2d:
    c_out, c_in, k, _ = weight.shape
    conv = torch.nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False).to(weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(weight)
    return conv


def triton_interpreter_or_skip() -> None:
    """Skip where Triton's CPU interpreter cannot run svbench's fused kernel: Triton before 3.8 reads a runtime loop
    bound with int() of a 1-element array, which numpy >= 2.4 refuses ("only 0-dimensional arrays can be converted
    to Python scalars"; seen with torch 2.11's Triton 3.6). The compiled kernel on a GPU is not affected."""
    triton = pytest.importorskip("triton")
    import numpy as np
    from packaging.version import Version

    try:
        int(np.array([1]))
    except TypeError:
        if Version(triton.__version__) < Version("3.8"):
            pytest.skip(f"Triton {triton.__version__}'s interpreter cannot run the fused kernel with numpy "
                        f"{np.__version__} (fixed in Triton 3.8)")


def certified_train_records(tmp_path, capsys, model: str, eps: float) -> dict:  # type: ignore[no-untyped-def]
    """Run a one-epoch train task with ``certify: true`` on synthetic data (method none, CPU, 1 thread) and return
    its records by metric name."""
    import json

    from svbench.cli.main import main

    suite = tmp_path / "s.yaml"
    suite.write_text(f"name: cert\ndevice: cpu\nthreads: 1\ntasks:\n  - {{name: t, kind: train, dataset: synthetic, "
                     f"model: {model}, methods: [none], epochs: 1, batch_size: 64, certify: true, cert_eps: [{eps}], "
                     "attacks: []}\n")
    code = main(["run", str(suite), "--out", str(tmp_path / "runs"), "--no-progress"])
    capsys.readouterr()
    assert code == 0
    (results,) = (tmp_path / "runs").glob("cert/*/results.jsonl")
    return {r["metric"]: r for r in map(json.loads, results.read_text().splitlines())}
