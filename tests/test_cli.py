"""CLI through the real entry points: one clear line, exit code 2, no traceback for every bad input."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from svbench.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


def _cli(*args, cwd=None):
    """Run ``python -m svbench`` in a subprocess (exactly like the ``svbench`` command)."""
    return subprocess.run([sys.executable, "-m", "svbench", *args], capture_output=True, text=True,
                          cwd=cwd, env=ENV, timeout=600)


def _one_line_error(res, *needles):
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def _inproc(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


TINY = """
name: tiny
tasks:
  - name: layers
    kind: sv
    timing: {warmup: 0, min_repeats: 1, max_repeats: 2, budget_s: 0.01}
    shapes:
      - {c_in: 2, c_out: 3, k: 3, n: 4, stride: 2}
      - {c_in: 2, c_out: 2, k: 3, n: 4, padding: zeros}
"""


def test_console_script_and_module_run_the_smoke_suite(tmp_path):
    res = _cli("run", _write(tmp_path, "tiny.yaml", TINY), "--methods", "all", "--out", str(tmp_path / "runs"))
    assert res.returncode == 0, res.stderr
    assert "sedghi" in res.stdout and "skipped" in res.stdout  # sedghi declines zero padding and says why
    run_dirs = list((tmp_path / "runs" / "tiny").iterdir())
    assert len(run_dirs) == 1
    for f in ("results.jsonl", "table.md", "table.csv", "meta.json"):
        assert (run_dirs[0] / f).exists()
    exe = Path(sys.executable).parent / "svbench"
    if exe.exists():
        res2 = subprocess.run([str(exe), "ls", "methods"], capture_output=True, text=True, env=ENV)
        assert res2.returncode == 0 and "all_svs" in res2.stdout


def test_unknown_method_lists_available_and_closest():
    res = _cli("run", "smoke", "--methods", "sedgi")
    _one_line_error(res, "unknown method 'sedgi'", "Did you mean 'sedghi'", "none")


def test_debug_shows_traceback():
    res = _cli("--debug", "run", "smoke", "--methods", "sedgi")
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_malformed_yaml(tmp_path, capsys):
    code, _, err = _inproc(capsys, "run", _write(tmp_path, "bad.yaml", "name: x\ntasks: [\n  - {a: 1\n"))
    assert code == 2 and "malformed YAML at line" in err and "bad.yaml" in err


def test_unknown_suite_key(tmp_path, capsys):
    text = TINY.replace("kind: sv", "kind: sv\n    methds: all")
    code, _, err = _inproc(capsys, "run", _write(tmp_path, "k.yaml", text))
    assert code == 2
    assert "tasks[0]: unknown key 'methds'" in err and "did you mean 'methods'" in err and "allowed keys" in err


def test_mistyped_suite_value(tmp_path, capsys):
    text = TINY.replace("c_in: 2, c_out: 3", "c_in: two, c_out: 3")
    code, _, err = _inproc(capsys, "validate", _write(tmp_path, "t.yaml", text))
    assert code == 2 and "shapes[0].c_in: expected an integer, got 'two'" in err


def test_kernel_larger_than_input(tmp_path, capsys):
    text = TINY.replace("k: 3, n: 4, stride: 2", "k: 5, n: 4, stride: 2")
    code, _, err = _inproc(capsys, "validate", _write(tmp_path, "t.yaml", text))
    assert code == 2 and "larger than the 4x4 input" in err


def test_stride_not_dividing_input(tmp_path, capsys):
    text = TINY.replace("k: 3, n: 4, stride: 2", "k: 3, n: 5, stride: 2")
    code, _, err = _inproc(capsys, "validate", _write(tmp_path, "t.yaml", text))
    assert code == 2 and "stride 2 does not divide the input size 5" in err


def test_unknown_suite_name_and_missing_file(capsys):
    code, _, err = _inproc(capsys, "run", "no-such-suite")
    assert code == 2 and "unknown suite 'no-such-suite'" in err and "smoke" in err
    code, _, err = _inproc(capsys, "run", "missing/suite.yaml")
    assert code == 2 and "suite file not found" in err


def test_bad_method_config_in_suite(tmp_path, capsys):
    text = TINY + "    variants:\n      sedghi: [{backend: fast}]\n"
    code, _, err = _inproc(capsys, "validate", _write(tmp_path, "t.yaml", text))
    assert code == 2 and "variants.sedghi[0].backend" in err


def test_validate_ok(capsys):
    code, out, _ = _inproc(capsys, "validate", "smoke", "default")
    assert code == 0 and out.count("ok:") == 2


def test_usage_error_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--threads", "x"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1


def test_ls_methods(capsys):
    code, out, _ = _inproc(capsys, "ls", "methods")
    assert code == 0
    for word in ("sedghi", "none", "all_svs"):
        assert word in out



@pytest.mark.parametrize("method", ["cayley", "gram", "power", "sedghi", "tt"])
def test_ls_one_method_lists_every_config_option(capsys, method):
    import dataclasses

    from svbench.methods import METHODS

    code, out, _ = _inproc(capsys, "ls", "methods", method)
    assert code == 0 and f"{method} options" in out
    for f in dataclasses.fields(METHODS.get(method).Config):
        assert f.name in out  # a piped console is wide enough not to cut names


def test_ls_method_without_options_and_unknown_pattern(capsys):
    for method in ("none", "reference"):
        code, out, _ = _inproc(capsys, "ls", "methods", method)
        assert code == 0 and f"{method} has no options" in out
    code, _, err = _inproc(capsys, "ls", "methods", "zzz")
    assert code == 2 and "no method matches 'zzz'" in err


def test_ls_models_gives_each_registered_model_its_conv_count(capsys):
    """What ``--model NAME`` and a suite's ``model:`` take, with the facts a user picks by (no such list before
    session 14: the names were only in the unknown-model error)."""
    import re

    from svbench.models import MODELS

    code, out, _ = _inproc(capsys, "ls", "models")
    assert code == 0
    for name in MODELS.names():
        assert name in out
    rows = {line.split()[1]: line for line in out.splitlines() if re.match(r"^\S\s+(wrn16_10|resnet18|vgg19)\b", line)}
    assert " 13 " in rows["wrn16_10"] and " 20 " in rows["resnet18"] and " 16 " in rows["vgg19"]
    assert "graph" in rows["vgg19"] and "graph" in rows["resnet18"]  # certified bounds along the fx graph


@pytest.mark.parametrize("what,pattern,keep,drop", [("models", "w*", "wrn16_10", "resnet18"),
                                                    ("suites", "sm*", "smoke", "default"),
                                                    ("metrics", "network_*", "network_sv_time_ms", "sv_time_ms")])
def test_ls_pattern_filters_every_list(capsys, what, pattern, keep, drop):
    code, out, _ = _inproc(capsys, "ls", what, pattern)
    assert code == 0 and keep in out and f"│ {drop} " not in out
    code, _, err = _inproc(capsys, "ls", what, "zzz")
    assert code == 2 and f"no {what[:-1]} matches 'zzz'; available: " in err and len(err.strip().splitlines()) == 1


# ---- spectrum -----------------------------------------------------------------------------------------------


def test_spectrum_with_input_size(tmp_path, capsys):
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    path = tmp_path / "c.pt"
    torch.save({"state_dict": {"layer.weight": conv.weight.detach(), "layer.bias": conv.bias.detach()}}, path)
    code, out, _ = _inproc(capsys, "spectrum", str(path), "--input-size", "6", "--out", str(tmp_path / "o"))
    assert code == 0
    csv_lines = (tmp_path / "o" / "spectrum.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 6 * 6 * 3  # all SVs: n^2 min(c_out, c_in)
    assert "| layer |" in (tmp_path / "o" / "spectrum.md").read_text()
    assert (tmp_path / "o" / "spectrum.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert f"{tmp_path / 'o' / 'spectrum.png'}" in out


def test_spectrum_plot_draws_every_kind_of_layer():
    """spectrum.png's figure: zero SVs (drawn at the floor), a one-SV layer, layers without a bound, more layers than
    the legend holds; nothing to draw gives None. A long layer is drawn at SPECTRUM_POINTS ranks, its first and last
    SV among them."""
    import numpy as np

    from svbench.report.plots import SPECTRUM_POINTS, spectrum_per_layer, spectrum_ranks

    layers = [(f"l{i}", np.sort(np.abs(np.random.default_rng(i).normal(size=50 + i)))[::-1], 2.0 if i % 2 else None)
              for i in range(14)]
    layers += [("zeros", np.array([1.5, 0.3, 0.0, 0.0]), None), ("one", np.array([0.7]), 0.8), ("empty", [], None)]
    for subset in (layers, layers[-3:], layers[:1]):
        assert spectrum_per_layer(subset, title="t").startswith(b"\x89PNG")
    assert spectrum_per_layer([]) is None and spectrum_per_layer([("empty", [], None)]) is None
    ranks = spectrum_ranks(10 * SPECTRUM_POINTS + 7)
    assert len(ranks) == SPECTRUM_POINTS and ranks[0] == 0 and ranks[-1] == 10 * SPECTRUM_POINTS + 6
    assert (spectrum_ranks(5) == np.arange(5)).all() and (spectrum_ranks(1) == [0]).all()


def test_spectrum_with_model_hooks(tmp_path, capsys):
    from svbench.models import build_model

    model = build_model("small_cnn", in_channels=1, image_size=28)
    path = tmp_path / "m.pt"
    torch.save(model.state_dict(), path)
    code, out, _ = _inproc(capsys, "spectrum", str(path), "--model", "small_cnn", "--input-shape", "1,28,28",
                           "--out", str(tmp_path / "o"))
    assert code == 0
    md = (tmp_path / "o" / "spectrum.md").read_text()
    assert "features.2 | conv | (32, 16, 3, 3) | 28 | 2 (model hooks)" in md
    assert "features.6 | conv | (64, 32, 3, 3) | 14 | 2 (model hooks)" in md


def test_spectrum_with_model_reads_groups_and_dilation(tmp_path, capsys, monkeypatch):
    """With --model, a grouped (depthwise) and a dilated conv are read as what they are: their SVs are the grouped /
    dilated operator's (float64 route of the engine), the zero-padding bound holds them, and no depthwise warning."""
    from torch import nn

    from svbench.functional.grouped import grouped_conv_singular_values
    from svbench.models.registry import MODELS

    def grouped_net(in_channels=3, image_size=8, **_):
        return nn.Sequential(nn.Conv2d(in_channels, 6, 3, padding=1), nn.Conv2d(6, 6, 3, padding=1, groups=6),
                             nn.Conv2d(6, 4, 3, padding=2, dilation=2, padding_mode="circular"),
                             nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=2))

    monkeypatch.setitem(MODELS._items, "grouped_test_net", grouped_net)
    torch.manual_seed(0)
    model = grouped_net()
    path = tmp_path / "g.pt"
    torch.save(model.state_dict(), path)
    code, _, err = _inproc(capsys, "spectrum", str(path), "--model", "grouped_test_net", "--input-shape", "3,8,8",
                           "--out", str(tmp_path / "o"))
    assert code == 0 and "1 input channel" not in err
    md = (tmp_path / "o" / "spectrum.md").read_text()
    assert "| 1 | conv | (6, 6, 3, 3) g=6 | 8 |" in md and "| 2 | conv | (4, 6, 3, 3) d=2 | 8 |" in md
    rows = {}
    for line in (tmp_path / "o" / "spectrum.csv").read_text().splitlines()[1:]:
        name, _, _, _, _, sigma, _ = line.split(",")
        rows.setdefault(name, []).append(float(sigma))
    for name, g, d, s in (("1", 6, 1, 1), ("2", 1, 2, 1), ("3", 2, 1, 2)):
        w = model.get_submodule(name).weight.detach().double()
        exact = grouped_conv_singular_values(w, 8, s, groups=g, dilation=d, backend="svdvals64")
        got = torch.tensor(rows[name], dtype=torch.float64)
        assert got.shape == exact.shape and (got - exact).abs().max() <= 2e-6 * exact[0], name


