"""Seeded fuzzing of `svbench spectrum`: random checkpoints (conv kernels of odd sizes, dtypes, layouts, NaN,
zeros, huge values, TT core triples that chain or not, Cayley layers with odd scales, junk names, nested
containers, non-tensor values) must end in a result (exit 0) or one line (exit 2), never a traceback or a stray
warning from torch.

A 400-checkpoint run of this generator found torch's sparse-tensor notice on stderr and a wrong --method reported
as a layer's problem; both fixed (tests in test_bad_inputs).
"""

import random

import pytest
import torch

from svbench.cli.main import main

N_CHECKPOINTS = 60


def _tensor(rng: random.Random) -> torch.Tensor:
    shape = [rng.choice([0, 1, 2, 3, 5, 8]) for _ in range(rng.choice([0, 1, 2, 4, 4, 5]))]
    t = torch.randn(*shape) if shape else torch.randn(())
    return t.to(rng.choice([torch.float32, torch.float64, torch.float16, torch.int64, torch.bool]))


def _conv_weight(rng: random.Random) -> torch.Tensor:
    k = rng.choice([1, 3, 3, 5, 7])
    kw = k if rng.random() < 0.8 else rng.choice([1, 2, 3, 7])  # non-square kernels are read since session 14
    t = torch.randn(rng.randint(1, 8), rng.randint(1, 8), k, kw)
    r = rng.random()
    if r < 0.05:
        t = t.to(rng.choice([torch.float16, torch.bfloat16, torch.float64]))
    elif r < 0.08:
        t = t.to_sparse()
    elif r < 0.11:
        t.view(-1)[0] = float("nan")
    elif r < 0.13:
        t = t.permute(0, 1, 3, 2)
    elif r < 0.17:
        t = t * rng.choice([0.0, 1e30])
    return t


def _checkpoint(rng: random.Random) -> object:
    names = ["conv", "layer1.0.conv1", "features.3", "t", "fc", "", "a.b.c"]
    leaves = ["weight", "bias", "k1", "k2", "k3", "running_mean"]
    state: dict = {f"{rng.choice(names)}.{rng.choice(leaves)}": _tensor(rng) for _ in range(rng.randint(0, 3))}
    for i in range(rng.randint(0, 4)):
        state[f"layer{i}.conv.weight"] = _conv_weight(rng)
    if rng.random() < 0.25:
        c_in, c_out, r1, r2 = (rng.randint(1, 5) for _ in range(4))
        k = rng.choice([1, 3])
        state["tt.k1"] = torch.randn(c_in + (rng.random() < 0.2), r1)
        state["tt.k2"] = torch.randn(r2, r1, k, k)
        state["tt.k3"] = torch.randn(r2, c_out)
    if rng.random() < 0.2:  # a Cayley layer: weight + scalar alpha (odd ones: zero weight, NaN or huge alpha)
        state["cay.weight"] = _conv_weight(rng)
        state["cay.alpha"] = torch.tensor(rng.choice([1.0, 0.0, 3.5, float("nan"), 1e30, -2.0]))
    if rng.random() < 0.1:
        state["junk"] = rng.choice([None, 3, "text", [torch.randn(2)], {"x": torch.randn(3, 3, 3, 3)}])
    wrap = rng.random()
    return {"state_dict": state, "epoch": 1} if wrap < 0.2 else [state] if wrap < 0.25 else state


@pytest.mark.parametrize("block", range(3))
def test_spectrum_on_random_checkpoints_ends_in_a_result_or_one_line(tmp_path, capsys, recwarn, block):
    exits = []
    for seed in range(block * N_CHECKPOINTS // 3, (block + 1) * N_CHECKPOINTS // 3):
        rng = random.Random(seed)
        path = tmp_path / f"ck{seed}.pt"
        torch.save(_checkpoint(rng), path)
        args = ["spectrum", str(path), "--out", str(tmp_path / f"o{seed}")]
        if rng.random() < 0.8:
            args += ["--input-size", str(rng.choice([1, 3, 4, 8]))]
        if rng.random() < 0.15:
            args += ["--method", rng.choice(["sedghi", "reference", "gram", "tt"])]
        code = main(args)
        err = capsys.readouterr().err
        assert code in (0, 2) and "Traceback" not in err, (seed, args, err)
        if code == 2:
            lines = [x for x in err.splitlines() if x.startswith("svbench: error:")]
            assert len(lines) == 1, (seed, err)
        exits.append(code)
    assert exits.count(0) >= 2 and exits.count(2) >= 2  # both outcomes were reached
    assert not [str(w.message) for w in recwarn if "svbench" not in str(w.filename) and "sparse" in str(w.message)]
