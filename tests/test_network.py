"""Whole-network SVs: batching by transfer shape changes nothing; the network task runs end to end."""

import pytest
import torch

from svbench.functional.network import batched_conv_singular_values
from svbench.functional.spectrum import conv_singular_values
from svbench.methods import create_method
from svbench.models import build_model
from svbench.suite.loader import parse_suite
from svbench.suite.runner import run_suite


def test_batched_equals_per_layer():
    g = torch.Generator().manual_seed(0)
    layers = [(torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64), 8, 1),
              (torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64), 8, 1),
              (torch.randn(5, 2, 3, 3, generator=g, dtype=torch.float64), 8, 2),
              (torch.randn(6, 6, 1, 1, generator=g, dtype=torch.float64), 4, 1)]
    got = batched_conv_singular_values(layers)
    for (w, n, s), sv in zip(layers, got):
        assert torch.allclose(sv, conv_singular_values(w, n, s), atol=1e-12)


def _merge_layers():
    """(c, c) matrices on grids 8 and 4, (c, 4c) (stride 2) and (c, 2c) on grid 4, a grouped (2, 3) pair on grid 8
    and 4, a 1-column layer: shapes that merge across grids, widths that pad into each other, and ones that do not."""
    g = torch.Generator().manual_seed(3)

    def w(c_out, c_in, k=3):
        return torch.randn(c_out, c_in, k, k, generator=g, dtype=torch.float64)

    return [(w(4, 4), 8, 1), (w(4, 4), 8, 2), (w(4, 4), 4, 1), (w(4, 8), 4, 1), (w(4, 4, 1), 8, 1, 1),
            (w(4, 3), 8, 1, 2), (w(4, 3), 4, 1, 2), (w(4, 1), 8, 1), (w(1, 4), 4, 1)]


@pytest.mark.parametrize("merge,calls", [("none", 9), ("grids", 7), ("pad", 6)])
def test_merged_calls_are_exact_and_fewer(monkeypatch, merge, calls):
    """Merging across grids, and zero-padding narrower matrices of the same rows into one call, changes no SV
    (float64 oracle per layer) and makes the number of solver calls the expected one."""
    import svbench.functional.network as network

    seen = []
    real = network.matrix_singular_values
    monkeypatch.setattr(network, "matrix_singular_values", lambda a, *x, **k: seen.append(a.shape) or real(a, *x, **k))
    layers = _merge_layers()
    got = batched_conv_singular_values(layers, merge=merge)
    assert len(seen) == calls, seen
    for (w, n, s, *grp), sv in zip(layers, got):
        from svbench.functional.grouped import grouped_conv_singular_values

        exact = grouped_conv_singular_values(w, n, s, groups=grp[0] if grp else 1, backend="svdvals64")
        assert sv.shape == exact.shape and torch.allclose(sv, exact, atol=1e-12)
    chunked = batched_conv_singular_values(layers, merge=merge, chunk=3)  # chunked groups are never merged
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(chunked, got))


@pytest.mark.parametrize("route", ["svd", "gram"])
@pytest.mark.parametrize("merge,calls", [("none", 9), ("grids", 7), ("pad", 6)])
def test_merged_clip_calls_give_each_layers_own_clip(monkeypatch, merge, calls, route):
    """Clipping many layers with merged (and zero-padded) calls gives every layer the kernel its own one-layer pass
    gives, in the calls counted above; dilated kernels are clipped through their zero-filled taps as before."""
    import svbench.functional.clip as clip

    seen = []
    real = clip.clip_correction
    monkeypatch.setattr(clip, "clip_correction", lambda a, *x, **k: seen.append(a.shape) or real(a, *x, **k))
    layers = [(w, n, s, grp[0] if grp else 1, 1) for w, n, s, *grp in _merge_layers()]
    got = clip.clip_kernels(layers, 2.0, route=route, merge=merge)
    assert len(seen) == calls, seen
    for (w, n, s, g, d), k in zip(layers, got):
        own = clip.clip_kernel(w, n, 2.0, s, route=route, groups=g, dilation=d)
        assert k.shape == w.shape and torch.allclose(k, own, atol=1e-12)
    dil = [(torch.randn(4, 4, 3, 3, dtype=torch.float64), 8, 1, 1, 2), (torch.randn(4, 4, 3, 3, dtype=torch.float64),
                                                                        8, 1, 1, 1)]
    both = clip.clip_kernels(dil, 1.5, route=route, merge=merge)
    assert all(torch.allclose(k, clip.clip_kernel(w, n, 1.5, s, route=route, dilation=d), atol=1e-12)
               for (w, n, s, _, d), k in zip(dil, both))