@pytest.mark.parametrize("conv,says", [
    (dict(stride=(1, 2), padding=1), ("| 8x4 | 1x2 (model hooks)", ",8x4,1x2,")),
    (dict(dilation=(1, 2), padding=(1, 2)), ("d=1x2 | 8 | 1 (model hooks)", ",8,1,")),
], ids=["stride", "dilation"])
def test_spectrum_with_model_takes_a_stride_or_dilation_that_differs_between_axes(tmp_path, capsys, monkeypatch,
                                                                                  conv, says):
    """The model's stride[0] / dilation[0] was once taken for both axes (a (1, 2) stride gave the stride-1
    operator's 192 SVs for an operator that has 128), then refused. Since session 18 computed: every SV against the
    dense float64 operator of the model's conv, the stride / dilation printed per axis in the table and the CSV, and
    the zero-padding bound at or above the zero-padded layer's sigma_max."""
    from torch import nn

    from svbench.functional.oracle import oracle_singular_values
    from svbench.models.registry import MODELS

    def net(in_channels=3, image_size=8, **_):
        return nn.Sequential(nn.Conv2d(in_channels, 4, 3, **conv), nn.Conv2d(4, 4, 3, padding_mode="circular",
                                                                           **conv))

    monkeypatch.setitem(MODELS._items, "anisotropic_test_net", net)
    torch.manual_seed(5)
    model = net().double()
    path = tmp_path / "a.pt"
    torch.save(model.state_dict(), path)
    code, _, err = _inproc(capsys, "spectrum", str(path), "--model", "anisotropic_test_net", "--input-shape", "3,8,8",
                           "--out", str(tmp_path / "o"))
    assert code == 0, err
    md = (tmp_path / "o" / "spectrum.md").read_text()
    assert says[0] in md
    rows: dict[str, list[float]] = {}
    for line in (tmp_path / "o" / "spectrum.csv").read_text().splitlines()[1:]:
        name, _, grid, stride, _, sigma, _ = line.split(",")
        rows.setdefault(name, []).append(float(sigma))
        assert f",{grid},{stride}," == says[1] or name == "0"
    second_grid = (4, 8, 4) if "stride" in conv else (4, 8, 8)
    want = oracle_singular_values(model[1], second_grid)  # circular: the layer itself
    got = torch.tensor(rows["1"], dtype=torch.float64)
    assert got.shape == want.shape and (got - want).abs().max() <= 2e-6 * want[0]
    zero_padded = float(oracle_singular_values(model[0], (3, 8, 8))[0])
    bound = next(line for line in md.splitlines() if line.startswith("| 0 |")).split("|")[-2]
    assert float(bound) >= zero_padded * (1 - 1e-6)


