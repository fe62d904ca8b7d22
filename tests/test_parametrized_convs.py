"""Convs under torch's spectral_norm / weight_norm (both the parametrizations API and the older hook API): the
standard SV-control baseline (Miyato et al., ICLR 2018) a researcher compares against.

- Network routes: a parametrized conv (class ``ParametrizedConv2d``) is computed with the weight its forward
  uses; before session 14 sedghi and tt left it out (warning), reference raised, gram and power bounded its zero-
  padded operator instead of the circular model. Reading the weight never advances spectral_norm's power
  iteration. A Conv2d subclass with a forward of its own is left out, named.
- ``spectrum``: the state dict holds the weight in parts (``weight_orig`` + ``weight_u`` / ``weight_v``,
  ``parametrizations.weight.original`` + ``0._u`` / ``0._v``, ``weight_g`` / ``weight_v``, ``original0`` /
  ``original1``); the eval weight is rebuilt from them. Before, the old-API layers were left out without a word
  and the others gave "no conv weights".

The oracle is torch's own forward of the eval model (dense float64 impulse responses), never svbench's rebuild."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations as P
from torch.nn.utils import spectral_norm as old_spectral_norm
from torch.nn.utils import weight_norm as old_weight_norm

from svbench.checkpoint.load import find_convs
from svbench.checkpoint.spectrum import checkpoint_spectrum
from svbench.functional.oracle import oracle_singular_values
from svbench.methods import METHODS, create_method

WRAPS = {"sn": P.spectral_norm, "wn": P.weight_norm, "old_sn": old_spectral_norm,
         "old_wn": lambda m: _quiet(old_weight_norm, m)}


def _quiet(fn, m):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # old weight_norm is deprecated
        return fn(m)


def _model(kind: str, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    wrap = WRAPS[kind]
    model = nn.Sequential(wrap(nn.Conv2d(3, 5, 3, padding=1)), nn.ReLU(), wrap(nn.Conv2d(5, 4, 3, stride=2, padding=1)),
                          nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)).double()
    model.train()
    for _ in range(3):  # a few power-iteration steps, as in training
        model(torch.randn(2, 3, 8, 8, dtype=torch.float64))
    return model.eval()


def _circular_exact(layer: nn.Module, n: int) -> torch.Tensor:
    """SVs of the circular conv with the weight the eval forward uses (read through the layer itself)."""
    with torch.no_grad():
        w = layer.weight.detach().double()
    s = layer.stride[0]
    return oracle_singular_values(lambda x: F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), w, stride=s),
                                  (layer.in_channels, n, n))


@pytest.mark.parametrize("kind", list(WRAPS))
@pytest.mark.parametrize("method", [m for m in METHODS.names() if METHODS.get(m).provides != "orthogonal_layer"])
def test_network_routes_take_parametrized_convs(method, kind):
    model = _model(kind)
    model.train()  # reading the weight must not run a power-iteration step
    state = {k: v.clone() for k, v in model.state_dict().items()}
    m = create_method(method)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing left out
        got = m.network_svs(model, (3, 8, 8))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    model.eval()
    assert set(got) == {"0", "2", "4"}
    for name, n in (("0", 8), ("2", 8), ("4", 4)):
        exact, sv = _circular_exact(model.get_submodule(name), n), got[name].double()
        if m.provides == "all_svs":
            assert sv.shape == exact.shape and (sv - exact).abs().max() <= 2e-6 * exact[0], name
        elif m.provides == "upper_bound":
            assert exact[0] * (1 - 1e-6) <= sv[0] <= exact[0] * 1.01, name
        elif m.provides == "estimate":
            assert exact[0] * 0.9 <= sv[0] <= exact[0] * (1 + 1e-9), name
        else:
            assert sv.numel() == 0


def test_a_conv_subclass_with_its_own_forward_is_left_out_named():
    class StandardizedConv(nn.Conv2d):  # weight standardisation: the operator is not conv2d with .weight
        def forward(self, x):
            w = self.weight
            w = (w - w.mean(dim=(1, 2, 3), keepdim=True)) / w.std(dim=(1, 2, 3), keepdim=True)
            return self._conv_forward(x, w, self.bias)

    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), StandardizedConv(4, 4, 3, padding=1))
    with pytest.warns(UserWarning, match=r"1 of 2 conv layers left out of the result: 1 \(StandardizedConv\)"):
        got = create_method("sedghi").network_svs(model, (3, 8, 8))
    assert set(got) == {"0"}


@pytest.mark.parametrize("kind", list(WRAPS))
def test_spectrum_rebuilds_the_eval_weight_from_its_parts(tmp_path, kind):
    model = _model(kind, seed=1)
    path = tmp_path / "m.pt"
    torch.save(model.state_dict(), path)
    spectra = {s.name: s for s in checkpoint_spectrum(path, input_size=8)}
    assert set(spectra) == {"0", "2", "4"}
    how = "spectral_norm" if kind.endswith("sn") else "weight_norm"
    assert spectra["0"].kind == f"conv ({how})" and spectra["4"].kind == "conv"
    exact = _circular_exact(model[0], 8)  # stride 1 is assumed without --model: layer 0 has stride 1
    assert (spectra["0"].svs - exact).abs().max() <= 2e-6 * exact[0]


@pytest.mark.parametrize("kind", list(WRAPS))
def test_spectrum_with_model_reads_a_parametrized_checkpoint(tmp_path, kind):
    """A svbench model trained with spectral_norm / weight_norm applied to its convs: --model gives each rebuilt conv
    its real input size and stride."""
    from svbench.models import build_model

    torch.manual_seed(0)
    model = build_model("small_cnn", in_channels=1, image_size=12)
    for i in (0, 2):
        model.features[i] = WRAPS[kind](model.features[i])
    model.train()
    model(torch.rand(2, 1, 12, 12))
    model.eval()
    path = tmp_path / "m.pt"
    torch.save(model.state_dict(), path)
    spectra = {s.name: s for s in checkpoint_spectrum(path, model="small_cnn", input_shape=(1, 12, 12))}
    s = spectra["features.2"]
    assert s.stride == 2 and s.n == 12 and s.geometry_source == "model hooks" and "(" in s.kind
    with torch.no_grad():
        w = model.features[2].weight.detach().double()
    exact = oracle_singular_values(lambda x: F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), w, stride=2),
                                   (16, 12, 12))
    assert (s.svs - exact).abs().max() <= 2e-6 * exact[0]


def test_spectral_norm_of_a_transposed_conv_with_square_channels_finds_its_dimension():
    """torch normalises a ConvTranspose2d along dim 1; with as many inputs as outputs the shapes cannot tell, the
    stored u can (it is W v normalised for the right dimension)."""
    torch.manual_seed(3)
    layer = P.spectral_norm(nn.ConvTranspose2d(4, 4, 3))
    layer.train()
    for _ in range(3):
        layer(torch.randn(1, 4, 5, 5))
    layer.eval()
    (entry,) = find_convs({f"t.{k}": v for k, v in layer.state_dict().items()})
    assert entry.via == "spectral_norm"
    assert torch.allclose(entry.kernel, layer.weight.detach(), rtol=1e-5, atol=1e-7)


def test_unknown_parametrization_is_named_not_dropped():
    layer = P.orthogonal(nn.Conv2d(4, 4, 1))
    state = {f"o.{k}": v for k, v in layer.state_dict().items()}
    state["c.weight"] = torch.randn(4, 4, 3, 3)
    with pytest.warns(UserWarning, match=r"'o.parametrizations.weight.original' \(a parametrization svbench does not "
                                         r"rebuild: 0.base"):
        convs = find_convs(state)
    assert [e.name for e in convs] == ["c"]


@pytest.mark.parametrize("kind", list(WRAPS))
def test_lipschitz_bound_of_a_spectral_normalised_chain(kind):
    """A chain of spectral_norm / weight_norm layers: each parametrized layer is one layer of the chain (its
    parametrization modules were taken for layers and refused), bounded through the eval weight, read without a
    power-iteration step; the bound holds the dense float64 operator of the eval model."""
    torch.manual_seed(0)
    wrap = WRAPS[kind]
    conv, lin = wrap(nn.Conv2d(2, 3, 3, padding=1)).double(), wrap(nn.Linear(3 * 36, 5)).double()
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), lin)
    model.is_chain = True
    model.train()
    for _ in range(3):
        model(torch.randn(2, 2, 6, 6, dtype=torch.float64))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    from svbench.metrics.certified import lipschitz_bound

    total, rows = lipschitz_bound(model, (2, 6, 6))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert [r["layer"] for r in rows] == ["0", "1", "2", "3"]
    model.eval()
    conv_true = float(oracle_singular_values(conv, (2, 6, 6))[0])
    lin_true = float(torch.linalg.matrix_norm(lin.weight.detach(), ord=2))
    assert conv_true * (1 - 1e-9) <= rows[0]["bound"] <= 1.5 * conv_true
    assert rows[3]["bound"] == pytest.approx(lin_true, rel=1e-9)


def test_lipschitz_bound_of_a_conv_subclass_with_its_own_forward_is_its_dense_operator():
    class Scaled(nn.Conv2d):
        def forward(self, x):
            return 3.0 * super().forward(x)

    torch.manual_seed(0)
    model = nn.Sequential(Scaled(2, 3, 3, padding=1, bias=False)).double()
    model.is_chain = True
    from svbench.metrics.certified import lipschitz_bound

    total, rows = lipschitz_bound(model, (2, 6, 6))
    assert total == pytest.approx(float(oracle_singular_values(model[0], (2, 6, 6))[0]), rel=1e-9)
    assert "has a forward of its own" in rows[0]["source"]


@pytest.mark.parametrize("kind", ["sn", "old_sn", "wn"])
def test_spectrum_with_a_torchvision_model_normalised_everywhere(tmp_path, kind):
    """spectral_norm on every layer, the classifier included (a Lipschitz net or a GAN discriminator): the linear
    head's parts kept the plain model from loading the checkpoint, and its out-features were not found to size the
    head. Now every conv gets the model's geometry."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    for mod in list(model.modules()):
        for child_name, child in list(mod.named_children()):
            if isinstance(child, (nn.Conv2d, nn.Linear)):
                setattr(mod, child_name, WRAPS[kind](child))
    model.eval()
    model(torch.rand(1, 3, 32, 32))
    path = tmp_path / "m.pt"
    torch.save(model.state_dict(), path)
    from svbench.checkpoint.spectrum import plan_spectrum

    plan = plan_spectrum(path, model="torchvision:resnet18", input_shape=(3, 32, 32))
    assert len(plan.layers) == 20 and {source for *_, source in plan.layers} == {"model hooks"}
    assert all(e.via for e, *_ in plan.layers)
