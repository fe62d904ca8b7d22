"""``svbench spectrum CKPT --model NAME``: the certified Lipschitz bound of the checkpoint's whole model
(lipschitz.md / .csv), computed from the checkpoint's own weights and BN statistics, after the SVs; refused
checkpoints keep their SVs and say why."""

from __future__ import annotations

import csv

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations

from svbench.cli.main import main
from svbench.metrics.certified import lipschitz_bound
from svbench.models import build_model


def _run(capsys, *args):  # type: ignore[no-untyped-def]
    code = main(["spectrum", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def _trained_like(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 2 + 0.1)
    return model.eval()


@pytest.mark.parametrize("wrap", ["", "model."], ids=["plain", "lightning-prefix"])
def test_spectrum_with_model_writes_the_models_certified_bound(tmp_path, capsys, wrap):
    model = _trained_like(build_model("resnet18", in_channels=1, image_size=8), 0)
    torch.save({"state_dict": {wrap + k: v for k, v in model.state_dict().items()}}, tmp_path / "m.pt")
    code, out, err = _run(capsys, tmp_path / "m.pt", "--model", "resnet18", "--input-shape", "1,8,8",
                          "--out", tmp_path / "o")
    assert code == 0, err
    expected, layers = lipschitz_bound(model, (1, 8, 8))  # the checkpoint's weights and BN statistics
    md = (tmp_path / "o" / "lipschitz.md").read_text()
    assert f"**L = {expected:.6g}**" in md and f"L = {expected:.6g}" in out
    rows = list(csv.DictReader(open(tmp_path / "o" / "lipschitz.csv")))
    assert [r["layer"] for r in rows] == [r["layer"] for r in layers]
    assert [float(r["bound"]) for r in rows] == [r["bound"] for r in layers]
    assert (tmp_path / "o" / "spectrum.md").exists()


def test_no_lipschitz_skips_the_bound_and_needs_a_model(tmp_path, capsys):
    model = build_model("small_cnn", in_channels=1, image_size=12)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    code, _, err = _run(capsys, tmp_path / "m.pt", "--model", "small_cnn", "--input-shape", "1,12,12",
                        "--no-lipschitz", "--out", tmp_path / "o")
    assert code == 0, err
    assert not (tmp_path / "o" / "lipschitz.md").exists() and (tmp_path / "o" / "spectrum.md").exists()
    code, _, err = _run(capsys, tmp_path / "m.pt", "--input-size", "12", "--no-lipschitz", "--out", tmp_path / "p")
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1 and "--no-lipschitz only applies with a model (--model NAME" in lines[0]
    assert not (tmp_path / "p").exists()


def test_a_tt_checkpoint_keeps_its_svs_and_says_why_it_has_no_bound(tmp_path, capsys):
    from svbench.methods import create_method

    torch.manual_seed(0)
    model = create_method("tt", rank=4).wrap(build_model("small_cnn", in_channels=1, image_size=12))
    torch.save(model.state_dict(), tmp_path / "tt.pt")
    code, _, err = _run(capsys, tmp_path / "tt.pt", "--model", "small_cnn", "--input-shape", "1,12,12",
                        "--out", tmp_path / "o")
    assert code == 0, err
    assert "no certified Lipschitz bound for the model" in err and "TT / Cayley layer(s)" in err
    assert "**Not computed**" in (tmp_path / "o" / "lipschitz.md").read_text()
    assert not (tmp_path / "o" / "lipschitz.csv").exists() and (tmp_path / "o" / "spectrum.csv").exists()


def test_spectral_norm_convs_are_bounded_with_their_eval_weight_and_linear_parts_are_said(tmp_path, capsys):
    """Conv weights kept in spectral_norm parts are rebuilt (the weight the eval forward uses); a linear layer's
    parts are not, and the note names it."""
    torch.manual_seed(1)
    model = build_model("small_cnn", in_channels=1, image_size=12)
    model.features[0] = parametrizations.spectral_norm(model.features[0])
    model.train()
    model(torch.rand(2, 1, 12, 12))
    model.eval()
    torch.save(model.state_dict(), tmp_path / "sn.pt")
    code, out, err = _run(capsys, tmp_path / "sn.pt", "--model", "small_cnn", "--input-shape", "1,12,12",
                          "--out", tmp_path / "o")
    assert code == 0, err
    expected, _ = lipschitz_bound(model, (1, 12, 12))
    assert f"**L = {expected:.6g}**" in (tmp_path / "o" / "lipschitz.md").read_text()
    model.classifier = parametrizations.spectral_norm(model.classifier)
    model.train()
    model(torch.rand(2, 1, 12, 12))
    torch.save(model.eval().state_dict(), tmp_path / "sn2.pt")
    code, _, err = _run(capsys, tmp_path / "sn2.pt", "--model", "small_cnn", "--input-shape", "1,12,12",
                        "--out", tmp_path / "o2")
    assert code == 0, err
    assert "layer(s) classifier keep their weight in spectral_norm / weight_norm parts" in err


def test_several_checkpoints_list_each_models_bound(tmp_path, capsys):
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build_model("small_cnn", in_channels=1, image_size=12)
        paths.append(tmp_path / f"m{seed}.pt")
        torch.save(model.state_dict(), paths[-1])
    code, _, err = _run(capsys, *paths, "--model", "small_cnn", "--input-shape", "1,12,12", "--out", tmp_path / "o")
    assert code == 0, err
    text = (tmp_path / "o" / "comparison.md").read_text()
    for p in paths:
        value = float((tmp_path / "o" / p.stem / "lipschitz.md").read_text().split("**L = ")[1].split("**")[0])
        assert f"- {p}: L = {value:.6g}" in text


def test_an_unforeseen_failure_of_the_bound_keeps_the_svs_and_is_one_warning(tmp_path, capsys, monkeypatch):
    import svbench.metrics.certified as certified

    def broken(*_a, **_k):  # type: ignore[no-untyped-def]
        raise TypeError("something svbench did not foresee")

    monkeypatch.setattr(certified, "lipschitz_bound", broken)
    torch.save(build_model("small_cnn", in_channels=1, image_size=12).state_dict(), tmp_path / "m.pt")
    code, _, err = _run(capsys, tmp_path / "m.pt", "--model", "small_cnn", "--input-shape", "1,12,12",
                        "--out", tmp_path / "o")
    assert code == 0 and "Traceback" not in err
    assert "failed: TypeError: something svbench did not foresee (please report it)" in err
    assert (tmp_path / "o" / "spectrum.csv").exists()