def test_merge_unknown_is_one_line_error():
    from svbench.errors import UserError

    with pytest.raises(UserError, match="merge must be one of grids, pad, none"):
        batched_conv_singular_values(_merge_layers()[:1], merge="all")


def test_network_svs_sedghi_tt_reference_agree_with_layers():
    torch.manual_seed(0)
    model = build_model("small_cnn", in_channels=3, image_size=16, width=4).double()
    a = create_method("sedghi").network_svs(model, (3, 16, 16))
    b = create_method("reference").network_svs(model, (3, 16, 16))
    assert a.keys() == b.keys() and len(a) == 4
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-10)
    tt = create_method("tt", rank_scale=0.5, keep_first=False)
    wrapped = tt.wrap(build_model("small_cnn", in_channels=3, image_size=16, width=4).double())
    out = tt.network_svs(wrapped, (3, 16, 16))
    from svbench.methods.base import circular_view, conv_inputs
    from svbench.methods.tt import tt_layer_singular_values

    for name, layer, n in conv_inputs(wrapped, (3, 16, 16)):
        layer.padding_mode = "circular"
        assert torch.allclose(out[name], tt_layer_singular_values(layer, n), atol=1e-10)
        assert circular_view(layer) is layer


def test_network_task_and_grid(tmp_path):
    suite = parse_suite({
        "name": "net",
        "tasks": [
            {"name": "nets", "kind": "network", "models": ["small_cnn"], "input_shape": [3, 16, 16],
             "methods": ["reference", "sedghi", "gram", "cayley"], "clip_to": 1.0,
             "timing": {"warmup": 0, "min_repeats": 1, "max_repeats": 2, "budget_s": 0.01}},
            {"name": "grid", "kind": "sv", "methods": ["sedghi"],
             "timing": {"warmup": 0, "min_repeats": 1, "max_repeats": 2, "budget_s": 0.01},
             "grid": {"c": [2, 4, 64], "n": [4, 8], "k": [3, 5], "max_work": 5000}},
        ],
    }, "test")
    shapes = suite.tasks[1].all_shapes()
    assert all(s.k <= s.n and (s.n ** 2) * s.c_in ** 3 <= 5000 for s in shapes) and len(shapes) == 6
    res = run_suite(suite, out_root=tmp_path, progress=False)
    net = [r for r in res.records if r["task"] == "nets"]
    assert {r["method"] for r in net} == {"reference", "sedghi", "gram"}  # cayley computes no SVs of a given net
    errs = [r["value"] for r in net if r["metric"] == "network_max_err_rel"]
    assert errs and max(errs) < 1e-5
    assert "Network task" in res.table_md
    clip = {r["method"] for r in net if r["metric"] == "network_clip_time_ms"}
    assert clip == {"reference", "sedghi"}  # only methods with a clipping projection time one
    clip_err = {r["method"]: r["value"] for r in net if r["metric"] == "network_clip_err_rel"}
    assert clip_err.keys() == clip and max(clip_err.values()) < 1e-5  # float32 passes against the float64 pass
    assert "clip err" in res.table_md


def test_network_clip_routes_agree_and_leave_the_model_alone():
    from svbench.methods import create_method
    from svbench.models import build_model

    model = build_model("small_cnn", num_classes=10, in_channels=3, image_size=16).double()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = create_method("sedghi").network_clip(model, (3, 16, 16), 0.5)
    naive = create_method("reference").network_clip(model, (3, 16, 16), 0.5)
    assert fast.keys() == naive.keys() and fast
    for name in fast:
        assert (fast[name] - naive[name]).abs().max() <= 1e-10 * naive[name].abs().max()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert create_method("gram").network_clip(model, (3, 16, 16), 0.5) is None


