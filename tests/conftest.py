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