def test_spectrum_with_model_gives_no_zero_padding_bound_to_reflect_padding(tmp_path, capsys, monkeypatch):
    """A model's reflect-padded conv keeps its circular-proxy SVs but no 'sigma_max bound (zero pad)': that bound is
    the zero-padded layer's, and reflect padding (a padding map of norm up to 2) can exceed it."""
    from torch import nn

    from svbench.models.registry import MODELS

    def reflect_net(in_channels=3, image_size=8, **_):
        return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1, padding_mode="reflect"),
                             nn.Conv2d(4, 4, 3, padding=1))

    monkeypatch.setitem(MODELS._items, "reflect_test_net", reflect_net)
    torch.manual_seed(0)
    path = tmp_path / "r.pt"
    torch.save(reflect_net().state_dict(), path)
    code, _, _ = _inproc(capsys, "spectrum", str(path), "--model", "reflect_test_net", "--input-shape", "3,8,8",
                         "--out", str(tmp_path / "o"))
    assert code == 0
    rows = {line.split(" | ")[0].strip("| "): line for line in (tmp_path / "o" / "spectrum.md").read_text().splitlines()
            if line.startswith("| 0 ") or line.startswith("| 1 ")}
    assert "| reflect |" in rows["0"] and rows["0"].rstrip().endswith("| — |")
    assert "| zeros |" in rows["1"] and not rows["1"].rstrip().endswith("| — |")


