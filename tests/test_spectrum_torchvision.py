"""``svbench spectrum CKPT --model torchvision:NAME``: a checkpoint of a torchvision architecture (the models most
researchers fine-tune) gets each conv's real input size, stride and groups from the model, as svbench's own models
do. Before session 14 only svbench's five models were accepted, so such a checkpoint could only be read with
``--input-size N``: every conv on one grid at stride 1, wrong for most of its layers."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from svbench.checkpoint.spectrum import plan_spectrum
from svbench.cli.main import main
from svbench.models.probe import probe_inputs


def _save(tmp_path, model: nn.Module) -> str:
    path = tmp_path / "tv.pt"
    torch.save(model.state_dict(), path)
    return str(path)


@pytest.mark.parametrize("name,shape", [("resnet18", (3, 32, 32)), ("mobilenet_v2", (3, 32, 32)),
                                        ("resnet18", (3, 64, 64))])
def test_each_conv_gets_the_real_models_geometry(tmp_path, name, shape):
    """Against hooks on the real (allocated) model: same convs, same input size, stride, groups and dilation. The
    checkpoint's classifier has 10 outputs (fine-tuned), not torchvision's default 1,000."""
    model = torchvision.models.get_model(name, weights=None, num_classes=10)
    plan = plan_spectrum(_save(tmp_path, model), model=f"torchvision:{name}", input_shape=shape)
    real = {n: (int(s[-1]), m.stride[0], m.groups, m.dilation[0])
            for n, m, s in probe_inputs(model, shape, lambda _, m: isinstance(m, nn.Conv2d))}
    got = {e.name: (n, stride, groups, dilation) for e, n, stride, _, groups, dilation, source in plan.layers}
    assert got == real
    assert {source for *_, source in plan.layers} == {"model hooks"}
    if name == "mobilenet_v2":
        assert got["features.2.conv.1.0"][2] == 96  # depthwise: groups read from the model


def test_cli_writes_the_spectrum_with_model_geometry(tmp_path, capsys):
    torch.manual_seed(0)
    path = _save(tmp_path, torchvision.models.resnet18(num_classes=3))
    code = main(["spectrum", path, "--model", "torchvision:resnet18", "--input-shape", "3,32,32",
                 "--out", str(tmp_path / "o")])
    capsys.readouterr()
    assert code == 0
    md = (tmp_path / "o" / "spectrum.md").read_text()
    assert "| conv1 | conv | (64, 3, 7, 7) | 32 | 2 (model hooks) |" in md
    assert "| layer1.0.conv1 | conv | (64, 64, 3, 3) | 8 | 1 (model hooks) |" in md  # after the stem's max pool
    assert "| layer2.0.downsample.0 | conv | (128, 64, 1, 1) | 8 | 2 (model hooks) |" in md


@pytest.mark.parametrize("model,shape,needle", [
    ("torchvision:resnet19", "3,32,32", "unknown torchvision classification model 'resnet19'; did you mean resnet18"),
    ("torchvision:", "3,32,32", "unknown torchvision classification model ''"),
    ("torchvision:resnet18", "1,32,32", "model 'torchvision:resnet18' takes 3-channel inputs, got 1"),
    ("torchvision:vgg11", "3,32,32", "the checkpoint does not match model 'torchvision:vgg11'"),
])
def test_bad_torchvision_model_or_shape_is_one_line(tmp_path, capsys, model, shape, needle):
    path = _save(tmp_path, torchvision.models.resnet18(num_classes=10))
    code = main(["spectrum", path, "--model", model, "--input-shape", shape, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()  # said before anything was computed or written


def test_an_input_pooled_below_one_pixel_is_one_line(tmp_path, capsys):
    path = _save(tmp_path, torchvision.models.alexnet(num_classes=7))
    code = main(["spectrum", path, "--model", "torchvision:alexnet", "--input-shape", "3,8,8"])
    err = capsys.readouterr().err
    assert code == 2 and "does not run on a 3,8,8 input" in err and "--input-shape it was trained on" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("kernel,stride", [((1, 7), 1), ((7, 1), 1), ((3, 2), 1), ((1, 3), 2), ((3, 5), 2)])
def test_non_square_kernels_are_read_against_the_dense_operators(tmp_path, kernel, stride):
    """Inception-style 1 x 7 / 7 x 1 kernels (34 of torchvision inception_v3's 96 convs) were skipped with a
    warning; now each gets the SVs of its circular conv on the grid (dense float64 oracle of an independent circular
    conv) and a zero-padding bound that holds the zero-padded layer (dense float64 oracle)."""
    from svbench.functional.oracle import oracle_singular_values

    torch.manual_seed(sum(kernel) + stride)
    kh, kw = kernel
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 5, kernel, stride=stride,
                                                                   padding=(kh // 2, kw // 2)))
    path = tmp_path / "m.pt"
    torch.save(model.state_dict(), path)
    from svbench.checkpoint.spectrum import checkpoint_spectrum
    from svbench.models.registry import MODELS

    MODELS._items["nonsquare_test_net"] = lambda in_channels=3, image_size=8, **_: nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 5, kernel, stride=stride, padding=(kh // 2, kw // 2)))
    try:
        spectra = checkpoint_spectrum(path, model="nonsquare_test_net", input_shape=(3, 8, 8))
    finally:
        del MODELS._items["nonsquare_test_net"]
    s = spectra[1]
    assert s.shape == (5, 4, kh, kw) and s.stride == stride
    layer = model[1].double()
    # the circular conv: pad (k - 1) // 2 before and k // 2 after along each axis, wrapping
    circ = lambda x: F.conv2d(F.pad(x, ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2), mode="circular"),  # noqa: E731
                              layer.weight, stride=stride)
    exact = oracle_singular_values(circ, (4, 8, 8))
    assert s.svs.shape == exact.shape and (s.svs - exact).abs().max() <= 2e-6 * exact[0]
    zero_padded = float(oracle_singular_values(layer, (4, 8, 8))[0])
    assert s.sigma_max_bound >= zero_padded * (1 - 1e-6)


@pytest.mark.parametrize("model_name,build,shape", [
    ("small_cnn", lambda: __import__("svbench.models", fromlist=["build_model"]).build_model("small_cnn"), (1, 28, 28)),
    ("torchvision:resnet18", lambda: torchvision.models.resnet18(num_classes=10), (3, 32, 32)),
])
def test_lightning_style_checkpoint_under_one_attribute_fits_the_model(tmp_path, model_name, build, shape):
    """PyTorch Lightning saves {'state_dict': {'model.' + key: ...}, 'epoch': ...}: every key under the
    LightningModule's attribute. --model dropped nothing and refused it as 12 missing + 12 unexpected keys; the
    shared first component is now dropped when the rest fits the model exactly (names keep it in the table)."""
    model = build()
    path = tmp_path / "epoch=3.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, "epoch": 3,
                "global_step": 120}, path)
    plan = plan_spectrum(path, model=model_name, input_shape=shape)
    assert plan.layers and all(e.name.startswith("model.") and source == "model hooks"
                               for e, *_, source in plan.layers)
    strides = {e.name: stride for e, _, stride, *_ in plan.layers}
    assert 2 in strides.values()  # real strides, not the assumed 1


def test_a_shared_prefix_that_does_not_fit_is_still_a_mismatch(tmp_path, capsys):
    path = tmp_path / "x.ckpt"
    torch.save({"model.other.weight": torch.randn(4, 3, 3, 3)}, path)
    code = main(["spectrum", str(path), "--model", "small_cnn", "--input-shape", "1,28,28", "--out", str(tmp_path)])
    assert code == 2 and "does not match model 'small_cnn'" in capsys.readouterr().err
