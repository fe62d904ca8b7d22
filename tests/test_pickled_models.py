"""Checkpoints that pickle the model itself (``torch.save(model)``), and models wrapped by svbench's methods.

Before session 20: ``spectrum`` read a pickled model (with ``--trust-checkpoint``) as its state dict only, every conv
at stride 1 on one assumed input size, with no certified bound; ``--input-shape`` without ``--model`` was refused.
Now ``--input-shape`` alone reads the geometry from the pickled model itself (forward hooks), its TT / Cayley layers
included, and computes its certified bound. And ``torch.save(model)`` of a model wrapped by ``sedghi``, ``tt``,
``gram`` or ``power`` failed ("Can't pickle local object 'WeakKeyDictionary...'": the input-size tracker its hooks
hold); it now pickles, and the unpickled model computes and trains as the original.
"""

import io
import sys
import textwrap
import warnings

import pytest
import torch
import torch.nn.functional as F

from svbench.cli.main import main
from svbench.methods import METHODS, create_method
from svbench.models import build_model

NET = textwrap.dedent("""
    from torch import nn

    class PNet(nn.Module):
        def __init__(self, width=4):
            super().__init__()
            self.f = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                   nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
                                   nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.head = nn.Linear(2 * width, 3)

        def forward(self, x):
            return self.head(self.f(x))
""")


@pytest.fixture
def pickled(tmp_path, monkeypatch):
    """pnet.py in the current folder; model.pt pickles a PNet, wrapped.pt {"model": PNet, "epoch": 3}, state.pt its
    state dict. The class's module is then forgotten, as in a fresh process."""
    (tmp_path / "pnet.py").write_text(NET)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    import pnet

    torch.manual_seed(0)
    model = pnet.PNet()
    with torch.no_grad():
        model.f[1].running_var.uniform_(0.5, 2.0)  # BN statistics that matter to the bound
    torch.save(model, tmp_path / "model.pt")
    torch.save({"model": model, "epoch": 3}, tmp_path / "wrapped.pt")
    torch.save(model.state_dict(), tmp_path / "state.pt")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    del sys.modules["pnet"]
    yield model
    sys.modules.pop("pnet", None)


def _spectrum(capsys, *args):
    code = main(["spectrum", *args, "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_input_shape_alone_reads_the_geometry_and_the_bound_from_the_pickled_model(pickled, tmp_path, capsys):
    """The stride-2 conv ``f.3`` on 16 x 16: its SVs against the dense float64 operator of its circular conv, the
    table's 'model hooks', and the certified bound equal (to the last printed digit) to the one of the same weights
    loaded into the same class named as ``--model pnet.py:PNet``."""
    from svbench.functional.oracle import oracle_singular_values

    bounds = []
    for ckpt in ("model.pt", "wrapped.pt"):
        code, out, err = _spectrum(capsys, ckpt, "--input-shape", "3,16,16", "--trust-checkpoint", "--out",
                                   str(tmp_path / ckpt[:-3]))
        assert code == 0 and "warning" not in err, err
        bounds.append(out.split("L = ")[1].split()[0])
        md = (tmp_path / ckpt[:-3] / "spectrum.md").read_text()
        assert "| f.3 | conv | (8, 4, 3, 3) | 16 | 2 (model hooks) |" in md
        assert "pickled PNet" in (tmp_path / ckpt[:-3] / "lipschitz.md").read_text()
    rows = [r.split(",") for r in (tmp_path / "model" / "spectrum.csv").read_text().splitlines()[1:]]
    got = torch.tensor([float(r[5]) for r in rows if r[0] == "f.3"], dtype=torch.float64)
    w = pickled.f[3].weight.detach().double()
    exact = oracle_singular_values(lambda x: F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), w, stride=2),
                                   (4, 16, 16))
    assert got.shape == exact.shape and float((got - exact).abs().max()) <= 2e-6 * float(exact[0])
    code, out, _ = _spectrum(capsys, "state.pt", "--model", "pnet.py:PNet", "--input-shape", "3,16,16", "--out",
                             str(tmp_path / "named"))
    assert code == 0 and out.split("L = ")[1].split()[0] == bounds[0] == bounds[1]