def _three_conv_checkpoint(tmp_path, bad_last=False):
    torch.manual_seed(0)
    state = {f"c{i}.weight": torch.randn(4, 4, 3, 3) for i in range(3)}
    if bad_last:
        state["c2.weight"][0, 0, 0, 0] = float("nan")
    path = tmp_path / "three.pt"
    torch.save(state, path)
    return path


def test_spectrum_says_a_bad_later_layer_before_computing_anything(tmp_path, capsys, monkeypatch):
    """NaN weights or a kernel larger than its grid in the LAST layer: one line, exit 2, no SV computed and no
    output folder made (was: found after computing every layer before it, and their spectra dropped)."""
    from svbench.checkpoint import spectrum as sp

    def never(*_, **__):
        raise AssertionError("an SV was computed before the bad layer was said")

    monkeypatch.setattr(sp, "layer_spectrum", never)
    code, _, err = _inproc(capsys, "spectrum", str(_three_conv_checkpoint(tmp_path, bad_last=True)), "--input-size",
                           "8", "--out", str(tmp_path / "o"))
    assert code == 2 and "layer 'c2' has NaN or Inf weights" in err and not (tmp_path / "o").exists()
    state = {"a.weight": torch.randn(2, 2, 3, 3), "c.weight": torch.randn(4, 4, 3, 3), "c.alpha": torch.tensor(1.0)}
    torch.save(state, tmp_path / "cay.pt")  # a conv (computable on 2 x 2), then a Cayley layer that does not fit it
    code, _, err = _inproc(capsys, "spectrum", str(tmp_path / "cay.pt"), "--input-size", "2", "--out",
                           str(tmp_path / "o"))
    assert code == 2 and "layer 'c': its 3x3 Cayley kernel is larger than the 2x2 grid" in err, err
    assert not (tmp_path / "o").exists()


