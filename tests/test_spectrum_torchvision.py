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


@pytest.mark.parametrize("name,shape,aux,aux_n", [("inception_v3", (3, 299, 299), "AuxLogits.conv0.conv", 5),
                                                  ("googlenet", (3, 32, 32), "aux1.conv.conv", 4)])
@pytest.mark.parametrize("aux_logits", [False, True])
def test_checkpoints_with_or_without_auxiliary_classifiers_fit(tmp_path, name, shape, aux, aux_n, aux_logits):
    """inception_v3 / googlenet are trained with auxiliary classifiers that inference drops: a checkpoint saved from
    a model built with ``aux_logits=False`` has none of their keys and was refused as '12 missing key(s)'. Both forms
    now fit, each conv with the real model's geometry (hooks on the allocated model); the auxiliary convs, which
    only training runs, get theirs from a train-mode pass (they were read at the model's input size: 299 x 299 for
    inception's AuxLogits.conv0, which runs on 5 x 5 features)."""
    model = torchvision.models.get_model(name, weights=None, aux_logits=aux_logits, init_weights=False, num_classes=7)
    plan = plan_spectrum(_save(tmp_path, model), model=f"torchvision:{name}", input_shape=shape)
    real = {n: (int(s[-1]), m.stride[0], m.groups)
            for n, m, s in probe_inputs(model, shape, lambda _, m: isinstance(m, nn.Conv2d))}
    got = {e.name: (n, stride, groups) for e, n, stride, _, groups, *_ in plan.layers}
    assert {source for *_, source in plan.layers} == {"model hooks"}
    if aux_logits:
        assert got[aux] == (aux_n, 1, 1)
        got = {k: v for k, v in got.items() if not k.lower().startswith("aux")}
    assert got == real
    assert plan.bound_model is not None, plan.bound_note  # the weights load for the certified bound too


def test_a_training_probe_puts_the_running_statistics_back():
    """probe_inputs(training=True) reaches modules only training runs, without changing the model."""
    model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    names = [n for n, *_ in probe_inputs(model, (3, 32, 32), lambda _, m: isinstance(m, nn.Conv2d), training=True)]
    assert "aux1.conv.conv" in names and "aux2.conv.conv" in names and not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("name", ["regnet_y_400mf", "mnasnet0_5"])
def test_models_that_compute_while_built_or_check_versions_fit(tmp_path, name):
    """regnet's builder computes its widths with tensors (failed on the meta device: a traceback) and mnasnet checks
    the format version of what it loads (a plain dict carries none: 'version should be set to 1 or 2', a
    traceback): both now fit, with the geometry of hooks on the real model and the weights loaded for the bound."""
    model = torchvision.models.get_model(name, weights=None, num_classes=5)
    plan = plan_spectrum(_save(tmp_path, model), model=f"torchvision:{name}", input_shape=(3, 32, 32))
    real = {n: (int(s[-1]), m.stride[0], m.groups)
            for n, m, s in probe_inputs(model, (3, 32, 32), lambda _, m: isinstance(m, nn.Conv2d))}
    assert {e.name: (n, stride, groups) for e, n, stride, _, groups, *_ in plan.layers} == real
    assert plan.bound_model is not None, plan.bound_note
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(plan.bound_model(x), model.eval()(x))  # the checkpoint's weights, not a fresh init


@pytest.mark.parametrize("n,stride,padding,proxy", [
    ((7, 7), 2, 1, (8, 8)), ((7, 7), 2, 0, (8, 8)), ((7, 9), 2, 1, (8, 10)), ((7, 7), (1, 2), 1, (7, 8)),
    ((9, 6), (3, 2), 1, (9, 6)),
])
def test_a_stride_that_does_not_divide_the_input_gets_a_proxy_grid(tmp_path, capsys, n, stride, padding, proxy):
    """A zero-padded strided conv on an input its stride does not divide (torchvision inception_v3: every stride-2
    conv runs on an odd grid, 299 / 147 / 35 / 17) stopped `spectrum --model` ('stride 2 does not divide the input
    size 75'). Its circular proxy is now taken on the grid rounded up to a multiple of the stride (checked against
    the dense float64 operator of a circular conv on that grid), the table says `7 -> 8`, the CSV's grid column the
    same, and the zero-padding bound on n' still holds the zero-padded layer on its real input (dense float64)."""
    from svbench.checkpoint.spectrum import checkpoint_spectrum
    from svbench.functional.oracle import oracle_singular_values
    from svbench.models.registry import MODELS

    torch.manual_seed(sum(n) + padding)
    build = lambda in_channels=3, image_size=8, **_: nn.Sequential(  # noqa: E731
        nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 5, 3, stride=stride, padding=padding))
    model = build()
    path = tmp_path / "m.pt"
    torch.save(model.state_dict(), path)
    MODELS._items["proxy_test_net"] = build
    try:
        spectra = checkpoint_spectrum(path, model="proxy_test_net", input_shape=(3, *n))
        code = main(["spectrum", str(path), "--model", "proxy_test_net", "--input-shape", f"3,{n[0]},{n[1]}",
                     "--out", str(tmp_path / "o")])
    finally:
        del MODELS._items["proxy_test_net"]
    capsys.readouterr()
    s, grid = spectra[1], "x".join(map(str, proxy)) if proxy[0] != proxy[1] else str(proxy[0])
    assert s.proxy_n == (None if proxy == n else (proxy if proxy[0] != proxy[1] else proxy[0]))
    layer = model[1].double()
    circ = lambda x: F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), layer.weight, stride=stride)  # noqa: E731
    exact = oracle_singular_values(circ, (4, *proxy))
    assert s.svs.shape == exact.shape and (s.svs - exact).abs().max() <= 2e-6 * exact[0]
    zero_padded = float(oracle_singular_values(layer, (4, *n))[0])  # torch's own zero-padded strided conv on n
    assert s.sigma_max_bound >= zero_padded * (1 - 1e-9)
    assert code == 0
    md = (tmp_path / "o" / "spectrum.md").read_text()
    shown = "x".join(map(str, n)) if n[0] != n[1] else str(n[0])
    assert f"| {shown}{'' if proxy == n else ' -> ' + grid} |" in md
    rows = (tmp_path / "o" / "spectrum.csv").read_text().splitlines()
    assert rows[0] == "layer,kind,n,stride,index,sigma,grid" and rows[-1].endswith(f",{grid}")