@pytest.mark.parametrize("args, says", [
    (["model.pt", "--input-shape", "3,16,16"], "is not a plain state dict: loading it would run code from the file "
                                               "(it pickles pnet.PNet); if you trust it, pass --trust-checkpoint"),
    (["state.pt", "--input-shape", "3,16,16"], "--input-shape without --model reads the geometry from the model a "
                                               "checkpoint pickles (torch.save(model)); state.pt holds a state dict"),
    (["model.pt", "--input-shape", "3,16,16", "--input-size", "16", "--trust-checkpoint"],
     "pass either --input-size N (every conv on N x N) or --input-shape C,H,W"),
    (["state.pt", "--input-size", "16", "--no-lipschitz"], "--no-lipschitz only applies with a model"),
])
def test_bad_uses_are_one_line(pickled, capsys, args, says):
    code, out, err = _spectrum(capsys, *args)
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1 and not out


def test_a_pickled_model_whose_code_is_not_importable_here(pickled, tmp_path, capsys, monkeypatch):
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    code, _, err = _spectrum(capsys, str(tmp_path / "model.pt"), "--input-shape", "3,16,16", "--trust-checkpoint")
    assert code == 2 and "it pickles objects of module 'pnet', which is not importable here; run svbench from the " \
                         "folder it was saved in, or put that code on PYTHONPATH" in err
    assert str(other) not in sys.path  # the current folder is on sys.path only while the file is unpickled


@pytest.mark.parametrize("method", ["tt", "cayley"])
def test_a_pickled_model_with_tt_or_cayley_layers(method, tmp_path, capsys):
    """Its TT / Cayley layers are in the pickled model: their own geometry (the stride-2 layer ``features.6`` on
    8 x 8), their SVs as the method computes them on that grid, and the model's certified bound (before: refused,
    'TT layer ... is not in model')."""
    torch.manual_seed(1)
    m = create_method(method, **({"rank_scale": 0.5} if method == "tt" else {}))
    model = m.wrap(build_model("small_cnn", in_channels=1, image_size=16)).eval()
    torch.save(model, tmp_path / "m.pt")
    code, out, err = _spectrum(capsys, str(tmp_path / "m.pt"), "--input-shape", "1,16,16", "--trust-checkpoint",
                               "--out", str(tmp_path / "out"))
    assert code == 0 and "certified Lipschitz bound of the model: L = " in out, err
    md = (tmp_path / "out" / "spectrum.md").read_text()
    assert f"| features.6 | {method} |" in md and "| 8 | 2 (model hooks) |" in md.split("| features.6 |")[1]
    rows = [r.split(",") for r in (tmp_path / "out" / "spectrum.csv").read_text().splitlines()[1:]]
    got = torch.tensor([float(r[5]) for r in rows if r[0] == "features.6"])
    # the layer's circular model on its grid (a Cayley layer is circular by construction)
    want = m.layer_svs(model.features[6], 8) if method == "cayley" else m.network_svs(model, (1, 16, 16))["features.6"]
    assert got.shape == want.shape and float((got - want).abs().max()) <= 1e-6 * float(want[0])