def test_spectrum_checks_the_output_folder_before_computing(tmp_path, capsys, monkeypatch):
    from svbench.checkpoint import spectrum as sp

    def never(*_, **__):
        raise AssertionError("an SV was computed before the output folder was checked")

    monkeypatch.setattr(sp, "layer_spectrum", never)
    (tmp_path / "file").write_text("x")
    code, _, err = _inproc(capsys, "spectrum", str(_three_conv_checkpoint(tmp_path)), "--input-size", "8", "--out",
                           str(tmp_path / "file" / "sub"))
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1 and "cannot write the spectrum into" in lines[0]


@pytest.mark.parametrize("failure", ["memory", "interrupt"])
def test_spectrum_keeps_the_finished_layers_when_a_later_one_fails(tmp_path, capsys, monkeypatch, failure):
    """Out of memory (or Ctrl-C) at the third layer: the two finished layers are written, marked INCOMPLETE, one
    warning line says where; the error stays one line (exit 2; 130 for Ctrl-C)."""
    from svbench.checkpoint import spectrum as sp

    real = sp.layer_spectrum
    calls = []

    def third_fails(entry, *a, **k):
        calls.append(entry.name)
        if len(calls) == 3:
            if failure == "memory":
                raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 68719476736 "
                                   "bytes")
            raise KeyboardInterrupt
        return real(entry, *a, **k)

    monkeypatch.setattr(sp, "layer_spectrum", third_fails)
    out = tmp_path / "o"
    code, _, err = _inproc(capsys, "spectrum", str(_three_conv_checkpoint(tmp_path)), "--input-size", "8", "--out",
                           str(out))
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == (2 if failure == "memory" else 130), err
    assert len(lines) == 2 and lines[0].startswith("svbench: warning:") and "2 of 3 layers" in lines[0], err
    assert ("host out of memory (tried to allocate 64.0 GiB)" if failure == "memory" else "interrupted") in lines[1]
    md = (out / "spectrum.md").read_text()
    assert md.startswith("**INCOMPLETE**") and "| c0 |" in md and "| c1 |" in md and "| c2 |" not in md
    rows = (out / "spectrum.csv").read_text().splitlines()[1:]
    assert {r.split(",")[0] for r in rows} == {"c0", "c1"} and len(rows) == 2 * 4 * 64
    assert (out / "spectrum.png").read_bytes().startswith(b"\x89PNG")  # the plot of the finished layers too


def test_checkpoint_without_convs(tmp_path, capsys):
    path = tmp_path / "lin.pt"
    torch.save({"fc.weight": torch.zeros(3, 4)}, path)
    code, _, err = _inproc(capsys, "spectrum", str(path), "--input-size", "8")
    assert code == 2 and "no conv weights" in err


def test_missing_checkpoint(tmp_path, capsys):
    code, _, err = _inproc(capsys, "spectrum", str(tmp_path / "nope.pt"), "--input-size", "8")
    assert code == 2 and "checkpoint not found" in err


def test_corrupt_checkpoint(tmp_path, capsys):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a checkpoint at all")
    code, _, err = _inproc(capsys, "spectrum", str(path), "--input-size", "8")
    assert code == 2 and "cannot read checkpoint" in err