def test_network_oracle_is_computed_once_per_kernel(tmp_path, monkeypatch):
    import svbench.suite.network_cell as nc

    calls = []
    real = nc.conv_singular_values

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    clip_calls = []
    real_clip = nc.clip_kernel

    def counting_clip(*args, **kwargs):
        clip_calls.append(1)
        return real_clip(*args, **kwargs)

    monkeypatch.setattr(nc, "conv_singular_values", counting)
    monkeypatch.setattr(nc, "clip_kernel", counting_clip)
    suite = parse_suite({
        "name": "net", "tasks": [
            {"name": "nets", "kind": "network", "models": ["small_cnn"], "input_shape": [3, 16, 16],
             "methods": ["reference", "sedghi", "gram"], "measure_memory": False, "clip_to": 1.0,
             "timing": {"warmup": 0, "min_repeats": 1, "max_repeats": 1, "budget_s": 0.01}}],
    }, "test")
    res = run_suite(suite, out_root=tmp_path, progress=False)
    n_convs = next(r for r in res.records if r["metric"] == "network_sv_time_ms")["extra"]["n_layers"]
    assert len(calls) == n_convs  # three methods on the same seeded model share one oracle per conv
    assert len(clip_calls) == n_convs  # ... and one float64 clip per conv for the two that clip
    assert len([r for r in res.records if r["metric"] in ("network_max_err_rel", "network_min_bound_rel_err")]) == 3


def test_network_svs_gram_batches_layers_of_one_shape_and_keeps_each_bound():
    """Three same-shape convs in one batched iteration, a strided and a 1x1 one beside: per-layer values."""
    from svbench.methods.base import circular_view, conv_inputs

    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1),
                          nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.Conv2d(6, 6, 1)).double()
    gram = create_method("gram", batch_layers=True)
    shape = (4, 8, 8)
    got = gram.network_svs(model, shape)
    assert list(got) == [name for name, _, _ in conv_inputs(model, shape)]  # forward order
    for name, layer, n in conv_inputs(model, shape):
        exact = conv_singular_values(layer.weight.detach(), n, layer.stride[0])[0]
        alone = gram.layer_svs(circular_view(layer), n)
        assert torch.allclose(got[name], alone, rtol=1e-12)
        assert exact * (1 - 1e-12) <= got[name][0] <= exact * 1.01


@pytest.mark.parametrize("model_name,calls", [("wrn16_10", (7, 7, 5)), ("resnet18", (11, 11, 8)), ("vgg19", (8, 8, 5))])
def test_gesvda_call_counts_of_the_registered_networks(monkeypatch, model_name, calls):
    """The call counts the GPU write-up cites (one gesvda call per group, as on CUDA) for merge none / grids / pad,
    the same for the SVs and for the clipping pass (WRN-16-10: 13 convs, so 13 calls when each layer was clipped
    alone). ResNet-18's three 1 x 1 stride-2 shortcuts are one matrix each (frequency_free_matrix): they left the
    3 x 3 stride-2 calls (8 / 8 / 5 calls before, with 130 / 34 / 10 of their matrices in them)."""
    import svbench.functional.clip as clip
    import svbench.functional.network as network
    from svbench.methods.base import plain_convs

    model = build_model(model_name, in_channels=3, image_size=32)
    layers = [(m.weight.detach(), n, m.stride[0], m.groups) for _, m, n in plain_convs(model, (3, 32, 32))]
    seen = []
    monkeypatch.setattr(network, "resolve_backend", lambda *a, **k: ("svdvals", "gesvda"))
    monkeypatch.setattr(network, "matrix_singular_values",
                        lambda a, *x, **k: seen.append(a.shape) or torch.zeros(a.shape[0], min(a.shape[-2:])))
    monkeypatch.setattr(clip, "resolve_clip_route", lambda *a: ("svd", "gesvda"))
    monkeypatch.setattr(clip, "clip_correction", lambda a, *x, **k: seen.append(a.shape)
                        or (torch.zeros_like(a), a.real.new_zeros(a.shape[0])))
    for route in ("svs", "clip"):
        counts = []
        for merge in ("none", "grids", "pad"):
            seen.clear()
            if route == "svs":
                network.batched_conv_singular_values(layers, merge=merge, pieces=1)
            else:
                clip.clip_kernels([(w, n, s, g, 1) for w, n, s, g in layers], 1.0, merge=merge, pieces=1)
            counts.append(len(seen))
        assert tuple(counts) == calls, route
    if model_name == "wrn16_10":
        assert len(layers) == 13


@pytest.mark.parametrize("c_out,c_in,kh,kw,n,s,g", [(6, 4, 1, 1, 8, 1, 1), (6, 4, 1, 1, 8, 2, 1), (3, 5, 1, 1, 8, 2, 1),
                                                    (4, 4, 2, 2, 8, 2, 1), (5, 3, 1, 2, 12, 2, 1),
                                                    (6, 4, 1, 1, 9, 3, 2), (4, 6, 2, 1, 6, 3, 1)])