def test_a_circular_conv_whose_stride_does_not_divide_its_input_is_still_refused(tmp_path, capsys):
    """A circular-padded conv's operator is the one on its own grid (no proxy): s not dividing n is one line."""
    from svbench.models.registry import MODELS

    build = lambda in_channels=3, image_size=8, **_: nn.Sequential(  # noqa: E731
        nn.Conv2d(3, 4, 3, stride=2, padding=1, padding_mode="circular"))
    path = tmp_path / "m.pt"
    torch.save(build().state_dict(), path)
    MODELS._items["proxy_test_net"] = build
    try:
        code = main(["spectrum", str(path), "--model", "proxy_test_net", "--input-shape", "3,7,7"])
    finally:
        del MODELS._items["proxy_test_net"]
    err = capsys.readouterr().err
    assert code == 2 and "stride 2 does not divide the input size 7" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("method", ["sedghi", "reference", "tt", "gram", "power"])
def test_network_routes_take_the_proxy_grid_of_a_stride_that_does_not_divide(method):
    """The network routes (every method's ``network_svs``, ``network_clip``; suite network tasks) stopped at a
    zero-padded stride-2 conv on a 7 x 7 grid with the engine's "stride 2 does not divide the input size 7 (use n = 8
    or zero padding)", no conv named, though the conv was zero-padded. They now take its circular model on the
    8 x 8 grid, as ``spectrum`` does (dense float64 operator of the circular conv there), by what each provides."""
    from svbench.functional.oracle import oracle_singular_values
    from svbench.methods import create_method

    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv2d(4, 5, 3, padding=1), nn.Conv2d(5, 5, 3, stride=(1, 2), padding=1)).double()
    m = create_method(method, **({"iters": 300} if method == "power" else {"keep_first": False} if method == "tt"
                                 else {}))
    if method == "tt":
        model = m.wrap(model).double()
    got = m.network_svs(model, (3, 7, 7))
    for name, grid in (("0", (8, 8)), ("3", (4, 4))):
        layer = model[int(name)]
        w = layer.full_kernel() if hasattr(layer, "full_kernel") else layer.weight
        circ = lambda x, w=w, s=layer.stride: F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), w, stride=s)  # noqa: E731
        exact = oracle_singular_values(circ, (w.shape[1], *grid))
        top = float(exact[0])
        if m.provides == "all_svs":
            assert got[name].shape == exact.shape and (got[name] - exact).abs().max() <= 1e-10 * top, name
        elif m.provides == "upper_bound":
            assert top * (1 - 1e-9) <= float(got[name][0]) <= 1.05 * top, name
        else:
            assert 0.95 * top <= float(got[name][0]) <= top * (1 + 1e-9), name
    if method == "sedghi":
        clipped = m.network_clip(model, (3, 7, 7), 1.0)
        assert set(clipped) == {"0", "2", "3"}
        circular = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1, padding_mode="circular"))
        with pytest.raises(Exception, match="stride 2 does not divide the input size 7"):
            m.network_svs(circular, (3, 7, 7))  # a circular conv's operator is the one on 7 x 7: still refused


@pytest.mark.parametrize("method", ["sedghi", "reference", "tt", "gram", "power", "none"])
def test_network_routes_name_the_circular_conv_whose_stride_does_not_divide_its_grid(method):
    """A circular conv's operator on 7 x 7 at stride 2 is no circular conv (no proxy grid for it): the FFT routes
    stopped with the engine's "stride 2 does not divide the input size 7", naming no conv. They now name it; the
    operator routes (``power``'s estimate, ``none``) still take it, and the zero-padded conv beside it keeps its
    8 x 8 proxy."""
    from svbench.errors import UnsupportedShape
    from svbench.methods import create_method

    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Upsample(size=7),
                          nn.Conv2d(4, 4, 3, stride=2, padding=1, padding_mode="circular"))
    m = create_method(method)
    if method == "tt":
        model = m.wrap(model)
    if m.any_circular_grid:
        got = m.network_svs(model, (3, 7, 7))
        assert set(got) == {"0", "3"}
        return
    with pytest.raises(UnsupportedShape, match=r"^conv '3' \(circular padding\): stride 2 does not divide the input "
                                               r"size 7; .*use n = 8"):
        m.network_svs(model, (3, 7, 7))
    if method in ("sedghi", "reference"):
        with pytest.raises(UnsupportedShape, match=r"^conv '3' \(circular padding\)"):
            m.network_clip(model, (3, 7, 7), 1.0)