@pytest.mark.parametrize("content", [b"hello\nworld\n", b"root:x:0:0:root:/root:/bin/bash\n" * 3, b"", b"\x80\x02",
                                     b"PK\x03\x04 truncated zip"])
def test_a_file_that_is_no_checkpoint_is_one_line(tmp_path, capsys, content):
    """A text file (``svbench spectrum /etc/passwd``) gave a traceback: torch's weights-only unpickler fails on it
    with an IndexError, which was not among the errors caught. Any failure to read the file is now one line, with no
    unpickler internals ("(101)", "(list index out of range)") in it."""
    path = tmp_path / "file.pt"
    path.write_bytes(content)
    code, _, err = _inproc(capsys, "spectrum", str(path), "--input-size", "8")
    assert code == 2 and "cannot read checkpoint" in err and "not a PyTorch checkpoint or corrupt" in err
    assert "Traceback" not in err and "index out of range" not in err and len(err.strip().splitlines()) == 1


class _Evil:
    def __reduce__(self):
        return (print, ("this code ran",))


def test_pickle_needing_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": _Evil()}, path)
    res = _cli("spectrum", str(path), "--input-size", "8")
    _one_line_error(res, "--trust-checkpoint")
    assert "this code ran" not in res.stdout


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod.", "_orig_mod.module."])
def test_spectrum_with_model_reads_a_wrapped_models_state_dict(tmp_path, capsys, prefix):
    """DataParallel ('module.') and torch.compile ('_orig_mod.') put a prefix on every key: stripped, so --model
    matches (a compiled model's state dict was refused as 12 missing and 12 unexpected keys)."""
    from svbench.models import build_model

    model = build_model("small_cnn", in_channels=1, image_size=28)
    torch.save({prefix + k: v for k, v in model.state_dict().items()}, tmp_path / "w.pt")
    code, _, err = _inproc(capsys, "spectrum", str(tmp_path / "w.pt"), "--model", "small_cnn", "--input-shape",
                           "1,28,28", "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert "| features.2 | conv | (32, 16, 3, 3) | 28 | 2 (model hooks)" in (tmp_path / "o" / "spectrum.md").read_text()


def test_a_submodule_named_module_keeps_its_name():
    from svbench.checkpoint.load import _strip_wrapper_prefixes

    state = {"module.conv.weight": torch.zeros(1), "head.weight": torch.zeros(1)}
    assert _strip_wrapper_prefixes(state).keys() == state.keys()


def test_pickled_module_is_refused_naming_what_it_pickles(tmp_path, capsys):
    """A whole pickled model (torch.save(model)): the line names the class torch refused and carries no terminal
    colour codes (torch's message starts with a page of advice and an ANSI-bold phrase); trusted, it is read."""
    from torch import nn

    path = tmp_path / "full.pt"
    torch.save(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1)), path)
    code, _, err = _inproc(capsys, "spectrum", str(path), "--input-size", "6", "--out", str(tmp_path / "o"))
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1 and "\x1b" not in err
    assert "(it pickles torch.nn.modules.container.Sequential); if you trust it, pass --trust-checkpoint" in lines[0]
    code, _, _ = _inproc(capsys, "spectrum", str(path), "--input-size", "6", "--out", str(tmp_path / "o"),
                         "--trust-checkpoint")
    assert code == 0 and "| 0 | conv | (4, 3, 3, 3) |" in (tmp_path / "o" / "spectrum.md").read_text()


def test_spectrum_bad_input_shape(tmp_path, capsys):
    path = tmp_path / "c.pt"
    torch.save({"l.weight": torch.zeros(2, 2, 3, 3)}, path)
    code, _, err = _inproc(capsys, "spectrum", str(path), "--model", "small_cnn", "--input-shape", "1,28")
    assert code == 2 and "--input-shape must be C,H,W" in err


def test_spectrum_model_mismatch(tmp_path, capsys):
    path = tmp_path / "c.pt"
    torch.save({"l.weight": torch.zeros(2, 2, 3, 3)}, path)
    code, _, err = _inproc(capsys, "spectrum", str(path), "--model", "small_cnn", "--input-shape", "1,28,28")
    assert code == 2 and "does not match model 'small_cnn'" in err