def test_frequency_free_layers_are_exact(c_out, c_in, kh, kw, n, s, g):
    """Kernels no larger than their stride are decomposed once (one matrix, empty phases dropped): every SV, zeros
    included, equals the per-frequency route on the layer's dense equivalent in float64."""
    from svbench.functional.grouped import dense_equivalent_kernel
    from svbench.functional.transfer import frequency_free_matrix

    w = torch.randn(c_out, c_in // g, kh, kw, generator=torch.Generator().manual_seed(c_out * n + s),
                    dtype=torch.float64)
    assert frequency_free_matrix(w, n, s) is not None
    got = batched_conv_singular_values([(w, n, s, g)])[0]
    exact = conv_singular_values(dense_equivalent_kernel(w, g, 1), n, s, backend="svdvals64")
    assert got.shape == exact.shape and torch.allclose(got, exact, rtol=0, atol=1e-12)
    assert frequency_free_matrix(torch.zeros(2, 2, 3, 3), 8, 2) is None  # 3 > 2: two taps in a phase


@pytest.mark.parametrize("c_out,c_in,kh,kw,n,s", [(8, 4, 1, 1, 6, 1), (8, 4, 1, 1, 6, 2), (3, 8, 1, 1, (6, 4), 2),
                                                 (8, 4, 2, 2, 6, 2), (5, 4, 1, 2, (5, 6), (1, 2)),
                                                 (6, 2, 1, 1, (6, 5), (2, 1)), (16, 4, 2, 1, 4, 2), (4, 4, 1, 1, 6, 3)])
def test_frequency_free_layers_are_decomposed_once_in_the_single_layer_route(monkeypatch, c_out, c_in, kh, kw, n, s):
    """``conv_singular_values`` / ``conv_sigma_max`` (one layer: ``sedghi.layer_svs``, ``spectrum``, the zero-padding
    and certified bounds) decomposed a kernel no larger than its stride at every unique frequency: ResNeXt-50's
    2048 x 1024 strided shortcut took 17 s of a 297 s ``spectrum`` (one thread). Now its one matrix, once: every SV,
    zeros included, equals the dense float64 operator of torch's strided conv (no window wraps: nothing to pad)."""
    import torch.nn.functional as F

    import svbench.functional.spectrum as spectrum
    from svbench.functional.oracle import oracle_singular_values
    from svbench.functional.spectrum import conv_sigma_max

    w = torch.randn(c_out, c_in, kh, kw, generator=torch.Generator().manual_seed(c_out + kh), dtype=torch.float64)
    hw = n if isinstance(n, tuple) else (n, n)
    exact = oracle_singular_values(lambda x: F.conv2d(x, w, stride=s), (c_in, *hw))
    calls = []
    real = spectrum.matrix_singular_values
    monkeypatch.setattr(spectrum, "matrix_singular_values",
                        lambda a, *x, **k: calls.append(a.shape) or real(a, *x, **k))
    got = conv_singular_values(w, n, s)
    assert got.shape == exact.shape and torch.allclose(got, exact, rtol=0, atol=1e-12)
    assert calls == [(1, c_out, c_in * kh * kw)]  # one matrix, the unreached phases' columns dropped
    assert abs(float(conv_sigma_max(w.float(), n, s)) - float(exact[0])) <= 2e-6 * float(exact[0])


def test_frequency_free_clip_is_the_textbook_clip():
    """A 1 x 1 stride-2 conv and a 2 x 2 stride-2 conv are clipped through their one matrix: the same kernel as the
    textbook pass (full fft2, SVD clip of every matrix, ifft2, crop), float64."""
    from svbench.functional.clip import clip_kernel, clip_kernel_naive

    g = torch.Generator().manual_seed(5)
    for shape, n, s in (((6, 4, 1, 1), 8, 2), ((4, 3, 2, 2), 8, 2), ((5, 5, 1, 1), 6, 1)):
        w = torch.randn(*shape, generator=g, dtype=torch.float64)
        for target in (0.5, 1.5):
            want = clip_kernel_naive(w, n, target, s)
            for route in ("svd", "gram"):
                assert torch.allclose(clip_kernel(w, n, target, s, route=route), want, rtol=0, atol=1e-10)


