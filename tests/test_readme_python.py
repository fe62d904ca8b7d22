"""The README's Python section runs as printed, and what its comments say holds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_block() -> str:
    text = README.read_text()
    section = text[text.index("### Python\n"):text.index("### asv\n")]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return block


def test_readme_python_section_runs_and_says_the_truth():
    pytest.importorskip("torchvision")
    torch.manual_seed(0)
    env: dict = {}
    exec(compile(_python_block(), "README.md#python", "exec"), env)  # noqa: S102 -- our own README
    svs, bound, f64 = env["svs"], env["bound"], env["f64"]
    assert env["conv"].weight.dtype == torch.float32 and f64.dtype == torch.float64  # the example leaves conv as it is
    assert svs.numel() == 65536 and bool((svs[:-1] >= svs[1:]).all())
    assert bound.numel() == 1 and float(bound[0]) >= float(f64[0]) * (1 - 1e-6)
    assert float((svs.double() - f64).abs().max()) <= 2e-6 * float(f64[0])
    per_conv, clipped = env["per_conv"], env["clipped"]
    assert len(per_conv) == 20 and len(clipped) == 13 and set(clipped) <= set(per_conv)
    assert sorted(set(per_conv) - set(clipped)) == [
        "layer3.0.conv2", "layer3.1.conv1", "layer3.1.conv2", "layer4.0.conv1", "layer4.0.conv2", "layer4.1.conv1",
        "layer4.1.conv2"]
    assert all(clipped[name].shape == env["model"].get_submodule(name).weight.shape for name in clipped)
    L, layers = env["L"], env["layers"]
    assert 1 < L < float("inf") and any(row["layer"] == "normalize+conv1+bn1" for row in layers)  # folded
    table = env["table"]  # model_spectrum: the live ResNet-18's convs, strides from the hooks, as network_svs
    assert [s.name for s in table] == list(per_conv) and table[0].stride == 2 and table[0].n == 32
    assert all(float((s.svs.double() - per_conv[s.name].double()).abs().max()) <= 2e-6 * s.sigma_max for s in table)
