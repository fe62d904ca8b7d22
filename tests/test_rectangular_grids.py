"""Convs on rectangular h x w grids (spectrogram CNNs, non-square images): the exact FFT routes take (h, w).

Before, every route took one n per conv: `network_svs` and `spectrum --model` refused an h x w input in one line
(bad input #54), and the Python functions had no way to say it. Every value here is checked against the float64
dense operator of the circular conv on that grid.
"""

from __future__ import annotations

import itertools
import re
import warnings

import pytest
import torch
from torch import nn

from svbench.errors import UnsupportedShape, UserError
from svbench.functional.clip import clip_kernel, clip_kernel_naive, sedghi_clip
from svbench.functional.gram import gram_iteration_bound, gram_iteration_bound_grouped
from svbench.functional.grouped import dense_equivalent_kernel, grouped_conv_singular_values
from svbench.functional.network import batched_conv_singular_values
from svbench.functional.oracle import oracle_singular_values
from svbench.functional.spectrum import conv_singular_values, zero_padding_bound_size
from svbench.functional.transfer import grid_text, num_singular_values, unique_frequencies
from svbench.methods import create_method, list_methods


def circular_forward(weight: torch.Tensor, stride: int):
    """The circular conv on whatever grid its input has, written out: out[i, j] = sum W[u, v] x[s i + u, s j + v]
    (indices modulo the grid), taps wrapping as often as the kernel is longer than the grid."""
    kh, kw = weight.shape[-2:]

    def fwd(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        xp = torch.cat([x] * (-(-(h + kh - 1) // h)), dim=-2)[..., : h + kh - 1, :]
        xp = torch.cat([xp] * (-(-(w + kw - 1) // w)), dim=-1)[..., : w + kw - 1]
        return nn.functional.conv2d(xp, weight, stride=stride)[..., : h // stride, : w // stride]

    return fwd


CASES = [(grid, k, s) for grid, k, s in itertools.product(
    [(4, 8), (6, 3), (8, 6), (2, 10), (5, 7)], [(3, 3), (1, 1), (5, 3), (2, 4), (7, 1)], [1, 2])
    if grid[0] % s == 0 and grid[1] % s == 0]


@pytest.mark.parametrize("grid,k,stride", CASES, ids=[f"{g[0]}x{g[1]}-k{k[0]}x{k[1]}-s{s}" for g, k, s in CASES])
def test_all_svs_on_a_rectangular_grid_match_the_dense_operator(grid, k, stride):
    """Odd and even sides, kernels longer than one side (taps wrap along that axis only), stride 2, 1 x 1: every SV
    (zeros included) against the float64 circular operator; the unique-frequency route and the full fft2 one."""
    gen = torch.Generator().manual_seed(hash((grid, k, stride)) % 2**31)
    weight = torch.randn(3, 2, *k, generator=gen, dtype=torch.float64)
    want = oracle_singular_values(circular_forward(weight, stride), (2, *grid))
    assert want.numel() == num_singular_values(2, 3, grid, stride)
    for real_fft in (True, False):
        got = conv_singular_values(weight, grid, stride, real_fft=real_fft)
        assert got.shape == want.shape
        assert (got - want).abs().max() <= 1e-12 * want[0]
    got32 = conv_singular_values(weight.float(), grid, stride)  # the default float32 route: the accuracy class
    assert (got32.double() - want).abs().max() <= 2e-6 * want[0]


def test_a_square_pair_is_the_int_grid_bit_for_bit():
    """(n, n) takes exactly the square code path: the same values, bit for bit, as n."""
    weight = torch.randn(8, 4, 3, 3)
    for stride in (1, 2):
        assert torch.equal(conv_singular_values(weight, (8, 8), stride), conv_singular_values(weight, 8, stride))
    assert zero_padding_bound_size((8, 8), 3, 1) == zero_padding_bound_size(8, 3, 1) == 10


@pytest.mark.parametrize("m", [(1, 1), (1, 6), (6, 1), (3, 4), (4, 3), (5, 7), (8, 2), (2, 9)])
def test_unique_frequencies_cover_every_conjugate_pair_once(m):
    """One representative per pair {w, -w} of the m1 x m2 grid, weighted 2 (1 when self-conjugate): the weights sum
    to m1 m2 and the representatives with their conjugates are the whole grid."""
    m1, m2 = m
    idx, mult = unique_frequencies(m)
    assert int(mult.sum()) == m1 * m2
    mf = m2 // 2 + 1
    seen = set()
    for i, c in zip(idx.tolist(), mult.tolist()):
        w = (i // mf, i % mf)
        conj = ((-w[0]) % m1, (-w[1]) % m2)
        assert (c == 1) == (conj == w)
        seen |= {w, conj}
    assert seen == {(a, b) for a in range(m1) for b in range(m2)}


def test_batched_layers_on_mixed_grids_equal_one_layer_at_a_time():
    """Square and rectangular layers of one transfer shape in one network call (grids merge), a frequency-free 1 x 1
    stride-2 layer on a rectangular grid, grouped and dilated convs: each equals its single-layer SVs."""
    torch.manual_seed(0)
    layers = [(torch.randn(4, 3, 3, 3), (4, 8), 1), (torch.randn(4, 3, 3, 3), 8, 1),
              (torch.randn(4, 3, 3, 3), (8, 4), 1), (torch.randn(8, 4, 1, 1), (4, 8), 2),
              (torch.randn(5, 3, 3, 3), (6, 2), 2)]
    for (w, n, s), got in zip(layers, batched_conv_singular_values(layers)):
        want = conv_singular_values(w.double(), n, s)
        assert got.shape == want.shape and (got.double() - want).abs().max() <= 2e-6 * want[0]
    weight = torch.randn(6, 2, 3, 3, dtype=torch.float64)
    for d in (1, 2):
        got = grouped_conv_singular_values(weight, (8, 12), 1, groups=3, dilation=d)
        want = conv_singular_values(dense_equivalent_kernel(weight, 3, d), (8, 12), 1)
        assert (got - want).abs().max() <= 1e-12 * want[0]


@pytest.mark.parametrize("method", ["sedghi", "reference"])
def test_network_svs_on_a_rectangular_input_match_each_conv_operator(method):
    """A model on a 6 x 10 input: a stride-2 conv, a grouped 1 x 3 conv, a 1 x 1 conv and a transposed conv back to
    6 x 10; each conv's SVs against the dense float64 operator of the layer itself on its own grid."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, padding_mode="circular"), nn.ReLU(),
                          nn.Conv2d(4, 6, 3, stride=2, padding=1, padding_mode="circular"), nn.ReLU(),
                          nn.Conv2d(6, 6, (1, 3), padding=(0, 1), padding_mode="circular", groups=2),
                          nn.Conv2d(6, 4, 1), nn.ConvTranspose2d(4, 3, 2, stride=2)).double().eval()
    got = create_method(method).network_svs(model, (2, 6, 10))
    grids = {"0": (2, 6, 10), "2": (4, 6, 10), "4": (6, 3, 5), "5": (6, 3, 5), "6": (4, 3, 5)}
    assert set(got) == set(grids)
    for name, shape in grids.items():
        want = oracle_singular_values(model[int(name)], shape)
        assert got[name].shape == want.shape, name
        assert (got[name].double() - want).abs().max() <= 2e-6 * want[0], name


def _rect_model() -> nn.Sequential:
    torch.manual_seed(6)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, padding_mode="circular"), nn.ReLU(),
                         nn.Conv2d(4, 4, 3, stride=2, padding=1, padding_mode="circular"),
                         nn.Conv2d(4, 3, (1, 3), padding=(0, 1), padding_mode="circular")).double().eval()


@pytest.mark.parametrize("method", list_methods())
def test_every_method_on_a_rectangular_input_against_the_dense_operator(method):
    """Every method of the registry, ``network_svs`` on a 6 x 10 input, each conv against the dense float64 operator
    of the layer itself on its own grid (6 x 10, then 3 x 5 after the stride), by what the method provides: all SVs
    equal, an upper bound at or above sigma_max (and within 5 %), an estimate at or below it. ``tt`` runs on its
    wrapped model (TT layers: their own operator). ``cayley`` has no network route (its layers are no convs):
    ``layer_svs`` of each Cayley layer it makes of the 3 x 3 convs, on its h x w grid (since session 18; was
    refused): all SVs 1, exactly orthogonal there too."""
    m = create_method(method)
    model = _rect_model()
    if method == "cayley":
        model = m.wrap(model[:3]).double().eval()
        for name, shape in {"0": (2, 6, 10), "2": (4, 6, 10)}.items():
            want = oracle_singular_values(model[int(name)], shape)
            got = m.layer_svs(model[int(name)], shape[1:]).double()
            assert got.shape == want.shape and (got - want).abs().max() <= 1e-12, name
            assert (want - 1).abs().max() <= 1e-12, name
        return
    model = m.wrap(model)  # tt: TT layers; every method's control now takes the 6 x 10 grid: no warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = m.network_svs(model, (2, 6, 10))
    assert not [str(w.message) for w in caught]
    grids = {"0": (2, 6, 10), "2": (4, 6, 10), "3": (4, 3, 5)}
    assert set(got) == set(grids)
    for name, shape in grids.items():
        want = oracle_singular_values(model[int(name)], shape)
        top = float(want[0])
        if m.provides == "all_svs":
            assert got[name].shape == want.shape and (got[name].double() - want).abs().max() <= 2e-6 * top, name
        elif m.provides == "upper_bound":
            assert top * (1 - 1e-9) <= float(got[name][0]) <= 1.05 * top, name
        elif m.provides == "estimate":
            assert 0 < float(got[name][0]) <= top * (1 + 1e-9), name
        else:
            assert got[name].numel() == 0, name


def test_gram_and_power_on_a_zero_padded_conv_on_a_rectangular_grid():
    """Zero padding on h x w: the Gram bound is the circular sigma_max on n' per side (never below the zero-padded
    layer's sigma_max: the dense float64 operator of the layer itself), power iteration runs the zero-padded operator
    (never above it, and within 1 % after 200 steps)."""
    torch.manual_seed(7)
    conv = nn.Conv2d(3, 4, (3, 5), padding=(1, 2)).double()
    want = float(oracle_singular_values(conv, (3, 6, 9))[0])
    bound = float(create_method("gram", precision="float64").layer_svs(conv, (6, 9))[0])
    assert want * (1 - 1e-12) <= bound <= 1.1 * want
    estimate = float(create_method("power", iters=200).layer_svs(conv, (6, 9))[0])
    assert 0.99 * want <= estimate <= want * (1 + 1e-9)


def test_gram_bound_on_a_rectangular_grid_bounds_the_exact_sigma_max():
    """The transfer route on h x w: at or above the exact sigma_max, within 1 % at T = 8; the kernel route (square
    tap offsets) refused by name when asked for, not taken by ``auto``."""
    torch.manual_seed(2)
    for grid in [(4, 8), (6, 10), (16, 4)]:
        weight = torch.randn(6, 4, 3, 3, dtype=torch.float64)
        exact = conv_singular_values(weight, grid, 1)[0]
        for first in ("auto", "transfer"):
            bound = gram_iteration_bound(weight, grid, 1, iters=8, first=first)
            assert exact * (1 - 1e-12) <= bound <= exact * 1.01
        with pytest.raises(UnsupportedShape, match="first product 'kernel' takes square taps"):
            gram_iteration_bound(weight, grid, 1, first="kernel")
    weight = torch.randn(6, 2, 3, 3, dtype=torch.float64)
    exact = grouped_conv_singular_values(weight, (4, 8), 2, groups=3)[0]
    bound = gram_iteration_bound_grouped(weight, (4, 8), 2, groups=3, iters=8)
    assert exact * (1 - 1e-12) <= bound <= exact * 1.01


def _circular(weight: torch.Tensor, stride: int):
    """The circular conv as torch computes it (circular padding (k - 1) // 2 before, k // 2 after each axis)."""
    kh, kw = weight.shape[-2:]
    return lambda x: nn.functional.conv2d(nn.functional.pad(x, ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2),
                                                             mode="circular"), weight, stride=stride)


@pytest.mark.parametrize("grid,k,stride", [((6, 10), (3, 3), 1), ((8, 6), (3, 5), 2), ((4, 8), (2, 2), 2)])
def test_clip_on_a_rectangular_grid_is_the_projection_of_the_dense_clip(grid, k, stride):
    """Sedghi's pass on h x w, checked without the FFT engine: clip the dense float64 circular operator's SVs at
    the target, then take the kernel of the layer's own taps closest to it in Frobenius norm (least squares over
    the operators of the unit kernels) -- what clip-and-crop computes. Also the textbook full-fft2 pass."""
    from svbench.functional.oracle import dense_operator

    gen = torch.Generator().manual_seed(sum(grid) + sum(k) + stride)
    weight = torch.randn(3, 3, *k, generator=gen, dtype=torch.float64)
    shape = (3, *grid)
    u, s, vh = torch.linalg.svd(dense_operator(_circular(weight, stride), shape), full_matrices=False)
    clipped = u @ torch.diag(s.clamp(max=1.0)) @ vh
    units = torch.eye(weight.numel(), dtype=torch.float64).view(-1, *weight.shape)
    basis = torch.stack([dense_operator(_circular(e, stride), shape).reshape(-1) for e in units], 1)
    want = torch.linalg.lstsq(basis, clipped.reshape(-1, 1)).solution.view_as(weight)
    assert (clip_kernel(weight, grid, 1.0, stride) - want).abs().max() <= 1e-12
    assert (clip_kernel_naive(weight, grid, 1.0, stride) - want).abs().max() <= 1e-12
    res = sedghi_clip(weight, grid, 1.0, stride)  # sigma_max before: read off the pass's own decomposition
    assert res.sigma_max_before == pytest.approx(float(s[0]), rel=1e-12)
    assert res.sigma_max_after == pytest.approx(float(conv_singular_values(want, grid, stride)[0]), rel=1e-12)


@pytest.mark.parametrize("method", ["sedghi", "reference"])
def test_network_clip_on_a_rectangular_input(method):
    """Each conv of a model on an 8 x 12 input clipped on its own grid (a dilated conv on its lattice, a stride-2
    conv, a grouped conv block by block on the 4 x 6 grid after it): the kernel of the single-layer pass."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, padding_mode="circular"),
                          nn.Conv2d(4, 4, 3, padding=2, dilation=2, padding_mode="circular"),
                          nn.Conv2d(4, 4, 3, stride=2, padding=1, padding_mode="circular"),
                          nn.Conv2d(4, 4, 3, padding=1, padding_mode="circular", groups=2)).double()
    got = create_method(method).network_clip(model, (2, 8, 12), 1.0)
    grids = [(8, 12), (8, 12), (8, 12), (4, 6)]
    assert set(got) == {"0", "1", "2", "3"}
    for (name, kernel), layer, grid in zip(got.items(), model, grids):
        want = clip_kernel(layer.weight.detach(), grid, 1.0, layer.stride[0], groups=layer.groups,
                           dilation=layer.dilation[0])
        assert kernel.shape == layer.weight.shape and (kernel - want).abs().max() <= 1e-12, name
    with pytest.raises(UserError, match="cannot clip a 3x3 kernel for a 2x8 input"):
        clip_kernel(torch.randn(2, 2, 3, 3), (2, 8), 1.0)


def test_grid_text_and_bad_grids():
    assert grid_text(8) == grid_text((8, 8)) == "8" and grid_text((8, 16)) == "8x16"
    with pytest.raises(UserError, match="stride 2 does not divide the input width 5"):
        conv_singular_values(torch.randn(2, 2, 3, 3), (4, 5), 2)
    with pytest.raises(UserError, match="a grid is n or"):
        conv_singular_values(torch.randn(2, 2, 3, 3), (4, 5, 6), 1)


def test_spectrum_of_a_checkpoint_on_a_rectangular_input(tmp_path, capsys):
    """``svbench spectrum CKPT --model M --input-shape 3,6,10`` (was: refused, H == W only) and ``--input-size 6x10``:
    each conv on its own h x w grid against the dense float64 circular operator, the zero-padding bound (circular
    sigma_max on n' per side) at or above the zero-padded layer's sigma_max, and the grid printed as HxW."""
    import torch.nn.functional as F

    from svbench.checkpoint.spectrum import checkpoint_spectrum
    from svbench.cli.main import main
    from svbench.models.registry import MODELS

    torch.manual_seed(3)
    build = lambda in_channels=3, image_size=8, **_: nn.Sequential(  # noqa: E731
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, (3, 5), stride=2, padding=(1, 2)))
    model = build()
    path = tmp_path / "m.pt"
    torch.save(model.state_dict(), path)
    MODELS._items["rect_test_net"] = build
    try:
        spectra = checkpoint_spectrum(path, model="rect_test_net", input_shape=(3, 6, 10))
        code = main(["spectrum", str(path), "--model", "rect_test_net", "--input-shape", "3,6,10", "--no-lipschitz",
                     "--out", str(tmp_path / "o")])
    finally:
        del MODELS._items["rect_test_net"]
    assert code == 0 and [s.n for s in spectra] == [(6, 10), (6, 10)] and spectra[1].stride == 2
    for s, layer in zip(spectra, (model[0], model[2])):
        layer = layer.double()
        kh, kw = layer.kernel_size
        circ = lambda x, layer=layer, kh=kh, kw=kw: F.conv2d(  # noqa: E731
            F.pad(x, ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2), mode="circular"), layer.weight,
            stride=layer.stride)
        shape = (layer.in_channels, 6, 10)
        exact = oracle_singular_values(circ, shape)
        assert s.svs.shape == exact.shape and (s.svs - exact).abs().max() <= 2e-6 * exact[0]
        assert s.sigma_max_bound >= float(oracle_singular_values(layer, shape)[0]) * (1 - 1e-6)
    md = (tmp_path / "o" / "spectrum.md").read_text()
    assert "| 0 | conv | (4, 3, 3, 3) | 6x10 | 1 (model hooks) |" in md
    assert "\n2,conv,6x10,2,0," in (tmp_path / "o" / "spectrum.csv").read_text()
    capsys.readouterr()
    assert main(["spectrum", str(path), "--input-size", "6x10", "--out", str(tmp_path / "p")]) == 0
    first = (tmp_path / "p" / "spectrum.csv").read_text().splitlines()[1]
    assert first.startswith("0,conv,6x10,1,0,") and float(first.split(",")[5]) == pytest.approx(
        float(spectra[0].svs[0]), rel=1e-6)


def test_certified_bound_of_a_circular_conv_on_a_large_rectangular_grid():
    """The certified per-layer bound of a circular conv on H x W is its exact circular sigma_max through the FFT
    route (before: the dense operator, refused above c H W = 4096); equal to the dense value where both exist."""
    from svbench.metrics.certified import conv_layer_bound

    torch.manual_seed(5)
    small = nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular")
    value, source, exact = conv_layer_bound(small, (2, 6, 8))
    assert exact and source == "circular exact sigma_max (float64)"
    assert value == pytest.approx(float(oracle_singular_values(small, (2, 6, 8))[0]), rel=1e-12)
    big = nn.Conv2d(16, 16, 3, padding=1, padding_mode="circular")  # c H W = 16 * 32 * 64: no dense operator
    value, source, exact = conv_layer_bound(big, (16, 32, 64))
    want = conv_singular_values(big.weight.detach().double(), (32, 64))[0]
    assert exact and value == pytest.approx(float(want), rel=1e-12)


def test_network_task_on_a_rectangular_input(tmp_path):
    """A suite's network task with input_shape [C, H, W], H != W (was: refused, [C, H, H] only): every method's
    cell on small_cnn at 8 x 16 (its head sized for H x W), errors against the float64 oracle on each conv's own
    grid, the clip pass too; cell ids and records name the grid."""
    from svbench.suite.loader import parse_suite
    from svbench.suite.runner import run_suite

    timing = {"warmup": 0, "min_repeats": 1, "max_repeats": 1, "budget_s": 0.01}
    suite = parse_suite({"name": "rect", "tasks": [
        {"name": "nets", "kind": "network", "models": ["small_cnn"], "input_shape": [3, 8, 16], "clip_to": 1.0,
         "methods": ["reference", "sedghi", "gram", "power", "tt", "cayley"], "timing": timing}]}, "test")
    res = run_suite(suite, out_root=tmp_path, progress=False)
    recs = res.records
    assert {r["cell_id"].split("|")[1] for r in recs} == {"small_cnn@8x16"}
    assert {r["method"] for r in recs} == {"reference", "sedghi", "gram", "power", "tt"}  # cayley: no network SVs
    assert all(r["status"] == "ok" for r in recs)
    value = {(r["method"], r["metric"]): r["value"] for r in recs if r["status"] == "ok"}
    for method in ("reference", "sedghi", "tt"):
        assert value[(method, "network_max_err_rel")] < 1e-5
    # float32: a converged bound can land a few ulps under sigma_max (README: down to -1.5e-7 in float32)
    assert -2e-7 <= value[("gram", "network_min_bound_rel_err")] < 0.05
    assert value[("power", "network_max_est_rel_err")] <= 1e-7
    assert value[("sedghi", "network_clip_err_rel")] < 1e-5 and value[("reference", "network_clip_err_rel")] < 1e-5
    assert all(r["extra"].get("input_shape") == [3, 8, 16] for r in recs if r.get("metric") == "network_sv_time_ms")
    with pytest.raises(UserError, match=r"tasks\[0\]: input_shape must be \[C, H, W\]"):
        parse_suite({"name": "bad", "tasks": [{"name": "n", "kind": "network", "models": ["small_cnn"],
                                                "input_shape": [3, 16]}]}, "test")


def test_spectrum_of_tt_and_cayley_checkpoints_on_a_rectangular_input(tmp_path, tt_checkpoint):
    """A checkpoint trained with ``tt``: each TT layer on its own h x w grid from ``--model`` (the folded core,
    Theorem 1, zeros appended to the operator's count), against the TT layer's dense float64 operator. A Cayley
    checkpoint too (since session 18; was refused in one line): each Cayley layer's operator on its own h x w grid
    against its dense float64 operator (all SVs 1: exactly orthogonal there too)."""
    from svbench.checkpoint.spectrum import checkpoint_spectrum

    def net(in_channels=3, image_size=8, **_):
        return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1, padding_mode="circular", bias=False),
                             nn.Conv2d(8, 8, 3, stride=2, padding=1, padding_mode="circular", bias=False),
                             nn.Conv2d(8, 6, 3, padding=1, padding_mode="circular", bias=False))

    model, path = tt_checkpoint("rect_tt_net", net, seed=8)
    spectra = {s.name: s for s in checkpoint_spectrum(path, model="rect_tt_net",
                                                      input_shape=(3, 6, 10))}
    assert [spectra[n].kind for n in ("0", "1", "2")] == ["conv", "tt", "tt"]
    assert (spectra["1"].n, spectra["2"].n) == ((6, 10), (3, 5))
    for name, in_shape in (("1", (8, 6, 10)), ("2", (8, 3, 5))):
        exact = oracle_singular_values(model[int(name)].double(), in_shape)
        got = spectra[name].svs
        assert got.shape == exact.shape and (got - exact).abs().max() <= 1e-5 * exact[0], name

    cayley = create_method("cayley").wrap(net())
    torch.save(cayley.state_dict(), tmp_path / "cayley.pt")
    spectra = {s.name: s for s in checkpoint_spectrum(tmp_path / "cayley.pt", model="rect_tt_net",
                                                      input_shape=(3, 6, 10))}
    assert [spectra[n].kind for n in ("0", "1", "2")] == ["cayley"] * 3
    for name, in_shape in (("0", (3, 6, 10)), ("1", (8, 6, 10)), ("2", (8, 3, 5))):
        exact = oracle_singular_values(cayley[int(name)].double().eval(), in_shape)
        got = spectra[name].svs
        assert got.shape == exact.shape and (got - exact).abs().max() <= 1e-12, name
        assert (exact - 1).abs().max() <= 1e-12, name


def test_layer_spec_with_a_width_is_a_rectangular_input():
    """SV tasks on rectangular inputs (since session 18: ``width`` in a shape or a grid): the spec's grid, input
    shape, SV count (the dense operator's) and label; a square spec keeps its schema (no ``width`` key) whatever
    was written; bad widths are one line."""
    from svbench.methods.base import LayerSpec, seeded_conv

    spec = LayerSpec(4, 6, 3, 8, 2, width=16)
    assert spec.grid == (8, 16) and spec.in_shape == (4, 8, 16) and spec.out_hw == (4, 8)
    assert spec.label == "4->6 k3 n8x16 s2 circ" and spec.as_dict()["width"] == 16
    conv = seeded_conv(spec, seed=0, dtype=torch.float64)
    assert spec.num_svs() == oracle_singular_values(conv, spec.in_shape).numel() == 4 * 8 * 6
    square = LayerSpec(4, 4, 3, 8, width=8)
    assert square == LayerSpec(4, 4, 3, 8) and "width" not in square.as_dict() and square.grid == 8
    zero = LayerSpec(4, 4, 3, 6, padding="zeros", width=9)
    assert zero.num_svs() == oracle_singular_values(seeded_conv(zero, seed=0, dtype=torch.float64),
                                                     zero.in_shape).numel()
    for kwargs, says in (({"width": 0}, "width must be a positive integer, got 0"),
                         ({"width": 9, "stride": 2}, "stride 2 does not divide the input width 9"),
                         ({"k": 5, "width": 4},
                          "kernel 5x5 (dilation 1) is larger than the 8x4 input; use width >= 5")):
        with pytest.raises(ValueError, match=re.escape(says)):
            LayerSpec(**{"c_in": 4, "c_out": 4, "k": 3, "n": 8, **kwargs})


def test_sv_task_on_rectangular_shapes(tmp_path):
    """A suite's SV task with rectangular shapes (explicit, and a grid's ``width`` sweep): every method's cell on
    its h x w input against the dense float64 oracle by what it provides (cayley's layer too: its operator on h x w);
    the records' shape carries the width and the cell ids the grid."""
    from svbench.suite.loader import parse_suite
    from svbench.suite.runner import run_suite

    timing = {"warmup": 0, "min_repeats": 1, "max_repeats": 1, "budget_s": 0.01}
    suite = parse_suite({"name": "rect", "tasks": [
        {"name": "sv", "kind": "sv", "methods": "all", "timing": timing, "oracle_max_dim": 1024, "forward_batch": 2,
         "shapes": [{"c_in": 4, "c_out": 6, "k": 3, "n": 8, "width": 16, "stride": 2},
                    {"c_in": 4, "c_out": 4, "k": 3, "n": 6, "width": 10, "padding": "zeros"}],
         "grid": {"c": [4], "n": [4], "width": [12, 4], "k": [3]}}]}, "test")
    assert [s.label for s in suite.tasks[0].all_shapes()] == [
        "4->6 k3 n8x16 s2 circ", "4->4 k3 n6x10 s1 zero", "4->4 k3 n4x12 s1 circ", "4->4 k3 n4 s1 circ"]
    recs = run_suite(suite, out_root=tmp_path, progress=False).records
    value = {(r["cell_id"].split("|")[1], r["method"], r["metric"]): r["value"] for r in recs if r["status"] == "ok"}
    skipped = {(r["cell_id"].split("|")[1], r["method"]) for r in recs if r["status"] == "skipped"}
    assert all(shape == "4->4 k3 n6x10 s1 zero" for shape, _ in skipped)  # circular-only methods on zero padding
    for shape in ("4->6 k3 n8x16 s2 circ", "4->4 k3 n4x12 s1 circ"):
        for method in ("reference", "sedghi", "tt", "cayley"):
            assert value[(shape, method, "sv_max_abs_err_rel")] <= 2e-6, (shape, method)
        assert -2e-7 <= value[(shape, "gram", "sigma_max_rel_err")] < 0.05
        assert -0.1 < value[(shape, "power", "sigma_max_rel_err")] <= 1e-7
    assert value[("4->4 k3 n6x10 s1 zero", "gram", "sigma_max_rel_err")] >= -2e-7  # bound of the zero-padded layer
    assert value[("4->4 k3 n4 s1 circ", "cayley", "sv_max_abs_err_rel")] <= 2e-6  # width 4 on n 4: square
    widths = {r["shape"].get("width") for r in recs if r.get("shape")}
    assert widths == {16, 10, 12, None}


def test_cayley_layer_on_rectangular_inputs():
    """A Cayley layer on h x w (since session 18; its forward took square inputs only): exactly orthogonal on the
    grid it runs on (the dense float64 operator of its forward: all SVs 1, c_out >= c_in; a co-isometry otherwise),
    stride 2 by space-to-depth on each side, its certified bound exact at 1, and a training step runs (gradients
    reach the weight and the scale)."""
    from svbench.methods.cayley import CayleyConv2d, CayleyMethod
    from svbench.metrics.certified import conv_layer_bound

    torch.manual_seed(3)
    for c_in, c_out, k, stride, grid in ((3, 5, 3, 1, (6, 10)), (4, 4, 3, 2, (8, 12)), (6, 3, 3, 1, (5, 8))):
        layer = CayleyConv2d(c_in, c_out, k, stride, bias=False, dtype=torch.float64).eval()
        want = oracle_singular_values(layer, (c_in, *grid))
        assert (want - 1).abs().max() <= 1e-12
        got = CayleyMethod().layer_svs(layer, grid).double()
        assert got.shape == want.shape and (got - want).abs().max() <= 1e-12
        value, source, exact = conv_layer_bound(layer, (c_in, *grid))
        assert exact and value == pytest.approx(1.0, abs=1e-12) and "Cayley" in source
    layer = CayleyConv2d(2, 4, 3).train()
    layer(torch.randn(2, 2, 6, 10)).square().sum().backward()
    assert layer.weight.grad is not None and layer.alpha.grad is not None