@pytest.mark.parametrize("method", METHODS.names())
def test_every_wrapped_model_pickles_and_works_after_loading(method):
    torch.manual_seed(0)
    m = create_method(method)
    model = m.wrap(build_model("small_cnn", in_channels=1, image_size=16))
    x = torch.randn(2, 1, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.train()
        model(x)
        m.after_step(model, 0)
        buf = io.BytesIO()
        torch.save(model, buf)
        buf.seek(0)
        back = torch.load(buf, weights_only=False)
        model.eval()
        back.eval()
        with torch.no_grad():
            assert torch.equal(model(x), back(x))
        back.train()
        loss = back(x).square().mean()
        loss.backward()  # the unpickled model's hooks run, and it trains
    assert all(p.grad is not None for p in back.parameters() if p.requires_grad)


def test_a_pickled_data_parallel_model(pickled, tmp_path, capsys):
    """torch.save(nn.DataParallel(model)): its state dict's keys lose the ``module.`` prefix, so the pickled model's
    names must lose it too (else every layer fell back to the assumed geometry)."""
    sys.path.insert(0, str(tmp_path))
    try:
        torch.save(torch.nn.DataParallel(torch.load(tmp_path / "model.pt", weights_only=False)), tmp_path / "dp.pt")
    finally:
        sys.path.remove(str(tmp_path))
    code, out, err = _spectrum(capsys, "dp.pt", "--input-shape", "3,16,16", "--trust-checkpoint", "--out",
                               str(tmp_path / "dp"))
    assert code == 0 and "warning" not in err, err
    assert "| f.3 | conv | (8, 4, 3, 3) | 16 | 2 (model hooks) |" in (tmp_path / "dp" / "spectrum.md").read_text()


def test_model_spectrum_of_a_model_in_memory(pickled, tmp_path, capsys):
    """``svbench.checkpoint.model_spectrum(model, input_shape)``: a live model's per-conv spectra without a file --
    the same values as the CLI gives for its pickle (CSV, to the printed digit), the same SVs as ``sedghi``'s network
    route on a torchvision ResNet-18 (within the accuracy class; each conv's circular model on its grid, strides from
    the hooks), the model itself untouched (weights, training flag); a bad input_shape is one line."""
    import torchvision

    from svbench.checkpoint import model_spectrum
    from svbench.errors import UserError

    code, _, _ = _spectrum(capsys, "model.pt", "--input-shape", "3,16,16", "--trust-checkpoint", "--no-lipschitz",
                           "--out", str(tmp_path / "cli"))
    assert code == 0
    rows = [r.split(",") for r in (tmp_path / "cli" / "spectrum.csv").read_text().splitlines()[1:]]
    live = model_spectrum(pickled, (3, 16, 16))
    assert [(s.name, s.n, s.stride, s.geometry_source) for s in live] == [("f.0", 16, 1, "model hooks"),
                                                                          ("f.3", 16, 2, "model hooks")]
    assert [repr(v) for s in live for v in s.svs.tolist()] == [r[5] for r in rows]

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    spectra = {s.name: s for s in model_spectrum(net, [3, 32, 32])}
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = create_method("sedghi").network_svs(net.eval(), (3, 32, 32))
    assert set(spectra) == set(want) and len(want) == 20
    for name, svs in want.items():
        got = spectra[name].svs.double().cpu()
        assert got.shape == svs.shape and float((got - svs.double().cpu()).abs().max()) <= 2e-6 * float(svs[0]), name
        assert spectra[name].sigma_max_bound is not None, name  # the zero-padded layer's bound (on n')
    assert spectra["layer2.0.conv1"].stride == 2 and spectra["layer2.0.conv1"].n == 8
    picked = model_spectrum(net, (3, 32, 32), layers=["layer2.0.*"])
    assert [s.name for s in picked] == ["layer2.0.conv1", "layer2.0.conv2", "layer2.0.downsample.0"]
    assert all(torch.equal(s.svs, spectra[s.name].svs) for s in picked)
    with pytest.raises(UserError, match="no conv layer of ResNet matches"):
        model_spectrum(net, (3, 32, 32), layers="nothing")
    for bad in [(3, 32), (3, 32, 0), "3,32,32", (3.0, 32, 32)]:
        with pytest.raises(UserError, match=r"input_shape must be \(C, H, W\) of positive integers"):
            model_spectrum(net, bad)
