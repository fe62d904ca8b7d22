"""SV tasks with a stride per axis: ``stride: [1, 2]`` in a shape, ``stride: [1, [1, 2]]`` in a grid.

Every route of svbench took a stride per axis since session 18 (the engine, network routes, spectrum, the
certified bound), but an SV task's ``LayerSpec`` took one int: the layer sweeps could not measure a spectrogram
layer's (1, 2) stride. Checked here: the spec (canonical form, validation, output grid and SV count against
torch's conv and the dense operator, label, JSON round trip), and every method of the registry on such specs
against the dense float64 oracle of the layer it builds, by what it provides; cayley (2 x 2 space-to-depth)
skips them in one line.
"""

import json
import re

import pytest
import torch

from svbench.functional.oracle import oracle_singular_values
from svbench.methods import METHODS, create_method
from svbench.methods.base import LayerSpec, seeded_conv


def test_the_spec_of_a_stride_per_axis():
    spec = LayerSpec(4, 6, 3, 8, [1, 2], width=12)
    assert spec.stride == (1, 2) and spec.strides == (1, 2) and spec.label == "4->6 k3 n8x12 s1x2 circ"
    assert LayerSpec(4, 6, 3, 8, [2, 2]) == LayerSpec(4, 6, 3, 8, 2)  # (s, s) is s: one value, one schema
    assert LayerSpec(4, 6, 3, 8, (2, 2)).as_dict()["stride"] == 2
    back = LayerSpec(**json.loads(json.dumps(spec.as_dict())))  # a record's shape reads back as the same spec
    assert back == spec and back.label == spec.label
    for padding, stride, grid in (("circular", (1, 2), (8, 12)), ("zeros", (2, 1), (7, 9)),
                                  ("zeros", (1, 3), (6, 6)), ("circular", (4, 2), (8, 8))):
        s = LayerSpec(3, 5, 3, grid[0], stride, padding, width=grid[1])
        conv = seeded_conv(s, seed=0, dtype=torch.float64)
        out = conv(torch.zeros(1, *s.in_shape, dtype=torch.float64)).shape[-2:]
        assert s.out_hw == tuple(out), (padding, stride, grid)
        assert s.num_svs() == oracle_singular_values(conv, s.in_shape).numel(), (padding, stride, grid)