def test_sedghi_and_tt_cover_kernels_wider_than_their_grid_like_reference():
    """VGG-19 at 32 x 32 ends in 3 x 3 convs on 2 x 2 grids: sedghi and tt decompose them too (the taps wrap), so
    their network rows cover the same layers as the reference's (12 of 16 before, on an H200 run)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(4, 4, 3, 2, padding=1),
                                torch.nn.Conv2d(4, 5, 5, padding=2), torch.nn.Conv2d(5, 3, 3, padding=2, dilation=2))
    shape = (3, 4, 4)  # the last three convs run on 2 x 2: kernels of span 3, 5, 5
    ref = create_method("reference").network_svs(model, shape)
    for name, opts in (("sedghi", {}), ("tt", {"rank": 2, "init": "orthogonal", "keep_first": True})):
        method = create_method(name, **opts)
        if name == "tt":  # the dilated conv is not tt's: said by name
            with pytest.warns(UserWarning, match=r"1 of 4 conv layers left out of the result: 3 \(Conv2d, dilation"):
                got = method.network_svs(method.wrap(model), shape)
        else:
            got = method.network_svs(model, shape)
        # tt: the two middle convs are TT layers (one with a 5 x 5 kernel on 2 x 2), the dilated one stays out
        assert set(got) == (set(ref) if name == "sedghi" else {"0", "1", "2"}), name
        if name == "sedghi":
            for key in ref:
                assert torch.allclose(got[key].double(), ref[key].double(), rtol=0, atol=1e-5), key


def test_network_task_times_the_power_estimate_and_checks_its_side(tmp_path):
    """Estimates (power iteration) take part in network tasks: timed like the others, and their largest
    (estimate - exact) / exact over the convs is recorded (<= 0: an estimate from below; the lowest in extra), shown in
    the network table's sigma_max column and held to <= bound_tol by compare (before session 15 a network task left
    estimate methods out)."""
    from svbench.report.compare import compare
    from svbench.results.tables import network_markdown, network_table

    suite = parse_suite({
        "name": "net", "tasks": [
            {"name": "nets", "kind": "network", "models": ["small_cnn"], "input_shape": [1, 16, 16],
             "methods": ["power", "gram"], "measure_memory": False,
             "timing": {"warmup": 0, "min_repeats": 1, "max_repeats": 1, "budget_s": 0.01}}],
    }, "test")
    res = run_suite(suite, out_root=tmp_path, progress=False)
    est = [r for r in res.records if r["metric"] == "network_max_est_rel_err"]
    assert len(est) == 1 and est[0]["method"] == "power" and est[0]["provides"] == "estimate"
    assert est[0]["extra"]["min_est_rel_err"] <= est[0]["value"] <= 1e-5
    assert any(r["metric"] == "network_sv_time_ms" and r["method"] == "power" for r in res.records)
    md = network_markdown(network_table(res.records))
    (row,) = [line for line in md.splitlines() if "| power |" in line]
    assert f"{est[0]['value']:.4g}" in row
    assert all(v.ok for v in compare(res.records, res.records))
    above = [dict(r, value=0.01) if r["metric"] == "network_max_est_rel_err" else r for r in res.records]
    assert [(v.kind, v.metric) for v in compare(above, res.records) if not v.ok] == [
        ("exactness", "network_max_est_rel_err")]


def test_cayley_network_svs_covers_its_own_layers():
    """``cayley.network_svs`` of a model its ``wrap`` made gave {} (the base route looks for plain convs); it now
    gives every Cayley layer's SVs on the grid its forward sees -- those of its implemented operator (dense float64),
    all 1 -- and names the conv ``wrap`` kept dense (a (1, 2) stride) as left out."""
    import warnings

    from torch import nn

    from svbench.functional.oracle import oracle_singular_values
    from svbench.methods import create_method

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, stride=2, padding=1),
                          nn.Conv2d(8, 8, 3, stride=(1, 2), padding=1))
    m = create_method("cayley")
    wrapped = m.wrap(model).double().eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = m.network_svs(wrapped, (3, 8, 12))
    assert set(got) == {"0", "2"}
    assert any("left out" in str(w.message) and ": 3 (Conv2d)" in str(w.message) for w in caught)
    for name, grid in (("0", (8, 12)), ("2", (8, 12))):
        layer = wrapped[int(name)]
        exact = oracle_singular_values(layer, (layer.in_channels if hasattr(layer, "in_channels") else
                                               {"0": 3, "2": 4}[name], *grid))
        assert got[name].shape == exact.shape and float((got[name].double() - exact).abs().max()) <= 1e-6, name
        assert float((exact - 1).abs().max()) <= 1e-10