def test_spectrum_kernel_larger_than_input_is_folded(tmp_path, capsys):
    path = tmp_path / "c.pt"
    torch.save({"l.weight": torch.randn(2, 2, 3, 3)}, path)
    code, out, _ = _inproc(capsys, "spectrum", str(path), "--input-size", "2", "--out", str(tmp_path / "o"))
    assert code == 0  # VGG block 5: 3x3 on 2x2, folded modulo n (methods.md 1.3)


def test_unwritable_output_folder(tmp_path, capsys):
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("x")
        out = blocker / "sub"  # a path under a regular file cannot be created, even by root
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        out = ro / "runs"
    code, _, err = _inproc(capsys, "run", "smoke", "--methods", "none", "--out", str(out))
    assert code == 2 and "output folder" in err


def _pair_of_checkpoints(tmp_path):
    """Two checkpoints of one architecture, the second with its first conv scaled by 2 and a conv the first lacks;
    both named model.pt (in two folders), as two runs' checkpoints usually are."""
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3)
    paths = []
    for i, state in enumerate(({"c.weight": w}, {"c.weight": 2 * w, "d.weight": torch.randn(5, 4, 3, 3)})):
        (tmp_path / f"run{i}").mkdir()
        paths.append(tmp_path / f"run{i}" / "model.pt")
        torch.save(state, paths[-1])
    return paths


def test_spectrum_of_several_checkpoints_side_by_side(tmp_path, capsys):
    """`spectrum A B`: each checkpoint in its own folder (repeated stems numbered), comparison.md with sigma_max /
    sigma_min per layer and checkpoint (layers matched by name, — where one is missing) and comparison.png."""
    a, b = _pair_of_checkpoints(tmp_path)
    out = tmp_path / "o"
    code, stdout, _ = _inproc(capsys, "spectrum", str(a), str(b), "--input-size", "8", "--out", str(out))
    assert code == 0
    for folder in ("model", "model-2"):
        assert {p.name for p in (out / folder).iterdir()} == {"spectrum.csv", "spectrum.md", "spectrum.png"}
    rows = {line.split(" | ")[0].strip("| "): line.strip("| ").split(" | ")
            for line in (out / "comparison.md").read_text().splitlines() if line.startswith("| c") or
            line.startswith("| d")}
    assert float(rows["c"][3]) == pytest.approx(2 * float(rows["c"][1]), rel=1e-5)
    assert rows["d"][1:3] == ["—", "—"] and rows["d"][3] != "—"
    assert (out / "comparison.png").read_bytes().startswith(b"\x89PNG")
    assert f"## {a}" in stdout and f"## {b}" in stdout and f"wrote {out / 'comparison.md'}" in stdout


def test_spectrum_of_several_checkpoints_checks_all_before_computing_any(tmp_path, capsys):
    """A missing or bad checkpoint after a good one: one line, exit 2, before any SV is computed or folder made."""
    a, _ = _pair_of_checkpoints(tmp_path)
    out = tmp_path / "o"
    code, _, err = _inproc(capsys, "spectrum", str(a), str(tmp_path / "none.pt"), "--input-size", "8", "--out",
                           str(out))
    assert code == 2 and "checkpoint not found" in err and len(err.strip().splitlines()) == 1
    bad = _three_conv_checkpoint(tmp_path, bad_last=True)
    code, _, err = _inproc(capsys, "spectrum", str(a), str(bad), "--input-size", "8", "--out", str(out))
    assert code == 2 and "c2" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_spectrum_of_several_checkpoints_keeps_the_finished_ones(tmp_path, capsys, monkeypatch):
    """Out of memory in the second checkpoint: the first one's folder is written and named in a warning; the error
    stays one line (exit 2); no comparison is written."""
    from svbench.checkpoint import spectrum as sp

    a, b = _pair_of_checkpoints(tmp_path)
    real, calls = sp.layer_spectrum, []

    def second_fails(entry, *args, **kwargs):
        calls.append(entry.name)
        if len(calls) == 2:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 68719476736 bytes")
        return real(entry, *args, **kwargs)

    monkeypatch.setattr(sp, "layer_spectrum", second_fails)
    out = tmp_path / "o"
    code, _, err = _inproc(capsys, "spectrum", str(a), str(b), "--input-size", "8", "--out", str(out))
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 2, err
    assert lines[0].startswith("svbench: warning:") and str(out / "model") in lines[0]
    assert (out / "model" / "spectrum.csv").exists() and not (out / "comparison.md").exists()
    assert not (out / "model-2").exists()  # the folder made up front for the failed checkpoint is not left empty