@pytest.mark.parametrize("stride, says", [
    ([0, 1], "stride must be a positive integer or [s_height, s_width] of positive integers, got [0, 1]"),
    ([1, 2, 3], "stride must be a positive integer or [s_height, s_width], got [1, 2, 3]"),
    ([True, 1], "of positive integers, got [True, 1]"),
    ([1, 1.5], "of positive integers, got [1, 1.5]"),
    ([1, 3], "stride 3 does not divide the input width 8"),
    ([3, 1], "stride 3 does not divide the input size 8"),
])
def test_bad_strides_per_axis_are_one_line(stride, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        LayerSpec(4, 4, 3, 8, stride)


def test_a_suite_reads_strides_per_axis_in_shapes_and_grids(tmp_path):
    from svbench.errors import UserError
    from svbench.suite.loader import parse_suite

    timing = {"warmup": 0, "min_repeats": 1, "max_repeats": 1, "budget_s": 0.01}
    suite = parse_suite({"name": "ax", "tasks": [
        {"name": "sv", "kind": "sv", "methods": "all", "timing": timing,
         "shapes": [{"c_in": 4, "c_out": 4, "k": 3, "n": 8, "width": 16, "stride": [1, 2]}],
         "grid": {"c": [4, 8], "n": [8], "width": [12], "k": [3], "stride": [1, [1, 2], [2, 2], [1, 8]],
                  "max_work": 6 * 8 * 8**3}}]}, "test")
    labels = [s.label for s in suite.tasks[0].all_shapes()]
    # [2, 2] is stride 2; [1, 8] does not divide the width 12 (left out, as a stride not dividing n is); max_work
    # per axis: (8 / 1) (12 / 2) 8^3 fits, (8 / 1) (12 / 1) 8^3 does not
    assert labels == ["4->4 k3 n8x16 s1x2 circ", "4->4 k3 n8x12 s1 circ", "4->4 k3 n8x12 s1x2 circ",
                      "4->4 k3 n8x12 s2 circ", "8->8 k3 n8x12 s1x2 circ", "8->8 k3 n8x12 s2 circ"]
    with pytest.raises(UserError, match=re.escape("stride must be a positive integer or [s_height, s_width], "
                                                  "got [1, 2, 3]")):
        parse_suite({"name": "ax", "tasks": [{"name": "sv", "kind": "sv", "shapes": [
            {"c_in": 4, "c_out": 4, "k": 3, "n": 8, "stride": [1, 2, 3]}]}]}, "test")


@pytest.mark.parametrize("method", METHODS.names())
@pytest.mark.parametrize("spec", [LayerSpec(4, 6, 3, 8, (1, 2), width=12), LayerSpec(6, 4, 3, 8, (2, 1)),
                                  LayerSpec(4, 4, 1, 8, (1, 2)), LayerSpec(4, 4, 3, 6, (2, 1), "zeros", width=7)],
                         ids=lambda s: s.label if isinstance(s, LayerSpec) else None)
def test_every_method_on_a_stride_per_axis_against_the_dense_float64_operator(method, spec):
    m = create_method(method)
    why = m.supports.why_not(spec)
    if why is not None:
        assert method in ("cayley", "reference", "sedghi", "tt") and spec.padding == "zeros" or (
            method == "cayley" and why == f"a stride per axis ({spec.label.split()[3][1:]}) not supported "
                                          "(supports: 1, 2 on both axes)"), why
        return
    layer = m.make_layer(spec, seed=0, dtype=torch.float64)
    exact = oracle_singular_values(layer, spec.in_shape)
    got = m.layer_svs(layer, spec.grid).double()
    top = float(exact[0])
    if m.provides == "all_svs":
        assert exact.numel() == spec.num_svs() and got.shape == exact.shape
        assert float((got - exact).abs().max()) <= 1e-10 * top
    elif m.provides == "upper_bound":
        assert top * (1 - 1e-9) <= float(got[0]) <= 1.5 * top
    elif m.provides == "estimate":
        assert 0.5 * top <= float(got[0]) <= top * (1 + 1e-9)


def test_an_sv_task_with_strides_per_axis_end_to_end(tmp_path):
    """The runner's cells (each method's layer, the dense oracle, the paired reference, the rfft transfer size):
    the records carry the stride as [s1, s2], read back into the same label by the tables."""
    from svbench.results.tables import shape_label
    from svbench.suite.loader import parse_suite
    from svbench.suite.runner import rfft_transfer_bytes, run_suite

    timing = {"warmup": 0, "min_repeats": 1, "max_repeats": 1, "budget_s": 0.01}
    suite = parse_suite({"name": "ax", "tasks": [
        {"name": "sv", "kind": "sv", "methods": "all", "timing": timing, "oracle_max_dim": 1024, "forward_batch": 2,
         "paired_reference": 1, "shapes": [{"c_in": 4, "c_out": 6, "k": 3, "n": 8, "width": 12, "stride": [1, 2]}]}]},
        "test")
    recs = run_suite(suite, out_root=tmp_path, progress=False).records
    value = {(r["method"], r["metric"]): r["value"] for r in recs if r["status"] == "ok"}
    for method in ("reference", "sedghi", "tt"):
        assert value[(method, "sv_max_abs_err_rel")] <= 2e-6, method
    assert -2e-7 <= value[("gram", "sigma_max_rel_err")] < 0.05
    assert -0.1 < value[("power", "sigma_max_rel_err")] <= 1e-7
    assert ("sedghi", "speedup_vs_reference_paired") in value
    skipped = {r["method"]: r["reason"] for r in recs if r["status"] == "skipped"}
    assert set(skipped) == {"cayley"} and "a stride per axis (1x2) not supported" in skipped["cayley"]
    shapes = {json.dumps(r["shape"]) for r in recs if r.get("shape")}
    assert len(shapes) == 1 and json.loads(shapes.pop())["stride"] == [1, 2]
    assert shape_label(recs[0]["shape"]) == "4->6 k3 n8x12 s1x2 circ"
    # (8 / 1) x (12 / 2 // 2 + 1) frequencies of 6 x (4 * 2) complex64 matrices
    assert rfft_transfer_bytes(suite.tasks[0].shapes[0], torch.float32) == 8 * 4 * 6 * 8 * 8


@pytest.mark.parametrize("stride, says", [
    ([[1, 2, 3]], "tasks[0].grid: stride: each entry must be a positive integer or [s_height, s_width] of positive "
                  "integers, got [1, 2, 3]"),
    ([[0, 2]], "got [0, 2]"),
    ([0], "got 0"),  # was a ZeroDivisionError traceback from the sweep
    ([True], "tasks[0].grid.stride[0]: expected int | list of int, got True"),
])
def test_bad_grid_strides_are_one_line_naming_where(stride, says):
    """A grid's strides are checked before the sweep divides by them; the message names the grid (an optional
    section's own message, no longer "expected mapping | null, got {...}")."""
    from svbench.errors import UserError
    from svbench.suite.loader import parse_suite

    with pytest.raises(UserError) as e:
        parse_suite({"name": "g", "tasks": [{"name": "sv", "kind": "sv", "grid": {"c": [4], "n": [8],
                                                                                 "stride": stride}}]}, "g.yaml")
    assert says in str(e.value) and "\n" not in str(e.value)
