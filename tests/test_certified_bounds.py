"""Every per-layer bound behind certified accuracy and the sigma-after-control metric is checked against the dense
float64 operator: a guaranteed bound is never below it, and a value marked exact equals it (1e-12 relative).

Was (session 12): 1 / sqrt(window) for every average pool (adaptive 5 -> 3: 0.5 for a true 0.667; 2 -> 4: 1 for a
true 2; ceil_mode / count_include_pad=False: 0.5 for a true 1), 1 for a max pool whose windows overlap along one
axis, the circular value for a circular conv with more outputs than the circular model (0.864 for a true 1.370),
the zero-padding bound for reflect / replicate padding (0.872 for a true 0.882), square-grid values for non-square
grids and strides.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from svbench.errors import UserError
from svbench.functional.oracle import oracle_singular_values
from svbench.functional.pooling import max_pool_bound, pooling_bound
from svbench.methods.tt import TTConv2d
from svbench.metrics.certified import conv_layer_bound, layer_bound, lipschitz_bound
from svbench.metrics.sigma import layer_sigmas

AVERAGE_POOLS = [
    (nn.AvgPool2d(2), (6, 6)),
    (nn.AvgPool2d(2), (5, 7)),
    (nn.AvgPool2d((2, 1)), (4, 4)),
    (nn.AvgPool2d(3, stride=2), (7, 7)),
    (nn.AvgPool2d(3, stride=2, padding=1), (8, 6)),
    (nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (8, 8)),
    (nn.AvgPool2d(2, padding=1, count_include_pad=False), (4, 4)),
    (nn.AvgPool2d(2, ceil_mode=True), (5, 5)),
    (nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), (6, 7)),
    (nn.AvgPool2d(2, divisor_override=3), (6, 6)),
    (nn.AvgPool2d((3, 2), stride=(1, 2)), (6, 6)),
    (nn.AdaptiveAvgPool2d(1), (7, 7)),
    (nn.AdaptiveAvgPool2d(3), (5, 5)),
    (nn.AdaptiveAvgPool2d(3), (7, 7)),
    (nn.AdaptiveAvgPool2d((2, None)), (5, 6)),
    (nn.AdaptiveAvgPool2d(4), (2, 2)),
    (nn.AdaptiveAvgPool2d((3, 5)), (7, 4)),
]


@pytest.mark.parametrize("pool,hw", AVERAGE_POOLS, ids=lambda v: str(v))
def test_average_pooling_norm_is_the_dense_operators(pool, hw):
    value, source = pooling_bound(pool, *hw)
    truth = float(oracle_singular_values(pool, (1, *hw))[0])
    assert value == pytest.approx(truth, rel=1e-12), source
    assert "exact" in source


MAX_POOLS = [
    (nn.MaxPool2d(2), (6, 6)),
    (nn.MaxPool2d(2), (5, 7)),
    (nn.MaxPool2d(2, stride=(2, 1)), (4, 4)),
    (nn.MaxPool2d(3, stride=2, padding=1), (8, 8)),
    (nn.MaxPool2d(3, stride=1, padding=1), (5, 6)),
    (nn.MaxPool2d(2, stride=2, dilation=2), (8, 8)),
    (nn.MaxPool2d(3, stride=2, ceil_mode=True), (6, 6)),
    (nn.AdaptiveMaxPool2d(3), (5, 5)),
    (nn.AdaptiveMaxPool2d(4), (2, 3)),
    (nn.AdaptiveMaxPool2d(1), (4, 4)),
]


def _brute_force_cover(pool: nn.Module, h: int, w: int) -> int:
    """Most windows holding one pixel, from one-hot images (no separability assumed)."""
    eye = torch.eye(h * w, dtype=torch.float64).reshape(h * w, 1, h, w)
    with torch.no_grad():
        return int((pool(eye) > 0).reshape(h * w, -1).sum(1).max())


@pytest.mark.parametrize("pool,hw", MAX_POOLS, ids=lambda v: str(v))
def test_max_pooling_bound_is_attained_and_counts_windows(pool, hw):
    bound, cover = max_pool_bound(pool, *hw)
    assert cover == _brute_force_cover(pool, *hw)
    # attained: one pixel held by `cover` windows moves by 1 from an all-zero image
    h, w = hw
    eye = torch.eye(h * w, dtype=torch.float64).reshape(h * w, 1, h, w)
    with torch.no_grad():
        ratios = (pool(eye) - pool(torch.zeros(1, 1, h, w, dtype=torch.float64))).reshape(h * w, -1).norm(dim=1)
    assert float(ratios.max()) == pytest.approx(bound, rel=1e-12)
    # and never exceeded by random pairs
    g = torch.Generator().manual_seed(0)
    x, y = (torch.randn(64, 1, h, w, generator=g, dtype=torch.float64) for _ in range(2))
    with torch.no_grad():
        quot = (pool(x) - pool(y)).flatten(1).norm(dim=1) / (x - y).flatten(1).norm(dim=1)
    assert float(quot.max()) <= bound * (1 + 1e-12)


def _conv(*args, **kwargs) -> nn.Conv2d:
    torch.manual_seed(sum(map(ord, repr((args, kwargs)))))
    return nn.Conv2d(*args, **kwargs)


CONVS = [
    # the FFT routes: exact
    (_conv(3, 4, 3, padding=1, padding_mode="circular"), (3, 8, 8), True),
    (_conv(3, 4, 3, stride=2, padding=1, padding_mode="circular"), (3, 8, 8), True),
    (_conv(2, 3, (3, 1), padding=(1, 0), padding_mode="circular"), (2, 6, 6), True),
    (_conv(2, 4, 3, padding=2, dilation=2, padding_mode="circular"), (2, 8, 8), True),
    (_conv(4, 4, 3, padding=1, groups=2, padding_mode="circular"), (4, 6, 6), True),
    # the FFT routes: bounds
    (_conv(3, 4, 3, padding=0, padding_mode="circular"), (3, 8, 8), False),
    (_conv(3, 4, 3, padding=1), (3, 8, 8), False),
    (_conv(3, 4, 3, padding=1, stride=2), (3, 7, 7), False),
    (_conv(3, 4, 3, padding=1), (3, 10, 4), False),
    (_conv(3, 4, 4, padding="same"), (3, 6, 6), False),
    (_conv(3, 4, 3, padding=0), (3, 6, 6), False),
    # grouped convs by their blocks (session 19; was the block-diagonal dense kernel), zero padding
    (_conv(4, 4, 3, padding=1, groups=2), (4, 8, 8), False),
    (_conv(4, 6, 3, padding=2, dilation=2, groups=2, stride=2), (4, 8, 8), False),
    (_conv(8, 8, 1, stride=2, groups=4), (8, 7, 7), False),
    (_conv(6, 6, 3, padding=1, groups=3, stride=(1, 2)), (6, 6, 8), False),
    # the dense route: exact
    (_conv(1, 1, 3, padding=2, padding_mode="circular"), (1, 8, 8), True),
    (_conv(2, 2, 3, padding=1, padding_mode="circular"), (2, 6, 8), True),
    (_conv(2, 2, 3, stride=(2, 1), padding=1, padding_mode="circular"), (2, 8, 8), True),
    (_conv(2, 3, 3, padding=1, padding_mode="reflect"), (2, 8, 8), True),
    (_conv(2, 3, 3, padding=1, padding_mode="replicate"), (2, 8, 8), True),
    (_conv(2, 3, 3, padding=2), (2, 6, 6), True),
    (_conv(2, 2, 3, padding=1, stride=2, padding_mode="circular"), (2, 7, 7), True),
]


@pytest.mark.parametrize("conv,shape,exact", CONVS, ids=lambda v: repr(v) if isinstance(v, nn.Module) else str(v))
def test_conv_bound_against_the_dense_operator(conv, shape, exact):
    value, source, is_exact = conv_layer_bound(conv, shape)
    truth = float(oracle_singular_values(conv, shape)[0])
    assert is_exact == exact, source
    if exact:
        assert value == pytest.approx(truth, rel=1e-12), source
    else:
        assert value >= truth * (1 - 1e-12), source


@pytest.mark.parametrize("padding,mode,exact", [(None, "circular", True), (2, "circular", True),
                                                (0, "circular", False), (None, "zeros", False)])
@pytest.mark.parametrize("dilation", [1, 2])
def test_tt_conv_bound_against_the_dense_operator(padding, mode, exact, dilation):
    torch.manual_seed(dilation)
    layer = TTConv2d(4, 5, 3, padding=padding, dilation=dilation, padding_mode=mode, r1=2, r2=3)
    with torch.no_grad():
        for p in (layer.k1, layer.k2, layer.k3):
            p.add_(0.3 * torch.randn_like(p))  # not orthonormal: the fold's R factors matter
    shape = (4, 8, 8)
    value, source, is_exact = conv_layer_bound(layer, shape)
    truth = float(oracle_singular_values(layer, shape)[0])
    if padding == 2 and dilation == 1:  # more outputs than the circular model: the dense route
        assert "dense" in source
    assert is_exact == exact, source
    assert value == pytest.approx(truth, rel=1e-12) if exact else value >= truth * (1 - 1e-12)


@pytest.mark.parametrize("shape", [(7, 40), (40, 7), (30, 30), (1, 9), (9, 1)])
@pytest.mark.parametrize("rank", [None, 3])
def test_matrix_spectral_norm_is_the_float64_svds_largest(shape, rank):
    """A linear layer's exact bound through the float64 Gram's largest eigenvalue (matrix_norm's full SVD took 96 s
    on VGG's 4096 x 25088 head): the float64 SVD's sigma_max to rounding, wide / tall / rank-deficient / a vector."""
    from svbench.functional.spectrum import matrix_spectral_norm

    g = torch.Generator().manual_seed(shape[0] * 100 + shape[1])
    w = torch.randn(*shape, generator=g, dtype=torch.float64)
    if rank is not None and min(shape) > rank:
        w = torch.randn(shape[0], rank, generator=g, dtype=torch.float64) @ torch.randn(rank, shape[1], generator=g,
                                                                                        dtype=torch.float64)
    want = float(torch.linalg.svdvals(w)[0])
    assert matrix_spectral_norm(w) == pytest.approx(want, rel=1e-13)
    assert matrix_spectral_norm(w.float()) == pytest.approx(float(torch.linalg.svdvals(w.float().double())[0]),
                                                            rel=1e-13)  # float32 weights are read in float64
    assert matrix_spectral_norm(torch.zeros(*shape)) == 0.0
    value, source = layer_bound(nn.Linear(shape[1], shape[0]).double().requires_grad_(False), (shape[1],))
    assert source == "exact spectral norm"


def test_dense_route_refuses_large_inputs_in_one_line():
    conv = nn.Conv2d(16, 16, 3, padding=1, padding_mode="reflect")
    with pytest.raises(UserError, match=r"no guaranteed bound for Conv2d on a 16x32x32 input: reflect padding; .*"
                                        r"densely only up to"):
        conv_layer_bound(conv, (16, 32, 32))


class _Chain(nn.Sequential):
    is_chain = True


@pytest.mark.parametrize("pool", [nn.AdaptiveAvgPool2d(3), nn.AvgPool2d(2, ceil_mode=True),
                                  nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)])
def test_lipschitz_bound_of_a_linear_chain_is_at_least_its_norm(pool):
    """A chain without nonlinearities is one linear map: the product of bounds must be at least its norm."""
    torch.manual_seed(0)
    model = _Chain(nn.Conv2d(1, 2, 3, padding=1, bias=False), pool, nn.Flatten(), nn.LazyLinear(3))
    model(torch.zeros(1, 1, 7, 7))
    lip, layers = lipschitz_bound(model, (1, 7, 7))
    truth = float(oracle_singular_values(model, (1, 7, 7))[0])
    assert lip >= truth * (1 - 1e-12)
    assert [row["type"] for row in layers] == ["Conv2d", type(pool).__name__, "Flatten", "Linear"]


def test_layer_bound_names_each_pooling_route():
    assert layer_bound(nn.MaxPool2d(2), (1, 4, 4)) == (1.0, "max pooling, non-overlapping windows: 1-Lipschitz")
    value, source = layer_bound(nn.MaxPool2d(3, stride=2, padding=1), (1, 8, 8))
    assert value == 2.0 and "sqrt(4)" in source


def test_sigma_after_control_marks_exactness_and_keeps_lower_below_upper():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=2, padding_mode="circular"),  # more outputs: dense, exact
                          nn.Conv2d(2, 2, 3, padding=1),  # zero padding: a bound
                          nn.Conv2d(2, 2, 3, stride=(2, 1), padding=1, padding_mode="circular"))  # per-axis stride
    rows = layer_sigmas(model, (1, 6, 6))
    assert [r["exact"] for r in rows] == [True, False, True]
    for r in rows:  # a (2, 1) stride: exact through the FFT route and a power-iteration lower value (session 18;
        # was the dense operator and no lower value)
        assert r["lower"] is not None and r["lower"] <= r["upper"] * (1 + 1e-12)
    assert "circular exact" in rows[2]["source"]


def test_train_task_skips_the_bounds_it_cannot_give_and_keeps_the_rest(tmp_path, monkeypatch, capsys):
    """A chain model with a reflect-padded 32-channel conv on 16 x 16 (c H W = 8192, past the dense route): the
    train cell records lipschitz_bound and sigma_max_after as skipped with the reason, and every other metric."""
    from conftest import certified_train_records

    from svbench.models.normalize import Normalize
    from svbench.models.registry import MODELS

    def reflect_chain(num_classes=4, in_channels=1, image_size=16, mean=None, std=None, **_):
        return _Chain(Normalize(mean or [0.5] * in_channels, std or [0.5] * in_channels),
                      nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(),
                      nn.Conv2d(32, 4, 3, padding=1, padding_mode="reflect"), nn.ReLU(), nn.Flatten(),
                      nn.Linear(4 * image_size * image_size, num_classes))

    monkeypatch.setitem(MODELS._items, "reflect_chain_net", reflect_chain)
    records = certified_train_records(tmp_path, capsys, "reflect_chain_net", 0.1)
    for metric in ("lipschitz_bound", "sigma_max_after"):
        assert records[metric]["status"] == "skipped"
        assert "no guaranteed bound for Conv2d on a 32x16x16 input: reflect padding" in records[metric]["reason"]
    assert records["test_accuracy"]["status"] == "ok"


def test_batchnorm_without_running_statistics_is_refused_in_one_line():
    bn = nn.BatchNorm2d(3, track_running_stats=False)
    with pytest.raises(UserError, match="without running statistics"):
        layer_bound(bn, (3, 4, 4))
    assert layer_bound(nn.BatchNorm2d(3).eval(), (3, 4, 4))[0] == pytest.approx(1 / (1 + 1e-5) ** 0.5)


def _prelu():
    act = nn.PReLU(3)
    with torch.no_grad():
        act.weight.copy_(torch.tensor([0.25, -1.75, 0.5]))
    return act


@pytest.mark.parametrize("act", [nn.Tanh(), nn.ReLU6(), nn.Hardtanh(-2, 3), nn.Softplus(beta=3), nn.Sigmoid(),
                                 nn.LeakyReLU(0.2), nn.LeakyReLU(-1.5), nn.ELU(0.5), nn.ELU(2.0), nn.GELU(),
                                 nn.GELU(approximate="tanh"), nn.SiLU(), nn.Mish(), nn.Hardswish(), nn.Hardsigmoid(),
                                 nn.SELU(), nn.CELU(0.5), nn.Softsign(), nn.Tanhshrink(), nn.LogSigmoid(),
                                 nn.Softshrink(0.5), _prelu(), nn.RReLU(0.1, 0.3).eval()], ids=lambda a: repr(a))
def test_activation_bounds_are_their_largest_slope(act):
    """Every activation's bound is at least its largest slope (autograd on a dense float64 grid; the smooth ones'
    maxima located to 1e-9 by a second, finer grid around the first grid's maximum) and attained: no looser than
    the grid can tell."""
    value, _ = layer_bound(act, (3, 4, 4))
    act = act.double()
    x = torch.linspace(-12, 12, 240001, dtype=torch.float64)
    if isinstance(act, nn.PReLU):
        x = x.expand(3, -1).T.contiguous()  # one channel per slope: (N, C)
    x.requires_grad_(True)
    (slope,) = torch.autograd.grad(act(x).sum(), x)
    top = slope.abs().max()
    assert float(top) <= value * (1 + 1e-12)
    assert float(top) >= value * (1 - 1e-3)  # attained (up to the grid)
    if isinstance(act, (nn.GELU, nn.SiLU, nn.Mish)):  # interior maxima: the rounded-up constants are tight
        at = float(x.detach().reshape(-1)[slope.abs().reshape(-1).argmax()])
        fine = torch.linspace(at - 2e-4, at + 2e-4, 400001, dtype=torch.float64, requires_grad=True)
        (fine_slope,) = torch.autograd.grad(act(fine).sum(), fine)
        assert float(fine_slope.abs().max()) <= value <= float(fine_slope.abs().max()) + 1e-9


@pytest.mark.parametrize("act", [nn.Hardshrink(), nn.Threshold(0.1, 2.0), nn.Softmax(dim=1)])
def test_unknown_layers_are_refused_not_assumed_1_lipschitz(act):
    """Discontinuous activations (Hardshrink, Threshold) have no Lipschitz constant; Softmax is not elementwise."""
    name = type(act).__name__
    with pytest.raises(UserError, match=rf"no guaranteed Lipschitz bound for layer '1' \({name}\)"):
        lipschitz_bound(_Chain(nn.Flatten(), act), (1, 2, 2))


def test_certificate_check_counts_attacks_inside_the_radius():
    from svbench.metrics.certified import certificate_check

    logits = torch.tensor([[2.0, 0.0], [3.0, 0.0], [0.0, 1.0]])  # margins 2, 3; the third point is misclassified
    labels = torch.tensor([0, 0, 0])
    x = torch.zeros(3, 1, 1, 2)
    x_adv = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.1, 0.0]]).reshape(3, 1, 1, 2)
    adv_pred = torch.tensor([1, 1, 1])
    # L = 1: radii 2/sqrt(2) = 1.414 and 2.121; the first attack (distance 1) is inside its radius
    res = certificate_check(logits, labels, x, x_adv, adv_pred, 1.0)
    assert res["violations"] == 1 and res["checked"] == 2 and res["min_ratio"] == pytest.approx(1 / 2 ** 0.5)
    # L = 2: radii halve (0.707, 1.061): both attacks lie outside them
    res = certificate_check(logits, labels, x, x_adv, adv_pred, 2.0)
    assert res["violations"] == 0 and res["min_ratio"] == pytest.approx(2 ** 0.5)


def test_train_task_checks_its_certificate_against_the_attack(tmp_path, capsys):
    """Every successful attack on a correctly classified point lies outside its certified radius (a record per
    attack: certificate_violations@NORM:EPS, 0, with how many attacks were checked)."""
    import json

    from svbench.cli.main import main

    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: cert\ndevice: cpu\nthreads: 1\ntasks:\n  - {name: t, kind: train, dataset: synthetic, model: small_cnn, "
        "model_args: {width: 4}, methods: [none, gram], variants: {gram: [{target: 1.0, every: 5}]}, epochs: 2, "
        "batch_size: 32, certify: true, cert_eps: [0.1], attacks: [{norm: L2, eps: 3.0, n_examples: 32, "
        "version: custom, attacks: [apgd-ce], n_iter: 5, batch_size: 32}]}\n")
    code = main(["run", str(suite), "--out", str(tmp_path / "runs"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0 and "inside the certified" not in err
    (results,) = (tmp_path / "runs").glob("cert/*/results.jsonl")
    checks = [r for r in map(json.loads, results.read_text().splitlines())
              if r["metric"] == "certificate_violations@L2:3"]
    assert {r["method_label"] for r in checks} == {"none", "gram(target=1.0, every=5)"}
    assert all(r["status"] == "ok" and r["value"] == 0 for r in checks)
    assert sum(r["extra"]["checked"] for r in checks) > 0  # some attacks succeeded and were checked
    assert all(r["extra"]["min_ratio"] is None or r["extra"]["min_ratio"] >= 1 for r in checks)
    table = (results.parent / "table.md").read_text()
    assert "Certificates checked against the attacks: 0 violations in " in table
    # a planted violation is said in the table, by method
    from svbench.results.tables import train_markdown, train_table

    records = list(map(json.loads, results.read_text().splitlines()))
    for r in records:
        if r["metric"] == "certificate_violations@L2:3" and r["method_label"] == "none":
            r["value"] = 2
    assert "**Certificate violated**: none (2)" in train_markdown(train_table(records))


# drawn for both fuzz tests below: channels per group, groups, a kernel (non-square too), the width stride,
# dilation and a seed; each test adds its grid, height stride and padding
_GEOMETRY = dict(c_in_per=st.integers(1, 3), c_out_per=st.integers(1, 3), groups=st.sampled_from([1, 2]),
                 kh=st.sampled_from([1, 2, 3, 4]), kw=st.sampled_from([1, 3]), sw=st.sampled_from([1, 2]),
                 dilation=st.sampled_from([1, 2]), seed=st.integers(0, 10_000))


def _bound_holds(make, shape: tuple[int, int, int], bound, seed: int) -> None:
    """The layer ``make()`` builds (when torch accepts its geometry): ``bound`` is never below its dense float64
    sigma_max on ``shape``, and equals it whenever it says it is exact."""
    torch.manual_seed(seed)
    try:
        layer = make()
        truth = float(oracle_singular_values(layer, shape)[0])
    except (RuntimeError, ValueError, NotImplementedError):
        return  # a geometry torch itself rejects (kernel larger than the padded input, output_padding too large, ...)
    value, source, exact = bound(layer, shape)
    assert value >= truth * (1 - 1e-10), (source, value, truth)
    if exact:
        assert value == pytest.approx(truth, rel=1e-10, abs=1e-12), source


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@settings(max_examples=60, deadline=None)
@given(**_GEOMETRY, h=st.integers(3, 9), w=st.integers(3, 9), sh=st.sampled_from([1, 2]),
       padding=st.sampled_from([0, 1, 2, 3, "same", "valid"]),
       mode=st.sampled_from(["circular", "zeros", "reflect", "replicate"]))
def test_certified_conv_bound_fuzz(c_in_per, c_out_per, groups, kh, kw, h, w, sh, sw, dilation, padding, mode,
                                   seed):
    """Random convs torch accepts, on random grids (conv_layer_bound)."""
    if padding == "same" and (sh, sw) != (1, 1):
        return  # torch refuses 'same' with stride
    _bound_holds(lambda: nn.Conv2d(c_in_per * groups, c_out_per * groups, (kh, kw), stride=(sh, sw), padding=padding,
                                   dilation=dilation, groups=groups, padding_mode=mode),
                 (c_in_per * groups, h, w), conv_layer_bound, seed)


@settings(max_examples=60, deadline=None)
@given(**_GEOMETRY, h=st.integers(2, 6), w=st.integers(2, 6), sh=st.sampled_from([1, 2, 3]),
       padding=st.sampled_from([0, 1, 2]), output_padding=st.sampled_from([0, 1, 2]))
def test_certified_transposed_conv_bound_fuzz(c_in_per, c_out_per, groups, kh, kw, h, w, sh, sw, dilation, padding,
                                              output_padding, seed):
    """Random transposed convs torch accepts (output_padding below the stride or the dilation, any padding that
    leaves an output), on random grids: the bound is that of the conv it is the adjoint of, or its own dense
    operator (transposed_conv_bound)."""
    from svbench.metrics.certified import transposed_conv_bound

    _bound_holds(lambda: nn.ConvTranspose2d(c_in_per * groups, c_out_per * groups, (kh, kw), stride=(sh, sw),
                                            padding=padding, output_padding=output_padding, dilation=dilation,
                                            groups=groups),
                 (c_in_per * groups, h, w), transposed_conv_bound, seed)


def test_a_layer_applied_twice_counts_twice_in_the_chain_bound():
    """Tied weights: the same conv object twice in a chain. The probe recorded each module once, so the product had
    one factor of 3.37 where the chain applies it twice: L = 3.37 for a linear composition of norm 7.75 (no bound).
    Every application is now a factor."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 3, 3, padding=1, bias=False).double()
    with torch.no_grad():
        conv.weight.mul_(3)
    model = nn.Sequential(conv, nn.ReLU(), conv)
    model.is_chain = True
    total, rows = lipschitz_bound(model, (3, 6, 6))
    assert [r["layer"] for r in rows] == ["0", "1", "0"]
    composed = float(oracle_singular_values(nn.Sequential(conv, conv), (3, 6, 6))[0])
    assert total >= composed * (1 - 1e-9) and rows[0]["bound"] < composed