def test_spectrum_progress_is_one_step_per_layer_and_bound_on_a_terminal_only(tmp_path, capsys, monkeypatch):
    """`spectrum` on a big model ran for minutes without a word (inception_v3 at 299: 224 s); on a terminal it now
    shows a transient progress bar on stderr (one step per layer, then the certified bound); piped (the tests, CI)
    or with --no-progress nothing is drawn. compute_spectrum's callback names each layer before it starts."""
    import sys

    from svbench.checkpoint.spectrum import compute_spectrum, plan_spectrum
    from svbench.cli import spectrum as cli_spectrum
    from svbench.models import build_model

    path = tmp_path / "m.pt"
    torch.save(build_model("small_cnn", in_channels=1, image_size=28).state_dict(), path)
    plan = plan_spectrum(path, model="small_cnn", input_shape=(1, 28, 28), lipschitz=False)
    seen = []
    compute_spectrum(plan, progress=lambda i, name: seen.append((i, name)))
    assert seen == [(i, e.name) for i, (e, *_) in enumerate(plan.layers)] and len(seen) >= 2

    steps = []
    real = cli_spectrum._LayerProgress.step
    monkeypatch.setattr(cli_spectrum._LayerProgress, "step", lambda self, what: steps.append(
        (self.bar is not None, what)) or real(self, what))
    args = ["spectrum", str(path), "--model", "small_cnn", "--input-shape", "1,28,28"]
    code, out, err = _inproc(capsys, *args, "--out", str(tmp_path / "a"))  # piped: no bar
    assert code == 0 and "certified Lipschitz bound of the model" in out and err == ""
    assert [w for _, w in steps] == [f"layer {name}" for _, name in seen] + ["certified Lipschitz bound"]
    assert not any(drawn for drawn, _ in steps)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    steps.clear()
    code, out, _ = _inproc(capsys, *args, "--out", str(tmp_path / "b"))
    assert code == 0 and "certified Lipschitz bound of the model" in out and all(drawn for drawn, _ in steps)
    assert len(steps) == len(seen) + 1
    steps.clear()
    code, _, err = _inproc(capsys, *args, "--out", str(tmp_path / "c"), "--no-progress")
    assert code == 0 and err == "" and not any(drawn for drawn, _ in steps)


def test_spectrum_layers_selects_convs_by_pattern(tmp_path, capsys):
    """``--layers 'layer4.*,conv1'``: only those convs are computed -- the same CSV rows as the full run, in model
    order -- and spectrum.md says which; the certified bound stays the whole model's (the same L). A pattern that
    matches nothing is one line before any SV, naming the layers; an empty one too."""
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), tmp_path / "r.pt")
    common = ["spectrum", str(tmp_path / "r.pt"), "--model", "torchvision:resnet18", "--input-shape", "3,16,16",
              "--no-progress"]
    code, full_out, _ = _inproc(capsys, *common, "--out", str(tmp_path / "full"))
    assert code == 0
    code, out, _ = _inproc(capsys, *common, "--layers", "layer4.*, conv1", "--out", str(tmp_path / "sel"))
    assert code == 0
    full = (tmp_path / "full" / "spectrum.csv").read_text().splitlines()
    sel = (tmp_path / "sel" / "spectrum.csv").read_text().splitlines()
    want = [full[0]] + [r for r in full[1:] if r.startswith(("conv1,", "layer4."))]
    assert sel == want and len({r.split(",")[0] for r in sel[1:]}) == 6
    assert "Selected: 6 of 20 conv layers, --layers layer4.*,conv1." in (tmp_path / "sel" / "spectrum.md").read_text()
    assert out.split("L = ")[1].split()[0] == full_out.split("L = ")[1].split()[0]
    for layers, says in (("nothing*", "--layers nothing*: no conv layer of"), (" , ", "--layers is empty")):
        code, _, err = _inproc(capsys, *common, "--layers", layers, "--out", str(tmp_path / "none"))
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "none").exists()
