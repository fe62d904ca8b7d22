"""Random convs torch accepts (non-square kernels, per-axis padding, zero or circular padding, strides, dilation,
groups) on random square grids: every ``upper_bound`` route of ``gram`` is never below the layer's dense float64
sigma_max, and ``power`` never above it; a layer a route does not model is refused in one line (``UserError``), never
answered wrongly.

Found in session 14: the zero-padding grid n' came from the kernel's WIDTH, so a 5 x 1 kernel got n' = n and a
"guaranteed" Gram bound at 0.43 of the zero-padded layer's sigma_max; the Delattre 2024 bound padded its
self-correlations by the width too (0.60 on a 5 x 1 kernel, any padding). The registry-wide contract tests use
square kernels, and the per-axis tests circular padding only."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from svbench.errors import UserError
from svbench.functional.oracle import oracle_singular_values
from svbench.methods import create_method

BOUNDS = [{"precision": "float64"}, {"bound": "delattre2024", "precision": "float64"}, {}]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@settings(max_examples=80, deadline=None)
@given(
    c_in_per=st.integers(1, 3),
    c_out_per=st.integers(1, 3),
    groups=st.sampled_from([1, 2]),
    kh=st.sampled_from([1, 2, 3, 5]),
    kw=st.sampled_from([1, 3, 5]),
    n=st.integers(4, 8),
    stride=st.sampled_from([1, 2]),
    dilation=st.sampled_from([1, 2]),
    pad=st.sampled_from(["half", "none", "same"]),
    mode=st.sampled_from(["zeros", "circular"]),
    seed=st.integers(0, 10_000),
)
def test_gram_bounds_and_power_estimate_hold_on_random_convs(c_in_per, c_out_per, groups, kh, kw, n, stride,
                                                             dilation, pad, mode, seed):
    if pad == "same" and stride != 1:
        return  # torch refuses 'same' with stride
    padding = {"half": (dilation * (kh - 1) // 2, dilation * (kw - 1) // 2), "none": 0, "same": "same"}[pad]
    torch.manual_seed(seed)
    try:
        conv = nn.Conv2d(c_in_per * groups, c_out_per * groups, (kh, kw), stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=False, padding_mode=mode).double()
        truth = float(oracle_singular_values(conv, (conv.in_channels, n, n))[0])
    except (RuntimeError, ValueError):
        return  # a geometry torch itself rejects
    for options in BOUNDS:
        try:
            bound = float(create_method("gram", **options).layer_svs(conv, n)[0])
        except UserError:  # UnsupportedShape, or a stride that does not divide a circular grid
            continue
        assert bound >= truth * (1 - 1e-9), (options, bound, truth)
    try:
        estimate = float(create_method("power", iters=50).layer_svs(conv, n)[0])
    except UserError:
        return
    assert estimate <= truth * (1 + 1e-9), (estimate, truth)
